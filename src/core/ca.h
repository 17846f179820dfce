// CertificateService: certificates of tenant keys, from the built-in issuing CA
// or imported from an external CA, plus the built-in CA's CRL.
//
// The built-in CA is for development and private deployments: its key is
// generated in a backend (the software keystore by default) and never leaves
// it; certificates and CRLs are signed through KeyBackend (crypto/x509.h).
// End-entity certificates follow the C2PA signer profile: keyUsage
// digitalSignature (critical), EKU id-kp-emailProtection + the C2PA
// claim-signing OID, CA:FALSE, validity from the policy's cert_validity_days,
// random 128-bit serial. Imported chains must match the tenant's active key,
// build to their own root, fit that profile and be valid now; a refused import
// changes nothing.
//
// The active key's chain is cached in memory for the sign path (COSE x5chain);
// changes made through this service invalidate it at once, changes made by
// another process sharing the database within kCacheTtl. Thread-safe.
#ifndef CONCIERGE_CORE_CA_H_
#define CONCIERGE_CORE_CA_H_

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "concierge/clock.h"
#include "concierge/key_backend.h"
#include "concierge/store.h"
#include "core/policy.h"
#include "core/tenant_service.h"

namespace concierge::core {

// Immutable snapshot of a key's usable certificate chain.
struct CertChain {
  std::string key_id;
  std::string serial;
  std::string chain_pem;   // end-entity first
  std::vector<Bytes> der;  // same order
  // What goes into COSE x5chain and c2patool's sign_cert: the chain without a
  // trailing self-signed root, which verifiers must take from their own trust
  // list (c2patool documents sign_cert as "end-entity to intermediate CA").
  std::vector<Bytes> signing_der;
  std::string signing_pem;
  TimePoint not_before{};
  TimePoint not_after{};
};

struct CaInitOptions {
  Algorithm algorithm = Algorithm::kES256;
  std::string subject = "CN=C2-Concierge Issuing CA";
  int validity_days = 3650;
  std::string provider = "software";
};

struct CrlBundle {
  std::string pem;
  Bytes der;
  int64_t number = 0;
  size_t revoked_count = 0;
};

// "CN=<tenant> C2PA signing" unless the policy names a subject.
std::string CertificateSubjectFor(const Policy& policy);

class CertificateService {
 public:
  CertificateService(Store& store, BackendRegistry& backends, TenantService& tenants, Clock& clock)
      : store_(store), backends_(backends), tenants_(tenants), clock_(clock) {}

  // kAlreadyExists when initialised before; kFailedPrecondition when the
  // provider is not configured. The CA key is destroyed if storing fails.
  StatusOr<CaRecord> InitCa(const CaInitOptions& options);
  // FailedPrecondition "the built-in CA is not initialised: run keyctl ca init".
  StatusOr<CaRecord> Ca();
  bool CaInitialised();

  // Issues, stores and returns a certificate for `key` from the built-in CA.
  StatusOr<CertificateRecord> IssueForKey(const KeyRecord& key, const Policy& policy);
  // Issues for the tenant's active key with its active policy.
  StatusOr<CertificateRecord> IssueForTenant(const std::string& tenant_id);
  // Checks and stores an external chain (PEM, end-entity first, root last) for
  // the tenant's active key, or for its "pending" key (a rotation waiting in
  // awaiting_certificate) - whichever the end-entity certificate certifies.
  // InvalidArgument naming "chain_pem" when refused.
  StatusOr<CertificateRecord> Import(const std::string& tenant_id, const std::string& chain_pem);
  // Revokes the active key's current certificate; a built-in CA certificate
  // then appears on the CRL. FailedPrecondition when there is none.
  StatusOr<CertificateRecord> Revoke(const std::string& tenant_id);
  // Revokes `key`'s current certificate, whether or not the key is still the
  // active one (incident playbooks revoke a compromised key after rotating
  // away from it). FailedPrecondition when it has none.
  StatusOr<CertificateRecord> RevokeKeyCertificate(const KeyRecord& key);

  // A PKCS#10 CSR (PEM) for the tenant's active key, signed by the key inside
  // its backend, with the policy's subject; for certification by an external CA.
  StatusOr<std::string> CsrPem(const std::string& tenant_id);

  // The chain of the key that signs right now (the active key, or the
  // standby key while the tenant is failed over). FailedPrecondition with guidance when
  // there is none, or it is revoked, expired or not yet valid.
  StatusOr<std::shared_ptr<const CertChain>> ActiveChain(const std::string& tenant_id);
  // The same for a given key, e.g. the active key of a snapshot the caller
  // already holds, so chain and signing key come from one consistent view.
  StatusOr<std::shared_ptr<const CertChain>> ChainFor(const KeyRecord& key);

  // The built-in CA's current CRL, signed through the CA's backend. Re-issued
  // after a revocation through this service and when older than a day.
  StatusOr<CrlBundle> Crl();

 private:
  static constexpr std::chrono::seconds kCacheTtl{30};
  struct CachedChain {
    std::shared_ptr<const CertChain> chain;
    TimePoint loaded_at;
  };

  void InvalidateKey(const std::string& key_id);

  Store& store_;
  BackendRegistry& backends_;
  TenantService& tenants_;
  Clock& clock_;
  std::mutex mu_;
  std::unordered_map<std::string, CachedChain> chains_;  // by key id; guarded by mu_
  std::optional<CrlBundle> crl_;                         // guarded by mu_
  TimePoint crl_issued_at_{};                            // guarded by mu_
  uint64_t crl_generation_ = 0;                          // guarded by mu_; bumped by Revoke
  std::mutex crl_mu_;  // serialises CRL issuance so numbers are not wasted
};

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_CA_H_
