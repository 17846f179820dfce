#include "crypto/x509.h"

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <map>
#include <mutex>

#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/keys.h"

namespace concierge::crypto {
namespace {

struct BignumDeleter { void operator()(BIGNUM* p) const { BN_free(p); } };
struct Asn1IntegerDeleter { void operator()(ASN1_INTEGER* p) const { ASN1_INTEGER_free(p); } };
struct Asn1TimeDeleter { void operator()(ASN1_TIME* p) const { ASN1_TIME_free(p); } };
struct X509ExtensionDeleter { void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); } };
struct X509StoreDeleter { void operator()(X509_STORE* p) const { X509_STORE_free(p); } };
struct X509StoreCtxDeleter { void operator()(X509_STORE_CTX* p) const { X509_STORE_CTX_free(p); } };
struct X509StackDeleter { void operator()(STACK_OF(X509)* p) const { sk_X509_free(p); } };
struct X509RevokedDeleter { void operator()(X509_REVOKED* p) const { X509_REVOKED_free(p); } };
using BignumPtr = std::unique_ptr<BIGNUM, BignumDeleter>;
using Asn1IntegerPtr = std::unique_ptr<ASN1_INTEGER, Asn1IntegerDeleter>;
using Asn1TimePtr = std::unique_ptr<ASN1_TIME, Asn1TimeDeleter>;
using X509ExtensionPtr = std::unique_ptr<X509_EXTENSION, X509ExtensionDeleter>;
using X509StorePtr = std::unique_ptr<X509_STORE, X509StoreDeleter>;
using X509StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, X509StoreCtxDeleter>;
using X509StackPtr = std::unique_ptr<STACK_OF(X509), X509StackDeleter>;
using X509RevokedPtr = std::unique_ptr<X509_REVOKED, X509RevokedDeleter>;

const EVP_MD* MdFor(Algorithm alg) {
  switch (alg) {
    case Algorithm::kES256:
    case Algorithm::kPS256: return EVP_sha256();
    case Algorithm::kES384:
    case Algorithm::kPS384: return EVP_sha384();
    case Algorithm::kES512:
    case Algorithm::kPS512: return EVP_sha512();
    case Algorithm::kEd25519: return nullptr;  // PureEdDSA: no pre-hash
  }
  return nullptr;
}

// A throwaway key per algorithm, used only so that OpenSSL writes the
// AlgorithmIdentifiers (see the header comment). Generated once per process:
// RSA-4096 generation takes seconds.
StatusOr<EVP_PKEY*> TemplateKey(Algorithm alg) {
  static std::mutex mu;
  static std::map<Algorithm, EvpPkeyPtr>* keys = new std::map<Algorithm, EvpPkeyPtr>();
  std::lock_guard lock(mu);
  auto it = keys->find(alg);
  if (it == keys->end()) {
    ASSIGN_OR_RETURN(EvpPkeyPtr key, GenerateKeyPair(alg));
    it = keys->emplace(alg, std::move(key)).first;
  }
  return it->second.get();
}

// An EVP_MD_CTX ready to sign with the template key the way the backend key
// signs: same digest, and for RSA-PSS the MGF1 hash and salt length C2PA uses.
StatusOr<EvpMdCtxPtr> TemplateSignContext(Algorithm alg) {
  ASSIGN_OR_RETURN(EVP_PKEY * key, TemplateKey(alg));
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) return OpenSslError("allocating signing context");
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  if (EVP_DigestSignInit(ctx.get(), &pctx, MdFor(alg), nullptr, key) != 1) {
    return OpenSslError("initialising template signature");
  }
  if (FamilyOf(alg) == KeyFamily::kRsaPss) {
    if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, MdFor(alg)) != 1 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1) {
      return OpenSslError("configuring RSA-PSS");
    }
  }
  return ctx;
}

template <typename I2d, typename T>
StatusOr<Bytes> Encode(I2d i2d, T* obj, std::string_view what) {
  unsigned char* der = nullptr;
  int len = i2d(obj, &der);
  if (len <= 0 || der == nullptr) return OpenSslError("encoding " + std::string(what));
  Bytes out(der, der + len);
  OPENSSL_free(der);
  return out;
}

