// Key lifecycle: the one table of which key state may follow which.
//
//   pending  --cutover-->  active  --cutover-->  retiring  --grace ends-->  retired
//      |                     |  ^                   |  |                       |
//      |                     |  +----rollback-------+  |                       |
//      |                     +--rollback--> retired    |                       |
//      +--> destroyed (aborted rotation)               |                       |
//   pending/active/retiring/retired/disabled --> compromised --> destroyed     |
//   pending/active/retiring --> disabled (tenant deleted)       retired --> destroyed
//   pending --> standby --promotion--> active
//   standby --> retired / compromised / destroyed / disabled
//
// "active" signs; "standby" is a tenant's failover key in a secondary backend
// (core/failover.h): it signs only while the tenant is failed over, and stays
// "standby" while it does (failover is a routing decision, not a state
// change), so the primary takes over again by itself on failback.
// "retiring" and "retired" only verify (old signatures stay verifiable);
// "compromised" verifies but is flagged; "destroyed" is gone from
// its backend; "disabled" belongs to a deleted tenant. Every state change made
// by core goes through CheckKeyTransition, so a forbidden move (say, destroyed
// -> active) is refused in one place. Pure functions; thread-safe.
#ifndef CONCIERGE_CORE_KEY_STATE_H_
#define CONCIERGE_CORE_KEY_STATE_H_

#include <string>
#include <string_view>
#include <vector>

#include "concierge/status.h"

namespace concierge::core {

// Every state name, in lifecycle order.
const std::vector<std::string_view>& KeyStates();

bool KeyTransitionAllowed(std::string_view from, std::string_view to);

// Whether a key in `state` may produce new signatures: "active", and
// "standby" (a failover secondary key). The PostgreSQL ledger's commit fence
// (store/postgres/postgres_ledger.cc, kSigningKeyStatesSql) checks the same
// list in SQL; key_state_test keeps the two in step.
bool MaySign(std::string_view state);

// FailedPrecondition naming the key and both states when the move is not in
// the table (InvalidArgument naming "state" for an unknown state name).
Status CheckKeyTransition(const std::string& key_id, std::string_view from, std::string_view to);

// The states an operator may move a key to by hand (PUT .../keys/{id}/state):
// the ones the rotation engine does not own.
bool ManualKeyTransitionAllowed(std::string_view from, std::string_view to);

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_KEY_STATE_H_
