#include "store/postgres/postgres_store.h"

#include <string>
#include <string_view>

namespace concierge::store {
namespace {

// The incident, webhook and re-sign job tables exist on PostgreSQL (migration
// v7, so backups and schema stay in step) but the Store methods on them are
// still to be ported from sqlite_incidents.cc.
Status Unsupported(std::string_view method) {
  return UnimplementedError(std::string(method) + " is not yet supported on PostgreSQL");
}

}  // namespace

Status PostgresStore::InsertIncident(const IncidentRecord&, const IncidentEvent&, const std::vector<WebhookEventRecord>&) { return Unsupported("InsertIncident"); }
Status PostgresStore::FoldIncident(const std::string&, const IncidentEvent&, const std::vector<WebhookEventRecord>&) { return Unsupported("FoldIncident"); }
StatusOr<IncidentRecord> PostgresStore::FindOpenIncident(const std::string&, const std::string&, const std::string&) { return Unsupported("FindOpenIncident"); }
StatusOr<IncidentRecord> PostgresStore::GetIncident(const std::string&) { return Unsupported("GetIncident"); }
StatusOr<std::vector<IncidentRecord>> PostgresStore::ListIncidents(const IncidentQuery&) { return Unsupported("ListIncidents"); }
Status PostgresStore::TransitionIncident(const std::string&, const std::string&, const IncidentEvent&, const std::vector<WebhookEventRecord>&) { return Unsupported("TransitionIncident"); }
Status PostgresStore::AppendIncidentEvent(const IncidentEvent&, const std::vector<WebhookEventRecord>&) { return Unsupported("AppendIncidentEvent"); }
Status PostgresStore::UpdateIncidentPlaybook(const std::string&, const std::string&, const IncidentEvent&) { return Unsupported("UpdateIncidentPlaybook"); }
StatusOr<std::vector<IncidentEvent>> PostgresStore::ListIncidentEvents(const std::string&) { return Unsupported("ListIncidentEvents"); }
Status PostgresStore::InsertWebhook(const WebhookRecord&) { return Unsupported("InsertWebhook"); }
StatusOr<WebhookRecord> PostgresStore::GetWebhook(const std::string&) { return Unsupported("GetWebhook"); }
StatusOr<std::vector<WebhookRecord>> PostgresStore::ListWebhooks(const std::optional<std::string>&) { return Unsupported("ListWebhooks"); }
Status PostgresStore::DisableWebhook(const std::string&, TimePoint) { return Unsupported("DisableWebhook"); }
StatusOr<int> PostgresStore::EnqueueWebhookEvent(const WebhookEventRecord&) { return Unsupported("EnqueueWebhookEvent"); }
StatusOr<std::vector<DueWebhookDelivery>> PostgresStore::ClaimWebhookDeliveries(TimePoint, TimePoint, int) { return Unsupported("ClaimWebhookDeliveries"); }
Status PostgresStore::RecordWebhookAttempt(const WebhookDeliveryRecord&) { return Unsupported("RecordWebhookAttempt"); }
StatusOr<std::vector<WebhookDeliveryRecord>> PostgresStore::ListWebhookDeliveries(const std::string&, int) { return Unsupported("ListWebhookDeliveries"); }
StatusOr<WebhookEventRecord> PostgresStore::GetWebhookEvent(const std::string&) { return Unsupported("GetWebhookEvent"); }
Status PostgresStore::InsertResignJob(const ResignJobRecord&) { return Unsupported("InsertResignJob"); }
StatusOr<ResignJobRecord> PostgresStore::GetResignJob(const std::string&) { return Unsupported("GetResignJob"); }
StatusOr<std::vector<ResignJobRecord>> PostgresStore::ListResignJobs(const std::optional<std::string>&, const std::vector<std::string>&) { return Unsupported("ListResignJobs"); }
Status PostgresStore::UpdateResignJobState(const std::string&, const std::string&, const std::string&, const std::string&, TimePoint, const std::vector<WebhookEventRecord>&) { return Unsupported("UpdateResignJobState"); }
Status PostgresStore::SetResignJobTotal(const std::string&, int64_t, TimePoint) { return Unsupported("SetResignJobTotal"); }

}  // namespace concierge::store
