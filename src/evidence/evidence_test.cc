#include "evidence/evidence.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "evidence/evidence_test_fixture.h"
#include "evidence/verify.h"

namespace concierge::evidence {
namespace {

using nlohmann::json;

std::string TextOf(const EvidencePack& pack, std::string_view name) {
  const PackFile* f = pack.Find(name);
  EXPECT_NE(f, nullptr) << name;
  return f ? crypto::AsString(f->contents) : "";
}

std::vector<std::string> Names(const EvidencePack& pack) {
  std::vector<std::string> names;
  for (const PackFile& f : pack.files) names.push_back(f.name);
  return names;
}

class EvidenceBuildTest : public EvidenceFixture {
 protected:
  EvidencePack Build(const RotationEvidence& e) {
    auto pack = BuildEvidencePack(e, evidence_key_, base_ + std::chrono::minutes(7));
    EXPECT_TRUE(pack.ok()) << pack.status().ToString();
    return pack.ok() ? *std::move(pack) : EvidencePack{};
  }

  void ExpectFieldError(const RotationEvidence& e, const std::string& field) {
    auto pack = BuildEvidencePack(e, evidence_key_, base_);
    ASSERT_EQ(pack.status().code(), StatusCode::kInvalidArgument) << field;
    EXPECT_EQ(pack.status().details().at("field"), field) << pack.status().ToString();
  }
};

TEST_F(EvidenceBuildTest, CompletedRotationHasEveryFileInNameOrder) {
  EvidencePack pack = Build(Evidence());
  EXPECT_EQ(Names(pack), (std::vector<std::string>{"canary-results.csv", "certificate.pem", "chain.pem", "csr.pem",
                                                   "digests.txt", "keys.json", "manifest.json", "manifest.sig",
                                                   "policy.json", "statement.html"}));
  RotationEvidence with_attestation = Evidence();
  with_attestation.attestation = Bytes{0x30, 0x82, 0x00, 0x01, 0xff};
  EvidencePack attested = Build(with_attestation);
  ASSERT_NE(attested.Find("attestation.bin"), nullptr);
  EXPECT_EQ(attested.Find("attestation.bin")->contents, *with_attestation.attestation);
  EXPECT_EQ(attested.files.front().name, "attestation.bin");
}

TEST_F(EvidenceBuildTest, PolicyAndKeysRecordWhatChanged) {
  RotationEvidence e = Evidence();
  EvidencePack pack = Build(e);
  // policy.json is the hashed body itself, so `sha256sum policy.json` is the policy hash.
  EXPECT_EQ(TextOf(pack, "policy.json"), e.policy.body_json);
  EXPECT_EQ(crypto::Sha256Hex(pack.Find("policy.json")->contents), e.policy.policy_hash);

  json keys = json::parse(TextOf(pack, "keys.json"));
  EXPECT_EQ(keys["pre"]["fingerprint"], old_key_.fingerprint);
  EXPECT_EQ(keys["pre"]["public_key_pem"], old_key_.public_key_pem);
  EXPECT_EQ(keys["pre"]["state"], "retiring");
  EXPECT_EQ(keys["post"]["fingerprint"], new_key_.fingerprint);
  EXPECT_EQ(keys["post"]["key_uri"], new_key_.key_uri);
  EXPECT_EQ(keys["post"]["version"], 2);
  EXPECT_EQ(keys["post"]["activated_at"], "2026-03-01T10:05:00.000Z");
  EXPECT_TRUE(keys["post"]["retired_at"].is_null());

  EXPECT_EQ(TextOf(pack, "csr.pem"), csr_pem_);
  EXPECT_EQ(TextOf(pack, "certificate.pem"), cert_pem_);
  EXPECT_EQ(TextOf(pack, "chain.pem"), cert_pem_ + CaPem());
}

TEST_F(EvidenceBuildTest, ManifestListsFilesAndTheEvidenceKey) {
  EvidencePack pack = Build(Evidence());
  json m = json::parse(TextOf(pack, "manifest.json"));
  EXPECT_EQ(m["format"], "c2-concierge/rotation-evidence");
  EXPECT_EQ(m["format_version"], 1);
  EXPECT_EQ(m["created_at"], "2026-03-01T10:07:00.000Z");
  EXPECT_EQ(m["evidence_key"]["algorithm"], "ES256");
  EXPECT_EQ(m["evidence_key"]["fingerprint"], crypto::SpkiFingerprint(spki_["evidence"]));
  EXPECT_EQ(m["evidence_key"]["spki_pem"], *crypto::SpkiDerToPem(spki_["evidence"]));
  const json& r = m["rotation"];
  EXPECT_EQ(r["id"], "rot-20260301-0001");
  EXPECT_EQ(r["tenant_id"], "acme-news");
  EXPECT_EQ(r["outcome"], "completed");
  EXPECT_EQ(r["owner"], "keys@acme.example");
  EXPECT_EQ(r["approver"], "ciso@acme.example");
  EXPECT_EQ(r["policy"]["version"], 4);
  EXPECT_EQ(r["old_key"]["fingerprint"], old_key_.fingerprint);
  EXPECT_EQ(r["new_key"]["fingerprint"], new_key_.fingerprint);
  EXPECT_EQ(r["certificate"]["serial"], "02");
  EXPECT_EQ(r["certificate"]["issuer"], "O=Concierge Tests,CN=Evidence Test CA");
  EXPECT_EQ(r["canary"]["total"], 5);
  EXPECT_EQ(r["canary"]["verified"], 5);

  // Every file except the three that seal the pack, with its size and SHA-256.
  std::vector<std::string> listed;
  for (const json& f : m["files"]) {
    const PackFile* file = pack.Find(f["name"].get<std::string>());
    ASSERT_NE(file, nullptr) << f.dump();
    EXPECT_EQ(f["size"], file->contents.size());
    EXPECT_EQ(f["sha256"], crypto::Sha256Hex(file->contents));
    listed.push_back(f["name"]);
  }
  EXPECT_EQ(listed, (std::vector<std::string>{"canary-results.csv", "certificate.pem", "chain.pem", "csr.pem",
                                              "keys.json", "policy.json", "statement.html"}));
}

TEST_F(EvidenceBuildTest, DigestsTxtIsSha256sumFormatForEveryOtherFile) {
  EvidencePack pack = Build(Evidence());
  std::string expected;
  for (const PackFile& f : pack.files) {
    if (f.name != "digests.txt") expected += crypto::Sha256Hex(f.contents) + "  " + f.name + "\n";
  }
  EXPECT_EQ(TextOf(pack, "digests.txt"), expected);
}

TEST_F(EvidenceBuildTest, CanaryCsvFollowsRfc4180) {
  RotationEvidence e = Evidence();
  e.canary_results[1].verified = false;
  e.canary_results[1].detail = "did not verify, against cert 02";
  EvidencePack pack = Build(e);
  const std::string csv = TextOf(pack, "canary-results.csv");
  const std::string d0 = e.canary_results[0].digest_hex;
  EXPECT_EQ(csv.substr(0, csv.find("\r\n") + 2), "index,kind,digest_hex,signature_hex,verified,detail\r\n");
  EXPECT_NE(csv.find("\r\n0,test," + d0 + ",3045022100aa00,true,\r\n"), std::string::npos) << csv;
  EXPECT_NE(csv.find(",false,\"did not verify, against cert 02\"\r\n"), std::string::npos) << csv;
  EXPECT_NE(csv.find(",true,\"ledger entry 17, request \"\"r-9\"\", signed at 09:00\"\r\n"), std::string::npos) << csv;
  EXPECT_NE(csv.find(",true,\"two\nlines\"\r\n"), std::string::npos) << csv;
  EXPECT_EQ(csv.substr(csv.size() - 2), "\r\n");
  // Six records: the header and five rows (the embedded LF is inside quotes).
  size_t records = 0;
  for (size_t p = csv.find("\r\n"); p != std::string::npos; p = csv.find("\r\n", p + 2)) ++records;
  EXPECT_EQ(records, 6u);

  // An independent RFC 4180 reader agrees.
  testing::TempDir dir;
  testing::WriteFile(dir.File("c.csv"), csv);
  auto py = testing::RunCommand(
      "python3 -c 'import csv,sys; rows=list(csv.reader(open(sys.argv[1], newline=\"\"))); "
      "print(len(rows), rows[4][5], rows[2][4], repr(rows[5][5]))' " + dir.File("c.csv"));
  ASSERT_EQ(py.exit_code, 0) << py.output;
  EXPECT_EQ(py.output, "6 ledger entry 17, request \"r-9\", signed at 09:00 false 'two\\nlines'\n");
}

TEST_F(EvidenceBuildTest, StatementSaysWhoWhenWhatAndEscapesEverything) {
  RotationEvidence e = Evidence();
  e.owner = "o'brien <keys@acme.example>";
  EvidencePack pack = Build(e);
  const std::string html = TextOf(pack, "statement.html");
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  for (const std::string& s :
       {std::string("o&#39;brien &lt;keys@acme.example&gt;"), std::string("ciso@acme.example"),
        std::string("2026-03-01T10:00:00.000Z"), std::string("2026-03-01T10:06:00.000Z"), old_key_.fingerprint,
        new_key_.fingerprint, std::string("acme-news-v2"), e.policy.policy_hash}) {
    EXPECT_NE(html.find(s), std::string::npos) << s;
  }
  EXPECT_NE(html.find("3 of 3"), std::string::npos);  // test signatures
  EXPECT_NE(html.find("2 of 2"), std::string::npos);  // re-signed samples
  EXPECT_NE(html.find("cutover"), std::string::npos);
  EXPECT_NE(html.find("active key swapped &lt;atomically&gt;"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; done"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("o'brien"), std::string::npos);
}

TEST_F(EvidenceBuildTest, SameInputGivesTheSameFiles) {
  RotationEvidence e = Evidence();
  EvidencePack a = Build(e);
  EvidencePack b = Build(e);
  ASSERT_EQ(Names(a), Names(b));
  for (size_t i = 0; i < a.files.size(); ++i) {
    // ECDSA signatures are randomised; everything they do not touch is stable.
    if (a.files[i].name == "manifest.sig" || a.files[i].name == "digests.txt") continue;
    EXPECT_EQ(a.files[i].contents, b.files[i].contents) << a.files[i].name;
  }
  // With a deterministic signature scheme the whole archive is reproducible.
  crypto::BackendKey ed = NewBackendKey(Algorithm::kEd25519, "evidence-ed");
  auto x = BuildEvidencePack(e, ed, base_);
  auto y = BuildEvidencePack(e, ed, base_);
  ASSERT_TRUE(x.ok() && y.ok());
  EXPECT_EQ(*PackToTar(*x), *PackToTar(*y));
}

TEST_F(EvidenceBuildTest, WritesTheArchiveToAFile) {
  EvidencePack pack = Build(Evidence());
  const std::string path = dir_.File("pack.tar");
  ASSERT_TRUE(WritePackFile(pack, path).ok());
  EXPECT_EQ(crypto::AsBytes(testing::ReadFile(path)).size(), PackToTar(pack)->size());
  EXPECT_EQ(testing::ReadFile(path), crypto::AsString(*PackToTar(pack)));
  EXPECT_EQ(WritePackFile(pack, dir_.File("no/such/dir/pack.tar")).code(), StatusCode::kUnavailable);
}

TEST_F(EvidenceBuildTest, RejectsInconsistentInputNamingTheField) {
  RotationEvidence e = Evidence();
  e.outcome = "done";
  ExpectFieldError(e, "outcome");

  e = Evidence();
  e.owner.clear();
  ExpectFieldError(e, "owner");

  e = Evidence();
  e.policy.policy_hash = std::string(64, '0');
  ExpectFieldError(e, "policy.policy_hash");

  e = Evidence();
  e.new_key->fingerprint = old_key_.fingerprint;
  ExpectFieldError(e, "new_key.fingerprint");

  e = Evidence();
  e.old_key.tenant_id = "someone-else";
  ExpectFieldError(e, "old_key.tenant_id");

  e = Evidence();
  e.new_key->key_uri = "pkcs11:token=t;object=k?pin-value=1234";
  ExpectFieldError(e, "new_key.key_uri");

  e = Evidence();
  e.certificate_pem.clear();
  ExpectFieldError(e, "certificate_pem");

  e = Evidence();
  e.new_key.reset();
  ExpectFieldError(e, "new_key");

  e = Evidence();
  e.canary_results[2].kind = "other";
  ExpectFieldError(e, "canary_results[2].kind");

  e = Evidence();
  e.canary_results[0].signature_hex = "xyz";
  ExpectFieldError(e, "canary_results[0].signature_hex");

  // A completed rotation's certificate must carry the new key...
  e = Evidence();
  e.certificate_pem = CertifyKey(old_key_, {0x03}).second;
  e.chain_pem = e.certificate_pem + CaPem();
  ExpectFieldError(e, "certificate_pem");
  // ... and its chain must start with that certificate.
  e = Evidence();
  e.chain_pem = CaPem();
  ExpectFieldError(e, "chain_pem");
}

TEST_F(EvidenceBuildTest, AbortedBeforeKeyGenerationHasNoKeyMaterialFiles) {
  RotationEvidence e = Evidence();
  e.outcome = "aborted";
  e.new_key.reset();
  e.csr_pem.clear();
  e.certificate_pem.clear();
  e.chain_pem.clear();
  e.canary_results.clear();
  e.timeline.resize(2);
  e.timeline[1].outcome = "failed";
  e.timeline[1].detail = "backend unavailable";
  EvidencePack pack = Build(e);
  EXPECT_EQ(Names(pack), (std::vector<std::string>{"canary-results.csv", "digests.txt", "keys.json",
                                                   "manifest.json", "manifest.sig", "policy.json",
                                                   "statement.html"}));
  EXPECT_TRUE(json::parse(TextOf(pack, "keys.json"))["post"].is_null());
  EXPECT_NE(TextOf(pack, "statement.html").find("aborted before cutover"), std::string::npos);
  EXPECT_EQ(TextOf(pack, "canary-results.csv"), "index,kind,digest_hex,signature_hex,verified,detail\r\n");
  VerifyReport report = VerifyEvidencePack(*PackToTar(pack));
  EXPECT_TRUE(report.ok()) << report.Verdict();
}

TEST_F(EvidenceBuildTest, SealingRefusesReservedOrDuplicateNames) {
  auto content = RenderEvidence(Evidence());
  ASSERT_TRUE(content.ok());
  EvidenceContent reserved = *content;
  reserved.files.push_back({"manifest.json", {}});
  EXPECT_EQ(SealEvidence(reserved, evidence_key_, base_).status().code(), StatusCode::kInvalidArgument);
  EvidenceContent duplicate = *content;
  duplicate.files.push_back(duplicate.files.front());
  EXPECT_EQ(SealEvidence(duplicate, evidence_key_, base_).status().code(), StatusCode::kInvalidArgument);
  crypto::BackendKey no_backend{nullptr, evidence_key_.key_uri, Algorithm::kES256};
  EXPECT_FALSE(SealEvidence(*content, no_backend, base_).ok());
  crypto::BackendKey wrong_alg{backend_.get(), evidence_key_.key_uri, Algorithm::kEd25519};
  EXPECT_FALSE(SealEvidence(*content, wrong_alg, base_).ok());
}

}  // namespace
}  // namespace concierge::evidence
