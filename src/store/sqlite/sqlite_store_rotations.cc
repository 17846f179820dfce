// SqliteStore: rotations and their timelines (schema version 6).
#include <array>
#include <string_view>

#include "store/sqlite/sqlite_store.h"
#include "store/sqlite/sqlite_store_internal.h"

namespace concierge::store {

using sqlite_internal::ChangeKeyState;
using sqlite_internal::Contains;
using sqlite_internal::LoadTenantState;
using sqlite_internal::ReadAllRows;
using sqlite_internal::RequireTenantExists;
using sqlite_internal::Sql;
using sqlite_internal::TenantNotFoundOrDeleted;
using sqlite_internal::TenantState;
using sqlite_internal::ValidateKeyState;

namespace {

constexpr std::array<std::string_view, 7> kRotationStates = {
    "scheduled", "running", "awaiting_certificate", "completed", "rolled_back", "failed", "cancelled"};
constexpr std::array<std::string_view, 3> kOpenRotationStates = {"scheduled", "running",
                                                                 "awaiting_certificate"};

Status ValidateRotation(const RotationRecord& r) {
  if (r.rotation_id.empty()) return FieldError("rotation_id", "rotation id is empty");
  if (r.tenant_id.empty()) return FieldError("tenant_id", "tenant id is empty");
  if (!Contains(kRotationStates, r.state)) {
    return FieldError("state", "unknown rotation state \"" + r.state + "\"");
  }
  if (r.version < 1) return FieldError("version", "rotation version must be >= 1");
  return Status::Ok();
}

constexpr std::string_view kRotationColumns =
    "rotation_id, tenant_id, state, phase, trigger_kind, scheduled_at, owner, approval_required, "
    "approved_by, approved_at, created_by, cert_source, policy_version, policy_hash, old_key_id, "
    "new_key_id, csr_pem, cert_serial, canary_results, error, started_at, cutover_at, grace_until, "
    "finished_at, created_at, updated_at, version";

RotationRecord ReadRotation(const Statement& s) {
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

// Binds the fields UpdateRotation may change, at ?3.. (shared by INSERT and UPDATE).
void BindMutableRotationFields(Statement& s, const RotationRecord& r) {
  s.Bind(3, r.state).Bind(4, r.phase).BindTime(5, r.scheduled_at).Bind(6, r.owner);
  s.Bind(7, static_cast<int64_t>(r.approval_required ? 1 : 0)).Bind(8, r.approved_by);
  s.BindOptionalTime(9, r.approved_at).Bind(10, r.cert_source).Bind(11, r.policy_version);
  s.Bind(12, r.policy_hash).Bind(13, r.old_key_id).Bind(14, r.new_key_id).Bind(15, r.csr_pem);
  s.Bind(16, r.cert_serial).Bind(17, r.canary_results).Bind(18, r.error);
  s.BindOptionalTime(19, r.started_at).BindOptionalTime(20, r.cutover_at);
  s.BindOptionalTime(21, r.grace_until).BindOptionalTime(22, r.finished_at);
  s.BindTime(23, r.updated_at);
}

// The unique index names the rule; say it in words.
Status OpenRotationConflict(const Status& st, const std::string& tenant_id) {
  if (st.code() != StatusCode::kAlreadyExists) return st;
  return AlreadyExistsError("tenant " + tenant_id + " already has an open rotation");
}

Status AppendEvents(sqlite3* db, const std::string& rotation_id, const std::vector<RotationEvent>& events) {
  if (events.empty()) return Status::Ok();
  int64_t next = 1;
  {
    ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                     "SELECT COALESCE(MAX(seq), 0) + 1 FROM rotation_events "
                                                     "WHERE rotation_id = ?1",
                                                     "numbering rotation event"));
    s.Bind(1, rotation_id);
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) next = s.ColumnInt(0);
  }
  for (const RotationEvent& e : events) {
    if (e.event.empty()) return FieldError("event", "rotation event name is empty");
    ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                     "INSERT INTO rotation_events (rotation_id, seq, at, "
                                                     "phase, event, detail, actor) "
                                                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                                                     "appending rotation event"));
    s.Bind(1, rotation_id).Bind(2, next++).BindTime(3, e.at).Bind(4, e.phase).Bind(5, e.event);
    s.Bind(6, e.detail).Bind(7, e.actor);
    RETURN_IF_ERROR(s.Run());
  }
  return Status::Ok();
}

