// X.509 objects (CSRs, certificates, CRLs) whose signatures come from a
// KeyBackend, so the signing private key never leaves the backend (software
// keystore, HSM, KMS alike).
//
// Technique: OpenSSL builds and DER-encodes the to-be-signed part (the
// CertificationRequestInfo, TBSCertificate or TBSCertList); we hash that DER
// with the algorithm's digest, ask the backend to sign the digest, and put the
// signature bits and AlgorithmIdentifier into the object. For CSRs OpenSSL has
// setters for both. Certificates and CRLs also carry the AlgorithmIdentifier
// *inside* the signed part, and OpenSSL 3.0 has no public setter for it; for
// those we first sign with a cached throwaway key of the same type so OpenSSL
// fills in both AlgorithmIdentifiers exactly as it would for the real key, then
// replace the signature bits with the backend's signature over the same TBS.
//
// Signature conventions: ECDSA ecdsa-with-SHA256/384/512 (DER value, what the
// backend returns); RSASSA-PSS with MGF1 of the same hash and salt = digest
// length; Ed25519 as PureEdDSA over the whole TBS (RFC 8410), through
// KeyBackend::SignMessage, so it needs a backend that implements that.
//
// Thread-safe: functions share only the template-key cache, which is guarded.
#ifndef CONCIERGE_CRYPTO_X509_H_
#define CONCIERGE_CRYPTO_X509_H_

#include <openssl/x509.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "concierge/algorithm.h"
#include "concierge/clock.h"
#include "concierge/key_backend.h"
#include "crypto/openssl_util.h"

namespace concierge::crypto {

struct X509ReqDeleter { void operator()(X509_REQ* p) const { X509_REQ_free(p); } };
struct X509CrlDeleter { void operator()(X509_CRL* p) const { X509_CRL_free(p); } };
struct X509NameDeleter { void operator()(X509_NAME* p) const { X509_NAME_free(p); } };
using X509ReqPtr = std::unique_ptr<X509_REQ, X509ReqDeleter>;
using X509CrlPtr = std::unique_ptr<X509_CRL, X509CrlDeleter>;
using X509NamePtr = std::unique_ptr<X509_NAME, X509NameDeleter>;

// The C2PA claim-signing extended key usage (c2pa-rs valid_eku_oids.cfg lists
// it as "C2PA Signing").
inline constexpr char kC2paClaimSigningOid[] = "1.3.6.1.4.1.62558.2.1";
inline constexpr char kEmailProtectionOid[] = "1.3.6.1.5.5.7.3.4";

// A key living in a backend. Not owned.
struct BackendKey {
  KeyBackend* backend = nullptr;
  std::string key_uri;
  Algorithm algorithm = Algorithm::kES256;
};

// The backend's signature over `message` in the form X.509, COSE and signed
// files use: PureEdDSA over the whole message for Ed25519 (SignMessage),
// otherwise the algorithm's digest of it signed by SignDigest. Verify with
// VerifyMessage (signature.h) or `openssl dgst -verify` / `pkeyutl -rawin`.
StatusOr<Bytes> SignMessageWithBackend(const BackendKey& key, ByteView message);

// "CN=acme signing,O=Acme News" (RFC 4514 order as written, "\," escapes a
// comma) or OpenSSL's "/CN=acme/O=Acme". InvalidArgument naming cert_subject.
StatusOr<X509NamePtr> ParseDistinguishedName(std::string_view dn);

// A PKCS#10 request for the backend key's public key, self-signed through the
// backend (proof of possession without the key leaving it).
StatusOr<X509ReqPtr> CreateCsr(std::string_view subject, const BackendKey& key);
StatusOr<std::string> CsrToPem(X509_REQ* csr);

enum class CertProfile {
  kCa,         // basicConstraints CA:TRUE (critical), keyUsage keyCertSign+cRLSign
  kC2paSigner  // CA:FALSE, keyUsage digitalSignature (critical), EKU emailProtection+C2PA
};

struct CertificateTemplate {
  std::string subject;
  Bytes subject_spki_der;
  Bytes serial;  // big-endian magnitude, non-empty
  TimePoint not_before{};
  TimePoint not_after{};
  CertProfile profile = CertProfile::kC2paSigner;
};

// Issues a certificate signed by `issuer_key`. `issuer` null = self-signed
// (the subject key must then be issuer_key's).
StatusOr<X509Ptr> IssueCertificate(const CertificateTemplate& tmpl, const X509* issuer,
                                   const BackendKey& issuer_key);

struct RevokedSerial {
  Bytes serial;
  TimePoint revoked_at{};
};

StatusOr<X509CrlPtr> IssueCrl(const X509* ca, const BackendKey& ca_key,
                              const std::vector<RevokedSerial>& revoked, TimePoint this_update,
                              TimePoint next_update, int64_t crl_number);
StatusOr<std::string> CrlToPem(X509_CRL* crl);
StatusOr<Bytes> CrlToDer(X509_CRL* crl);

StatusOr<std::string> CertificateToPem(const X509* cert);
StatusOr<Bytes> CertificateToDer(const X509* cert);
StatusOr<X509Ptr> CertificateFromPem(std::string_view pem);
StatusOr<X509Ptr> CertificateFromDer(ByteView der);
// Every certificate in a PEM bundle, in order. InvalidArgument when none.
StatusOr<std::vector<X509Ptr>> CertificatesFromPem(std::string_view pem);

// Issuer == subject and the signature checks out under its own key (a root).
bool IsSelfSigned(const X509* cert);
std::string SerialHex(const X509* cert);  // lowercase, no separators
StatusOr<Bytes> CertificateSpkiDer(const X509* cert);
TimePoint NotBefore(const X509* cert);
TimePoint NotAfter(const X509* cert);
std::string SubjectString(const X509* cert);  // RFC 2253
std::string IssuerString(const X509* cert);

// Builds the path leaf -> ... -> the last certificate of `chain`, which must be
// self-signed and is the only trust anchor; the ones in between are untrusted
// intermediates. Checks signatures and validity at `at`. FailedPrecondition
// with OpenSSL's reason otherwise.
Status VerifyChain(const std::vector<X509Ptr>& chain, TimePoint at);

// The C2PA signer profile: keyUsage with digitalSignature, EKU with
// emailProtection or the C2PA OID, not a CA, valid at `at`. FailedPrecondition
// naming what is missing.
Status CheckSignerCertificate(const X509* leaf, TimePoint at);

}  // namespace concierge::crypto

#endif  // CONCIERGE_CRYPTO_X509_H_
