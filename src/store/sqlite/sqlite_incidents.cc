// SqliteStore: incidents, webhooks and their outbox, re-sign job records
// (migration v7). Kept apart from sqlite_store.cc so the incident-response
// tables read as one unit; same connection, mutex and conventions. The rules,
// messages, column lists and row readers are shared with PostgreSQL
// (store/common/sql_records.h).
#include <string_view>
#include <utility>

#include "store/common/sql_records.h"
#include "store/sqlite/sqlite_store.h"

namespace concierge::store {
namespace {

// The incident's state, or kNotFound. Runs inside the caller's transaction.
StatusOr<std::string> IncidentState(sqlite3* db, const std::string& incident_id) {
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db, "SELECT state FROM incidents WHERE incident_id = ?1",
                                                   "reading incident state"));
  s.Bind(1, incident_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return IncidentNotFound(incident_id);
  return s.ColumnText(0);
}

// Appends a timeline row with the next seq of its incident and touches
// updated_at. Runs inside the caller's transaction.
Status InsertEventRow(sqlite3* db, const IncidentEvent& e) {
  ASSIGN_OR_RETURN(Statement s,
                   Statement::Prepare(db,
                                      Sql("INSERT INTO incident_events (", kIncidentEventColumns,
                                          ") SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, ?3, ?4, ?5, ?6, ?7 "
                                          "FROM incident_events WHERE incident_id = ?1"),
                                      "appending to incident timeline"));
  s.Bind(1, e.incident_id).BindTime(2, e.at).Bind(3, e.actor).Bind(4, e.action);
  s.Bind(5, e.from_state).Bind(6, e.to_state).Bind(7, e.detail);
  RETURN_IF_ERROR(s.Run());
  ASSIGN_OR_RETURN(Statement u, Statement::Prepare(db,
                                                   "UPDATE incidents SET updated_at = MAX(updated_at, ?2) "
                                                   "WHERE incident_id = ?1",
                                                   "touching incident"));
  u.Bind(1, e.incident_id).BindTime(2, e.at);
  return u.Run();
}

// Stores the event and fans it out to the webhooks that should see it. Runs
// inside the caller's transaction; returns the number of deliveries.
StatusOr<int> EnqueueLocked(sqlite3* db, const WebhookEventRecord& ev) {
  RETURN_IF_ERROR(ValidateWebhookEvent(ev));
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                   Sql("INSERT INTO webhook_events (", kWebhookEventColumns,
                                                       ") VALUES (?1, ?2, ?3, ?4, ?5)"),
                                                   "storing webhook event"));
  s.Bind(1, ev.event_id).Bind(2, ev.tenant_id).Bind(3, ev.type).Bind(4, ev.payload_json).BindTime(5, ev.created_at);
  RETURN_IF_ERROR(s.Run());
  // Global webhooks see everything; a tenant's webhooks see that tenant's
  // events. The filter is a comma-separated list matched as whole items.
  ASSIGN_OR_RETURN(Statement f,
                   Statement::Prepare(db,
                                      "INSERT INTO webhook_deliveries (event_id, webhook_id, state, attempts, "
                                      "next_attempt_at, created_at) "
                                      "SELECT ?1, webhook_id, 'pending', 0, ?2, ?2 FROM webhooks "
                                      "WHERE disabled_at IS NULL "
                                      "AND (tenant_id = '' OR (?3 <> '' AND tenant_id = ?3)) "
                                      "AND (event_types = '' OR "
                                      "instr(',' || event_types || ',', ',' || ?4 || ',') > 0)",
                                      "fanning out webhook event"));
  f.Bind(1, ev.event_id).BindTime(2, ev.created_at).Bind(3, ev.tenant_id).Bind(4, ev.type);
  RETURN_IF_ERROR(f.Run());
  return sqlite3_changes(db);
}

Status EnqueueAllLocked(sqlite3* db, const std::vector<WebhookEventRecord>& notify) {
  for (const auto& ev : notify) RETURN_IF_ERROR(EnqueueLocked(db, ev).status());
  return Status::Ok();
}