// The optimistic write shared by UpdateRotation and SwapActiveKey.
Status WriteRotation(sqlite3* db, const RotationRecord& r, const std::vector<RotationEvent>& events) {
  std::string stored_tenant;
  {
    ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                     "SELECT version, tenant_id FROM rotations "
                                                     "WHERE rotation_id = ?1",
                                                     "reading rotation version"));
    s.Bind(1, r.rotation_id);
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return NotFoundError("rotation " + r.rotation_id + " not found");
    const int64_t stored = s.ColumnInt(0);
    if (stored != r.version) {
      return AbortedError("rotation " + r.rotation_id + " changed concurrently: version is " +
                          std::to_string(stored) + ", expected " + std::to_string(r.version));
    }
    stored_tenant = s.ColumnText(1);
  }
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                   "UPDATE rotations SET state = ?3, phase = ?4, "
                                                   "scheduled_at = ?5, owner = ?6, approval_required = ?7, "
                                                   "approved_by = ?8, approved_at = ?9, cert_source = ?10, "
                                                   "policy_version = ?11, policy_hash = ?12, "
                                                   "old_key_id = ?13, new_key_id = ?14, csr_pem = ?15, "
                                                   "cert_serial = ?16, canary_results = ?17, error = ?18, "
                                                   "started_at = ?19, cutover_at = ?20, grace_until = ?21, "
                                                   "finished_at = ?22, updated_at = ?23, version = ?2 + 1 "
                                                   "WHERE rotation_id = ?1",
                                                   "updating rotation"));
  s.Bind(1, r.rotation_id).Bind(2, r.version);
  BindMutableRotationFields(s, r);
  RETURN_IF_ERROR(OpenRotationConflict(s.Run(), stored_tenant));
  return AppendEvents(db, r.rotation_id, events);
}

}  // namespace

Status SqliteStore::InsertRotation(const RotationRecord& r, const RotationEvent& event) {
  RETURN_IF_ERROR(ValidateRotation(r));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(db, Transaction::Mode::kImmediate, "inserting rotation"));
  ASSIGN_OR_RETURN(TenantState t, LoadTenantState(db, r.tenant_id));
  if (!t.exists || t.deleted) return TenantNotFoundOrDeleted(r.tenant_id);
  {
    // A duplicate id is reported as such, not as the open-rotation rule.
    ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db, "SELECT 1 FROM rotations WHERE rotation_id = ?1",
                                                     "checking rotation id"));
    s.Bind(1, r.rotation_id);
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (row) return AlreadyExistsError("rotation " + r.rotation_id + " already exists");
  }
  {
    ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                     Sql("INSERT INTO rotations (", kRotationColumns,
                                                         ") VALUES (?1, ?2, ?3, ?4, ?24, ?5, ?6, ?7, ?8, ?9, "
                                                         "?25, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, "
                                                         "?19, ?20, ?21, ?22, ?26, ?23, ?27)"),
                                                     "inserting rotation"));
    s.Bind(1, r.rotation_id).Bind(2, r.tenant_id);
    BindMutableRotationFields(s, r);
    s.Bind(24, r.trigger).Bind(25, r.created_by).BindTime(26, r.created_at).Bind(27, r.version);
    RETURN_IF_ERROR(OpenRotationConflict(s.Run(), r.tenant_id));
  }
  RETURN_IF_ERROR(AppendEvents(db, r.rotation_id, {event}));
  return tx.Commit();
}

