// SigningService: policy-enforced digest signing and verification.
//
// Every request is checked against the tenant's cached policy snapshot (signing
// paused, algorithm, digest size, key state) before the backend is called.
// Verification uses the stored public key of any of the tenant's keys, so old
// signatures stay verifiable after rotation. Thread-safe.
#ifndef CONCIERGE_CORE_SIGNING_SERVICE_H_
#define CONCIERGE_CORE_SIGNING_SERVICE_H_

#include <optional>
#include <string>

#include "concierge/clock.h"
#include "concierge/key_backend.h"
#include "core/tenant_service.h"

namespace concierge::core {

enum class SignatureFormat { kDer, kP1363, kRaw };
std::string_view SignatureFormatName(SignatureFormat f);

struct SignRequest {
  Bytes digest;
  std::optional<Algorithm> algorithm;  // when given, must equal the policy's
  // Requested output for ECDSA: kDer (default) or kP1363. Ignored otherwise.
  SignatureFormat format = SignatureFormat::kDer;
  std::string request_id;
};

struct SignResult {
  Bytes signature;
  SignatureFormat format = SignatureFormat::kDer;
  std::string key_id;
  int64_t key_version = 0;
  Algorithm algorithm = Algorithm::kES256;
  std::string policy_hash;
  TimePoint signed_at{};
  std::string request_id;
};

struct VerifyRequest {
  Bytes digest;
  Bytes signature;
  SignatureFormat format = SignatureFormat::kDer;  // for ECDSA signatures
  std::string key_id;  // empty = the active key
};

struct VerifyResult {
  bool valid = false;
  std::string key_id;
  int64_t key_version = 0;
  std::string key_state;
  Algorithm algorithm = Algorithm::kES256;
};

class SigningService {
 public:
  SigningService(TenantService& tenants, Clock& clock) : tenants_(tenants), clock_(clock) {}

  StatusOr<SignResult> Sign(const std::string& tenant_id, const SignRequest& request);
  StatusOr<VerifyResult> Verify(const std::string& tenant_id, const VerifyRequest& request);
  // PEM of the active key, or of `key_id` when given.
  StatusOr<KeyRecord> PublicKey(const std::string& tenant_id, const std::string& key_id);

 private:
  TenantService& tenants_;
  Clock& clock_;
};

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_SIGNING_SERVICE_H_
