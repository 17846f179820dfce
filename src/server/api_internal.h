// Internals shared by the REST handler files (api.cc and api_<area>.cc): the
// per-request Call, the API_* early-return macros, strict JSON field readers
// whose errors name the field, and the JSON shapes of stored records. Not part
// of the server's interface: include it only from src/server/api*.cc.
#ifndef CONCIERGE_SERVER_API_INTERNAL_H_
#define CONCIERGE_SERVER_API_INTERNAL_H_

#include <nlohmann/json.hpp>

#include <chrono>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/api.h"

namespace concierge::server {

using json = nlohmann::json;
using core::Permission;

HttpResponse JsonResponse(int status, const json& body);
// 405 with an Allow header (405 has no Status code of its own).
HttpResponse MethodNotAllowed(const HttpRequest& req, const char* allowed);
HttpResponse PemResponse(std::string body, const char* content_type = "application/x-pem-file");
json KeyJson(const KeyRecord& k);
json CertificateJson(const CertificateRecord& c);
json PolicyVersionJson(const core::PolicyVersion& v);
json ApiKeyJson(const ApiKeyRecord& k);
Status NoCertificateService();

// Splits "/api/v1/tenants/x/sign" into {"api","v1","tenants","x","sign"}.
std::vector<std::string> Segments(const std::string& path);
// Whether `s` matches `pattern` segment by segment ("*" matches any one).
bool PathIs(const std::vector<std::string>& s, std::initializer_list<const char*> pattern);
// 405 naming the allowed methods (it has no Status code of its own).
HttpResponse MethodNotAllowed(const HttpRequest& req, const char* allowed);
// Whether `method` is one of `allowed` ("GET, POST").
bool MethodIn(std::string_view method, std::string_view allowed);

// Strict readers for request bodies: every error names its field.
StatusOr<json> ParseBody(const std::string& body);
Status OnlyFields(const json& body, std::initializer_list<std::string_view> allowed);
StatusOr<std::string> StringField(const json& body, const char* field, bool required);
StatusOr<Bytes> HexField(const json& body, const char* field);
StatusOr<core::SignatureFormat> FormatField(const json& body);

std::string NewRequestId();
bool ValidRequestId(const std::string& id);
// A whole decimal integer within [lo, hi]; nullopt for anything else
// (signs other than a leading '-', spaces, trailing text, overflow).
std::optional<int64_t> ParseInt(std::string_view text, int64_t lo, int64_t hi);

// What an incident or job handler needs once the caller is authenticated.
struct RouteCtx {
  const ApiDeps& d;
  const HttpRequest& req;
  const core::Principal& p;
};
// A query parameter, "" when absent.
std::string QueryParam(const HttpRequest& req, const char* name);
// Role check (403), then scope: a resource of another tenant (or a global
// one, for a tenant-scoped key) is "not found", so ids do not leak.
Status AllowScoped(const RouteCtx& c, Permission permission, const std::string& tenant, const std::string& what);
// The tenant a listing covers: a scoped key's own, else ?tenant_id= (nullopt = all).
StatusOr<std::optional<std::string>> ListingScope(const RouteCtx& c, Permission permission);
// Optional query parameters: `out` is left alone when the parameter is
// absent; a malformed value is a FieldError naming it.
Status IntParam(const HttpRequest& req, const char* name, int64_t lo, int64_t hi, int64_t* out);
Status TimeParam(const HttpRequest& req, const char* name, std::optional<TimePoint>* out);

// A state change whose attempt is on the audit log (Api::BeginChange).
// Finish records the outcome; if that fails the change still stands (its
// attempt is recorded), so the failure is logged, not returned.
struct AuditedChange {
  core::AuditLog* log = nullptr;
  core::AuditEvent event;
  int64_t attempt_index = -1;

  void Finish(const Status& outcome, const json& result = json::object());
};

struct Api::Call {
  HttpRequest req;
  std::string request_id;
  std::optional<core::Principal> principal;
  Responder respond;
  std::chrono::steady_clock::time_point start;

  // Authenticates once per request.
  Status Authenticate(Api& api) {
    if (!principal) {
      ASSIGN_OR_RETURN(core::Principal p, api.d_.auth->Authenticate(req.Header("authorization")));
      principal = std::move(p);
    }
    return Status::Ok();
  }
  // Authenticates and authorises `permission` on `tenant` ("" = global).
  Status Require(Api& api, Permission permission, const std::string& tenant) {
    RETURN_IF_ERROR(Authenticate(api));
    return api.d_.auth->Authorize(*principal, permission, tenant);
  }
  // For listings: any principal whose role may read; scoped ones see only their tenant.
  Status RequireListing(Api& api) {
    RETURN_IF_ERROR(Authenticate(api));
    if (!core::RoleAllows(principal->role, Permission::kTenantRead)) {
      return api.d_.auth->Authorize(*principal, Permission::kTenantRead, principal->tenant_id);
    }
    return Status::Ok();
  }
};

#define API_RETURN_IF_ERROR(call, expr)                                   \
  do {                                                                    \
    ::concierge::Status _st = (expr);                                     \
    if (!_st.ok()) return ErrorResponse(_st, (call).request_id);          \
  } while (0)

#define API_ASSIGN_OR_RETURN_IMPL_(tmp, call, lhs, expr)                   \
  auto tmp = (expr);                                                      \
  if (!tmp.ok()) return ErrorResponse(tmp.status(), (call).request_id);   \
  lhs = std::move(tmp).value()

#define API_ASSIGN_OR_RETURN(call, lhs, expr) \
  API_ASSIGN_OR_RETURN_IMPL_(CONCIERGE_CONCAT_(_api_so_, __LINE__), call, lhs, expr)


}  // namespace concierge::server

#endif  // CONCIERGE_SERVER_API_INTERNAL_H_
