#include "core/fault_point.h"

#include <unistd.h>

#include <cstdio>
#include <atomic>
#include <cstdlib>
#include <mutex>
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

namespace {

std::atomic<bool> sign_fault_armed{false};
std::mutex sign_fault_mu;
std::string sign_fault_match;  // guarded by sign_fault_mu

}  // namespace

void ArmBackendSignFault(std::string_view match) {
  std::lock_guard lock(sign_fault_mu);
  sign_fault_match = std::string(match);
  sign_fault_armed.store(true);
}

void DisarmBackendSignFault() {
  std::lock_guard lock(sign_fault_mu);
  sign_fault_armed.store(false);
  sign_fault_match.clear();
}

Status BackendSignFault(std::string_view provider, std::string_view key_uri) {
  if (!sign_fault_armed.load(std::memory_order_relaxed)) return Status::Ok();
  std::lock_guard lock(sign_fault_mu);
  if (sign_fault_match.empty() || (sign_fault_match != provider && sign_fault_match != key_uri)) return Status::Ok();
  return UnavailableError("backend '" + std::string(provider) + "' is not answering (test fault " +
                          kBackendSignFault + ")");
}

}  // namespace concierge::core
