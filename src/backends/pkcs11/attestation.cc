#include "backends/pkcs11/attestation.h"

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "crypto/openssl_util.h"

namespace concierge::backends::pkcs11 {

StatusOr<std::string> AttestationDerToPem(ByteView der) {
  if (der.empty()) return InvalidArgumentError("attestation is empty");
  std::string pem;
  const unsigned char* p = der.data();
  const unsigned char* end = der.data() + der.size();
  int count = 0;
  while (p < end) {
    const unsigned char* start = p;
    crypto::X509Ptr cert(d2i_X509(nullptr, &p, end - p));
    if (!cert || p <= start) {
      return crypto::OpenSslError("attestation certificate " + std::to_string(count + 1) + " is not valid DER X.509",
                                  StatusCode::kInvalidArgument);
    }
    crypto::BioPtr bio(BIO_new(BIO_s_mem()));
    if (!bio || PEM_write_bio_X509(bio.get(), cert.get()) != 1) {
      return crypto::OpenSslError("encoding attestation certificate as PEM");
    }
    char* data = nullptr;
    long len = BIO_get_mem_data(bio.get(), &data);
    pem.append(data, static_cast<size_t>(len));
    ++count;
    if (count > 8) return InvalidArgumentError("attestation chain has more than 8 certificates");
  }
  return pem;
}

StatusOr<bool> AttestationCoversKey(const std::string& pem, ByteView spki_der) {
  crypto::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  crypto::X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return crypto::OpenSslError("reading attestation certificate", StatusCode::kInvalidArgument);
  unsigned char* out = nullptr;
  int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert.get()), &out);
  if (len <= 0) return crypto::OpenSslError("encoding attestation public key");
  bool same = static_cast<size_t>(len) == spki_der.size() && std::equal(spki_der.begin(), spki_der.end(), out);
  OPENSSL_free(out);
  return same;
}

}  // namespace concierge::backends::pkcs11
