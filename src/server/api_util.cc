// Shared helpers of the REST handlers (declared in api_internal.h).
#include <charconv>

#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "server/api_internal.h"
#include "server/log.h"

namespace concierge::server {


HttpResponse JsonResponse(int status, const json& body) {
  HttpResponse r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

HttpResponse MethodNotAllowed(const HttpRequest& req, const char* allowed) {
  HttpResponse r = JsonResponse(405, {{"error", "method_not_allowed"},
                                      {"message", "method " + req.method + " is not allowed on " + req.path},
                                      {"code", 405},
                                      {"details", {{"allow", allowed}}}});
  r.headers.emplace_back("Allow", allowed);
  return r;
}

json KeyJson(const KeyRecord& k) {
  json j = {{"key_id", k.key_id},
            {"tenant_id", k.tenant_id},
            {"version", k.version},
            {"algorithm", k.algorithm},
            {"provider", k.provider},
            {"key_uri", k.key_uri},
            {"state", k.state},
            {"fingerprint_sha256", k.fingerprint},
            {"created_at", FormatRfc3339(k.created_at)},
            {"activated_at", k.activated_at ? json(FormatRfc3339(*k.activated_at)) : json(nullptr)},
            {"retired_at", k.retired_at ? json(FormatRfc3339(*k.retired_at)) : json(nullptr)},
            {"has_attestation", !k.attestation.empty()}};
  return j;
}

json CertificateJson(const CertificateRecord& c) {
  return {{"serial", c.serial},
          {"tenant_id", c.tenant_id},
          {"key_id", c.key_id},
          {"issuer", c.issuer},
          {"source", c.source},
          {"status", c.status},
          {"not_before", FormatRfc3339(c.not_before)},
          {"not_after", FormatRfc3339(c.not_after)},
          {"revoked_at", c.revoked_at ? json(FormatRfc3339(*c.revoked_at)) : json(nullptr)}};
}

HttpResponse PemResponse(std::string body, const char* content_type) {
  HttpResponse r;
  r.content_type = content_type;
  r.body = std::move(body);
  return r;
}

Status NoCertificateService() { return UnavailableError("certificates are not configured on this server"); }

json PolicyVersionJson(const core::PolicyVersion& v) {
  json j = core::PolicyToJson(v.policy);
  j["version"] = v.version;
  j["policy_hash"] = v.hash;
  j["created_by"] = v.created_by;
  j["created_at"] = FormatRfc3339(v.created_at);
  return j;
}

json ApiKeyJson(const ApiKeyRecord& k) {
  return {{"id", k.id},
          {"role", k.role},
          {"tenant_id", k.tenant_id.empty() ? json(nullptr) : json(k.tenant_id)},
          {"name", k.name},
          {"created_by", k.created_by},
          {"created_at", FormatRfc3339(k.created_at)},
          {"revoked_at", k.revoked_at ? json(FormatRfc3339(*k.revoked_at)) : json(nullptr)}};
}

// Splits "/api/v1/tenants/x/sign" into {"api","v1","tenants","x","sign"}.
std::vector<std::string> Segments(const std::string& path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') ++i;
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) out.push_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}

bool PathIs(const std::vector<std::string>& s, std::initializer_list<const char*> pattern) {
  if (s.size() != pattern.size()) return false;
  size_t i = 0;
  for (const char* p : pattern) {
    if (std::string_view(p) != "*" && s[i] != p) return false;
    ++i;
  }
  return true;
}


bool MethodIn(std::string_view method, std::string_view allowed) {
  while (!allowed.empty()) {
    size_t comma = allowed.find(',');
    std::string_view one = allowed.substr(0, comma);
    while (!one.empty() && one.front() == ' ') one.remove_prefix(1);
    if (one == method) return true;
    if (comma == std::string_view::npos) break;
    allowed.remove_prefix(comma + 1);
  }
  return false;
}

std::string QueryParam(const HttpRequest& req, const char* name) {
  auto it = req.query.find(name);
  return it == req.query.end() ? std::string() : it->second;
}

Status AllowScoped(const RouteCtx& c, Permission permission, const std::string& tenant, const std::string& what) {
  if (!core::RoleAllows(c.p.role, permission)) return c.d.auth->Authorize(c.p, permission, tenant);
  if (!c.p.tenant_id.empty() && c.p.tenant_id != tenant) return NotFoundError(what + " not found");
  return Status::Ok();
}

StatusOr<std::optional<std::string>> ListingScope(const RouteCtx& c, Permission permission) {
  std::string asked = QueryParam(c.req, "tenant_id");
  std::string tenant = c.p.tenant_id.empty() ? asked : c.p.tenant_id;
  if (!asked.empty() && asked != tenant) {
    return PermissionDeniedError("API key is scoped to tenant '" + c.p.tenant_id + "' and cannot access tenant '" +
                                 asked + "'");
  }
  RETURN_IF_ERROR(c.d.auth->Authorize(c.p, permission, tenant));
  if (tenant.empty()) return std::optional<std::string>();
  return std::optional<std::string>(tenant);
}

// Strict helpers for request bodies: every error names its field.
StatusOr<json> ParseBody(const std::string& body) {
  if (body.empty()) return FieldError("body", "request body is empty; expected a JSON object");
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return FieldError("body", "request body is not valid JSON");
  if (!j.is_object()) return FieldError("body", "request body must be a JSON object");
  return j;
}

Status OnlyFields(const json& body, std::initializer_list<std::string_view> allowed) {
  for (const auto& [k, v] : body.items()) {
    bool ok = false;
    for (auto a : allowed) ok = ok || a == k;
    if (!ok) return FieldError(k, "unknown field '" + k + "'");
  }
  return Status::Ok();
}

StatusOr<std::string> StringField(const json& body, const char* field, bool required) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) {
    if (required) return FieldError(field, std::string("missing required field '") + field + "'");
    return std::string();
  }
  if (!it->is_string()) return FieldError(field, std::string("field '") + field + "' must be a string");
  return it->get<std::string>();
}