// kNotFound unless the tenant exists and is not deleted.
Status RequireLiveTenant(sqlite3* db, const std::string& tenant_id) {
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db, "SELECT deleted FROM tenants WHERE tenant_id = ?1",
                                                   "reading tenant"));
  s.Bind(1, tenant_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row || s.ColumnInt(0) != 0) return TenantNotFoundOrDeleted(tenant_id);
  return Status::Ok();
}

}  // namespace


// --- incidents -------------------------------------------------------------------

Status SqliteStore::InsertIncident(const IncidentRecord& r, const IncidentEvent& first_event,
                                   const std::vector<WebhookEventRecord>& notify) {
  RETURN_IF_ERROR(ValidateIncident(r));
  RETURN_IF_ERROR(ValidateIncidentEvent(first_event));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(db, Transaction::Mode::kImmediate, "opening incident"));
  ASSIGN_OR_RETURN(Statement s,
                   Statement::Prepare(db,
                                      Sql("INSERT INTO incidents (", kIncidentColumns,
                                          ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
                                          "?14, ?15, ?16, ?17)"),
                                      "inserting incident"));
  s.Bind(1, r.incident_id).Bind(2, r.tenant_id).Bind(3, r.type).Bind(4, r.severity).Bind(5, r.state);
  s.Bind(6, r.title).Bind(7, r.detector).Bind(8, r.dedup_key).Bind(9, r.key_id).Bind(10, r.occurrences);
  s.Bind(11, r.details_json).Bind(12, r.playbook_json).Bind(13, r.created_by).BindTime(14, r.created_at);
  s.BindTime(15, r.updated_at).BindOptionalTime(16, r.resolved_at).BindOptionalTime(17, r.closed_at);
  RETURN_IF_ERROR(s.Run());
  IncidentEvent e = first_event;
  e.incident_id = r.incident_id;
  RETURN_IF_ERROR(InsertEventRow(db, e));
  RETURN_IF_ERROR(EnqueueAllLocked(db, notify));
  return tx.Commit();
}

Status SqliteStore::FoldIncident(const std::string& incident_id, const IncidentEvent& event,
                                 const std::vector<WebhookEventRecord>& notify) {
  RETURN_IF_ERROR(ValidateIncidentEvent(event));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(db, Transaction::Mode::kImmediate, "folding incident"));
  ASSIGN_OR_RETURN(std::string state, IncidentState(db, incident_id));
  if (IsClosedIncidentState(state)) return IncidentNotOpen(incident_id, state);
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                   "UPDATE incidents SET occurrences = occurrences + 1 "
                                                   "WHERE incident_id = ?1",
                                                   "counting folded detection"));
  s.Bind(1, incident_id);
  RETURN_IF_ERROR(s.Run());
  IncidentEvent e = event;
  e.incident_id = incident_id;
  RETURN_IF_ERROR(InsertEventRow(db, e));
  RETURN_IF_ERROR(EnqueueAllLocked(db, notify));
  return tx.Commit();
}

StatusOr<IncidentRecord> SqliteStore::FindOpenIncident(const std::string& tenant_id, const std::string& type,
                                                       const std::string& dedup_key) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   Sql("SELECT ", kIncidentColumns,
                                                       " FROM incidents WHERE tenant_id = ?1 AND type = ?2 "
                                                       "AND dedup_key = ?3 AND dedup_key <> '' "
                                                       "AND state NOT IN ('resolved', 'closed')"),
                                                   "finding open incident"));
  s.Bind(1, tenant_id).Bind(2, type).Bind(3, dedup_key);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return NoOpenIncident(type);
  return ReadIncident(s);
}

StatusOr<IncidentRecord> SqliteStore::GetIncident(const std::string& incident_id) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   Sql("SELECT ", kIncidentColumns,
                                                       " FROM incidents WHERE incident_id = ?1"),
                                                   "reading incident"));
  s.Bind(1, incident_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return IncidentNotFound(incident_id);
  return ReadIncident(s);
}

