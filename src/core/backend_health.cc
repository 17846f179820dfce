#include "core/backend_health.h"

#include <algorithm>

namespace concierge::core {

bool IsBackendFault(StatusCode code) {
  return code == StatusCode::kUnavailable || code == StatusCode::kInternal ||
         code == StatusCode::kDataLoss || code == StatusCode::kDeadlineExceeded ||
         code == StatusCode::kUnknown;
}

void BackendHealthTracker::Add(SeriesMap& map, std::string_view name, TimePoint at,
                               std::chrono::microseconds latency, bool ok, bool fault) {
  auto update = [&](Series& series) {
    std::lock_guard lock(series.mu);
    if (series.ring.size() < kMaxSamples) {
      series.ring.emplace_back(at, latency);
    } else {
      series.ring[series.next] = {at, latency};
    }
    series.next = (series.next + 1) % kMaxSamples;
    if (fault) {
      ++series.consecutive_failures;
    } else if (ok) {
      series.consecutive_failures = 0;
    }
  };
  {
    // The usual case: the series exists; the shared lock keeps it alive.
    std::shared_lock lock(mu_);
    auto it = map.find(name);
    if (it != map.end()) {
      update(*it->second);
      return;
    }
  }
  std::unique_lock lock(mu_);
  if (map.size() >= kMaxSeries && map.find(name) == map.end()) map.clear();
  auto it = map.find(name);
  if (it == map.end()) it = map.emplace(std::string(name), std::make_unique<Series>()).first;
  update(*it->second);
}

void BackendHealthTracker::Record(std::string_view provider, std::string_view key_uri, const Status& outcome,
                                  std::chrono::microseconds latency) {
  const TimePoint now = clock_.Now();
  const bool fault = !outcome.ok() && IsBackendFault(outcome.code());
  Add(providers_, provider, now, latency, outcome.ok(), fault);
  Add(keys_, key_uri, now, latency, outcome.ok(), fault);
}

int64_t BackendHealthTracker::ConsecutiveFailures(std::string_view key_uri) const {
  std::shared_lock lock(mu_);
  auto it = keys_.find(key_uri);
  if (it == keys_.end()) return 0;
  std::lock_guard series_lock(it->second->mu);
  return it->second->consecutive_failures;
}

LatencyStats BackendHealthTracker::Stats(const SeriesMap& map, std::string_view name) const {
  std::vector<std::chrono::microseconds> recent;
  const TimePoint cutoff = clock_.Now() - latency_window_;
  {
    std::shared_lock lock(mu_);
    auto it = map.find(name);
    if (it == map.end()) return {};
    std::lock_guard series_lock(it->second->mu);
    for (const auto& [at, latency] : it->second->ring) {
      if (at >= cutoff) recent.push_back(latency);
    }
  }
  LatencyStats out;
  out.samples = static_cast<int64_t>(recent.size());
  if (recent.empty()) return out;
  // Nearest-rank p99: the smallest sample with at least 99% at or below it.
  const size_t rank = (recent.size() * 99 + 99) / 100;
  std::nth_element(recent.begin(), recent.begin() + static_cast<std::ptrdiff_t>(rank - 1), recent.end());
  out.p99 = recent[rank - 1];
  out.max = *std::max_element(recent.begin(), recent.end());
  return out;
}

LatencyStats BackendHealthTracker::ProviderLatency(std::string_view provider) const {
  return Stats(providers_, provider);
}

LatencyStats BackendHealthTracker::KeyLatency(std::string_view key_uri) const { return Stats(keys_, key_uri); }

std::vector<std::string> BackendHealthTracker::Providers() const {
  std::vector<std::string> out;
  std::shared_lock lock(mu_);
  for (const auto& [name, series] : providers_) out.push_back(name);
  return out;
}

}  // namespace concierge::core
