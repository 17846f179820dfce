#include "server/api.h"

#include <algorithm>
#include <cctype>
#include <chrono>

#include "audit/entry.h"
#include "crypto/cose.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "server/api_internal.h"
#include "server/health_probe.h"
#include "server/log.h"

namespace concierge::server {

int HttpStatusFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return 200;
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange: return 400;
    case StatusCode::kUnauthenticated: return 401;
    case StatusCode::kPermissionDenied: return 403;
    case StatusCode::kNotFound: return 404;
    case StatusCode::kAlreadyExists:
    case StatusCode::kAborted:
    case StatusCode::kFailedPrecondition: return 409;
    case StatusCode::kResourceExhausted: return 429;
    case StatusCode::kCancelled: return 499;
    case StatusCode::kUnimplemented: return 501;
    case StatusCode::kUnavailable: return 503;
    case StatusCode::kDeadlineExceeded: return 504;
    case StatusCode::kUnknown:
    case StatusCode::kInternal:
    case StatusCode::kDataLoss: return 500;
  }
  return 500;
}


HttpResponse ErrorResponse(const Status& status, const std::string& request_id) {
  int http = HttpStatusFor(status.code());
  json details = json::object();
  for (const auto& [k, v] : status.details()) details[k] = v;
  std::string message = status.message();
  if (http >= 500 && http != 503 && http != 501) {
    // Internal details stay in the log; the client gets a reference.
    message = "internal error (request id " + request_id + ")";
  }
  json body = {{"error", std::string(StatusCodeName(status.code()))},
               {"message", message},
               {"code", http},
               {"details", details}};
  HttpResponse r = JsonResponse(http, body);
  if (http == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
  if (auto it = status.details().find("retry_after_seconds"); it != status.details().end()) {
    r.headers.emplace_back("Retry-After", it->second);
  }
  return r;
}

void Api::Handle(HttpRequest&& request, Responder respond) {
  auto call = std::make_shared<Call>();
  call->start = std::chrono::steady_clock::now();
  call->req = std::move(request);
  call->respond = std::move(respond);
  std::string given = call->req.Header("x-request-id");
  call->request_id = ValidRequestId(given) ? given : NewRequestId();
  std::optional<HttpResponse> response;
  try {
    response = Dispatch(call);
  } catch (const std::exception& e) {
    Log(LogLevel::kError, "handler_exception", {{"request_id", call->request_id}, {"what", e.what()}});
    response = ErrorResponse(InternalError("unexpected exception"), call->request_id);
  }
  if (response) Finish(call, std::move(*response));
}

void Api::Finish(const std::shared_ptr<Call>& call, HttpResponse response) {
  response.headers.emplace_back("X-Request-Id", call->request_id);
  if (d_.detectors != nullptr) ObserveForDetectors(*call, response);
  auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - call->start);
  LogLevel level = response.status >= 500 ? LogLevel::kWarn : LogLevel::kDebug;
  if (LogEnabled(level)) Log(response.status >= 500 ? LogLevel::kWarn : LogLevel::kDebug, "http_request",
      {{"request_id", call->request_id},
       {"method", call->req.method},
       {"path", call->req.path},
       {"status", response.status},
       {"duration_us", micros.count()},
       {"principal", call->principal ? json(call->principal->id) : json(nullptr)},
       {"remote", call->req.remote_address}});
  call->respond(std::move(response));
}

namespace {

// The top-level field names of a request body: what an attempt records about
// a policy change (the stored policy version holds the values). Bounded, so
// a junk body cannot make the attempt record too large to write.
json FieldNames(const json& body) {
  constexpr size_t kMaxNames = 32;
  json names = json::array();
  for (const auto& [k, v] : body.items()) {
    if (names.size() == kMaxNames) {
      names.push_back("...");
      break;
    }
    names.push_back(audit::SanitizeField(k, 64));
  }
  return names;
}

json CertificateAuditJson(const CertificateRecord& c) {
  return {{"serial", c.serial}, {"issuer", c.issuer}, {"key_id", c.key_id}, {"source", c.source}};
}

}  // namespace