StatusOr<RotationRecord> SqliteStore::GetRotation(const std::string& rotation_id) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   Sql("SELECT ", kRotationColumns,
                                                       " FROM rotations WHERE rotation_id = ?1"),
                                                   "reading rotation"));
  s.Bind(1, rotation_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return NotFoundError("rotation " + rotation_id + " not found");
  return ReadRotation(s);
}

StatusOr<std::vector<RotationRecord>> SqliteStore::ListRotations(const std::string& tenant_id) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(db, Transaction::Mode::kDeferred, "listing rotations"));
  RETURN_IF_ERROR(RequireTenantExists(db, tenant_id));
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                   Sql("SELECT ", kRotationColumns,
                                                       " FROM rotations WHERE tenant_id = ?1 "
                                                       "ORDER BY scheduled_at, created_at, rotation_id"),
                                                   "listing rotations"));
  s.Bind(1, tenant_id);
  ASSIGN_OR_RETURN(std::vector<RotationRecord> out, ReadAllRows<RotationRecord>(s, ReadRotation));
  RETURN_IF_ERROR(tx.Commit());
  return out;
}

StatusOr<std::vector<RotationRecord>> SqliteStore::ListOpenRotations() {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   Sql("SELECT ", kRotationColumns,
                                                       " FROM rotations WHERE state IN ('scheduled', "
                                                       "'running', 'awaiting_certificate') "
                                                       "ORDER BY scheduled_at, created_at, rotation_id"),
                                                   "listing open rotations"));
  return ReadAllRows<RotationRecord>(s, ReadRotation);
}

Status SqliteStore::UpdateRotation(const RotationRecord& r, const std::vector<RotationEvent>& events) {
  RETURN_IF_ERROR(ValidateRotation(r));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(db, Transaction::Mode::kImmediate, "updating rotation"));
  RETURN_IF_ERROR(WriteRotation(db, r, events));
  return tx.Commit();
}

Status SqliteStore::SwapActiveKey(const KeySwap& swap, const RotationRecord& r,
                                  const std::vector<RotationEvent>& events) {
  RETURN_IF_ERROR(ValidateRotation(r));
  if (swap.to_key_id.empty()) return FieldError("to_key_id", "the key to activate is not named");
  if (swap.tenant_id != r.tenant_id) return FieldError("tenant_id", "swap and rotation name different tenants");
  RETURN_IF_ERROR(ValidateKeyState("to_expected_state", swap.to_expected_state));
  if (!swap.from_key_id.empty()) {
    RETURN_IF_ERROR(ValidateKeyState("from_new_state", swap.from_new_state));
    if (swap.from_new_state == "active") {
      return FieldError("from_new_state", "the key leaving service cannot stay \"active\"");
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(db, Transaction::Mode::kImmediate, "swapping active key"));
  ASSIGN_OR_RETURN(TenantState t, LoadTenantState(db, swap.tenant_id));
  if (!t.exists || t.deleted) return TenantNotFoundOrDeleted(swap.tenant_id);
  // Order matters: the old key leaves "active" before the new one enters it,
  // so the one-active-key index is never violated mid-transaction.
  if (!swap.from_key_id.empty()) {
    RETURN_IF_ERROR(ChangeKeyState(db, swap.from_key_id, "active", swap.from_new_state, swap.at, swap.tenant_id));
  }
  RETURN_IF_ERROR(ChangeKeyState(db, swap.to_key_id, swap.to_expected_state, "active", swap.at, swap.tenant_id));
  RETURN_IF_ERROR(WriteRotation(db, r, events));
  return tx.Commit();
}

StatusOr<std::vector<RotationEvent>> SqliteStore::ListRotationEvents(const std::string& rotation_id) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   "SELECT rotation_id, seq, at, phase, event, detail, actor "
                                                   "FROM rotation_events WHERE rotation_id = ?1 ORDER BY seq",
                                                   "listing rotation events"));
  s.Bind(1, rotation_id);
  return ReadAllRows<RotationEvent>(s, [](const Statement& row) {
    RotationEvent e;
    e.rotation_id = row.ColumnText(0);
    e.seq = row.ColumnInt(1);
    e.at = row.ColumnTime(2);
    e.phase = row.ColumnText(3);
    e.event = row.ColumnText(4);
    e.detail = row.ColumnText(5);
    e.actor = row.ColumnText(6);
    return e;
  });
}

