// Clock: injectable source of wall time, so schedules and windows are testable
// without sleeping. Implementations must be thread-safe.
#ifndef CONCIERGE_CLOCK_H_
#define CONCIERGE_CLOCK_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

namespace concierge {

using TimePoint = std::chrono::system_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
};

// The system clock. Returns a process-wide instance; never destroyed.
Clock& RealClock();

// A clock that only moves when told to. Thread-safe.
class FakeClock : public Clock {
 public:
  explicit FakeClock(TimePoint start) : now_ns_(start.time_since_epoch().count()) {}
  TimePoint Now() const override { return TimePoint(TimePoint::duration(now_ns_.load())); }
  void Advance(std::chrono::nanoseconds d) {
    now_ns_ += std::chrono::duration_cast<TimePoint::duration>(d).count();
  }
  void Set(TimePoint t) { now_ns_ = t.time_since_epoch().count(); }

 private:
  std::atomic<TimePoint::rep> now_ns_;
};

// RFC 3339 UTC with millisecond precision: "2026-11-23T10:15:00.123Z".
std::string FormatRfc3339(TimePoint t);
// Parses RFC 3339 ("Z" or +hh:mm offsets, optional fraction). Returns false on error.
bool ParseRfc3339(const std::string& s, TimePoint* out);

}  // namespace concierge

#endif  // CONCIERGE_CLOCK_H_
