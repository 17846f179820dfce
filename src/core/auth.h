// Authentication (API keys) and authorisation (role x permission x tenant).
//
// Tokens look like "kc_<id>.<secret>": the id (16 hex) finds the record, the
// secret (64 hex, 256 bits) is checked against the stored SHA-256 with a
// constant-time comparison. Secrets are never stored, logged or returned except
// once, to the caller that created the key. Unknown, malformed and revoked tokens
// all fail with the same message, so the error is no oracle.
//
// Verified keys are cached in memory (the sign hot path must not query the
// database per request). Revoke() through this Authenticator takes effect at
// once; a revocation written by another process sharing the database takes
// effect within kCacheTtl. Thread-safe.
#ifndef CONCIERGE_CORE_AUTH_H_
#define CONCIERGE_CORE_AUTH_H_

#include <chrono>
#include <optional>
#include <shared_mutex>
#include <unordered_map>
#include <string>
#include <string_view>

#include "concierge/clock.h"
#include "concierge/secret.h"
#include "concierge/status.h"
#include "concierge/store.h"

namespace concierge::core {

enum class Role { kAdmin, kSecurityOfficer, kOperator, kSigner, kAuditor };

std::string_view RoleName(Role r);
std::optional<Role> ParseRole(std::string_view name);

enum class Permission {
  kTenantRead,    // list/get tenants, policies, keys, public keys
  kPolicyWrite,   // create/update/delete policies
  kSign,          // sign digests
  kVerify,        // verify signatures
  kApiKeyManage,  // create/list/revoke API keys (unscoped admins only)
  kCaManage,      // initialise the built-in CA (admins only)
  kCertRevoke,    // revoke a tenant's certificate (admins, security officers)
  kRotationManage,   // schedule, execute, cancel and roll back rotations
  kRotationApprove,  // approve a rotation scheduled by someone else (admins, security officers)
  kKeyManage,        // mark a key retired, compromised or destroyed (admins, security officers)
  kIncidentRead,    // incidents, timelines, reports, re-sign jobs (not signers)
  kIncidentManage,  // open/move/respond to incidents, re-sign jobs, webhooks (admins, security officers)
  kAuditRead,     // audit entries, checkpoints, proofs (every role; scoped keys see their tenant only)
  kAuditCheckpoint,  // sign a checkpoint on demand (admins, security officers, auditors)
};

std::string_view PermissionName(Permission p);

struct Principal {
  std::string id;         // API key id ("bootstrap" style ids are ordinary ids)
  Role role = Role::kAuditor;
  std::string tenant_id;  // empty = all tenants
};

// What each role may do, independent of tenant scope.
bool RoleAllows(Role role, Permission permission);

struct NewApiKey {
  ApiKeyRecord record;
  SecretBytes token;  // the full bearer token; shown once
};

class Authenticator {
 public:
  Authenticator(Store& store, Clock& clock) : store_(store), clock_(clock) {}

  // `authorization` is the raw Authorization header value.
  StatusOr<Principal> Authenticate(std::string_view authorization);

  // PermissionDenied naming the permission (role) or tenant (scope) that failed.
  // `tenant_id` empty = a global operation (only unscoped principals pass).
  Status Authorize(const Principal& principal, Permission permission, std::string_view tenant_id) const;

  // Revokes the key and drops it from the cache.
  Status Revoke(const std::string& id);

  StatusOr<NewApiKey> CreateApiKey(Role role, const std::string& tenant_id, const std::string& name,
                                   const std::string& created_by);
  // Makes a key and its token without storing it (the bootstrap path writes the
  // token file first, so a crash can never leave an admin key nobody holds).
  StatusOr<NewApiKey> MintApiKey(Role role, const std::string& tenant_id, const std::string& name,
                                 const std::string& created_by);
  Store& store() { return store_; }

 private:
  struct Cached {
    ApiKeyRecord record;
    TimePoint loaded_at;
  };
  static constexpr std::chrono::seconds kCacheTtl{30};

  Store& store_;
  Clock& clock_;
  std::shared_mutex mu_;
  std::unordered_map<std::string, Cached> cache_;
};

// Splits "kc_<id>.<secret>"; false when malformed.
bool ParseToken(std::string_view token, std::string* id, std::string* secret);

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_AUTH_H_
