#include "core/signing_service.h"

#include "crypto/keys.h"
#include "crypto/signature.h"

namespace concierge::core {

std::string_view SignatureFormatName(SignatureFormat f) {
  switch (f) {
    case SignatureFormat::kDer: return "der";
    case SignatureFormat::kP1363: return "p1363";
    case SignatureFormat::kRaw: return "raw";
  }
  return "der";
}

StatusOr<SignResult> SigningService::Sign(const std::string& tenant_id, const SignRequest& request) {
  ASSIGN_OR_RETURN(std::shared_ptr<const TenantState> state, tenants_.Active(tenant_id));
  const Policy& policy = state->policy.policy;
  if (!policy.sign_enabled) {
    return FailedPreconditionError("signing is paused for tenant '" + tenant_id + "' (sign_enabled=false)");
  }
  if (request.algorithm && *request.algorithm != policy.algorithm) {
    return FieldError("algorithm", "tenant '" + tenant_id + "' signs with " +
                                       std::string(AlgorithmName(policy.algorithm)) + ", not " +
                                       std::string(AlgorithmName(*request.algorithm)));
  }
  if (!DigestSizeAccepted(policy.algorithm, request.digest.size())) {
    std::string expected = policy.algorithm == Algorithm::kEd25519
                               ? "32 or 64 bytes (SHA-256 or SHA-512)"
                               : std::to_string(DigestSize(policy.algorithm)) + " bytes (" +
                                     std::string(DigestName(policy.algorithm)) + ")";
    return FieldError("digest", "digest is " + std::to_string(request.digest.size()) + " bytes; " +
                                    std::string(AlgorithmName(policy.algorithm)) + " needs " + expected);
  }
  const KeyRecord& key = state->active_key;
  if (key.state != "active") {
    return FailedPreconditionError("key '" + key.key_id + "' is " + key.state + ", not active");
  }
  KeyBackend* backend = tenants_.backends().Find(key.provider);
  if (backend == nullptr) {
    return UnavailableError("backend '" + key.provider + "' for key '" + key.key_id + "' is not configured");
  }
  auto signature = backend->SignDigest(key.key_uri, policy.algorithm, request.digest);
  if (!signature.ok()) return signature.status().Annotate("signing with key '" + key.key_id + "'");

  SignResult result;
  result.format = SignatureFormat::kRaw;
  if (FamilyOf(policy.algorithm) == KeyFamily::kEcdsa) {
    result.format = request.format == SignatureFormat::kP1363 ? SignatureFormat::kP1363 : SignatureFormat::kDer;
    if (result.format == SignatureFormat::kP1363) {
      ASSIGN_OR_RETURN(*signature, crypto::EcdsaDerToP1363(*signature, EcdsaFieldBytes(policy.algorithm)));
    }
  }
  result.signature = *std::move(signature);
  result.key_id = key.key_id;
  result.key_version = key.version;
  result.algorithm = policy.algorithm;
  result.policy_hash = state->policy.hash;
  result.signed_at = clock_.Now();
  result.request_id = request.request_id;
  return result;
}

StatusOr<VerifyResult> SigningService::Verify(const std::string& tenant_id, const VerifyRequest& request) {
  ASSIGN_OR_RETURN(KeyRecord key, PublicKey(tenant_id, request.key_id));
  auto alg = ParseAlgorithm(key.algorithm);
  if (!alg) return DataLossError("key '" + key.key_id + "' has an unknown algorithm");
  if (!DigestSizeAccepted(*alg, request.digest.size())) {
    return FieldError("digest", "digest is " + std::to_string(request.digest.size()) + " bytes; " +
                                    key.algorithm + " needs " + std::to_string(DigestSize(*alg)));
  }
  VerifyResult result;
  result.key_id = key.key_id;
  result.key_version = key.version;
  result.key_state = key.state;
  result.algorithm = *alg;
  Bytes signature = request.signature;
  if (FamilyOf(*alg) == KeyFamily::kEcdsa && request.format == SignatureFormat::kP1363) {
    auto der = crypto::EcdsaP1363ToDer(signature);
    if (!der.ok()) return result;  // malformed signature: simply not valid
    signature = *std::move(der);
  }
  ASSIGN_OR_RETURN(crypto::EvpPkeyPtr pub, crypto::PublicKeyFromPem(key.public_key_pem));
  Status verified = crypto::VerifyDigest(pub.get(), *alg, request.digest, signature);
  if (verified.ok()) {
    result.valid = true;
  } else if (verified.code() != StatusCode::kInvalidArgument) {
    return verified;
  }
  return result;
}

StatusOr<KeyRecord> SigningService::PublicKey(const std::string& tenant_id, const std::string& key_id) {
  if (!key_id.empty()) {
    ASSIGN_OR_RETURN(KeyRecord key, tenants_.GetKey(tenant_id, key_id));
    if (key.state == "destroyed") return NotFoundError("key '" + key_id + "' was destroyed");
    return key;
  }
  ASSIGN_OR_RETURN(std::shared_ptr<const TenantState> state, tenants_.Active(tenant_id));
  return state->active_key;
}

}  // namespace concierge::core
