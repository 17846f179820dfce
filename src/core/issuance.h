// IssuanceLimiter: per-tenant issuance cap over a sliding 24-hour window (minute
// buckets) and a per-tenant token-bucket rate limit. Reservations are taken
// before signing and released if the signature is not delivered, so a refused
// or failed request never counts. Windows are rebuilt from the ledger at start
// so caps survive restarts. Time comes from the caller (injected Clock).
// Thread-safe.
#ifndef CONCIERGE_CORE_ISSUANCE_H_
#define CONCIERGE_CORE_ISSUANCE_H_

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "concierge/clock.h"
#include "concierge/ledger.h"
#include "concierge/status.h"

namespace concierge::core {

class IssuanceLimiter {
 public:
  static constexpr int kWindowMinutes = 24 * 60;

  // Takes `n` from the tenant's 24h allowance `cap` (0 = unlimited) and, when
  // `rate_per_second` > 0, from its token bucket (burst = rate). On refusal:
  // kResourceExhausted with details["retry_after_seconds"], nothing taken.
  Status Reserve(const std::string& tenant_id, int64_t cap, int64_t rate_per_second, int64_t n, TimePoint now);
  // Gives back a reservation made at `reserved_at` that produced no signature.
  void Release(const std::string& tenant_id, int64_t n, TimePoint reserved_at);
  // Signatures counted in the window ending at `now`.
  int64_t CountInWindow(const std::string& tenant_id, TimePoint now);
  // Seeds the windows from ledger counts (start-up).
  void Load(const std::vector<MinuteCount>& counts);

 private:
  struct TenantWindow {
    std::mutex mu;
    std::array<int64_t, kWindowMinutes> minute{};  // which unix minute each slot holds
    std::array<int64_t, kWindowMinutes> count{};
    double tokens = -1;  // token bucket; -1 = not initialised
    TimePoint refilled_at{};
  };
  TenantWindow& Window(const std::string& tenant_id);
  static int64_t Sum(TenantWindow& w, int64_t now_minute);

  // Taken shared on the sign path; exclusively only to add a tenant.
  std::shared_mutex mu_;
  std::unordered_map<std::string, std::unique_ptr<TenantWindow>> windows_;
};

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_ISSUANCE_H_
