// PureEdDSA (Ed25519) over whole messages, for the places where a standard
// says "sign these bytes" rather than "sign this digest": X.509 (RFC 8410) and
// COSE (RFC 9053). The digest path in signature.h signs a SHA-2 digest as the
// message instead, which verifiers of those formats would reject. Thread-safe.
#ifndef CONCIERGE_CRYPTO_EDDSA_H_
#define CONCIERGE_CRYPTO_EDDSA_H_

#include "concierge/key_backend.h"
#include "crypto/openssl_util.h"

namespace concierge::crypto {

StatusOr<Bytes> Ed25519SignMessage(EVP_PKEY* private_key, ByteView message);
// OK, or InvalidArgument "signature does not verify".
Status Ed25519VerifyMessage(EVP_PKEY* public_key, ByteView message, ByteView signature);

}  // namespace concierge::crypto

#endif  // CONCIERGE_CRYPTO_EDDSA_H_
