// Digest signing and verification for the seven policy algorithms, and ECDSA
// signature format conversion (DER <-> IEEE P1363 r||s). Thread-safe.
//
// Conventions (match KeyBackend): ECDSA signatures are DER; RSA-PSS uses
// MGF1 with the same hash and salt length = digest length (what C2PA and COSE
// expect); Ed25519 signs the digest bytes as its message (PureEdDSA).
#ifndef CONCIERGE_CRYPTO_SIGNATURE_H_
#define CONCIERGE_CRYPTO_SIGNATURE_H_

#include "concierge/algorithm.h"
#include "concierge/key_backend.h"
#include "crypto/openssl_util.h"

namespace concierge::crypto {

// InvalidArgument if the digest length does not fit `alg` (DigestSizeAccepted).
StatusOr<Bytes> SignDigest(EVP_PKEY* private_key, Algorithm alg, ByteView digest);

// OK if valid; kInvalidArgument "signature does not verify" if not (also for
// malformed signatures). Other codes for internal failures.
Status VerifyDigest(EVP_PKEY* public_key, Algorithm alg, ByteView digest, ByteView signature);

// DER Ecdsa-Sig-Value -> fixed-width r||s (2*field_bytes). InvalidArgument on
// malformed input or values wider than the field.
StatusOr<Bytes> EcdsaDerToP1363(ByteView der, size_t field_bytes);
// r||s (even length) -> DER. InvalidArgument on odd/empty input.
StatusOr<Bytes> EcdsaP1363ToDer(ByteView raw);

}  // namespace concierge::crypto

#endif  // CONCIERGE_CRYPTO_SIGNATURE_H_
