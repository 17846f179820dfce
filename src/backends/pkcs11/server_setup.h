// Builds the PKCS#11 backends `keyctl serve` registers, from server settings:
//   - provider "pkcs11" on the configured module, or, when none is configured
//     and SoftHSM2 is installed, on a development token in the data dir;
//   - provider "yubihsm2" when a YubiHSM2 module is configured.
// Kept here so app.cc needs one call and no PKCS#11 headers.
#ifndef CONCIERGE_BACKENDS_PKCS11_SERVER_SETUP_H_
#define CONCIERGE_BACKENDS_PKCS11_SERVER_SETUP_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "concierge/key_backend.h"
#include "concierge/secret.h"

namespace concierge::backends::pkcs11 {

struct Pkcs11ServerSettings {
  std::string data_dir;
  std::string module;           // "" = dev token if SoftHSM2 present; "none" = off
  std::string allowed_modules;  // comma-separated
  int sessions = 0;             // 0 = io_threads
  int io_threads = 0;
  std::string yubihsm2_module;
  const std::optional<SecretBytes>* pin = nullptr;  // KEYCTL_PKCS11_PIN
};

struct Pkcs11Setup {
  std::vector<std::unique_ptr<KeyBackend>> backends;
  // Operator-facing notes: {warning?, message}. Never contain a PIN.
  std::vector<std::pair<bool, std::string>> notes;
};

// Errors for an explicitly configured module are fatal (returned); problems with
// the optional development token only produce a warning note.
StatusOr<Pkcs11Setup> CreatePkcs11Backends(const Pkcs11ServerSettings& settings);

}  // namespace concierge::backends::pkcs11

#endif  // CONCIERGE_BACKENDS_PKCS11_SERVER_SETUP_H_
