// Incident playbooks. The key_compromise playbook runs, in order:
//   pause     the tenant stops signing (policy sign_enabled=false)       -> contained
//   rotate    emergency rotation through EmergencyRotator               -> rotating
//   compromise the old key becomes "compromised", its certificate is revoked
//             (on the built-in CA's CRL)
//   resign    a mass re-sign job of everything the old key signed       -> resigning
//   resume    signing resumes (only if it was enabled before the pause)
//   report    the incident is resolved with a summary                   -> resolved
// Each step's outcome is persisted in the incident (playbook_json, plus a
// timeline entry) before the next step starts, and every step is written to be
// safe to run again, so a crash anywhere resumes cleanly: the pause records
// whether signing was enabled before, the rotation step sees that the old key
// is no longer active and adopts the current active key, the job step finds an
// unfinished job for the same keys. A failed step stops the playbook
// ("failed", with the error); `Respond` again retries from that step.
//
// The rotation itself is not done here: EmergencyRotator is the seam to the
// rotation engine (scheduled/emergency rotations, canary, cutover).
//
// backend_outage / hsm_failure incidents have a one-step playbook: fail over
// (core/failover.h) the incident's tenant, or for a global incident every
// tenant with a standby key on the incident's backend. Failback is automatic
// once the primary passes its health probes (or POST .../failback), and
// resolves the failover's incident.
//
// Thread-safe. A worker thread advances running playbooks; Respond only
// records the start and wakes it.
#ifndef CONCIERGE_CORE_INCIDENT_PLAYBOOK_H_
#define CONCIERGE_CORE_INCIDENT_PLAYBOOK_H_

#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "concierge/clock.h"
#include "concierge/status.h"
#include "concierge/store.h"
#include "core/background_loop.h"
#include "core/ca.h"
#include "core/failover.h"
#include "core/incident.h"
#include "core/resign_job.h"
#include "core/tenant_service.h"

namespace concierge::core {

// Replaces a tenant's active key right now. Implemented by the rotation engine
// (approval skipped only where the policy allows it; the canary still runs).
class EmergencyRotator {
 public:
  virtual ~EmergencyRotator() = default;
  // Returns the id of the new active key. On success the old key is no longer
  // "active". The playbook calls this only while the old key is still active.
  virtual StatusOr<std::string> RotateNow(const std::string& tenant_id, const std::string& reason) = 0;
};

class PlaybookRunner {
 public:
  PlaybookRunner(IncidentService& incidents, TenantService& tenants, CertificateService* certs,
                 ResignJobEngine& jobs, Clock& clock)
      : incidents_(incidents), tenants_(tenants), certs_(certs), jobs_(jobs), clock_(clock) {}
  ~PlaybookRunner() { Stop(); }
  PlaybookRunner(const PlaybookRunner&) = delete;
  PlaybookRunner& operator=(const PlaybookRunner&) = delete;

  // Not owned; null = the rotate step fails with a clear error.
  void SetRotator(EmergencyRotator* rotator) { rotator_.store(rotator); }
  // Not owned; null = backend_outage / hsm_failure have no playbook.
  void SetFailover(FailoverService* failover) { failover_.store(failover); }

  // Starts the incident's playbook, or resumes a failed one from its failed
  // step. `since` limits the re-sign to entries signed at or after it.
  // kUnimplemented for types without a playbook; kFailedPrecondition when the
  // incident is resolved/closed or its playbook is running or done.
  StatusOr<IncidentRecord> Respond(const std::string& incident_id, const std::string& actor,
                                   std::optional<TimePoint> since);

  // Runs automatically for a new high/critical key_compromise, backend_outage
  // or hsm_failure incident when the tenant's policy sets
  // incident_auto_respond (for a global backend incident: each tenant's
  // policy). Hook for IncidentService.
  void OnIncidentOpened(const IncidentRecord& incident);

  // Advances every running playbook as far as it can go now (until done,
  // failed or waiting for its re-sign job). Returns true if any step ran.
  bool RunOnce();

  void Start();
  void Stop();
  void Wake();

 private:
  // Stores the (one-step, finished) failover playbook of a backend incident.
  Status RecordFailoverPlaybook(const IncidentRecord& incident, const std::string& actor,
                                const std::vector<std::string>& tenants);
  // Runs steps of one incident's playbook until it waits, fails or finishes.
  bool Advance(const IncidentRecord& incident);

  IncidentService& incidents_;
  TenantService& tenants_;
  CertificateService* certs_;
  ResignJobEngine& jobs_;
  Clock& clock_;
  std::atomic<EmergencyRotator*> rotator_{nullptr};
  std::atomic<FailoverService*> failover_{nullptr};

  std::mutex advance_mu_;  // one advancer at a time (worker or a test's RunOnce)
  BackgroundLoop loop_;
};

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_INCIDENT_PLAYBOOK_H_
