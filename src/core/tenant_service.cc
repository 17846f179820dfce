#include "core/tenant_service.h"

#include <nlohmann/json.hpp>

#include <mutex>

#include "core/key_state.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/keys.h"

namespace concierge::core {

using json = nlohmann::json;

StatusOr<KeyRecord> GeneratedKeyRecord(const GeneratedKey& generated, std::string key_id, const std::string& tenant_id,
                                       int64_t version, Algorithm algorithm, const std::string& provider,
                                       const std::string& state, TimePoint now) {
  ASSIGN_OR_RETURN(std::string pem, crypto::SpkiDerToPem(generated.public_key_spki_der));
  KeyRecord key;
  key.key_id = std::move(key_id);
  key.tenant_id = tenant_id;
  key.version = version;
  key.algorithm = std::string(AlgorithmName(algorithm));
  key.provider = provider;
  key.key_uri = generated.uri;
  key.state = state;
  key.public_key_pem = std::move(pem);
  key.fingerprint = crypto::SpkiFingerprint(generated.public_key_spki_der);
  key.attestation = generated.attestation;
  key.created_at = now;
  return key;
}

StatusOr<PolicyVersion> TenantService::ToPolicyVersion(const PolicyRecord& rec) {
  json body = json::parse(rec.body_json, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return DataLossError("stored policy of tenant '" + rec.tenant_id + "' is not valid JSON");
  auto policy = ParsePolicy(body, rec.tenant_id);
  if (!policy.ok()) return policy.status().Annotate("stored policy of tenant '" + rec.tenant_id + "'");
  return PolicyVersion{*std::move(policy), rec.version, rec.policy_hash, rec.created_by, rec.created_at};
}

StatusOr<TenantState> TenantService::CreatePolicy(const std::string& tenant_id, const json& body,
                                                  const Principal& actor) {
  RETURN_IF_ERROR(ValidateTenantId(tenant_id));
  ASSIGN_OR_RETURN(Policy policy, ParsePolicy(body, tenant_id));
  int64_t policy_version = 1;
  auto existing = store_.GetTenant(tenant_id);
  if (existing.ok()) {
    if (!existing->deleted) return AlreadyExistsError("tenant '" + tenant_id + "' already has a policy; update it instead");
    ASSIGN_OR_RETURN(auto versions, store_.ListPolicyVersions(tenant_id));
    for (const auto& v : versions) policy_version = std::max(policy_version, v.version + 1);
  } else if (existing.status().code() != StatusCode::kNotFound) {
    return existing.status();
  }
  KeyBackend* backend = backends_.Find(policy.provider);
  if (backend == nullptr) {
    return FailedPreconditionError("provider '" + policy.provider + "' is not configured on this server")
        .WithDetail("field", "provider");
  }
  ASSIGN_OR_RETURN(int64_t key_version, store_.NextKeyVersion(tenant_id));
  KeySpec spec{policy.algorithm, tenant_id + "/v" + std::to_string(key_version), policy.key_uri};
  auto generated = backend->GenerateKey(spec);
  if (!generated.ok()) return generated.status().Annotate("generating key in backend '" + policy.provider + "'");
  TimePoint now = clock_.Now();
  const std::string key_id = tenant_id + "-v" + std::to_string(key_version) + "-" + crypto::RandomHex(3);
  ASSIGN_OR_RETURN(KeyRecord key, GeneratedKeyRecord(*generated, key_id, tenant_id, key_version, policy.algorithm,
                                                     policy.provider, "active", now));
  key.activated_at = now;

  PolicyRecord rec;
  rec.tenant_id = tenant_id;
  rec.version = policy_version;
  rec.body_json = CanonicalPolicyJson(policy);
  rec.policy_hash = PolicyHash(policy);
  rec.created_by = actor.id;
  rec.created_at = now;

  Status stored = store_.CreateTenant(rec, key);
  if (!stored.ok()) {
    // The key was never referenced by a committed record: remove it.
    backend->DestroyKey(key.key_uri).IgnoreError();
    return stored;
  }
  Invalidate(tenant_id);
  return TenantState{PolicyVersion{std::move(policy), rec.version, rec.policy_hash, rec.created_by, now}, key};
}

StatusOr<PolicyVersion> TenantService::UpdatePolicy(const std::string& tenant_id, const json& patch,
                                                    const Principal& actor,
                                                    std::optional<int64_t> expected_version) {
  ASSIGN_OR_RETURN(PolicyRecord current_rec, store_.GetActivePolicy(tenant_id));
  if (expected_version && *expected_version != current_rec.version) {
    return AbortedError("policy of tenant '" + tenant_id + "' is at version " +
                        std::to_string(current_rec.version) + ", not " + std::to_string(*expected_version));
  }
  ASSIGN_OR_RETURN(PolicyVersion current, ToPolicyVersion(current_rec));
  ASSIGN_OR_RETURN(Policy updated, ApplyPolicyUpdate(current.policy, patch));
  PolicyRecord rec;
  rec.tenant_id = tenant_id;
  rec.version = current_rec.version + 1;
  rec.body_json = CanonicalPolicyJson(updated);
  rec.policy_hash = PolicyHash(updated);
  rec.created_by = actor.id;
  rec.created_at = clock_.Now();
  if (rec.policy_hash == current_rec.policy_hash) return current;  // no change, no new version
  RETURN_IF_ERROR(store_.AddPolicyVersion(rec, current_rec.version));
  Invalidate(tenant_id);
  return PolicyVersion{std::move(updated), rec.version, rec.policy_hash, rec.created_by, rec.created_at};
}

Status TenantService::DeletePolicy(const std::string& tenant_id, const Principal&) {
  ASSIGN_OR_RETURN(TenantRecord t, store_.GetTenant(tenant_id));
  if (t.deleted) return NotFoundError("tenant '" + tenant_id + "' has no policy");
  RETURN_IF_ERROR(store_.DeleteTenant(tenant_id, clock_.Now(), "disabled"));
  Invalidate(tenant_id);
  return Status::Ok();
}

StatusOr<PolicyVersion> TenantService::GetPolicy(const std::string& tenant_id, std::optional<int64_t> version) {
  if (version) {
    RETURN_IF_ERROR(store_.GetTenant(tenant_id).status());  // kNotFound for unknown tenants
    ASSIGN_OR_RETURN(PolicyRecord rec, store_.GetPolicyVersion(tenant_id, *version));
    return ToPolicyVersion(rec);
  }
  ASSIGN_OR_RETURN(PolicyRecord rec, store_.GetActivePolicy(tenant_id));
  return ToPolicyVersion(rec);
}

StatusOr<std::vector<PolicyVersion>> TenantService::ListPolicyVersions(const std::string& tenant_id) {
  RETURN_IF_ERROR(store_.GetTenant(tenant_id).status());  // kNotFound for unknown tenants
  ASSIGN_OR_RETURN(auto recs, store_.ListPolicyVersions(tenant_id));
  std::vector<PolicyVersion> out;
  for (const auto& r : recs) {
    ASSIGN_OR_RETURN(PolicyVersion v, ToPolicyVersion(r));
    out.push_back(std::move(v));
  }
  return out;
}

StatusOr<std::vector<PolicyVersion>> TenantService::ListPolicies(const std::string& only_tenant) {
  std::vector<PolicyVersion> out;
  if (!only_tenant.empty()) {
    auto p = store_.GetActivePolicy(only_tenant);
    if (!p.ok()) {
      if (p.status().code() == StatusCode::kNotFound) return out;
      return p.status();
    }
    ASSIGN_OR_RETURN(PolicyVersion v, ToPolicyVersion(*p));
    out.push_back(std::move(v));
    return out;
  }
  ASSIGN_OR_RETURN(auto tenants, store_.ListTenants(/*include_deleted=*/false));
  for (const auto& t : tenants) {
    auto p = store_.GetActivePolicy(t.tenant_id);
    if (!p.ok()) {
      if (p.status().code() == StatusCode::kNotFound) continue;  // deleted meanwhile
      return p.status();
    }
    ASSIGN_OR_RETURN(PolicyVersion v, ToPolicyVersion(*p));
    out.push_back(std::move(v));
  }
  return out;
}

StatusOr<std::vector<KeyRecord>> TenantService::ListKeys(const std::string& tenant_id) {
  RETURN_IF_ERROR(store_.GetTenant(tenant_id).status());  // kNotFound for unknown tenants
  return store_.ListKeys(tenant_id);
}

StatusOr<KeyRecord> TenantService::GetKey(const std::string& tenant_id, const std::string& key_id) {
  auto key = store_.GetKey(key_id);
  // A key of another tenant is reported as missing: ids must not leak across tenants.
  if (!key.ok() || key->tenant_id != tenant_id) {
    if (!key.ok() && key.status().code() != StatusCode::kNotFound) return key.status();
    return NotFoundError("tenant '" + tenant_id + "' has no key '" + key_id + "'");
  }
  return key;
}

StatusOr<std::shared_ptr<const TenantState>> TenantService::Active(const std::string& tenant_id) {
  {
    std::shared_lock lock(mu_);
    auto it = cache_.find(tenant_id);
    if (it != cache_.end()) return it->second;
  }
  return Load(tenant_id);
}

StatusOr<std::shared_ptr<const TenantState>> TenantService::Read(const std::string& tenant_id) {
  auto rec = store_.GetActivePolicy(tenant_id);
  if (!rec.ok()) {
    if (rec.status().code() == StatusCode::kNotFound) {
      return NotFoundError("tenant '" + tenant_id + "' not found or has no policy");
    }
    return rec.status();
  }
  ASSIGN_OR_RETURN(PolicyVersion policy, ToPolicyVersion(*rec));
  auto key = store_.GetActiveKey(tenant_id);
  if (!key.ok()) {
    if (key.status().code() == StatusCode::kNotFound) {
      return FailedPreconditionError("tenant '" + tenant_id + "' has no active key");
    }
    return key.status();
  }
  TenantState state{std::move(policy), *std::move(key), {}, false};
  if (!state.policy.policy.failover.empty()) {
    // The newest standby key; older ones are retired when a new one arrives.
    ASSIGN_OR_RETURN(auto keys, store_.ListKeys(tenant_id));
    for (auto& k : keys) {
      if (k.state == "standby" && k.version > state.standby_key.version) state.standby_key = std::move(k);
    }
  }
  {
    std::shared_lock lock(mu_);
    auto it = on_standby_.find(tenant_id);
    state.on_standby = it != on_standby_.end() && it->second && state.has_standby();
  }
  return std::make_shared<const TenantState>(std::move(state));
}

StatusOr<std::shared_ptr<const TenantState>> TenantService::Load(const std::string& tenant_id) {
  // A change that lands while we read must not be overwritten by our stale
  // snapshot: only cache if no invalidation happened in between.
  uint64_t generation = generation_.load();
  ASSIGN_OR_RETURN(std::shared_ptr<const TenantState> state, Read(tenant_id));
  std::unique_lock lock(mu_);
  if (generation_.load() == generation) cache_[tenant_id] = state;
  return state;
}

Status TenantService::ReloadAll() {
  std::vector<std::string> ids;
  {
    std::shared_lock lock(mu_);
    ids.reserve(cache_.size());
    for (const auto& [id, state] : cache_) ids.push_back(id);
  }
  Status first;
  for (const std::string& id : ids) {
    Status st = Reload(id);
    if (first.ok() && !st.ok()) first = st;
  }
  return first;
}

Status TenantService::Reload(const std::string& tenant_id) {
  uint64_t generation = 0;
  {
    // Bumping first stops a Load() that read the old rows from caching them.
    std::unique_lock lock(mu_);
    generation = ++generation_;
  }
  auto state = Read(tenant_id);
  std::unique_lock lock(mu_);
  if (state.ok() && generation_.load() == generation) {
    cache_[tenant_id] = *std::move(state);
  } else {
    // Not loadable (no policy / no active key) or changed again meanwhile:
    // drop the entry so the next Active() reads the store and says why.
    ++generation_;
    cache_.erase(tenant_id);
  }
  if (!state.ok() && state.status().code() != StatusCode::kNotFound &&
      state.status().code() != StatusCode::kFailedPrecondition) {
    return state.status();
  }
  return Status::Ok();
}

Status TenantService::SetOnStandby(const std::string& tenant_id, bool on_standby) {
  if (on_standby) {
    ASSIGN_OR_RETURN(std::shared_ptr<const TenantState> state, Read(tenant_id));
    if (!state->has_standby()) {
      return FailedPreconditionError("tenant '" + tenant_id +
                                     "' has no standby key to fail over to (policy failover backends: " +
                                     std::to_string(state->policy.policy.failover.size()) +
                                     "; provision one with keyctl key standby " + tenant_id + ")");
    }
  }
  {
    std::unique_lock lock(mu_);
    if (on_standby) {
      on_standby_[tenant_id] = true;
    } else {
      on_standby_.erase(tenant_id);
    }
  }
  return Reload(tenant_id);
}

bool TenantService::OnStandby(const std::string& tenant_id) {
  std::shared_lock lock(mu_);
  auto it = on_standby_.find(tenant_id);
  return it != on_standby_.end() && it->second;
}

StatusOr<KeyRecord> TenantService::SetKeyState(const std::string& tenant_id, const std::string& key_id,
                                               const std::string& new_state) {
  ASSIGN_OR_RETURN(KeyRecord key, GetKey(tenant_id, key_id));
  RETURN_IF_ERROR(CheckKeyTransition(key.key_id, key.state, new_state));
  if (!ManualKeyTransitionAllowed(key.state, new_state)) {
    return FailedPreconditionError("key '" + key.key_id + "' is " + key.state + "; moving it to " + new_state +
                                   " is the rotation engine's job (keyctl rotation ...)");
  }
  if (new_state == "destroyed") {
    KeyBackend* backend = backends_.Find(key.provider);
    if (backend == nullptr) {
      return UnavailableError("backend '" + key.provider + "' of key '" + key.key_id + "' is not configured");
    }
    // State first: a key marked destroyed whose backend copy survived a crash
    // is harmless; a signing-capable record of a destroyed key would not be.
    RETURN_IF_ERROR(store_.UpdateKeyState(key.key_id, key.state, new_state, clock_.Now()));
    Status destroyed = backend->DestroyKey(key.key_uri);
    if (!destroyed.ok() && destroyed.code() != StatusCode::kNotFound) {
      return destroyed.Annotate("key marked destroyed, but removing it from its backend failed");
    }
  } else {
    RETURN_IF_ERROR(store_.UpdateKeyState(key.key_id, key.state, new_state, clock_.Now()));
  }
  if (key.state == "active" || key.state == "standby") RETURN_IF_ERROR(Reload(tenant_id));
  return GetKey(tenant_id, key_id);
}

void TenantService::Invalidate(const std::string& tenant_id) {
  std::unique_lock lock(mu_);
  ++generation_;
  cache_.erase(tenant_id);
}

}  // namespace concierge::core