StatusOr<std::vector<IncidentRecord>> SqliteStore::ListIncidents(const IncidentQuery& q) {
  RETURN_IF_ERROR(ValidatePageLimit(q.limit));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s,
                   Statement::Prepare(db_.get(),
                                      Sql("SELECT ", kIncidentColumns,
                                          " FROM incidents WHERE (?1 = 0 OR tenant_id = ?2) "
                                          "AND (?3 = '' OR state = ?3) "
                                          "AND (?4 = 0 OR state NOT IN ('resolved', 'closed')) "
                                          "ORDER BY created_at DESC, incident_id DESC LIMIT ?5"),
                                      "listing incidents"));
  s.Bind(1, static_cast<int64_t>(q.tenant_id.has_value() ? 1 : 0)).Bind(2, q.tenant_id.value_or(""));
  s.Bind(3, q.state).Bind(4, static_cast<int64_t>(q.open_only ? 1 : 0)).Bind(5, static_cast<int64_t>(q.limit));
  std::vector<IncidentRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back(ReadIncident(s));
  }
  return out;
}

Status SqliteStore::TransitionIncident(const std::string& incident_id, const std::string& expected_state,
                                       const IncidentEvent& event, const std::vector<WebhookEventRecord>& notify) {
  RETURN_IF_ERROR(ValidateIncidentTransition(event));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx,
                   Transaction::Begin(db, Transaction::Mode::kImmediate, "changing incident state"));
  ASSIGN_OR_RETURN(std::string state, IncidentState(db, incident_id));
  if (state != expected_state) {
    return IncidentChangedConcurrently(incident_id, state, expected_state);
  }
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                   "UPDATE incidents SET state = ?2, "
                                                   "resolved_at = CASE WHEN ?2 = 'resolved' THEN "
                                                   "COALESCE(resolved_at, ?3) ELSE resolved_at END, "
                                                   "closed_at = CASE WHEN ?2 = 'closed' THEN "
                                                   "COALESCE(closed_at, ?3) ELSE closed_at END "
                                                   "WHERE incident_id = ?1",
                                                   "changing incident state"));
  s.Bind(1, incident_id).Bind(2, event.to_state).BindTime(3, event.at);
  RETURN_IF_ERROR(s.Run());
  IncidentEvent e = event;
  e.incident_id = incident_id;
  RETURN_IF_ERROR(InsertEventRow(db, e));
  RETURN_IF_ERROR(EnqueueAllLocked(db, notify));
  return tx.Commit();
}

Status SqliteStore::AppendIncidentEvent(const IncidentEvent& event, const std::vector<WebhookEventRecord>& notify) {
  RETURN_IF_ERROR(ValidateIncidentEvent(event));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx,
                   Transaction::Begin(db, Transaction::Mode::kImmediate, "appending incident event"));
  RETURN_IF_ERROR(IncidentState(db, event.incident_id).status());
  RETURN_IF_ERROR(InsertEventRow(db, event));
  RETURN_IF_ERROR(EnqueueAllLocked(db, notify));
  return tx.Commit();
}

Status SqliteStore::UpdateIncidentPlaybook(const std::string& incident_id, const std::string& playbook_json,
                                           const IncidentEvent& event) {
  RETURN_IF_ERROR(ValidateIncidentEvent(event));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx,
                   Transaction::Begin(db, Transaction::Mode::kImmediate, "recording playbook progress"));
  RETURN_IF_ERROR(IncidentState(db, incident_id).status());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db, "UPDATE incidents SET playbook_json = ?2 WHERE incident_id = ?1",
                                                   "recording playbook progress"));
  s.Bind(1, incident_id).Bind(2, playbook_json);
  RETURN_IF_ERROR(s.Run());
  IncidentEvent e = event;
  e.incident_id = incident_id;
  RETURN_IF_ERROR(InsertEventRow(db, e));
  return tx.Commit();
}

StatusOr<std::vector<IncidentEvent>> SqliteStore::ListIncidentEvents(const std::string& incident_id) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  // One read transaction, so the existence check and the rows agree.
  ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(db, Transaction::Mode::kDeferred, "reading timeline"));
  RETURN_IF_ERROR(IncidentState(db, incident_id).status());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                   Sql("SELECT ", kIncidentEventColumns,
                                                       " FROM incident_events WHERE incident_id = ?1 ORDER BY seq"),
                                                   "reading timeline"));
  s.Bind(1, incident_id);
  std::vector<IncidentEvent> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back(ReadIncidentEvent(s));
  }
  RETURN_IF_ERROR(tx.Commit());
  return out;
}