std::optional<HttpResponse> Api::Dispatch(const std::shared_ptr<Call>& call_ptr) {
  Call& call = *call_ptr;
  const std::string& m = call.req.method;
  std::vector<std::string> s = Segments(call.req.path);
  auto method_not_allowed = [&](const char* allowed) { return MethodNotAllowed(call.req, allowed); };
  auto is = [&](std::initializer_list<const char*> pattern) { return PathIs(s, pattern); };

  if (is({"health"})) return m == "GET" ? Health(call) : method_not_allowed("GET");
  if (is({"ready"})) return m == "GET" ? Ready(call) : method_not_allowed("GET");
  if (is({"metrics"})) return m == "GET" ? Metrics(call) : method_not_allowed("GET");
  if (s.size() < 2 || s[0] != "api" || s[1] != "v1") {
    return ErrorResponse(NotFoundError("no route for " + call.req.path), call.request_id);
  }
  if (auto r = DispatchIncidents(call, s)) return r;
  if (auto r = DispatchJobs(call, s)) return r;
  if (is({"api", "v1", "whoami"})) return m == "GET" ? Whoami(call) : method_not_allowed("GET");
  if (is({"api", "v1", "tenants"})) return m == "GET" ? ListTenants(call) : method_not_allowed("GET");
  if (is({"api", "v1", "policies"})) return m == "GET" ? ListPolicies(call) : method_not_allowed("GET");
  if (is({"api", "v1", "api-keys"})) {
    if (m == "GET") return ListApiKeys(call);
    if (m == "POST") return CreateApiKey(call);
    return method_not_allowed("GET, POST");
  }
  if (is({"api", "v1", "api-keys", "*"})) {
    return m == "DELETE" ? RevokeApiKey(call, s[3]) : method_not_allowed("DELETE");
  }
  if (auto audit = DispatchAudit(call, s)) return audit;
  if (is({"api", "v1", "ca"})) return m == "POST" ? InitCa(call) : method_not_allowed("POST");
  if (is({"api", "v1", "ca", "certificate"})) return m == "GET" ? CaCertificate(call) : method_not_allowed("GET");
  if (is({"api", "v1", "ca", "crl"})) return m == "GET" ? CaCrl(call) : method_not_allowed("GET");
  if (auto rotation = DispatchRotation(call, s)) return rotation;
  if (auto failover = DispatchFailover(call, s)) return failover;
  if (s.size() >= 4 && s[2] == "tenants") {
    const std::string& t = s[3];
    if (is({"api", "v1", "tenants", "*"})) return m == "GET" ? GetTenant(call, t) : method_not_allowed("GET");
    if (is({"api", "v1", "tenants", "*", "policy"})) {
      if (m == "GET") return GetPolicy(call, t);
      if (m == "POST") return CreatePolicy(call, t);
      if (m == "PUT" || m == "PATCH") return UpdatePolicy(call, t);
      if (m == "DELETE") return DeletePolicy(call, t);
      return method_not_allowed("GET, POST, PUT, PATCH, DELETE");
    }
    if (is({"api", "v1", "tenants", "*", "policy", "versions"})) {
      return m == "GET" ? PolicyVersions(call, t) : method_not_allowed("GET");
    }
    if (is({"api", "v1", "tenants", "*", "keys"})) return m == "GET" ? ListKeys(call, t) : method_not_allowed("GET");
    if (is({"api", "v1", "tenants", "*", "keys", "*"})) {
      return m == "GET" ? GetKey(call, t, s[5]) : method_not_allowed("GET");
    }
    if (is({"api", "v1", "tenants", "*", "public-key"})) {
      return m == "GET" ? PublicKey(call, t) : method_not_allowed("GET");
    }
    if (is({"api", "v1", "tenants", "*", "sign"})) {
      return m == "POST" ? Sign(call_ptr, t, /*batch=*/false) : method_not_allowed("POST");
    }
    if (is({"api", "v1", "tenants", "*", "sign", "batch"})) {
      return m == "POST" ? Sign(call_ptr, t, /*batch=*/true) : method_not_allowed("POST");
    }
    if (is({"api", "v1", "tenants", "*", "certificate-chain"})) {
      return m == "GET" ? CertificateChain(call, t) : method_not_allowed("GET");
    }
    if (is({"api", "v1", "tenants", "*", "sign", "cose"})) {
      return m == "POST" ? SignCose(call_ptr, t) : method_not_allowed("POST");
    }
    if (is({"api", "v1", "tenants", "*", "sign", "raw"})) {
      return m == "POST" ? SignRaw(call_ptr, t) : method_not_allowed("POST");
    }
    if (is({"api", "v1", "tenants", "*", "c2pa-signer-info"})) {
      return m == "GET" ? C2paSignerInfo(call, t) : method_not_allowed("GET");
    }
    if (is({"api", "v1", "tenants", "*", "csr"})) return m == "GET" ? Csr(call, t) : method_not_allowed("GET");
    if (is({"api", "v1", "tenants", "*", "certificate"})) {
      return m == "POST" ? ImportCertificate(call, t) : method_not_allowed("POST");
    }
    if (is({"api", "v1", "tenants", "*", "certificate", "issue"})) {
      return m == "POST" ? IssueCertificate(call, t) : method_not_allowed("POST");
    }
    if (is({"api", "v1", "tenants", "*", "certificate", "revoke"})) {
      return m == "POST" ? RevokeCertificate(call, t) : method_not_allowed("POST");
    }
    if (is({"api", "v1", "tenants", "*", "ledger"})) return m == "GET" ? Ledger(call, t) : method_not_allowed("GET");
    if (is({"api", "v1", "tenants", "*", "verify"})) {
      return m == "POST" ? Verify(call, t) : method_not_allowed("POST");
    }
  }
  return ErrorResponse(NotFoundError("no route for " + call.req.path), call.request_id);
}

HttpResponse Api::Health(Call&) {
  // "leader": whether this instance runs the singleton background work
  // (rotations, audit checkpoints, playbooks, re-sign jobs); see docs/postgres.md.
  const bool leader = d_.leadership == nullptr || d_.leadership->is_leader();
  return JsonResponse(200, {{"status", "ok"}, {"leader", leader}});
}

HttpResponse Api::Ready(Call&) {
  json components = json::object();
  bool ready = true;
  Status db = d_.store->Ping();
  components["database"] = {{"ok", db.ok()}, {"detail", db.ok() ? "reachable" : db.message()}};
  ready = ready && db.ok();
  for (const ComponentHealth& c : d_.prober->Probe()) {
    components[c.name] = {{"ok", c.ok}, {"detail", c.detail}};
    ready = ready && c.ok;
  }
  return JsonResponse(ready ? 200 : 503, {{"ready", ready}, {"components", components}});
}

// Prometheus text format. Unauthenticated like /health: counters only, no
// tenant data; restrict it at the network layer if that matters.
HttpResponse Api::Metrics(Call&) {
  std::string out;
  auto counter = [&](const char* name, const char* help, uint64_t value) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n" + name + " " +
           std::to_string(value) + "\n";
  };
  if (d_.ledger_writer) {
    core::LedgerWriterStats st = d_.ledger_writer->stats();
    counter("keyctl_ledger_commits_total", "Ledger group commits.", st.commits);
    counter("keyctl_ledger_rows_total", "Ledger rows committed.", st.rows);
    counter("keyctl_ledger_failed_commits_total", "Ledger commits that failed.", st.failed_commits);
    counter("keyctl_audit_records_total", "Audit log records committed.", st.audit_records);
    counter("keyctl_ledger_maintenance_failures_total",
            "Ledger upkeep between batches that failed (SQLite: WAL checkpoints).", st.maintenance_failures);
    out += "# HELP keyctl_audit_tree_size Audit log size (records).\n# TYPE keyctl_audit_tree_size gauge\n"
           "keyctl_audit_tree_size " + std::to_string(d_.ledger_writer->CommittedAuditHead().size) + "\n";
  }
  HttpResponse r;
  r.content_type = "text/plain; version=0.0.4";
  r.body = std::move(out);
  return r;
}

HttpResponse Api::Whoami(Call& call) {
  API_RETURN_IF_ERROR(call, call.Authenticate(*this));
  const auto& p = *call.principal;
  return JsonResponse(200, {{"id", p.id},
                            {"role", std::string(core::RoleName(p.role))},
                            {"tenant_id", p.tenant_id.empty() ? json(nullptr) : json(p.tenant_id)}});
}

HttpResponse Api::ListTenants(Call& call) {
  API_RETURN_IF_ERROR(call, call.RequireListing(*this));
  API_ASSIGN_OR_RETURN(call, auto tenants, d_.store->ListTenants(false));
  json out = json::array();
  for (const auto& t : tenants) {
    if (!call.principal->tenant_id.empty() && t.tenant_id != call.principal->tenant_id) continue;
    out.push_back({{"tenant_id", t.tenant_id},
                   {"policy_version", t.active_policy_version},
                   {"created_at", FormatRfc3339(t.created_at)},
                   {"updated_at", FormatRfc3339(t.updated_at)}});
  }
  return JsonResponse(200, {{"tenants", out}});
}

