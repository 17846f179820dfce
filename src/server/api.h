// Api: the REST API (/health, /ready, /api/v1/...). Turns HttpRequests into calls
// on the core services, checks authentication and authorisation on every
// /api/v1 route, maps Status to HTTP (one table: HttpStatusFor) and writes JSON
// errors {error, message, code, details}. Stateless apart from the services it
// borrows; thread-safe.
#ifndef CONCIERGE_SERVER_API_H_
#define CONCIERGE_SERVER_API_H_

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "concierge/key_backend.h"
#include "concierge/ledger.h"
#include "concierge/store.h"
#include "core/audit_log.h"
#include "core/auth.h"
#include "core/ca.h"
#include "core/failover.h"
#include "core/rotation_engine.h"
#include "core/rotation_evidence.h"
#include "core/rotation_scheduler.h"
#include "core/incident.h"
#include "core/incident_detectors.h"
#include "core/incident_playbook.h"
#include "core/leadership.h"
#include "core/ledger_writer.h"
#include "core/resign_job.h"
#include "core/webhook.h"
#include "core/signing_service.h"
#include "core/tenant_service.h"
#include "server/http_server.h"

namespace concierge::server {

int HttpStatusFor(StatusCode code);
// JSON error body for `status`; internal errors get a generic message.
HttpResponse ErrorResponse(const Status& status, const std::string& request_id);

struct ApiDeps {
  Store* store = nullptr;
  BackendRegistry* backends = nullptr;
  core::Authenticator* auth = nullptr;
  core::TenantService* tenants = nullptr;
  core::SigningService* signing = nullptr;
  LedgerStore* ledger = nullptr;
  core::LedgerWriter* ledger_writer = nullptr;
  class HealthProber* prober = nullptr;
  Clock* clock = nullptr;
  core::CertificateService* certs = nullptr;
  core::RotationEngine* rotations = nullptr;           // null: rotation routes answer 503
  core::RotationScheduler* rotation_scheduler = nullptr;  // runs executed rotations
  core::RotationEvidenceRecorder* evidence = nullptr;     // Rotation Evidence Packs
  // Incident response (null = those routes answer 503).
  core::IncidentService* incidents = nullptr;
  core::ResignJobEngine* jobs = nullptr;
  core::PlaybookRunner* playbooks = nullptr;
  core::WebhookService* webhooks = nullptr;
  core::IncidentDetectors* detectors = nullptr;
  core::FailoverService* failover = nullptr;  // standby keys; null = no failover
  // Every state change is recorded here before it is applied (api_audit.cc);
  // without it those routes answer 503.
  core::AuditLog* audit = nullptr;
  // Leader election among instances sharing a database: GET /health reports
  // "leader" (null: a single instance, always leader).
  const core::Leadership* leadership = nullptr;
};

struct AuditedChange;

class Api {
 public:
  explicit Api(ApiDeps deps) : d_(deps) {}
  void Handle(HttpRequest&& request, Responder respond);

 private:
  struct Call;
  // Returns the response, or nullopt when the route answers asynchronously
  // (signing: the response waits for the ledger commit).
  std::optional<HttpResponse> Dispatch(const std::shared_ptr<Call>& call);
  void Finish(const std::shared_ptr<Call>& call, HttpResponse response);

