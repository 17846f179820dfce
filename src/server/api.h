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
#include "core/ledger_writer.h"
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
  // Every state change is recorded here before it is applied (api_audit.cc);
  // without it those routes answer 503.
  core::AuditLog* audit = nullptr;
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
  HttpResponse CreateApiKey(Call& call);
  HttpResponse ListApiKeys(Call& call);
  HttpResponse RevokeApiKey(Call& call, const std::string& id);

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
