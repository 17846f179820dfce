#include "concierge/ledger.h"

namespace concierge {
namespace {
// The marker IsKeyFenced looks for in the message (Annotate only prepends,
// so an annotated status is still recognised).
constexpr std::string_view kFencePrefix = "ledger fence: ";
}  // namespace

Status KeyFencedError(const std::string& key_id, const std::string& state) {
  return AbortedError(std::string(kFencePrefix) + "key '" + key_id + "' is " + state +
                      " and may no longer sign (another instance changed it); sign again with the current key");
}

bool IsKeyFenced(const Status& status) {
  return status.code() == StatusCode::kAborted && status.message().find(kFencePrefix) != std::string::npos;
}

}  // namespace concierge