// Overwrites signature bits in place; OpenSSL exposes them only as const, but
// they are plain data owned by the object we are building.
Status ReplaceSignatureBits(const ASN1_BIT_STRING* bits, ByteView signature) {
  auto* mutable_bits = const_cast<ASN1_BIT_STRING*>(bits);
  if (ASN1_BIT_STRING_set(mutable_bits, const_cast<unsigned char*>(signature.data()),
                          static_cast<int>(signature.size())) != 1) {
    return OpenSslError("storing signature");
  }
  // Zero unused bits, stated explicitly, as ASN1_item_sign does.
  mutable_bits->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
  mutable_bits->flags |= ASN1_STRING_FLAG_BITS_LEFT;
  return Status::Ok();
}

StatusOr<EvpPkeyPtr> BackendPublicKey(const BackendKey& key) {
  if (key.backend == nullptr) return InternalError("no backend for the signing key");
  ASSIGN_OR_RETURN(Bytes spki, key.backend->PublicKeySpkiDer(key.key_uri));
  return PublicKeyFromSpkiDer(spki);
}

Status SetTime(ASN1_TIME* field, TimePoint t) {
  time_t secs = std::chrono::system_clock::to_time_t(t);
  if (ASN1_TIME_set(field, secs) == nullptr) return OpenSslError("setting a time field");
  return Status::Ok();
}

TimePoint FromAsn1Time(const ASN1_TIME* t) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return TimePoint{};
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

StatusOr<Asn1IntegerPtr> SerialToAsn1(ByteView serial) {
  if (serial.empty()) return InvalidArgumentError("serial number is empty");
  BignumPtr bn(BN_bin2bn(serial.data(), static_cast<int>(serial.size()), nullptr));
  if (!bn) return OpenSslError("parsing serial");
  Asn1IntegerPtr out(BN_to_ASN1_INTEGER(bn.get(), nullptr));
  if (!out) return OpenSslError("encoding serial");
  return out;
}

Status AddExtension(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
  X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value));
  if (!ext) return OpenSslError(std::string("building extension ") + OBJ_nid2sn(nid));
  if (X509_add_ext(cert, ext.get(), -1) != 1) return OpenSslError("adding extension");
  return Status::Ok();
}

}  // namespace

StatusOr<Bytes> SignMessageWithBackend(const BackendKey& key, ByteView message) {
  if (key.backend == nullptr) return InternalError("no backend for the signing key");
  if (FamilyOf(key.algorithm) == KeyFamily::kEdDsa) {
    return key.backend->SignMessage(key.key_uri, key.algorithm, message);
  }
  return key.backend->SignDigest(key.key_uri, key.algorithm, DigestFor(key.algorithm, message));
}

StatusOr<X509NamePtr> ParseDistinguishedName(std::string_view dn) {
  auto bad = [](const std::string& why) { return FieldError("cert_subject", "cert_subject " + why); };
  X509NamePtr name(X509_NAME_new());
  if (!name) return OpenSslError("allocating name");
  // OpenSSL's "/CN=a/O=b" form uses '/' as separator; the RFC 4514-like form ','.
  char sep = ',';
  if (!dn.empty() && dn.front() == '/') {
    sep = '/';
    dn.remove_prefix(1);
  }
  std::vector<std::string> parts(1);
  for (size_t i = 0; i < dn.size(); ++i) {
    char c = dn[i];
    if (c == '\\' && i + 1 < dn.size()) {
      parts.back().push_back(dn[++i]);
    } else if (c == sep) {
      parts.emplace_back();
    } else {
      parts.back().push_back(c);
    }
  }
  auto trim = [](std::string s) {
    while (!s.empty() && s.front() == ' ') s.erase(s.begin());
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s;
  };
  for (const std::string& raw : parts) {
    std::string part = trim(raw);
    size_t eq = part.find('=');
    if (eq == std::string::npos || eq == 0) return bad("must be KEY=VALUE pairs, e.g. 'CN=acme signing,O=Acme'");
    std::string key = trim(part.substr(0, eq));
    std::string value = trim(part.substr(eq + 1));
    if (value.empty()) return bad("has an empty value for " + key);
    if (OBJ_txt2nid(key.c_str()) == NID_undef) {
      ERR_clear_error();
      return bad("has an unknown attribute '" + key + "'");
    }
    if (X509_NAME_add_entry_by_txt(name.get(), key.c_str(), MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(value.data()),
                                   static_cast<int>(value.size()), -1, 0) != 1) {
      ERR_clear_error();
      return bad("has an invalid value for " + key);
    }
  }
  return name;
}

