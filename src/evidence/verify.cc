#include "evidence/verify.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <set>

#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "crypto/signature.h"
#include "evidence/evidence.h"
#include "evidence/pack_format.h"

namespace concierge::evidence {
namespace {

using nlohmann::json;

struct ListedFile {
  std::string name;
  uint64_t size = 0;
  std::string sha256;
};

// What the verifier needs from a signed manifest, with its types checked.
struct Manifest {
  std::string created_at;
  std::string evidence_key_fingerprint;
  std::vector<ListedFile> files;
  std::string rotation_id, tenant_id, outcome, finished_at, policy_hash;
  std::string old_key_fingerprint;
  std::optional<std::string> new_key_fingerprint;
};

bool IsHex64(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// Reads a string at a '/'-separated path; kept as a pointer lookup so that a
// wrong type reports the path instead of throwing.
StatusOr<std::string> StringAt(const json& root, const std::string& path) {
  const json* j = &root;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    std::string key = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (!j->is_object() || !j->contains(key)) return InvalidArgumentError("manifest has no " + path);
    j = &(*j)[key];
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  if (!j->is_string()) return InvalidArgumentError("manifest " + path + " is not a string");
  return j->get<std::string>();
}

StatusOr<Manifest> ParseManifest(const json& j) {
  Manifest m;
  ASSIGN_OR_RETURN(std::string format, StringAt(j, "format"));
  if (format != kFormatName) return InvalidArgumentError("manifest format is '" + format + "', not " + kFormatName);
  if (!j.contains("format_version") || !j["format_version"].is_number_integer() ||
      j["format_version"].get<int64_t>() != kFormatVersion) {
    return InvalidArgumentError("unsupported manifest format_version (this verifier reads " +
                                std::to_string(kFormatVersion) + ")");
  }
  ASSIGN_OR_RETURN(m.created_at, StringAt(j, "created_at"));
  ASSIGN_OR_RETURN(m.evidence_key_fingerprint, StringAt(j, "evidence_key/fingerprint"));
  ASSIGN_OR_RETURN(m.rotation_id, StringAt(j, "rotation/id"));
  ASSIGN_OR_RETURN(m.tenant_id, StringAt(j, "rotation/tenant_id"));
  ASSIGN_OR_RETURN(m.outcome, StringAt(j, "rotation/outcome"));
  if (m.outcome != kOutcomeCompleted && m.outcome != kOutcomeRolledBack && m.outcome != kOutcomeAborted) {
    return InvalidArgumentError("manifest rotation/outcome '" + m.outcome + "' is not a rotation outcome");
  }
  ASSIGN_OR_RETURN(m.finished_at, StringAt(j, "rotation/finished_at"));
  ASSIGN_OR_RETURN(m.policy_hash, StringAt(j, "rotation/policy/hash"));
  ASSIGN_OR_RETURN(m.old_key_fingerprint, StringAt(j, "rotation/old_key/fingerprint"));
  if (!j["rotation"].contains("new_key")) return InvalidArgumentError("manifest has no rotation/new_key");
  if (!j["rotation"]["new_key"].is_null()) {
    ASSIGN_OR_RETURN(m.new_key_fingerprint, StringAt(j, "rotation/new_key/fingerprint"));
  }
  if (!j.contains("files") || !j["files"].is_array()) return InvalidArgumentError("manifest has no files list");
  std::set<std::string> names;
  for (const json& f : j["files"]) {
    ListedFile lf;
    ASSIGN_OR_RETURN(lf.name, StringAt(f, "name"));
    ASSIGN_OR_RETURN(lf.sha256, StringAt(f, "sha256"));
    if (!f.contains("size") || !f["size"].is_number_unsigned()) {
      return InvalidArgumentError("manifest entry " + lf.name + " has no size");
    }
    lf.size = f["size"].get<uint64_t>();
    if (!IsValidPackFileName(lf.name) || lf.name == kDigestsFile || lf.name == kManifestFile ||
        lf.name == kSignatureFile || !names.insert(lf.name).second || !IsHex64(lf.sha256)) {
      return InvalidArgumentError("manifest file entry '" + lf.name + "' is invalid or repeated");
    }
    m.files.push_back(std::move(lf));
  }
  return m;
}

// "<hex>  <name>" lines of digests.txt, for attributing a failed signature.
std::map<std::string, std::string> DigestClaims(const PackFile* digests) {
  std::map<std::string, std::string> claims;
  if (digests == nullptr) return claims;
  std::string_view text(reinterpret_cast<const char*>(digests->contents.data()), digests->contents.size());
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    if (line.size() > 66 && line.substr(64, 2) == "  ") claims[std::string(line.substr(66))] = line.substr(0, 64);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return claims;
}

std::string Text(const PackFile& f) { return crypto::AsString(f.contents); }

class Verifier {
 public:
  explicit Verifier(std::optional<std::string_view> trusted_key_pem) : trusted_key_pem_(trusted_key_pem) {}

  VerifyReport Run(ByteView archive) {
    auto files = ReadTar(archive);
    if (!files.ok()) {
      const Status st = files.status();
      auto entry = st.details().find("entry");
      if (entry != st.details().end()) {
        Fail(ProblemKind::kUnexpected, entry->second, st.message());
      } else {
        Fail(ProblemKind::kUnreadable, "", st.message(), "archive");
      }
      return std::move(report_);
    }
    for (const PackFile& f : *files) by_name_[f.name] = &f;
    Pass("archive", std::to_string(files->size()) + " files");
    if (CheckSignature()) CheckContents();
    return std::move(report_);
  }

 private:
  void Pass(const std::string& subject, std::string detail) {
    report_.lines.push_back({CheckResult::kPass, subject, std::move(detail)});
  }
  void Warn(const std::string& subject, std::string detail) {
    report_.lines.push_back({CheckResult::kWarn, subject, std::move(detail)});
  }
  void Fail(ProblemKind kind, const std::string& file, std::string message, const std::string& subject = "") {
    report_.lines.push_back({CheckResult::kFail, subject.empty() ? file : subject, message});
    report_.problems.push_back({kind, file, std::move(message)});
  }

  const PackFile* Get(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second;
  }

  // Signature over manifest.json by the key the manifest names; then the
  // trusted-key comparison. False when nothing in the manifest can be trusted.
  bool CheckSignature() {
    manifest_file_ = Get(kManifestFile);
    signature_file_ = Get(kSignatureFile);
    if (manifest_file_ == nullptr) Fail(ProblemKind::kMissing, kManifestFile, "the pack has no manifest.json");
    if (signature_file_ == nullptr) Fail(ProblemKind::kMissing, kSignatureFile, "the pack has no manifest.sig");
    if (manifest_file_ == nullptr || signature_file_ == nullptr) return false;

    manifest_json_ = json::parse(manifest_file_->contents.begin(), manifest_file_->contents.end(), nullptr, false);
    if (manifest_json_.is_discarded()) return SignatureFailed("manifest.json is not valid JSON");
    auto alg_name = StringAt(manifest_json_, "evidence_key/algorithm");
    auto spki_pem = StringAt(manifest_json_, "evidence_key/spki_pem");
    if (!alg_name.ok() || !spki_pem.ok()) return SignatureFailed("manifest.json names no evidence key");
    auto alg = ParseAlgorithm(*alg_name);
    if (!alg) return SignatureFailed("manifest.json names an unknown algorithm '" + *alg_name + "'");
    auto key = crypto::PublicKeyFromPem(*spki_pem);
    if (!key.ok()) return SignatureFailed("the evidence key in manifest.json does not parse");
    auto spki = crypto::PublicKeyToSpkiDer(key->get());
    if (!spki.ok() || !crypto::CheckKeyMatchesAlgorithm(key->get(), *alg).ok()) {
      return SignatureFailed("the evidence key in manifest.json is not a " + *alg_name + " key");
    }
    Status verified = crypto::VerifyMessage(key->get(), *alg, manifest_file_->contents, signature_file_->contents);
    if (!verified.ok()) return SignatureFailed(verified.message());

    const std::string fingerprint = crypto::SpkiFingerprint(*spki);
    report_.evidence_key_fingerprint = fingerprint;
    Pass(kSignatureFile, *alg_name + " signature over manifest.json verifies with the evidence key " + fingerprint);

    if (!trusted_key_pem_) {
      Warn("evidence key", "not pinned: no trusted key given, so the signature proves integrity, not who signed");
    } else {
      auto trusted = internal::PemKeyFingerprint(*trusted_key_pem_);
      if (!trusted.ok()) {
        Fail(ProblemKind::kUntrustedKey, kSignatureFile, "the trusted key is not a PEM public key", "evidence key");
      } else if (*trusted != fingerprint) {
        Fail(ProblemKind::kUntrustedKey, kSignatureFile,
             "manifest.json was signed by " + fingerprint + ", not by the trusted evidence key " + *trusted,
             "evidence key");
      } else {
        report_.evidence_key_trusted = true;
        Pass("evidence key", "is the trusted evidence key");
      }
    }

    auto manifest = ParseManifest(manifest_json_);
    if (!manifest.ok()) {
      Fail(ProblemKind::kMalformed, kManifestFile, manifest.status().message());
      return false;
    }
    manifest_ = *std::move(manifest);
    if (manifest_.evidence_key_fingerprint != fingerprint) {
      Fail(ProblemKind::kMalformed, kManifestFile, "evidence_key fingerprint does not match its spki_pem");
    }
    report_.rotation_id = manifest_.rotation_id;
    report_.tenant_id = manifest_.tenant_id;
    report_.outcome = manifest_.outcome;
    report_.created_at = manifest_.created_at;
    return true;
  }

  // The signature does not hold, so nothing in the manifest is evidence. Name
  // the file that changed when digests.txt can tell manifest.json and
  // manifest.sig apart.
  bool SignatureFailed(const std::string& reason) {
    auto claims = DigestClaims(Get(kDigestsFile));
    auto changed = [&](const PackFile* f) {
      auto it = claims.find(f->name);
      return it != claims.end() && it->second != crypto::Sha256Hex(f->contents);
    };
    const bool manifest_changed = changed(manifest_file_);
    const bool signature_changed = changed(signature_file_);
    if (manifest_changed && !signature_changed) {
      Fail(ProblemKind::kAltered, kManifestFile,
           "manifest.json was altered (its SHA-256 is no longer the one in digests.txt): " + reason);
    } else if (signature_changed && !manifest_changed) {
      Fail(ProblemKind::kBadSignature, kSignatureFile,
           "manifest.sig was altered (its SHA-256 is no longer the one in digests.txt): " + reason);
    } else {
      Fail(ProblemKind::kBadSignature, kSignatureFile, "manifest.sig is not a valid signature over manifest.json: " + reason);
    }
    return false;
  }

  void CheckContents() {
    std::set<std::string> listed;
    for (const ListedFile& lf : manifest_.files) {
      listed.insert(lf.name);
      const PackFile* f = Get(lf.name);
      if (f == nullptr) {
        Fail(ProblemKind::kMissing, lf.name, "listed in the manifest but not in the pack");
        continue;
      }
      const std::string sha = crypto::Sha256Hex(f->contents);
      if (sha != lf.sha256 || f->contents.size() != lf.size) {
        Fail(ProblemKind::kAltered, lf.name,
             "altered: SHA-256 " + sha + " (" + std::to_string(f->contents.size()) + " bytes) is not the manifest's " +
                 lf.sha256 + " (" + std::to_string(lf.size) + " bytes)");
        continue;
      }
      intact_.insert(lf.name);
      Pass(lf.name, std::to_string(lf.size) + " bytes, SHA-256 matches the manifest");
    }
    for (const auto& [name, file] : by_name_) {
      if (listed.count(name) == 0 && name != kManifestFile && name != kSignatureFile && name != kDigestsFile) {
        Fail(ProblemKind::kUnexpected, name, "not listed in the manifest");
      }
    }
    CheckDigestsFile();
    CheckAgainstMetadata();
  }

  // digests.txt must be exactly what the manifest implies, plus the actual
  // (signature-checked) hashes of manifest.json and manifest.sig.
  void CheckDigestsFile() {
    const PackFile* digests = Get(kDigestsFile);
    if (digests == nullptr) {
      Fail(ProblemKind::kMissing, kDigestsFile, "the pack has no digests.txt");
      return;
    }
    std::vector<std::pair<std::string, std::string>> expected;
    for (const ListedFile& lf : manifest_.files) expected.emplace_back(lf.name, lf.sha256);
    expected.emplace_back(kManifestFile, crypto::Sha256Hex(manifest_file_->contents));
    expected.emplace_back(kSignatureFile, crypto::Sha256Hex(signature_file_->contents));
    std::sort(expected.begin(), expected.end());
    if (Text(*digests) != internal::DigestLines(expected)) {
      Fail(ProblemKind::kAltered, kDigestsFile, "altered: its lines are not the digests the manifest records");
    } else {
      Pass(kDigestsFile, "lists exactly the manifest's digests and those of manifest.json and manifest.sig");
    }
  }

  void Inconsistent(const std::string& file, const std::string& message) {
    // A rolled-back or aborted rotation may have failed precisely because its
    // certificate was wrong; the pack records that rather than hiding it.
    if (manifest_.outcome == kOutcomeCompleted || file == kPolicyFile || file == kKeysFile) {
      Fail(ProblemKind::kInconsistent, file, message);
    } else {
      Warn(file, message + " (recorded as it was; the rotation was " + manifest_.outcome + ")");
    }
  }

  const PackFile* Intact(const std::string& name) const { return intact_.count(name) ? Get(name) : nullptr; }

  void CheckAgainstMetadata() {
    if (const PackFile* policy = Intact(kPolicyFile)) {
      if (crypto::Sha256Hex(policy->contents) != manifest_.policy_hash) {
        Inconsistent(kPolicyFile, "SHA-256 of policy.json is not the policy hash " + manifest_.policy_hash);
      } else {
        Pass("policy hash", "policy.json hashes to the policy hash in the manifest");
      }
    }
    if (const PackFile* keys = Intact(kKeysFile)) CheckKeysFile(*keys);

    const bool completed = manifest_.outcome == kOutcomeCompleted;
    if (completed) {
      for (const char* required : {kPolicyFile, kKeysFile, kCsrFile, kCertificateFile, kChainFile}) {
        bool is_listed = std::any_of(manifest_.files.begin(), manifest_.files.end(),
                                     [&](const ListedFile& lf) { return lf.name == required; });
        if (!is_listed) Fail(ProblemKind::kMissing, required, "a completed rotation's pack must hold it");
      }
    }
    if (!manifest_.new_key_fingerprint) return;
    auto text_of = [&](const char* name) {
      const PackFile* f = Intact(name);
      return f ? Text(*f) : std::string();
    };
    TimePoint at{};
    if (!ParseRfc3339(manifest_.finished_at, &at)) {
      Fail(ProblemKind::kMalformed, kManifestFile, "rotation/finished_at is not an RFC 3339 time");
      return;
    }
    auto mismatches = internal::CertificateMismatches(*manifest_.new_key_fingerprint, text_of(kCsrFile),
                                                      text_of(kCertificateFile), text_of(kChainFile), at);
    for (const internal::Mismatch& m : mismatches) Inconsistent(m.file, m.message);
    if (mismatches.empty() && Intact(kCertificateFile) != nullptr) {
      Pass("certificate", "carries the new key " + *manifest_.new_key_fingerprint +
                              (Intact(kChainFile) ? " and chains to its root" : ""));
    }
  }

  void CheckKeysFile(const PackFile& file) {
    json keys = json::parse(file.contents.begin(), file.contents.end(), nullptr, false);
    auto check = [&](const char* side, const std::optional<std::string>& expected) -> std::string {
      if (!keys.is_object() || !keys.contains(side)) return std::string("has no ") + side + " key";
      const json& k = keys[side];
      if (!expected) return k.is_null() ? "" : std::string(side) + " key is set but the manifest has no new key";
      auto fp = StringAt(k, "fingerprint");
      auto pem = StringAt(k, "public_key_pem");
      if (!fp.ok() || !pem.ok()) return std::string(side) + " key lacks fingerprint or public_key_pem";
      if (*fp != *expected) return std::string(side) + " fingerprint " + *fp + " is not the manifest's " + *expected;
      auto actual = internal::PemKeyFingerprint(*pem);
      if (!actual.ok() || *actual != *fp) return std::string(side) + " public_key_pem does not hash to its fingerprint";
      return "";
    };
    std::string problem = check("pre", manifest_.old_key_fingerprint);
    if (problem.empty()) problem = check("post", manifest_.new_key_fingerprint);
    if (!problem.empty()) {
      Inconsistent(kKeysFile, problem);
    } else {
      Pass("key fingerprints", "keys.json pre/post keys match the manifest's fingerprints");
    }
  }

  std::optional<std::string_view> trusted_key_pem_;
  VerifyReport report_;
  std::map<std::string, const PackFile*> by_name_;
  const PackFile* manifest_file_ = nullptr;
  const PackFile* signature_file_ = nullptr;
  json manifest_json_;
  Manifest manifest_;
  std::set<std::string> intact_;
};

const char* ResultLabel(CheckResult r) {
  switch (r) {
    case CheckResult::kPass: return "ok  ";
    case CheckResult::kWarn: return "WARN";
    case CheckResult::kFail: return "FAIL";
  }
  return "?   ";
}

}  // namespace

std::string_view ProblemKindName(ProblemKind kind) {
  switch (kind) {
    case ProblemKind::kUnreadable: return "unreadable";
    case ProblemKind::kMissing: return "missing";
    case ProblemKind::kUnexpected: return "unexpected";
    case ProblemKind::kAltered: return "altered";
    case ProblemKind::kBadSignature: return "bad-signature";
    case ProblemKind::kUntrustedKey: return "untrusted-key";
    case ProblemKind::kMalformed: return "malformed";
    case ProblemKind::kInconsistent: return "inconsistent";
  }
  return "unknown";
}

bool VerifyReport::unreadable() const {
  return std::any_of(problems.begin(), problems.end(),
                     [](const Problem& p) { return p.kind == ProblemKind::kUnreadable; });
}

int VerifyReport::ExitCode() const {
  if (unreadable()) return 2;
  return ok() ? 0 : 1;
}

std::string VerifyReport::Verdict() const {
  if (ok()) {
    return "VALID: rotation " + rotation_id + " of tenant " + tenant_id + " (" + outcome + "), pack created " +
           created_at + (evidence_key_trusted ? ", signed by the trusted evidence key" : ", evidence key not pinned");
  }
  std::string out = unreadable() ? "UNREADABLE: " : "INVALID: ";
  for (size_t i = 0; i < problems.size(); ++i) {
    if (i > 0) out += "; ";
    out += (problems[i].file.empty() ? "archive" : problems[i].file) + " " +
           std::string(ProblemKindName(problems[i].kind));
  }
  return out;
}

VerifyReport VerifyEvidencePack(ByteView archive, std::optional<std::string_view> trusted_key_pem) {
  return Verifier(trusted_key_pem).Run(archive);
}

int RunEvidenceVerify(const std::string& path, const std::string& trusted_key_path, std::ostream& out) {
  out << "evidence pack " << path << "\n";
  auto archive = ReadFileBytes(path, kMaxArchiveBytes + (1u << 20));
  if (!archive.ok()) {
    out << "FAIL read: " << archive.status().message() << "\nverdict: UNREADABLE\n";
    return 2;
  }
  std::optional<std::string> trusted;
  if (!trusted_key_path.empty()) {
    auto pem = ReadFileBytes(trusted_key_path, 1u << 20);
    if (!pem.ok() || !crypto::PublicKeyFromPem(crypto::AsString(*pem)).ok()) {
      out << "FAIL trusted key: " << trusted_key_path << " is not a readable PEM public key\nverdict: UNREADABLE\n";
      return 2;
    }
    trusted = crypto::AsString(*pem);
  }
  VerifyReport report = VerifyEvidencePack(*archive, trusted);
  for (const CheckLine& line : report.lines) {
    out << ResultLabel(line.result) << " " << line.subject << ": " << line.detail << "\n";
  }
  out << "verdict: " << report.Verdict() << "\n";
  return report.ExitCode();
}

}  // namespace concierge::evidence
