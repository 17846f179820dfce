#include "crypto/hash.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstdio>
#include <cstdlib>

#include "crypto/encoding.h"

namespace concierge::crypto {
namespace {

Bytes Digest(const EVP_MD* md, ByteView data) {
  Bytes out(static_cast<size_t>(EVP_MD_get_size(md)));
  unsigned int len = 0;
  // EVP_Digest only fails on allocation failure or a broken provider; neither
  // is recoverable here and returning a wrong digest would be worse.
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr) != 1 ||
      len != out.size()) {
    std::fputs("concierge: EVP_Digest failed\n", stderr);
    std::abort();
  }
  return out;
}

}  // namespace

Bytes Sha256(ByteView data) { return Digest(EVP_sha256(), data); }
Bytes Sha384(ByteView data) { return Digest(EVP_sha384(), data); }
Bytes Sha512(ByteView data) { return Digest(EVP_sha512(), data); }
std::string Sha256Hex(ByteView data) { return HexEncode(Sha256(data)); }

Bytes DigestFor(Algorithm alg, ByteView data) {
  switch (DigestSize(alg)) {
    case 32:
      return Sha256(data);
    case 48:
      return Sha384(data);
    default:
      return Sha512(data);
  }
}

Bytes HmacSha256(const SecretBytes& key, ByteView data) {
  auto k = key.Reveal(SecretAccess::Grant());
  Bytes out(32);
  unsigned int len = 0;
  // HMAC() rejects a NULL key pointer, which an empty std::vector may yield.
  static const uint8_t kEmpty = 0;
  if (HMAC(EVP_sha256(), k.empty() ? &kEmpty : k.data(), static_cast<int>(k.size()), data.data(),
           data.size(), out.data(), &len) == nullptr ||
      len != out.size()) {
    std::fputs("concierge: HMAC failed\n", stderr);
    std::abort();
  }
  return out;
}

Bytes RandomBytes(size_t n) {
  Bytes out(n);
  if (n > 0 && RAND_bytes(out.data(), static_cast<int>(n)) != 1) {
    std::fputs("concierge: RAND_bytes failed\n", stderr);
    std::abort();
  }
  return out;
}

SecretBytes RandomSecret(size_t n) {
  SecretBytes out(n);
  auto buf = out.RevealMutable(SecretAccess::Grant());
  if (n > 0 && RAND_bytes(buf.data(), static_cast<int>(n)) != 1) {
    std::fputs("concierge: RAND_bytes failed\n", stderr);
    std::abort();
  }
  return out;
}

std::string RandomHex(size_t n) { return HexEncode(RandomBytes(n)); }

}  // namespace concierge::crypto
