#include "core/auth.h"

#include <mutex>

#include "core/policy.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"

namespace concierge::core {
namespace {

constexpr std::string_view kTokenPrefix = "kc_";
constexpr size_t kIdHexLen = 16;
constexpr size_t kSecretHexLen = 64;

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Status InvalidCredentials() { return UnauthenticatedError("missing or invalid API key"); }

}  // namespace

std::string_view RoleName(Role r) {
  switch (r) {
    case Role::kAdmin: return "admin";
    case Role::kSecurityOfficer: return "security-officer";
    case Role::kOperator: return "operator";
    case Role::kSigner: return "signer";
    case Role::kAuditor: return "auditor";
  }
  return "unknown";
}

std::optional<Role> ParseRole(std::string_view name) {
  for (Role r : {Role::kAdmin, Role::kSecurityOfficer, Role::kOperator, Role::kSigner, Role::kAuditor}) {
    if (RoleName(r) == name) return r;
  }
  return std::nullopt;
}

std::string_view PermissionName(Permission p) {
  switch (p) {
    case Permission::kTenantRead: return "tenant:read";
    case Permission::kPolicyWrite: return "policy:write";
    case Permission::kSign: return "sign";
    case Permission::kVerify: return "verify";
    case Permission::kApiKeyManage: return "apikey:manage";
    case Permission::kCaManage: return "ca:manage";
    case Permission::kCertRevoke: return "cert:revoke";
    case Permission::kRotationManage: return "rotation:manage";
    case Permission::kRotationApprove: return "rotation:approve";
    case Permission::kKeyManage: return "key:manage";
    case Permission::kIncidentRead: return "incident:read";
    case Permission::kIncidentManage: return "incident:manage";
    case Permission::kAuditRead: return "audit:read";
    case Permission::kAuditCheckpoint: return "audit:checkpoint";
  }
  return "unknown";
}

// Every role may read the audit log: which records it sees is limited by the
// key's tenant scope (api_audit.cc), so a tenant's signer can fetch inclusion
// proofs for its own signatures but never another tenant's records. The
// auditor role reads the audit log and nothing else.
bool RoleAllows(Role role, Permission permission) {
  switch (role) {
    case Role::kAdmin:
      return true;
    case Role::kSecurityOfficer:
      return permission == Permission::kTenantRead || permission == Permission::kPolicyWrite ||
             permission == Permission::kVerify || permission == Permission::kCertRevoke ||
             permission == Permission::kRotationManage || permission == Permission::kRotationApprove ||
             permission == Permission::kKeyManage || permission == Permission::kIncidentRead ||
             permission == Permission::kIncidentManage || permission == Permission::kAuditRead ||
             permission == Permission::kAuditCheckpoint;
    case Role::kOperator:
      return permission == Permission::kTenantRead || permission == Permission::kPolicyWrite ||
             permission == Permission::kVerify || permission == Permission::kRotationManage ||
             permission == Permission::kIncidentRead || permission == Permission::kAuditRead;
    case Role::kSigner:
      return permission == Permission::kTenantRead || permission == Permission::kSign ||
             permission == Permission::kVerify || permission == Permission::kAuditRead;
    case Role::kAuditor:
      // Audit data and nothing else (issue 7).
      return permission == Permission::kAuditRead || permission == Permission::kAuditCheckpoint;
  }
  return false;
}

bool ParseToken(std::string_view token, std::string* id, std::string* secret) {
  if (token.size() != kTokenPrefix.size() + kIdHexLen + 1 + kSecretHexLen) return false;
  if (token.substr(0, kTokenPrefix.size()) != kTokenPrefix) return false;
  std::string_view rest = token.substr(kTokenPrefix.size());
  if (rest[kIdHexLen] != '.') return false;
  std::string_view i = rest.substr(0, kIdHexLen);
  std::string_view s = rest.substr(kIdHexLen + 1);
  if (!IsLowerHex(i) || !IsLowerHex(s)) return false;
  *id = std::string(i);
  *secret = std::string(s);
  return true;
}

StatusOr<Principal> Authenticator::Authenticate(std::string_view authorization) {
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.size() <= kBearer.size() || authorization.substr(0, kBearer.size()) != kBearer) {
    return InvalidCredentials();
  }
  std::string id, secret;
  if (!ParseToken(authorization.substr(kBearer.size()), &id, &secret)) return InvalidCredentials();
  std::string presented = crypto::Sha256Hex(crypto::AsBytes(secret));
  std::optional<ApiKeyRecord> record;
  TimePoint now = clock_.Now();
  {
    std::shared_lock lock(mu_);
    auto it = cache_.find(id);
    if (it != cache_.end() && now - it->second.loaded_at < kCacheTtl && now >= it->second.loaded_at) {
      record = it->second.record;
    }
  }
  if (!record) {
    auto loaded = store_.GetApiKey(id);
    if (!loaded.ok()) {
      if (loaded.status().code() == StatusCode::kNotFound) return InvalidCredentials();
      return loaded.status().Annotate("looking up API key");
    }
    record = *std::move(loaded);
    std::unique_lock lock(mu_);
    if (cache_.size() > 100000) cache_.clear();  // bound memory against id spraying
    cache_[id] = Cached{*record, now};
  }
  if (!ConstantTimeEquals(std::string_view(presented), std::string_view(record->secret_hash))) {
    return InvalidCredentials();
  }
  if (record->revoked_at.has_value()) return InvalidCredentials();
  auto role = ParseRole(record->role);
  if (!role) return InternalError("API key has an unknown role");
  return Principal{record->id, *role, record->tenant_id};
}