HttpResponse Api::GetTenant(Call& call, const std::string& tenant) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kTenantRead, tenant));
  API_ASSIGN_OR_RETURN(call, auto state, d_.tenants->Active(tenant));
  return JsonResponse(200, {{"tenant_id", tenant},
                            {"policy", PolicyVersionJson(state->policy)},
                            {"active_key", KeyJson(state->active_key)},
                            {"standby_key", state->has_standby() ? KeyJson(state->standby_key) : json(nullptr)},
                            {"signing_key_id", state->SigningKey().key_id},
                            {"failed_over", state->on_standby}});
}

HttpResponse Api::ListPolicies(Call& call) {
  API_RETURN_IF_ERROR(call, call.RequireListing(*this));
  API_ASSIGN_OR_RETURN(call, auto policies, d_.tenants->ListPolicies(call.principal->tenant_id));
  json out = json::array();
  for (const auto& p : policies) out.push_back(PolicyVersionJson(p));
  return JsonResponse(200, {{"policies", out}});
}

HttpResponse Api::CreatePolicy(Call& call, const std::string& tenant) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kPolicyWrite, tenant));
  API_ASSIGN_OR_RETURN(call, json body, ParseBody(call.req.body));
  API_ASSIGN_OR_RETURN(call, AuditedChange change,
                       BeginChange(call, "policy.create", tenant, tenant, {{"fields", FieldNames(body)}}));
  StatusOr<core::TenantState> created_or = d_.tenants->CreatePolicy(tenant, body, *call.principal);
  if (created_or.ok()) change.event.policy_hash = created_or->policy.hash;
  change.Finish(created_or.status(), created_or.ok() ? json{{"version", created_or->policy.version},
                                                            {"policy_hash", created_or->policy.hash},
                                                            {"key_id", created_or->active_key.key_id},
                                                            {"key_fingerprint", created_or->active_key.fingerprint}}
                                                      : json::object());
  API_ASSIGN_OR_RETURN(call, core::TenantState created, std::move(created_or));
  Log(LogLevel::kInfo, "policy_created",
      {{"tenant_id", tenant}, {"version", created.policy.version}, {"policy_hash", created.policy.hash},
       {"key_id", created.active_key.key_id}, {"actor", call.principal->id}, {"request_id", call.request_id}});
  json out = PolicyVersionJson(created.policy);
  out["key"] = KeyJson(created.active_key);
  // With the built-in CA initialised, the new key is certified at once. The
  // policy stands even if that fails; the chain endpoints then say why and
  // POST .../certificate/issue retries.
  if (d_.certs != nullptr && d_.certs->CaInitialised()) {
    StatusOr<AuditedChange> issue = BeginChange(call, "certificate.issue", tenant, tenant,
                                                {{"key_id", created.active_key.key_id}, {"reason", "policy.create"}});
    StatusOr<CertificateRecord> cert =
        issue.ok() ? d_.certs->IssueForKey(created.active_key, created.policy.policy) : issue.status();
    if (issue.ok()) issue->Finish(cert.status(), cert.ok() ? CertificateAuditJson(*cert) : json::object());
    if (cert.ok()) {
      out["certificate"] = CertificateJson(*cert);
    } else {
      Log(LogLevel::kWarn, "certificate_issue_failed",
          {{"tenant_id", tenant}, {"error", cert.status().message()}, {"request_id", call.request_id}});
      out["certificate_error"] = cert.status().message();
    }
  }
  EnsureStandby(call, tenant, out);
  return JsonResponse(201, out);
}

HttpResponse Api::GetPolicy(Call& call, const std::string& tenant) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kTenantRead, tenant));
  std::optional<int64_t> version;
  auto it = call.req.query.find("version");
  if (it != call.req.query.end()) {
    version = ParseInt(it->second, 1, INT64_MAX);
    if (!version) return ErrorResponse(FieldError("version", "version must be a positive integer"), call.request_id);
  }
  API_ASSIGN_OR_RETURN(call, auto policy, d_.tenants->GetPolicy(tenant, version));
  return JsonResponse(200, PolicyVersionJson(policy));
}

HttpResponse Api::UpdatePolicy(Call& call, const std::string& tenant) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kPolicyWrite, tenant));
  API_ASSIGN_OR_RETURN(call, json body, ParseBody(call.req.body));
  std::optional<int64_t> expected;
  std::string if_match = call.req.Header("if-match");
  if (!if_match.empty()) {
    if (if_match.size() >= 2 && if_match.front() == '"' && if_match.back() == '"') {
      if_match = if_match.substr(1, if_match.size() - 2);
    }
    expected = ParseInt(if_match, INT64_MIN, INT64_MAX);
    if (!expected) {
      return ErrorResponse(FieldError("If-Match", "If-Match must be a policy version number"), call.request_id);
    }
  }
  json attempt = {{"fields", FieldNames(body)}};
  if (expected) attempt["if_match"] = *expected;
  API_ASSIGN_OR_RETURN(call, AuditedChange change, BeginChange(call, "policy.update", tenant, tenant, attempt));
  StatusOr<core::PolicyVersion> updated_or = d_.tenants->UpdatePolicy(tenant, body, *call.principal, expected);
  if (updated_or.ok()) change.event.policy_hash = updated_or->hash;
  change.Finish(updated_or.status(), updated_or.ok() ? json{{"version", updated_or->version},
                                                            {"policy_hash", updated_or->hash}}
                                                      : json::object());
  API_ASSIGN_OR_RETURN(call, core::PolicyVersion updated, std::move(updated_or));
  Log(LogLevel::kInfo, "policy_updated",
      {{"tenant_id", tenant}, {"version", updated.version}, {"policy_hash", updated.hash},
       {"actor", call.principal->id}, {"request_id", call.request_id}});
  json out = PolicyVersionJson(updated);
  EnsureStandby(call, tenant, out);
  return JsonResponse(200, out);
}

HttpResponse Api::DeletePolicy(Call& call, const std::string& tenant) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kPolicyWrite, tenant));
  API_ASSIGN_OR_RETURN(call, AuditedChange change, BeginChange(call, "policy.delete", tenant, tenant));
  Status deleted = d_.tenants->DeletePolicy(tenant, *call.principal);
  change.Finish(deleted);
  API_RETURN_IF_ERROR(call, deleted);
  Log(LogLevel::kInfo, "policy_deleted",
      {{"tenant_id", tenant}, {"actor", call.principal->id}, {"request_id", call.request_id}});
  return JsonResponse(200, {{"tenant_id", tenant}, {"deleted", true}});
}

