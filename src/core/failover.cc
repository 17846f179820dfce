#include "core/failover.h"

#include <algorithm>

#include "core/key_state.h"
#include "core/policy.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "crypto/signature.h"

namespace concierge::core {
namespace {

using json = nlohmann::json;

constexpr char kSystemActor[] = "system:failover";

int64_t Millis(std::chrono::microseconds d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

}  // namespace

FailoverTarget ParseFailoverTarget(const std::string& entry) {
  const size_t colon = entry.find(':');
  if (colon == std::string::npos) return {entry, ""};
  return {entry.substr(0, colon), entry};
}

std::string OutageIncidentType(const std::string& provider) {
  return KeyTypeForProvider(provider) == "hsm" ? "hsm_failure" : "backend_outage";
}

StatusOr<KeyRecord> FailoverService::ProvisionStandby(const std::string& tenant_id,
                                                      const std::string& actor) {
  std::lock_guard provision(provision_mu_);
  ASSIGN_OR_RETURN(std::shared_ptr<const TenantState> state, tenants_.Active(tenant_id));
  const Policy& policy = state->policy.policy;
  if (policy.failover.empty()) {
    return FailedPreconditionError("the policy of tenant '" + tenant_id +
                                   "' lists no failover backend; set \"failover\" first")
        .WithDetail("field", "failover");
  }
  std::string errors;
  for (const std::string& entry : policy.failover) {
    const FailoverTarget target = ParseFailoverTarget(entry);
    KeyBackend* backend = tenants_.backends().Find(target.provider);
    if (backend == nullptr) {
      errors += "; " + target.provider + ": not configured on this server";
      continue;
    }
    ASSIGN_OR_RETURN(int64_t version, store_.NextKeyVersion(tenant_id));
    KeySpec spec{policy.algorithm, tenant_id + "/v" + std::to_string(version) + "-standby",
                 target.location_hint};
    auto generated = backend->GenerateKey(spec);
    if (!generated.ok()) {
      errors += "; " + target.provider + ": " + generated.status().message();
      continue;
    }
    ASSIGN_OR_RETURN(
        KeyRecord key,
        GeneratedKeyRecord(
            *generated, tenant_id + "-v" + std::to_string(version) + "-" + crypto::RandomHex(3),
            tenant_id, version, policy.algorithm, target.provider, "standby", clock_.Now()));
    if (Status st = store_.InsertKey(key); !st.ok()) {
      backend->DestroyKey(key.key_uri).IgnoreError();  // never referenced by a committed record
      return st.Annotate("storing the standby key");
    }
    std::string cert_serial;
    if (certs_ != nullptr && certs_->CaInitialised()) {
      // Same CA and subject as the active key: a verifier that trusts the
      // tenant's signatures trusts the standby's too.
      auto cert = certs_->IssueForKey(key, policy);
      if (!cert.ok()) {
        store_.UpdateKeyState(key.key_id, "standby", "retired", clock_.Now()).IgnoreError();
        return cert.status().Annotate("certifying standby key " + key.key_id);
      }
      cert_serial = cert->serial;
    }
    // The newest standby serves; older ones are retired (still verifiable).
    ASSIGN_OR_RETURN(auto keys, store_.ListKeys(tenant_id));
    for (const auto& k : keys) {
      if (k.state == "standby" && k.key_id != key.key_id) {
        store_.UpdateKeyState(k.key_id, "standby", "retired", clock_.Now()).IgnoreError();
      }
    }
    RETURN_IF_ERROR(tenants_.Reload(tenant_id));
    Audit(actor, tenant_id, "key.standby", key.key_id, state->policy.hash,
          {{"provider", key.provider},
           {"fingerprint", key.fingerprint},
           {"cert_serial", cert_serial}});
    return key;
  }
  return UnavailableError("no failover backend of tenant '" + tenant_id +
                          "' could generate a standby key" + errors);
}

StatusOr<std::optional<KeyRecord>> FailoverService::EnsureStandby(const std::string& tenant_id,
                                                                  const std::string& actor) {
  ASSIGN_OR_RETURN(std::shared_ptr<const TenantState> state, tenants_.Active(tenant_id));
  const Policy& policy = state->policy.policy;
  if (policy.failover.empty()) {
    // Failover removed from the policy: its standby keys leave service
    // (retired, still verifiable), and a failed-over tenant is back on its
    // active key (the snapshot only routes to a standby the policy allows).
    ASSIGN_OR_RETURN(auto keys, store_.ListKeys(tenant_id));
    for (const auto& k : keys) {
      if (k.state != "standby") continue;
      RETURN_IF_ERROR(store_.UpdateKeyState(k.key_id, "standby", "retired", clock_.Now()));
      Audit(actor, tenant_id, "key.standby_retired", k.key_id, state->policy.hash,
            {{"reason", "policy failover removed"}});
    }
    if (tenants_.OnStandby(tenant_id))
      RETURN_IF_ERROR(FailBack(tenant_id, "failover removed from the policy", actor));
    return std::optional<KeyRecord>();
  }
  if (state->has_standby()) {
    for (const std::string& entry : policy.failover) {
      if (ParseFailoverTarget(entry).provider == state->standby_key.provider)
        return std::optional<KeyRecord>();
    }
  }
  ASSIGN_OR_RETURN(KeyRecord key, ProvisionStandby(tenant_id, actor));
  return std::optional<KeyRecord>(std::move(key));
}

std::shared_ptr<const TenantState> FailoverService::OnSignFailure(const std::string& tenant_id,
                                                                  const TenantState& state,
                                                                  const Status& failure) {
  if (failure.ok() || !IsBackendFault(failure.code()) || state.on_standby || !state.has_standby())
    return nullptr;
  const int64_t failures = health_.ConsecutiveFailures(state.active_key.key_uri);
  if (failures < options_.after_failures) return nullptr;
  const std::string reason = std::to_string(failures) + " backend faults in a row on key " +
                             state.active_key.key_id + " (" + state.active_key.provider +
                             "): " + failure.message();
  if (!FailOver(tenant_id, reason, kSystemActor, "").ok()) return nullptr;
  auto now = tenants_.Active(tenant_id);
  if (!now.ok() || (*now)->SigningKey().key_id == state.SigningKey().key_id) return nullptr;
  return *std::move(now);
}

Status FailoverService::FailOver(const std::string& tenant_id, const std::string& reason,
                                 const std::string& actor, const std::string& incident_id) {
  std::shared_ptr<const TenantState> state;
  {
    std::lock_guard sw(switch_mu_);
    ASSIGN_OR_RETURN(state, tenants_.Active(tenant_id));
    if (state->on_standby) {
      std::lock_guard lock(mu_);
      Episode& ep = episodes_[tenant_id];
      if (ep.incident_id.empty()) ep.incident_id = incident_id;
      return Status::Ok();
    }
    RETURN_IF_ERROR(tenants_.SetOnStandby(tenant_id, true));
    std::lock_guard lock(mu_);
    Episode ep;
    ep.incident_id = incident_id;
    ep.primary_key_id = state->active_key.key_id;
    ep.standby_key_id = state->standby_key.key_id;
    ep.reason = reason;
    ep.since = clock_.Now();
    episodes_[tenant_id] = ep;
  }
  const KeyRecord& primary = state->active_key;
  const KeyRecord& standby = state->standby_key;
  const std::string detail = "tenant " + tenant_id + " fails over from key " + primary.key_id +
                             " (" + primary.provider + ") to standby key " + standby.key_id + " (" +
                             standby.provider + "): " + reason;
  // Incident writes run listeners (auto-respond may call FailOver again), so
  // they happen outside switch_mu_.
  std::string id = incident_id;
  if (id.empty()) {
    NewIncident n;
    n.tenant_id = tenant_id;
    n.type = OutageIncidentType(primary.provider);
    n.severity = "high";
    n.title = "backend " + primary.provider + " of key " + primary.key_id + " failed; tenant " +
              tenant_id + " signs with its standby key";
    n.detector = "backend_health";
    n.actor = actor;
    n.dedup_key = "failover:" + primary.key_id;
    n.key_id = primary.key_id;
    n.details = {{"provider", primary.provider},
                 {"primary_key_id", primary.key_id},
                 {"standby_key_id", standby.key_id},
                 {"standby_provider", standby.provider},
                 {"reason", reason}};
    auto opened = incidents_.Open(n);
    if (opened.ok()) id = opened->incident.incident_id;
  }
  if (!id.empty()) {
    {
      std::lock_guard lock(mu_);
      auto it = episodes_.find(tenant_id);
      if (it != episodes_.end() && it->second.primary_key_id == primary.key_id)
        it->second.incident_id = id;
    }
    incidents_.RecordAction(id, actor, "failover", detail, /*notify=*/true).IgnoreError();
    incidents_
        .AdvanceTo(id, "contained", actor, "signing continues on standby key " + standby.key_id)
        .status()
        .IgnoreError();
  }
  Audit(actor, tenant_id, "key.failover", standby.key_id, state->policy.hash,
        {{"from_key_id", primary.key_id},
         {"to_key_id", standby.key_id},
         {"reason", reason.substr(0, 200)},
         {"incident_id", id}});
  return Status::Ok();
}

Status FailoverService::FailBack(const std::string& tenant_id, const std::string& reason,
                                 const std::string& actor) {
  Episode ep;
  std::shared_ptr<const TenantState> state;
  {
    std::lock_guard sw(switch_mu_);
    ASSIGN_OR_RETURN(state, tenants_.Active(tenant_id));
    // OnStandby too: a tenant whose standby left the policy is still marked.
    if (!state->on_standby && !tenants_.OnStandby(tenant_id)) {
      return FailedPreconditionError("tenant '" + tenant_id +
                                     "' is not failed over; it signs with key " +
                                     state->active_key.key_id);
    }
    RETURN_IF_ERROR(tenants_.SetOnStandby(tenant_id, false));
    std::lock_guard lock(mu_);
    auto it = episodes_.find(tenant_id);
    if (it != episodes_.end()) {
      ep = it->second;
      episodes_.erase(it);
    }
    failed_back_[tenant_id] = clock_.Now();
  }
  const std::string from = ep.standby_key_id.empty() ? state->standby_key.key_id : ep.standby_key_id;
  const std::string detail = "tenant " + tenant_id + " fails back to key " +
                             state->active_key.key_id + " (" + state->active_key.provider +
                             ") from standby key " + from + ": " + reason;
  if (!ep.incident_id.empty()) {
    incidents_.RecordAction(ep.incident_id, actor, "failback", detail, /*notify=*/true)
        .IgnoreError();
    incidents_.AdvanceTo(ep.incident_id, "resolved", actor, detail).status().IgnoreError();
  }
  Audit(actor, tenant_id, "key.failback", state->active_key.key_id, state->policy.hash,
        {{"from_key_id", from},
         {"to_key_id", state->active_key.key_id},
         {"reason", reason.substr(0, 200)},
         {"incident_id", ep.incident_id}});
  return Status::Ok();
}

StatusOr<std::vector<std::string>> FailoverService::RespondToIncident(const IncidentRecord& inc,
                                                                      const std::string& actor,
                                                                      bool auto_only) {
  const std::string reason = "incident " + inc.incident_id + " (" + inc.type + "): " + inc.title;
  std::vector<std::string> failed_over;
  if (!inc.tenant_id.empty()) {
    if (auto_only) {
      ASSIGN_OR_RETURN(PolicyVersion policy, tenants_.GetPolicy(inc.tenant_id, std::nullopt));
      if (!policy.policy.incident_auto_respond) return failed_over;
    }
    RETURN_IF_ERROR(FailOver(inc.tenant_id, reason, actor, inc.incident_id));
    failed_over.push_back(inc.tenant_id);
    return failed_over;
  }
  json details = json::parse(inc.details_json, nullptr, /*allow_exceptions=*/false);
  const std::string provider =
      details.is_object() && details.contains("provider") && details["provider"].is_string()
          ? details["provider"].get<std::string>()
          : std::string();
  if (provider.empty()) {
    return FailedPreconditionError(
        "incident " + inc.incident_id +
        " names neither a tenant nor a backend (details.provider); nothing to fail over");
  }
  ASSIGN_OR_RETURN(auto policies, tenants_.ListPolicies(""));
  for (const auto& p : policies) {
    if (auto_only && !p.policy.incident_auto_respond) continue;
    auto state = tenants_.Active(p.policy.tenant_id);
    if (!state.ok() || !(*state)->has_standby() || (*state)->active_key.provider != provider)
      continue;
    // Each tenant's failover gets its own incident, linked from this one.
    if (FailOver(p.policy.tenant_id, reason, actor, "").ok())
      failed_over.push_back(p.policy.tenant_id);
  }
  if (failed_over.empty() && !auto_only) {
    return FailedPreconditionError("no tenant with a standby key signs with backend '" + provider +
                                   "'");
  }
  if (!failed_over.empty()) {
    std::string list;
    for (const auto& t : failed_over) list += (list.empty() ? "" : ", ") + t;
    incidents_
        .RecordAction(inc.incident_id, actor, "failover", "failed over to standby keys: " + list,
                      true)
        .IgnoreError();
  }
  return failed_over;
}

std::string FailoverService::Unhealthy(const std::string& tenant_id, const KeyRecord& key) {
  const int64_t failures = health_.ConsecutiveFailures(key.key_uri);
  if (failures >= options_.after_failures) {
    return std::to_string(failures) + " backend faults in a row on key " + key.key_id + " (" +
           key.provider + ")";
  }
  if (options_.latency_p99.count() <= 0) return "";
  {
    // Latency samples from before a failback would fail the tenant over again
    // at once: latency counts only once a whole window has passed since.
    std::lock_guard lock(mu_);
    auto it = failed_back_.find(tenant_id);
    if (it != failed_back_.end() && clock_.Now() - it->second < health_.latency_window()) return "";
  }
  const LatencyStats stats = health_.KeyLatency(key.key_uri);
  if (stats.samples < options_.latency_min_samples || stats.p99 < options_.latency_p99) return "";
  return "p99 signing latency of key " + key.key_id + " (" + key.provider + ") is " +
         std::to_string(Millis(stats.p99)) + " ms over " + std::to_string(stats.samples) +
         " calls (threshold " + std::to_string(options_.latency_p99.count()) + " ms)";
}

bool FailoverService::Probe(const std::string& tenant_id, const TenantState& state) {
  const TimePoint now = clock_.Now();
  {
    std::lock_guard lock(mu_);
    Episode& ep = episodes_[tenant_id];
    if (ep.last_probe != TimePoint{} && now - ep.last_probe < options_.probe_interval) return false;
    ep.last_probe = now;
  }
  const KeyRecord& primary = state.active_key;
  Status outcome = Status::Ok();
  const auto alg = ParseAlgorithm(primary.algorithm);
  KeyBackend* backend = tenants_.backends().Find(primary.provider);
  if (!alg || backend == nullptr) {
    outcome = UnavailableError("backend '" + primary.provider + "' is not configured");
  } else {
    const Bytes digest =
        crypto::DigestFor(*alg, crypto::AsBytes("keyctl failback probe " + primary.key_id));
    auto signature = backend->SignDigest(primary.key_uri, *alg, digest);
    outcome = signature.status();
    if (outcome.ok()) {
      // A backend that answers with a wrong signature is not healthy either.
      auto pub = crypto::PublicKeyFromPem(primary.public_key_pem);
      outcome =
          pub.ok() ? crypto::VerifyDigest(pub->get(), *alg, digest, *signature) : pub.status();
    }
  }
  int healthy = 0;
  {
    std::lock_guard lock(mu_);
    Episode& ep = episodes_[tenant_id];
    ep.healthy_probes = outcome.ok() ? ep.healthy_probes + 1 : 0;
    healthy = ep.healthy_probes;
  }
  if (healthy < options_.failback_after_probes) return false;
  return FailBack(
             tenant_id,
             "key " + primary.key_id + " passed " + std::to_string(healthy) + " probes in a row",
             kSystemActor)
      .ok();
}

bool FailoverService::Tick() {
  auto policies = tenants_.ListPolicies("");
  if (!policies.ok()) return false;
  bool changed = false;
  for (const auto& p : *policies) {
    if (p.policy.failover.empty()) continue;
    const std::string& tenant = p.policy.tenant_id;
    auto state = tenants_.Active(tenant);
    if (!state.ok()) continue;
    if ((*state)->on_standby) {
      changed = Probe(tenant, **state) || changed;
    } else if ((*state)->has_standby()) {
      const std::string why = Unhealthy(tenant, (*state)->active_key);
      if (!why.empty()) changed = FailOver(tenant, why, kSystemActor, "").ok() || changed;
    }
  }
  return changed;
}

json FailoverService::StatusJson(const std::string& tenant_id) {
  auto state = tenants_.Active(tenant_id);
  if (!state.ok()) return json::object();
  const TenantState& s = **state;
  json out = {{"tenant_id", tenant_id},
              {"failed_over", s.on_standby},
              {"signing_key_id", s.SigningKey().key_id},
              {"active_key_id", s.active_key.key_id},
              {"standby_key_id", s.has_standby() ? json(s.standby_key.key_id) : json(nullptr)},
              {"standby_provider", s.has_standby() ? json(s.standby_key.provider) : json(nullptr)},
              {"primary_consecutive_failures", health_.ConsecutiveFailures(s.active_key.key_uri)}};
  std::lock_guard lock(mu_);
  auto it = episodes_.find(tenant_id);
  if (s.on_standby && it != episodes_.end()) {
    out["since"] = FormatRfc3339(it->second.since);
    out["reason"] = it->second.reason;
    out["incident_id"] =
        it->second.incident_id.empty() ? json(nullptr) : json(it->second.incident_id);
    out["healthy_probes"] = it->second.healthy_probes;
  }
  return out;
}

void FailoverService::Audit(const std::string& actor, const std::string& tenant_id,
                            const std::string& action, const std::string& target,
                            const std::string& policy_hash, json detail) {
  AuditLog* audit = audit_.load();
  if (audit == nullptr) return;
  AuditEvent event{actor, tenant_id, action, target, "", "", policy_hash, std::move(detail)};
  // The switch already happened (the sign path cannot wait for an operator),
  // so an audit failure cannot refuse it; the incident timeline has it too.
  audit->Record(event, "success").status().IgnoreError();
}

}  // namespace concierge::core
