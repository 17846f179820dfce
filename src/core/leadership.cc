#include "core/leadership.h"

#include <utility>

namespace concierge::core {

Leadership::Leadership(Poll poll, LeadershipHooks hooks)
    : poll_(std::move(poll)), hooks_(std::move(hooks)), leader_(!poll_) {}

Leadership::~Leadership() { Stop(); }

bool Leadership::Tick() {
  std::lock_guard lock(tick_mu_);
  if (poll_) {
    const bool held = poll_();
    const bool was = leader_.load();
    if (was && !held) {
      leader_.store(false, std::memory_order_release);  // gates stop before the workers are joined
      if (hooks_.on_change) hooks_.on_change(false);
      if (hooks_.on_loss) hooks_.on_loss();
    } else if (!was && held) {
      if (hooks_.on_change) hooks_.on_change(true);
      if (hooks_.on_gain) hooks_.on_gain();
      ++terms_;
      leader_.store(true, std::memory_order_release);
    }
  }
  const bool leader = leader_.load();
  if (leader && hooks_.while_leader) hooks_.while_leader();
  return leader;
}

void Leadership::Start(std::chrono::milliseconds interval) {
  loop_.Start(
      [this] {
        Tick();
        return false;  // wait `interval` between rounds
      },
      interval);
}

void Leadership::Stop() {
  loop_.Stop();
  std::lock_guard lock(tick_mu_);
  if (poll_ && leader_.exchange(false)) {
    if (hooks_.on_loss) hooks_.on_loss();
  }
}

}  // namespace concierge::core
