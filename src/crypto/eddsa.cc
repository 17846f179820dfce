#include "crypto/eddsa.h"

#include <openssl/err.h>

namespace concierge::crypto {

StatusOr<Bytes> Ed25519SignMessage(EVP_PKEY* private_key, ByteView message) {
  if (EVP_PKEY_get_base_id(private_key) != EVP_PKEY_ED25519) {
    return InvalidArgumentError("key is not an Ed25519 key");
  }
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) return OpenSslError("allocating digest context");
  if (EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, private_key) != 1) {
    return OpenSslError("initialising Ed25519 signing");
  }
  Bytes sig(64);
  size_t len = sig.size();
  if (EVP_DigestSign(ctx.get(), sig.data(), &len, message.data(), message.size()) != 1) {
    return OpenSslError("Ed25519 signing");
  }
  sig.resize(len);
  return sig;
}

Status Ed25519VerifyMessage(EVP_PKEY* public_key, ByteView message, ByteView signature) {
  if (EVP_PKEY_get_base_id(public_key) != EVP_PKEY_ED25519) {
    return InvalidArgumentError("key is not an Ed25519 key");
  }
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) return OpenSslError("allocating digest context");
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, public_key) != 1) {
    return OpenSslError("initialising Ed25519 verification");
  }
  if (EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), message.data(),
                       message.size()) != 1) {
    ERR_clear_error();
    return InvalidArgumentError("signature does not verify");
  }
  return Status::Ok();
}

}  // namespace concierge::crypto