StatusOr<X509ReqPtr> CreateCsr(std::string_view subject, const BackendKey& key) {
  ASSIGN_OR_RETURN(X509NamePtr name, ParseDistinguishedName(subject));
  ASSIGN_OR_RETURN(EvpPkeyPtr pub, BackendPublicKey(key));
  X509ReqPtr req(X509_REQ_new());
  if (!req) return OpenSslError("allocating CSR");
  if (X509_REQ_set_version(req.get(), 0) != 1 || X509_REQ_set_subject_name(req.get(), name.get()) != 1 ||
      X509_REQ_set_pubkey(req.get(), pub.get()) != 1) {
    return OpenSslError("filling CSR");
  }
  // The template signature gives us the AlgorithmIdentifier (with the PSS
  // parameters) exactly as OpenSSL would write it for this key type.
  ASSIGN_OR_RETURN(EvpMdCtxPtr tctx, TemplateSignContext(key.algorithm));
  if (X509_REQ_sign_ctx(req.get(), tctx.get()) <= 0) return OpenSslError("preparing CSR signature");
  ASSIGN_OR_RETURN(Bytes tbs, Encode(i2d_re_X509_REQ_tbs, req.get(), "CertificationRequestInfo"));
  ASSIGN_OR_RETURN(Bytes sig, SignMessageWithBackend(key, tbs));
  ASN1_BIT_STRING* bits = ASN1_BIT_STRING_new();
  if (bits == nullptr) return OpenSslError("allocating signature");
  X509_REQ_set0_signature(req.get(), bits);  // req owns bits from here
  RETURN_IF_ERROR(ReplaceSignatureBits(bits, sig));
  if (X509_REQ_verify(req.get(), pub.get()) != 1) {
    return OpenSslError("CSR signature from the backend does not verify");
  }
  return req;
}

StatusOr<std::string> CsrToPem(X509_REQ* csr) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_REQ(bio.get(), csr) != 1) return OpenSslError("writing CSR PEM");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

