#include "core/ca.h"

#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "crypto/x509.h"

namespace concierge::core {
namespace {

// Verifiers' clocks drift; a certificate that starts "now" would be refused by
// one running a little behind.
constexpr auto kBackdate = std::chrono::minutes(5);
constexpr auto kCrlRefresh = std::chrono::hours(24);
constexpr auto kCrlValidity = std::chrono::hours(24 * 7);

Status NoCaError() {
  return FailedPreconditionError("the built-in CA is not initialised: run keyctl ca init (POST /api/v1/ca)");
}

Status NoCertificateError(const std::string& tenant_id, const std::string& key_id) {
  return FailedPreconditionError("no certificate for key '" + key_id + "' of tenant '" + tenant_id +
                                 "': run keyctl ca init or import one (keyctl cert import)");
}

// 128 random bits as a positive DER INTEGER of at most 16 bytes.
Bytes RandomSerial() {
  Bytes serial = crypto::RandomBytes(16);
  serial[0] &= 0x7f;
  if (serial[0] == 0) serial[0] = 0x01;  // keep the full 16 bytes significant
  return serial;
}

StatusOr<Bytes> SpkiFromPem(const std::string& pem) {
  ASSIGN_OR_RETURN(crypto::EvpPkeyPtr key, crypto::PublicKeyFromPem(pem));
  return crypto::PublicKeyToSpkiDer(key.get());
}

StatusOr<std::shared_ptr<const CertChain>> ToChain(const CertificateRecord& rec) {
  ASSIGN_OR_RETURN(std::vector<crypto::X509Ptr> certs, crypto::CertificatesFromPem(rec.chain_pem));
  auto chain = std::make_shared<CertChain>();
  chain->key_id = rec.key_id;
  chain->serial = rec.serial;
  chain->chain_pem = rec.chain_pem;
  chain->not_before = rec.not_before;
  chain->not_after = rec.not_after;
  for (size_t i = 0; i < certs.size(); ++i) {
    ASSIGN_OR_RETURN(Bytes der, crypto::CertificateToDer(certs[i].get()));
    bool is_root = i > 0 && i + 1 == certs.size() && crypto::IsSelfSigned(certs[i].get());
    if (!is_root) {
      chain->signing_der.push_back(der);
      ASSIGN_OR_RETURN(std::string pem, crypto::CertificateToPem(certs[i].get()));
      chain->signing_pem += pem;
    }
    chain->der.push_back(std::move(der));
  }
  return std::shared_ptr<const CertChain>(std::move(chain));
}

struct LoadedCa {
  CaRecord record;
  crypto::X509Ptr cert;
  crypto::BackendKey key;
};

}  // namespace

std::string CertificateSubjectFor(const Policy& policy) {
  if (!policy.cert_subject.empty()) return policy.cert_subject;
  return "CN=" + policy.tenant_id + " C2PA signing";
}

namespace {

StatusOr<LoadedCa> LoadCa(Store& store, BackendRegistry& backends) {
  auto rec = store.GetCa();
  if (!rec.ok()) return rec.status().code() == StatusCode::kNotFound ? NoCaError() : rec.status();
  LoadedCa ca;
  ca.record = *std::move(rec);
  ASSIGN_OR_RETURN(ca.cert, crypto::CertificateFromPem(ca.record.cert_pem));
  auto alg = ParseAlgorithm(ca.record.algorithm);
  if (!alg) return DataLossError("the CA record has an unknown algorithm");
  KeyBackend* backend = backends.Find(ca.record.provider);
  if (backend == nullptr) {
    return UnavailableError("backend '" + ca.record.provider + "' holding the CA key is not configured");
  }
  ca.key = crypto::BackendKey{backend, ca.record.key_uri, *alg};
  return ca;
}

}  // namespace

StatusOr<CaRecord> CertificateService::InitCa(const CaInitOptions& options) {
  if (options.validity_days < 1 || options.validity_days > 36500) {
    return FieldError("validity_days", "validity_days must be 1..36500");
  }
  RETURN_IF_ERROR(crypto::ParseDistinguishedName(options.subject).status().Annotate("subject"));
  auto existing = store_.GetCa();
  if (existing.ok()) return AlreadyExistsError("the built-in CA is already initialised");
  if (existing.status().code() != StatusCode::kNotFound) return existing.status();
  KeyBackend* backend = backends_.Find(options.provider);
  if (backend == nullptr) {
    return FailedPreconditionError("provider '" + options.provider + "' is not configured on this server")
        .WithDetail("field", "provider");
  }
  ASSIGN_OR_RETURN(GeneratedKey key,
                   backend->GenerateKey(KeySpec{options.algorithm, "concierge-ca-" + crypto::RandomHex(4), ""}));
  TimePoint now = clock_.Now();
  crypto::CertificateTemplate tmpl{options.subject, key.public_key_spki_der, RandomSerial(), now - kBackdate,
                                   now + std::chrono::hours(24) * options.validity_days, crypto::CertProfile::kCa};
  crypto::BackendKey ca_key{backend, key.uri, options.algorithm};
  auto cert = crypto::IssueCertificate(tmpl, nullptr, ca_key);
  StatusOr<std::string> pem = cert.ok() ? crypto::CertificateToPem(cert->get()) : StatusOr<std::string>(cert.status());
  CaRecord rec;
  Status stored = pem.status();
  if (pem.ok()) {
    rec.provider = options.provider;
    rec.key_uri = key.uri;
    rec.algorithm = std::string(AlgorithmName(options.algorithm));
    rec.cert_pem = *pem;
    rec.created_at = now;
    stored = store_.InsertCa(rec);
  }
  if (!stored.ok()) {
    // The key is referenced by nothing: remove it.
    backend->DestroyKey(key.uri).IgnoreError();
    return stored;
  }
  return rec;
}

StatusOr<CaRecord> CertificateService::Ca() {
  auto rec = store_.GetCa();
  if (!rec.ok() && rec.status().code() == StatusCode::kNotFound) return NoCaError();
  return rec;
}

bool CertificateService::CaInitialised() { return store_.GetCa().ok(); }

StatusOr<CertificateRecord> CertificateService::IssueForKey(const KeyRecord& key, const Policy& policy) {
  ASSIGN_OR_RETURN(LoadedCa ca, LoadCa(store_, backends_));
  ASSIGN_OR_RETURN(Bytes spki, SpkiFromPem(key.public_key_pem));
  TimePoint now = clock_.Now();
  TimePoint not_after = now + std::chrono::hours(24) * policy.cert_validity_days;
  // A certificate must not outlive its issuer.
  TimePoint ca_not_after = crypto::NotAfter(ca.cert.get());
  if (not_after > ca_not_after) not_after = ca_not_after;
  crypto::CertificateTemplate tmpl{CertificateSubjectFor(policy), spki, RandomSerial(), now - kBackdate, not_after,
                                   crypto::CertProfile::kC2paSigner};
  ASSIGN_OR_RETURN(crypto::X509Ptr cert, crypto::IssueCertificate(tmpl, ca.cert.get(), ca.key));
  ASSIGN_OR_RETURN(std::string pem, crypto::CertificateToPem(cert.get()));
  CertificateRecord rec;
  rec.serial = crypto::SerialHex(cert.get());
  rec.tenant_id = key.tenant_id;
  rec.key_id = key.key_id;
  rec.pem = pem;
  rec.chain_pem = pem + ca.record.cert_pem;
  rec.issuer = crypto::IssuerString(cert.get());
  rec.source = "builtin-ca";
  rec.not_before = crypto::NotBefore(cert.get());
  rec.not_after = crypto::NotAfter(cert.get());
  rec.created_at = now;
  RETURN_IF_ERROR(store_.InsertCertificate(rec));
  InvalidateKey(key.key_id);
  return rec;
}

StatusOr<CertificateRecord> CertificateService::IssueForTenant(const std::string& tenant_id) {
  ASSIGN_OR_RETURN(std::shared_ptr<const TenantState> state, tenants_.Active(tenant_id));
  return IssueForKey(state->active_key, state->policy.policy);
}

StatusOr<CertificateRecord> CertificateService::Import(const std::string& tenant_id, const std::string& chain_pem) {
  ASSIGN_OR_RETURN(std::shared_ptr<const TenantState> state, tenants_.Active(tenant_id));
  auto refuse = [](const Status& st) { return FieldError("chain_pem", st.message()); };
  auto certs = crypto::CertificatesFromPem(chain_pem);
  if (!certs.ok()) return refuse(Status(StatusCode::kInvalidArgument, "chain_pem holds no PEM certificate"));
  const X509* leaf = certs->front().get();
  auto leaf_spki = crypto::CertificateSpkiDer(leaf);
  // The active key, or a pending key whose rotation waits for this certificate.
  std::optional<KeyRecord> match;
  std::vector<KeyRecord> candidates = {state->active_key};
  ASSIGN_OR_RETURN(std::vector<KeyRecord> keys, store_.ListKeys(tenant_id));
  for (KeyRecord& k : keys) {
    if (k.state == "pending") candidates.push_back(std::move(k));
  }
  for (const KeyRecord& k : candidates) {
    ASSIGN_OR_RETURN(Bytes key_spki, SpkiFromPem(k.public_key_pem));
    if (leaf_spki.ok() && *leaf_spki == key_spki) {
      match = k;
      break;
    }
  }
  if (!match) {
    return refuse(Status(StatusCode::kInvalidArgument,
                         "the certificate's public key does not match the active key '" + state->active_key.key_id +
                             "' or a pending rotation key of tenant '" + tenant_id +
                             "' (the end-entity certificate must come first)"));
  }
  const KeyRecord& key = *match;
  TimePoint now = clock_.Now();
  if (Status st = crypto::CheckSignerCertificate(leaf, now); !st.ok()) return refuse(st);
  if (Status st = crypto::VerifyChain(*certs, now); !st.ok()) return refuse(st);
  // Store a normalised bundle: exactly the certificates we checked, in order.
  std::string normalised;
  for (const auto& c : *certs) {
    ASSIGN_OR_RETURN(std::string pem, crypto::CertificateToPem(c.get()));
    normalised += pem;
  }
  CertificateRecord rec;
  rec.serial = crypto::SerialHex(leaf);
  rec.tenant_id = tenant_id;
  rec.key_id = key.key_id;
  ASSIGN_OR_RETURN(rec.pem, crypto::CertificateToPem(leaf));
  rec.chain_pem = normalised;
  rec.issuer = crypto::IssuerString(leaf);
  rec.source = "imported";
  rec.not_before = crypto::NotBefore(leaf);
  rec.not_after = crypto::NotAfter(leaf);
  rec.created_at = now;
  Status stored = store_.InsertCertificate(rec);
  if (stored.code() == StatusCode::kAlreadyExists) {
    return FailedPreconditionError("certificate " + rec.serial + " from " + rec.issuer + " is already stored");
  }
  RETURN_IF_ERROR(stored);
  InvalidateKey(key.key_id);
  return rec;
}

StatusOr<CertificateRecord> CertificateService::Revoke(const std::string& tenant_id) {
  ASSIGN_OR_RETURN(std::shared_ptr<const TenantState> state, tenants_.Active(tenant_id));
  return RevokeKeyCertificate(state->active_key);
}

StatusOr<CertificateRecord> CertificateService::RevokeKeyCertificate(const KeyRecord& key) {
  auto cert = store_.GetActiveCertificate(key.key_id);
  if (!cert.ok()) {
    if (cert.status().code() == StatusCode::kNotFound) {
      return FailedPreconditionError("key '" + key.key_id + "' of tenant '" + key.tenant_id +
                                     "' has no active certificate to revoke");
    }
    return cert.status();
  }
  TimePoint now = clock_.Now();
  RETURN_IF_ERROR(store_.RevokeCertificate(cert->issuer, cert->serial, now));
  cert->status = "revoked";
  cert->revoked_at = now;
  InvalidateKey(key.key_id);
  {
    std::lock_guard lock(mu_);
    crl_.reset();  // the next CRL request re-issues it with this serial
    ++crl_generation_;
  }
  return cert;
}

StatusOr<std::string> CertificateService::CsrPem(const std::string& tenant_id) {
  ASSIGN_OR_RETURN(std::shared_ptr<const TenantState> state, tenants_.Active(tenant_id));
  const KeyRecord& key = state->active_key;
  KeyBackend* backend = backends_.Find(key.provider);
  if (backend == nullptr) {
    return UnavailableError("backend '" + key.provider + "' for key '" + key.key_id + "' is not configured");
  }
  auto alg = ParseAlgorithm(key.algorithm);
  if (!alg) return DataLossError("key '" + key.key_id + "' has an unknown algorithm");
  ASSIGN_OR_RETURN(crypto::X509ReqPtr csr, crypto::CreateCsr(CertificateSubjectFor(state->policy.policy),
                                                             crypto::BackendKey{backend, key.key_uri, *alg}));
  return crypto::CsrToPem(csr.get());
}

StatusOr<std::shared_ptr<const CertChain>> CertificateService::ActiveChain(const std::string& tenant_id) {
  ASSIGN_OR_RETURN(std::shared_ptr<const TenantState> state, tenants_.Active(tenant_id));
  return ChainFor(state->SigningKey());
}

StatusOr<std::shared_ptr<const CertChain>> CertificateService::ChainFor(const KeyRecord& key) {
  const std::string& tenant_id = key.tenant_id;
  TimePoint now = clock_.Now();
  std::shared_ptr<const CertChain> chain;
  {
    std::lock_guard lock(mu_);
    auto it = chains_.find(key.key_id);
    if (it != chains_.end() && now - it->second.loaded_at < kCacheTtl) chain = it->second.chain;
  }
  if (!chain) {
    auto rec = store_.GetActiveCertificate(key.key_id);
    if (!rec.ok()) {
      if (rec.status().code() != StatusCode::kNotFound) return rec.status();
      auto latest = store_.GetLatestCertificate(key.key_id);
      if (latest.ok() && latest->status == "revoked") {
        return FailedPreconditionError("the certificate of key '" + key.key_id + "' (serial " + latest->serial +
                                       ") was revoked; issue or import a new one");
      }
      return NoCertificateError(tenant_id, key.key_id);
    }
    ASSIGN_OR_RETURN(chain, ToChain(*rec));
    std::lock_guard lock(mu_);
    chains_[key.key_id] = CachedChain{chain, now};
  }
  if (now < chain->not_before) {
    return FailedPreconditionError("the certificate of key '" + key.key_id + "' is not valid before " +
                                   FormatRfc3339(chain->not_before));
  }
  if (now > chain->not_after) {
    return FailedPreconditionError("the certificate of key '" + key.key_id + "' expired at " +
                                   FormatRfc3339(chain->not_after) + "; issue or import a new one");
  }
  return chain;
}

StatusOr<CrlBundle> CertificateService::Crl() {
  std::lock_guard crl_lock(crl_mu_);
  TimePoint now = clock_.Now();
  uint64_t generation = 0;
  {
    std::lock_guard lock(mu_);
    if (crl_ && now - crl_issued_at_ < kCrlRefresh) return *crl_;
    generation = crl_generation_;
  }
  ASSIGN_OR_RETURN(LoadedCa ca, LoadCa(store_, backends_));
  std::string issuer = crypto::SubjectString(ca.cert.get());
  ASSIGN_OR_RETURN(std::vector<CertificateRecord> revoked, store_.ListRevokedCertificates(issuer));
  std::vector<crypto::RevokedSerial> entries;
  for (const auto& r : revoked) {
    auto serial = crypto::HexDecode(r.serial);
    if (!serial.ok()) return DataLossError("stored certificate serial is not hex");
    entries.push_back({*std::move(serial), r.revoked_at.value_or(now)});
  }
  ASSIGN_OR_RETURN(int64_t number, store_.NextCrlNumber());
  ASSIGN_OR_RETURN(crypto::X509CrlPtr crl,
                   crypto::IssueCrl(ca.cert.get(), ca.key, entries, now, now + kCrlValidity, number));
  CrlBundle bundle;
  ASSIGN_OR_RETURN(bundle.pem, crypto::CrlToPem(crl.get()));
  ASSIGN_OR_RETURN(bundle.der, crypto::CrlToDer(crl.get()));
  bundle.number = number;
  bundle.revoked_count = entries.size();
  std::lock_guard lock(mu_);
  // A revocation that landed while we signed must not be hidden behind a
  // cached CRL that lacks it; this caller still gets the fresh-at-start one.
  if (generation == crl_generation_) {
    crl_ = bundle;
    crl_issued_at_ = now;
  }
  return bundle;
}

void CertificateService::InvalidateKey(const std::string& key_id) {
  std::lock_guard lock(mu_);
  chains_.erase(key_id);
}

}  // namespace concierge::core