HttpResponse Api::PolicyVersions(Call& call, const std::string& tenant) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kTenantRead, tenant));
  API_ASSIGN_OR_RETURN(call, auto versions, d_.tenants->ListPolicyVersions(tenant));
  json out = json::array();
  for (const auto& v : versions) out.push_back(PolicyVersionJson(v));
  return JsonResponse(200, {{"tenant_id", tenant}, {"versions", out}});
}

HttpResponse Api::ListKeys(Call& call, const std::string& tenant) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kTenantRead, tenant));
  API_ASSIGN_OR_RETURN(call, auto keys, d_.tenants->ListKeys(tenant));
  json out = json::array();
  for (const auto& k : keys) {
    // Every version stays listed with its certificate, so old signatures can
    // still be traced to the certificate that covered them.
    json j = KeyJson(k);
    auto cert = d_.store->GetLatestCertificate(k.key_id);
    j["certificate_serial"] = cert.ok() ? json(cert->serial) : json(nullptr);
    j["certificate_status"] = cert.ok() ? json(cert->status) : json(nullptr);
    out.push_back(std::move(j));
  }
  return JsonResponse(200, {{"tenant_id", tenant}, {"keys", out}});
}

HttpResponse Api::GetKey(Call& call, const std::string& tenant, const std::string& key_id) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kTenantRead, tenant));
  API_ASSIGN_OR_RETURN(call, auto key, d_.tenants->GetKey(tenant, key_id));
  json out = KeyJson(key);
  out["public_key_pem"] = key.public_key_pem;
  if (!key.attestation.empty()) out["attestation_pem"] = key.attestation;
  if (auto cert = d_.store->GetLatestCertificate(key.key_id); cert.ok()) {
    out["certificate"] = CertificateJson(*cert);
    out["certificate"]["chain_pem"] = cert->chain_pem;
  }
  return JsonResponse(200, out);
}

HttpResponse Api::PublicKey(Call& call, const std::string& tenant) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kTenantRead, tenant));
  std::string key_id;
  if (auto it = call.req.query.find("key_id"); it != call.req.query.end()) key_id = it->second;
  API_ASSIGN_OR_RETURN(call, auto key, d_.signing->PublicKey(tenant, key_id));
  HttpResponse r;
  r.content_type = "application/x-pem-file";
  r.body = key.public_key_pem;
  r.headers.emplace_back("X-Key-Id", key.key_id);
  return r;
}

namespace {

// The digest of the common single sign request, a body of exactly
// {"digest":"<hex>"} (JSON whitespace allowed), read without building a JSON
// DOM: on the durable sign path the DOM cost more than the rest of the
// request handling around it. Anything else (other fields, escapes, odd or
// non-hex digits, an empty digest) is nullopt and takes the general path,
// which owns every validation error.
std::optional<Bytes> DigestOnlySignBody(std::string_view body) {
  size_t i = 0;
  auto skip_ws = [&] {
    while (i < body.size() && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r')) ++i;
  };
  auto take = [&](std::string_view token) {
    skip_ws();
    if (body.substr(i, token.size()) != token) return false;
    i += token.size();
    return true;
  };
  if (!take("{") || !take("\"digest\"") || !take(":") || !take("\"")) return std::nullopt;
  const size_t start = i;
  while (i < body.size() && std::isxdigit(static_cast<unsigned char>(body[i]))) ++i;
  const std::string_view hex = body.substr(start, i - start);
  if (body.substr(i, 1) != "\"") return std::nullopt;
  ++i;
  if (!take("}")) return std::nullopt;
  skip_ws();
  if (i != body.size() || hex.empty() || hex.size() % 2 != 0) return std::nullopt;
  auto digest = crypto::HexDecode(hex);
  if (!digest.ok()) return std::nullopt;
  return *std::move(digest);
}

// A JSON string exactly as json::dump(-1, ' ', false, replace) writes it:
// ASCII escapes the same way as the audit log's canonical form; anything
// else (where dump repairs invalid UTF-8) goes through nlohmann itself.
void AppendDumpedString(std::string& out, std::string_view s) {
  if (std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; })) {
    audit::AppendJsonString(out, s);
  } else {
    out += json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
  }
}

// The 200 body for one signature, byte for byte what dumping the equivalent
// json object gives (keys in byte order, as its std::map keeps them), built
// directly: it runs on the ledger writer thread for every signature of a
// group commit, and the DOM and its dump were most of the response cost.
std::string SingleSignatureJson(const core::SignResult& r) {
  std::string out;
  out.reserve(320 + r.key_id.size() + r.policy_hash.size() + r.request_id.size() + r.asset_id.size() +
              r.signature.size() * 4 / 3);
  auto text = [&out](std::string_view key, std::string_view value) {
    out += key;
    AppendDumpedString(out, value);
  };
  text("{\"algorithm\":", AlgorithmName(r.algorithm));
  if (!r.asset_id.empty()) text(",\"asset_id\":", r.asset_id);
  text(",\"key_id\":", r.key_id);
  out += ",\"key_version\":" + std::to_string(r.key_version);
  out += ",\"ledger_seq\":" + std::to_string(r.ledger_seq);
  text(",\"policy_hash\":", r.policy_hash);
  text(",\"request_id\":", r.request_id);
  text(",\"signature\":", crypto::Base64Encode(r.signature));
  text(",\"signature_format\":", core::SignatureFormatName(r.format));
  text(",\"signed_at\":", FormatRfc3339(r.signed_at));
  out += '}';
  return out;
}

}  // namespace

