#include "core/key_state.h"

#include <algorithm>
#include <array>
#include <utility>

namespace concierge::core {
namespace {

using Edge = std::pair<std::string_view, std::string_view>;

constexpr std::array<Edge, 24> kTransitions = {{
    {"pending", "active"},        // cutover
    {"pending", "destroyed"},     // rotation aborted before cutover
    {"pending", "compromised"},
    {"pending", "disabled"},      // tenant deleted
    {"pending", "standby"},       // a standby key provisioned in two steps
    {"standby", "active"},        // promotion: an operator makes the standby the primary
    {"standby", "retired"},       // replaced by a newer standby, or failover removed from the policy
    {"standby", "compromised"},
    {"standby", "destroyed"},
    {"standby", "disabled"},      // tenant deleted
    {"active", "retiring"},       // cutover: the old key verifies during the grace period
    {"active", "retired"},        // rollback: the new key is withdrawn
    {"active", "compromised"},
    {"active", "disabled"},
    {"retiring", "active"},       // rollback: the old key comes back
    {"retiring", "retired"},      // grace period over
    {"retiring", "compromised"},
    {"retiring", "disabled"},
    {"retired", "compromised"},
    {"retired", "destroyed"},
    {"compromised", "destroyed"},
    {"disabled", "compromised"},
    {"disabled", "destroyed"},
    {"disabled", "retired"},
}};

// Moves an operator may make by hand: none of them puts a key into service or
// takes the active key out of service without a replacement except
// "compromised" (an emergency stop is the operator's call).
constexpr std::array<std::string_view, 3> kManualTargets = {"retired", "compromised", "destroyed"};

}  // namespace

bool MaySign(std::string_view state) { return state == "active" || state == "standby"; }

const std::vector<std::string_view>& KeyStates() {
  static const std::vector<std::string_view> kStates = {"pending", "standby",     "active",    "retiring",
                                                        "retired", "compromised", "destroyed", "disabled"};
  return kStates;
}

bool KeyTransitionAllowed(std::string_view from, std::string_view to) {
  return std::find(kTransitions.begin(), kTransitions.end(), Edge{from, to}) != kTransitions.end();
}

Status CheckKeyTransition(const std::string& key_id, std::string_view from, std::string_view to) {
  const auto& states = KeyStates();
  if (std::find(states.begin(), states.end(), to) == states.end()) {
    return FieldError("state", "unknown key state '" + std::string(to.substr(0, 32)) + "'");
  }
  if (!KeyTransitionAllowed(from, to)) {
    return FailedPreconditionError("key '" + key_id + "' cannot go from " + std::string(from) + " to " +
                                   std::string(to));
  }
  return Status::Ok();
}

bool ManualKeyTransitionAllowed(std::string_view from, std::string_view to) {
  if (std::find(kManualTargets.begin(), kManualTargets.end(), to) == kManualTargets.end()) return false;
  // The active key retires only through a rotation (which brings a successor).
  if (from == "active" && to == "retired") return false;
  return KeyTransitionAllowed(from, to);
}

}  // namespace concierge::core
