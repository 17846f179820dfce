#include "evidence/pack_format.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include "crypto/keys.h"
#include "crypto/x509.h"

namespace concierge::evidence::internal {
namespace {

StatusOr<std::string> CsrKeyFingerprint(std::string_view pem) {
  crypto::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return crypto::OpenSslError("allocating BIO");
  crypto::X509ReqPtr req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (!req) {
    ERR_clear_error();
    return InvalidArgumentError("not a PEM certificate request");
  }
  EVP_PKEY* key = X509_REQ_get0_pubkey(req.get());  // owned by req
  if (key == nullptr) return InvalidArgumentError("certificate request has no public key");
  ASSIGN_OR_RETURN(Bytes spki, crypto::PublicKeyToSpkiDer(key));
  return crypto::SpkiFingerprint(spki);
}

StatusOr<std::string> CertificateKeyFingerprint(const X509* cert) {
  ASSIGN_OR_RETURN(Bytes spki, crypto::CertificateSpkiDer(cert));
  return crypto::SpkiFingerprint(spki);
}

}  // namespace

std::string DigestLines(const std::vector<std::pair<std::string, std::string>>& name_and_digest) {
  std::string out;
  for (const auto& [name, digest] : name_and_digest) out += digest + "  " + name + "\n";
  return out;
}

StatusOr<std::string> PemKeyFingerprint(std::string_view spki_pem) {
  // Hashes the DER inside the armour without decoding the key: OpenSSL 3.0's
  // key decoders cost ~0.4 ms each, and DER is canonical, so the bytes are
  // the SPKI that any re-encoding would produce (non-DER input simply gives
  // a fingerprint that matches nothing).
  crypto::BioPtr bio(BIO_new_mem_buf(spki_pem.data(), static_cast<int>(spki_pem.size())));
  if (!bio) return crypto::OpenSslError("allocating BIO");
  char* name = nullptr;
  char* header = nullptr;
  unsigned char* der = nullptr;
  long len = 0;
  if (PEM_read_bio(bio.get(), &name, &header, &der, &len) != 1) {
    ERR_clear_error();
    return InvalidArgumentError("not a PEM public key");
  }
  const bool is_public_key = std::string_view(name) == PEM_STRING_PUBLIC;
  std::string fingerprint = crypto::SpkiFingerprint(ByteView(der, static_cast<size_t>(len)));
  OPENSSL_free(name);
  OPENSSL_free(header);
  OPENSSL_free(der);
  if (!is_public_key) return InvalidArgumentError("PEM block is not a PUBLIC KEY");
  return fingerprint;
}

std::vector<Mismatch> CertificateMismatches(std::string_view new_key_fingerprint, std::string_view csr_pem,
                                            std::string_view certificate_pem, std::string_view chain_pem,
                                            TimePoint at) {
  std::vector<Mismatch> out;
  const std::string expected(new_key_fingerprint);
  if (!csr_pem.empty()) {
    auto fp = CsrKeyFingerprint(csr_pem);
    if (!fp.ok()) {
      out.push_back({"csr.pem", "cannot parse the CSR: " + fp.status().message()});
    } else if (*fp != expected) {
      out.push_back({"csr.pem", "CSR public key " + *fp + " is not the new key " + expected});
    }
  }
  if (certificate_pem.empty()) return out;
  auto cert = crypto::CertificateFromPem(certificate_pem);
  if (!cert.ok()) {
    out.push_back({"certificate.pem", "cannot parse the certificate: " + cert.status().message()});
    return out;
  }
  auto fp = CertificateKeyFingerprint(cert->get());
  if (!fp.ok() || *fp != expected) {
    out.push_back({"certificate.pem", "certificate public key " + (fp.ok() ? *fp : fp.status().message()) +
                                          " is not the new key " + expected});
  }
  if (chain_pem.empty()) return out;
  auto chain = crypto::CertificatesFromPem(chain_pem);
  if (!chain.ok()) {
    out.push_back({"chain.pem", "cannot parse the chain: " + chain.status().message()});
    return out;
  }
  if (X509_cmp(chain->front().get(), cert->get()) != 0) {
    out.push_back({"chain.pem", "chain does not start with the certificate in certificate.pem"});
    return out;
  }
  Status st = crypto::VerifyChain(*chain, at);
  if (!st.ok()) out.push_back({"chain.pem", "chain does not verify: " + st.message()});
  return out;
}

}  // namespace concierge::evidence::internal