std::optional<HttpResponse> Api::Sign(const std::shared_ptr<Call>& call_ptr, const std::string& tenant, bool batch) {
  Call& call = *call_ptr;
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kSign, tenant));
  core::SignRequest req;
  req.batch = batch;
  std::optional<Bytes> fast_digest = batch ? std::nullopt : DigestOnlySignBody(call.req.body);
  if (fast_digest) {
    req.items.push_back(core::SignItem{*std::move(fast_digest), {}});
    req.request_id = call.request_id;
  } else if (auto error = ParseSignBody(call, batch, req)) {
    return error;
  }
  req.api_key_id = call.principal->id;
  req.client_address = call.req.remote_address;
  d_.signing->SignAsync(tenant, std::move(req), [this, call_ptr, batch](StatusOr<std::vector<core::SignResult>> r) {
    if (!r.ok()) {
      Finish(call_ptr, ErrorResponse(r.status(), call_ptr->request_id));
      return;
    }
    const core::SignResult& first = r->front();
    if (!batch) {
      HttpResponse response;
      response.body = SingleSignatureJson(first);
      Finish(call_ptr, std::move(response));
      return;
    }
    json out = {{"key_id", first.key_id},
                {"key_version", first.key_version},
                {"algorithm", std::string(AlgorithmName(first.algorithm))},
                {"signature_format", std::string(core::SignatureFormatName(first.format))},
                {"policy_hash", first.policy_hash},
                {"signed_at", FormatRfc3339(first.signed_at)},
                {"request_id", first.request_id}};
    json sigs = json::array();
    for (const auto& s : *r) {
      json one = {{"signature", crypto::Base64Encode(s.signature)}, {"ledger_seq", s.ledger_seq}};
      if (!s.asset_id.empty()) one["asset_id"] = s.asset_id;
      sigs.push_back(std::move(one));
    }
    out["count"] = r->size();
    out["signatures"] = std::move(sigs);
    Finish(call_ptr, JsonResponse(200, out));
  });
  return std::nullopt;
}

// Every shape of sign request body; errors name the field.
std::optional<HttpResponse> Api::ParseSignBody(Call& call, bool batch, core::SignRequest& req) {
  API_ASSIGN_OR_RETURN(call, json body, ParseBody(call.req.body));
  if (!batch) {
    API_RETURN_IF_ERROR(call, OnlyFields(body, {"digest", "algorithm", "format", "request_id", "asset_id"}));
    core::SignItem item;
    API_ASSIGN_OR_RETURN(call, item.digest, HexField(body, "digest"));
    API_ASSIGN_OR_RETURN(call, item.asset_id, StringField(body, "asset_id", false));
    req.items.push_back(std::move(item));
  } else {
    API_RETURN_IF_ERROR(call, OnlyFields(body, {"digests", "items", "algorithm", "format", "request_id"}));
    bool has_digests = body.contains("digests"), has_items = body.contains("items");
    if (has_digests == has_items) {
      return ErrorResponse(FieldError("digests", "give exactly one of 'digests' (hex strings) or 'items' "
                                                 "([{digest, asset_id}])"),
                           call.request_id);
    }
    const json& list = has_digests ? body["digests"] : body["items"];
    const char* list_name = has_digests ? "digests" : "items";
    if (!list.is_array() || list.empty()) {
      return ErrorResponse(FieldError(list_name, std::string(list_name) + " must be a non-empty array"),
                           call.request_id);
    }
    if (list.size() > d_.signing->options().max_batch) {
      return ErrorResponse(FieldError(list_name, std::string(list_name) + " has " + std::to_string(list.size()) +
                                                     " entries; the limit is " +
                                                     std::to_string(d_.signing->options().max_batch)),
                           call.request_id);
    }
    for (size_t i = 0; i < list.size(); ++i) {
      std::string where = std::string(list_name) + "[" + std::to_string(i) + "]";
      core::SignItem item;
      const json& entry = list[i];
      json holder;
      if (has_digests) {
        holder = {{"digest", entry}};
      } else {
        if (!entry.is_object()) return ErrorResponse(FieldError(where, where + " must be an object"), call.request_id);
        holder = entry;
        API_RETURN_IF_ERROR(call, OnlyFields(holder, {"digest", "asset_id"}).Annotate(where));
      }
      auto digest = HexField(holder, "digest");
      if (!digest.ok()) {
        return ErrorResponse(FieldError(where, where + ": " + digest.status().message()), call.request_id);
      }
      item.digest = *std::move(digest);
      auto asset = StringField(holder, "asset_id", false);
      if (!asset.ok()) return ErrorResponse(FieldError(where, where + ": " + asset.status().message()), call.request_id);
      item.asset_id = *std::move(asset);
      req.items.push_back(std::move(item));
    }
  }
  API_ASSIGN_OR_RETURN(call, std::string alg, StringField(body, "algorithm", false));
  if (!alg.empty()) {
    req.algorithm = ParseAlgorithm(alg);
    if (!req.algorithm) {
      return ErrorResponse(FieldError("algorithm", "unknown algorithm '" + alg.substr(0, 32) + "'"), call.request_id);
    }
  }
  API_ASSIGN_OR_RETURN(call, req.format, FormatField(body));
  API_ASSIGN_OR_RETURN(call, std::string client_request_id, StringField(body, "request_id", false));
  if (!client_request_id.empty() && !ValidRequestId(client_request_id)) {
    return ErrorResponse(FieldError("request_id", "request_id must be 1-128 characters of [A-Za-z0-9._:-]"),
                         call.request_id);
  }
  req.request_id = client_request_id.empty() ? call.request_id : client_request_id;
  return std::nullopt;
}

