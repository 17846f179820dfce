#include "core/backend_health.h"

#include <algorithm>

namespace concierge::core {

bool IsBackendFault(StatusCode code) {
  return code == StatusCode::kUnavailable || code == StatusCode::kInternal ||
         code == StatusCode::kDataLoss || code == StatusCode::kDeadlineExceeded ||
         code == StatusCode::kUnknown;
}

void BackendHealthTracker::Record(std::string_view provider, std::string_view key_uri,
                                  const Status& outcome, std::chrono::microseconds latency) {
  const TimePoint now = clock_.Now();
  const bool fault = !outcome.ok() && IsBackendFault(outcome.code());
  auto update = [&](Series& s) {
    std::lock_guard lock(s.mu);
    if (s.ring.size() < kMaxSamples) {
      s.ring.emplace_back(now, latency);
    } else {
      s.ring[s.next] = {now, latency};
    }
    s.next = (s.next + 1) % kMaxSamples;
    if (fault) {
      ++s.consecutive_failures;
    } else if (outcome.ok()) {
      s.consecutive_failures = 0;
    }
  };
  for (const std::string& name : {"p:" + std::string(provider), "k:" + std::string(key_uri)}) {
    {
      // The usual case: the series exists; the shared lock keeps it alive.
      std::shared_lock lock(mu_);
      auto it = series_.find(name);
      if (it != series_.end()) {
        update(*it->second);
        continue;
      }
    }
    std::unique_lock lock(mu_);
    if (series_.size() >= kMaxSeries && !series_.count(name)) series_.clear();
    auto& slot = series_[name];
    if (!slot) slot = std::make_unique<Series>();
    update(*slot);
  }
}

int64_t BackendHealthTracker::ConsecutiveFailures(std::string_view key_uri) const {
  std::shared_lock lock(mu_);
  auto it = series_.find("k:" + std::string(key_uri));
  if (it == series_.end()) return 0;
  std::lock_guard s_lock(it->second->mu);
  return it->second->consecutive_failures;
}

LatencyStats BackendHealthTracker::Stats(const std::string& name) const {
  std::vector<std::chrono::microseconds> recent;
  const TimePoint cutoff = clock_.Now() - latency_window_;
  {
    std::shared_lock lock(mu_);
    auto it = series_.find(name);
    if (it == series_.end()) return {};
    std::lock_guard s_lock(it->second->mu);
    for (const auto& [at, latency] : it->second->ring) {
      if (at >= cutoff) recent.push_back(latency);
    }
  }
  LatencyStats out;
  out.samples = static_cast<int64_t>(recent.size());
  if (recent.empty()) return out;
  // Nearest-rank p99: the smallest sample with at least 99% at or below it.
  const size_t rank = (recent.size() * 99 + 99) / 100;
  std::nth_element(recent.begin(), recent.begin() + static_cast<std::ptrdiff_t>(rank - 1),
                   recent.end());
  out.p99 = recent[rank - 1];
  out.max = *std::max_element(recent.begin(), recent.end());
  return out;
}

LatencyStats BackendHealthTracker::ProviderLatency(std::string_view provider) const {
  return Stats("p:" + std::string(provider));
}

LatencyStats BackendHealthTracker::KeyLatency(std::string_view key_uri) const {
  return Stats("k:" + std::string(key_uri));
}

std::vector<std::string> BackendHealthTracker::Providers() const {
  std::vector<std::string> out;
  std::shared_lock lock(mu_);
  for (const auto& [name, s] : series_) {
    if (name.rfind("p:", 0) == 0) out.push_back(name.substr(2));
  }
  return out;
}

}  // namespace concierge::core
