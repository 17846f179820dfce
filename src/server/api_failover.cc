// REST routes for backend failover (core/failover.h).
//
//   GET  /api/v1/tenants/{t}/failover            which key signs, standby, episode   tenant:read
//   POST /api/v1/tenants/{t}/failover {reason}   fail over to the standby key now    key:manage
//   POST /api/v1/tenants/{t}/failback {reason}   sign with the active key again      key:manage
//   POST /api/v1/tenants/{t}/keys/standby        provision (or replace) the standby  key:manage
//
// Policy writes provision a standby key themselves when the policy lists
// failover backends (EnsureStandby below). Every change is audited like the
// other state changes (attempt first, then the outcome).
#include <nlohmann/json.hpp>

#include "core/failover.h"
#include "server/api_internal.h"
#include "server/log.h"

namespace concierge::server {

void Api::EnsureStandby(Call& call, const std::string& tenant, json& out) {
  if (d_.failover == nullptr) return;
  auto state = d_.tenants->Active(tenant);
  if (!state.ok() || ((*state)->policy.policy.failover.empty() && !(*state)->has_standby())) {
    // Nothing to provision; a standby left from an earlier policy version is
    // retired by EnsureStandby (Active only shows it while failover is set).
    auto keys = d_.tenants->ListKeys(tenant);
    bool stale = false;
    for (const auto& k : keys.ok() ? *keys : std::vector<KeyRecord>{})
      stale = stale || k.state == "standby";
    if (!stale) return;
  }
  StatusOr<AuditedChange> change =
      BeginChange(call, "key.standby", tenant, tenant, {{"reason", "policy"}});
  StatusOr<std::optional<KeyRecord>> standby =
      change.ok() ? d_.failover->EnsureStandby(tenant, call.principal->id) : change.status();
  if (change.ok()) {
    change->Finish(standby.status(),
                   standby.ok() && standby->has_value()
                       ? json{{"key_id", (*standby)->key_id}, {"provider", (*standby)->provider}}
                       : json::object());
  }
  if (!standby.ok()) {
    // The policy stands; signing works on the primary. POST .../keys/standby retries.
    Log(LogLevel::kWarn, "standby_key_failed",
        {{"tenant_id", tenant},
         {"error", standby.status().message()},
         {"request_id", call.request_id}});
    out["standby_key_error"] = standby.status().message();
  } else if (standby->has_value()) {
    out["standby_key"] = KeyJson(**standby);
  }
}

std::optional<HttpResponse> Api::DispatchFailover(Call& call, const std::vector<std::string>& s) {
  const bool standby_route = PathIs(s, {"api", "v1", "tenants", "*", "keys", "standby"});
  const bool failover_route = PathIs(s, {"api", "v1", "tenants", "*", "failover"});
  const bool failback_route = PathIs(s, {"api", "v1", "tenants", "*", "failback"});
  if (!standby_route && !failover_route && !failback_route) return std::nullopt;
  const std::string& m = call.req.method;
  const std::string& tenant = s[3];
  if (failover_route && m == "GET") {
    API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kTenantRead, tenant));
    API_RETURN_IF_ERROR(call, d_.tenants->Active(tenant).status());
    if (d_.failover == nullptr)
      return ErrorResponse(UnavailableError("failover is not running"), call.request_id);
    return JsonResponse(200, d_.failover->StatusJson(tenant));
  }
  if (m != "POST") return MethodNotAllowed(call.req, failover_route ? "GET, POST" : "POST");
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kKeyManage, tenant));
  if (d_.failover == nullptr)
    return ErrorResponse(UnavailableError("failover is not running"), call.request_id);
  json body = json::object();
  if (!call.req.body.empty()) {
    API_ASSIGN_OR_RETURN(call, body, ParseBody(call.req.body));
  }
  API_RETURN_IF_ERROR(call, OnlyFields(body, {"reason"}));
  API_ASSIGN_OR_RETURN(call, std::string reason, StringField(body, "reason", false));
  if (reason.size() > 500)
    return ErrorResponse(FieldError("reason", "reason is longer than 500 bytes"), call.request_id);
  API_RETURN_IF_ERROR(call, d_.tenants->Active(tenant).status());

  const std::string action = standby_route    ? "key.standby"
                             : failover_route ? "key.failover"
                                              : "key.failback";
  API_ASSIGN_OR_RETURN(call, AuditedChange change,
                       BeginChange(call, action, tenant, tenant, {{"reason", reason}}));
  if (reason.empty()) reason = "requested by " + call.principal->id;
  if (standby_route) {
    StatusOr<KeyRecord> key = d_.failover->ProvisionStandby(tenant, call.principal->id);
    change.Finish(key.status(), key.ok()
                                    ? json{{"key_id", key->key_id}, {"provider", key->provider}}
                                    : json::object());
    API_ASSIGN_OR_RETURN(call, KeyRecord created, std::move(key));
    Log(LogLevel::kInfo, "standby_key_created",
        {{"tenant_id", tenant},
         {"key_id", created.key_id},
         {"provider", created.provider},
         {"actor", call.principal->id},
         {"request_id", call.request_id}});
    return JsonResponse(201, KeyJson(created));
  }
  Status st = failover_route ? d_.failover->FailOver(tenant, reason, call.principal->id, "")
                             : d_.failover->FailBack(tenant, reason, call.principal->id);
  change.Finish(st);
  API_RETURN_IF_ERROR(call, st);
  Log(LogLevel::kWarn, failover_route ? "tenant_failed_over" : "tenant_failed_back",
      {{"tenant_id", tenant},
       {"reason", reason},
       {"actor", call.principal->id},
       {"request_id", call.request_id}});
  return JsonResponse(200, d_.failover->StatusJson(tenant));
}

}  // namespace concierge::server