std::optional<HttpResponse> Api::SignCose(const std::shared_ptr<Call>& call_ptr, const std::string& tenant) {
  Call& call = *call_ptr;
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kSign, tenant));
  if (d_.certs == nullptr) return ErrorResponse(NoCertificateService(), call.request_id);
  API_ASSIGN_OR_RETURN(call, json body, ParseBody(call.req.body));
  API_RETURN_IF_ERROR(call, OnlyFields(body, {"payload", "detached", "asset_id", "request_id"}));
  API_ASSIGN_OR_RETURN(call, std::string payload_b64, StringField(body, "payload", true));
  auto payload = crypto::Base64Decode(payload_b64);
  if (!payload.ok()) return ErrorResponse(FieldError("payload", "payload must be base64"), call.request_id);
  bool detached = false;
  if (auto it = body.find("detached"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean()) return ErrorResponse(FieldError("detached", "detached must be true or false"), call.request_id);
    detached = it->get<bool>();
  }
  core::MessageSignRequest req;
  API_ASSIGN_OR_RETURN(call, req.asset_id, StringField(body, "asset_id", false));
  API_ASSIGN_OR_RETURN(call, std::string client_request_id, StringField(body, "request_id", false));
  if (!client_request_id.empty() && !ValidRequestId(client_request_id)) {
    return ErrorResponse(FieldError("request_id", "request_id must be 1-128 characters of [A-Za-z0-9._:-]"),
                         call.request_id);
  }
  API_ASSIGN_OR_RETURN(call, auto state, d_.tenants->Active(tenant));
  // The chain is checked (present, not revoked, valid now) before anything is
  // signed, and belongs to the snapshot's key: a cutover in between cannot
  // pair one key's chain with the other key's signature.
  API_ASSIGN_OR_RETURN(call, auto chain, d_.certs->ChainFor(state->SigningKey()));
  const Algorithm alg = state->policy.policy.algorithm;
  auto protected_header = std::make_shared<Bytes>(crypto::CoseProtectedHeader(alg, chain->signing_der));
  auto payload_ptr = std::make_shared<Bytes>(*std::move(payload));
  req.message = crypto::CoseSigStructure(*protected_header, *payload_ptr);
  req.kind = "cose";
  req.ledger_digest_hex = crypto::Sha256Hex(*payload_ptr);
  req.state = state;
  req.cert_serial = chain->serial;
  req.request_id = client_request_id.empty() ? call.request_id : client_request_id;
  req.api_key_id = call.principal->id;
  req.client_address = call.req.remote_address;
  d_.signing->SignMessageAsync(
      tenant, std::move(req),
      [this, call_ptr, protected_header, payload_ptr, detached](StatusOr<core::MessageSignResult> r) {
        if (!r.ok()) {
          Finish(call_ptr, ErrorResponse(r.status(), call_ptr->request_id));
          return;
        }
        Bytes cose = crypto::CoseSign1Tagged(*protected_header, *payload_ptr, detached, r->signature);
        Finish(call_ptr, JsonResponse(200, {{"cose_sign1", crypto::Base64Encode(cose)},
                                            {"detached", detached},
                                            {"key_id", r->key_id},
                                            {"key_version", r->key_version},
                                            {"algorithm", std::string(AlgorithmName(r->algorithm))},
                                            {"cose_alg", CoseAlgorithmId(r->algorithm)},
                                            {"cert_serial", r->cert_serial},
                                            {"payload_sha256", crypto::Sha256Hex(*payload_ptr)},
                                            {"policy_hash", r->policy_hash},
                                            {"ledger_seq", r->ledger_seq},
                                            {"signed_at", FormatRfc3339(r->signed_at)},
                                            {"request_id", r->request_id}}));
      });
  return std::nullopt;
}

// c2patool's [signer.remote] form: the body is the bytes to sign, the response
// the raw signature (ECDSA as r||s), as c2patool documents it.
std::optional<HttpResponse> Api::SignRaw(const std::shared_ptr<Call>& call_ptr, const std::string& tenant) {
  Call& call = *call_ptr;
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kSign, tenant));
  if (d_.certs == nullptr) return ErrorResponse(NoCertificateService(), call.request_id);
  if (call.req.body.empty()) {
    return ErrorResponse(FieldError("body", "request body is empty; send the bytes to sign"), call.request_id);
  }
  // A signature only makes sense to C2PA with a certificate for the key.
  API_ASSIGN_OR_RETURN(call, auto state, d_.tenants->Active(tenant));
  API_ASSIGN_OR_RETURN(call, auto chain, d_.certs->ChainFor(state->SigningKey()));
  core::MessageSignRequest req;
  req.message = Bytes(call.req.body.begin(), call.req.body.end());
  req.kind = "raw";
  req.ledger_digest_hex = crypto::Sha256Hex(req.message);
  req.state = state;
  req.cert_serial = chain->serial;
  req.request_id = call.request_id;
  req.api_key_id = call.principal->id;
  req.client_address = call.req.remote_address;
  d_.signing->SignMessageAsync(tenant, std::move(req), [this, call_ptr](StatusOr<core::MessageSignResult> r) {
    if (!r.ok()) {
      Finish(call_ptr, ErrorResponse(r.status(), call_ptr->request_id));
      return;
    }
    HttpResponse resp;
    resp.content_type = "application/octet-stream";
    resp.body = crypto::AsString(r->signature);
    resp.headers.emplace_back("X-Key-Id", r->key_id);
    resp.headers.emplace_back("X-Algorithm", std::string(AlgorithmName(r->algorithm)));
    resp.headers.emplace_back("X-Certificate-Serial", r->cert_serial);
    resp.headers.emplace_back("X-Ledger-Seq", std::to_string(r->ledger_seq));
    Finish(call_ptr, std::move(resp));
  });
  return std::nullopt;
}

// What `keyctl c2pa-signer --signer-info` prints for c2patool.
HttpResponse Api::C2paSignerInfo(Call& call, const std::string& tenant) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kTenantRead, tenant));
  if (d_.certs == nullptr) return ErrorResponse(NoCertificateService(), call.request_id);
  API_ASSIGN_OR_RETURN(call, auto state, d_.tenants->Active(tenant));
  API_ASSIGN_OR_RETURN(call, auto chain, d_.certs->ActiveChain(tenant));
  std::string alg(AlgorithmName(state->policy.policy.algorithm));
  for (auto& c : alg) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  size_t chain_bytes = 0;
  for (const Bytes& der : chain->signing_der) chain_bytes += der.size();
  // The COSE signature box holds the chain, the signature (at most 512 bytes
  // for RSA-4096) and headers; 10 KiB on top also leaves room for a TSA token.
  return JsonResponse(200, {{"alg", alg},
                            {"sign_cert", chain->signing_pem},
                            {"reserve_size", chain_bytes + 10240},
                            {"key_id", chain->key_id},
                            {"cert_serial", chain->serial}});
}

HttpResponse Api::Ledger(Call& call, const std::string& tenant) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kTenantRead, tenant));
  LedgerQuery q;
  q.tenant_id = tenant;
  int64_t limit = 100;
  API_RETURN_IF_ERROR(call, IntParam(call.req, "after", 0, INT64_MAX, &q.after_seq));
  API_RETURN_IF_ERROR(call, IntParam(call.req, "limit", 1, 1000, &limit));
  q.limit = static_cast<int>(limit);
  API_RETURN_IF_ERROR(call, TimeParam(call.req, "from", &q.from));
  API_RETURN_IF_ERROR(call, TimeParam(call.req, "to", &q.to));
  if (auto it = call.req.query.find("key_id"); it != call.req.query.end()) q.key_id = it->second;
  API_ASSIGN_OR_RETURN(call, LedgerPage page, d_.ledger->ListLedger(q));
  json entries = json::array();
  for (const auto& e : page.entries) {
    entries.push_back({{"seq", e.seq},
                       {"tenant_id", e.tenant_id},
                       {"key_id", e.key_id},
                       {"key_version", e.key_version},
                       {"cert_serial", e.cert_serial.empty() ? json(nullptr) : json(e.cert_serial)},
                       {"algorithm", e.algorithm},
                       {"kind", e.kind},
                       {"digest", e.digest_hex},
                       {"asset_id", e.asset_id.empty() ? json(nullptr) : json(e.asset_id)},
                       {"request_id", e.request_id},
                       {"api_key_id", e.api_key_id},
                       {"client_address", e.client_address},
                       {"policy_hash", e.policy_hash},
                       {"signed_at", FormatRfc3339(e.signed_at)},
                       {"resign_of_seq", e.resign_of_seq ? json(e.resign_of_seq) : json(nullptr)}});
  }
  return JsonResponse(200, {{"tenant_id", tenant},
                            {"entries", entries},
                            {"next_cursor", page.next_cursor ? json(page.next_cursor) : json(nullptr)}});
}

