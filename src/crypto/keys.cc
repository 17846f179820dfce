#include "crypto/keys.h"

#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "crypto/hash.h"

namespace concierge::crypto {
namespace {

struct Pkcs8Deleter {
  void operator()(PKCS8_PRIV_KEY_INFO* p) const { PKCS8_PRIV_KEY_INFO_free(p); }
};
using Pkcs8Ptr = std::unique_ptr<PKCS8_PRIV_KEY_INFO, Pkcs8Deleter>;

const char* CurveFor(Algorithm alg) {
  switch (alg) {
    case Algorithm::kES256:
      return "P-256";
    case Algorithm::kES384:
      return "P-384";
    case Algorithm::kES512:
      return "P-521";
    default:
      return nullptr;
  }
}

// OpenSSL reports NIST curves by their SECG/X9.62 names; accept both spellings.
bool CurveNameMatches(Algorithm alg, std::string_view name) {
  switch (alg) {
    case Algorithm::kES256:
      return name == "P-256" || name == "prime256v1";
    case Algorithm::kES384:
      return name == "P-384" || name == "secp384r1";
    case Algorithm::kES512:
      return name == "P-521" || name == "secp521r1";
    default:
      return false;
  }
}

}  // namespace

int RsaBitsFor(Algorithm alg) {
  switch (alg) {
    case Algorithm::kPS256:
      return 2048;
    case Algorithm::kPS384:
      return 3072;
    case Algorithm::kPS512:
      return 4096;
    default:
      return 0;
  }
}

StatusOr<EvpPkeyPtr> GenerateKeyPair(Algorithm alg) {
  const char* type = nullptr;
  switch (FamilyOf(alg)) {
    case KeyFamily::kEcdsa:
      type = "EC";
      break;
    // Plain rsaEncryption keys rather than id-RSASSA-PSS: every verifier (COSE,
    // C2PA validators, the openssl CLI) accepts them, and padding is chosen per call.
    case KeyFamily::kRsaPss:
      type = "RSA";
      break;
    case KeyFamily::kEdDsa:
      type = "ED25519";
      break;
  }
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  if (!ctx) return OpenSslError("creating key generation context");
  if (EVP_PKEY_keygen_init(ctx.get()) != 1) return OpenSslError("initialising key generation");
  if (FamilyOf(alg) == KeyFamily::kEcdsa &&
      EVP_PKEY_CTX_set_group_name(ctx.get(), CurveFor(alg)) != 1) {
    return OpenSslError("selecting curve");
  }
  if (FamilyOf(alg) == KeyFamily::kRsaPss &&
      EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), RsaBitsFor(alg)) != 1) {
    return OpenSslError("setting RSA key size");
  }
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_generate(ctx.get(), &raw) != 1) return OpenSslError("generating key pair");
  return EvpPkeyPtr(raw);
}

StatusOr<SecretBytes> PrivateKeyToPkcs8Der(const EVP_PKEY* key) {
  if (key == nullptr) return InvalidArgumentError("no private key");
  Pkcs8Ptr p8(EVP_PKEY2PKCS8(key));
  if (!p8) return OpenSslError("encoding private key as PKCS#8");
  int len = i2d_PKCS8_PRIV_KEY_INFO(p8.get(), nullptr);
  if (len <= 0) return OpenSslError("sizing PKCS#8 encoding");
  // Encode straight into SecretBytes so no unwiped heap copy of the key exists.
  SecretBytes der(static_cast<size_t>(len));
  unsigned char* out = der.RevealMutable(SecretAccess::Grant()).data();
  if (i2d_PKCS8_PRIV_KEY_INFO(p8.get(), &out) != len) return OpenSslError("encoding PKCS#8");
  return der;
}

