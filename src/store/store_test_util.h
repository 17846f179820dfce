// Assertions and a time helper shared by the store and ledger conformance
// suites (store_test_suite.h, ledger_test_suite.h) and the engine-specific
// store tests. Header-only, for test binaries.
#ifndef CONCIERGE_STORE_STORE_TEST_UTIL_H_
#define CONCIERGE_STORE_STORE_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>

#include "concierge/clock.h"
#include "concierge/status.h"

namespace concierge::store::conformance {

inline ::testing::AssertionResult IsOk(const Status& s) {
  if (s.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << s.ToString();
}

inline ::testing::AssertionResult HasCode(const Status& s, StatusCode code) {
  if (s.code() == code) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "expected " << StatusCodeName(code) << ", got " << s.ToString();
}

// Whole milliseconds, since stores keep millisecond precision.
inline TimePoint T(int64_t ms) {
  return TimePoint(std::chrono::milliseconds(1'760'000'000'000 + ms));
}

}  // namespace concierge::store::conformance

#endif  // CONCIERGE_STORE_STORE_TEST_UTIL_H_