Status Authenticator::Revoke(const std::string& id) {
  RETURN_IF_ERROR(store_.RevokeApiKey(id, clock_.Now()));
  std::unique_lock lock(mu_);
  cache_.erase(id);
  return Status::Ok();
}

Status Authenticator::Authorize(const Principal& principal, Permission permission,
                                std::string_view tenant_id) const {
  if (!RoleAllows(principal.role, permission)) {
    return PermissionDeniedError("role '" + std::string(RoleName(principal.role)) + "' may not " +
                                 std::string(PermissionName(permission)));
  }
  if (!principal.tenant_id.empty()) {
    if (tenant_id.empty()) {
      return PermissionDeniedError("API key is scoped to tenant '" + principal.tenant_id +
                                   "' and cannot perform global operations");
    }
    if (tenant_id != principal.tenant_id) {
      return PermissionDeniedError("API key is scoped to tenant '" + principal.tenant_id +
                                   "' and cannot access tenant '" + std::string(tenant_id) + "'");
    }
  }
  return Status::Ok();
}

StatusOr<NewApiKey> Authenticator::CreateApiKey(Role role, const std::string& tenant_id,
                                                const std::string& name, const std::string& created_by) {
  ASSIGN_OR_RETURN(NewApiKey key, MintApiKey(role, tenant_id, name, created_by));
  RETURN_IF_ERROR(store_.InsertApiKey(key.record));
  return key;
}

StatusOr<NewApiKey> Authenticator::MintApiKey(Role role, const std::string& tenant_id,
                                              const std::string& name, const std::string& created_by) {
  if (!tenant_id.empty()) RETURN_IF_ERROR(ValidateTenantId(tenant_id));
  if (name.size() > 200) return FieldError("name", "name is longer than 200 characters");
  std::string id = crypto::RandomHex(kIdHexLen / 2);
  SecretBytes secret = crypto::RandomSecret(kSecretHexLen / 2);
  std::string secret_hex = crypto::HexEncode(secret.Reveal(SecretAccess::Grant()));
  ApiKeyRecord rec;
  rec.id = id;
  rec.secret_hash = crypto::Sha256Hex(crypto::AsBytes(secret_hex));
  rec.role = std::string(RoleName(role));
  rec.tenant_id = tenant_id;
  rec.name = name;
  rec.created_by = created_by;
  rec.created_at = clock_.Now();
  std::string token = std::string(kTokenPrefix) + id + "." + secret_hex;
  NewApiKey out{std::move(rec), SecretBytes::FromString(token, SecretAccess::Grant())};
  std::fill(token.begin(), token.end(), '\0');
  std::fill(secret_hex.begin(), secret_hex.end(), '\0');
  return out;
}

}  // namespace concierge::core
