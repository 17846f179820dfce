// Signing policy: the per-tenant rules the service enforces on every request.
//
// A policy is parsed strictly from JSON (unknown fields are rejected so a typo is
// never silently ignored) and validated; every error names the field. The
// canonical form (sorted keys, no whitespace, defaults filled in) is hashed with
// SHA-256 to give the policy hash recorded with each version. Value type.
#ifndef CONCIERGE_CORE_POLICY_H_
#define CONCIERGE_CORE_POLICY_H_

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "concierge/algorithm.h"
#include "concierge/status.h"

namespace concierge::core {

struct Policy {
  std::string tenant_id;
  Algorithm algorithm = Algorithm::kES256;
  std::string key_type = "software";  // hsm | kms | software
  std::string provider = "software";  // pkcs11 | yubihsm2 | aws-kms | gcp-kms | azure-kv | vault-transit | software
  std::string key_uri;                // optional: where the backend should create the key
  std::vector<std::string> failover;  // secondary backend key URIs, in order
  int rotate_every_days = 90;         // 1..365
  int rotation_grace_days = 7;        // 0..90, < rotate_every_days
  int64_t max_issuance_per_24h = 0;   // 0 = unlimited
  int64_t rate_limit_per_second = 0;  // token bucket, burst = one second's worth; 0 = unlimited
  bool sign_enabled = true;
  int cert_validity_days = 365;       // 1..825
  std::string cert_subject;           // e.g. "CN=acme-news signing,O=Acme News"; default from tenant
  std::vector<std::string> assertions_allow;
  std::vector<std::string> assertions_deny;
  int canary_count = 10;              // 0..1000
  bool approval_required = false;
  // High/critical key_compromise incidents start their playbook without an
  // operator (pause, emergency rotation, revoke, mass re-sign, resume).
  bool incident_auto_respond = false;
};

// Tenant ids are slugs: 3..63 chars of [a-z0-9-], starting with a letter, not
// ending with '-'.
Status ValidateTenantId(std::string_view tenant_id);

// Parses and validates a policy body. `tenant_id` comes from the URL; a body
// "tenant_id" must match it when present. Missing fields take defaults.
StatusOr<Policy> ParsePolicy(const nlohmann::json& body, std::string_view tenant_id);
// Applies a partial update (only the fields present in `patch`) to `current`,
// then validates. Fields bound to the current key (algorithm, key_type,
// provider, key_uri) cannot change in place: FieldError naming the field.
StatusOr<Policy> ApplyPolicyUpdate(const Policy& current, const nlohmann::json& patch);

Status ValidatePolicy(const Policy& p);

nlohmann::json PolicyToJson(const Policy& p);
// Sorted keys, compact, defaults filled: the input to PolicyHash.
std::string CanonicalPolicyJson(const Policy& p);
// Hex SHA-256 of CanonicalPolicyJson.
std::string PolicyHash(const Policy& p);

// Which key types a provider belongs to: "software" -> software; pkcs11/yubihsm2 -> hsm; ...
std::string_view KeyTypeForProvider(std::string_view provider);

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_POLICY_H_
