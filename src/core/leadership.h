// Leadership: which of several `keyctl serve` instances on one database runs
// the singleton background work (rotation scheduler ticks and the resumption
// of interrupted rotations, audit checkpoints, playbook automation, re-sign
// jobs). Request handling runs on every instance.
//
// The election itself is a `poll` function (store::PgLeaderLock::Poll on
// PostgreSQL: a session-level advisory lock): true means "this instance holds
// the lock now". Tick() polls once and acts on a change:
//  - gained: runs `on_gain` (resume what the previous leader left half done,
//    start the leader-only workers), then reports is_leader();
//  - lost (lock connection gone, database unreachable): is_leader() turns
//    false first - gates that check it stop at once - then `on_loss` stops
//    the workers.
// As leader it then runs `while_leader` (periodic leader work, e.g. audit
// checkpoints). A Tick that cannot prove the lock is held counts as a loss.
// Start() ticks on a thread every `interval`; tests call Tick() directly.
//
// Without a poll function (SQLite: one instance per database) the instance is
// leader from construction, Tick() only runs `while_leader`, and the hooks
// never run: start-up does that work itself.
//
// Thread-safe: is_leader() is lock-free; Tick() calls are serialised. Hooks
// run on the ticking thread.
#ifndef CONCIERGE_CORE_LEADERSHIP_H_
#define CONCIERGE_CORE_LEADERSHIP_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>

#include "core/background_loop.h"

namespace concierge::core {

struct LeadershipHooks {
  std::function<void()> on_gain;
  std::function<void()> on_loss;
  std::function<void()> while_leader;
  // Transitions, for the log: true = became leader.
  std::function<void(bool leader)> on_change;
};

class Leadership {
 public:
  using Poll = std::function<bool()>;
  Leadership(Poll poll, LeadershipHooks hooks);
  ~Leadership();  // Stop()
  Leadership(const Leadership&) = delete;
  Leadership& operator=(const Leadership&) = delete;

  bool is_leader() const { return leader_.load(std::memory_order_acquire); }
  // Whether leadership is elected at all (false: always leader).
  bool elected() const { return static_cast<bool>(poll_); }
  // Times this instance became leader (tests, status).
  uint64_t terms() const { return terms_.load(); }

  // One round (see the class comment). Returns is_leader().
  bool Tick();
  void Start(std::chrono::milliseconds interval);
  // Stops ticking; a leader runs on_loss (its workers stop) but keeps the
  // lock until the poll function's owner releases it.
  void Stop();

 private:
  Poll poll_;
  LeadershipHooks hooks_;
  std::atomic<bool> leader_;
  std::atomic<uint64_t> terms_{0};
  std::mutex tick_mu_;  // serialises Tick()
  BackgroundLoop loop_;
};

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_LEADERSHIP_H_
