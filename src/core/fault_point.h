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

namespace concierge::core {

inline constexpr int kFaultExitCode = 86;
inline constexpr char kFaultPointEnv[] = "KEYCTL_FAULT_POINT";

void FaultPoint(std::string_view name);

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_FAULT_POINT_H_
