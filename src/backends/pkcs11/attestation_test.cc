// Attestation parsing, with certificates made here by OpenSSL (no YubiHSM2 is
// available to record a real one; see docs/pkcs11.md).
#include "backends/pkcs11/attestation.h"

#include <gtest/gtest.h>
#include <openssl/x509.h>

#include "crypto/keys.h"

namespace concierge::backends::pkcs11 {
namespace {

// A self-signed certificate for a fresh P-256 key, as DER; *spki gets the key.
Bytes MakeCert(const std::string& cn, Bytes* spki) {
  auto key = crypto::GenerateKeyPair(Algorithm::kES256);
  EXPECT_TRUE(key.ok());
  *spki = *crypto::PublicKeyToSpkiDer(key->get());
  crypto::X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 42);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509_set_pubkey(cert.get(), key->get());
  EXPECT_GT(X509_sign(cert.get(), key->get(), EVP_sha256()), 0);
  unsigned char* der = nullptr;
  int len = i2d_X509(cert.get(), &der);
  Bytes out(der, der + len);
  OPENSSL_free(der);
  return out;
}

TEST(AttestationTest, SingleCertificateToPem) {
  Bytes spki, other_spki;
  Bytes der = MakeCert("YubiHSM Attestation (test)", &spki);
  MakeCert("unrelated", &other_spki);
  auto pem = AttestationDerToPem(der);
  ASSERT_TRUE(pem.ok()) << pem.status().ToString();
  EXPECT_TRUE(pem->starts_with("-----BEGIN CERTIFICATE-----\n"));
  EXPECT_EQ(*AttestationCoversKey(*pem, spki), true);
  EXPECT_EQ(*AttestationCoversKey(*pem, other_spki), false);
}

TEST(AttestationTest, ChainKeepsOrder) {
  Bytes s1, s2;
  Bytes leaf = MakeCert("leaf", &s1);
  Bytes ca = MakeCert("ca", &s2);
  Bytes chain = leaf;
  chain.insert(chain.end(), ca.begin(), ca.end());
  auto pem = AttestationDerToPem(chain);
  ASSERT_TRUE(pem.ok());
  size_t first = pem->find("BEGIN CERTIFICATE");
  EXPECT_NE(pem->find("BEGIN CERTIFICATE", first + 1), std::string::npos);
  EXPECT_TRUE(*AttestationCoversKey(*pem, s1));  // the first certificate is the key's
}

TEST(AttestationTest, RejectsGarbage) {
  EXPECT_EQ(AttestationDerToPem({}).status().code(), StatusCode::kInvalidArgument);
  Bytes junk = {0x30, 0x03, 0x02, 0x01, 0x01};
  EXPECT_EQ(AttestationDerToPem(junk).status().code(), StatusCode::kInvalidArgument);
  Bytes spki;
  Bytes der = MakeCert("x", &spki);
  der.push_back(0x00);  // trailing garbage
  EXPECT_EQ(AttestationDerToPem(der).status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(AttestationCoversKey("not pem", spki).ok());
}

}  // namespace
}  // namespace concierge::backends::pkcs11
