#include "evidence/evidence.h"

#include <algorithm>
#include <set>

#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "crypto/signature.h"
#include "evidence/pack_format.h"
#include "evidence/statement.h"

namespace concierge::evidence {
namespace {

using nlohmann::json;

// ASCII-only output (non-ASCII as \u escapes) so the manifest greps and diffs
// cleanly; invalid UTF-8 in free text becomes U+FFFD instead of throwing.
std::string DumpJson(const json& j) {
  return j.dump(2, ' ', true, json::error_handler_t::replace) + "\n";
}

PackFile TextFile(std::string name, std::string_view text) {
  return PackFile{std::move(name), Bytes(text.begin(), text.end())};
}

json OptionalTime(const std::optional<TimePoint>& t) { return t ? json(FormatRfc3339(*t)) : json(nullptr); }

Status RequireText(const std::string& field, const std::string& value) {
  if (value.empty()) return FieldError(field, field + " is required");
  return Status::Ok();
}

Status CheckKey(const std::string& field, const KeyRecord& k, const std::string& tenant_id) {
  RETURN_IF_ERROR(RequireText(field + ".key_id", k.key_id));
  if (k.tenant_id != tenant_id) {
    return FieldError(field + ".tenant_id", field + " belongs to tenant '" + k.tenant_id + "', not '" + tenant_id + "'");
  }
  if (!ParseAlgorithm(k.algorithm)) return FieldError(field + ".algorithm", "unknown algorithm '" + k.algorithm + "'");
  // A PKCS#11 URI may legally carry a PIN; a pack is meant to be handed out.
  if (k.key_uri.find("pin-value") != std::string::npos) {
    return FieldError(field + ".key_uri", "key URI carries a PIN and must not be exported");
  }
  auto key = crypto::PublicKeyFromPem(k.public_key_pem);
  auto fp = internal::PemKeyFingerprint(k.public_key_pem);
  if (!key.ok() || !fp.ok()) return FieldError(field + ".public_key_pem", "not a PEM public key");
  if (*fp != k.fingerprint) {
    return FieldError(field + ".fingerprint", "fingerprint " + k.fingerprint +
                                                  " is not the SHA-256 of public_key_pem's SPKI (" + *fp + ")");
  }
  return Status::Ok();
}

Status CheckEvidence(const RotationEvidence& e) {
  RETURN_IF_ERROR(RequireText("rotation_id", e.rotation_id));
  RETURN_IF_ERROR(RequireText("tenant_id", e.tenant_id));
  RETURN_IF_ERROR(RequireText("owner", e.owner));
  const bool completed = e.outcome == kOutcomeCompleted;
  if (!completed && e.outcome != kOutcomeRolledBack && e.outcome != kOutcomeAborted) {
    return FieldError("outcome", "outcome must be completed, rolled_back or aborted, not '" + e.outcome + "'");
  }
  if (e.finished_at < e.started_at) return FieldError("finished_at", "finished_at is before started_at");

  if (e.policy.tenant_id != e.tenant_id) return FieldError("policy.tenant_id", "policy is not the tenant's");
  if (e.policy.version <= 0) return FieldError("policy.version", "policy version must be positive");
  if (json::parse(e.policy.body_json, nullptr, false).is_discarded()) {
    return FieldError("policy.body_json", "policy body is not JSON");
  }
  if (crypto::Sha256Hex(crypto::AsBytes(e.policy.body_json)) != e.policy.policy_hash) {
    return FieldError("policy.policy_hash", "policy hash is not the SHA-256 of the policy body");
  }

  RETURN_IF_ERROR(CheckKey("old_key", e.old_key, e.tenant_id));
  if (e.new_key) {
    RETURN_IF_ERROR(CheckKey("new_key", *e.new_key, e.tenant_id));
    if (e.new_key->key_id == e.old_key.key_id) return FieldError("new_key.key_id", "new key is the old key");
  } else if (e.outcome != kOutcomeAborted) {
    return FieldError("new_key", "a " + e.outcome + " rotation has a new key");
  }
  if (!e.new_key && !(e.csr_pem.empty() && e.certificate_pem.empty() && e.chain_pem.empty())) {
    return FieldError("new_key", "a CSR or certificate without a new key");
  }
  if (completed) {
    RETURN_IF_ERROR(RequireText("csr_pem", e.csr_pem));
    RETURN_IF_ERROR(RequireText("certificate_pem", e.certificate_pem));
    RETURN_IF_ERROR(RequireText("chain_pem", e.chain_pem));
    auto mismatches = internal::CertificateMismatches(e.new_key->fingerprint, e.csr_pem, e.certificate_pem,
                                                      e.chain_pem, e.finished_at);
    if (!mismatches.empty()) {
      const std::string field = mismatches.front().file == kCsrFile           ? "csr_pem"
                                : mismatches.front().file == kCertificateFile ? "certificate_pem"
                                                                               : "chain_pem";
      return FieldError(field, mismatches.front().message);
    }
  }

  for (size_t i = 0; i < e.canary_results.size(); ++i) {
    const CanaryResult& r = e.canary_results[i];
    const std::string field = "canary_results[" + std::to_string(i) + "]";
    if (r.kind != "test" && r.kind != "resample") {
      return FieldError(field + ".kind", "canary kind must be test or resample, not '" + r.kind + "'");
    }
    if (!crypto::HexDecode(r.digest_hex).ok()) return FieldError(field + ".digest_hex", "not hex");
    if (!crypto::HexDecode(r.signature_hex).ok()) return FieldError(field + ".signature_hex", "not hex");
  }
  for (size_t i = 0; i < e.timeline.size(); ++i) {
    RETURN_IF_ERROR(RequireText("timeline[" + std::to_string(i) + "].phase", e.timeline[i].phase));
  }
  return Status::Ok();
}

json KeyJson(const KeyRecord& k) {
  return json{{"key_id", k.key_id},
              {"tenant_id", k.tenant_id},
              {"version", k.version},
              {"algorithm", k.algorithm},
              {"provider", k.provider},
              {"key_uri", k.key_uri},
              {"state", k.state},
              {"public_key_pem", k.public_key_pem},
              {"fingerprint", k.fingerprint},
              {"created_at", FormatRfc3339(k.created_at)},
              {"activated_at", OptionalTime(k.activated_at)},
              {"retired_at", OptionalTime(k.retired_at)}};
}

// The short form in the manifest: enough to tie keys.json and the
// certificate to what was signed.
json KeySummary(const KeyRecord& k) {
  return json{{"key_id", k.key_id},
              {"version", k.version},
              {"algorithm", k.algorithm},
              {"provider", k.provider},
              {"fingerprint", k.fingerprint}};
}

// RFC 4180: a field is quoted when it holds a comma, quote, CR or LF, and a
// quote inside is doubled.
std::string CsvField(std::string_view v) {
  if (v.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(v);
  std::string out = "\"";
  for (char c : v) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string CanaryCsv(const std::vector<CanaryResult>& results) {
  std::string out = "index,kind,digest_hex,signature_hex,verified,detail\r\n";
  for (const CanaryResult& r : results) {
    out += std::to_string(r.index) + "," + CsvField(r.kind) + "," + CsvField(r.digest_hex) + "," +
           CsvField(r.signature_hex) + "," + (r.verified ? "true" : "false") + "," + CsvField(r.detail) + "\r\n";
  }
  return out;
}

std::optional<internal::CertificateSummary> SummarizeCertificate(const std::string& pem) {
  if (pem.empty()) return std::nullopt;
  auto cert = crypto::CertificateFromPem(pem);
  if (!cert.ok()) return std::nullopt;
  return internal::CertificateSummary{crypto::SubjectString(cert->get()), crypto::IssuerString(cert->get()),
                                      crypto::SerialHex(cert->get()), crypto::NotBefore(cert->get()),
                                      crypto::NotAfter(cert->get())};
}

bool IsSealFile(std::string_view name) {
  return name == kDigestsFile || name == kManifestFile || name == kSignatureFile;
}

}  // namespace

const PackFile* EvidencePack::Find(std::string_view name) const {
  for (const PackFile& f : files) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

StatusOr<EvidenceContent> RenderEvidence(const RotationEvidence& e) {
  RETURN_IF_ERROR(CheckEvidence(e));
  const auto certificate = SummarizeCertificate(e.certificate_pem);

  EvidenceContent out;
  out.files.push_back(TextFile(kPolicyFile, e.policy.body_json));
  out.files.push_back(TextFile(
      kKeysFile, DumpJson(json{{"pre", KeyJson(e.old_key)}, {"post", e.new_key ? KeyJson(*e.new_key) : json(nullptr)}})));
  if (!e.csr_pem.empty()) out.files.push_back(TextFile(kCsrFile, e.csr_pem));
  if (!e.certificate_pem.empty()) out.files.push_back(TextFile(kCertificateFile, e.certificate_pem));
  if (!e.chain_pem.empty()) out.files.push_back(TextFile(kChainFile, e.chain_pem));
  if (e.attestation && !e.attestation->empty()) out.files.push_back(PackFile{kAttestationFile, *e.attestation});
  out.files.push_back(TextFile(kCanaryFile, CanaryCsv(e.canary_results)));
  out.files.push_back(TextFile(kStatementFile, internal::RenderStatement(e, certificate)));

  size_t verified = static_cast<size_t>(
      std::count_if(e.canary_results.begin(), e.canary_results.end(), [](const CanaryResult& r) { return r.verified; }));
  json cert_json = nullptr;
  if (certificate) {
    cert_json = json{{"subject", certificate->subject},
                     {"issuer", certificate->issuer},
                     {"serial", certificate->serial},
                     {"not_before", FormatRfc3339(certificate->not_before)},
                     {"not_after", FormatRfc3339(certificate->not_after)}};
  }
  out.rotation = json{{"id", e.rotation_id},
                      {"tenant_id", e.tenant_id},
                      {"outcome", e.outcome},
                      {"owner", e.owner},
                      {"approver", e.approver},
                      {"scheduled_at", FormatRfc3339(e.scheduled_at)},
                      {"started_at", FormatRfc3339(e.started_at)},
                      {"finished_at", FormatRfc3339(e.finished_at)},
                      {"policy", json{{"version", e.policy.version}, {"hash", e.policy.policy_hash}}},
                      {"old_key", KeySummary(e.old_key)},
                      {"new_key", e.new_key ? KeySummary(*e.new_key) : json(nullptr)},
                      {"certificate", cert_json},
                      {"canary", json{{"total", e.canary_results.size()},
                                      {"verified", verified},
                                      {"failed", e.canary_results.size() - verified}}}};
  return out;
}

StatusOr<EvidencePack> SealEvidence(EvidenceContent content, const crypto::BackendKey& evidence_key,
                                    TimePoint created_at) {
  if (evidence_key.backend == nullptr) return InvalidArgumentError("no backend for the evidence key");
  std::sort(content.files.begin(), content.files.end(),
            [](const PackFile& a, const PackFile& b) { return a.name < b.name; });
  for (size_t i = 0; i < content.files.size(); ++i) {
    const std::string& name = content.files[i].name;
    if (!IsValidPackFileName(name) || IsSealFile(name)) return InvalidArgumentError("invalid pack file name '" + name + "'");
    if (i > 0 && content.files[i - 1].name == name) return InvalidArgumentError("duplicate pack file '" + name + "'");
  }

  ASSIGN_OR_RETURN(Bytes spki, evidence_key.backend->PublicKeySpkiDer(evidence_key.key_uri));
  ASSIGN_OR_RETURN(crypto::EvpPkeyPtr public_key, crypto::PublicKeyFromSpkiDer(spki));
  RETURN_IF_ERROR(crypto::CheckKeyMatchesAlgorithm(public_key.get(), evidence_key.algorithm));
  ASSIGN_OR_RETURN(std::string spki_pem, crypto::SpkiDerToPem(spki));

  json files = json::array();
  std::vector<std::pair<std::string, std::string>> digests;
  for (const PackFile& f : content.files) {
    std::string sha = crypto::Sha256Hex(f.contents);
    files.push_back(json{{"name", f.name}, {"size", f.contents.size()}, {"sha256", sha}});
    digests.emplace_back(f.name, std::move(sha));
  }
  const json manifest{{"format", kFormatName},
                      {"format_version", kFormatVersion},
                      {"created_at", FormatRfc3339(created_at)},
                      {"rotation", std::move(content.rotation)},
                      {"files", std::move(files)},
                      {"evidence_key", json{{"algorithm", AlgorithmName(evidence_key.algorithm)},
                                            {"spki_pem", spki_pem},
                                            {"fingerprint", crypto::SpkiFingerprint(spki)}}}};
  PackFile manifest_file = TextFile(kManifestFile, DumpJson(manifest));
  ASSIGN_OR_RETURN(Bytes signature, crypto::SignMessageWithBackend(evidence_key, manifest_file.contents));
  // A backend answering with another key's signature would produce packs that
  // never verify; find out now, not at audit time.
  Status self_check =
      crypto::VerifyMessage(public_key.get(), evidence_key.algorithm, manifest_file.contents, signature);
  if (!self_check.ok()) return InternalError("evidence key signature does not verify: " + self_check.message());

  digests.emplace_back(kManifestFile, crypto::Sha256Hex(manifest_file.contents));
  digests.emplace_back(kSignatureFile, crypto::Sha256Hex(signature));
  std::sort(digests.begin(), digests.end());

  EvidencePack pack;
  pack.created_at = created_at;
  pack.files = std::move(content.files);
  pack.files.push_back(TextFile(kDigestsFile, internal::DigestLines(digests)));
  pack.files.push_back(std::move(manifest_file));
  pack.files.push_back(PackFile{kSignatureFile, std::move(signature)});
  std::sort(pack.files.begin(), pack.files.end(), [](const PackFile& a, const PackFile& b) { return a.name < b.name; });
  return pack;
}

StatusOr<EvidencePack> BuildEvidencePack(const RotationEvidence& evidence, const crypto::BackendKey& evidence_key,
                                         TimePoint created_at) {
  ASSIGN_OR_RETURN(EvidenceContent content, RenderEvidence(evidence));
  return SealEvidence(std::move(content), evidence_key, created_at);
}

StatusOr<Bytes> PackToTar(const EvidencePack& pack) { return WriteTar(pack.files, pack.created_at); }

Status WritePackFile(const EvidencePack& pack, const std::string& path) {
  ASSIGN_OR_RETURN(Bytes tar, PackToTar(pack));
  return WriteFileBytes(path, tar);
}

}  // namespace concierge::evidence
