// AES-256-GCM sealing for the software keystore envelope, and Argon2id key
// derivation for the key-encryption key. Thread-safe.
#ifndef CONCIERGE_CRYPTO_AEAD_H_
#define CONCIERGE_CRYPTO_AEAD_H_

#include <cstdint>

#include "concierge/key_backend.h"
#include "concierge/secret.h"
#include "concierge/status.h"

namespace concierge::crypto {

inline constexpr size_t kAes256KeySize = 32;
inline constexpr size_t kGcmNonceSize = 12;
inline constexpr size_t kGcmTagSize = 16;

// Output: nonce (12, random) || ciphertext || tag (16). `key` must be 32 bytes.
StatusOr<Bytes> Aes256GcmSeal(const SecretBytes& key, ByteView plaintext, ByteView aad);
// kDataLoss "authentication failed" when the tag does not verify (wrong key,
// altered ciphertext or aad); kInvalidArgument when `sealed` is too short.
StatusOr<SecretBytes> Aes256GcmOpen(const SecretBytes& key, ByteView sealed, ByteView aad);

struct Argon2Params {
  uint32_t time_cost = 3;
  uint32_t memory_kib = 64 * 1024;
  uint32_t parallelism = 1;
};

// Argon2id(passphrase, salt) -> out_len bytes. Salt must be >= 16 bytes.
StatusOr<SecretBytes> DeriveKeyArgon2id(const SecretBytes& passphrase, ByteView salt,
                                        const Argon2Params& params, size_t out_len);

}  // namespace concierge::crypto

#endif  // CONCIERGE_CRYPTO_AEAD_H_
