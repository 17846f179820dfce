// PostgresStore: incidents and their timelines, webhooks and their outbox,
// re-sign job records (schema version 7). Mirrors sqlite_incidents.cc
// statement for statement, with the rules, messages, column lists and readers
// of store/common/sql_records.h. Writes hold the store write lock (see
// postgres_store.h), so numbering timeline events with MAX(seq) + 1 and the
// read-check-write sequences (expected incident or job state) cannot race,
// across instances too. Text orders use COLLATE "C" (bytewise, like SQLite).
//
// Parameters are sent untyped; where PostgreSQL cannot infer a type from the
// context (a SELECT list feeding an INSERT, CASE, GREATEST, ||) they carry an
// explicit cast.
#include <string>
#include <string_view>

#include "store/postgres/postgres_store.h"
#include "store/postgres/postgres_store_internal.h"

namespace concierge::store {

using pg_internal::LoadTenantState;
using pg_internal::ReadAll;

namespace {

// kNotFound unless the tenant exists and is not deleted.
Status RequireLiveTenant(PGconn* c, const std::string& tenant_id) {
  ASSIGN_OR_RETURN(TenantState t, LoadTenantState(c, tenant_id));
  if (!t.exists || t.deleted) return TenantNotFoundOrDeleted(tenant_id);
  return Status::Ok();
}

// The incident's state, or kNotFound. Incidents change only in store write
// transactions, so under the write lock the state read stays true until commit.
StatusOr<std::string> IncidentState(PGconn* c, const std::string& incident_id) {
  ASSIGN_OR_RETURN(PgResult r, PgExec(c, "SELECT state FROM incidents WHERE incident_id = $1",
                                      PgParams().Text(incident_id), "reading incident state"));
  if (r.rows() == 0) return IncidentNotFound(incident_id);
  return r.row(0).ColumnText(0);
}

// Appends a timeline row with the next seq of its incident and touches
// updated_at.
Status InsertEventRow(PGconn* c, const IncidentEvent& e) {
  PgParams p;
  p.Text(e.incident_id).Time(e.at).Text(e.actor).Text(e.action).Text(e.from_state).Text(e.to_state).Text(e.detail);
  RETURN_IF_ERROR(PgExec(c,
                         Sql("INSERT INTO incident_events (", kIncidentEventColumns,
                             ") SELECT $1::text, COALESCE(MAX(seq), 0) + 1, $2::bigint, $3::text, $4::text, "
                             "$5::text, $6::text, $7::text FROM incident_events WHERE incident_id = $1"),
                         p, "appending to incident timeline")
                      .status());
  return PgExec(c, "UPDATE incidents SET updated_at = GREATEST(updated_at, $2::bigint) WHERE incident_id = $1",
                PgParams().Text(e.incident_id).Time(e.at), "touching incident")
      .status();
}

// Stores the event and fans it out to the webhooks that should see it;
// returns the number of deliveries.
StatusOr<int> EnqueueLocked(PGconn* c, const WebhookEventRecord& ev) {
  RETURN_IF_ERROR(ValidateWebhookEvent(ev));
  PgParams p;
  p.Text(ev.event_id).Text(ev.tenant_id).Text(ev.type).Text(ev.payload_json).Time(ev.created_at);
  RETURN_IF_ERROR(PgExec(c, Sql("INSERT INTO webhook_events (", kWebhookEventColumns, ") VALUES ($1, $2, $3, $4, $5)"),
                         p, "storing webhook event")
                      .status());
  // Global webhooks see everything; a tenant's webhooks see that tenant's
  // events. The filter is a comma-separated list matched as whole items.
  ASSIGN_OR_RETURN(PgResult r,
                   PgExec(c,
                          "INSERT INTO webhook_deliveries (event_id, webhook_id, state, attempts, "
                          "next_attempt_at, created_at) "
                          "SELECT $1::text, webhook_id, 'pending', 0, $2::bigint, $2::bigint FROM webhooks "
                          "WHERE disabled_at IS NULL "
                          "AND (tenant_id = '' OR ($3::text <> '' AND tenant_id = $3::text)) "
                          "AND (event_types = '' OR "
                          "strpos(',' || event_types || ',', ',' || $4::text || ',') > 0)",
                          PgParams().Text(ev.event_id).Time(ev.created_at).Text(ev.tenant_id).Text(ev.type),
                          "fanning out webhook event"));
  return static_cast<int>(r.affected());
}

Status EnqueueAllLocked(PGconn* c, const std::vector<WebhookEventRecord>& notify) {
  for (const auto& ev : notify) RETURN_IF_ERROR(EnqueueLocked(c, ev).status());
  return Status::Ok();
}

IncidentEvent ForIncident(const IncidentEvent& event, const std::string& incident_id) {
  IncidentEvent e = event;
  e.incident_id = incident_id;
  return e;
}

}  // namespace

// --- incidents -------------------------------------------------------------------

Status PostgresStore::InsertIncident(const IncidentRecord& r, const IncidentEvent& first_event,
                                     const std::vector<WebhookEventRecord>& notify) {
  RETURN_IF_ERROR(ValidateIncident(r));
  RETURN_IF_ERROR(ValidateIncidentEvent(first_event));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("opening incident"));
  PGconn* c = session.conn();
  PgParams p;
  p.Text(r.incident_id).Text(r.tenant_id).Text(r.type).Text(r.severity).Text(r.state);
  p.Text(r.title).Text(r.detector).Text(r.dedup_key).Text(r.key_id).Int(r.occurrences);
  p.Text(r.details_json).Text(r.playbook_json).Text(r.created_by).Time(r.created_at);
  p.Time(r.updated_at).OptionalTime(r.resolved_at).OptionalTime(r.closed_at);
  RETURN_IF_ERROR(PgExec(c,
                         Sql("INSERT INTO incidents (", kIncidentColumns,
                             ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, "
                             "$17)"),
                         p, "inserting incident")
                      .status());
  RETURN_IF_ERROR(InsertEventRow(c, ForIncident(first_event, r.incident_id)));
  RETURN_IF_ERROR(EnqueueAllLocked(c, notify));
  return session.tx.Commit();
}

