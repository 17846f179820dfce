// RotationEngine: scheduled key rotation that tests the new key before it goes
// live, switches keys without failing a request, survives crashes at any point
// and can be rolled back inside the policy's grace window (docs/rotation.md).
//
// Phases, in order: prepare -> generate_key -> certificate -> canary ->
// cutover -> validate -> complete. Each phase is persisted ("phase_started")
// before it runs and is idempotent, so a run interrupted anywhere (crash,
// kill, power cut) is resumed by Recover() or the next Tick() from the phase it
// was in. Failures before the cutover abort cleanly: the pending key is marked
// destroyed and removed from its backend, its certificate superseded. The
// cutover is one store transaction (Store::SwapActiveKey), after which the
// tenant's cached snapshot is swapped atomically (TenantService::Reload): a
// request that already took the old snapshot finishes on the old key (which
// stays verifiable as "retiring"), later ones use the new key, none fails.
// Failures after the cutover roll back automatically while the grace window
// is open; the old key retires when it closes.
//
// Calendar: every live tenant without an open rotation gets one scheduled at
// (activation of its active key + rotate_every_days). Tick() starts due
// rotations (never one that still needs approval), resumes interrupted ones,
// and retires old keys whose grace window closed.
//
// Thread-safety: all methods are thread-safe. Mutations of rotations are
// serialised by one mutex, so a rotation is never run by two threads at once;
// reads do not take it. Borrowed references must outlive the engine.
#ifndef CONCIERGE_CORE_ROTATION_ENGINE_H_
#define CONCIERGE_CORE_ROTATION_ENGINE_H_

#include <array>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "concierge/clock.h"
#include "concierge/ledger.h"
#include "concierge/store.h"
#include "core/auth.h"
#include "core/ca.h"
#include "core/tenant_service.h"

namespace concierge::core {

inline constexpr std::array<std::string_view, 7> kRotationPhases = {
    "prepare", "generate_key", "certificate", "canary", "cutover", "validate", "complete"};

// 1-based position of `phase` in kRotationPhases; 0 for "" or an unknown name.
int RotationPhaseNumber(std::string_view phase);
// scheduled, running and awaiting_certificate.
bool RotationIsOpen(std::string_view state);

inline constexpr char kSchedulerActor[] = "system:scheduler";
inline constexpr char kEngineActor[] = "system:rotation-engine";

struct RotationOptions {
  // Scheduled rotations closer than this are flagged "warning" in listings.
  std::chrono::hours advance_warning{24 * 7};
  // Recent ledger entries whose digests the canary re-signs with the new key.
  int ledger_sample = 20;
  // After a calendar rotation failed, was rolled back or cancelled, the next
  // calendar rotation is due no sooner than this.
  std::chrono::hours retry_after_failure{24};
};

struct ScheduleRequest {
  std::optional<TimePoint> scheduled_at;  // default: now
  std::string owner;                      // email of the accountable person (required)
  bool approval_required = false;         // the policy's approval_required also forces it
  std::string cert_source;                // "", "builtin-ca" or "external" ("" = CA if initialised)
};

// A rotation as shown to operators: the record, its timeline and flags
// computed against the clock.
struct RotationView {
  RotationRecord record;
  std::vector<RotationEvent> events;
  bool warning = false;           // scheduled within the advance-warning window
  bool overdue = false;           // its time passed and it has not run (approval, certificate)
  bool approval_pending = false;  // needs a second principal's approval
  bool rollback_allowed = false;  // completed and inside the grace window
  int phase_number = 0;           // 1..7 (kRotationPhases), 0 before it starts
};

// Where a tenant stands on its rotation calendar.
struct TenantCalendar {
  std::string tenant_id;
  int rotate_every_days = 0;
  int rotation_grace_days = 0;
  std::string active_key_id;
  std::optional<TimePoint> active_since;
  std::optional<TimePoint> next_due;  // active_since + rotate_every_days
  bool warning = false;               // next_due is within the advance-warning window
  bool overdue = false;               // next_due has passed
};

struct TickReport {
  int calendar_scheduled = 0;  // calendar rotations created or rescheduled
  int started = 0;             // due rotations started
  int resumed = 0;             // running / awaiting_certificate rotations re-run
  int keys_retired = 0;        // old keys whose grace window closed
  int cancelled = 0;           // open rotations of deleted tenants
  int evidence_built = 0;      // Rotation Evidence Packs built (RotationScheduler)
  std::vector<std::string> errors;  // one line each; the tick goes on after an error
};

class RotationEngine {
 public:
  RotationEngine(Store& store, LedgerStore& ledger, TenantService& tenants, CertificateService& certs,
                 Clock& clock, RotationOptions options = {})
      : store_(store), ledger_(ledger), tenants_(tenants), certs_(certs), clock_(clock), options_(options) {}

