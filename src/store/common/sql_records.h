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

}  // namespace concierge::store

#endif  // CONCIERGE_STORE_COMMON_SQL_RECORDS_H_