// --- webhooks ------------------------------------------------------------------

Status SqliteStore::InsertWebhook(const WebhookRecord& w) {
  RETURN_IF_ERROR(ValidateWebhook(w));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(db, Transaction::Mode::kImmediate, "inserting webhook"));
  if (!w.tenant_id.empty()) RETURN_IF_ERROR(RequireLiveTenant(db, w.tenant_id));
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                   Sql("INSERT INTO webhooks (", kWebhookColumns,
                                                       ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                                                   "inserting webhook"));
  s.Bind(1, w.webhook_id).Bind(2, w.tenant_id).Bind(3, w.url).Bind(4, w.secret_sealed).Bind(5, w.event_types);
  s.Bind(6, w.created_by).BindTime(7, w.created_at).BindOptionalTime(8, w.disabled_at);
  RETURN_IF_ERROR(s.Run());
  return tx.Commit();
}

StatusOr<WebhookRecord> SqliteStore::GetWebhook(const std::string& webhook_id) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   Sql("SELECT ", kWebhookColumns,
                                                       " FROM webhooks WHERE webhook_id = ?1"),
                                                   "reading webhook"));
  s.Bind(1, webhook_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return WebhookNotFound(webhook_id);
  return ReadWebhook(s);
}

StatusOr<std::vector<WebhookRecord>> SqliteStore::ListWebhooks(const std::optional<std::string>& tenant_id) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   Sql("SELECT ", kWebhookColumns,
                                                       " FROM webhooks WHERE (?1 = 0 OR tenant_id = ?2) "
                                                       "ORDER BY created_at, webhook_id"),
                                                   "listing webhooks"));
  s.Bind(1, static_cast<int64_t>(tenant_id.has_value() ? 1 : 0)).Bind(2, tenant_id.value_or(""));
  std::vector<WebhookRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back(ReadWebhook(s));
  }
  return out;
}

Status SqliteStore::DisableWebhook(const std::string& webhook_id, TimePoint at) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(db, Transaction::Mode::kImmediate, "disabling webhook"));
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                   "UPDATE webhooks SET disabled_at = COALESCE(disabled_at, ?2) "
                                                   "WHERE webhook_id = ?1",
                                                   "disabling webhook"));
  s.Bind(1, webhook_id).BindTime(2, at);
  RETURN_IF_ERROR(s.Run());
  if (sqlite3_changes(db) == 0) return WebhookNotFound(webhook_id);
  ASSIGN_OR_RETURN(Statement f, Statement::Prepare(db,
                                                   "UPDATE webhook_deliveries SET state = 'failed', "
                                                   "last_error = 'webhook disabled' "
                                                   "WHERE webhook_id = ?1 AND state = 'pending'",
                                                   "failing deliveries of a disabled webhook"));
  f.Bind(1, webhook_id);
  RETURN_IF_ERROR(f.Run());
  return tx.Commit();
}

StatusOr<int> SqliteStore::EnqueueWebhookEvent(const WebhookEventRecord& event) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(db, Transaction::Mode::kImmediate, "enqueueing webhook event"));
  ASSIGN_OR_RETURN(int n, EnqueueLocked(db, event));
  RETURN_IF_ERROR(tx.Commit());
  return n;
}

