// PostgresStore: rotations and their timelines (schema version 6). Mirrors
// sqlite_store_rotations.cc statement for statement; writes hold the store
// write lock, so numbering events with MAX(seq) + 1 cannot race.
#include <string_view>

#include "store/postgres/postgres_store.h"
#include "store/postgres/postgres_store_internal.h"

namespace concierge::store {

using pg_internal::ChangeKeyState;
using pg_internal::LoadTenantState;
using pg_internal::ReadAll;
using pg_internal::RequireTenantExists;

namespace {

constexpr std::string_view kRotationOrder = " ORDER BY scheduled_at, created_at, rotation_id COLLATE \"C\"";

// Adds the fields UpdateRotation may change, as $3..$23 (shared by INSERT and
// UPDATE); the caller has added $1 and $2.
void AddMutableRotationFields(PgParams& p, const RotationRecord& r) {
  p.Text(r.state).Text(r.phase).Time(r.scheduled_at).Text(r.owner);
  p.Int(r.approval_required ? 1 : 0).Text(r.approved_by);
  p.OptionalTime(r.approved_at).Text(r.cert_source).Int(r.policy_version);
  p.Text(r.policy_hash).Text(r.old_key_id).Text(r.new_key_id).Text(r.csr_pem);
  p.Text(r.cert_serial).Text(r.canary_results).Text(r.error);
  p.OptionalTime(r.started_at).OptionalTime(r.cutover_at);
  p.OptionalTime(r.grace_until).OptionalTime(r.finished_at);
  p.Time(r.updated_at);
}

Status AppendEvents(PGconn* c, const std::string& rotation_id, const std::vector<RotationEvent>& events) {
  if (events.empty()) return Status::Ok();
  RETURN_IF_ERROR(ValidateRotationEvents(events));
  ASSIGN_OR_RETURN(PgResult r, PgExec(c,
                                      "SELECT COALESCE(MAX(seq), 0) + 1 FROM rotation_events "
                                      "WHERE rotation_id = $1",
                                      PgParams().Text(rotation_id), "numbering rotation event"));
  int64_t next = r.rows() > 0 ? r.row(0).ColumnInt(0) : 1;
  for (const RotationEvent& e : events) {
    PgParams p;
    p.Text(rotation_id).Int(next++).Time(e.at).Text(e.phase).Text(e.event).Text(e.detail).Text(e.actor);
    RETURN_IF_ERROR(PgExec(c,
                           Sql("INSERT INTO rotation_events (", kRotationEventColumns,
                               ") VALUES ($1, $2, $3, $4, $5, $6, $7)"),
                           p, "appending rotation event")
                        .status());
  }
  return Status::Ok();
}

// The optimistic write shared by UpdateRotation and SwapActiveKey.
Status WriteRotation(PGconn* c, const RotationRecord& r, const std::vector<RotationEvent>& events) {
  ASSIGN_OR_RETURN(PgResult stored, PgExec(c, "SELECT version, tenant_id FROM rotations WHERE rotation_id = $1",
                                           PgParams().Text(r.rotation_id), "reading rotation version"));
  if (stored.rows() == 0) return RotationNotFound(r.rotation_id);
  const int64_t version = stored.row(0).ColumnInt(0);
  if (version != r.version) return RotationChangedConcurrently(r.rotation_id, version, r.version);
  const std::string stored_tenant = stored.row(0).ColumnText(1);
  PgParams p;
  p.Text(r.rotation_id).Int(r.version);
  AddMutableRotationFields(p, r);
  RETURN_IF_ERROR(OpenRotationConflict(PgExec(c,
                                              "UPDATE rotations SET state = $3, phase = $4, "
                                              "scheduled_at = $5, owner = $6, approval_required = $7, "
                                              "approved_by = $8, approved_at = $9, cert_source = $10, "
                                              "policy_version = $11, policy_hash = $12, "
                                              "old_key_id = $13, new_key_id = $14, csr_pem = $15, "
                                              "cert_serial = $16, canary_results = $17, error = $18, "
                                              "started_at = $19, cutover_at = $20, grace_until = $21, "
                                              "finished_at = $22, updated_at = $23, version = $2::bigint + 1 "
                                              "WHERE rotation_id = $1",
                                              p, "updating rotation")
                                           .status(),
                                       stored_tenant));
  return AppendEvents(c, r.rotation_id, events);
}

}  // namespace

Status PostgresStore::InsertRotation(const RotationRecord& r, const RotationEvent& event) {
  RETURN_IF_ERROR(ValidateRotation(r));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("inserting rotation"));
  PGconn* c = session.conn();
  ASSIGN_OR_RETURN(TenantState t, LoadTenantState(c, r.tenant_id));
  if (!t.exists || t.deleted) return TenantNotFoundOrDeleted(r.tenant_id);
  {
    // A duplicate id is reported as such, not as the open-rotation rule.
    ASSIGN_OR_RETURN(PgResult dup, PgExec(c, "SELECT 1 FROM rotations WHERE rotation_id = $1",
                                          PgParams().Text(r.rotation_id), "checking rotation id"));
    if (dup.rows() > 0) return RotationAlreadyExists(r.rotation_id);
  }
  PgParams p;
  p.Text(r.rotation_id).Text(r.tenant_id);
  AddMutableRotationFields(p, r);
  p.Text(r.trigger).Text(r.created_by).Time(r.created_at).Int(r.version);
  RETURN_IF_ERROR(OpenRotationConflict(PgExec(c,
                                              Sql("INSERT INTO rotations (", kRotationColumns,
                                                  ") VALUES ($1, $2, $3, $4, $24, $5, $6, $7, $8, $9, "
                                                  "$25, $10, $11, $12, $13, $14, $15, $16, $17, $18, "
                                                  "$19, $20, $21, $22, $26, $23, $27)"),
                                              p, "inserting rotation")
                                           .status(),
                                       r.tenant_id));
  RETURN_IF_ERROR(AppendEvents(c, r.rotation_id, {event}));
  return session.tx.Commit();
}

