#include "crypto/signature.h"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#include "crypto/eddsa.h"
#include "crypto/hash.h"
#include "crypto/keys.h"

namespace concierge::crypto {
namespace {

struct EcdsaSigDeleter {
  void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
};
struct BignumDeleter {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, EcdsaSigDeleter>;
using BignumPtr = std::unique_ptr<BIGNUM, BignumDeleter>;

const EVP_MD* MdForDigest(size_t digest_size) {
  switch (digest_size) {
    case 32:
      return EVP_sha256();
    case 48:
      return EVP_sha384();
    case 64:
      return EVP_sha512();
    default:
      return nullptr;
  }
}

Status CheckInputs(EVP_PKEY* key, Algorithm alg, ByteView digest) {
  if (!DigestSizeAccepted(alg, digest.size())) {
    return FieldError("digest", "digest is " + std::to_string(digest.size()) + " bytes; " +
                                    std::string(AlgorithmName(alg)) + " expects " +
                                    std::to_string(DigestSize(alg)));
  }
  return CheckKeyMatchesAlgorithm(key, alg);
}

// Prepares a sign or verify context for the pre-hashed families (ECDSA, RSA-PSS).
StatusOr<EvpPkeyCtxPtr> PrehashContext(EVP_PKEY* key, Algorithm alg, size_t digest_size,
                                       bool sign) {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
  if (!ctx) return OpenSslError("creating signing context");
  int rc = sign ? EVP_PKEY_sign_init(ctx.get()) : EVP_PKEY_verify_init(ctx.get());
  if (rc != 1) return OpenSslError("initialising signature operation");
  const EVP_MD* md = MdForDigest(digest_size);
  if (FamilyOf(alg) == KeyFamily::kRsaPss) {
    // Padding must be set before the md: the default PKCS#1 v1.5 mode would
    // otherwise be the one validated against it.
    if (EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PSS_PADDING) != 1 ||
        EVP_PKEY_CTX_set_signature_md(ctx.get(), md) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), md) != 1 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), RSA_PSS_SALTLEN_DIGEST) != 1) {
      return OpenSslError("configuring RSA-PSS");
    }
  } else if (EVP_PKEY_CTX_set_signature_md(ctx.get(), md) != 1) {
    return OpenSslError("configuring ECDSA digest");
  }
  return ctx;
}

Status NotVerified() {
  ERR_clear_error();
  return InvalidArgumentError("signature does not verify");
}

}  // namespace

StatusOr<Bytes> SignDigest(EVP_PKEY* private_key, Algorithm alg, ByteView digest) {
  RETURN_IF_ERROR(CheckInputs(private_key, alg, digest));
  // PureEdDSA: the digest bytes are the message.
  if (FamilyOf(alg) == KeyFamily::kEdDsa) return Ed25519SignMessage(private_key, digest);
  ASSIGN_OR_RETURN(EvpPkeyCtxPtr ctx, PrehashContext(private_key, alg, digest.size(), true));
  // EVP_PKEY_get_size is the maximum signature size, which saves the separate
  // size-query call on the hot path. For ECDSA it is an upper bound; the DER
  // encoding is usually a byte or two shorter.
  int max_size = EVP_PKEY_get_size(private_key);
  if (max_size <= 0) return OpenSslError("sizing signature");
  Bytes sig(static_cast<size_t>(max_size));
  size_t len = sig.size();
  if (EVP_PKEY_sign(ctx.get(), sig.data(), &len, digest.data(), digest.size()) != 1) {
    return OpenSslError("signing digest");
  }
  sig.resize(len);
  return sig;
}

PreparedSigner::PreparedSigner(EvpPkeyPtr key, Algorithm alg, size_t max_signature)
    : key_(std::move(key)), alg_(alg), max_signature_(max_signature) {}

PreparedSigner::~PreparedSigner() = default;

StatusOr<std::unique_ptr<PreparedSigner>> PreparedSigner::Create(EVP_PKEY* key, Algorithm alg) {
  RETURN_IF_ERROR(CheckKeyMatchesAlgorithm(key, alg));
  int max_size = EVP_PKEY_get_size(key);
  if (max_size <= 0) return OpenSslError("sizing signature");
  if (EVP_PKEY_up_ref(key) != 1) return OpenSslError("referencing key");
  return std::unique_ptr<PreparedSigner>(
      new PreparedSigner(EvpPkeyPtr(key), alg, static_cast<size_t>(max_size)));
}

