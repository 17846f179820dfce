// SoftwareBackend: keys generated in-process and stored only encrypted on disk.
//
// Layout under `dir`:
//   keystore.json  - metadata: KEK source ("passphrase" | "key-file"), Argon2id
//                    parameters and salt, and a sealed check value so a wrong
//                    passphrase is reported as such (not as corruption).
//   master.key     - (key-file mode only) 32 random bytes, mode 0600.
//   keys/<name>.key - one envelope per key (JSON): a random 256-bit DEK sealed
//                    under the KEK, and the PKCS#8 private key sealed under the DEK
//                    (both AES-256-GCM, bound to the key URI via AAD).
// Files are written atomically (temp + fsync + rename), mode 0600.
//
// Key URIs: "software:<name>". Thread-safe: decrypted keys are cached in memory
// (never written anywhere in plaintext) behind a shared mutex.
#ifndef CONCIERGE_BACKENDS_SOFTWARE_SOFTWARE_BACKEND_H_
#define CONCIERGE_BACKENDS_SOFTWARE_SOFTWARE_BACKEND_H_

#include <memory>
#include <optional>
#include <string>

#include "concierge/key_backend.h"
#include "concierge/secret.h"
#include "crypto/aead.h"

namespace concierge::backends {

struct SoftwareKeystoreOptions {
  std::string dir;
  // When set on first start, the KEK is derived from it with Argon2id and the
  // keystore is marked passphrase-protected; later starts must supply it.
  std::optional<SecretBytes> passphrase;
  // Where the generated KEK lives in key-file mode; default "<dir>/master.key".
  std::string master_key_file;
  crypto::Argon2Params argon2;  // used only when initialising a new keystore
};

class SoftwareBackend final : public KeyBackend {
 public:
  // Opens the keystore in options.dir, initialising it when the directory is
  // empty or missing. Errors: kFailedPrecondition when a passphrase is required
  // but missing, kPermissionDenied for a wrong passphrase, kDataLoss when
  // keystore.json or master.key is corrupt.
  static StatusOr<std::unique_ptr<SoftwareBackend>> Create(SoftwareKeystoreOptions options);
  ~SoftwareBackend() override;

  std::string_view provider() const override { return "software"; }
  StatusOr<GeneratedKey> GenerateKey(const KeySpec& spec) override;
  StatusOr<Bytes> SignDigest(std::string_view key_uri, Algorithm alg, ByteView digest) override;
  // Ed25519 only (PureEdDSA over `message`); kUnimplemented for other algorithms.
  StatusOr<Bytes> SignMessage(std::string_view key_uri, Algorithm alg, ByteView message) override;
  StatusOr<Bytes> PublicKeySpkiDer(std::string_view key_uri) override;
  Status DestroyKey(std::string_view key_uri) override;
  BackendHealth Health() override;

  // "passphrase" or "key-file".
  std::string_view kek_source() const;

 private:
  struct Impl;
  explicit SoftwareBackend(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace concierge::backends

#endif  // CONCIERGE_BACKENDS_SOFTWARE_SOFTWARE_BACKEND_H_