StatusOr<X509Ptr> IssueCertificate(const CertificateTemplate& tmpl, const X509* issuer,
                                   const BackendKey& issuer_key) {
  ASSIGN_OR_RETURN(X509NamePtr subject, ParseDistinguishedName(tmpl.subject));
  ASSIGN_OR_RETURN(EvpPkeyPtr subject_key, PublicKeyFromSpkiDer(tmpl.subject_spki_der));
  ASSIGN_OR_RETURN(EvpPkeyPtr issuer_pub, BackendPublicKey(issuer_key));
  ASSIGN_OR_RETURN(Asn1IntegerPtr serial, SerialToAsn1(tmpl.serial));
  if (tmpl.not_after <= tmpl.not_before) return InvalidArgumentError("certificate validity window is empty");
  if (issuer == nullptr) {
    // Self-signed: a mismatch would yield a certificate nobody can verify.
    ASSIGN_OR_RETURN(Bytes issuer_spki, PublicKeyToSpkiDer(issuer_pub.get()));
    if (issuer_spki != tmpl.subject_spki_der) {
      return InvalidArgumentError("a self-signed certificate must certify the issuer's own key");
    }
  }
  X509Ptr cert(X509_new());
  if (!cert) return OpenSslError("allocating certificate");
  X509_NAME* issuer_name = issuer != nullptr ? X509_get_subject_name(issuer) : subject.get();
  if (X509_set_version(cert.get(), 2) != 1 || X509_set_serialNumber(cert.get(), serial.get()) != 1 ||
      X509_set_subject_name(cert.get(), subject.get()) != 1 ||
      X509_set_issuer_name(cert.get(), issuer_name) != 1 ||
      X509_set_pubkey(cert.get(), subject_key.get()) != 1) {
    return OpenSslError("filling certificate");
  }
  RETURN_IF_ERROR(SetTime(X509_getm_notBefore(cert.get()), tmpl.not_before));
  RETURN_IF_ERROR(SetTime(X509_getm_notAfter(cert.get()), tmpl.not_after));

  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  // Self-signed: the certificate is its own issuer, so the AKI comes from its SKI.
  X509V3_set_ctx(&ctx, issuer != nullptr ? const_cast<X509*>(issuer) : cert.get(), cert.get(), nullptr,
                 nullptr, 0);
  if (tmpl.profile == CertProfile::kCa) {
    RETURN_IF_ERROR(AddExtension(cert.get(), &ctx, NID_basic_constraints, "critical,CA:TRUE"));
    RETURN_IF_ERROR(AddExtension(cert.get(), &ctx, NID_key_usage, "critical,keyCertSign,cRLSign"));
  } else {
    RETURN_IF_ERROR(AddExtension(cert.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE"));
    RETURN_IF_ERROR(AddExtension(cert.get(), &ctx, NID_key_usage, "critical,digitalSignature"));
    // emailProtection is what C2PA validators have accepted longest; the C2PA
    // claim-signing OID names the purpose precisely. Not critical (RFC 5280).
    RETURN_IF_ERROR(AddExtension(cert.get(), &ctx, NID_ext_key_usage,
                                 (std::string("emailProtection,") + kC2paClaimSigningOid).c_str()));
  }
  RETURN_IF_ERROR(AddExtension(cert.get(), &ctx, NID_subject_key_identifier, "hash"));
  RETURN_IF_ERROR(AddExtension(cert.get(), &ctx, NID_authority_key_identifier, "keyid:always"));

  ASSIGN_OR_RETURN(EvpMdCtxPtr tctx, TemplateSignContext(issuer_key.algorithm));
  if (X509_sign_ctx(cert.get(), tctx.get()) <= 0) return OpenSslError("preparing certificate signature");
  ASSIGN_OR_RETURN(Bytes tbs, Encode(i2d_re_X509_tbs, cert.get(), "TBSCertificate"));
  ASSIGN_OR_RETURN(Bytes sig, SignMessageWithBackend(issuer_key, tbs));
  const ASN1_BIT_STRING* bits = nullptr;
  const X509_ALGOR* alg = nullptr;
  X509_get0_signature(&bits, &alg, cert.get());
  RETURN_IF_ERROR(ReplaceSignatureBits(bits, sig));
  // Re-parse so every cached field (hashes, extension flags) matches the DER.
  ASSIGN_OR_RETURN(Bytes der, Encode(i2d_X509, cert.get(), "certificate"));
  ASSIGN_OR_RETURN(X509Ptr out, CertificateFromDer(der));
  if (X509_verify(out.get(), issuer_pub.get()) != 1) {
    return OpenSslError("certificate signature from the backend does not verify");
  }
  return out;
}

StatusOr<X509CrlPtr> IssueCrl(const X509* ca, const BackendKey& ca_key, const std::vector<RevokedSerial>& revoked,
                              TimePoint this_update, TimePoint next_update, int64_t crl_number) {
  ASSIGN_OR_RETURN(EvpPkeyPtr ca_pub, BackendPublicKey(ca_key));
  X509CrlPtr crl(X509_CRL_new());
  if (!crl) return OpenSslError("allocating CRL");
  if (X509_CRL_set_version(crl.get(), 1) != 1 ||
      X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca)) != 1) {
    return OpenSslError("filling CRL");
  }
  Asn1TimePtr t(ASN1_TIME_new());
  if (!t) return OpenSslError("allocating time");
  RETURN_IF_ERROR(SetTime(t.get(), this_update));
  if (X509_CRL_set1_lastUpdate(crl.get(), t.get()) != 1) return OpenSslError("setting thisUpdate");
  RETURN_IF_ERROR(SetTime(t.get(), next_update));
  if (X509_CRL_set1_nextUpdate(crl.get(), t.get()) != 1) return OpenSslError("setting nextUpdate");
  for (const RevokedSerial& r : revoked) {
    X509RevokedPtr entry(X509_REVOKED_new());
    ASSIGN_OR_RETURN(Asn1IntegerPtr serial, SerialToAsn1(r.serial));
    RETURN_IF_ERROR(SetTime(t.get(), r.revoked_at));
    if (!entry || X509_REVOKED_set_serialNumber(entry.get(), serial.get()) != 1 ||
        X509_REVOKED_set_revocationDate(entry.get(), t.get()) != 1 ||
        X509_CRL_add0_revoked(crl.get(), entry.get()) != 1) {
      return OpenSslError("adding revoked serial");
    }
    (void)entry.release();  // owned by the CRL
  }
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, const_cast<X509*>(ca), nullptr, nullptr, crl.get(), 0);
  {
    X509ExtensionPtr aki(X509V3_EXT_conf_nid(nullptr, &ctx, NID_authority_key_identifier, "keyid:always"));
    if (!aki || X509_CRL_add_ext(crl.get(), aki.get(), -1) != 1) return OpenSslError("adding CRL AKI");
    Asn1IntegerPtr number(ASN1_INTEGER_new());
    if (!number || ASN1_INTEGER_set_int64(number.get(), crl_number) != 1 ||
        X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, number.get(), 0, 0) != 1) {
      return OpenSslError("adding CRL number");
    }
  }
  X509_CRL_sort(crl.get());
  ASSIGN_OR_RETURN(EvpMdCtxPtr tctx, TemplateSignContext(ca_key.algorithm));
  if (X509_CRL_sign_ctx(crl.get(), tctx.get()) <= 0) return OpenSslError("preparing CRL signature");
  ASSIGN_OR_RETURN(Bytes tbs, Encode(i2d_re_X509_CRL_tbs, crl.get(), "TBSCertList"));
  ASSIGN_OR_RETURN(Bytes sig, SignMessageWithBackend(ca_key, tbs));
  const ASN1_BIT_STRING* bits = nullptr;
  const X509_ALGOR* alg = nullptr;
  X509_CRL_get0_signature(crl.get(), &bits, &alg);
  RETURN_IF_ERROR(ReplaceSignatureBits(bits, sig));
  ASSIGN_OR_RETURN(Bytes der, Encode(i2d_X509_CRL, crl.get(), "CRL"));
  const unsigned char* p = der.data();
  X509CrlPtr out(d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size())));
  if (!out) return OpenSslError("re-reading CRL");
  if (X509_CRL_verify(out.get(), ca_pub.get()) != 1) {
    return OpenSslError("CRL signature from the backend does not verify");
  }
  return out;
}

