#include <gtest/gtest.h>

#include "concierge/algorithm.h"
#include "concierge/clock.h"
#include "concierge/secret.h"
#include "concierge/status.h"

namespace concierge {
namespace {

StatusOr<int> Half(int x) {
  if (x % 2) return InvalidArgumentError("odd");
  return x / 2;
}

StatusOr<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int h, Half(x));
  ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

TEST(StatusTest, AssignOrReturnPropagatesFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  auto bad = Quarter(6);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "odd");
}

TEST(StatusTest, FieldErrorCarriesField) {
  Status s = FieldError("algorithm", "unknown algorithm 'ES999'");
  EXPECT_EQ(s.details().at("field"), "algorithm");
  EXPECT_EQ(s.Annotate("policy").message(), "policy: unknown algorithm 'ES999'");
  EXPECT_EQ(s.Annotate("policy").details().at("field"), "algorithm");
}

TEST(SecretBytesTest, MoveLeavesSourceEmpty) {
  SecretBytes a = SecretBytes::FromString("hunter2", SecretAccess::Grant());
  SecretBytes b = std::move(a);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): checking the wipe
  EXPECT_EQ(b.RevealString(SecretAccess::Grant()), "hunter2");
  EXPECT_TRUE(b.ConstantTimeEquals(b.Clone()));
  EXPECT_FALSE(b.ConstantTimeEquals(SecretBytes::FromString("hunter3", SecretAccess::Grant())));
}

TEST(ConstantTimeEqualsTest, DifferentLengthsAreUnequal) {
  EXPECT_TRUE(ConstantTimeEquals(std::string_view("abc"), std::string_view("abc")));
  EXPECT_FALSE(ConstantTimeEquals(std::string_view("abc"), std::string_view("abcd")));
  EXPECT_FALSE(ConstantTimeEquals(std::string_view("abc"), std::string_view("abd")));
}

TEST(ClockTest, Rfc3339RoundTrip) {
  TimePoint t;
  ASSERT_TRUE(ParseRfc3339("2026-11-23T10:15:00.123Z", &t));
  EXPECT_EQ(FormatRfc3339(t), "2026-11-23T10:15:00.123Z");
  ASSERT_TRUE(ParseRfc3339("2026-11-23T12:15:00+02:00", &t));
  EXPECT_EQ(FormatRfc3339(t), "2026-11-23T10:15:00.000Z");
  EXPECT_FALSE(ParseRfc3339("2026-11-23 10:15:00Z", &t));
  EXPECT_FALSE(ParseRfc3339("2026-13-23T10:15:00Z", &t));
  EXPECT_FALSE(ParseRfc3339("2026-11-23T10:15:00", &t));
}

TEST(FakeClockTest, AdvancesOnlyWhenTold) {
  FakeClock clock(TimePoint(std::chrono::seconds(1000)));
  EXPECT_EQ(clock.Now(), TimePoint(std::chrono::seconds(1000)));
  clock.Advance(std::chrono::hours(24));
  EXPECT_EQ(clock.Now(), TimePoint(std::chrono::seconds(1000 + 86400)));
}

TEST(AlgorithmTest, ParseAndSizes) {
  EXPECT_EQ(ParseAlgorithm("es256"), Algorithm::kES256);
  EXPECT_EQ(ParseAlgorithm("ED25519"), Algorithm::kEd25519);
  EXPECT_FALSE(ParseAlgorithm("ES999").has_value());
  EXPECT_EQ(DigestSize(Algorithm::kES384), 48u);
  EXPECT_TRUE(DigestSizeAccepted(Algorithm::kEd25519, 32));
  EXPECT_FALSE(DigestSizeAccepted(Algorithm::kES256, 48));
  EXPECT_EQ(EcdsaFieldBytes(Algorithm::kES512), 66u);
  EXPECT_EQ(CoseAlgorithmId(Algorithm::kPS256), -37);
}

}  // namespace
}  // namespace concierge