Status SqliteStore::InsertRotationEvidence(const RotationEvidenceRecord& e) {
  if (e.rotation_id.empty() || e.outcome.empty() || e.sha256.empty() || e.pack.empty()) {
    return InvalidArgumentError("rotation evidence record is incomplete");
  }
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(db, Transaction::Mode::kImmediate, "storing rotation evidence"));
  {
    ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db, "SELECT 1 FROM rotations WHERE rotation_id = ?1",
                                                     "checking rotation"));
    s.Bind(1, e.rotation_id);
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return NotFoundError("rotation " + e.rotation_id + " not found");
  }
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                   "INSERT INTO rotation_evidence (rotation_id, outcome, "
                                                   "created_at, sha256, pack) VALUES (?1, ?2, ?3, ?4, ?5)",
                                                   "storing rotation evidence"));
  s.Bind(1, e.rotation_id).Bind(2, e.outcome).BindTime(3, e.created_at).Bind(4, e.sha256).BindBlob(5, e.pack);
  Status st = s.Run();
  if (st.code() == StatusCode::kAlreadyExists) {
    return AlreadyExistsError("rotation " + e.rotation_id + " already has a " + e.outcome + " evidence pack");
  }
  RETURN_IF_ERROR(st);
  return tx.Commit();
}

StatusOr<RotationEvidenceRecord> SqliteStore::GetRotationEvidence(const std::string& rotation_id,
                                                                  const std::string& outcome) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   "SELECT rotation_id, outcome, created_at, sha256, pack "
                                                   "FROM rotation_evidence WHERE rotation_id = ?1 AND outcome = ?2",
                                                   "reading rotation evidence"));
  s.Bind(1, rotation_id).Bind(2, outcome);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return NotFoundError("rotation " + rotation_id + " has no " + outcome + " evidence pack");
  RotationEvidenceRecord e;
  e.rotation_id = s.ColumnText(0);
  e.outcome = s.ColumnText(1);
  e.created_at = s.ColumnTime(2);
  e.sha256 = s.ColumnText(3);
  e.pack = s.ColumnBlob(4);
  return e;
}

Status SqliteStore::InsertEvidenceKey(const EvidenceKeyRecord& k) {
  if (k.key_uri.empty() || k.public_key_pem.empty()) return InvalidArgumentError("evidence key record is incomplete");
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   "INSERT INTO evidence_key (id, provider, key_uri, algorithm, "
                                                   "public_key_pem, fingerprint, created_at) "
                                                   "VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
                                                   "storing evidence key"));
  s.Bind(1, k.provider).Bind(2, k.key_uri).Bind(3, k.algorithm).Bind(4, k.public_key_pem).Bind(5, k.fingerprint);
  s.BindTime(6, k.created_at);
  Status st = s.Run();
  if (st.code() == StatusCode::kAlreadyExists) return AlreadyExistsError("the evidence key already exists");
  return st;
}

StatusOr<EvidenceKeyRecord> SqliteStore::GetEvidenceKey() {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   "SELECT provider, key_uri, algorithm, public_key_pem, "
                                                   "fingerprint, created_at FROM evidence_key WHERE id = 1",
                                                   "reading evidence key"));
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return NotFoundError("there is no evidence key yet");
  EvidenceKeyRecord k;
  k.provider = s.ColumnText(0);
  k.key_uri = s.ColumnText(1);
  k.algorithm = s.ColumnText(2);
  k.public_key_pem = s.ColumnText(3);
  k.fingerprint = s.ColumnText(4);
  k.created_at = s.ColumnTime(5);
  return k;
}

}  // namespace concierge::store