StatusOr<Bytes> HexField(const json& body, const char* field) {
  ASSIGN_OR_RETURN(std::string hex, StringField(body, field, true));
  auto bytes = crypto::HexDecode(hex);
  if (!bytes.ok()) return FieldError(field, std::string("field '") + field + "' must be hex: " + bytes.status().message());
  if (bytes->empty()) return FieldError(field, std::string("field '") + field + "' is empty");
  return bytes;
}

StatusOr<core::SignatureFormat> FormatField(const json& body) {
  ASSIGN_OR_RETURN(std::string f, StringField(body, "format", false));
  if (f.empty() || f == "der") return core::SignatureFormat::kDer;
  if (f == "p1363" || f == "raw") return core::SignatureFormat::kP1363;
  return FieldError("format", "format must be 'der' or 'p1363', got '" + f.substr(0, 32) + "'");
}

std::string NewRequestId() { return "req_" + crypto::RandomHex(8); }

// A whole decimal integer within [lo, hi]; nullopt for anything else
// (signs other than a leading '-', spaces, trailing text, overflow).
std::optional<int64_t> ParseInt(std::string_view text, int64_t lo, int64_t hi) {
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || v < lo || v > hi) return std::nullopt;
  return v;
}

Status IntParam(const HttpRequest& req, const char* name, int64_t lo, int64_t hi, int64_t* out) {
  auto it = req.query.find(name);
  if (it == req.query.end()) return Status::Ok();
  std::optional<int64_t> v = ParseInt(it->second, lo, hi);
  if (!v) {
    return FieldError(name, std::string(name) + " must be an integer from " + std::to_string(lo) + " to " +
                                std::to_string(hi));
  }
  *out = *v;
  return Status::Ok();
}

Status TimeParam(const HttpRequest& req, const char* name, std::optional<TimePoint>* out) {
  auto it = req.query.find(name);
  if (it == req.query.end()) return Status::Ok();
  TimePoint t;
  if (!ParseRfc3339(it->second, &t)) return FieldError(name, std::string(name) + " must be an RFC 3339 time");
  *out = t;
  return Status::Ok();
}

void AuditedChange::Finish(const Status& outcome, const json& result) {
  if (log == nullptr) return;
  Status recorded = log->Finish(event, attempt_index, outcome, result);
  if (!recorded.ok()) {
    Log(LogLevel::kError, "audit_outcome_not_recorded",
        {{"action", event.action}, {"attempt_index", attempt_index}, {"request_id", event.request_id},
         {"error", recorded.message()}});
  }
}

bool ValidRequestId(const std::string& id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == ':')) return false;
  }
  return true;
}

}  // namespace concierge::server
