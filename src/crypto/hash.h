// SHA-2 digests and secure random bytes. Thread-safe.
#ifndef CONCIERGE_CRYPTO_HASH_H_
#define CONCIERGE_CRYPTO_HASH_H_

#include <string>

#include "concierge/algorithm.h"
#include "concierge/key_backend.h"
#include "concierge/secret.h"

namespace concierge::crypto {

Bytes Sha256(ByteView data);
Bytes Sha384(ByteView data);
Bytes Sha512(ByteView data);
std::string Sha256Hex(ByteView data);
// The digest a client would send for `alg` (SHA-256/384/512; Ed25519 -> SHA-512).
Bytes DigestFor(Algorithm alg, ByteView data);

// HMAC-SHA256 (webhooks, tokens).
Bytes HmacSha256(const SecretBytes& key, ByteView data);

// Cryptographically secure random bytes (RAND_bytes); aborts if the RNG fails,
// since continuing without randomness would be a broken invariant.
Bytes RandomBytes(size_t n);
SecretBytes RandomSecret(size_t n);
// n random bytes as lowercase hex (2n chars), for ids and tokens.
std::string RandomHex(size_t n);

}  // namespace concierge::crypto

#endif  // CONCIERGE_CRYPTO_HASH_H_
