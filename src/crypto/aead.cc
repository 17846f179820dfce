#include "crypto/aead.h"

#include <argon2.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include <climits>

#include "crypto/hash.h"
#include "crypto/openssl_util.h"

namespace concierge::crypto {
namespace {

constexpr size_t kMinSaltSize = 16;

Status AuthFailed() {
  ERR_clear_error();
  return DataLossError("authentication failed");
}

}  // namespace

StatusOr<Bytes> Aes256GcmSeal(const SecretBytes& key, ByteView plaintext, ByteView aad) {
  if (key.size() != kAes256KeySize) return InvalidArgumentError("AES-256-GCM key must be 32 bytes");
  if (plaintext.size() > INT_MAX - 64 || aad.size() > INT_MAX) {
    return InvalidArgumentError("input too large to seal");
  }
  // Random 96-bit nonces: every key here (KEK, per-key DEK) seals only a handful
  // of messages, far below the 2^32 bound where collisions become a concern.
  Bytes out = RandomBytes(kGcmNonceSize);
  out.resize(kGcmNonceSize + plaintext.size() + kGcmTagSize);
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return OpenSslError("allocating cipher context");
  if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr,
                         key.Reveal(SecretAccess::Grant()).data(), out.data()) != 1) {
    return OpenSslError("initialising AES-256-GCM");
  }
  int len = 0;
  if (!aad.empty() &&
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1) {
    return OpenSslError("adding associated data");
  }
  uint8_t* ct = out.data() + kGcmNonceSize;
  int written = 0;
  // A zero-length update with a NULL output would be taken as AAD, so skip it.
  if (!plaintext.empty()) {
    if (EVP_EncryptUpdate(ctx.get(), ct, &len, plaintext.data(),
                          static_cast<int>(plaintext.size())) != 1) {
      return OpenSslError("encrypting");
    }
    written = len;
  }
  if (EVP_EncryptFinal_ex(ctx.get(), ct + written, &len) != 1) return OpenSslError("finishing");
  written += len;
  if (static_cast<size_t>(written) != plaintext.size()) return InternalError("GCM length mismatch");
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kGcmTagSize),
                          ct + written) != 1) {
    return OpenSslError("reading GCM tag");
  }
  return out;
}

StatusOr<SecretBytes> Aes256GcmOpen(const SecretBytes& key, ByteView sealed, ByteView aad) {
  if (key.size() != kAes256KeySize) return InvalidArgumentError("AES-256-GCM key must be 32 bytes");
  if (sealed.size() < kGcmNonceSize + kGcmTagSize) {
    return InvalidArgumentError("sealed data too short");
  }
  if (sealed.size() > INT_MAX || aad.size() > INT_MAX) {
    return InvalidArgumentError("input too large to open");
  }
  ByteView nonce = sealed.subspan(0, kGcmNonceSize);
  ByteView ct = sealed.subspan(kGcmNonceSize, sealed.size() - kGcmNonceSize - kGcmTagSize);
  ByteView tag = sealed.subspan(sealed.size() - kGcmTagSize);

  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return OpenSslError("allocating cipher context");
  if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr,
                         key.Reveal(SecretAccess::Grant()).data(), nonce.data()) != 1) {
    return OpenSslError("initialising AES-256-GCM");
  }
  int len = 0;
  if (!aad.empty() &&
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1) {
    return AuthFailed();
  }
  // Decrypt straight into SecretBytes; if the tag then fails, its destructor wipes
  // the unauthenticated plaintext.
  SecretBytes plaintext(ct.size());
  auto out = plaintext.RevealMutable(SecretAccess::Grant());
  int written = 0;
  if (!ct.empty()) {
    if (EVP_DecryptUpdate(ctx.get(), out.data(), &len, ct.data(), static_cast<int>(ct.size())) !=
        1) {
      return AuthFailed();
    }
    written = len;
  }
  // The ctrl takes a non-const pointer but only reads the tag.
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kGcmTagSize),
                          const_cast<uint8_t*>(tag.data())) != 1) {
    return OpenSslError("setting GCM tag");
  }
  uint8_t scratch[16];
  if (EVP_DecryptFinal_ex(ctx.get(), ct.empty() ? scratch : out.data() + written, &len) != 1) {
    return AuthFailed();
  }
  return plaintext;
}

StatusOr<SecretBytes> DeriveKeyArgon2id(const SecretBytes& passphrase, ByteView salt,
                                        const Argon2Params& params, size_t out_len) {
  if (salt.size() < kMinSaltSize) return InvalidArgumentError("Argon2id salt must be >= 16 bytes");
  if (out_len < ARGON2_MIN_OUTLEN || out_len > 1024) {
    return InvalidArgumentError("Argon2id output length out of range");
  }
  if (params.time_cost < 1 || params.parallelism < 1 ||
      params.memory_kib < 8 * params.parallelism) {
    return InvalidArgumentError("Argon2id parameters out of range");
  }
  SecretBytes out(out_len);
  auto pwd = passphrase.Reveal(SecretAccess::Grant());
  int rc = argon2id_hash_raw(params.time_cost, params.memory_kib, params.parallelism, pwd.data(),
                             pwd.size(), salt.data(), salt.size(),
                             out.RevealMutable(SecretAccess::Grant()).data(), out_len);
  if (rc != ARGON2_OK) {
    // argon2_error_message returns fixed strings ("Memory allocation error", ...),
    // never input bytes.
    Status st(rc == ARGON2_MEMORY_ALLOCATION_ERROR ? StatusCode::kResourceExhausted
                                                   : StatusCode::kInternal,
              std::string("Argon2id: ") + argon2_error_message(rc));
    return st;
  }
  return out;
}

}  // namespace concierge::crypto
