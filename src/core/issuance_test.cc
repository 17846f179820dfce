#include "core/issuance.h"

#include <gtest/gtest.h>

namespace concierge::core {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

const TimePoint kStart = TimePoint(seconds(1'800'000'000));

TEST(IssuanceLimiterTest, CapRefusesTheNextSignatureAndSaysWhenToRetry) {
  IssuanceLimiter l;
  FakeClock clock(kStart);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(l.Reserve("t-1", 5, 0, 1, clock.Now()).ok());
  Status refused = l.Reserve("t-1", 5, 0, 1, clock.Now());
  EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(refused.details().at("retry_after_seconds"), std::to_string(24 * 3600));
  EXPECT_EQ(l.CountInWindow("t-1", clock.Now()), 5);
  // Other tenants are not affected.
  EXPECT_TRUE(l.Reserve("t-2", 5, 0, 1, clock.Now()).ok());
  // Still refused just before the window slides past the first minute...
  clock.Advance(hours(24) - minutes(1));
  EXPECT_FALSE(l.Reserve("t-1", 5, 0, 1, clock.Now()).ok());
  // ...and allowed once it has.
  clock.Advance(minutes(1));
  EXPECT_TRUE(l.Reserve("t-1", 5, 0, 1, clock.Now()).ok());
}

TEST(IssuanceLimiterTest, BatchIsAllOrNothing) {
  IssuanceLimiter l;
  ASSERT_TRUE(l.Reserve("t-1", 10, 0, 8, kStart).ok());
  EXPECT_FALSE(l.Reserve("t-1", 10, 0, 3, kStart).ok());
  EXPECT_EQ(l.CountInWindow("t-1", kStart), 8);
  EXPECT_TRUE(l.Reserve("t-1", 10, 0, 2, kStart).ok());
}

TEST(IssuanceLimiterTest, ReleaseGivesBackAFailedReservation) {
  IssuanceLimiter l;
  ASSERT_TRUE(l.Reserve("t-1", 1, 0, 1, kStart).ok());
  l.Release("t-1", 1, kStart);
  EXPECT_EQ(l.CountInWindow("t-1", kStart), 0);
  EXPECT_TRUE(l.Reserve("t-1", 1, 0, 1, kStart).ok());
}

TEST(IssuanceLimiterTest, LoadRebuildsWindowFromLedgerCounts) {
  IssuanceLimiter l;
  int64_t now_minute = std::chrono::duration_cast<minutes>(kStart.time_since_epoch()).count();
  l.Load({{"t-1", now_minute - 10, 3}, {"t-1", now_minute - 2000, 50} /* outside 24h */});
  EXPECT_EQ(l.CountInWindow("t-1", kStart), 3);
  EXPECT_FALSE(l.Reserve("t-1", 3, 0, 1, kStart).ok());
}

TEST(IssuanceLimiterTest, TokenBucketRateLimit) {
  IssuanceLimiter l;
  FakeClock clock(kStart);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(l.Reserve("t-1", 0, 4, 1, clock.Now()).ok());
  Status refused = l.Reserve("t-1", 0, 4, 1, clock.Now());
  EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(refused.details().at("retry_after_seconds"), "1");
  EXPECT_EQ(refused.details().at("limit"), "rate_limit_per_second");
  clock.Advance(std::chrono::milliseconds(250));  // refills one token
  EXPECT_TRUE(l.Reserve("t-1", 0, 4, 1, clock.Now()).ok());
  EXPECT_FALSE(l.Reserve("t-1", 0, 4, 1, clock.Now()).ok());
}

}  // namespace
}  // namespace concierge::core
