#include "evidence/verify.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "evidence/evidence_test_fixture.h"

namespace concierge::evidence {
namespace {

using ::concierge::testing::RunCommand;
using ::concierge::testing::WriteFile;
using nlohmann::json;

// Where each member's data sits in a ustar archive, found by walking the
// 512-byte headers directly (not through libarchive, so the test does not
// trust the code under test to locate what it tampers with).
struct Member {
  std::string name;
  size_t offset = 0;
  size_t size = 0;
};

std::vector<Member> UstarMembers(const Bytes& tar) {
  std::vector<Member> out;
  size_t pos = 0;
  while (pos + 512 <= tar.size() && tar[pos] != 0) {
    std::string name(reinterpret_cast<const char*>(&tar[pos]), strnlen(reinterpret_cast<const char*>(&tar[pos]), 100));
    size_t size = std::stoul(std::string(reinterpret_cast<const char*>(&tar[pos + 124]), 11), nullptr, 8);
    out.push_back({name, pos + 512, size});
    pos += 512 + (size + 511) / 512 * 512;
  }
  return out;
}

std::string Files(const VerifyReport& r) {
  std::string s;
  for (const Problem& p : r.problems) s += "[" + std::string(ProblemKindName(p.kind)) + " " + p.file + ": " + p.message + "] ";
  return s;
}

class VerifyTest : public EvidenceFixture {
 protected:
  Bytes BuildTar(const crypto::BackendKey& key, const RotationEvidence& e) {
    auto pack = BuildEvidencePack(e, key, base_ + std::chrono::minutes(7));
    EXPECT_TRUE(pack.ok()) << pack.status().ToString();
    auto tar = PackToTar(*pack);
    EXPECT_TRUE(tar.ok());
    return *tar;
  }
  Bytes BuildTar() { return BuildTar(evidence_key_, Evidence()); }

  std::string EvidenceKeyPem(const std::string& label = "evidence") { return *crypto::SpkiDerToPem(spki_[label]); }

  // The archive re-written with one file replaced (nullopt: removed) or added.
  Bytes Rewrite(const Bytes& tar, const std::string& name, std::optional<std::string> contents) {
    auto files = ReadTar(tar);
    EXPECT_TRUE(files.ok());
    std::vector<PackFile> out;
    bool replaced = false;
    for (PackFile& f : *files) {
      if (f.name != name) {
        out.push_back(std::move(f));
      } else if (contents) {
        out.push_back({name, Bytes(contents->begin(), contents->end())});
        replaced = true;
      }
    }
    if (contents && !replaced) out.push_back({name, Bytes(contents->begin(), contents->end())});
    return *WriteTar(out, base_);
  }

  // Seals hand-altered content with the real evidence key: what a buggy or
  // rogue signer could produce. Only the semantic checks can catch it.
  Bytes SealWith(const std::string& name, const std::string& contents, const RotationEvidence& e) {
    auto content = RenderEvidence(e);
    EXPECT_TRUE(content.ok()) << content.status().ToString();
    for (PackFile& f : content->files) {
      if (f.name == name) f.contents = Bytes(contents.begin(), contents.end());
    }
    auto pack = SealEvidence(*std::move(content), evidence_key_, base_);
    EXPECT_TRUE(pack.ok()) << pack.status().ToString();
    return *PackToTar(*pack);
  }

