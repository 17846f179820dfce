// TenantService: tenants, their versioned signing policies and their keys.
//
// Creating a policy creates the tenant and generates its first key in the
// policy's backend; the tenant, policy version 1 and the key record are stored in
// one transaction, and a key generated for a write that then fails is destroyed.
// The active state of each tenant (policy + active key) is cached in memory and
// swapped atomically on every change, so the sign path never reads the database.
// Key state changes are checked against the lifecycle in core/key_state.h.
// Thread-safe.
#ifndef CONCIERGE_CORE_TENANT_SERVICE_H_
#define CONCIERGE_CORE_TENANT_SERVICE_H_

#include <nlohmann/json_fwd.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "concierge/clock.h"
#include "concierge/key_backend.h"
#include "concierge/store.h"
#include "core/auth.h"
#include "core/policy.h"

namespace concierge::core {

struct PolicyVersion {
  Policy policy;
  int64_t version = 0;
  std::string hash;
  std::string created_by;
  TimePoint created_at{};
};

// Immutable snapshot used by the sign path. It decides which key signs:
// the active key, or - while the tenant is failed over (core/failover.h) -
// its standby key in the policy's failover backend.
struct TenantState {
  PolicyVersion policy;
  KeyRecord active_key;
  KeyRecord standby_key;  // key_id empty when the tenant has none
  bool on_standby = false;  // failed over: the standby key signs

  bool has_standby() const { return !standby_key.key_id.empty(); }
  // The key that signs right now (ledger rows and COSE chains name this one).
  const KeyRecord& SigningKey() const { return on_standby && has_standby() ? standby_key : active_key; }
};

// The record of a key just generated in `provider`'s backend, in `state`,
// created at `now` (SPKI PEM and fingerprint from the generated public key).
StatusOr<KeyRecord> GeneratedKeyRecord(const GeneratedKey& generated, std::string key_id, const std::string& tenant_id,
                                       int64_t version, Algorithm algorithm, const std::string& provider,
                                       const std::string& state, TimePoint now);

class TenantService {
 public:
  TenantService(Store& store, BackendRegistry& backends, Clock& clock)
      : store_(store), backends_(backends), clock_(clock) {}

  // Errors: InvalidArgument naming the field; AlreadyExists if the tenant has a
  // policy; FailedPrecondition if the provider is not configured here.
  StatusOr<TenantState> CreatePolicy(const std::string& tenant_id, const nlohmann::json& body,
                                     const Principal& actor);
  // Partial update -> new version. `expected_version` (If-Match) guards against
  // lost updates: kAborted when the active version differs.
  StatusOr<PolicyVersion> UpdatePolicy(const std::string& tenant_id, const nlohmann::json& patch,
                                       const Principal& actor, std::optional<int64_t> expected_version);
  // Deletes the tenant's policy: signing stops, keys become "disabled" (kept,
  // still listed, signatures still verifiable). History is kept.
  Status DeletePolicy(const std::string& tenant_id, const Principal& actor);

  StatusOr<PolicyVersion> GetPolicy(const std::string& tenant_id, std::optional<int64_t> version);
  StatusOr<std::vector<PolicyVersion>> ListPolicyVersions(const std::string& tenant_id);
  // Active policies of all live tenants, or just `only_tenant` when non-empty.
  StatusOr<std::vector<PolicyVersion>> ListPolicies(const std::string& only_tenant);

  StatusOr<std::vector<KeyRecord>> ListKeys(const std::string& tenant_id);
  StatusOr<KeyRecord> GetKey(const std::string& tenant_id, const std::string& key_id);

  // Cached snapshot of the tenant's policy and active key. kNotFound when the
  // tenant does not exist or has no policy.
  StatusOr<std::shared_ptr<const TenantState>> Active(const std::string& tenant_id);

  // Re-reads the tenant's policy and active key and swaps the cached snapshot
  // in one step (used right after a key cutover or rollback). Callers holding
  // the previous snapshot keep it, so a request in flight finishes on the key
  // it started with; every later Active() returns the new one. Unlike an
  // invalidation, no request ever finds the cache empty.
  Status Reload(const std::string& tenant_id);
  // Reload() of every cached tenant: after another instance's changes may
  // have been missed (several instances on one database). The first error,
  // after trying them all.
  Status ReloadAll();

  // Routes the tenant's signing to its standby key (true) or back to its
  // active key (false), by swapping the snapshot like Reload. In memory,
  // per process: a restarted server signs with the active key again until
  // its health checks fail over anew. kFailedPrecondition when failing over a
  // tenant without a standby key.
  Status SetOnStandby(const std::string& tenant_id, bool on_standby);
  bool OnStandby(const std::string& tenant_id);

  // An operator's manual key state change (retired, compromised, destroyed),
  // checked against the key lifecycle (core/key_state.h). Destroying also
  // removes the key from its backend. The active key can only be retired by
  // a rotation.
  StatusOr<KeyRecord> SetKeyState(const std::string& tenant_id, const std::string& key_id,
                                  const std::string& new_state);

  BackendRegistry& backends() { return backends_; }

 private:
  StatusOr<PolicyVersion> ToPolicyVersion(const PolicyRecord& rec);
  StatusOr<std::shared_ptr<const TenantState>> Load(const std::string& tenant_id);
  // The snapshot from the store's rows, or the status that says why not.
  StatusOr<std::shared_ptr<const TenantState>> Read(const std::string& tenant_id);
  void Invalidate(const std::string& tenant_id);

  Store& store_;
  BackendRegistry& backends_;
  Clock& clock_;
  std::shared_mutex mu_;
  std::atomic<uint64_t> generation_{0};
  std::unordered_map<std::string, std::shared_ptr<const TenantState>> cache_;
  std::unordered_map<std::string, bool> on_standby_;  // guarded by mu_
};

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_TENANT_SERVICE_H_