HttpResponse Api::Verify(Call& call, const std::string& tenant) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kVerify, tenant));
  API_ASSIGN_OR_RETURN(call, json body, ParseBody(call.req.body));
  API_RETURN_IF_ERROR(call, OnlyFields(body, {"digest", "signature", "format", "key_id"}));
  core::VerifyRequest req;
  API_ASSIGN_OR_RETURN(call, req.digest, HexField(body, "digest"));
  API_ASSIGN_OR_RETURN(call, std::string sig_b64, StringField(body, "signature", true));
  auto sig = crypto::Base64Decode(sig_b64);
  if (!sig.ok() || sig->empty()) {
    return ErrorResponse(FieldError("signature", "signature must be non-empty base64"), call.request_id);
  }
  req.signature = *std::move(sig);
  API_ASSIGN_OR_RETURN(call, req.format, FormatField(body));
  API_ASSIGN_OR_RETURN(call, req.key_id, StringField(body, "key_id", false));
  API_ASSIGN_OR_RETURN(call, core::VerifyResult result, d_.signing->Verify(tenant, req));
  return JsonResponse(200, {{"valid", result.valid},
                            {"key_id", result.key_id},
                            {"key_version", result.key_version},
                            {"key_state", result.key_state},
                            {"algorithm", std::string(AlgorithmName(result.algorithm))}});
}

HttpResponse Api::InitCa(Call& call) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kCaManage, ""));
  if (d_.certs == nullptr) return ErrorResponse(NoCertificateService(), call.request_id);
  json body = json::object();
  if (!call.req.body.empty()) {
    API_ASSIGN_OR_RETURN(call, body, ParseBody(call.req.body));
  }
  API_RETURN_IF_ERROR(call, OnlyFields(body, {"algorithm", "subject", "validity_days", "provider"}));
  core::CaInitOptions options;
  API_ASSIGN_OR_RETURN(call, std::string alg, StringField(body, "algorithm", false));
  if (!alg.empty()) {
    auto parsed = ParseAlgorithm(alg);
    if (!parsed) return ErrorResponse(FieldError("algorithm", "unknown algorithm '" + alg.substr(0, 32) + "'"), call.request_id);
    options.algorithm = *parsed;
  }
  API_ASSIGN_OR_RETURN(call, std::string subject, StringField(body, "subject", false));
  if (!subject.empty()) options.subject = subject;
  API_ASSIGN_OR_RETURN(call, std::string provider, StringField(body, "provider", false));
  if (!provider.empty()) options.provider = provider;
  if (auto it = body.find("validity_days"); it != body.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > 36500) {
      return ErrorResponse(FieldError("validity_days", "validity_days must be an integer from 1 to 36500"),
                           call.request_id);
    }
    options.validity_days = static_cast<int>(it->get<int64_t>());
  }
  API_ASSIGN_OR_RETURN(call, AuditedChange change,
                       BeginChange(call, "ca.init", "", "ca",
                                   {{"algorithm", std::string(AlgorithmName(options.algorithm))},
                                    {"subject", audit::SanitizeField(options.subject)},
                                    {"provider", options.provider},
                                    {"validity_days", options.validity_days}}));
  StatusOr<CaRecord> ca_or = d_.certs->InitCa(options);
  change.Finish(ca_or.status());
  API_ASSIGN_OR_RETURN(call, CaRecord ca, std::move(ca_or));
  Log(LogLevel::kInfo, "ca_initialised",
      {{"algorithm", ca.algorithm}, {"provider", ca.provider}, {"actor", call.principal->id}, {"request_id", call.request_id}});
  return JsonResponse(201, {{"algorithm", ca.algorithm},
                            {"provider", ca.provider},
                            {"created_at", FormatRfc3339(ca.created_at)},
                            {"certificate_pem", ca.cert_pem}});
}

// The CA certificate and CRL are public by nature (relying parties fetch them
// to validate signatures), so like /health they need no API key.
HttpResponse Api::CaCertificate(Call& call) {
  if (d_.certs == nullptr) return ErrorResponse(NoCertificateService(), call.request_id);
  API_ASSIGN_OR_RETURN(call, CaRecord ca, d_.certs->Ca());
  return PemResponse(ca.cert_pem);
}

HttpResponse Api::CaCrl(Call& call) {
  if (d_.certs == nullptr) return ErrorResponse(NoCertificateService(), call.request_id);
  std::string format = "pem";
  if (auto it = call.req.query.find("format"); it != call.req.query.end()) format = it->second;
  if (format != "pem" && format != "der") {
    return ErrorResponse(FieldError("format", "format must be 'pem' or 'der'"), call.request_id);
  }
  API_ASSIGN_OR_RETURN(call, core::CrlBundle crl, d_.certs->Crl());
  HttpResponse r = format == "der" ? PemResponse(crypto::AsString(crl.der), "application/pkix-crl")
                                   : PemResponse(crl.pem);
  r.headers.emplace_back("X-Crl-Number", std::to_string(crl.number));
  return r;
}

HttpResponse Api::CertificateChain(Call& call, const std::string& tenant) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kTenantRead, tenant));
  if (d_.certs == nullptr) return ErrorResponse(NoCertificateService(), call.request_id);
  API_ASSIGN_OR_RETURN(call, auto chain, d_.certs->ActiveChain(tenant));
  HttpResponse r = PemResponse(chain->chain_pem);
  r.headers.emplace_back("X-Certificate-Serial", chain->serial);
  r.headers.emplace_back("X-Key-Id", chain->key_id);
  return r;
}

HttpResponse Api::Csr(Call& call, const std::string& tenant) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kTenantRead, tenant));
  if (d_.certs == nullptr) return ErrorResponse(NoCertificateService(), call.request_id);
  API_ASSIGN_OR_RETURN(call, std::string pem, d_.certs->CsrPem(tenant));
  return PemResponse(std::move(pem), "application/pkcs10");
}