StatusOr<std::string> CrlToPem(X509_CRL* crl) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_CRL(bio.get(), crl) != 1) return OpenSslError("writing CRL PEM");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

StatusOr<Bytes> CrlToDer(X509_CRL* crl) { return Encode(i2d_X509_CRL, crl, "CRL"); }

StatusOr<std::string> CertificateToPem(const X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), const_cast<X509*>(cert)) != 1) {
    return OpenSslError("writing certificate PEM");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

StatusOr<Bytes> CertificateToDer(const X509* cert) { return Encode(i2d_X509, const_cast<X509*>(cert), "certificate"); }

StatusOr<X509Ptr> CertificateFromDer(ByteView der) {
  const unsigned char* p = der.data();
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert || p != der.data() + der.size()) {
    ERR_clear_error();
    return InvalidArgumentError("not a DER certificate");
  }
  return cert;
}

StatusOr<std::vector<X509Ptr>> CertificatesFromPem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return OpenSslError("reading PEM");
  std::vector<X509Ptr> out;
  while (true) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) break;
    out.push_back(std::move(cert));
  }
  ERR_clear_error();  // the loop ends on "no start line", which is expected
  if (out.empty()) return InvalidArgumentError("no PEM certificate found");
  return out;
}

StatusOr<X509Ptr> CertificateFromPem(std::string_view pem) {
  ASSIGN_OR_RETURN(std::vector<X509Ptr> certs, CertificatesFromPem(pem));
  return std::move(certs.front());
}

bool IsSelfSigned(const X509* cert) {
  X509* c = const_cast<X509*>(cert);  // X509_check_issued caches parsed extensions
  if (X509_check_issued(c, c) != X509_V_OK) return false;
  EVP_PKEY* key = X509_get0_pubkey(c);
  bool ok = key != nullptr && X509_verify(c, key) == 1;
  ERR_clear_error();
  return ok;
}

std::string SerialHex(const X509* cert) {
  BignumPtr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
  if (!bn) return "";
  Bytes raw(static_cast<size_t>(BN_num_bytes(bn.get())));
  BN_bn2bin(bn.get(), raw.data());
  return HexEncode(raw);
}

