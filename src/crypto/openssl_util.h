// RAII owners for OpenSSL handles and a helper that turns the OpenSSL error queue
// into a Status. Owning pointers are move-only; none are thread-safe to mutate,
// but an EVP_PKEY may be used for signing from several threads at once (OpenSSL 3).
#ifndef CONCIERGE_CRYPTO_OPENSSL_UTIL_H_
#define CONCIERGE_CRYPTO_OPENSSL_UTIL_H_

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string_view>

#include "concierge/status.h"

namespace concierge::crypto {

struct EvpPkeyDeleter { void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); } };
struct EvpPkeyCtxDeleter { void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); } };
struct EvpMdCtxDeleter { void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); } };
struct EvpCipherCtxDeleter { void operator()(EVP_CIPHER_CTX* p) const { EVP_CIPHER_CTX_free(p); } };
struct BioDeleter { void operator()(BIO* p) const { BIO_free_all(p); } };
struct X509Deleter { void operator()(X509* p) const { X509_free(p); } };

using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyDeleter>;
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, EvpPkeyCtxDeleter>;
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, EvpMdCtxDeleter>;
using EvpCipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, EvpCipherCtxDeleter>;
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

// Drains the thread's OpenSSL error queue into a Status with `code` and a message
// "<context>: <first openssl reason>". Never includes key material.
Status OpenSslError(std::string_view context, StatusCode code = StatusCode::kInternal);

}  // namespace concierge::crypto

#endif  // CONCIERGE_CRYPTO_OPENSSL_UTIL_H_