  HttpResponse Health(Call& call);
  HttpResponse Ready(Call& call);
  HttpResponse Metrics(Call& call);
  HttpResponse Whoami(Call& call);
  HttpResponse ListTenants(Call& call);
  HttpResponse GetTenant(Call& call, const std::string& tenant);
  HttpResponse ListPolicies(Call& call);
  HttpResponse CreatePolicy(Call& call, const std::string& tenant);
  HttpResponse GetPolicy(Call& call, const std::string& tenant);
  HttpResponse UpdatePolicy(Call& call, const std::string& tenant);
  HttpResponse DeletePolicy(Call& call, const std::string& tenant);
  HttpResponse PolicyVersions(Call& call, const std::string& tenant);
  HttpResponse ListKeys(Call& call, const std::string& tenant);
  HttpResponse GetKey(Call& call, const std::string& tenant, const std::string& key_id);
  HttpResponse PublicKey(Call& call, const std::string& tenant);
  std::optional<HttpResponse> Sign(const std::shared_ptr<Call>& call, const std::string& tenant, bool batch);
  // Fills `req` from a /sign or /sign/batch body; the error response if it is invalid.
  std::optional<HttpResponse> ParseSignBody(Call& call, bool batch, core::SignRequest& req);
  std::optional<HttpResponse> SignCose(const std::shared_ptr<Call>& call, const std::string& tenant);
  std::optional<HttpResponse> SignRaw(const std::shared_ptr<Call>& call, const std::string& tenant);
  HttpResponse C2paSignerInfo(Call& call, const std::string& tenant);
  HttpResponse Ledger(Call& call, const std::string& tenant);
  HttpResponse Verify(Call& call, const std::string& tenant);
  HttpResponse InitCa(Call& call);
  HttpResponse CaCertificate(Call& call);
  HttpResponse CaCrl(Call& call);
  HttpResponse CertificateChain(Call& call, const std::string& tenant);
  HttpResponse Csr(Call& call, const std::string& tenant);
  HttpResponse ImportCertificate(Call& call, const std::string& tenant);
  HttpResponse IssueCertificate(Call& call, const std::string& tenant);
  HttpResponse RevokeCertificate(Call& call, const std::string& tenant);
  // Rotations and key lifecycle (api_rotation.cc). DispatchRotation answers
  // the routes it owns and returns nullopt for every other path.
  std::optional<HttpResponse> DispatchRotation(Call& call, const std::vector<std::string>& segments);
  StatusOr<RotationRecord> AuditedRotationChange(Call& call, const char* action, const std::string& rotation_id,
                                                const std::function<StatusOr<RotationRecord>()>& change);
  HttpResponse ScheduleRotation(Call& call, const std::string& tenant);
  HttpResponse ListRotations(Call& call, const std::string& tenant);
  HttpResponse GetRotation(Call& call, const std::string& rotation_id);
  HttpResponse ExecuteRotation(Call& call, const std::string& rotation_id);
  HttpResponse ApproveRotation(Call& call, const std::string& rotation_id);
  HttpResponse RollbackRotation(Call& call, const std::string& rotation_id);
  HttpResponse CancelRotation(Call& call, const std::string& rotation_id);
  HttpResponse RotationEvidence(Call& call, const std::string& rotation_id);
  HttpResponse EvidenceKey(Call& call);
  HttpResponse SetKeyState(Call& call, const std::string& tenant, const std::string& key_id);
  // Backend failover routes (api_failover.cc); nullopt for other paths.
  std::optional<HttpResponse> DispatchFailover(Call& call, const std::vector<std::string>& segments);
  // After a policy write: provisions the standby key when the policy lists
  // failover backends and the tenant has none there; reports into `out`.
  void EnsureStandby(Call& call, const std::string& tenant, nlohmann::json& out);
  // Authorises `permission` on the rotation's tenant; a rotation of a tenant
  // the caller may not see is reported missing, not forbidden.
  StatusOr<core::RotationView> AuthorizedRotation(Call& call, core::Permission permission,
                                                  const std::string& rotation_id);
  // After a certificate import for `key_id`: queues the tenant's rotation that
  // waits for it, returning its id ("" when none waits).
  std::string ResumeAwaitingRotation(const std::string& tenant, const std::string& key_id);
  HttpResponse CreateApiKey(Call& call);
  HttpResponse ListApiKeys(Call& call);
  HttpResponse RevokeApiKey(Call& call, const std::string& id);

  // Incident response routes: incidents and webhooks (api_incident.cc), re-sign
  // jobs (api_jobs.cc). nullopt = the path is not theirs.
  std::optional<HttpResponse> DispatchIncidents(Call& call, const std::vector<std::string>& s);
  std::optional<HttpResponse> DispatchJobs(Call& call, const std::vector<std::string>& s);
  // Feeds a finished response to the incident detectors (api_incident.cc).
  void ObserveForDetectors(const Call& call, const HttpResponse& response);
  // Audit routes (api_audit.cc): /api/v1/audit/...; nullopt when the path is
  // not an audit route.
  std::optional<HttpResponse> DispatchAudit(Call& call, const std::vector<std::string>& segments);
  HttpResponse AuditEntries(Call& call);
  HttpResponse AuditCheckpoint(Call& call);
  HttpResponse CreateAuditCheckpoint(Call& call);
  HttpResponse AuditCheckpoints(Call& call);
  HttpResponse AuditKeys(Call& call);
  HttpResponse AuditInclusionProof(Call& call);
  HttpResponse AuditConsistencyProof(Call& call);
  // Audit-before-commit for a state-changing request: records the attempt
  // (actor, tenant, request id, client from `call`) and returns the handle
  // whose Finish() records the outcome; kUnavailable, and nothing may be
  // changed, when the attempt could not be recorded.
  StatusOr<AuditedChange> BeginChange(Call& call, std::string action, std::string tenant, std::string target,
                                      nlohmann::json detail = nlohmann::json::object());

  ApiDeps d_;
};

}  // namespace concierge::server

#endif  // CONCIERGE_SERVER_API_H_
