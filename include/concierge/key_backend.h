// KeyBackend: the one interface every key custody backend implements (software
// keystore, PKCS#11 HSMs, cloud KMS, Vault Transit). Keys are named by URI; the
// scheme says which backend owns them ("software:", "pkcs11:", "aws-kms:", ...).
//
// Contract: private key material never leaves a backend unencrypted. Signatures
// come back in one canonical form per family: ECDSA as DER (X9.62 Ecdsa-Sig-Value),
// RSA-PSS as the raw modulus-sized signature, Ed25519 as the 64-byte signature.
// Implementations must be thread-safe: the signing hot path calls SignDigest from
// every io thread at once.
#ifndef CONCIERGE_KEY_BACKEND_H_
#define CONCIERGE_KEY_BACKEND_H_

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "concierge/algorithm.h"
#include "concierge/status.h"

namespace concierge {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

struct KeySpec {
  Algorithm algorithm = Algorithm::kES256;
  // Stable, human-meaningful name, e.g. "acme-news/v3". Backends use it for
  // labels and file names after sanitising.
  std::string label;
  // Backend-specific hint, e.g. a PKCS#11 URI naming the token. May be empty.
  std::string location_hint;
};

struct GeneratedKey {
  std::string uri;             // names the key inside its backend
  Bytes public_key_spki_der;   // SubjectPublicKeyInfo, DER
  std::string attestation;     // PEM attestation chain when the device offers one
};

struct BackendHealth {
  bool healthy = false;
  std::string detail;  // short, no secrets
};

class KeyBackend {
 public:
  virtual ~KeyBackend() = default;

  // Provider name as used in policies: "software", "pkcs11", "aws-kms", ...
  virtual std::string_view provider() const = 0;

  virtual StatusOr<GeneratedKey> GenerateKey(const KeySpec& spec) = 0;

  // Signs a digest already computed by the caller (see DigestSize()). For
  // Ed25519, the digest bytes are signed as the message.
  virtual StatusOr<Bytes> SignDigest(std::string_view key_uri, Algorithm alg, ByteView digest) = 0;

  // Signs `message` itself, without pre-hashing: PureEdDSA, which is what X.509
  // (RFC 8410) and COSE (RFC 9053) mean by an Ed25519 signature over their
  // to-be-signed bytes. Only EdDSA keys need it; backends that cannot do it keep
  // this default and callers report the limitation.
  virtual StatusOr<Bytes> SignMessage(std::string_view key_uri, Algorithm alg, ByteView message) {
    (void)key_uri;
    (void)message;
    return UnimplementedError("backend '" + std::string(provider()) + "' cannot sign whole messages with " +
                              std::string(AlgorithmName(alg)));
  }

  virtual StatusOr<Bytes> PublicKeySpkiDer(std::string_view key_uri) = 0;

  // Makes the key unusable. Irreversible.
  virtual Status DestroyKey(std::string_view key_uri) = 0;

  virtual BackendHealth Health() = 0;
};

// Maps provider names to backends. Populated once at start-up (register_builtin),
// read concurrently afterwards: Register is not thread-safe, Find is.
class BackendRegistry {
 public:
  Status Register(std::unique_ptr<KeyBackend> backend);
  // nullptr when no backend of that provider is configured.
  KeyBackend* Find(std::string_view provider) const;
  std::vector<KeyBackend*> All() const;

 private:
  std::map<std::string, std::unique_ptr<KeyBackend>, std::less<>> backends_;
};

}  // namespace concierge

#endif  // CONCIERGE_KEY_BACKEND_H_
