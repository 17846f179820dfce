#include "core/leadership.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace concierge::core {
namespace {

// The election is a poll function; here the test decides what it returns.
struct Election {
  bool held = false;
  std::vector<std::string> events;
  Leadership* leadership = nullptr;

  LeadershipHooks Hooks() {
    LeadershipHooks h;
    h.on_gain = [this] {
      // Recovery runs before the instance reports itself leader.
      events.push_back(leadership->is_leader() ? "gain(leader)" : "gain");
    };
    h.on_loss = [this] {
      // Gates see the loss before the workers are stopped.
      events.push_back(leadership->is_leader() ? "loss(leader)" : "loss");
    };
    h.while_leader = [this] { events.push_back("work"); };
    h.on_change = [this](bool leader) { events.push_back(leader ? "+" : "-"); };
    return h;
  }
};

TEST(LeadershipTest, GainWorkAndLossFollowThePoll) {
  Election e;
  Leadership l([&e] { return e.held; }, e.Hooks());
  e.leadership = &l;
  EXPECT_TRUE(l.elected());
  EXPECT_FALSE(l.is_leader());
  EXPECT_FALSE(l.Tick());
  EXPECT_TRUE(e.events.empty());
  e.held = true;
  EXPECT_TRUE(l.Tick());
  EXPECT_TRUE(l.Tick());
  EXPECT_EQ(l.terms(), 1u);
  e.held = false;
  EXPECT_FALSE(l.Tick());
  EXPECT_EQ(e.events, (std::vector<std::string>{"+", "gain", "work", "work", "-", "loss"}));
  e.held = true;
  EXPECT_TRUE(l.Tick());
  EXPECT_EQ(l.terms(), 2u);
  // Stopping as leader stops the leader's work too.
  e.events.clear();
  l.Stop();
  EXPECT_FALSE(l.is_leader());
  EXPECT_EQ(e.events, (std::vector<std::string>{"loss"}));
}

TEST(LeadershipTest, WithoutAnElectionTheInstanceIsAlwaysLeader) {
  int work = 0;
  bool hooks_ran = false;
  LeadershipHooks h;
  h.on_gain = [&] { hooks_ran = true; };
  h.on_loss = [&] { hooks_ran = true; };
  h.while_leader = [&] { ++work; };
  Leadership l(nullptr, h);
  EXPECT_FALSE(l.elected());
  EXPECT_TRUE(l.is_leader());
  EXPECT_TRUE(l.Tick());
  l.Stop();
  EXPECT_TRUE(l.is_leader());
  EXPECT_FALSE(hooks_ran);
  EXPECT_EQ(work, 1);
}

}  // namespace
}  // namespace concierge::core
