// TestStandInRotator: a TEST STAND-IN for the rotation engine, behind the
// core::EmergencyRotator seam the key_compromise playbook calls. It does the
// bare minimum with the public Store and KeyBackend interfaces: generate a key
// in the old key's backend, insert it as "pending", move the old key to
// "retiring", activate the new one, and certify it from the built-in CA when
// one is initialised. No canary, no approval, no evidence pack, no atomic
// cutover under load: the real engine (branch `rotation`) replaces this in
// production wiring. Header-only so any test binary that links core can use
// it. Not thread-safe (tests call it from one playbook at a time).
#ifndef CONCIERGE_TESTS_TESTING_STANDIN_ROTATOR_H_
#define CONCIERGE_TESTS_TESTING_STANDIN_ROTATOR_H_

#include <nlohmann/json.hpp>

#include <string>

#include "concierge/clock.h"
#include "concierge/key_backend.h"
#include "concierge/store.h"
#include "core/ca.h"
#include "core/incident_playbook.h"
#include "core/policy.h"
#include "crypto/hash.h"
#include "crypto/keys.h"

namespace concierge::testing {

class TestStandInRotator : public core::EmergencyRotator {
 public:
  TestStandInRotator(Store& store, BackendRegistry& backends, core::CertificateService* certs, Clock& clock)
      : store_(store), backends_(backends), certs_(certs), clock_(clock) {}

  StatusOr<std::string> RotateNow(const std::string& tenant_id, const std::string& reason) override {
    ++calls_;
    last_reason_ = reason;
    ASSIGN_OR_RETURN(KeyRecord old, store_.GetActiveKey(tenant_id));
    KeyBackend* backend = backends_.Find(old.provider);
    if (backend == nullptr) return UnavailableError("stand-in rotator: no backend " + old.provider);
    auto alg = ParseAlgorithm(old.algorithm);
    if (!alg) return InternalError("stand-in rotator: unknown algorithm");
    ASSIGN_OR_RETURN(int64_t version, store_.NextKeyVersion(tenant_id));
    ASSIGN_OR_RETURN(GeneratedKey generated,
                     backend->GenerateKey(KeySpec{*alg, tenant_id + "/v" + std::to_string(version), ""}));
    ASSIGN_OR_RETURN(std::string pem, crypto::SpkiDerToPem(generated.public_key_spki_der));
    KeyRecord key;
    key.key_id = tenant_id + "-v" + std::to_string(version) + "-" + crypto::RandomHex(3);
    key.tenant_id = tenant_id;
    key.version = version;
    key.algorithm = old.algorithm;
    key.provider = old.provider;
    key.key_uri = generated.uri;
    key.state = "pending";
    key.public_key_pem = pem;
    key.fingerprint = crypto::SpkiFingerprint(generated.public_key_spki_der);
    key.created_at = clock_.Now();
    RETURN_IF_ERROR(store_.InsertKey(key));
    RETURN_IF_ERROR(store_.UpdateKeyState(old.key_id, "active", "retiring", clock_.Now()));
    RETURN_IF_ERROR(store_.UpdateKeyState(key.key_id, "pending", "active", clock_.Now()));
    if (certs_ != nullptr && certs_->CaInitialised()) {
      ASSIGN_OR_RETURN(PolicyRecord rec, store_.GetActivePolicy(tenant_id));
      ASSIGN_OR_RETURN(core::Policy policy, core::ParsePolicy(nlohmann::json::parse(rec.body_json), tenant_id));
      key.state = "active";
      RETURN_IF_ERROR(certs_->IssueForKey(key, policy).status());
    }
    return key.key_id;
  }

  int calls() const { return calls_; }
  const std::string& last_reason() const { return last_reason_; }

 private:
  Store& store_;
  BackendRegistry& backends_;
  core::CertificateService* certs_;
  Clock& clock_;
  int calls_ = 0;
  std::string last_reason_;
};

}  // namespace concierge::testing

#endif  // CONCIERGE_TESTS_TESTING_STANDIN_ROTATOR_H_