StatusOr<EvpPkeyPtr> PrivateKeyFromPkcs8Der(const SecretBytes& der) {
  auto bytes = der.Reveal(SecretAccess::Grant());
  const unsigned char* p = bytes.data();
  Pkcs8Ptr p8(d2i_PKCS8_PRIV_KEY_INFO(nullptr, &p, static_cast<long>(bytes.size())));
  if (!p8 || p != bytes.data() + bytes.size()) {
    return OpenSslError("parsing PKCS#8 private key", StatusCode::kInvalidArgument);
  }
  EvpPkeyPtr key(EVP_PKCS82PKEY(p8.get()));
  if (!key) return OpenSslError("loading PKCS#8 private key", StatusCode::kInvalidArgument);
  return key;
}

StatusOr<Bytes> PublicKeyToSpkiDer(const EVP_PKEY* key) {
  if (key == nullptr) return InvalidArgumentError("no public key");
  int len = i2d_PUBKEY(key, nullptr);
  if (len <= 0) return OpenSslError("sizing SubjectPublicKeyInfo");
  Bytes der(static_cast<size_t>(len));
  unsigned char* out = der.data();
  if (i2d_PUBKEY(key, &out) != len) return OpenSslError("encoding SubjectPublicKeyInfo");
  return der;
}

StatusOr<EvpPkeyPtr> PublicKeyFromSpkiDer(ByteView spki_der) {
  const unsigned char* p = spki_der.data();
  EvpPkeyPtr key(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki_der.size())));
  if (!key || p != spki_der.data() + spki_der.size()) {
    return OpenSslError("parsing SubjectPublicKeyInfo", StatusCode::kInvalidArgument);
  }
  return key;
}

StatusOr<std::string> SpkiDerToPem(ByteView spki_der) {
  ASSIGN_OR_RETURN(EvpPkeyPtr key, PublicKeyFromSpkiDer(spki_der));
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio) return OpenSslError("allocating BIO");
  if (PEM_write_bio_PUBKEY(bio.get(), key.get()) != 1) return OpenSslError("writing PEM");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

StatusOr<EvpPkeyPtr> PublicKeyFromPem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return OpenSslError("allocating BIO");
  EvpPkeyPtr key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return OpenSslError("parsing PEM public key", StatusCode::kInvalidArgument);
  return key;
}

Status CheckKeyMatchesAlgorithm(const EVP_PKEY* key, Algorithm alg) {
  if (key == nullptr) return InvalidArgumentError("no key");
  int id = EVP_PKEY_get_base_id(key);
  std::string want(AlgorithmName(alg));
  switch (FamilyOf(alg)) {
    case KeyFamily::kEcdsa: {
      if (id != EVP_PKEY_EC)
        return InvalidArgumentError("key is not an EC key; " + want + " needs one");
      char group[64] = {0};
      size_t len = 0;
      if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                         &len) != 1) {
        return OpenSslError("reading EC curve", StatusCode::kInvalidArgument);
      }
      if (!CurveNameMatches(alg, std::string_view(group, len))) {
        return InvalidArgumentError("EC key on curve " + std::string(group, len) +
                                    " does not match " + want);
      }
      return Status::Ok();
    }
    case KeyFamily::kRsaPss: {
      if (id != EVP_PKEY_RSA && id != EVP_PKEY_RSA_PSS) {
        return InvalidArgumentError("key is not an RSA key; " + want + " needs one");
      }
      // PS256 with a 3072-bit imported key is legitimate; the hash choice does not
      // pin the modulus size. Only keys below the 2048-bit floor are refused.
      if (EVP_PKEY_get_bits(key) < 2048) {
        return InvalidArgumentError("RSA key shorter than 2048 bits");
      }
      return Status::Ok();
    }
    case KeyFamily::kEdDsa:
      if (id != EVP_PKEY_ED25519) return InvalidArgumentError("key is not an Ed25519 key");
      return Status::Ok();
  }
  return InvalidArgumentError("unsupported algorithm");
}

std::string SpkiFingerprint(ByteView spki_der) { return Sha256Hex(spki_der); }

}  // namespace concierge::crypto