Status PostgresStore::FoldIncident(const std::string& incident_id, const IncidentEvent& event,
                                   const std::vector<WebhookEventRecord>& notify) {
  RETURN_IF_ERROR(ValidateIncidentEvent(event));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("folding incident"));
  PGconn* c = session.conn();
  ASSIGN_OR_RETURN(std::string state, IncidentState(c, incident_id));
  if (IsClosedIncidentState(state)) return IncidentNotOpen(incident_id, state);
  RETURN_IF_ERROR(PgExec(c, "UPDATE incidents SET occurrences = occurrences + 1 WHERE incident_id = $1",
                         PgParams().Text(incident_id), "counting folded detection")
                      .status());
  RETURN_IF_ERROR(InsertEventRow(c, ForIncident(event, incident_id)));
  RETURN_IF_ERROR(EnqueueAllLocked(c, notify));
  return session.tx.Commit();
}

StatusOr<IncidentRecord> PostgresStore::FindOpenIncident(const std::string& tenant_id, const std::string& type,
                                                         const std::string& dedup_key) {
  ASSIGN_OR_RETURN(PgResult r, Read(Sql("SELECT ", kIncidentColumns,
                                        " FROM incidents WHERE tenant_id = $1 AND type = $2 "
                                        "AND dedup_key = $3 AND dedup_key <> '' "
                                        "AND state NOT IN ('resolved', 'closed')"),
                                    PgParams().Text(tenant_id).Text(type).Text(dedup_key), "finding open incident"));
  if (r.rows() == 0) return NoOpenIncident(type);
  return ReadIncident(r.row(0));
}

StatusOr<IncidentRecord> PostgresStore::GetIncident(const std::string& incident_id) {
  ASSIGN_OR_RETURN(PgResult r, Read(Sql("SELECT ", kIncidentColumns, " FROM incidents WHERE incident_id = $1"),
                                    PgParams().Text(incident_id), "reading incident"));
  if (r.rows() == 0) return IncidentNotFound(incident_id);
  return ReadIncident(r.row(0));
}