HttpResponse Api::ImportCertificate(Call& call, const std::string& tenant) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kPolicyWrite, tenant));
  if (d_.certs == nullptr) return ErrorResponse(NoCertificateService(), call.request_id);
  API_ASSIGN_OR_RETURN(call, json body, ParseBody(call.req.body));
  API_RETURN_IF_ERROR(call, OnlyFields(body, {"chain_pem"}));
  API_ASSIGN_OR_RETURN(call, std::string chain_pem, StringField(body, "chain_pem", true));
  API_ASSIGN_OR_RETURN(call, AuditedChange change,
                       BeginChange(call, "certificate.import", tenant, tenant,
                                   {{"chain_sha256", crypto::Sha256Hex(crypto::AsBytes(chain_pem))}}));
  StatusOr<CertificateRecord> cert_or = d_.certs->Import(tenant, chain_pem);
  change.Finish(cert_or.status(), cert_or.ok() ? CertificateAuditJson(*cert_or) : json::object());
  API_ASSIGN_OR_RETURN(call, CertificateRecord cert, std::move(cert_or));
  Log(LogLevel::kInfo, "certificate_imported",
      {{"tenant_id", tenant}, {"serial", cert.serial}, {"issuer", cert.issuer}, {"key_id", cert.key_id},
       {"actor", call.principal->id}, {"request_id", call.request_id}});
  json out = CertificateJson(cert);
  // A rotation waiting for this certificate continues on the scheduler thread.
  if (std::string resumed = ResumeAwaitingRotation(tenant, cert.key_id); !resumed.empty()) {
    out["rotation_id"] = resumed;
  }
  return JsonResponse(201, out);
}

HttpResponse Api::IssueCertificate(Call& call, const std::string& tenant) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kPolicyWrite, tenant));
  if (d_.certs == nullptr) return ErrorResponse(NoCertificateService(), call.request_id);
  API_ASSIGN_OR_RETURN(call, AuditedChange change, BeginChange(call, "certificate.issue", tenant, tenant));
  StatusOr<CertificateRecord> cert_or = d_.certs->IssueForTenant(tenant);
  change.Finish(cert_or.status(), cert_or.ok() ? CertificateAuditJson(*cert_or) : json::object());
  API_ASSIGN_OR_RETURN(call, CertificateRecord cert, std::move(cert_or));
  Log(LogLevel::kInfo, "certificate_issued",
      {{"tenant_id", tenant}, {"serial", cert.serial}, {"actor", call.principal->id}, {"request_id", call.request_id}});
  return JsonResponse(201, CertificateJson(cert));
}

HttpResponse Api::RevokeCertificate(Call& call, const std::string& tenant) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kCertRevoke, tenant));
  if (d_.certs == nullptr) return ErrorResponse(NoCertificateService(), call.request_id);
  API_ASSIGN_OR_RETURN(call, AuditedChange change, BeginChange(call, "certificate.revoke", tenant, tenant));
  StatusOr<CertificateRecord> cert_or = d_.certs->Revoke(tenant);
  change.Finish(cert_or.status(), cert_or.ok() ? CertificateAuditJson(*cert_or) : json::object());
  API_ASSIGN_OR_RETURN(call, CertificateRecord cert, std::move(cert_or));
  Log(LogLevel::kInfo, "certificate_revoked",
      {{"tenant_id", tenant}, {"serial", cert.serial}, {"actor", call.principal->id}, {"request_id", call.request_id}});
  json out = CertificateJson(cert);
  out["on_crl"] = cert.source == "builtin-ca";
  return JsonResponse(200, out);
}

HttpResponse Api::CreateApiKey(Call& call) {
  API_ASSIGN_OR_RETURN(call, json body, ParseBody(call.req.body));
  API_RETURN_IF_ERROR(call, OnlyFields(body, {"role", "tenant_id", "name"}));
  API_ASSIGN_OR_RETURN(call, std::string tenant, StringField(body, "tenant_id", false));
  // Authorise before looking at anything else so unauthorised callers learn nothing.
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kApiKeyManage, ""));
  API_ASSIGN_OR_RETURN(call, std::string role_name, StringField(body, "role", true));
  auto role = core::ParseRole(role_name);
  if (!role) {
    return ErrorResponse(FieldError("role", "role must be admin, security-officer, operator, signer or auditor"),
                         call.request_id);
  }
  API_ASSIGN_OR_RETURN(call, std::string name, StringField(body, "name", false));
  // Minted first (nothing stored) so the attempt can name the new key's id.
  API_ASSIGN_OR_RETURN(call, core::NewApiKey created, d_.auth->MintApiKey(*role, tenant, name, call.principal->id));
  API_ASSIGN_OR_RETURN(call, AuditedChange change,
                       BeginChange(call, "api_key.create", tenant, created.record.id,
                                   {{"role", created.record.role}, {"scope", tenant}, {"name", name}}));
  Status inserted = d_.store->InsertApiKey(created.record);
  change.Finish(inserted);
  API_RETURN_IF_ERROR(call, inserted);
  Log(LogLevel::kInfo, "api_key_created",
      {{"api_key_id", created.record.id}, {"role", created.record.role}, {"tenant_id", created.record.tenant_id},
       {"actor", call.principal->id}, {"request_id", call.request_id}});
  json out = ApiKeyJson(created.record);
  out["token"] = std::string(created.token.RevealString(SecretAccess::Grant()));  // shown once
  return JsonResponse(201, out);
}

HttpResponse Api::ListApiKeys(Call& call) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kApiKeyManage, ""));
  API_ASSIGN_OR_RETURN(call, auto keys, d_.store->ListApiKeys());
  json out = json::array();
  for (const auto& k : keys) out.push_back(ApiKeyJson(k));
  return JsonResponse(200, {{"api_keys", out}});
}

HttpResponse Api::RevokeApiKey(Call& call, const std::string& id) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kApiKeyManage, ""));
  if (id == call.principal->id) {
    return ErrorResponse(FailedPreconditionError("an API key cannot revoke itself"), call.request_id);
  }
  API_ASSIGN_OR_RETURN(call, ApiKeyRecord key, d_.store->GetApiKey(id));
  API_ASSIGN_OR_RETURN(call, AuditedChange change,
                       BeginChange(call, "api_key.revoke", key.tenant_id, key.id, {{"role", key.role}}));
  Status revoked = d_.auth->Revoke(id);
  change.Finish(revoked);
  API_RETURN_IF_ERROR(call, revoked);
  Log(LogLevel::kInfo, "api_key_revoked", {{"api_key_id", id}, {"actor", call.principal->id}, {"request_id", call.request_id}});
  return JsonResponse(200, {{"id", id}, {"revoked", true}});
}

}  // namespace concierge::server