StatusOr<Bytes> CertificateSpkiDer(const X509* cert) {
  EVP_PKEY* key = X509_get0_pubkey(cert);
  if (key == nullptr) return InvalidArgumentError("certificate has no usable public key");
  return PublicKeyToSpkiDer(key);
}

TimePoint NotBefore(const X509* cert) { return FromAsn1Time(X509_get0_notBefore(cert)); }
TimePoint NotAfter(const X509* cert) { return FromAsn1Time(X509_get0_notAfter(cert)); }

namespace {
std::string NameString(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) return "";
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}
}  // namespace

std::string SubjectString(const X509* cert) { return NameString(X509_get_subject_name(cert)); }
std::string IssuerString(const X509* cert) { return NameString(X509_get_issuer_name(cert)); }

Status VerifyChain(const std::vector<X509Ptr>& chain, TimePoint at) {
  if (chain.empty()) return InvalidArgumentError("certificate chain is empty");
  X509* root = chain.back().get();
  if (chain.size() < 2 || (X509_get_extension_flags(root) & EXFLAG_SS) == 0) {
    return FailedPreconditionError(
        "the chain must end with the self-signed root CA certificate (leaf first, root last)");
  }
  X509StorePtr store(X509_STORE_new());
  X509StackPtr untrusted(sk_X509_new_null());
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!store || !untrusted || !ctx || X509_STORE_add_cert(store.get(), root) != 1) {
    return OpenSslError("preparing chain verification");
  }
  for (size_t i = 1; i + 1 < chain.size(); ++i) {
    if (sk_X509_push(untrusted.get(), chain[i].get()) <= 0) return OpenSslError("adding intermediate");
  }
  if (X509_STORE_CTX_init(ctx.get(), store.get(), chain.front().get(), untrusted.get()) != 1) {
    return OpenSslError("preparing chain verification");
  }
  X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx.get()), std::chrono::system_clock::to_time_t(at));
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    return FailedPreconditionError(std::string("certificate chain does not verify: ") +
                                   X509_verify_cert_error_string(err));
  }
  return Status::Ok();
}

Status CheckSignerCertificate(const X509* leaf, TimePoint at) {
  X509* cert = const_cast<X509*>(leaf);  // the flag accessors cache parsed extensions
  time_t t = std::chrono::system_clock::to_time_t(at);
  if (X509_cmp_time(X509_get0_notBefore(cert), &t) > 0) {
    return FailedPreconditionError("certificate is not valid yet (notBefore " +
                                   FormatRfc3339(NotBefore(cert)) + ")");
  }
  if (X509_cmp_time(X509_get0_notAfter(cert), &t) < 0) {
    return FailedPreconditionError("certificate has expired (notAfter " + FormatRfc3339(NotAfter(cert)) + ")");
  }
  if (X509_check_ca(cert) != 0) {
    return FailedPreconditionError("a CA certificate cannot be a C2PA signing certificate");
  }
  uint32_t ku = X509_get_key_usage(cert);
  if (ku == UINT32_MAX || (ku & KU_DIGITAL_SIGNATURE) == 0) {
    return FailedPreconditionError("certificate keyUsage must include digitalSignature");
  }
  auto* eku = static_cast<EXTENDED_KEY_USAGE*>(X509_get_ext_d2i(cert, NID_ext_key_usage, nullptr, nullptr));
  bool fits = false;
  if (eku != nullptr) {
    for (int i = 0; i < sk_ASN1_OBJECT_num(eku); ++i) {
      char oid[80];
      OBJ_obj2txt(oid, sizeof oid, sk_ASN1_OBJECT_value(eku, i), 1);
      fits = fits || std::string_view(oid) == kEmailProtectionOid || std::string_view(oid) == kC2paClaimSigningOid;
    }
    EXTENDED_KEY_USAGE_free(eku);
  }
  if (!fits) {
    return FailedPreconditionError(std::string("certificate extendedKeyUsage must include id-kp-emailProtection (") +
                                   kEmailProtectionOid + ") or C2PA claim signing (" + kC2paClaimSigningOid + ")");
  }
  return Status::Ok();
}

}  // namespace concierge::crypto
