// Fault injection for crash tests: a named point in the code where the process
// can be made to die, to prove that what was persisted before it is enough to
// recover.
//
// TEST HOOK. Inert unless the environment variable KEYCTL_FAULT_POINT names the
// point exactly (e.g. "rotation.canary.before"); then the process logs one line
// to stderr and calls _exit(kFaultExitCode) - no destructors, no flushing, as
// close to a power cut as a test can get. The variable is read once, at the
// first call. Never set it in production. Thread-safe.
#ifndef CONCIERGE_CORE_FAULT_POINT_H_
#define CONCIERGE_CORE_FAULT_POINT_H_

#include <string_view>

#include "concierge/status.h"

namespace concierge::core {

inline constexpr int kFaultExitCode = 86;
inline constexpr char kFaultPointEnv[] = "KEYCTL_FAULT_POINT";

void FaultPoint(std::string_view name);

// TEST HOOK, in-process: the "backend.sign" fault. While armed with `match`,
// every signing call of ObservedBackend whose provider or key URI equals
// `match` fails with kUnavailable before reaching the backend, as a dead HSM
// or an unreachable KMS would; Disarm restores it. Tests of backend failover
// arm it around requests to a real server in the same process. Costs one
// relaxed atomic load per signature when disarmed. Thread-safe.
inline constexpr char kBackendSignFault[] = "backend.sign";
void ArmBackendSignFault(std::string_view match);
void DisarmBackendSignFault();
// kUnavailable when the fault is armed for this provider or key URI.
Status BackendSignFault(std::string_view provider, std::string_view key_uri);

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_FAULT_POINT_H_