StatusOr<std::vector<IncidentRecord>> PostgresStore::ListIncidents(const IncidentQuery& q) {
  RETURN_IF_ERROR(ValidatePageLimit(q.limit));
  PgParams p;
  p.Int(q.tenant_id.has_value() ? 1 : 0).Text(q.tenant_id.value_or("")).Text(q.state);
  p.Int(q.open_only ? 1 : 0).Int(q.limit);
  ASSIGN_OR_RETURN(PgResult r, Read(Sql("SELECT ", kIncidentColumns,
                                        " FROM incidents WHERE ($1::bigint = 0 OR tenant_id = $2::text) "
                                        "AND ($3::text = '' OR state = $3::text) "
                                        "AND ($4::bigint = 0 OR state NOT IN ('resolved', 'closed')) "
                                        "ORDER BY created_at DESC, incident_id COLLATE \"C\" DESC LIMIT $5"),
                                    p, "listing incidents"));
  return ReadAll<IncidentRecord>(r, ReadIncident<PgRow>);
}

Status PostgresStore::TransitionIncident(const std::string& incident_id, const std::string& expected_state,
                                         const IncidentEvent& event, const std::vector<WebhookEventRecord>& notify) {
  RETURN_IF_ERROR(ValidateIncidentTransition(event));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("changing incident state"));
  PGconn* c = session.conn();
  ASSIGN_OR_RETURN(std::string state, IncidentState(c, incident_id));
  if (state != expected_state) return IncidentChangedConcurrently(incident_id, state, expected_state);
  RETURN_IF_ERROR(PgExec(c,
                         "UPDATE incidents SET state = $2::text, "
                         "resolved_at = CASE WHEN $2::text = 'resolved' THEN "
                         "COALESCE(resolved_at, $3::bigint) ELSE resolved_at END, "
                         "closed_at = CASE WHEN $2::text = 'closed' THEN "
                         "COALESCE(closed_at, $3::bigint) ELSE closed_at END "
                         "WHERE incident_id = $1",
                         PgParams().Text(incident_id).Text(event.to_state).Time(event.at),
                         "changing incident state")
                      .status());
  RETURN_IF_ERROR(InsertEventRow(c, ForIncident(event, incident_id)));
  RETURN_IF_ERROR(EnqueueAllLocked(c, notify));
  return session.tx.Commit();
}

Status PostgresStore::AppendIncidentEvent(const IncidentEvent& event, const std::vector<WebhookEventRecord>& notify) {
  RETURN_IF_ERROR(ValidateIncidentEvent(event));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("appending incident event"));
  PGconn* c = session.conn();
  RETURN_IF_ERROR(IncidentState(c, event.incident_id).status());
  RETURN_IF_ERROR(InsertEventRow(c, event));
  RETURN_IF_ERROR(EnqueueAllLocked(c, notify));
  return session.tx.Commit();
}

Status PostgresStore::UpdateIncidentPlaybook(const std::string& incident_id, const std::string& playbook_json,
                                             const IncidentEvent& event) {
  RETURN_IF_ERROR(ValidateIncidentEvent(event));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("recording playbook progress"));
  PGconn* c = session.conn();
  RETURN_IF_ERROR(IncidentState(c, incident_id).status());
  RETURN_IF_ERROR(PgExec(c, "UPDATE incidents SET playbook_json = $2 WHERE incident_id = $1",
                         PgParams().Text(incident_id).Text(playbook_json), "recording playbook progress")
                      .status());
  RETURN_IF_ERROR(InsertEventRow(c, ForIncident(event, incident_id)));
  return session.tx.Commit();
}

StatusOr<std::vector<IncidentEvent>> PostgresStore::ListIncidentEvents(const std::string& incident_id) {
  // One snapshot, so the existence check and the rows agree.
  ASSIGN_OR_RETURN(PgPool::Session session, Snapshot("reading timeline"));
  PGconn* c = session.conn();
  ASSIGN_OR_RETURN(PgResult found, PgExec(c, "SELECT 1 FROM incidents WHERE incident_id = $1",
                                          PgParams().Text(incident_id), "reading incident"));
  if (found.rows() == 0) return IncidentNotFound(incident_id);
  ASSIGN_OR_RETURN(PgResult r, PgExec(c,
                                      Sql("SELECT ", kIncidentEventColumns,
                                          " FROM incident_events WHERE incident_id = $1 ORDER BY seq"),
                                      PgParams().Text(incident_id), "reading timeline"));
  RETURN_IF_ERROR(session.tx.Commit());
  return ReadAll<IncidentEvent>(r, ReadIncidentEvent<PgRow>);
}

