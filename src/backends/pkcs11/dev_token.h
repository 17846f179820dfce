// SoftHSM2 helpers: token initialisation (used by tests and the dev token) and
// the development token `keyctl serve` creates in its data dir when no PKCS#11
// module is configured, so the HSM path can be tried at once.
//
// SoftHSM reads SOFTHSM2_CONF once, at C_Initialize, and a module can be
// initialised only once per process: EnsureSoftHsmDevToken sets SOFTHSM2_CONF
// for this process before loading the module, and fails (kFailedPrecondition)
// if SoftHSM is already loaded with another configuration. Not thread-safe
// with respect to other code reading the environment during the call.
#ifndef CONCIERGE_BACKENDS_PKCS11_DEV_TOKEN_H_
#define CONCIERGE_BACKENDS_PKCS11_DEV_TOKEN_H_

#include <memory>
#include <string>
#include <string_view>

#include "concierge/secret.h"
#include "concierge/status.h"

namespace concierge::backends::pkcs11 {

class Pkcs11Api;

inline constexpr char kSoftHsmModulePath[] = "/usr/lib/softhsm/libsofthsm2.so";
inline constexpr char kDevTokenLabel[] = "keyctl-dev";

struct DevToken {
  std::string module_path;
  std::string conf_path;      // <data_dir>/softhsm2.conf
  std::string token_label;    // "keyctl-dev"
  std::string user_pin_file;  // <data_dir>/softhsm/user-pin (0600)
  std::string so_pin_file;    // <data_dir>/softhsm/so-pin (0600)
  // pkcs11:token=keyctl-dev?module-path=...&pin-source=<user_pin_file>
  std::string key_uri;
  bool created = false;  // this call initialised the token
  // Keeps the module loaded (and initialised) until the backend takes it over.
  std::shared_ptr<Pkcs11Api> module;
};

bool SoftHsmAvailable(const std::string& module_path = kSoftHsmModulePath);

// Idempotent: on later starts finds the existing token and PIN files.
StatusOr<DevToken> EnsureSoftHsmDevToken(const std::string& data_dir,
                                         const std::string& module_path = kSoftHsmModulePath);

// Writes a SoftHSM2 config with tokendir = `token_dir` (file object store).
Status WriteSoftHsmConfig(const std::string& conf_path, const std::string& token_dir);

// Initialises a token labelled `label` in a slot without an initialised token
// (SoftHSM always offers one) and sets its user PIN. kAlreadyExists when a
// token with that label exists; kResourceExhausted when no free slot.
Status InitSoftHsmToken(Pkcs11Api& api, std::string_view label, const SecretBytes& so_pin,
                        const SecretBytes& user_pin);

}  // namespace concierge::backends::pkcs11

#endif  // CONCIERGE_BACKENDS_PKCS11_DEV_TOKEN_H_
