// RotationScheduler: the background thread inside `keyctl serve` that runs
// rotations - due calendar and scheduled ones (RotationEngine::Tick, every
// `tick_interval`) and ones an operator asked to execute now (Submit, at once).
//
// The interval only paces the thread; whether a rotation is due is decided by
// the engine against the injected Clock, so tests drive time with a FakeClock
// and call Tick() themselves instead of waiting. Thread-safe; the engine must
// outlive the scheduler. `on_report` (optional) receives every tick's report
// and each submitted run's outcome, on the scheduler thread (for logging).
#ifndef CONCIERGE_CORE_ROTATION_SCHEDULER_H_
#define CONCIERGE_CORE_ROTATION_SCHEDULER_H_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "core/rotation_engine.h"
#include "core/rotation_evidence.h"

namespace concierge::core {

class RotationScheduler {
 public:
  using ReportFn = std::function<void(const std::string& what, const TickReport& report)>;

  // `evidence` (optional) builds the Rotation Evidence Pack of every rotation
  // that closed, after each run and each tick.
  RotationScheduler(RotationEngine& engine, std::chrono::milliseconds tick_interval, ReportFn on_report = nullptr,
                    RotationEvidenceRecorder* evidence = nullptr)
      : engine_(engine), interval_(tick_interval), on_report_(std::move(on_report)), evidence_(evidence) {}
  ~RotationScheduler() { Stop(); }
  RotationScheduler(const RotationScheduler&) = delete;
  RotationScheduler& operator=(const RotationScheduler&) = delete;

  // `gate` (optional, set before Start) is asked before every timed tick of
  // the thread; false skips it. Several instances on one database tick only
  // on the leader (core::Leadership). Submitted runs and Tick() are not gated:
  // an operator's "execute now" runs where it was asked (the engine's
  // optimistic writes keep two runners of one rotation from both advancing it).
  void SetTickGate(std::function<bool()> gate) { gate_ = std::move(gate); }
  // Starts the thread (first tick right away). Idempotent.
  void Start();
  // Finishes the rotation step in progress, then joins. Idempotent.
  void Stop();
  // Runs the rotation soon on the scheduler thread.
  void Submit(const std::string& rotation_id);
  // One synchronous round on the calling thread: the submitted rotations,
  // then the engine's tick.
  TickReport Tick();

 private:
  void Loop();
  TickReport DrainSubmitted();
  void RecordEvidence(TickReport& report);

  RotationEngine& engine_;
  const std::chrono::milliseconds interval_;
  ReportFn on_report_;
  RotationEvidenceRecorder* evidence_;
  std::function<bool()> gate_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;  // guarded by mu_
  bool stopping_ = false;          // guarded by mu_
  std::thread thread_;
};

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_ROTATION_SCHEDULER_H_