// --- webhooks ------------------------------------------------------------------

Status PostgresStore::InsertWebhook(const WebhookRecord& w) {
  RETURN_IF_ERROR(ValidateWebhook(w));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("inserting webhook"));
  PGconn* c = session.conn();
  if (!w.tenant_id.empty()) RETURN_IF_ERROR(RequireLiveTenant(c, w.tenant_id));
  PgParams p;
  p.Text(w.webhook_id).Text(w.tenant_id).Text(w.url).Text(w.secret_sealed).Text(w.event_types);
  p.Text(w.created_by).Time(w.created_at).OptionalTime(w.disabled_at);
  RETURN_IF_ERROR(
      PgExec(c, Sql("INSERT INTO webhooks (", kWebhookColumns, ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"), p,
             "inserting webhook")
          .status());
  return session.tx.Commit();
}

StatusOr<WebhookRecord> PostgresStore::GetWebhook(const std::string& webhook_id) {
  ASSIGN_OR_RETURN(PgResult r, Read(Sql("SELECT ", kWebhookColumns, " FROM webhooks WHERE webhook_id = $1"),
                                    PgParams().Text(webhook_id), "reading webhook"));
  if (r.rows() == 0) return WebhookNotFound(webhook_id);
  return ReadWebhook(r.row(0));
}

StatusOr<std::vector<WebhookRecord>> PostgresStore::ListWebhooks(const std::optional<std::string>& tenant_id) {
  ASSIGN_OR_RETURN(PgResult r, Read(Sql("SELECT ", kWebhookColumns,
                                        " FROM webhooks WHERE ($1::bigint = 0 OR tenant_id = $2::text) "
                                        "ORDER BY created_at, webhook_id COLLATE \"C\""),
                                    PgParams().Int(tenant_id.has_value() ? 1 : 0).Text(tenant_id.value_or("")),
                                    "listing webhooks"));
  return ReadAll<WebhookRecord>(r, [](const PgRow& row) { return ReadWebhook(row); });
}

Status PostgresStore::DisableWebhook(const std::string& webhook_id, TimePoint at) {
  ASSIGN_OR_RETURN(PgPool::Session session, Write("disabling webhook"));
  PGconn* c = session.conn();
  ASSIGN_OR_RETURN(PgResult r, PgExec(c,
                                      "UPDATE webhooks SET disabled_at = COALESCE(disabled_at, $2::bigint) "
                                      "WHERE webhook_id = $1",
                                      PgParams().Text(webhook_id).Time(at), "disabling webhook"));
  if (r.affected() == 0) return WebhookNotFound(webhook_id);
  RETURN_IF_ERROR(PgExec(c,
                         "UPDATE webhook_deliveries SET state = 'failed', last_error = 'webhook disabled' "
                         "WHERE webhook_id = $1 AND state = 'pending'",
                         PgParams().Text(webhook_id), "failing deliveries of a disabled webhook")
                      .status());
  return session.tx.Commit();
}

StatusOr<int> PostgresStore::EnqueueWebhookEvent(const WebhookEventRecord& event) {
  ASSIGN_OR_RETURN(PgPool::Session session, Write("enqueueing webhook event"));
  ASSIGN_OR_RETURN(int n, EnqueueLocked(session.conn(), event));
  RETURN_IF_ERROR(session.tx.Commit());
  return n;
}

