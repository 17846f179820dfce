#include "crypto/openssl_util.h"

#include <openssl/err.h>

#include <string>

namespace concierge::crypto {

Status OpenSslError(std::string_view context, StatusCode code) {
  // Only the first (oldest) error names the root cause; the rest are drained so
  // a stale queue never leaks into the next, unrelated failure on this thread.
  unsigned long first = ERR_get_error();
  while (ERR_get_error() != 0) {
  }
  std::string message(context);
  if (first != 0) {
    const char* reason = ERR_reason_error_string(first);
    if (reason != nullptr) {
      message += ": ";
      message += reason;
    } else {
      char buf[256];
      ERR_error_string_n(first, buf, sizeof buf);
      message += ": ";
      message += buf;
    }
  }
  return Status(code, std::move(message));
}

}  // namespace concierge::crypto