StatusOr<std::vector<DueWebhookDelivery>> SqliteStore::ClaimWebhookDeliveries(TimePoint now, TimePoint lease_until,
                                                                             int limit) {
  RETURN_IF_ERROR(ValidatePageLimit(limit));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx,
                   Transaction::Begin(db, Transaction::Mode::kImmediate, "claiming webhook deliveries"));
  ASSIGN_OR_RETURN(Statement s,
                   Statement::Prepare(db,
                                      Sql("SELECT ", kClaimColumns, kClaimFrom) +
                                          " WHERE d.state = 'pending' AND d.next_attempt_at <= ?1 "
                                          "ORDER BY d.next_attempt_at, d.created_at, d.event_id, d.webhook_id LIMIT ?2",
                                      "claiming webhook deliveries"));
  s.BindTime(1, now).Bind(2, static_cast<int64_t>(limit));
  std::vector<DueWebhookDelivery> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back(ReadDueDelivery(s));
  }
  for (auto& d : out) {
    ASSIGN_OR_RETURN(Statement u, Statement::Prepare(db,
                                                     "UPDATE webhook_deliveries SET next_attempt_at = ?3 "
                                                     "WHERE event_id = ?1 AND webhook_id = ?2",
                                                     "leasing webhook delivery"));
    u.Bind(1, d.delivery.event_id).Bind(2, d.delivery.webhook_id).BindTime(3, lease_until);
    RETURN_IF_ERROR(u.Run());
    d.delivery.next_attempt_at = lease_until;
  }
  RETURN_IF_ERROR(tx.Commit());
  return out;
}

Status SqliteStore::RecordWebhookAttempt(const WebhookDeliveryRecord& r) {
  RETURN_IF_ERROR(ValidateDeliveryState(r.state));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx,
                   Transaction::Begin(db, Transaction::Mode::kImmediate, "recording webhook attempt"));
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                   "UPDATE webhook_deliveries SET state = ?3, attempts = ?4, "
                                                   "next_attempt_at = ?5, last_status = ?6, last_error = ?7, "
                                                   "delivered_at = ?8 WHERE event_id = ?1 AND webhook_id = ?2",
                                                   "recording webhook attempt"));
  s.Bind(1, r.event_id).Bind(2, r.webhook_id).Bind(3, r.state).Bind(4, r.attempts).BindTime(5, r.next_attempt_at);
  s.Bind(6, r.last_status).Bind(7, r.last_error).BindOptionalTime(8, r.delivered_at);
  RETURN_IF_ERROR(s.Run());
  if (sqlite3_changes(db) == 0) {
    return NoDelivery(r.event_id, r.webhook_id);
  }
  return tx.Commit();
}

StatusOr<std::vector<WebhookDeliveryRecord>> SqliteStore::ListWebhookDeliveries(const std::string& webhook_id,
                                                                               int limit) {
  RETURN_IF_ERROR(ValidatePageLimit(limit));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   Sql("SELECT ", kDeliveryColumns,
                                                       " FROM webhook_deliveries WHERE webhook_id = ?1 "
                                                       "ORDER BY created_at DESC, event_id DESC LIMIT ?2"),
                                                   "listing webhook deliveries"));
  s.Bind(1, webhook_id).Bind(2, static_cast<int64_t>(limit));
  std::vector<WebhookDeliveryRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back(ReadDelivery(s));
  }
  return out;
}

StatusOr<WebhookEventRecord> SqliteStore::GetWebhookEvent(const std::string& event_id) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   Sql("SELECT ", kWebhookEventColumns,
                                                       " FROM webhook_events WHERE event_id = ?1"),
                                                   "reading webhook event"));
  s.Bind(1, event_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return WebhookEventNotFound(event_id);
  return ReadWebhookEvent(s);
}

// --- re-sign jobs ------------------------------------------------------------------

Status SqliteStore::InsertResignJob(const ResignJobRecord& j) {
  RETURN_IF_ERROR(ValidateResignJob(j));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(db, Transaction::Mode::kImmediate, "inserting re-sign job"));
  RETURN_IF_ERROR(RequireLiveTenant(db, j.tenant_id));
  ASSIGN_OR_RETURN(Statement s,
                   Statement::Prepare(db,
                                      Sql("INSERT INTO resign_jobs (", kResignJobColumns,
                                          ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, "
                                          "?15, ?16, ?17, ?18, ?19)"),
                                      "inserting re-sign job"));
  s.Bind(1, j.job_id).Bind(2, j.tenant_id).Bind(3, j.incident_id).Bind(4, j.compromised_key_id);
  s.Bind(5, j.new_key_id).BindOptionalTime(6, j.since).Bind(7, j.state).Bind(8, j.cursor_seq).Bind(9, j.total);
  s.Bind(10, j.processed).Bind(11, j.resigned).Bind(12, j.needs_client).Bind(13, j.already_resigned);
  s.Bind(14, j.error).Bind(15, j.created_by).BindTime(16, j.created_at).BindTime(17, j.updated_at);
  s.BindOptionalTime(18, j.started_at).BindOptionalTime(19, j.finished_at);
  RETURN_IF_ERROR(s.Run());
  return tx.Commit();
}