StatusOr<RotationRecord> PostgresStore::GetRotation(const std::string& rotation_id) {
  ASSIGN_OR_RETURN(PgResult r, Read(Sql("SELECT ", kRotationColumns, " FROM rotations WHERE rotation_id = $1"),
                                    PgParams().Text(rotation_id), "reading rotation"));
  if (r.rows() == 0) return RotationNotFound(rotation_id);
  return ReadRotation(r.row(0));
}

StatusOr<std::vector<RotationRecord>> PostgresStore::ListRotations(const std::string& tenant_id) {
  // One snapshot for the existence check and the listing.
  ASSIGN_OR_RETURN(PgPool::Session session, Snapshot("listing rotations"));
  PGconn* c = session.conn();
  RETURN_IF_ERROR(RequireTenantExists(c, tenant_id));
  ASSIGN_OR_RETURN(PgResult r, PgExec(c, Sql("SELECT ", kRotationColumns, " FROM rotations WHERE tenant_id = $1") +
                                             std::string(kRotationOrder),
                                      PgParams().Text(tenant_id), "listing rotations"));
  RETURN_IF_ERROR(session.tx.Commit());
  return ReadAll<RotationRecord>(r, ReadRotation<PgRow>);
}

StatusOr<std::vector<RotationRecord>> PostgresStore::ListOpenRotations() {
  ASSIGN_OR_RETURN(PgResult r, Read(Sql("SELECT ", kRotationColumns,
                                        " FROM rotations WHERE state IN ('scheduled', 'running', "
                                        "'awaiting_certificate')") +
                                        std::string(kRotationOrder),
                                    PgParams(), "listing open rotations"));
  return ReadAll<RotationRecord>(r, ReadRotation<PgRow>);
}

Status PostgresStore::UpdateRotation(const RotationRecord& r, const std::vector<RotationEvent>& events) {
  RETURN_IF_ERROR(ValidateRotation(r));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("updating rotation"));
  RETURN_IF_ERROR(WriteRotation(session.conn(), r, events));
  return session.tx.Commit();
}

Status PostgresStore::SwapActiveKey(const KeySwap& swap, const RotationRecord& r,
                                    const std::vector<RotationEvent>& events) {
  RETURN_IF_ERROR(ValidateKeySwap(swap, r));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("swapping active key"));
  PGconn* c = session.conn();
  ASSIGN_OR_RETURN(TenantState t, LoadTenantState(c, swap.tenant_id));
  if (!t.exists || t.deleted) return TenantNotFoundOrDeleted(swap.tenant_id);
  // Order matters: the old key leaves "active" before the new one enters it,
  // so the one-active-key index is never violated mid-transaction.
  if (!swap.from_key_id.empty()) {
    RETURN_IF_ERROR(ChangeKeyState(c, swap.from_key_id, "active", swap.from_new_state, swap.at, swap.tenant_id));
  }
  RETURN_IF_ERROR(ChangeKeyState(c, swap.to_key_id, swap.to_expected_state, "active", swap.at, swap.tenant_id));
  RETURN_IF_ERROR(WriteRotation(c, r, events));
  return session.tx.Commit();
}

