// What the SQL stores (SQLite and PostgreSQL) share above the database API:
// input rules, the wording of their errors, the time column format, and the
// column lists with the readers that turn a result row into a record.
//
// Keeping these in one place is what makes the two engines behave the same:
// a rule or a message changed here changes for both, and a column added to a
// list is read by both. The readers are templates over a Row type with
// ColumnText / ColumnInt / ColumnTime / ColumnOptionalTime(int col), so each
// engine passes its own cursor without a virtual call per column.
//
// Stateless and thread-safe.
#ifndef CONCIERGE_STORE_COMMON_SQL_RECORDS_H_
#define CONCIERGE_STORE_COMMON_SQL_RECORDS_H_

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "concierge/clock.h"
#include "concierge/ledger.h"
#include "concierge/status.h"
#include "concierge/store.h"

namespace concierge::store {

// --- rules ------------------------------------------------------------------------

inline constexpr std::array<std::string_view, 8> kKeyStates = {
    "pending", "standby", "active", "retiring", "retired", "compromised", "destroyed", "disabled"};
// States in which a key may still sign or be about to; DeleteTenant moves keys
// out of these.
inline constexpr std::array<std::string_view, 4> kInServiceKeyStates = {"pending", "standby", "active",
                                                                        "retiring"};
// States that end a key's service life and so stamp retired_at.
inline constexpr std::array<std::string_view, 3> kRetiredAtStates = {"retired", "compromised",
                                                                     "destroyed"};
inline constexpr std::array<std::string_view, 5> kRoles = {"admin", "security-officer", "operator",
                                                           "signer", "auditor"};

template <size_t N>
bool Contains(const std::array<std::string_view, N>& set, std::string_view value) {
  return std::find(set.begin(), set.end(), value) != set.end();
}

Status ValidateKeyState(std::string_view field, const std::string& state);
Status ValidatePolicy(const PolicyRecord& p);
Status ValidateKey(const KeyRecord& k);
// CreateTenant: both records valid and naming the same tenant.
Status ValidateNewTenant(const PolicyRecord& policy, const KeyRecord& key);
// DeleteTenant's target state: a known state that takes keys out of service.
Status ValidateRetirementState(const std::string& new_key_state);
Status ValidateApiKey(const ApiKeyRecord& key);
Status ValidateCa(const CaRecord& ca);
Status ValidateNewCertificate(const CertificateRecord& c);

// What the write paths check about a tenant before they change it.
struct TenantState {
  bool exists = false;
  bool deleted = false;
  int64_t active_policy_version = 0;
};

// `at` when `condition` holds, else no time (for COALESCE-stamped columns).
std::optional<TimePoint> StampIf(bool condition, TimePoint at);
// What UpdateKeyState stamps when a key enters `new_state`.
inline std::optional<TimePoint> ActivatedStamp(const std::string& new_state, TimePoint at) {
  return StampIf(new_state == "active", at);
}
inline std::optional<TimePoint> RetiredStamp(const std::string& new_state, TimePoint at) {
  return StampIf(Contains(kRetiredAtStates, new_state), at);
}

// --- shared error wording -------------------------------------------------------------

Status TenantNotFound(const std::string& tenant_id);
Status TenantNotFoundOrDeleted(const std::string& tenant_id);
Status PolicyVersionNotAbove(int64_t version, int64_t max_version);
Status PolicyChangedConcurrently(const std::string& tenant_id, int64_t active, int64_t expected);
Status KeyChangedConcurrently(const std::string& key_id, const std::string& current,
                              const std::string& expected);
Status OtherKeyActive(const std::string& tenant_id, const std::string& active_key_id);
Status CannotActivateInDeletedTenant(const std::string& key_id, const std::string& tenant_id);
Status NoActiveKey(const std::string& tenant_id);
Status KeyNotFound(const std::string& key_id);
Status ApiKeyNotFound(const std::string& id);
Status PolicyVersionNotFound(const std::string& tenant_id, int64_t version);
Status NoActivePolicy(const std::string& tenant_id);
Status CaAlreadyInitialised();
Status CaNotInitialised();
Status CertificateNotFound(const std::string& serial);
Status NoActiveCertificate(const std::string& key_id);
Status NoCertificate(const std::string& key_id);
// The schema is below what this code needs (`who`: "this build", "the ledger").
Status SchemaBehindError(int db_version, int needed, std::string_view who);

// --- time columns -----------------------------------------------------------------------

// Unix milliseconds, the storage format for every time column. Floors, so
// pre-1970 instants round consistently.
int64_t ToUnixMillis(TimePoint t);
TimePoint FromUnixMillis(int64_t ms);

// --- column lists and row readers (kept together so the indexes match) ------------------

inline std::string Sql(std::string_view a, std::string_view b = {}, std::string_view c = {}) {
  std::string out(a);
  out.append(b).append(c);
  return out;
}

inline constexpr std::string_view kTenantColumns =
    "tenant_id, active_policy_version, deleted, created_at, updated_at";
template <typename Row>
TenantRecord ReadTenant(const Row& s) {
  TenantRecord t;
  t.tenant_id = s.ColumnText(0);
  t.active_policy_version = s.ColumnInt(1);
  t.deleted = s.ColumnInt(2) != 0;
  t.created_at = s.ColumnTime(3);
  t.updated_at = s.ColumnTime(4);
  return t;
}

inline constexpr std::string_view kPolicyColumns =
    "tenant_id, version, body_json, policy_hash, created_by, created_at";
template <typename Row>
PolicyRecord ReadPolicy(const Row& s) {
  PolicyRecord p;
  p.tenant_id = s.ColumnText(0);
  p.version = s.ColumnInt(1);
  p.body_json = s.ColumnText(2);
  p.policy_hash = s.ColumnText(3);
  p.created_by = s.ColumnText(4);
  p.created_at = s.ColumnTime(5);
  return p;
}

inline constexpr std::string_view kKeyColumns =
    "key_id, tenant_id, version, algorithm, provider, key_uri, state, public_key_pem, "
    "fingerprint, attestation, created_at, activated_at, retired_at";
template <typename Row>
KeyRecord ReadKey(const Row& s) {
  KeyRecord k;
  k.key_id = s.ColumnText(0);
  k.tenant_id = s.ColumnText(1);
  k.version = s.ColumnInt(2);
  k.algorithm = s.ColumnText(3);
  k.provider = s.ColumnText(4);
  k.key_uri = s.ColumnText(5);
  k.state = s.ColumnText(6);
  k.public_key_pem = s.ColumnText(7);
  k.fingerprint = s.ColumnText(8);
  k.attestation = s.ColumnText(9);
  k.created_at = s.ColumnTime(10);
  k.activated_at = s.ColumnOptionalTime(11);
  k.retired_at = s.ColumnOptionalTime(12);
  return k;
}

inline constexpr std::string_view kApiKeyColumns =
    "id, secret_hash, role, tenant_id, name, created_by, created_at, revoked_at";
template <typename Row>
ApiKeyRecord ReadApiKey(const Row& s) {
  ApiKeyRecord a;
  a.id = s.ColumnText(0);
  a.secret_hash = s.ColumnText(1);
  a.role = s.ColumnText(2);
  a.tenant_id = s.ColumnText(3);  // NULL ("all tenants") reads back as ""
  a.name = s.ColumnText(4);
  a.created_by = s.ColumnText(5);
  a.created_at = s.ColumnTime(6);
  a.revoked_at = s.ColumnOptionalTime(7);
  return a;
}

inline constexpr std::string_view kCertColumns =
    "issuer, serial, tenant_id, key_id, pem, chain_pem, source, status, not_before, not_after, "
    "created_at, revoked_at";
template <typename Row>
CertificateRecord ReadCert(const Row& s) {
  CertificateRecord c;
  c.issuer = s.ColumnText(0);
  c.serial = s.ColumnText(1);
  c.tenant_id = s.ColumnText(2);
  c.key_id = s.ColumnText(3);
  c.pem = s.ColumnText(4);
  c.chain_pem = s.ColumnText(5);
  c.source = s.ColumnText(6);
  c.status = s.ColumnText(7);
  c.not_before = s.ColumnTime(8);
  c.not_after = s.ColumnTime(9);
  c.created_at = s.ColumnTime(10);
  c.revoked_at = s.ColumnOptionalTime(11);
  return c;
}

inline constexpr std::string_view kCaColumns =
    "provider, key_uri, algorithm, cert_pem, crl_number, created_at";
template <typename Row>
CaRecord ReadCa(const Row& s) {
  CaRecord ca;
  ca.provider = s.ColumnText(0);
  ca.key_uri = s.ColumnText(1);
  ca.algorithm = s.ColumnText(2);
  ca.cert_pem = s.ColumnText(3);
  ca.crl_number = s.ColumnInt(4);
  ca.created_at = s.ColumnTime(5);
  return ca;
}

// --- rotations (schema version 6) -----------------------------------------------------

inline constexpr std::array<std::string_view, 7> kRotationStates = {
    "scheduled", "running", "awaiting_certificate", "completed", "rolled_back", "failed", "cancelled"};

Status ValidateRotation(const RotationRecord& r);
// SwapActiveKey's arguments: the rotation valid, the swap naming its tenant
// and a key to activate, the old key leaving "active" for a known state.
Status ValidateKeySwap(const KeySwap& swap, const RotationRecord& rotation);
// Every event has a name (kInvalidArgument naming "event").
Status ValidateRotationEvents(const std::vector<RotationEvent>& events);
Status ValidateRotationEvidence(const RotationEvidenceRecord& e);
Status ValidateEvidenceKey(const EvidenceKeyRecord& k);

Status KeyOfOtherTenant(const std::string& key_id, const std::string& tenant_id);
Status RotationNotFound(const std::string& rotation_id);
Status RotationAlreadyExists(const std::string& rotation_id);
Status RotationChangedConcurrently(const std::string& rotation_id, int64_t stored, int64_t expected);
// The one-open-rotation unique index names the rule; say it in words
// (`st` unchanged unless it is kAlreadyExists).
Status OpenRotationConflict(const Status& st, const std::string& tenant_id);
Status RotationEvidenceExists(const std::string& rotation_id, const std::string& outcome);
Status RotationEvidenceNotFound(const std::string& rotation_id, const std::string& outcome);
Status EvidenceKeyExists();
Status NoEvidenceKey();

// Both engines order rotation listings by (scheduled_at, created_at,
// rotation_id); rotation_id compares bytewise (COLLATE "C" on PostgreSQL).
inline constexpr std::string_view kRotationColumns =
    "rotation_id, tenant_id, state, phase, trigger_kind, scheduled_at, owner, approval_required, "
    "approved_by, approved_at, created_by, cert_source, policy_version, policy_hash, old_key_id, "
    "new_key_id, csr_pem, cert_serial, canary_results, error, started_at, cutover_at, grace_until, "
    "finished_at, created_at, updated_at, version";
template <typename Row>
RotationRecord ReadRotation(const Row& s) {
  RotationRecord r;
  r.rotation_id = s.ColumnText(0);
  r.tenant_id = s.ColumnText(1);
  r.state = s.ColumnText(2);
  r.phase = s.ColumnText(3);
  r.trigger = s.ColumnText(4);
  r.scheduled_at = s.ColumnTime(5);
  r.owner = s.ColumnText(6);
  r.approval_required = s.ColumnInt(7) != 0;
  r.approved_by = s.ColumnText(8);
  r.approved_at = s.ColumnOptionalTime(9);
  r.created_by = s.ColumnText(10);
  r.cert_source = s.ColumnText(11);
  r.policy_version = s.ColumnInt(12);
  r.policy_hash = s.ColumnText(13);
  r.old_key_id = s.ColumnText(14);
  r.new_key_id = s.ColumnText(15);
  r.csr_pem = s.ColumnText(16);
  r.cert_serial = s.ColumnText(17);
  r.canary_results = s.ColumnText(18);
  r.error = s.ColumnText(19);
  r.started_at = s.ColumnOptionalTime(20);
  r.cutover_at = s.ColumnOptionalTime(21);
  r.grace_until = s.ColumnOptionalTime(22);
  r.finished_at = s.ColumnOptionalTime(23);
  r.created_at = s.ColumnTime(24);
  r.updated_at = s.ColumnTime(25);
  r.version = s.ColumnInt(26);
  return r;
}

inline constexpr std::string_view kRotationEventColumns =
    "rotation_id, seq, at, phase, event, detail, actor";
template <typename Row>
RotationEvent ReadRotationEvent(const Row& s) {
  RotationEvent e;
  e.rotation_id = s.ColumnText(0);
  e.seq = s.ColumnInt(1);
  e.at = s.ColumnTime(2);
  e.phase = s.ColumnText(3);
  e.event = s.ColumnText(4);
  e.detail = s.ColumnText(5);
  e.actor = s.ColumnText(6);
  return e;
}

// The pack column (4) is read by each engine (bytes, not text).
inline constexpr std::string_view kRotationEvidenceColumns =
    "rotation_id, outcome, created_at, sha256, pack";
inline constexpr std::string_view kEvidenceKeyColumns =
    "provider, key_uri, algorithm, public_key_pem, fingerprint, created_at";
template <typename Row>
EvidenceKeyRecord ReadEvidenceKey(const Row& s) {
  EvidenceKeyRecord k;
  k.provider = s.ColumnText(0);
  k.key_uri = s.ColumnText(1);
  k.algorithm = s.ColumnText(2);
  k.public_key_pem = s.ColumnText(3);
  k.fingerprint = s.ColumnText(4);
  k.created_at = s.ColumnTime(5);
  return k;
}

// --- the signing ledger -------------------------------------------------------------------

// Largest page ListLedger returns.
inline constexpr int kMaxLedgerPageSize = 1000;
// The schema version the ledger needs: v3 created the table, v5 the audit log
// written in the same transaction, v7 the re-sign linkage (resign_of_seq) and
// the job tables.
inline constexpr int kLedgerMinSchemaVersion = 7;

// Columns a ledger INSERT supplies (everything but seq), in bind order.
inline constexpr std::string_view kLedgerInsertColumns =
    "tenant_id, key_id, key_version, cert_serial, algorithm, kind, digest_hex, asset_id, "
    "request_id, api_key_id, client_address, policy_hash, signed_at";
inline constexpr std::string_view kLedgerColumns =
    "seq, tenant_id, key_id, key_version, cert_serial, algorithm, kind, digest_hex, asset_id, "
    "request_id, api_key_id, client_address, policy_hash, signed_at, resign_of_seq";

// audit_entries columns, in AuditRecord order (leaf_hash last).
inline constexpr std::string_view kAuditColumns =
    "idx, time_ms, actor, tenant_id, action, target, outcome, request_id, client_address, policy_hash, detail, "
    "leaf_hash";

// The audit log's size: MAX on the primary key is one index descent, and
// indexes are dense from 0.
inline constexpr std::string_view kAuditSizeSql = "SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_entries";

// DataLoss naming the first missing leaf (level 0) or tree node of a range
// read by AuditNodes.
Status AuditNodeMissingError(int level, int64_t index);

template <typename Row>
LedgerEntry ReadLedgerEntry(const Row& s) {
  LedgerEntry e;
  e.seq = s.ColumnInt(0);
  e.tenant_id = s.ColumnText(1);
  e.key_id = s.ColumnText(2);
  e.key_version = s.ColumnInt(3);
  e.cert_serial = s.ColumnText(4);
  e.algorithm = s.ColumnText(5);
  e.kind = s.ColumnText(6);
  e.digest_hex = s.ColumnText(7);
  e.asset_id = s.ColumnText(8);
  e.request_id = s.ColumnText(9);
  e.api_key_id = s.ColumnText(10);
  e.client_address = s.ColumnText(11);
  e.policy_hash = s.ColumnText(12);
  e.signed_at = s.ColumnTime(13);
  e.resign_of_seq = s.ColumnInt(14);  // NULL reads as 0
  return e;
}

// Every entry names a tenant and a key, and no text holds a NUL byte
// (kInvalidArgument naming the field and the entry's index otherwise).
Status ValidateLedgerEntries(const std::vector<LedgerEntry>& entries);
// tenant_id required, limit 1..kMaxLedgerPageSize, after_seq >= 0.
Status ValidateLedgerQuery(const LedgerQuery& query);

// --- incidents, webhooks, re-sign jobs (schema version 7) -------------------------------

// Listing limits of incidents, webhook claims and delivery histories.
inline constexpr int kMaxIncidentPageSize = 1000;
Status ValidatePageLimit(int limit);  // 1..kMaxIncidentPageSize, field "limit"
Status ValidateIncident(const IncidentRecord& r);
Status ValidateIncidentEvent(const IncidentEvent& e);
// TransitionIncident: the event names the state it moves to.
Status ValidateIncidentTransition(const IncidentEvent& e);
Status ValidateWebhook(const WebhookRecord& w);
Status ValidateWebhookEvent(const WebhookEventRecord& e);
// RecordWebhookAttempt: pending | delivered | failed.
Status ValidateDeliveryState(const std::string& state);
Status ValidateResignJob(const ResignJobRecord& j);
Status ValidateNewJobState(const std::string& new_state);
Status ValidateJobTotal(int64_t total);
// States after which a job never runs again (finished_at is stamped).
bool IsTerminalJobState(std::string_view state);
// Resolved or closed: no longer open (as the SQL filters and the partial
// unique index of migration v7 say it too).
bool IsClosedIncidentState(std::string_view state);

Status IncidentNotFound(const std::string& incident_id);
Status IncidentChangedConcurrently(const std::string& incident_id, const std::string& state,
                                   const std::string& expected);
Status IncidentNotOpen(const std::string& incident_id, const std::string& state);
Status NoOpenIncident(const std::string& type);
Status WebhookNotFound(const std::string& webhook_id);
Status WebhookEventNotFound(const std::string& event_id);
Status NoDelivery(const std::string& event_id, const std::string& webhook_id);
Status JobNotFound(const std::string& job_id);
Status JobChangedConcurrently(const std::string& job_id, const std::string& state,
                              const std::string& expected);

inline constexpr std::string_view kIncidentColumns =
    "incident_id, tenant_id, type, severity, state, title, detector, dedup_key, key_id, occurrences, "
    "details_json, playbook_json, created_by, created_at, updated_at, resolved_at, closed_at";
template <typename Row>
IncidentRecord ReadIncident(const Row& s) {
  IncidentRecord r;
  r.incident_id = s.ColumnText(0);
  r.tenant_id = s.ColumnText(1);
  r.type = s.ColumnText(2);
  r.severity = s.ColumnText(3);
  r.state = s.ColumnText(4);
  r.title = s.ColumnText(5);
  r.detector = s.ColumnText(6);
  r.dedup_key = s.ColumnText(7);
  r.key_id = s.ColumnText(8);
  r.occurrences = s.ColumnInt(9);
  r.details_json = s.ColumnText(10);
  r.playbook_json = s.ColumnText(11);
  r.created_by = s.ColumnText(12);
  r.created_at = s.ColumnTime(13);
  r.updated_at = s.ColumnTime(14);
  r.resolved_at = s.ColumnOptionalTime(15);
  r.closed_at = s.ColumnOptionalTime(16);
  return r;
}

inline constexpr std::string_view kIncidentEventColumns =
    "incident_id, seq, at, actor, action, from_state, to_state, detail";
template <typename Row>
IncidentEvent ReadIncidentEvent(const Row& s) {
  IncidentEvent e;
  e.incident_id = s.ColumnText(0);
  e.seq = s.ColumnInt(1);
  e.at = s.ColumnTime(2);
  e.actor = s.ColumnText(3);
  e.action = s.ColumnText(4);
  e.from_state = s.ColumnText(5);
  e.to_state = s.ColumnText(6);
  e.detail = s.ColumnText(7);
  return e;
}

// The webhook, delivery and event readers take a first column `o`, for the
// joined row ClaimWebhookDeliveries reads (kClaimColumns).
inline constexpr std::string_view kWebhookColumns =
    "webhook_id, tenant_id, url, secret_sealed, event_types, created_by, created_at, disabled_at";
template <typename Row>
WebhookRecord ReadWebhook(const Row& s, int o = 0) {
  WebhookRecord w;
  w.webhook_id = s.ColumnText(o + 0);
  w.tenant_id = s.ColumnText(o + 1);
  w.url = s.ColumnText(o + 2);
  w.secret_sealed = s.ColumnText(o + 3);
  w.event_types = s.ColumnText(o + 4);
  w.created_by = s.ColumnText(o + 5);
  w.created_at = s.ColumnTime(o + 6);
  w.disabled_at = s.ColumnOptionalTime(o + 7);
  return w;
}

inline constexpr std::string_view kDeliveryColumns =
    "event_id, webhook_id, state, attempts, next_attempt_at, last_status, last_error, created_at, delivered_at";
template <typename Row>
WebhookDeliveryRecord ReadDelivery(const Row& s, int o = 0) {
  WebhookDeliveryRecord d;
  d.event_id = s.ColumnText(o + 0);
  d.webhook_id = s.ColumnText(o + 1);
  d.state = s.ColumnText(o + 2);
  d.attempts = s.ColumnInt(o + 3);
  d.next_attempt_at = s.ColumnTime(o + 4);
  d.last_status = s.ColumnInt(o + 5);
  d.last_error = s.ColumnText(o + 6);
  d.created_at = s.ColumnTime(o + 7);
  d.delivered_at = s.ColumnOptionalTime(o + 8);
  return d;
}

inline constexpr std::string_view kWebhookEventColumns = "event_id, tenant_id, type, payload_json, created_at";
template <typename Row>
WebhookEventRecord ReadWebhookEvent(const Row& s, int o = 0) {
  WebhookEventRecord e;
  e.event_id = s.ColumnText(o + 0);
  e.tenant_id = s.ColumnText(o + 1);
  e.type = s.ColumnText(o + 2);
  e.payload_json = s.ColumnText(o + 3);
  e.created_at = s.ColumnTime(o + 4);
  return e;
}

// ClaimWebhookDeliveries' joined row: delivery d (9 columns), event e (5),
// webhook w (8), read by ReadDueDelivery.
inline constexpr std::string_view kClaimColumns =
    "d.event_id, d.webhook_id, d.state, d.attempts, d.next_attempt_at, d.last_status, d.last_error, "
    "d.created_at, d.delivered_at, e.event_id, e.tenant_id, e.type, e.payload_json, e.created_at, "
    "w.webhook_id, w.tenant_id, w.url, w.secret_sealed, w.event_types, w.created_by, w.created_at, "
    "w.disabled_at";
// The claim's source and order, oldest due first; the engine adds its due
// filter and limit between them.
inline constexpr std::string_view kClaimFrom =
    " FROM webhook_deliveries d JOIN webhook_events e ON e.event_id = d.event_id "
    "JOIN webhooks w ON w.webhook_id = d.webhook_id";
template <typename Row>
DueWebhookDelivery ReadDueDelivery(const Row& s) {
  return DueWebhookDelivery{ReadDelivery(s, 0), ReadWebhookEvent(s, 9), ReadWebhook(s, 14)};
}

inline constexpr std::string_view kResignJobColumns =
    "job_id, tenant_id, incident_id, compromised_key_id, new_key_id, since, state, cursor_seq, total, "
    "processed, resigned, needs_client, already_resigned, error, created_by, created_at, updated_at, "
    "started_at, finished_at";
template <typename Row>
ResignJobRecord ReadResignJob(const Row& s) {
  ResignJobRecord j;
  j.job_id = s.ColumnText(0);
  j.tenant_id = s.ColumnText(1);
  j.incident_id = s.ColumnText(2);
  j.compromised_key_id = s.ColumnText(3);
  j.new_key_id = s.ColumnText(4);
  j.since = s.ColumnOptionalTime(5);
  j.state = s.ColumnText(6);
  j.cursor_seq = s.ColumnInt(7);
  j.total = s.ColumnInt(8);
  j.processed = s.ColumnInt(9);
  j.resigned = s.ColumnInt(10);
  j.needs_client = s.ColumnInt(11);
  j.already_resigned = s.ColumnInt(12);
  j.error = s.ColumnText(13);
  j.created_by = s.ColumnText(14);
  j.created_at = s.ColumnTime(15);
  j.updated_at = s.ColumnTime(16);
  j.started_at = s.ColumnOptionalTime(17);
  j.finished_at = s.ColumnOptionalTime(18);
  return j;
}

// --- mass re-sign in the ledger (schema version 7) -----------------------------------------

// tenant and key required, cursor >= 0, limit 1..kMaxLedgerPageSize.
Status ValidateResignScan(const ResignScan& scan);
// Before anything is written: every row of kind "resign" re-signs a seq in
// (expected_cursor, new_cursor] and names a tenant and key; every result is
// in that range; the cursor does not move back.
Status ValidateResignBatch(const ResignBatch& b);
// The job check at the start of AppendResignBatch's transaction, given the
// stored job row (found = false when there is none): kNotFound, or kAborted
// unless it is "running" with cursor_seq == b.expected_cursor.
Status CheckResignJobForBatch(const ResignBatch& b, bool found, const std::string& state, int64_t cursor_seq);

// What a batch adds to its job's counters.
struct ResignTally {
  int64_t resigned = 0;
  int64_t needs_client = 0;
  int64_t already_resigned = 0;
};
// Once b.rows have their seq: fills each "resigned" result's new_seq from the
// row that re-signs its original, and counts the results by status.
// kInvalidArgument for a "resigned" result without a row or an unknown status.
StatusOr<ResignTally> LinkResignResults(ResignBatch& b);
// After a failed batch: no seq is reported for rows that do not exist.
void ClearResignSeqs(ResignBatch& b);

inline constexpr std::string_view kResignResultColumns =
    "job_id, original_seq, status, new_seq, original_kind, asset_id, digest_hex, signature_b64, "
    "signature_format, key_id, key_version, detail";
template <typename Row>
ResignResult ReadResignResult(const Row& s) {
  ResignResult r;
  r.job_id = s.ColumnText(0);
  r.original_seq = s.ColumnInt(1);
  r.status = s.ColumnText(2);
  r.new_seq = s.ColumnInt(3);
  r.original_kind = s.ColumnText(4);
  r.asset_id = s.ColumnText(5);
  r.digest_hex = s.ColumnText(6);
  r.signature_b64 = s.ColumnText(7);
  r.signature_format = s.ColumnText(8);
  r.key_id = s.ColumnText(9);
  r.key_version = s.ColumnInt(10);
  r.detail = s.ColumnText(11);
  return r;
}

// ListResignResults' limit: 1..kMaxLedgerPageSize.
Status ValidateResignResultsLimit(int limit);

}  // namespace concierge::store

#endif  // CONCIERGE_STORE_COMMON_SQL_RECORDS_H_
