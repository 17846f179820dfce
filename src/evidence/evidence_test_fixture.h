// Test fixture for src/evidence: a software-backend keystore in a temp dir
// holding an evidence key, a CA, and a tenant's old and new keys, plus a
// realistic completed RotationEvidence built from them (real CSR and a real
// certificate chain). Not thread-safe; one per test.
#ifndef CONCIERGE_EVIDENCE_EVIDENCE_TEST_FIXTURE_H_
#define CONCIERGE_EVIDENCE_EVIDENCE_TEST_FIXTURE_H_

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "backends/software/software_backend.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "crypto/x509.h"
#include "evidence/evidence.h"
#include "testing/test_util.h"

namespace concierge::evidence {

class EvidenceFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    backends::SoftwareKeystoreOptions o;
    o.dir = dir_.File("keystore");
    auto b = backends::SoftwareBackend::Create(std::move(o));
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    backend_ = *std::move(b);
    ASSERT_TRUE(ParseRfc3339("2026-03-01T10:00:00Z", &base_));

    evidence_key_ = NewBackendKey(Algorithm::kES256, "evidence");
    ca_key_ = NewBackendKey(Algorithm::kES256, "ca");
    crypto::CertificateTemplate ca_tmpl{"CN=Evidence Test CA,O=Concierge Tests", spki_["ca"], {0x01},
                                        base_ - std::chrono::hours(24 * 30), base_ + std::chrono::hours(24 * 3650),
                                        crypto::CertProfile::kCa};
    auto ca = crypto::IssueCertificate(ca_tmpl, nullptr, ca_key_);
    ASSERT_TRUE(ca.ok()) << ca.status().ToString();
    ca_cert_ = *std::move(ca);

    old_key_ = NewKeyRecord(Algorithm::kES256, "acme-news-v1", 1, "retiring");
    new_key_ = NewKeyRecord(Algorithm::kES256, "acme-news-v2", 2, "active");
    auto [csr, cert] = CertifyKey(new_key_, {0x02});
    csr_pem_ = csr;
    cert_pem_ = cert;
  }

  crypto::BackendKey NewBackendKey(Algorithm alg, const std::string& label) {
    auto k = backend_->GenerateKey(KeySpec{alg, label, ""});
    EXPECT_TRUE(k.ok()) << k.status().ToString();
    if (!k.ok()) return {};
    spki_[label] = k->public_key_spki_der;
    return crypto::BackendKey{backend_.get(), k->uri, alg};
  }

  KeyRecord NewKeyRecord(Algorithm alg, const std::string& key_id, int64_t version, const std::string& state) {
    crypto::BackendKey k = NewBackendKey(alg, key_id);
    KeyRecord r;
    r.key_id = key_id;
    r.tenant_id = "acme-news";
    r.version = version;
    r.algorithm = std::string(AlgorithmName(alg));
    r.provider = "software";
    r.key_uri = k.key_uri;
    r.state = state;
    r.public_key_pem = *crypto::SpkiDerToPem(spki_[key_id]);
    r.fingerprint = crypto::SpkiFingerprint(spki_[key_id]);
    r.created_at = base_ - std::chrono::hours(1);
    r.activated_at = base_ + std::chrono::minutes(5);
    return r;
  }

  // A CSR made by the key itself and a C2PA signer certificate from the CA.
  std::pair<std::string, std::string> CertifyKey(const KeyRecord& key, Bytes serial) {
    crypto::BackendKey bk{backend_.get(), key.key_uri, *ParseAlgorithm(key.algorithm)};
    auto csr = crypto::CreateCsr("CN=acme signing,O=Acme News", bk);
    EXPECT_TRUE(csr.ok()) << csr.status().ToString();
    crypto::CertificateTemplate tmpl{"CN=acme signing,O=Acme News", spki_[key.key_id], std::move(serial),
                                     base_ - std::chrono::hours(1), base_ + std::chrono::hours(24 * 365),
                                     crypto::CertProfile::kC2paSigner};
    auto cert = crypto::IssueCertificate(tmpl, ca_cert_.get(), ca_key_);
    EXPECT_TRUE(cert.ok()) << cert.status().ToString();
    return {*crypto::CsrToPem(csr->get()), *crypto::CertificateToPem(cert->get())};
  }

  std::string CaPem() const { return *crypto::CertificateToPem(ca_cert_.get()); }

  RotationEvidence Evidence() const {
    RotationEvidence e;
    e.rotation_id = "rot-20260301-0001";
    e.tenant_id = "acme-news";
    e.outcome = "completed";
    e.scheduled_at = base_;
    e.started_at = base_ + std::chrono::seconds(2);
    e.finished_at = base_ + std::chrono::minutes(6);
    e.owner = "keys@acme.example";
    e.approver = "ciso@acme.example";
    e.policy.tenant_id = "acme-news";
    e.policy.version = 4;
    e.policy.body_json = R"({"algorithm":"ES256","canary_count":3,"rotate_every_days":90})";
    e.policy.policy_hash = crypto::Sha256Hex(crypto::AsBytes(e.policy.body_json));
    e.policy.created_by = "admin";
    e.policy.created_at = base_ - std::chrono::hours(48);
    e.old_key = old_key_;
    e.new_key = new_key_;
    e.csr_pem = csr_pem_;
    e.certificate_pem = cert_pem_;
    e.chain_pem = cert_pem_ + CaPem();
    for (int i = 0; i < 3; ++i) {
      e.canary_results.push_back({i, "test", crypto::Sha256Hex(crypto::AsBytes("canary " + std::to_string(i))),
                                  "3045022100aa0" + std::to_string(i), true, ""});
    }
    e.canary_results.push_back({3, "resample", crypto::Sha256Hex(crypto::AsBytes("ledger 17")), "3044aa", true,
                                "ledger entry 17, request \"r-9\", signed at 09:00"});
    e.canary_results.push_back({4, "resample", crypto::Sha256Hex(crypto::AsBytes("ledger 18")), "3044bb", true,
                                "two\nlines"});
    const char* phases[] = {"prepare", "generate", "certificate", "canary", "cutover", "validate"};
    for (int i = 0; i < 6; ++i) {
      e.timeline.push_back({phases[i], base_ + std::chrono::minutes(i), base_ + std::chrono::minutes(i + 1), "ok",
                            i == 4 ? "active key swapped <atomically>" : ""});
    }
    e.notes = "Quarterly rotation. <script>alert('x')</script> & done";
    return e;
  }

  testing::TempDir dir_;
  std::unique_ptr<backends::SoftwareBackend> backend_;
  std::map<std::string, Bytes> spki_;
  TimePoint base_{};
  crypto::BackendKey evidence_key_;
  crypto::BackendKey ca_key_;
  crypto::X509Ptr ca_cert_;
  KeyRecord old_key_;
  KeyRecord new_key_;
  std::string csr_pem_;
  std::string cert_pem_;
};

}  // namespace concierge::evidence

#endif  // CONCIERGE_EVIDENCE_EVIDENCE_TEST_FIXTURE_H_
