// Pkcs11Backend: keys generated and used inside a PKCS#11 token (SoftHSM2,
// YubiHSM2 via yubihsm_pkcs11, AWS CloudHSM, Thales Luna, ...). Private keys are
// created with CKA_SENSITIVE=true, CKA_EXTRACTABLE=false, CKA_TOKEN=true and never
// leave the token; signing hashes locally and uses CKM_ECDSA / CKM_RSA_PKCS_PSS /
// CKM_EDDSA on the digest.
//
// On SoftHSM2 signing uses an in-memory session copy of the key (C_CopyObject,
// CKA_TOKEN=false; see Token::sign_with_session_copy and docs/pkcs11.md).
//
// Keys are named by RFC 7512 URIs (see pkcs11_uri.h):
//   pkcs11:token=custody;object=acme-news/v3;id=%..;type=private?module-path=/usr/lib/...
// A generated key's URI never contains pin-value. PINs are resolved, per token,
// from: pin-source (file) > KEYCTL_PKCS11_PIN (options.env_pin) > pin-value of
// the policy URI (memory only: after a restart the token needs pin-source or the
// environment variable).
//
// Each token gets a pool of up to options.sessions sessions, logged in once.
// When a call fails because the session or device went away
// (CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_DEVICE_REMOVED,
// CKR_TOKEN_NOT_PRESENT, CKR_USER_NOT_LOGGED_IN, CKR_DEVICE_ERROR) the pool is
// dropped, re-opened, re-logged-in and the call retried once; if that fails too
// the token is marked unhealthy (Health()) and kUnavailable returned. The next
// successful call or health probe marks it healthy again.
//
// Thread-safe: SignDigest is called from every io thread at once.
#ifndef CONCIERGE_BACKENDS_PKCS11_PKCS11_BACKEND_H_
#define CONCIERGE_BACKENDS_PKCS11_PKCS11_BACKEND_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "concierge/key_backend.h"
#include "concierge/secret.h"

namespace concierge::backends::pkcs11 {

class Pkcs11Api;

struct Pkcs11BackendOptions {
  // "pkcs11", or "yubihsm2" for the YubiHSM2 profile (fetches attestation).
  std::string provider = "pkcs11";
  // Module used when a key URI has no module-path. May be empty if every URI
  // names its module.
  std::string module_path;
  // When non-empty, only these module paths may be loaded.
  std::vector<std::string> allowed_modules;
  // Sessions per token; 0 = std::thread::hardware_concurrency().
  int sessions = 0;
  // Used for GenerateKey when KeySpec.location_hint is empty (e.g. the dev token).
  // The token it names is opened eagerly by Create(), so a wrong PIN or missing
  // token fails start-up with a clear message.
  std::string default_key_uri;
  // KEYCTL_PKCS11_PIN, when set.
  std::optional<SecretBytes> env_pin;
  // Test seam: wraps every loaded module (e.g. with a fault-injecting fake).
  std::function<std::shared_ptr<Pkcs11Api>(std::shared_ptr<Pkcs11Api>)> api_decorator;
};

class Pkcs11Backend final : public KeyBackend {
 public:
  // Loads options.module_path (if set) and opens the token of default_key_uri
  // (if set). Errors name the module path or token, never the PIN.
  static StatusOr<std::unique_ptr<Pkcs11Backend>> Create(Pkcs11BackendOptions options);
  ~Pkcs11Backend() override;

  std::string_view provider() const override;
  StatusOr<GeneratedKey> GenerateKey(const KeySpec& spec) override;
  StatusOr<Bytes> SignDigest(std::string_view key_uri, Algorithm alg, ByteView digest) override;
  // Ed25519 only: CKM_EDDSA over the whole message (X.509 and COSE need it).
  StatusOr<Bytes> SignMessage(std::string_view key_uri, Algorithm alg, ByteView message) override;
  StatusOr<Bytes> PublicKeySpkiDer(std::string_view key_uri) override;
  Status DestroyKey(std::string_view key_uri) override;
  // Probe: C_GetSessionInfo on a pooled session of every opened token (with the
  // same re-open-and-retry-once recovery as signing).
  BackendHealth Health() override;

  // Closes every session of every opened token behind the backend's back
  // (C_CloseAllSessions), as a device reset or idle timeout would.
  void InvalidateSessionsForTest();

 private:
  // C_Sign over `data` with the algorithm's mechanism; callers check its size.
  StatusOr<Bytes> SignBytes(std::string_view key_uri, Algorithm alg, ByteView data);
  struct Impl;
  explicit Pkcs11Backend(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace concierge::backends::pkcs11

#endif  // CONCIERGE_BACKENDS_PKCS11_PKCS11_BACKEND_H_
