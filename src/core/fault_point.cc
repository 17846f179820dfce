#include "core/fault_point.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace concierge::core {

void FaultPoint(std::string_view name) {
  static const std::string armed = [] {
    const char* v = std::getenv(kFaultPointEnv);
    return std::string(v != nullptr ? v : "");
  }();
  if (armed.empty() || armed != name) return;
  std::fprintf(stderr, "keyctl: fault point %s reached (%s); exiting\n", armed.c_str(), kFaultPointEnv);
  std::fflush(stderr);
  _exit(kFaultExitCode);
}

}  // namespace concierge::core
