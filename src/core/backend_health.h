// BackendHealthTracker: what the signing path has seen of each backend and of
// each key in it, for the backend-latency detector (core/incident_detectors.h)
// and for tenant failover (core/failover.h).
//
// Per key URI it keeps the run of consecutive backend faults (a success ends
// the run); per key URI and per provider it keeps the latencies of the last
// kMaxSamples signing calls with their times, from which LatencyStats gives
// the p99 over the configured window by the injected clock. Only backend
// faults count (kUnavailable, kInternal, kDataLoss, kDeadlineExceeded,
// kUnknown): a refused request says nothing about the backend.
//
// Recording is cheap (a shared lock on the series map plus one small lock per
// series); statistics are computed on demand, off the request path. Tests feed
// latencies directly with Record, no sleeping. Thread-safe.
#ifndef CONCIERGE_CORE_BACKEND_HEALTH_H_
#define CONCIERGE_CORE_BACKEND_HEALTH_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "concierge/clock.h"
#include "concierge/status.h"

namespace concierge::core {

// Backend failures that say something about the backend (not about the request).
bool IsBackendFault(StatusCode code);

struct LatencyStats {
  int64_t samples = 0;  // within the window
  std::chrono::microseconds p99{0};
  std::chrono::microseconds max{0};
};

class BackendHealthTracker {
 public:
  static constexpr size_t kMaxSamples = 1024;
  // Bounds memory if keys come and go for a long time: series beyond this are
  // dropped wholesale (the next calls start them again).
  static constexpr size_t kMaxSeries = 10000;

  BackendHealthTracker(Clock& clock, std::chrono::seconds latency_window)
      : clock_(clock), latency_window_(latency_window) {}

  // One signing call's outcome and how long the backend took.
  void Record(std::string_view provider, std::string_view key_uri, const Status& outcome,
              std::chrono::microseconds latency);

  // Backend faults in a row on this key since its last success.
  int64_t ConsecutiveFailures(std::string_view key_uri) const;
  // Latency over the window of a provider ("pkcs11") or of one key URI.
  LatencyStats ProviderLatency(std::string_view provider) const;
  LatencyStats KeyLatency(std::string_view key_uri) const;
  // Providers seen so far, for the periodic latency check.
  std::vector<std::string> Providers() const;

  std::chrono::seconds latency_window() const { return latency_window_; }

 private:
  struct Series {
    mutable std::mutex mu;
    std::vector<std::pair<TimePoint, std::chrono::microseconds>> ring;  // kMaxSamples, by next
    size_t next = 0;
    int64_t consecutive_failures = 0;
  };
  using SeriesMap = std::map<std::string, std::unique_ptr<Series>, std::less<>>;
  // Adds the sample to `map[name]`, creating the series on first use.
  void Add(SeriesMap& map, std::string_view name, TimePoint at, std::chrono::microseconds latency, bool ok,
           bool fault);
  LatencyStats Stats(const SeriesMap& map, std::string_view name) const;

  Clock& clock_;
  const std::chrono::seconds latency_window_;
  mutable std::shared_mutex mu_;  // guards the maps' structure; each series has its own lock
  SeriesMap providers_;
  SeriesMap keys_;  // by key URI
};

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_BACKEND_HEALTH_H_
