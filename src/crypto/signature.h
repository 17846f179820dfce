// Digest signing and verification for the seven policy algorithms, and ECDSA
// signature format conversion (DER <-> IEEE P1363 r||s). Thread-safe.
//
// Conventions (match KeyBackend): ECDSA signatures are DER; RSA-PSS uses
// MGF1 with the same hash and salt length = digest length (what C2PA and COSE
// expect); Ed25519 signs the digest bytes as its message (PureEdDSA).
#ifndef CONCIERGE_CRYPTO_SIGNATURE_H_
#define CONCIERGE_CRYPTO_SIGNATURE_H_

#include <memory>
#include <mutex>
#include <vector>

#include "concierge/algorithm.h"
#include "concierge/key_backend.h"
#include "crypto/openssl_util.h"

namespace concierge::crypto {

// InvalidArgument if the digest length does not fit `alg` (DigestSizeAccepted).
StatusOr<Bytes> SignDigest(EVP_PKEY* private_key, Algorithm alg, ByteView digest);

// OK if valid; kInvalidArgument "signature does not verify" if not (also for
// malformed signatures). Other codes for internal failures.
Status VerifyDigest(EVP_PKEY* public_key, Algorithm alg, ByteView digest, ByteView signature);

// Verifies a signature over a whole message made the SignMessageWithBackend
// way (x509.h): PureEdDSA for Ed25519, else over DigestFor(alg, message).
// Same result codes as VerifyDigest.
Status VerifyMessage(EVP_PKEY* public_key, Algorithm alg, ByteView message, ByteView signature);

// DER Ecdsa-Sig-Value -> fixed-width r||s (2*field_bytes). InvalidArgument on
// malformed input or values wider than the field.
StatusOr<Bytes> EcdsaDerToP1363(ByteView der, size_t field_bytes);
// r||s (even length) -> DER. InvalidArgument on odd/empty input.
StatusOr<Bytes> EcdsaP1363ToDer(ByteView raw);

// A private key prepared for repeated digest signing on the hot path. Keeps a
// small pool of initialised EVP_PKEY_CTXs (one per concurrent signer), so each
// signature skips context creation, the digest lookup and the key/algorithm
// check, which together cost about a fifth of an ES256 signature in OpenSSL 3.
// Thread-safe; holds its own reference to the key.
class PreparedSigner {
 public:
  // Checks once that `key` fits `alg`.
  static StatusOr<std::unique_ptr<PreparedSigner>> Create(EVP_PKEY* key, Algorithm alg);
  ~PreparedSigner();
  PreparedSigner(const PreparedSigner&) = delete;
  PreparedSigner& operator=(const PreparedSigner&) = delete;

  // Same contract as SignDigest(key, alg, digest).
  StatusOr<Bytes> Sign(ByteView digest) const;

 private:
  PreparedSigner(EvpPkeyPtr key, Algorithm alg, size_t max_signature);
  EvpPkeyPtr key_;
  Algorithm alg_;
  size_t max_signature_;
  mutable std::mutex mu_;
  mutable std::vector<EvpPkeyCtxPtr> idle_;
};

}  // namespace concierge::crypto

#endif  // CONCIERGE_CRYPTO_SIGNATURE_H_