StatusOr<std::vector<DueWebhookDelivery>> PostgresStore::ClaimWebhookDeliveries(TimePoint now, TimePoint lease_until,
                                                                               int limit) {
  RETURN_IF_ERROR(ValidatePageLimit(limit));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("claiming webhook deliveries"));
  PGconn* c = session.conn();
  ASSIGN_OR_RETURN(PgResult r, PgExec(c,
                                      Sql("SELECT ", kClaimColumns, kClaimFrom) +
                                          " WHERE d.state = 'pending' AND d.next_attempt_at <= $1 "
                                          "ORDER BY d.next_attempt_at, d.created_at, d.event_id COLLATE \"C\", "
                                          "d.webhook_id COLLATE \"C\" LIMIT $2",
                                      PgParams().Time(now).Int(limit), "claiming webhook deliveries"));
  std::vector<DueWebhookDelivery> out = ReadAll<DueWebhookDelivery>(r, ReadDueDelivery<PgRow>);
  for (auto& d : out) {
    RETURN_IF_ERROR(PgExec(c,
                           "UPDATE webhook_deliveries SET next_attempt_at = $3 "
                           "WHERE event_id = $1 AND webhook_id = $2",
                           PgParams().Text(d.delivery.event_id).Text(d.delivery.webhook_id).Time(lease_until),
                           "leasing webhook delivery")
                        .status());
    d.delivery.next_attempt_at = lease_until;
  }
  RETURN_IF_ERROR(session.tx.Commit());
  return out;
}

Status PostgresStore::RecordWebhookAttempt(const WebhookDeliveryRecord& r) {
  RETURN_IF_ERROR(ValidateDeliveryState(r.state));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("recording webhook attempt"));
  PgParams p;
  p.Text(r.event_id).Text(r.webhook_id).Text(r.state).Int(r.attempts).Time(r.next_attempt_at);
  p.Int(r.last_status).Text(r.last_error).OptionalTime(r.delivered_at);
  ASSIGN_OR_RETURN(PgResult u, PgExec(session.conn(),
                                      "UPDATE webhook_deliveries SET state = $3, attempts = $4, "
                                      "next_attempt_at = $5, last_status = $6, last_error = $7, "
                                      "delivered_at = $8 WHERE event_id = $1 AND webhook_id = $2",
                                      p, "recording webhook attempt"));
  if (u.affected() == 0) return NoDelivery(r.event_id, r.webhook_id);
  return session.tx.Commit();
}

StatusOr<std::vector<WebhookDeliveryRecord>> PostgresStore::ListWebhookDeliveries(const std::string& webhook_id,
                                                                                 int limit) {
  RETURN_IF_ERROR(ValidatePageLimit(limit));
  ASSIGN_OR_RETURN(PgResult r, Read(Sql("SELECT ", kDeliveryColumns,
                                        " FROM webhook_deliveries WHERE webhook_id = $1 "
                                        "ORDER BY created_at DESC, event_id COLLATE \"C\" DESC LIMIT $2"),
                                    PgParams().Text(webhook_id).Int(limit), "listing webhook deliveries"));
  return ReadAll<WebhookDeliveryRecord>(r, [](const PgRow& row) { return ReadDelivery(row); });
}

StatusOr<WebhookEventRecord> PostgresStore::GetWebhookEvent(const std::string& event_id) {
  ASSIGN_OR_RETURN(PgResult r, Read(Sql("SELECT ", kWebhookEventColumns, " FROM webhook_events WHERE event_id = $1"),
                                    PgParams().Text(event_id), "reading webhook event"));
  if (r.rows() == 0) return WebhookEventNotFound(event_id);
  return ReadWebhookEvent(r.row(0));
}

// --- re-sign jobs ------------------------------------------------------------------

Status PostgresStore::InsertResignJob(const ResignJobRecord& j) {
  RETURN_IF_ERROR(ValidateResignJob(j));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("inserting re-sign job"));
  PGconn* c = session.conn();
  RETURN_IF_ERROR(RequireLiveTenant(c, j.tenant_id));
  PgParams p;
  p.Text(j.job_id).Text(j.tenant_id).Text(j.incident_id).Text(j.compromised_key_id);
  p.Text(j.new_key_id).OptionalTime(j.since).Text(j.state).Int(j.cursor_seq).Int(j.total);
  p.Int(j.processed).Int(j.resigned).Int(j.needs_client).Int(j.already_resigned);
  p.Text(j.error).Text(j.created_by).Time(j.created_at).Time(j.updated_at);
  p.OptionalTime(j.started_at).OptionalTime(j.finished_at);
  RETURN_IF_ERROR(PgExec(c,
                         Sql("INSERT INTO resign_jobs (", kResignJobColumns,
                             ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, "
                             "$17, $18, $19)"),
                         p, "inserting re-sign job")
                      .status());
  return session.tx.Commit();
}

