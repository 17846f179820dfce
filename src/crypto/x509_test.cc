#include "crypto/x509.h"

#include <gtest/gtest.h>

#include <chrono>

#include "backends/software/software_backend.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "testing/test_util.h"

namespace concierge::crypto {
namespace {

using ::concierge::testing::RunCommand;
using ::concierge::testing::TempDir;
using ::concierge::testing::WriteFile;

class X509Test : public ::testing::Test {
 protected:
  void SetUp() override {
    backends::SoftwareKeystoreOptions o;
    o.dir = dir_.File("keystore");
    auto b = backends::SoftwareBackend::Create(std::move(o));
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    backend_ = *std::move(b);
  }

  BackendKey NewKey(Algorithm alg, const std::string& label) {
    auto k = backend_->GenerateKey(KeySpec{alg, label, ""});
    EXPECT_TRUE(k.ok()) << k.status().ToString();
    spki_[label] = k.ok() ? k->public_key_spki_der : Bytes{};
    return BackendKey{backend_.get(), k.ok() ? k->uri : "", alg};
  }

  std::string Openssl(const std::string& args) {
    auto r = RunCommand("openssl " + args + " 2>&1");
    EXPECT_EQ(r.exit_code, 0) << "openssl " << args << "\n" << r.output;
    return r.output;
  }

