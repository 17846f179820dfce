#include "store/common/sql_records.h"

#include <chrono>
#include <unordered_map>
#include <utility>

namespace concierge::store {

Status AuditNodeMissingError(int level, int64_t index) {
  return DataLossError("audit log: " + std::string(level == 0 ? "leaf " : "tree node ") + std::to_string(index) +
                       (level == 0 ? "" : " at level " + std::to_string(level)) + " is missing");
}

Status ValidateKeyState(std::string_view field, const std::string& state) {
  if (!Contains(kKeyStates, state)) {
    return FieldError(std::string(field), "unknown key state \"" + state + "\"");
  }
  return Status::Ok();
}

Status ValidatePolicy(const PolicyRecord& p) {
  if (p.tenant_id.empty()) return FieldError("tenant_id", "tenant id is empty");
  if (p.version < 1) return FieldError("version", "policy version must be >= 1");
  if (p.body_json.empty()) return FieldError("body_json", "policy body is empty");
  if (p.policy_hash.empty()) return FieldError("policy_hash", "policy hash is empty");
  return Status::Ok();
}

Status ValidateKey(const KeyRecord& k) {
  if (k.key_id.empty()) return FieldError("key_id", "key id is empty");
  if (k.tenant_id.empty()) return FieldError("tenant_id", "tenant id is empty");
  if (k.version < 1) return FieldError("version", "key version must be >= 1");
  return ValidateKeyState("state", k.state);
}

Status ValidateNewTenant(const PolicyRecord& policy, const KeyRecord& key) {
  RETURN_IF_ERROR(ValidatePolicy(policy));
  RETURN_IF_ERROR(ValidateKey(key));
  if (key.tenant_id != policy.tenant_id) {
    return FieldError("tenant_id", "key and policy name different tenants");
  }
  return Status::Ok();
}

Status ValidateRetirementState(const std::string& new_key_state) {
  RETURN_IF_ERROR(ValidateKeyState("new_key_state", new_key_state));
  if (Contains(kInServiceKeyStates, new_key_state)) {
    return FieldError(
        "new_key_state",
        "keys of a deleted tenant must leave service, not become \"" + new_key_state + "\"");
  }
  return Status::Ok();
}

Status ValidateApiKey(const ApiKeyRecord& key) {
  if (key.id.empty()) return FieldError("id", "API key id is empty");
  if (key.secret_hash.empty()) return FieldError("secret_hash", "API key secret hash is empty");
  if (!Contains(kRoles, key.role)) return FieldError("role", "unknown role \"" + key.role + "\"");
  return Status::Ok();
}

Status ValidateCa(const CaRecord& ca) {
  if (ca.key_uri.empty() || ca.cert_pem.empty())
    return InvalidArgumentError("CA record is incomplete");
  return Status::Ok();
}

Status ValidateNewCertificate(const CertificateRecord& c) {
  if (c.serial.empty() || c.issuer.empty() || c.key_id.empty() || c.pem.empty()) {
    return InvalidArgumentError("certificate record is incomplete");
  }
  if (c.status != "active") return FieldError("status", "a new certificate must be \"active\"");
  return Status::Ok();
}

std::optional<TimePoint> StampIf(bool condition, TimePoint at) {
  return condition ? std::optional<TimePoint>(at) : std::nullopt;
}

Status TenantNotFound(const std::string& tenant_id) {
  return NotFoundError("tenant " + tenant_id + " not found");
}

Status TenantNotFoundOrDeleted(const std::string& tenant_id) {
  return NotFoundError("tenant " + tenant_id + " not found or deleted");
}

Status PolicyVersionNotAbove(int64_t version, int64_t max_version) {
  return FieldError("version", "policy version " + std::to_string(version) +
                                   " is not above the tenant's latest version " +
                                   std::to_string(max_version));
}

Status PolicyChangedConcurrently(const std::string& tenant_id, int64_t active, int64_t expected) {
  return AbortedError("policy of tenant " + tenant_id +
                      " changed concurrently: active version is " + std::to_string(active) +
                      ", expected " + std::to_string(expected));
}

Status KeyChangedConcurrently(const std::string& key_id, const std::string& current,
                              const std::string& expected) {
  return AbortedError("key " + key_id + " changed concurrently: state is \"" + current +
                      "\", expected \"" + expected + "\"");
}

Status OtherKeyActive(const std::string& tenant_id, const std::string& active_key_id) {
  return FailedPreconditionError("tenant " + tenant_id + " already has an active key (" +
                                 active_key_id + "); move it out of \"active\" first");
}

Status CannotActivateInDeletedTenant(const std::string& key_id, const std::string& tenant_id) {
  return FailedPreconditionError("cannot activate key " + key_id + ": tenant " + tenant_id +
                                 " is deleted");
}

Status NoActiveKey(const std::string& tenant_id) {
  return NotFoundError("tenant " + tenant_id + " has no active key");
}

Status KeyNotFound(const std::string& key_id) {
  return NotFoundError("key " + key_id + " not found");
}

Status ApiKeyNotFound(const std::string& id) {
  return NotFoundError("API key " + id + " not found");
}

Status PolicyVersionNotFound(const std::string& tenant_id, int64_t version) {
  return NotFoundError("policy version " + std::to_string(version) + " of tenant " + tenant_id +
                       " not found");
}

Status NoActivePolicy(const std::string& tenant_id) {
  return NotFoundError("no active policy for tenant " + tenant_id);
}

Status CaAlreadyInitialised() {
  return AlreadyExistsError("the built-in CA is already initialised");
}

Status CaNotInitialised() { return NotFoundError("the built-in CA is not initialised"); }

Status CertificateNotFound(const std::string& serial) {
  return NotFoundError("certificate " + serial + " not found");
}

Status NoActiveCertificate(const std::string& key_id) {
  return NotFoundError("key " + key_id + " has no active certificate");
}

Status NoCertificate(const std::string& key_id) {
  return NotFoundError("key " + key_id + " has no certificate");
}

Status SchemaBehindError(int db_version, int needed, std::string_view who) {
  return FailedPreconditionError("database schema is at version " + std::to_string(db_version) +
                                 " but " + std::string(who) + " needs " + std::to_string(needed) +
                                 "; run migrations first");
}

Status ValidateRotation(const RotationRecord& r) {
  if (r.rotation_id.empty()) return FieldError("rotation_id", "rotation id is empty");
  if (r.tenant_id.empty()) return FieldError("tenant_id", "tenant id is empty");
  if (!Contains(kRotationStates, r.state)) {
    return FieldError("state", "unknown rotation state \"" + r.state + "\"");
  }
  if (r.version < 1) return FieldError("version", "rotation version must be >= 1");
  return Status::Ok();
}

Status ValidateKeySwap(const KeySwap& swap, const RotationRecord& rotation) {
  RETURN_IF_ERROR(ValidateRotation(rotation));
  if (swap.to_key_id.empty()) return FieldError("to_key_id", "the key to activate is not named");
  if (swap.tenant_id != rotation.tenant_id) {
    return FieldError("tenant_id", "swap and rotation name different tenants");
  }
  RETURN_IF_ERROR(ValidateKeyState("to_expected_state", swap.to_expected_state));
  if (!swap.from_key_id.empty()) {
    RETURN_IF_ERROR(ValidateKeyState("from_new_state", swap.from_new_state));
    if (swap.from_new_state == "active") {
      return FieldError("from_new_state", "the key leaving service cannot stay \"active\"");
    }
  }
  return Status::Ok();
}

Status ValidateRotationEvents(const std::vector<RotationEvent>& events) {
  for (const RotationEvent& e : events) {
    if (e.event.empty()) return FieldError("event", "rotation event name is empty");
  }
  return Status::Ok();
}

Status ValidateRotationEvidence(const RotationEvidenceRecord& e) {
  if (e.rotation_id.empty() || e.outcome.empty() || e.sha256.empty() || e.pack.empty()) {
    return InvalidArgumentError("rotation evidence record is incomplete");
  }
  return Status::Ok();
}

Status ValidateEvidenceKey(const EvidenceKeyRecord& k) {
  if (k.key_uri.empty() || k.public_key_pem.empty()) {
    return InvalidArgumentError("evidence key record is incomplete");
  }
  return Status::Ok();
}

Status KeyOfOtherTenant(const std::string& key_id, const std::string& tenant_id) {
  return FailedPreconditionError("key " + key_id + " does not belong to tenant " + tenant_id);
}

Status RotationNotFound(const std::string& rotation_id) {
  return NotFoundError("rotation " + rotation_id + " not found");
}

Status RotationAlreadyExists(const std::string& rotation_id) {
  return AlreadyExistsError("rotation " + rotation_id + " already exists");
}

Status RotationChangedConcurrently(const std::string& rotation_id, int64_t stored, int64_t expected) {
  return AbortedError("rotation " + rotation_id + " changed concurrently: version is " +
                      std::to_string(stored) + ", expected " + std::to_string(expected));
}

Status OpenRotationConflict(const Status& st, const std::string& tenant_id) {
  if (st.code() != StatusCode::kAlreadyExists) return st;
  return AlreadyExistsError("tenant " + tenant_id + " already has an open rotation");
}

Status RotationEvidenceExists(const std::string& rotation_id, const std::string& outcome) {
  return AlreadyExistsError("rotation " + rotation_id + " already has a " + outcome + " evidence pack");
}

Status RotationEvidenceNotFound(const std::string& rotation_id, const std::string& outcome) {
  return NotFoundError("rotation " + rotation_id + " has no " + outcome + " evidence pack");
}

Status EvidenceKeyExists() { return AlreadyExistsError("the evidence key already exists"); }

Status NoEvidenceKey() { return NotFoundError("there is no evidence key yet"); }

int64_t ToUnixMillis(TimePoint t) {
  return std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

TimePoint FromUnixMillis(int64_t ms) {
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(std::chrono::milliseconds(ms)));
}

Status ValidateLedgerEntries(const std::vector<LedgerEntry>& entries) {
  for (size_t i = 0; i < entries.size(); ++i) {
    const LedgerEntry& e = entries[i];
    if (e.tenant_id.empty()) {
      return FieldError("tenant_id", "ledger entry " + std::to_string(i) + ": tenant id is empty");
    }
    if (e.key_id.empty()) {
      return FieldError("key_id", "ledger entry " + std::to_string(i) + ": key id is empty");
    }
    // PostgreSQL text cannot hold NUL; refusing it on both engines keeps them alike.
    const std::pair<const char*, const std::string*> texts[] = {
        {"tenant_id", &e.tenant_id},
        {"key_id", &e.key_id},
        {"cert_serial", &e.cert_serial},
        {"algorithm", &e.algorithm},
        {"kind", &e.kind},
        {"digest_hex", &e.digest_hex},
        {"asset_id", &e.asset_id},
        {"request_id", &e.request_id},
        {"api_key_id", &e.api_key_id},
        {"client_address", &e.client_address},
        {"policy_hash", &e.policy_hash}};
    for (const auto& [field, value] : texts) {
      if (value->find('\0') != std::string::npos) {
        return FieldError(
            field, "ledger entry " + std::to_string(i) + ": " + field + " contains a NUL byte");
      }
    }
  }
  return Status::Ok();
}

Status ValidateLedgerQuery(const LedgerQuery& query) {
  if (query.tenant_id.empty()) return FieldError("tenant_id", "tenant id is required");
  if (query.limit < 1 || query.limit > kMaxLedgerPageSize) {
    return FieldError("limit", "limit must be between 1 and " + std::to_string(kMaxLedgerPageSize) +
                                   ", got " + std::to_string(query.limit));
  }
  if (query.after_seq < 0) return FieldError("after_seq", "cursor must not be negative");
  return Status::Ok();
}

// --- incidents, webhooks, re-sign jobs ---------------------------------------------------

Status ValidatePageLimit(int limit) {
  if (limit < 1 || limit > kMaxIncidentPageSize) {
    return FieldError("limit", "limit must be between 1 and " + std::to_string(kMaxIncidentPageSize) +
                                   ", got " + std::to_string(limit));
  }
  return Status::Ok();
}

Status ValidateIncident(const IncidentRecord& r) {
  if (r.incident_id.empty()) return FieldError("incident_id", "incident id is empty");
  if (r.type.empty()) return FieldError("type", "incident type is empty");
  if (r.severity.empty()) return FieldError("severity", "incident severity is empty");
  if (r.state.empty()) return FieldError("state", "incident state is empty");
  return Status::Ok();
}

Status ValidateIncidentEvent(const IncidentEvent& e) {
  if (e.actor.empty()) return FieldError("actor", "timeline event has no actor");
  if (e.action.empty()) return FieldError("action", "timeline event has no action");
  return Status::Ok();
}

Status ValidateIncidentTransition(const IncidentEvent& e) {
  RETURN_IF_ERROR(ValidateIncidentEvent(e));
  if (e.to_state.empty()) return FieldError("to_state", "state change names no new state");
  return Status::Ok();
}

Status ValidateWebhook(const WebhookRecord& w) {
  if (w.webhook_id.empty()) return FieldError("webhook_id", "webhook id is empty");
  if (w.url.empty()) return FieldError("url", "webhook url is empty");
  if (w.secret_sealed.empty()) return FieldError("secret_sealed", "webhook has no sealed secret");
  return Status::Ok();
}

Status ValidateWebhookEvent(const WebhookEventRecord& e) {
  if (e.event_id.empty()) return FieldError("event_id", "webhook event id is empty");
  if (e.type.empty()) return FieldError("type", "webhook event type is empty");
  return Status::Ok();
}

Status ValidateDeliveryState(const std::string& state) {
  if (state != "pending" && state != "delivered" && state != "failed") {
    return FieldError("state", "unknown delivery state \"" + state + "\"");
  }
  return Status::Ok();
}

Status ValidateResignJob(const ResignJobRecord& j) {
  if (j.job_id.empty()) return FieldError("job_id", "job id is empty");
  if (j.compromised_key_id.empty()) return FieldError("compromised_key_id", "compromised key id is empty");
  if (j.new_key_id.empty()) return FieldError("new_key_id", "new key id is empty");
  return Status::Ok();
}

Status ValidateNewJobState(const std::string& new_state) {
  if (new_state.empty()) return FieldError("new_state", "new job state is empty");
  return Status::Ok();
}

Status ValidateJobTotal(int64_t total) {
  if (total < 0) return FieldError("total", "job total must not be negative");
  return Status::Ok();
}

bool IsTerminalJobState(std::string_view state) {
  return state == "completed" || state == "failed" || state == "cancelled";
}

bool IsClosedIncidentState(std::string_view state) { return state == "resolved" || state == "closed"; }

Status IncidentNotFound(const std::string& incident_id) {
  return NotFoundError("incident " + incident_id + " not found");
}

Status IncidentChangedConcurrently(const std::string& incident_id, const std::string& state,
                                   const std::string& expected) {
  return AbortedError("incident " + incident_id + " changed concurrently: state is \"" + state +
                      "\", expected \"" + expected + "\"");
}

Status IncidentNotOpen(const std::string& incident_id, const std::string& state) {
  return FailedPreconditionError("incident " + incident_id + " is " + state + "; open a new one");
}

Status NoOpenIncident(const std::string& type) {
  return NotFoundError("no open " + type + " incident for this detection");
}

Status WebhookNotFound(const std::string& webhook_id) {
  return NotFoundError("webhook " + webhook_id + " not found");
}

Status WebhookEventNotFound(const std::string& event_id) {
  return NotFoundError("webhook event " + event_id + " not found");
}

Status NoDelivery(const std::string& event_id, const std::string& webhook_id) {
  return NotFoundError("no delivery of event " + event_id + " to webhook " + webhook_id);
}

Status JobNotFound(const std::string& job_id) { return NotFoundError("job " + job_id + " not found"); }

Status JobChangedConcurrently(const std::string& job_id, const std::string& state,
                              const std::string& expected) {
  return AbortedError("job " + job_id + " changed concurrently: state is \"" + state + "\", expected \"" +
                      expected + "\"");
}

// --- mass re-sign in the ledger -----------------------------------------------------------

Status ValidateResignScan(const ResignScan& scan) {
  if (scan.tenant_id.empty()) return FieldError("tenant_id", "tenant id is required");
  if (scan.key_id.empty()) return FieldError("key_id", "key id is required");
  if (scan.after_seq < 0) return FieldError("after_seq", "cursor must not be negative");
  return ValidateResignResultsLimit(scan.limit);
}

Status ValidateResignResultsLimit(int limit) {
  if (limit < 1 || limit > kMaxLedgerPageSize) {
    return FieldError("limit", "limit must be between 1 and " + std::to_string(kMaxLedgerPageSize));
  }
  return Status::Ok();
}

Status ValidateResignBatch(const ResignBatch& b) {
  if (b.job_id.empty()) return FieldError("job_id", "job id is empty");
  if (b.new_cursor < b.expected_cursor) return FieldError("new_cursor", "a batch cannot move the cursor back");
  for (size_t i = 0; i < b.rows.size(); ++i) {
    const LedgerEntry& e = b.rows[i];
    if (e.kind != "resign" || e.resign_of_seq <= 0 || e.resign_of_seq > b.new_cursor ||
        e.resign_of_seq <= b.expected_cursor) {
      return FieldError("rows", "re-sign row " + std::to_string(i) +
                                    " must be of kind \"resign\" and re-sign a seq inside the batch's range");
    }
    if (e.tenant_id.empty() || e.key_id.empty()) {
      return FieldError("rows", "re-sign row " + std::to_string(i) + " has no tenant or key id");
    }
  }
  for (const ResignResult& r : b.results) {
    if (r.original_seq <= b.expected_cursor || r.original_seq > b.new_cursor) {
      return FieldError("results",
                        "result for seq " + std::to_string(r.original_seq) + " is outside the batch's range");
    }
  }
  return Status::Ok();
}

Status CheckResignJobForBatch(const ResignBatch& b, bool found, const std::string& state, int64_t cursor_seq) {
  if (!found) return JobNotFound(b.job_id);
  if (state != "running") return AbortedError("job " + b.job_id + " is " + state + ", not running");
  if (cursor_seq != b.expected_cursor) {
    return AbortedError("job " + b.job_id + " cursor is at " + std::to_string(cursor_seq) + ", expected " +
                        std::to_string(b.expected_cursor) + " (another runner moved it)");
  }
  return Status::Ok();
}

StatusOr<ResignTally> LinkResignResults(ResignBatch& b) {
  std::unordered_map<int64_t, int64_t> new_seq_of;  // original seq -> new row seq
  for (const LedgerEntry& e : b.rows) new_seq_of[e.resign_of_seq] = e.seq;
  ResignTally t;
  for (ResignResult& r : b.results) {
    if (r.status == "resigned") {
      auto it = new_seq_of.find(r.original_seq);
      if (it == new_seq_of.end()) {
        return FieldError("results", "result for seq " + std::to_string(r.original_seq) + " has no re-sign row");
      }
      r.new_seq = it->second;
      ++t.resigned;
    } else if (r.status == "needs_client") {
      ++t.needs_client;
    } else if (r.status == "already_resigned") {
      ++t.already_resigned;
    } else {
      return FieldError("results", "unknown result status \"" + r.status + "\"");
    }
  }
  return t;
}

void ClearResignSeqs(ResignBatch& b) {
  for (LedgerEntry& e : b.rows) e.seq = 0;
  for (ResignResult& r : b.results) {
    if (r.status == "resigned") r.new_seq = 0;
  }
}

}  // namespace concierge::store
