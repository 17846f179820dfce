// SqliteStore: rotations and their timelines (schema version 6).
#include "store/sqlite/sqlite_store.h"
#include "store/sqlite/sqlite_store_internal.h"

namespace concierge::store {

using sqlite_internal::ChangeKeyState;
using sqlite_internal::LoadTenantState;
using sqlite_internal::ReadAllRows;
using sqlite_internal::RequireTenantExists;

namespace {

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

Status AppendEvents(sqlite3* db, const std::string& rotation_id, const std::vector<RotationEvent>& events) {
  if (events.empty()) return Status::Ok();
  RETURN_IF_ERROR(ValidateRotationEvents(events));
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
    if (!row) return RotationNotFound(r.rotation_id);
    const int64_t stored = s.ColumnInt(0);
    if (stored != r.version) return RotationChangedConcurrently(r.rotation_id, stored, r.version);
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
    if (row) return RotationAlreadyExists(r.rotation_id);
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
  if (!row) return RotationNotFound(rotation_id);
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
  ASSIGN_OR_RETURN(std::vector<RotationRecord> out, ReadAllRows<RotationRecord>(s, ReadRotation<Statement>));
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
  return ReadAllRows<RotationRecord>(s, ReadRotation<Statement>);
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
  RETURN_IF_ERROR(ValidateKeySwap(swap, r));
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
                                                   Sql("SELECT ", kRotationEventColumns,
                                                       " FROM rotation_events WHERE rotation_id = ?1 ORDER BY seq"),
                                                   "listing rotation events"));
  s.Bind(1, rotation_id);
  return ReadAllRows<RotationEvent>(s, ReadRotationEvent<Statement>);
}

Status SqliteStore::InsertRotationEvidence(const RotationEvidenceRecord& e) {
  RETURN_IF_ERROR(ValidateRotationEvidence(e));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(db, Transaction::Mode::kImmediate, "storing rotation evidence"));
  {
    ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db, "SELECT 1 FROM rotations WHERE rotation_id = ?1",
                                                     "checking rotation"));
    s.Bind(1, e.rotation_id);
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return RotationNotFound(e.rotation_id);
  }
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                   Sql("INSERT INTO rotation_evidence (",
                                                       kRotationEvidenceColumns, ") VALUES (?1, ?2, ?3, ?4, ?5)"),
                                                   "storing rotation evidence"));
  s.Bind(1, e.rotation_id).Bind(2, e.outcome).BindTime(3, e.created_at).Bind(4, e.sha256).BindBlob(5, e.pack);
  Status st = s.Run();
  if (st.code() == StatusCode::kAlreadyExists) return RotationEvidenceExists(e.rotation_id, e.outcome);
  RETURN_IF_ERROR(st);
  return tx.Commit();
}

StatusOr<RotationEvidenceRecord> SqliteStore::GetRotationEvidence(const std::string& rotation_id,
                                                                  const std::string& outcome) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   Sql("SELECT ", kRotationEvidenceColumns,
                                                       " FROM rotation_evidence WHERE rotation_id = ?1 "
                                                       "AND outcome = ?2"),
                                                   "reading rotation evidence"));
  s.Bind(1, rotation_id).Bind(2, outcome);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return RotationEvidenceNotFound(rotation_id, outcome);
  RotationEvidenceRecord e;
  e.rotation_id = s.ColumnText(0);
  e.outcome = s.ColumnText(1);
  e.created_at = s.ColumnTime(2);
  e.sha256 = s.ColumnText(3);
  e.pack = s.ColumnBlob(4);
  return e;
}

Status SqliteStore::InsertEvidenceKey(const EvidenceKeyRecord& k) {
  RETURN_IF_ERROR(ValidateEvidenceKey(k));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   Sql("INSERT INTO evidence_key (id, ", kEvidenceKeyColumns,
                                                       ") VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)"),
                                                   "storing evidence key"));
  s.Bind(1, k.provider).Bind(2, k.key_uri).Bind(3, k.algorithm).Bind(4, k.public_key_pem).Bind(5, k.fingerprint);
  s.BindTime(6, k.created_at);
  Status st = s.Run();
  if (st.code() == StatusCode::kAlreadyExists) return EvidenceKeyExists();
  return st;
}

StatusOr<EvidenceKeyRecord> SqliteStore::GetEvidenceKey() {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   Sql("SELECT ", kEvidenceKeyColumns,
                                                       " FROM evidence_key WHERE id = 1"),
                                                   "reading evidence key"));
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return NoEvidenceKey();
  return ReadEvidenceKey(s);
}

}  // namespace concierge::store
