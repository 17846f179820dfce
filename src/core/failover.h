// FailoverService: backend failover of tenants to a standby key.
//
// Standby keys. A tenant whose policy lists `failover` backends gets a standby
// key in the first of them that works: generated in that backend, certified
// by the built-in CA with the same subject as the active key (when the CA is
// initialised), stored in key state "standby". It is provisioned when the
// policy is created or its failover list changes (the API does this right
// after the policy write), and on demand with ProvisionStandby (`keyctl key
// standby TENANT`, which also replaces an existing standby: the old one is
// retired). Standby keys are not rotated with the primary: rotating the
// primary leaves the standby in place (its certificate has its own validity),
// and `keyctl key standby` is how an operator renews it.
//
// Failover. The sign path reports backend faults (OnSignFailure); when the
// tenant's active key has failed `after_failures` times in a row, or its p99
// signing latency over the health window reached `latency_p99` (checked by
// Tick), the tenant fails over: its snapshot (TenantService::SetOnStandby)
// makes the standby key sign, so ledger rows name the standby key and COSE
// chains carry its certificate. A backend_outage incident (hsm_failure for
// HSM providers) is opened or folded, and the failover is written to its
// timeline (with the "incident.action" webhook event) and to the audit log.
// The digest request that tripped the failover is retried once on the
// standby; requests that failed before it get the backend's 503.
//
// Failback. While failed over, Tick probes the primary key every
// `probe_interval` (a test signature, verified against the key's public key);
// after `failback_after_probes` good probes in a row the tenant signs with the
// primary again, the incident gets a "failback" entry and is resolved, and
// the audit log records it. FailBack forces it (POST .../failback).
//
// Failover state is per process and in memory: a restarted server starts on
// the primary and fails over again if it is still unhealthy. Thread-safe; time
// comes from the injected clock and the server calls Tick periodically (tests
// call it after moving a FakeClock).
#ifndef CONCIERGE_CORE_FAILOVER_H_
#define CONCIERGE_CORE_FAILOVER_H_

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "concierge/clock.h"
#include "concierge/store.h"
#include "core/audit_log.h"
#include "core/backend_health.h"
#include "core/ca.h"
#include "core/incident.h"
#include "core/tenant_service.h"

namespace concierge::core {

struct FailoverOptions {
  int after_failures = 3;                    // backend faults in a row on the active key
  std::chrono::milliseconds latency_p99{0};  // 0 = latency never fails over
  int latency_min_samples = 20;
  std::chrono::seconds probe_interval{10};
  int failback_after_probes = 3;
};

// Which backend a policy `failover` entry names: "software", "software:",
// "pkcs11:token=backup" -> provider before the ':' (or the whole entry), and
// the location hint handed to KeySpec (the entry itself when it is a URI).
struct FailoverTarget {
  std::string provider;
  std::string location_hint;
};
FailoverTarget ParseFailoverTarget(const std::string& entry);

// "hsm_failure" for HSM providers, else "backend_outage".
std::string OutageIncidentType(const std::string& provider);

class FailoverService {
 public:
  FailoverService(Store& store, TenantService& tenants, CertificateService* certs,
                  IncidentService& incidents, BackendHealthTracker& health, Clock& clock,
                  FailoverOptions options)
      : store_(store),
        tenants_(tenants),
        certs_(certs),
        incidents_(incidents),
        health_(health),
        clock_(clock),
        options_(options) {}

  // Not owned; null = failovers are not audited (unit tests).
  void SetAudit(AuditLog* audit) { audit_.store(audit); }

  // Generates, certifies and stores a new standby key in the first failover
  // backend that works, retires the previous standby, and reloads the tenant.
  // kFailedPrecondition when the policy lists no failover backend; the
  // backends' errors when none works.
  StatusOr<KeyRecord> ProvisionStandby(const std::string& tenant_id, const std::string& actor);
  // ProvisionStandby unless the tenant already has a standby key in one of
  // its policy's failover backends; nullopt when nothing was needed. When the
  // policy lists no failover backend, retires the tenant's standby keys (and
  // fails back if needed) instead.
  StatusOr<std::optional<KeyRecord>> EnsureStandby(const std::string& tenant_id,
                                                   const std::string& actor);

  // From the sign path after `state`'s signing key failed with `failure`. When
  // this failure trips (or found) a failover to another key, the snapshot to
  // retry on; else null.
  std::shared_ptr<const TenantState> OnSignFailure(const std::string& tenant_id,
                                                   const TenantState& state, const Status& failure);

  // Routes the tenant to its standby key now. `incident_id` empty: opens (or
  // folds into) the backend_outage/hsm_failure incident; else records on that
  // one. OK without effect when already failed over.
  Status FailOver(const std::string& tenant_id, const std::string& reason, const std::string& actor,
                  const std::string& incident_id);
  // Back to the active key; resolves the failover's incident.
  // kFailedPrecondition when the tenant is not failed over.
  Status FailBack(const std::string& tenant_id, const std::string& reason,
                  const std::string& actor);

  // `keyctl incident respond` for backend_outage / hsm_failure: fails over the
  // incident's tenant, or for a global incident every tenant with a standby
  // key whose active key is in the incident's backend (details.provider) -
  // only those whose policy sets incident_auto_respond when `auto_only`.
  // Returns the tenants failed over.
  StatusOr<std::vector<std::string>> RespondToIncident(const IncidentRecord& incident,
                                                       const std::string& actor, bool auto_only);

  // Health checks of active keys (failover) and probes of failed-over
  // primaries (failback). Returns true if a tenant changed.
  bool Tick();

  // What GET /tenants/{id}/failover shows.
  nlohmann::json StatusJson(const std::string& tenant_id);

  const FailoverOptions& options() const { return options_; }

 private:
  struct Episode {
    std::string incident_id;
    std::string primary_key_id;
    std::string standby_key_id;
    std::string reason;
    TimePoint since{};
    TimePoint last_probe{};
    int healthy_probes = 0;
  };
  // Why the active key counts as unhealthy, or "" when it does not.
  std::string Unhealthy(const std::string& tenant_id, const KeyRecord& key);
  // One probe of a failed-over tenant's primary; true when it failed back.
  bool Probe(const std::string& tenant_id, const TenantState& state);
  void Audit(const std::string& actor, const std::string& tenant_id, const std::string& action,
             const std::string& target, const std::string& policy_hash, nlohmann::json detail);

  Store& store_;
  TenantService& tenants_;
  CertificateService* certs_;
  IncidentService& incidents_;
  BackendHealthTracker& health_;
  Clock& clock_;
  const FailoverOptions options_;
  std::atomic<AuditLog*> audit_{nullptr};

  std::mutex
      switch_mu_;  // one failover/failback decision at a time; never held across incident writes
  std::mutex mu_;  // guards the maps below
  std::map<std::string, Episode> episodes_;       // failed-over tenants
  std::map<std::string, TimePoint> failed_back_;  // last failback per tenant
  std::mutex provision_mu_;                       // one standby generation at a time
};

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_FAILOVER_H_