StatusOr<std::vector<RotationEvent>> PostgresStore::ListRotationEvents(const std::string& rotation_id) {
  ASSIGN_OR_RETURN(PgResult r, Read(Sql("SELECT ", kRotationEventColumns,
                                        " FROM rotation_events WHERE rotation_id = $1 ORDER BY seq"),
                                    PgParams().Text(rotation_id), "listing rotation events"));
  return ReadAll<RotationEvent>(r, ReadRotationEvent<PgRow>);
}

Status PostgresStore::InsertRotationEvidence(const RotationEvidenceRecord& e) {
  RETURN_IF_ERROR(ValidateRotationEvidence(e));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("storing rotation evidence"));
  PGconn* c = session.conn();
  {
    ASSIGN_OR_RETURN(PgResult r, PgExec(c, "SELECT 1 FROM rotations WHERE rotation_id = $1",
                                        PgParams().Text(e.rotation_id), "checking rotation"));
    if (r.rows() == 0) return RotationNotFound(e.rotation_id);
  }
  PgParams p;
  p.Text(e.rotation_id).Text(e.outcome).Time(e.created_at).Text(e.sha256);
  p.Bytes(std::string_view(reinterpret_cast<const char*>(e.pack.data()), e.pack.size()));
  Status st = PgExec(c,
                     Sql("INSERT INTO rotation_evidence (", kRotationEvidenceColumns,
                         ") VALUES ($1, $2, $3, $4, $5::bytea)"),
                     p, "storing rotation evidence")
                  .status();
  if (st.code() == StatusCode::kAlreadyExists) return RotationEvidenceExists(e.rotation_id, e.outcome);
  RETURN_IF_ERROR(st);
  return session.tx.Commit();
}

StatusOr<RotationEvidenceRecord> PostgresStore::GetRotationEvidence(const std::string& rotation_id,
                                                                    const std::string& outcome) {
  ASSIGN_OR_RETURN(PgResult r, Read(Sql("SELECT ", kRotationEvidenceColumns,
                                        " FROM rotation_evidence WHERE rotation_id = $1 AND outcome = $2"),
                                    PgParams().Text(rotation_id).Text(outcome), "reading rotation evidence"));
  if (r.rows() == 0) return RotationEvidenceNotFound(rotation_id, outcome);
  const PgRow row = r.row(0);
  RotationEvidenceRecord e;
  e.rotation_id = row.ColumnText(0);
  e.outcome = row.ColumnText(1);
  e.created_at = row.ColumnTime(2);
  e.sha256 = row.ColumnText(3);
  ASSIGN_OR_RETURN(std::string pack, DecodeByteaHex(row.ColumnText(4)));
  e.pack.assign(pack.begin(), pack.end());
  return e;
}

Status PostgresStore::InsertEvidenceKey(const EvidenceKeyRecord& k) {
  RETURN_IF_ERROR(ValidateEvidenceKey(k));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("storing evidence key"));
  PgParams p;
  p.Text(k.provider).Text(k.key_uri).Text(k.algorithm).Text(k.public_key_pem).Text(k.fingerprint);
  p.Time(k.created_at);
  Status st = PgExec(session.conn(),
                     Sql("INSERT INTO evidence_key (id, ", kEvidenceKeyColumns,
                         ") VALUES (1, $1, $2, $3, $4, $5, $6)"),
                     p, "storing evidence key")
                  .status();
  if (st.code() == StatusCode::kAlreadyExists) return EvidenceKeyExists();
  RETURN_IF_ERROR(st);
  return session.tx.Commit();
}

StatusOr<EvidenceKeyRecord> PostgresStore::GetEvidenceKey() {
  ASSIGN_OR_RETURN(PgResult r, Read(Sql("SELECT ", kEvidenceKeyColumns, " FROM evidence_key WHERE id = 1"),
                                    PgParams(), "reading evidence key"));
  if (r.rows() == 0) return NoEvidenceKey();
  return ReadEvidenceKey(r.row(0));
}

}  // namespace concierge::store