  // Schedules a manual rotation. A calendar rotation still waiting is replaced;
  // another open rotation is kAlreadyExists. Bad input: FieldError naming
  // owner, scheduled_time or certificate.
  StatusOr<RotationRecord> Schedule(const std::string& tenant_id, const ScheduleRequest& request,
                                    const Principal& actor);
  // Second-person approval. PermissionDenied for the principal that scheduled
  // it; FailedPrecondition when it needs none, has one, or is not scheduled.
  StatusOr<RotationRecord> Approve(const std::string& rotation_id, const Principal& actor);
  // Cancels a scheduled or awaiting_certificate rotation (the pending key of
  // the latter is destroyed). FailedPrecondition otherwise.
  StatusOr<RotationRecord> Cancel(const std::string& rotation_id, const Principal& actor);
  // Marks a scheduled rotation to run now (whatever its scheduled time), after
  // checking its approval; running/awaiting ones are accepted as they are. The
  // caller then runs it with Run() (the scheduler thread does, see
  // RotationScheduler::Submit). FailedPrecondition when it cannot run.
  StatusOr<RotationRecord> RequestExecution(const std::string& rotation_id, const Principal& actor);
  // Drives a running (or awaiting_certificate) rotation to its next resting
  // state: completed, failed, rolled_back, or awaiting_certificate. A no-op on
  // any other state. Errors are about the store only; phase failures are
  // recorded in the rotation (state failed / rolled_back, `error`).
  StatusOr<RotationRecord> Run(const std::string& rotation_id);
  // Restores the previous key. Only for a completed rotation inside its grace
  // window: FailedPrecondition with the window's end otherwise.
  StatusOr<RotationRecord> Rollback(const std::string& rotation_id, const Principal& actor,
                                    const std::string& reason);

  StatusOr<RotationView> Get(const std::string& rotation_id);
  // The tenant's rotations, oldest first (its calendar rotation included once
  // a tick created it). kNotFound for an unknown tenant.
  StatusOr<std::vector<RotationView>> List(const std::string& tenant_id);
  StatusOr<TenantCalendar> Calendar(const std::string& tenant_id);

  // One round of scheduler duties (see the class comment). Runs due rotations
  // on the calling thread.
  TickReport Tick();
  // At start-up: resumes every rotation left "running" by a crash.
  TickReport Recover();

  const RotationOptions& options() const { return options_; }

  // Told when a canary fails (after its results are persisted, before the
  // rotation aborts): the incident detectors open a canary-failure incident.
  // Set once before the engine runs.
  using CanaryFailureListener = std::function<void(const RotationRecord&, const std::string& error)>;
  void SetCanaryFailureListener(CanaryFailureListener listener) { canary_failed_ = std::move(listener); }

 private:
  enum class PhaseOutcome { kDone, kWait };

  RotationView ToView(RotationRecord record, std::vector<RotationEvent> events, TimePoint now);
  RotationEvent Event(const RotationRecord& r, std::string event, std::string detail, std::string actor);
  // Writes `r` (optimistically) with `events`; bumps r.version on success.
  Status Persist(RotationRecord& r, std::vector<RotationEvent> events);

  StatusOr<RotationRecord> RunLocked(RotationRecord rec);
  StatusOr<PhaseOutcome> RunPhase(RotationRecord& rec, std::string_view phase);
  Status Prepare(RotationRecord& rec);
  Status GenerateKey(RotationRecord& rec);
  StatusOr<PhaseOutcome> Certify(RotationRecord& rec);
  Status Canary(RotationRecord& rec);
  Status Cutover(RotationRecord& rec);
  Status Validate(RotationRecord& rec);
  Status Complete(RotationRecord& rec);

  // A phase failed: abort before the cutover, roll back after it.
  StatusOr<RotationRecord> Fail(RotationRecord rec, std::string_view phase, const Status& cause);
  // Destroys the pending key (if any) and closes the rotation as `final_state`.
  StatusOr<RotationRecord> Abort(RotationRecord rec, const std::string& final_state, const std::string& reason,
                                 const std::string& actor);
  StatusOr<RotationRecord> RollbackLocked(RotationRecord rec, const std::string& reason, const std::string& actor);

  Status StartLocked(RotationRecord& rec, const std::string& actor, const std::string& detail);
  // The calendar rotation of one live tenant (created or rescheduled). true when it changed something.
  StatusOr<bool> EnsureCalendar(const std::string& tenant_id, const std::vector<RotationRecord>& open);
  StatusOr<int> RetireExpired(const std::string& tenant_id);
  StatusOr<TimePoint> CalendarDue(const std::string& tenant_id, const PolicyVersion& policy);

  Store& store_;
  LedgerStore& ledger_;
  TenantService& tenants_;
  CertificateService& certs_;
  Clock& clock_;
  const RotationOptions options_;
  std::mutex run_mu_;  // serialises every mutation of rotations
  CanaryFailureListener canary_failed_;
};

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_ROTATION_ENGINE_H_
