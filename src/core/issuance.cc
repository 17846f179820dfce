#include "core/issuance.h"

#include <algorithm>
#include <cmath>

namespace concierge::core {
namespace {

int64_t UnixMinute(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::minutes>(t.time_since_epoch()).count();
}

}  // namespace

IssuanceLimiter::TenantWindow& IssuanceLimiter::Window(const std::string& tenant_id) {
  {
    std::shared_lock lock(mu_);
    auto it = windows_.find(tenant_id);
    if (it != windows_.end()) return *it->second;  // windows are never removed
  }
  std::unique_lock lock(mu_);
  auto& w = windows_[tenant_id];
  if (!w) w = std::make_unique<TenantWindow>();
  return *w;
}

int64_t IssuanceLimiter::Sum(TenantWindow& w, int64_t now_minute) {
  int64_t total = 0;
  for (int i = 0; i < kWindowMinutes; ++i) {
    if (w.count[i] != 0 && w.minute[i] > now_minute - kWindowMinutes && w.minute[i] <= now_minute) {
      total += w.count[i];
    }
  }
  return total;
}

Status IssuanceLimiter::Reserve(const std::string& tenant_id, int64_t cap, int64_t rate_per_second, int64_t n,
                                TimePoint now) {
  TenantWindow& w = Window(tenant_id);
  std::lock_guard lock(w.mu);
  int64_t now_minute = UnixMinute(now);
  if (cap > 0) {
    int64_t used = Sum(w, now_minute);
    if (used + n > cap) {
      // The window frees up when its oldest counted minute leaves it.
      int64_t oldest = now_minute;
      for (int i = 0; i < kWindowMinutes; ++i) {
        if (w.count[i] != 0 && w.minute[i] > now_minute - kWindowMinutes) oldest = std::min(oldest, w.minute[i]);
      }
      int64_t retry = std::max<int64_t>(1, (oldest + kWindowMinutes - now_minute) * 60);
      return ResourceExhaustedError("tenant '" + tenant_id + "' reached its issuance cap of " + std::to_string(cap) +
                                    " signatures per 24h (" + std::to_string(used) + " used)")
          .WithDetail("retry_after_seconds", std::to_string(retry))
          .WithDetail("limit", "max_issuance_per_24h");
    }
  }
  if (rate_per_second > 0) {
    double burst = static_cast<double>(rate_per_second);
    if (w.tokens < 0) {
      w.tokens = burst;
      w.refilled_at = now;
    }
    double elapsed = std::chrono::duration<double>(now - w.refilled_at).count();
    if (elapsed > 0) {
      w.tokens = std::min(burst, w.tokens + elapsed * static_cast<double>(rate_per_second));
      w.refilled_at = now;
    }
    if (w.tokens < static_cast<double>(n)) {
      double deficit = static_cast<double>(n) - w.tokens;
      int64_t retry = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(deficit / static_cast<double>(rate_per_second))));
      return ResourceExhaustedError("tenant '" + tenant_id + "' exceeded its rate limit of " +
                                    std::to_string(rate_per_second) + " signatures per second")
          .WithDetail("retry_after_seconds", std::to_string(retry))
          .WithDetail("limit", "rate_limit_per_second");
    }
    w.tokens -= static_cast<double>(n);
  }
  int slot = static_cast<int>(((now_minute % kWindowMinutes) + kWindowMinutes) % kWindowMinutes);
  if (w.minute[slot] != now_minute) {
    w.minute[slot] = now_minute;
    w.count[slot] = 0;
  }
  w.count[slot] += n;
  return Status::Ok();
}

void IssuanceLimiter::Release(const std::string& tenant_id, int64_t n, TimePoint reserved_at) {
  TenantWindow& w = Window(tenant_id);
  std::lock_guard lock(w.mu);
  int64_t m = UnixMinute(reserved_at);
  int slot = static_cast<int>(((m % kWindowMinutes) + kWindowMinutes) % kWindowMinutes);
  if (w.minute[slot] == m) w.count[slot] = std::max<int64_t>(0, w.count[slot] - n);
  // Tokens are not refunded: a failed request still consumed capacity.
}

int64_t IssuanceLimiter::CountInWindow(const std::string& tenant_id, TimePoint now) {
  TenantWindow& w = Window(tenant_id);
  std::lock_guard lock(w.mu);
  return Sum(w, UnixMinute(now));
}

void IssuanceLimiter::Load(const std::vector<MinuteCount>& counts) {
  for (const auto& c : counts) {
    TenantWindow& w = Window(c.tenant_id);
    std::lock_guard lock(w.mu);
    int slot = static_cast<int>(((c.minute % kWindowMinutes) + kWindowMinutes) % kWindowMinutes);
    if (w.minute[slot] != c.minute) {
      w.minute[slot] = c.minute;
      w.count[slot] = 0;
    }
    w.count[slot] += c.count;
  }
}

}  // namespace concierge::core
