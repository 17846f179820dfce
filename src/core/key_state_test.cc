#include "core/key_state.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <utility>

namespace concierge::core {
namespace {

TEST(KeyStateTest, TheLifecycleTableIsExactlyThis) {
  const std::set<std::pair<std::string, std::string>> allowed = {
      {"pending", "active"},      {"pending", "destroyed"},   {"pending", "compromised"}, {"pending", "disabled"},
      {"active", "retiring"},     {"active", "retired"},      {"active", "compromised"},  {"active", "disabled"},
      {"retiring", "active"},     {"retiring", "retired"},    {"retiring", "compromised"}, {"retiring", "disabled"},
      {"retired", "compromised"}, {"retired", "destroyed"},   {"compromised", "destroyed"},
      {"disabled", "compromised"}, {"disabled", "destroyed"}, {"disabled", "retired"},
      {"pending", "standby"},     {"standby", "active"},      {"standby", "retired"},     {"standby", "compromised"},
      {"standby", "destroyed"},   {"standby", "disabled"},
  };
  for (std::string_view from : KeyStates()) {
    for (std::string_view to : KeyStates()) {
      bool want = allowed.count({std::string(from), std::string(to)}) > 0;
      EXPECT_EQ(KeyTransitionAllowed(from, to), want) << from << " -> " << to;
      EXPECT_EQ(CheckKeyTransition("k", from, to).ok(), want) << from << " -> " << to;
    }
  }
}

TEST(KeyStateTest, DestroyedIsFinalAndNothingReturnsToPending) {
  for (std::string_view to : KeyStates()) {
    EXPECT_FALSE(KeyTransitionAllowed("destroyed", to)) << to;
    EXPECT_FALSE(KeyTransitionAllowed(to, "pending")) << to;
  }
  // Compromised keys never sign again.
  EXPECT_FALSE(KeyTransitionAllowed("compromised", "active"));
  EXPECT_FALSE(KeyTransitionAllowed("retired", "active"));
  // A standby key only enters service by promotion; nothing else becomes a standby.
  for (std::string_view from : KeyStates()) {
    EXPECT_EQ(KeyTransitionAllowed(from, "standby"), from == "pending") << from;
  }
  EXPECT_FALSE(KeyTransitionAllowed("active", "standby"));
  EXPECT_TRUE(ManualKeyTransitionAllowed("standby", "retired"));
  EXPECT_FALSE(ManualKeyTransitionAllowed("standby", "active"));
}

TEST(KeyStateTest, RefusalsNameTheKeyAndBothStates) {
  Status st = CheckKeyTransition("acme-v1", "destroyed", "active");
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("acme-v1"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("from destroyed to active"), std::string::npos) << st.message();
  Status unknown = CheckKeyTransition("acme-v1", "active", "melted");
  EXPECT_EQ(unknown.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(unknown.details().at("field"), "state");
}

TEST(KeyStateTest, OperatorsMayOnlyRetireCompromiseOrDestroy) {
  EXPECT_TRUE(ManualKeyTransitionAllowed("retiring", "retired"));
  EXPECT_TRUE(ManualKeyTransitionAllowed("active", "compromised"));
  EXPECT_TRUE(ManualKeyTransitionAllowed("retired", "destroyed"));
  EXPECT_TRUE(ManualKeyTransitionAllowed("compromised", "destroyed"));
  // The rotation engine's moves.
  EXPECT_FALSE(ManualKeyTransitionAllowed("pending", "active"));
  EXPECT_FALSE(ManualKeyTransitionAllowed("active", "retiring"));
  EXPECT_FALSE(ManualKeyTransitionAllowed("retiring", "active"));
  EXPECT_FALSE(ManualKeyTransitionAllowed("active", "retired"));  // only with a successor
  // Allowed targets, but not from there.
  EXPECT_FALSE(ManualKeyTransitionAllowed("active", "destroyed"));
  EXPECT_FALSE(ManualKeyTransitionAllowed("destroyed", "compromised"));
}

TEST(KeyStateTest, OnlyActiveAndStandbyKeysMaySign) {
  EXPECT_TRUE(MaySign("active"));
  EXPECT_TRUE(MaySign("standby"));
  // Every other state, including the ones that still verify.
  for (std::string_view state : KeyStates()) {
    if (state != "active" && state != "standby") {
      EXPECT_FALSE(MaySign(state)) << state;
    }
  }
  EXPECT_FALSE(MaySign(""));
  EXPECT_FALSE(MaySign("Active"));
}

}  // namespace
}  // namespace concierge::core
