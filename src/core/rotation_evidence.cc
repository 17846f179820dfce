#include "core/rotation_evidence.h"

#include <nlohmann/json.hpp>

#include <map>

#include "core/rotation_engine.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/keys.h"

namespace concierge::core {
namespace {

using json = nlohmann::json;

// Why a closed rotation has no pack ("" when it has one).
std::string NoEvidenceReason(const RotationRecord& r) {
  if (EvidenceOutcome(r).empty()) return "rotation " + r.rotation_id + " is " + r.state + "; it has no evidence pack";
  if (r.policy_version <= 0) return "rotation " + r.rotation_id + " stopped before it read the tenant's policy";
  if (r.old_key_id.empty()) return "rotation " + r.rotation_id + " had no previous key to record";
  return "";
}

std::vector<evidence::CanaryResult> CanaryResults(const std::string& results_json) {
  std::vector<evidence::CanaryResult> out;
  json results = json::parse(results_json.empty() ? "[]" : results_json, nullptr, false);
  if (!results.is_array()) return out;
  for (const json& r : results) {
    evidence::CanaryResult c;
    c.index = r.value("n", 0);
    c.kind = r.value("kind", "");
    c.digest_hex = r.value("digest", "");
    c.signature_hex = r.value("signature", "");
    c.verified = r.value("ok", false);
    std::string detail;
    if (r.contains("ledger_seq")) detail = "ledger entry " + std::to_string(r["ledger_seq"].get<int64_t>());
    std::string error = r.value("error", "");
    if (!error.empty()) detail += (detail.empty() ? "" : "; ") + error;
    c.detail = std::move(detail);
    out.push_back(std::move(c));
  }
  return out;
}

// One record per phase, from the persisted timeline: when it first started,
// when it finished and how.
std::vector<evidence::PhaseRecord> Phases(const std::vector<RotationEvent>& events) {
  std::vector<evidence::PhaseRecord> out;
  std::map<std::string, size_t> index;
  for (const RotationEvent& e : events) {
    if (e.phase.empty()) continue;
    auto [it, added] = index.emplace(e.phase, out.size());
    if (added) out.push_back(evidence::PhaseRecord{e.phase, e.at, std::nullopt, "", ""});
    evidence::PhaseRecord& p = out[it->second];
    if (e.event == "phase_completed" || e.event == "cutover" || e.event == "completed") {
      p.finished_at = e.at;
      p.outcome = "ok";
      p.detail = e.detail;
    } else if (e.event == "failed" || e.event == "rolled_back" || e.event == "cancelled") {
      p.finished_at = e.at;
      p.outcome = e.event;
      p.detail = e.detail;
    } else if (e.event == "awaiting_certificate") {
      p.outcome = "waiting";
      p.detail = e.detail;
    }
  }
  return out;
}

}  // namespace

std::string EvidenceOutcome(const RotationRecord& rotation) {
  if (rotation.state == "completed") return std::string(evidence::kOutcomeCompleted);
  if (rotation.state == "rolled_back") return std::string(evidence::kOutcomeRolledBack);
  if (rotation.state == "failed") return std::string(evidence::kOutcomeAborted);
  return "";
}

StatusOr<evidence::RotationEvidence> RotationEvidenceRecorder::Gather(const RotationRecord& r) {
  if (std::string why = NoEvidenceReason(r); !why.empty()) return FailedPreconditionError(why);
  evidence::RotationEvidence e;
  e.rotation_id = r.rotation_id;
  e.tenant_id = r.tenant_id;
  e.outcome = EvidenceOutcome(r);
  e.scheduled_at = r.scheduled_at;
  e.started_at = r.started_at.value_or(r.scheduled_at);
  e.finished_at = r.finished_at.value_or(r.updated_at);
  // Calendar rotations have no named owner: the scheduler is accountable.
  e.owner = r.owner.empty() ? r.created_by : r.owner;
  e.approver = r.approved_by;
  ASSIGN_OR_RETURN(e.policy, store_.GetPolicyVersion(r.tenant_id, r.policy_version));
  ASSIGN_OR_RETURN(e.old_key, store_.GetKey(r.old_key_id));
  if (!r.new_key_id.empty()) {
    auto new_key = store_.GetKey(r.new_key_id);
    if (new_key.ok()) {
      e.new_key = *new_key;
      if (!new_key->attestation.empty()) e.attestation = Bytes(new_key->attestation.begin(), new_key->attestation.end());
      e.csr_pem = r.csr_pem;
      auto cert = store_.GetLatestCertificate(r.new_key_id);
      if (cert.ok()) {
        e.certificate_pem = cert->pem;
        e.chain_pem = cert->chain_pem;
      } else if (cert.status().code() != StatusCode::kNotFound) {
        return cert.status();
      }
    } else if (new_key.status().code() != StatusCode::kNotFound) {
      return new_key.status();
    }
  }
  e.canary_results = CanaryResults(r.canary_results);
  ASSIGN_OR_RETURN(std::vector<RotationEvent> events, store_.ListRotationEvents(r.rotation_id));
  e.timeline = Phases(events);
  if (!r.error.empty()) {
    e.notes = r.error;
  } else if (r.grace_until) {
    e.notes = "The previous key " + r.old_key_id + " stays verify-only (retiring) until " +
              FormatRfc3339(*r.grace_until) + "; a rollback is possible until then.";
  }
  return e;
}

StatusOr<EvidenceKeyRecord> RotationEvidenceRecorder::Key() {
  std::lock_guard lock(mu_);
  return KeyLocked();
}

StatusOr<EvidenceKeyRecord> RotationEvidenceRecorder::KeyLocked() {
  auto existing = store_.GetEvidenceKey();
  if (existing.ok() || existing.status().code() != StatusCode::kNotFound) return existing;
  KeyBackend* backend = backends_.Find(provider_);
  if (backend == nullptr) {
    return FailedPreconditionError("provider '" + provider_ + "' for the evidence key is not configured");
  }
  ASSIGN_OR_RETURN(GeneratedKey generated,
                   backend->GenerateKey(KeySpec{algorithm_, "concierge-evidence-" + crypto::RandomHex(4), ""}));
  EvidenceKeyRecord k;
  k.provider = provider_;
  k.key_uri = generated.uri;
  k.algorithm = std::string(AlgorithmName(algorithm_));
  auto pem = crypto::SpkiDerToPem(generated.public_key_spki_der);
  Status stored = pem.status();
  if (pem.ok()) {
    k.public_key_pem = *pem;
    k.fingerprint = crypto::SpkiFingerprint(generated.public_key_spki_der);
    k.created_at = clock_.Now();
    stored = store_.InsertEvidenceKey(k);
  }
  if (!stored.ok()) {
    backend->DestroyKey(generated.uri).IgnoreError();  // referenced by nothing
    // Another process sharing the database made one first: use theirs.
    if (stored.code() == StatusCode::kAlreadyExists) return store_.GetEvidenceKey();
    return stored;
  }
  return k;
}

StatusOr<RotationEvidenceRecord> RotationEvidenceRecorder::Ensure(const std::string& rotation_id) {
  ASSIGN_OR_RETURN(RotationRecord r, store_.GetRotation(rotation_id));
  std::lock_guard lock(mu_);
  return EnsureLocked(r);
}

StatusOr<RotationEvidenceRecord> RotationEvidenceRecorder::EnsureLocked(const RotationRecord& r) {
  if (std::string why = NoEvidenceReason(r); !why.empty()) return FailedPreconditionError(why);
  const std::string outcome = EvidenceOutcome(r);
  auto stored = store_.GetRotationEvidence(r.rotation_id, outcome);
  if (stored.ok() || stored.status().code() != StatusCode::kNotFound) return stored;
  ASSIGN_OR_RETURN(evidence::RotationEvidence inputs, Gather(r));
  ASSIGN_OR_RETURN(EvidenceKeyRecord key, KeyLocked());
  KeyBackend* backend = backends_.Find(key.provider);
  auto alg = ParseAlgorithm(key.algorithm);
  if (backend == nullptr || !alg) {
    return UnavailableError("backend '" + key.provider + "' holding the evidence key is not configured");
  }
  RotationEvidenceRecord record;
  record.rotation_id = r.rotation_id;
  record.outcome = outcome;
  record.created_at = clock_.Now();
  ASSIGN_OR_RETURN(evidence::EvidencePack pack, evidence::BuildEvidencePack(
                                                    inputs, crypto::BackendKey{backend, key.key_uri, *alg},
                                                    record.created_at));
  ASSIGN_OR_RETURN(record.pack, evidence::PackToTar(pack));
  record.sha256 = crypto::Sha256Hex(record.pack);
  Status inserted = store_.InsertRotationEvidence(record);
  // Built concurrently by another process: theirs is the one of record.
  if (inserted.code() == StatusCode::kAlreadyExists) return store_.GetRotationEvidence(r.rotation_id, outcome);
  RETURN_IF_ERROR(inserted);
  return record;
}

int RotationEvidenceRecorder::EnsureAll(std::vector<std::string>* errors) {
  auto tenants = store_.ListTenants(/*include_deleted=*/true);
  if (!tenants.ok()) {
    errors->push_back("listing tenants for evidence: " + tenants.status().message());
    return 0;
  }
  int built = 0;
  for (const TenantRecord& t : *tenants) {
    auto rotations = store_.ListRotations(t.tenant_id);
    if (!rotations.ok()) {
      errors->push_back("listing rotations of " + t.tenant_id + ": " + rotations.status().message());
      continue;
    }
    for (const RotationRecord& r : *rotations) {
      if (!NoEvidenceReason(r).empty()) continue;
      std::lock_guard lock(mu_);
      auto have = store_.GetRotationEvidence(r.rotation_id, EvidenceOutcome(r));
      if (have.ok()) continue;
      auto made = EnsureLocked(r);
      if (made.ok()) {
        ++built;
      } else {
        errors->push_back("evidence pack of " + r.rotation_id + ": " + made.status().message());
      }
    }
  }
  return built;
}

}  // namespace concierge::core