StatusOr<Bytes> PreparedSigner::Sign(ByteView digest) const {
  // Only the canonical digest size of a pre-hash family has a pooled context;
  // everything else (Ed25519, Ed25519 over SHA-256) takes the general path.
  if (FamilyOf(alg_) == KeyFamily::kEdDsa || digest.size() != DigestSize(alg_)) {
    return SignDigest(key_.get(), alg_, digest);
  }
  EvpPkeyCtxPtr ctx;
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      ctx = std::move(idle_.back());
      idle_.pop_back();
    }
  }
  if (!ctx) {
    ASSIGN_OR_RETURN(ctx, PrehashContext(key_.get(), alg_, digest.size(), true));
  }
  Bytes sig(max_signature_);
  size_t len = sig.size();
  if (EVP_PKEY_sign(ctx.get(), sig.data(), &len, digest.data(), digest.size()) != 1) {
    return OpenSslError("signing digest");  // the context is dropped, not reused
  }
  sig.resize(len);
  std::lock_guard lock(mu_);
  if (idle_.size() < 64) idle_.push_back(std::move(ctx));
  return sig;
}

Status VerifyDigest(EVP_PKEY* public_key, Algorithm alg, ByteView digest, ByteView signature) {
  RETURN_IF_ERROR(CheckInputs(public_key, alg, digest));
  if (signature.empty()) return NotVerified();
  if (FamilyOf(alg) == KeyFamily::kEdDsa) return Ed25519VerifyMessage(public_key, digest, signature);
  ASSIGN_OR_RETURN(EvpPkeyCtxPtr ctx, PrehashContext(public_key, alg, digest.size(), false));
  // 0 is a bad signature and <0 a malformed one; callers treat both as "does not
  // verify", which is what the header promises.
  if (EVP_PKEY_verify(ctx.get(), signature.data(), signature.size(), digest.data(),
                      digest.size()) != 1) {
    return NotVerified();
  }
  return Status::Ok();
}

Status VerifyMessage(EVP_PKEY* public_key, Algorithm alg, ByteView message, ByteView signature) {
  if (public_key == nullptr) return InvalidArgumentError("no public key");
  if (FamilyOf(alg) == KeyFamily::kEdDsa) return Ed25519VerifyMessage(public_key, message, signature);
  return VerifyDigest(public_key, alg, DigestFor(alg, message), signature);
}

StatusOr<Bytes> EcdsaDerToP1363(ByteView der, size_t field_bytes) {
  if (der.empty() || field_bytes == 0) return InvalidArgumentError("empty ECDSA signature");
  const unsigned char* p = der.data();
  EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (!sig || p != der.data() + der.size()) {
    ERR_clear_error();
    return InvalidArgumentError("malformed DER ECDSA signature");
  }
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  for (const BIGNUM* v : {r, s}) {
    if (BN_is_negative(v) || static_cast<size_t>(BN_num_bytes(v)) > field_bytes) {
      return InvalidArgumentError("ECDSA signature value does not fit the curve");
    }
  }
  Bytes out(2 * field_bytes);
  int n = static_cast<int>(field_bytes);
  if (BN_bn2binpad(r, out.data(), n) != n || BN_bn2binpad(s, out.data() + field_bytes, n) != n) {
    return OpenSslError("encoding r||s");
  }
  return out;
}

StatusOr<Bytes> EcdsaP1363ToDer(ByteView raw) {
  if (raw.empty() || raw.size() % 2 != 0) {
    return InvalidArgumentError("P1363 ECDSA signature must have non-zero even length");
  }
  int half = static_cast<int>(raw.size() / 2);
  BignumPtr r(BN_bin2bn(raw.data(), half, nullptr));
  BignumPtr s(BN_bin2bn(raw.data() + half, half, nullptr));
  if (!r || !s) return OpenSslError("parsing r||s");
  EcdsaSigPtr sig(ECDSA_SIG_new());
  if (!sig) return OpenSslError("allocating ECDSA_SIG");
  if (ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) return OpenSslError("building ECDSA_SIG");
  // ECDSA_SIG now owns r and s.
  (void)r.release();
  (void)s.release();
  int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (len <= 0) return OpenSslError("sizing DER signature");
  Bytes der(static_cast<size_t>(len));
  unsigned char* out = der.data();
  if (i2d_ECDSA_SIG(sig.get(), &out) != len) return OpenSslError("encoding DER signature");
  return der;
}

}  // namespace concierge::crypto