  void ExpectOnlyProblem(const VerifyReport& r, ProblemKind kind, const std::string& file) {
    ASSERT_EQ(r.problems.size(), 1u) << Files(r);
    EXPECT_EQ(r.problems[0].kind, kind) << Files(r);
    EXPECT_EQ(r.problems[0].file, file) << Files(r);
    EXPECT_EQ(r.ExitCode(), kind == ProblemKind::kUnreadable ? 2 : 1);
  }
};

TEST_F(VerifyTest, IntactPackVerifies) {
  Bytes tar = BuildTar();
  VerifyReport r = VerifyEvidencePack(tar, EvidenceKeyPem());
  ASSERT_TRUE(r.ok()) << Files(r);
  EXPECT_EQ(r.ExitCode(), 0);
  EXPECT_TRUE(r.evidence_key_trusted);
  EXPECT_EQ(r.rotation_id, "rot-20260301-0001");
  EXPECT_EQ(r.tenant_id, "acme-news");
  EXPECT_EQ(r.outcome, "completed");
  EXPECT_EQ(r.evidence_key_fingerprint, crypto::SpkiFingerprint(spki_["evidence"]));
  EXPECT_EQ(r.Verdict(),
            "VALID: rotation rot-20260301-0001 of tenant acme-news (completed), pack created "
            "2026-03-01T10:07:00.000Z, signed by the trusted evidence key");
  std::set<std::string> subjects;
  for (const CheckLine& l : r.lines) {
    EXPECT_EQ(l.result, CheckResult::kPass) << l.subject << ": " << l.detail;
    subjects.insert(l.subject);
  }
  for (const char* s : {"archive", "manifest.sig", "evidence key", "policy.json", "keys.json", "csr.pem",
                        "certificate.pem", "chain.pem", "canary-results.csv", "statement.html", "digests.txt",
                        "policy hash", "key fingerprints", "certificate"}) {
    EXPECT_EQ(subjects.count(s), 1u) << s;
  }

  // Without a trusted key it still verifies, and says the key is not pinned.
  VerifyReport unpinned = VerifyEvidencePack(tar);
  EXPECT_TRUE(unpinned.ok()) << Files(unpinned);
  EXPECT_FALSE(unpinned.evidence_key_trusted);
  bool warned = false;
  for (const CheckLine& l : unpinned.lines) warned |= l.result == CheckResult::kWarn && l.subject == "evidence key";
  EXPECT_TRUE(warned);
}

TEST_F(VerifyTest, EveryFlippedByteOfEveryFileIsNamed) {
  RotationEvidence e = Evidence();
  e.attestation = Bytes{0x30, 0x03, 0x02, 0x01, 0x07};
  const Bytes tar = BuildTar(evidence_key_, e);
  const std::vector<Member> members = UstarMembers(tar);
  ASSERT_EQ(members.size(), 11u);
  size_t flips = 0;
  for (const Member& m : members) {
    // A content file is caught by its digest, digests.txt by the manifest,
    // manifest.json and manifest.sig by the signature (told apart by digests.txt).
    const ProblemKind expected = m.name == "manifest.sig" ? ProblemKind::kBadSignature : ProblemKind::kAltered;
    for (size_t i = 0; i < m.size; ++i) {
      Bytes tampered = tar;
      tampered[m.offset + i] ^= 0x01;
      VerifyReport r = VerifyEvidencePack(tampered, EvidenceKeyPem());
      ASSERT_EQ(r.problems.size(), 1u) << m.name << " byte " << i << ": " << Files(r);
      ASSERT_EQ(r.problems[0].file, m.name) << "byte " << i << ": " << Files(r);
      ASSERT_EQ(r.problems[0].kind, expected) << m.name << " byte " << i << ": " << Files(r);
      ASSERT_EQ(r.ExitCode(), 1);
      ++flips;
    }
  }
  EXPECT_GT(flips, 5000u);
}

TEST_F(VerifyTest, FlippedBytesAreNamedForEd25519AndRsaPssEvidenceKeys) {
  for (Algorithm alg : {Algorithm::kEd25519, Algorithm::kPS256}) {
    const std::string label = "evidence-" + std::string(AlgorithmName(alg));
    crypto::BackendKey key = NewBackendKey(alg, label);
    const Bytes tar = BuildTar(key, Evidence());
    ASSERT_TRUE(VerifyEvidencePack(tar, EvidenceKeyPem(label)).ok()) << label;
    for (const Member& m : UstarMembers(tar)) {
      for (size_t i : {size_t{0}, m.size / 2, m.size - 1}) {
        Bytes tampered = tar;
        tampered[m.offset + i] ^= 0x80;
        VerifyReport r = VerifyEvidencePack(tampered, EvidenceKeyPem(label));
        ASSERT_EQ(r.problems.size(), 1u) << label << " " << m.name << " byte " << i << ": " << Files(r);
        EXPECT_EQ(r.problems[0].file, m.name) << label << " byte " << i << ": " << Files(r);
      }
    }
  }
}

TEST_F(VerifyTest, MissingAndExtraFilesAreNamed) {
  const Bytes tar = BuildTar();
  for (const char* name : {"certificate.pem", "canary-results.csv", "statement.html", "digests.txt"}) {
    ExpectOnlyProblem(VerifyEvidencePack(Rewrite(tar, name, std::nullopt)), ProblemKind::kMissing, name);
  }
  ExpectOnlyProblem(VerifyEvidencePack(Rewrite(tar, "manifest.sig", std::nullopt)), ProblemKind::kMissing,
                    "manifest.sig");
  ExpectOnlyProblem(VerifyEvidencePack(Rewrite(tar, "manifest.json", std::nullopt)), ProblemKind::kMissing,
                    "manifest.json");
  ExpectOnlyProblem(VerifyEvidencePack(Rewrite(tar, "readme.txt", "trust me\n")), ProblemKind::kUnexpected,
                    "readme.txt");
  // Adding a file the pack format knows (attestation) but this manifest does not list.
  ExpectOnlyProblem(VerifyEvidencePack(Rewrite(tar, "attestation.bin", "x")), ProblemKind::kUnexpected,
                    "attestation.bin");
}

TEST_F(VerifyTest, ReplacedFileIsNamedEvenWhenDigestsTxtIsUpdatedToMatch) {
  const Bytes tar = BuildTar();
  const std::string forged = R"({"algorithm":"ES256","canary_count":0,"rotate_every_days":365})";
  Bytes swapped = Rewrite(tar, "policy.json", forged);
  auto files = ReadTar(swapped);
  std::string digests;
  for (const PackFile& f : *files) {
    if (f.name != "digests.txt") digests += crypto::Sha256Hex(f.contents) + "  " + f.name + "\n";
  }
  VerifyReport r = VerifyEvidencePack(Rewrite(swapped, "digests.txt", digests));
  ASSERT_EQ(r.problems.size(), 2u) << Files(r);
  EXPECT_EQ(r.problems[0].file, "policy.json");
  EXPECT_EQ(r.problems[0].kind, ProblemKind::kAltered);
  EXPECT_EQ(r.problems[1].file, "digests.txt");
}

TEST_F(VerifyTest, PackSignedByAnotherKeyFailsAgainstTheTrustedKey) {
  crypto::BackendKey rogue = NewBackendKey(Algorithm::kES256, "rogue");
  const Bytes tar = BuildTar(rogue, Evidence());
  // Self-consistent, so without pinning it verifies; the report warns.
  EXPECT_TRUE(VerifyEvidencePack(tar).ok());
  VerifyReport r = VerifyEvidencePack(tar, EvidenceKeyPem());
  ExpectOnlyProblem(r, ProblemKind::kUntrustedKey, "manifest.sig");
  EXPECT_NE(r.problems[0].message.find(crypto::SpkiFingerprint(spki_["rogue"])), std::string::npos);
  EXPECT_NE(r.problems[0].message.find(crypto::SpkiFingerprint(spki_["evidence"])), std::string::npos);
  ExpectOnlyProblem(VerifyEvidencePack(BuildTar(), "not a key"), ProblemKind::kUntrustedKey, "manifest.sig");
}

TEST_F(VerifyTest, ManifestResignedWithAnotherKeyIsABadSignature) {
  // An attacker edits the manifest and re-signs it with a key of their own but
  // leaves the evidence key in the manifest alone: the signature cannot hold.
  const Bytes tar = BuildTar();
  const Member m = UstarMembers(tar)[6];
  ASSERT_EQ(m.name, "manifest.json");
  const std::string manifest(tar.begin() + m.offset, tar.begin() + m.offset + m.size);
  crypto::BackendKey rogue = NewBackendKey(Algorithm::kES256, "rogue");
  Bytes sig = *crypto::SignMessageWithBackend(rogue, crypto::AsBytes(manifest));
  VerifyReport r = VerifyEvidencePack(Rewrite(tar, "manifest.sig", crypto::AsString(sig)));
  // digests.txt still has the old manifest.sig digest, so the changed file is named.
  ExpectOnlyProblem(r, ProblemKind::kBadSignature, "manifest.sig");
}

TEST_F(VerifyTest, CertificateNotCarryingTheNewKeyIsInconsistent) {
  RotationEvidence e = Evidence();
  const std::string other_cert = CertifyKey(old_key_, {0x05}).second;
  VerifyReport r = VerifyEvidencePack(SealWith("certificate.pem", other_cert, e), EvidenceKeyPem());
  // chain.pem no longer starts with certificate.pem either.
  ASSERT_EQ(r.problems.size(), 2u) << Files(r);
  EXPECT_EQ(r.problems[0].kind, ProblemKind::kInconsistent);
  EXPECT_EQ(r.problems[0].file, "certificate.pem");
  EXPECT_NE(r.problems[0].message.find("is not the new key " + new_key_.fingerprint), std::string::npos);
  EXPECT_EQ(r.problems[1].file, "chain.pem");

  ExpectOnlyProblem(VerifyEvidencePack(SealWith("csr.pem", CertifyKey(old_key_, {0x06}).first, e)),
                    ProblemKind::kInconsistent, "csr.pem");
  ExpectOnlyProblem(VerifyEvidencePack(SealWith("policy.json", R"({"algorithm":"ES512"})", e)),
                    ProblemKind::kInconsistent, "policy.json");
  auto content = RenderEvidence(e);
  auto keys_file = std::find_if(content->files.begin(), content->files.end(),
                                [](const PackFile& f) { return f.name == "keys.json"; });
  json keys = json::parse(crypto::AsString(keys_file->contents));
  keys["post"]["fingerprint"] = old_key_.fingerprint;
  ExpectOnlyProblem(VerifyEvidencePack(SealWith("keys.json", keys.dump(), e)), ProblemKind::kInconsistent,
                    "keys.json");
}

TEST_F(VerifyTest, SignedManifestThatIsNotAPackManifestIsMalformed) {
  auto content = RenderEvidence(Evidence());
  ASSERT_TRUE(content.ok());
  content->rotation["outcome"] = "done";
  auto pack = SealEvidence(*content, evidence_key_, base_);
  ASSERT_TRUE(pack.ok());
  ExpectOnlyProblem(VerifyEvidencePack(*PackToTar(*pack)), ProblemKind::kMalformed, "manifest.json");
  content->rotation["outcome"] = "completed";
  content->rotation.erase("new_key");
  pack = SealEvidence(*content, evidence_key_, base_);
  ExpectOnlyProblem(VerifyEvidencePack(*PackToTar(*pack)), ProblemKind::kMalformed, "manifest.json");
}

TEST_F(VerifyTest, RolledBackRotationRecordsABadCertificateAsAWarning) {
  RotationEvidence e = Evidence();
  e.outcome = "rolled_back";
  e.certificate_pem = CertifyKey(old_key_, {0x07}).second;
  e.chain_pem = e.certificate_pem + CaPem();
  VerifyReport r = VerifyEvidencePack(BuildTar(evidence_key_, e), EvidenceKeyPem());
  EXPECT_TRUE(r.ok()) << Files(r);
  bool warned = false;
  for (const CheckLine& l : r.lines) warned |= l.result == CheckResult::kWarn && l.subject == "certificate.pem";
  EXPECT_TRUE(warned);
}

TEST_F(VerifyTest, DamagedArchiveIsUnreadable) {
  const Bytes tar = BuildTar();
  Bytes header = tar;
  header[UstarMembers(tar)[3].offset - 512 + 1] ^= 0x01;  // name byte in csr.pem's header
  VerifyReport r = VerifyEvidencePack(header);
  ExpectOnlyProblem(r, ProblemKind::kUnreadable, "");
  EXPECT_EQ(r.Verdict().rfind("UNREADABLE: ", 0), 0u) << r.Verdict();
  ExpectOnlyProblem(VerifyEvidencePack(crypto::AsBytes("PK\x03\x04 a zip, maybe")), ProblemKind::kUnreadable, "");
}

TEST_F(VerifyTest, RunEvidenceVerifyPrintsOneLinePerCheckAndAVerdict) {
  const Bytes tar = BuildTar();
  const std::string pack = dir_.File("pack.tar");
  const std::string trusted = dir_.File("evidence.pem");
  WriteFile(pack, crypto::AsString(tar));
  WriteFile(trusted, EvidenceKeyPem());

  std::ostringstream ok;
  EXPECT_EQ(RunEvidenceVerify(pack, trusted, ok), 0) << ok.str();
  EXPECT_NE(ok.str().find("\nok   certificate.pem: "), std::string::npos) << ok.str();
  EXPECT_NE(ok.str().find("\nok   evidence key: is the trusted evidence key\n"), std::string::npos) << ok.str();
  EXPECT_NE(ok.str().find("\nverdict: VALID: rotation rot-20260301-0001"), std::string::npos) << ok.str();

  Bytes tampered = tar;
  const Member chain = UstarMembers(tar)[2];
  ASSERT_EQ(chain.name, "chain.pem");
  tampered[chain.offset + 100] ^= 0x01;
  WriteFile(pack, crypto::AsString(tampered));
  std::ostringstream bad;
  EXPECT_EQ(RunEvidenceVerify(pack, "", bad), 1) << bad.str();
  EXPECT_NE(bad.str().find("\nFAIL chain.pem: altered: SHA-256 "), std::string::npos) << bad.str();
  EXPECT_NE(bad.str().find("\nverdict: INVALID: chain.pem altered\n"), std::string::npos) << bad.str();

  std::ostringstream missing;
  EXPECT_EQ(RunEvidenceVerify(dir_.File("nope.tar"), "", missing), 2);
  EXPECT_NE(missing.str().find("verdict: UNREADABLE"), std::string::npos) << missing.str();
  std::ostringstream bad_key;
  WriteFile(pack, crypto::AsString(tar));
  EXPECT_EQ(RunEvidenceVerify(pack, pack, bad_key), 2) << bad_key.str();
  EXPECT_NE(bad_key.str().find("is not a readable PEM public key"), std::string::npos) << bad_key.str();
  std::ostringstream damaged;
  WriteFile(pack, "garbage");
  EXPECT_EQ(RunEvidenceVerify(pack, "", damaged), 2) << damaged.str();
}

// Verification with nothing of ours: GNU tar, sha256sum and the openssl CLI.
TEST_F(VerifyTest, PackVerifiesWithTarSha256sumAndOpenssl) {
  for (Algorithm alg : {Algorithm::kES256, Algorithm::kPS256, Algorithm::kEd25519}) {
    SCOPED_TRACE(std::string(AlgorithmName(alg)));
    const std::string label = "evidence-cli-" + std::string(AlgorithmName(alg));
    crypto::BackendKey key = NewBackendKey(alg, label);
    const std::string out = dir_.File(label);
    ASSERT_EQ(RunCommand("mkdir -p " + out).exit_code, 0);
    WriteFile(out + ".tar", crypto::AsString(BuildTar(key, Evidence())));

    auto x = RunCommand("tar -xf " + out + ".tar -C " + out + " 2>&1");
    ASSERT_EQ(x.exit_code, 0) << x.output;
    auto sums = RunCommand("cd " + out + " && sha256sum -c --strict digests.txt 2>&1");
    ASSERT_EQ(sums.exit_code, 0) << sums.output;
    EXPECT_NE(sums.output.find("manifest.json: OK"), std::string::npos) << sums.output;
    EXPECT_NE(sums.output.find("certificate.pem: OK"), std::string::npos) << sums.output;

    // The manifest's own list, checked with sha256sum too.
    json manifest = json::parse(testing::ReadFile(out + "/manifest.json"));
    std::string listed;
    for (const json& f : manifest["files"]) {
      listed += f["sha256"].get<std::string>() + "  " + f["name"].get<std::string>() + "\n";
    }
    WriteFile(out + ".listed", listed);
    auto listed_ok = RunCommand("cd " + out + " && sha256sum -c --strict " + out + ".listed 2>&1");
    ASSERT_EQ(listed_ok.exit_code, 0) << listed_ok.output;

    WriteFile(out + ".pub.pem", manifest["evidence_key"]["spki_pem"].get<std::string>());
    const std::string verify =
        alg == Algorithm::kEd25519
            ? "openssl pkeyutl -verify -pubin -inkey " + out + ".pub.pem -rawin -in " + out + "/manifest.json -sigfile " +
                  out + "/manifest.sig"
        : alg == Algorithm::kPS256
            ? "openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:-1 -verify " + out +
                  ".pub.pem -signature " + out + "/manifest.sig " + out + "/manifest.json"
            : "openssl dgst -sha256 -verify " + out + ".pub.pem -signature " + out + "/manifest.sig " + out +
                  "/manifest.json";
    auto v = RunCommand(verify + " 2>&1");
    EXPECT_EQ(v.exit_code, 0) << verify << "\n" << v.output;
    EXPECT_NE(v.output.find("Verified"), std::string::npos) << v.output;
    // The pinned key's fingerprint is the SHA-256 of its DER SPKI.
    auto fp = RunCommand("openssl pkey -pubin -in " + out + ".pub.pem -outform DER | sha256sum");
    EXPECT_EQ(fp.output.substr(0, 64), manifest["evidence_key"]["fingerprint"].get<std::string>());

    // And the same tools notice a changed byte.
    WriteFile(out + "/manifest.json", testing::ReadFile(out + "/manifest.json") + " ");
    EXPECT_NE(RunCommand(verify + " 2>&1").exit_code, 0);
    EXPECT_NE(RunCommand("cd " + out + " && sha256sum -c --quiet digests.txt 2>&1").exit_code, 0);
  }
}

}  // namespace
}  // namespace concierge::evidence