  TempDir dir_;
  std::unique_ptr<backends::SoftwareBackend> backend_;
  std::map<std::string, Bytes> spki_;
};

TEST_F(X509Test, ParsesDistinguishedNames) {
  EXPECT_TRUE(ParseDistinguishedName("CN=acme signing,O=Acme News").ok());
  EXPECT_TRUE(ParseDistinguishedName("/CN=acme/O=Acme").ok());
  EXPECT_TRUE(ParseDistinguishedName("CN=a\\, b").ok());
  for (const char* bad : {"", "acme", "CN=", "XX=1", "=x"}) {
    auto n = ParseDistinguishedName(bad);
    EXPECT_EQ(n.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(n.status().details().at("field"), "cert_subject");
  }
}

TEST_F(X509Test, CsrSignedByBackendVerifiesWithOpenssl) {
  for (Algorithm alg : {Algorithm::kES256, Algorithm::kES384, Algorithm::kPS256, Algorithm::kEd25519}) {
    std::string label = "csr-" + std::string(AlgorithmName(alg));
    BackendKey key = NewKey(alg, label);
    auto csr = CreateCsr("CN=acme-news C2PA signing,O=Acme News", key);
    ASSERT_TRUE(csr.ok()) << AlgorithmName(alg) << ": " << csr.status().ToString();
    auto pem = CsrToPem(csr->get());
    ASSERT_TRUE(pem.ok());
    std::string path = dir_.File(label + ".csr");
    WriteFile(path, *pem);
    std::string out = Openssl("req -verify -noout -in " + path);
    EXPECT_NE(out.find("verify OK"), std::string::npos) << out;
    std::string text = Openssl("req -noout -text -in " + path);
    EXPECT_NE(text.find("Acme News"), std::string::npos) << text;
    if (alg == Algorithm::kPS256) {
      EXPECT_NE(text.find("rsassaPss"), std::string::npos) << text;
    }
    // The CSR carries the backend key, not the template key.
    auto pub = PublicKeyFromPem(Openssl("req -noout -pubkey -in " + path));
    ASSERT_TRUE(pub.ok());
    EXPECT_EQ(*PublicKeyToSpkiDer(pub->get()), spki_[label]);
  }
}

TEST_F(X509Test, IssuesChainCrlAndChecksProfiles) {
  auto now = std::chrono::system_clock::now();
  BackendKey ca_key = NewKey(Algorithm::kES384, "ca");
  CertificateTemplate ca_tmpl{"CN=Concierge Test CA,O=Test", spki_["ca"], RandomBytes(16),
                              now - std::chrono::hours(1), now + std::chrono::hours(24 * 365),
                              CertProfile::kCa};
  auto ca = IssueCertificate(ca_tmpl, nullptr, ca_key);
  ASSERT_TRUE(ca.ok()) << ca.status().ToString();

  for (Algorithm alg : {Algorithm::kES256, Algorithm::kPS256, Algorithm::kEd25519}) {
    std::string label = "leaf-" + std::string(AlgorithmName(alg));
    NewKey(alg, label);
    CertificateTemplate leaf_tmpl{"CN=acme-news C2PA signing", spki_[label], RandomBytes(16),
                                  now - std::chrono::minutes(5), now + std::chrono::hours(24 * 30),
                                  CertProfile::kC2paSigner};
    auto leaf = IssueCertificate(leaf_tmpl, ca->get(), ca_key);
    ASSERT_TRUE(leaf.ok()) << leaf.status().ToString();
    WriteFile(dir_.File("ca.pem"), *CertificateToPem(ca->get()));
    WriteFile(dir_.File(label + ".pem"), *CertificateToPem(leaf->get()));
    std::string out = Openssl("verify -CAfile " + dir_.File("ca.pem") + " " + dir_.File(label + ".pem"));
    EXPECT_NE(out.find("OK"), std::string::npos) << out;
    std::string text = Openssl("x509 -noout -text -in " + dir_.File(label + ".pem"));
    EXPECT_NE(text.find("E-mail Protection"), std::string::npos) << text;
    EXPECT_NE(text.find(kC2paClaimSigningOid), std::string::npos) << text;
    EXPECT_NE(text.find("Digital Signature"), std::string::npos) << text;
    EXPECT_NE(text.find("CA:FALSE"), std::string::npos) << text;

    std::vector<X509Ptr> chain;
    chain.push_back(std::move(*leaf));
    chain.push_back(X509Ptr(X509_dup(ca->get())));
    EXPECT_TRUE(VerifyChain(chain, now).ok()) << VerifyChain(chain, now).ToString();
    EXPECT_TRUE(CheckSignerCertificate(chain[0].get(), now).ok());
    EXPECT_EQ(CheckSignerCertificate(chain[0].get(), now + std::chrono::hours(24 * 31)).code(),
              StatusCode::kFailedPrecondition);
    EXPECT_EQ(*CertificateSpkiDer(chain[0].get()), spki_[label]);
  }
  std::string ca_text = Openssl("x509 -noout -text -in " + dir_.File("ca.pem"));
  EXPECT_NE(ca_text.find("CA:TRUE"), std::string::npos) << ca_text;
  EXPECT_NE(ca_text.find("Certificate Sign, CRL Sign"), std::string::npos) << ca_text;
  EXPECT_EQ(CheckSignerCertificate(ca->get(), now).code(), StatusCode::kFailedPrecondition);

  Bytes revoked_serial = {0x0a, 0xbc, 0xde, 0xf1};
  auto crl = IssueCrl(ca->get(), ca_key, {{revoked_serial, now}}, now, now + std::chrono::hours(24 * 7), 7);
  ASSERT_TRUE(crl.ok()) << crl.status().ToString();
  WriteFile(dir_.File("ca.crl"), *CrlToPem(crl->get()));
  std::string crl_text = Openssl("crl -noout -text -CAfile " + dir_.File("ca.pem") + " -in " + dir_.File("ca.crl"));
  EXPECT_NE(crl_text.find("0ABCDEF1"), std::string::npos) << crl_text;
  EXPECT_NE(crl_text.find("verify OK"), std::string::npos) << crl_text;
}

TEST_F(X509Test, ChainWithoutRootOrWrongRootIsRefused) {
  auto now = std::chrono::system_clock::now();
  BackendKey ca_key = NewKey(Algorithm::kES256, "ca1");
  BackendKey other_key = NewKey(Algorithm::kES256, "ca2");
  NewKey(Algorithm::kES256, "leaf");
  auto make_ca = [&](const BackendKey& k, const std::string& label) {
    CertificateTemplate t{"CN=" + label, spki_[label], RandomBytes(16), now - std::chrono::hours(1),
                          now + std::chrono::hours(48), CertProfile::kCa};
    return IssueCertificate(t, nullptr, k);
  };
  auto ca1 = make_ca(ca_key, "ca1");
  auto ca2 = make_ca(other_key, "ca2");
  ASSERT_TRUE(ca1.ok() && ca2.ok());
  CertificateTemplate lt{"CN=leaf", spki_["leaf"], RandomBytes(16), now - std::chrono::hours(1),
                         now + std::chrono::hours(24), CertProfile::kC2paSigner};
  auto leaf = IssueCertificate(lt, ca1->get(), ca_key);
  ASSERT_TRUE(leaf.ok());
  std::vector<X509Ptr> only_leaf;
  only_leaf.push_back(X509Ptr(X509_dup(leaf->get())));
  EXPECT_EQ(VerifyChain(only_leaf, now).code(), StatusCode::kFailedPrecondition);
  std::vector<X509Ptr> wrong_root;
  wrong_root.push_back(X509Ptr(X509_dup(leaf->get())));
  wrong_root.push_back(X509Ptr(X509_dup(ca2->get())));
  Status st = VerifyChain(wrong_root, now);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("does not verify"), std::string::npos) << st.ToString();
}

}  // namespace
}  // namespace concierge::crypto