StatusOr<ResignJobRecord> SqliteStore::GetResignJob(const std::string& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   Sql("SELECT ", kResignJobColumns, " FROM resign_jobs WHERE job_id = ?1"),
                                                   "reading re-sign job"));
  s.Bind(1, job_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return JobNotFound(job_id);
  return ReadResignJob(s);
}

StatusOr<std::vector<ResignJobRecord>> SqliteStore::ListResignJobs(const std::optional<std::string>& tenant_id,
                                                                   const std::vector<std::string>& states) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  // States are matched as whole items of a comma-separated list, like webhook filters.
  std::string state_list;
  for (const auto& st : states) state_list += (state_list.empty() ? "" : ",") + st;
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   Sql("SELECT ", kResignJobColumns,
                                                       " FROM resign_jobs WHERE (?1 = 0 OR tenant_id = ?2) "
                                                       "AND (?3 = '' OR instr(',' || ?3 || ',', ',' || state || ',') > 0) "
                                                       "ORDER BY created_at, job_id"),
                                                   "listing re-sign jobs"));
  s.Bind(1, static_cast<int64_t>(tenant_id.has_value() ? 1 : 0)).Bind(2, tenant_id.value_or("")).Bind(3, state_list);
  std::vector<ResignJobRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back(ReadResignJob(s));
  }
  return out;
}

Status SqliteStore::UpdateResignJobState(const std::string& job_id, const std::string& expected_state,
                                         const std::string& new_state, const std::string& error, TimePoint at,
                                         const std::vector<WebhookEventRecord>& notify) {
  RETURN_IF_ERROR(ValidateNewJobState(new_state));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(db, Transaction::Mode::kImmediate, "changing job state"));
  {
    ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db, "SELECT state FROM resign_jobs WHERE job_id = ?1",
                                                     "reading job state"));
    s.Bind(1, job_id);
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return JobNotFound(job_id);
    if (s.ColumnText(0) != expected_state) {
      return JobChangedConcurrently(job_id, s.ColumnText(0), expected_state);
    }
  }
  ASSIGN_OR_RETURN(Statement u, Statement::Prepare(db,
                                                   "UPDATE resign_jobs SET state = ?2, updated_at = ?3, "
                                                   "error = CASE WHEN ?4 = '' THEN error ELSE ?4 END, "
                                                   "started_at = CASE WHEN ?2 = 'running' THEN "
                                                   "COALESCE(started_at, ?3) ELSE started_at END, "
                                                   "finished_at = CASE WHEN ?5 = 1 THEN ?3 ELSE finished_at END "
                                                   "WHERE job_id = ?1",
                                                   "changing job state"));
  u.Bind(1, job_id).Bind(2, new_state).BindTime(3, at).Bind(4, error);
  u.Bind(5, static_cast<int64_t>(IsTerminalJobState(new_state) ? 1 : 0));
  RETURN_IF_ERROR(u.Run());
  RETURN_IF_ERROR(EnqueueAllLocked(db, notify));
  return tx.Commit();
}

Status SqliteStore::SetResignJobTotal(const std::string& job_id, int64_t total, TimePoint at) {
  RETURN_IF_ERROR(ValidateJobTotal(total));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                   "UPDATE resign_jobs SET total = ?2, updated_at = ?3 "
                                                   "WHERE job_id = ?1",
                                                   "recording job total"));
  s.Bind(1, job_id).Bind(2, total).BindTime(3, at);
  RETURN_IF_ERROR(s.Run());
  if (sqlite3_changes(db) == 0) return JobNotFound(job_id);
  return Status::Ok();
}

}  // namespace concierge::store