StatusOr<ResignJobRecord> PostgresStore::GetResignJob(const std::string& job_id) {
  ASSIGN_OR_RETURN(PgResult r, Read(Sql("SELECT ", kResignJobColumns, " FROM resign_jobs WHERE job_id = $1"),
                                    PgParams().Text(job_id), "reading re-sign job"));
  if (r.rows() == 0) return JobNotFound(job_id);
  return ReadResignJob(r.row(0));
}

StatusOr<std::vector<ResignJobRecord>> PostgresStore::ListResignJobs(const std::optional<std::string>& tenant_id,
                                                                     const std::vector<std::string>& states) {
  // States are matched as whole items of a comma-separated list, like webhook filters.
  std::string state_list;
  for (const auto& st : states) state_list += (state_list.empty() ? "" : ",") + st;
  ASSIGN_OR_RETURN(
      PgResult r,
      Read(Sql("SELECT ", kResignJobColumns,
               " FROM resign_jobs WHERE ($1::bigint = 0 OR tenant_id = $2::text) "
               "AND ($3::text = '' OR strpos(',' || $3::text || ',', ',' || state || ',') > 0) "
               "ORDER BY created_at, job_id COLLATE \"C\""),
           PgParams().Int(tenant_id.has_value() ? 1 : 0).Text(tenant_id.value_or("")).Text(state_list),
           "listing re-sign jobs"));
  return ReadAll<ResignJobRecord>(r, ReadResignJob<PgRow>);
}

Status PostgresStore::UpdateResignJobState(const std::string& job_id, const std::string& expected_state,
                                           const std::string& new_state, const std::string& error, TimePoint at,
                                           const std::vector<WebhookEventRecord>& notify) {
  RETURN_IF_ERROR(ValidateNewJobState(new_state));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("changing job state"));
  PGconn* c = session.conn();
  {
    // FOR UPDATE: the ledger's AppendResignBatch checks the state under the
    // same row lock, so a pause and a batch never both think they won.
    ASSIGN_OR_RETURN(PgResult s, PgExec(c, "SELECT state FROM resign_jobs WHERE job_id = $1 FOR UPDATE",
                                        PgParams().Text(job_id), "reading job state"));
    if (s.rows() == 0) return JobNotFound(job_id);
    if (s.row(0).ColumnText(0) != expected_state) {
      return JobChangedConcurrently(job_id, s.row(0).ColumnText(0), expected_state);
    }
  }
  RETURN_IF_ERROR(PgExec(c,
                         "UPDATE resign_jobs SET state = $2::text, updated_at = $3::bigint, "
                         "error = CASE WHEN $4::text = '' THEN error ELSE $4::text END, "
                         "started_at = CASE WHEN $2::text = 'running' THEN "
                         "COALESCE(started_at, $3::bigint) ELSE started_at END, "
                         "finished_at = CASE WHEN $5::bigint = 1 THEN $3::bigint ELSE finished_at END "
                         "WHERE job_id = $1",
                         PgParams().Text(job_id).Text(new_state).Time(at).Text(error).Int(
                             IsTerminalJobState(new_state) ? 1 : 0),
                         "changing job state")
                      .status());
  RETURN_IF_ERROR(EnqueueAllLocked(c, notify));
  return session.tx.Commit();
}

Status PostgresStore::SetResignJobTotal(const std::string& job_id, int64_t total, TimePoint at) {
  RETURN_IF_ERROR(ValidateJobTotal(total));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("recording job total"));
  ASSIGN_OR_RETURN(PgResult r, PgExec(session.conn(), "UPDATE resign_jobs SET total = $2, updated_at = $3 WHERE job_id = $1",
                                      PgParams().Text(job_id).Int(total).Time(at), "recording job total"));
  if (r.affected() == 0) return JobNotFound(job_id);
  return session.tx.Commit();
}

}  // namespace concierge::store
