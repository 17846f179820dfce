#include "core/policy.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <set>

#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/x509.h"

namespace concierge::core {
namespace {

using json = nlohmann::json;

const std::set<std::string, std::less<>>& KnownFields() {
  static const auto* fields = new std::set<std::string, std::less<>>{
      "tenant_id", "algorithm", "key_type", "provider", "key_uri", "failover",
      "rotate_every_days", "rotation_grace_days", "max_issuance_per_24h", "rate_limit_per_second", "sign_enabled",
      "cert_validity_days", "cert_subject", "assertions_allow", "assertions_deny",
      "canary_count", "approval_required", "incident_auto_respond"};
  return *fields;
}

std::string TypeName(const json& v) { return v.type_name(); }

Status ReadString(const json& body, const char* field, std::string* out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return Status::Ok();
  if (!it->is_string()) return FieldError(field, std::string(field) + " must be a string, got " + TypeName(*it));
  *out = it->get<std::string>();
  return Status::Ok();
}

template <typename Int>
Status ReadInt(const json& body, const char* field, Int* out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return Status::Ok();
  if (!it->is_number_integer()) {
    return FieldError(field, std::string(field) + " must be an integer, got " + TypeName(*it));
  }
  *out = it->get<Int>();
  return Status::Ok();
}

Status ReadBool(const json& body, const char* field, bool* out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return Status::Ok();
  if (!it->is_boolean()) return FieldError(field, std::string(field) + " must be true or false, got " + TypeName(*it));
  *out = it->get<bool>();
  return Status::Ok();
}

Status ReadStringList(const json& body, const char* field, std::vector<std::string>* out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return Status::Ok();
  if (!it->is_array()) return FieldError(field, std::string(field) + " must be an array of strings");
  std::vector<std::string> values;
  for (const auto& v : *it) {
    if (!v.is_string()) return FieldError(field, std::string(field) + " must contain only strings");
    values.push_back(v.get<std::string>());
  }
  *out = std::move(values);
  return Status::Ok();
}

// Reads every present field of `body` into `p`. Rejects unknown fields.
Status ReadFields(const json& body, Policy* p) {
  if (!body.is_object()) return InvalidArgumentError("policy must be a JSON object");
  for (const auto& [key, value] : body.items()) {
    if (!KnownFields().count(key)) return FieldError(key, "unknown policy field '" + key + "'");
  }
  auto alg_it = body.find("algorithm");
  if (alg_it != body.end() && !alg_it->is_null()) {
    if (!alg_it->is_string()) return FieldError("algorithm", "algorithm must be a string");
    auto alg = ParseAlgorithm(alg_it->get<std::string>());
    if (!alg) {
      return FieldError("algorithm", "unsupported algorithm '" + alg_it->get<std::string>() +
                                         "' (expected ES256, ES384, ES512, PS256, PS384, PS512 or Ed25519)");
    }
    p->algorithm = *alg;
  }
  RETURN_IF_ERROR(ReadString(body, "key_type", &p->key_type));
  RETURN_IF_ERROR(ReadString(body, "provider", &p->provider));
  RETURN_IF_ERROR(ReadString(body, "key_uri", &p->key_uri));
  RETURN_IF_ERROR(ReadStringList(body, "failover", &p->failover));
  RETURN_IF_ERROR(ReadInt(body, "rotate_every_days", &p->rotate_every_days));
  RETURN_IF_ERROR(ReadInt(body, "rotation_grace_days", &p->rotation_grace_days));
  RETURN_IF_ERROR(ReadInt(body, "max_issuance_per_24h", &p->max_issuance_per_24h));
  RETURN_IF_ERROR(ReadInt(body, "rate_limit_per_second", &p->rate_limit_per_second));
  RETURN_IF_ERROR(ReadBool(body, "sign_enabled", &p->sign_enabled));
  RETURN_IF_ERROR(ReadInt(body, "cert_validity_days", &p->cert_validity_days));
  RETURN_IF_ERROR(ReadString(body, "cert_subject", &p->cert_subject));
  RETURN_IF_ERROR(ReadStringList(body, "assertions_allow", &p->assertions_allow));
  RETURN_IF_ERROR(ReadStringList(body, "assertions_deny", &p->assertions_deny));
  RETURN_IF_ERROR(ReadInt(body, "canary_count", &p->canary_count));
  RETURN_IF_ERROR(ReadBool(body, "approval_required", &p->approval_required));
  RETURN_IF_ERROR(ReadBool(body, "incident_auto_respond", &p->incident_auto_respond));
  return Status::Ok();
}

Status CheckRange(const char* field, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) {
    return FieldError(field, std::string(field) + " must be between " + std::to_string(lo) + " and " +
                                 std::to_string(hi) + ", got " + std::to_string(v));
  }
  return Status::Ok();
}

bool ValidAssertionLabel(const std::string& s) {
  if (s.empty() || s.size() > 200) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' || c == '*';
  });
}

}  // namespace

Status ValidateTenantId(std::string_view id) {
  auto bad = [&](const std::string& why) {
    return FieldError("tenant_id", "invalid tenant id '" + std::string(id.substr(0, 64)) + "': " + why);
  };
  if (id.size() < 3 || id.size() > 63) return bad("must be 3 to 63 characters");
  if (!(id[0] >= 'a' && id[0] <= 'z')) return bad("must start with a lowercase letter");
  if (id.back() == '-') return bad("must not end with '-'");
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
      return bad("only lowercase letters, digits and '-' are allowed");
    }
  }
  return Status::Ok();
}

std::string_view KeyTypeForProvider(std::string_view provider) {
  if (provider == "software") return "software";
  if (provider == "pkcs11" || provider == "yubihsm2") return "hsm";
  if (provider == "aws-kms" || provider == "gcp-kms" || provider == "azure-kv" || provider == "vault-transit") {
    return "kms";
  }
  return "";
}

Status ValidatePolicy(const Policy& p) {
  RETURN_IF_ERROR(ValidateTenantId(p.tenant_id));
  if (p.key_type != "software" && p.key_type != "hsm" && p.key_type != "kms") {
    return FieldError("key_type", "key_type must be one of hsm, kms, software; got '" + p.key_type + "'");
  }
  std::string_view provider_type = KeyTypeForProvider(p.provider);
  if (provider_type.empty()) {
    return FieldError("provider", "unknown provider '" + p.provider +
                                      "' (expected software, pkcs11, yubihsm2, aws-kms, gcp-kms, "
                                      "azure-kv or vault-transit)");
  }
  if (provider_type != p.key_type) {
    return FieldError("provider", "provider '" + p.provider + "' is not a " + p.key_type +
                                      " provider (it belongs to key_type " + std::string(provider_type) + ")");
  }
  if (p.key_uri.size() > 2048) return FieldError("key_uri", "key_uri is longer than 2048 characters");
  // Policies are stored and returned by the API: a PIN must never be part of one.
  if (p.key_uri.find("pin-value") != std::string::npos) {
    return FieldError("key_uri", "key_uri must not contain pin-value; use pin-source=FILE or KEYCTL_PKCS11_PIN");
  }
  if (p.failover.size() > 4) return FieldError("failover", "at most 4 failover backends are allowed");
  for (const auto& f : p.failover) {
    if (f.empty() || f.size() > 2048) return FieldError("failover", "failover entries must be 1 to 2048 characters");
  }
  RETURN_IF_ERROR(CheckRange("rotate_every_days", p.rotate_every_days, 1, 365));
  RETURN_IF_ERROR(CheckRange("rotation_grace_days", p.rotation_grace_days, 0, 90));
  if (p.rotation_grace_days >= p.rotate_every_days && p.rotation_grace_days > 0) {
    return FieldError("rotation_grace_days", "rotation_grace_days (" + std::to_string(p.rotation_grace_days) +
                                                 ") must be shorter than rotate_every_days (" +
                                                 std::to_string(p.rotate_every_days) + ")");
  }
  RETURN_IF_ERROR(CheckRange("max_issuance_per_24h", p.max_issuance_per_24h, 0, 1'000'000'000'000));
  RETURN_IF_ERROR(CheckRange("rate_limit_per_second", p.rate_limit_per_second, 0, 1'000'000));
  RETURN_IF_ERROR(CheckRange("cert_validity_days", p.cert_validity_days, 1, 825));
  if (p.cert_validity_days < p.rotate_every_days) {
    return FieldError("cert_validity_days", "cert_validity_days (" + std::to_string(p.cert_validity_days) +
                                                ") must cover rotate_every_days (" +
                                                std::to_string(p.rotate_every_days) + ")");
  }
  if (p.cert_subject.size() > 512) return FieldError("cert_subject", "cert_subject is longer than 512 characters");
  if (!p.cert_subject.empty()) RETURN_IF_ERROR(crypto::ParseDistinguishedName(p.cert_subject).status());
  RETURN_IF_ERROR(CheckRange("canary_count", p.canary_count, 0, 1000));
  for (const char* field : {"assertions_allow", "assertions_deny"}) {
    const auto& list = std::string_view(field) == "assertions_allow" ? p.assertions_allow : p.assertions_deny;
    if (list.size() > 256) return FieldError(field, std::string(field) + " has more than 256 entries");
    for (const auto& a : list) {
      if (!ValidAssertionLabel(a)) {
        return FieldError(field, std::string(field) + " entry '" + a.substr(0, 64) +
                                     "' is not a valid assertion label ([A-Za-z0-9._-*])");
      }
    }
  }
  for (const auto& a : p.assertions_allow) {
    if (std::find(p.assertions_deny.begin(), p.assertions_deny.end(), a) != p.assertions_deny.end()) {
      return FieldError("assertions_deny", "assertion '" + a + "' is in both assertions_allow and assertions_deny");
    }
  }
  return Status::Ok();
}

StatusOr<Policy> ParsePolicy(const json& body, std::string_view tenant_id) {
  Policy p;
  p.tenant_id = std::string(tenant_id);
  if (body.is_object()) {
    auto it = body.find("tenant_id");
    if (it != body.end() && !(it->is_string() && it->get<std::string>() == tenant_id)) {
      return FieldError("tenant_id", "tenant_id in the body does not match the tenant in the URL");
    }
  }
  RETURN_IF_ERROR(ReadFields(body, &p));
  // key_type defaults from the provider so `--provider pkcs11` alone is enough.
  if (body.is_object() && !body.contains("key_type") && body.contains("provider")) {
    p.key_type = std::string(KeyTypeForProvider(p.provider));
    if (p.key_type.empty()) p.key_type = "software";
  }
  RETURN_IF_ERROR(ValidatePolicy(p));
  return p;
}

StatusOr<Policy> ApplyPolicyUpdate(const Policy& current, const json& patch) {
  if (!patch.is_object()) return InvalidArgumentError("policy update must be a JSON object");
  Policy p = current;
  auto it = patch.find("tenant_id");
  if (it != patch.end() && !(it->is_string() && it->get<std::string>() == current.tenant_id)) {
    return FieldError("tenant_id", "tenant_id cannot be changed");
  }
  RETURN_IF_ERROR(ReadFields(patch, &p));
  auto fixed = [&](const char* field, bool changed) -> Status {
    if (changed) {
      return FieldError(field, std::string(field) +
                                   " is bound to the tenant's current key and cannot change in an "
                                   "update; rotate to a new key instead");
    }
    return Status::Ok();
  };
  RETURN_IF_ERROR(fixed("algorithm", p.algorithm != current.algorithm));
  RETURN_IF_ERROR(fixed("key_type", p.key_type != current.key_type));
  RETURN_IF_ERROR(fixed("provider", p.provider != current.provider));
  RETURN_IF_ERROR(fixed("key_uri", p.key_uri != current.key_uri));
  RETURN_IF_ERROR(ValidatePolicy(p));
  return p;
}

json PolicyToJson(const Policy& p) {
  json j;
  j["tenant_id"] = p.tenant_id;
  j["algorithm"] = std::string(AlgorithmName(p.algorithm));
  j["key_type"] = p.key_type;
  j["provider"] = p.provider;
  j["key_uri"] = p.key_uri;
  j["failover"] = p.failover;
  j["rotate_every_days"] = p.rotate_every_days;
  j["rotation_grace_days"] = p.rotation_grace_days;
  j["max_issuance_per_24h"] = p.max_issuance_per_24h;
  j["rate_limit_per_second"] = p.rate_limit_per_second;
  j["sign_enabled"] = p.sign_enabled;
  j["cert_validity_days"] = p.cert_validity_days;
  j["cert_subject"] = p.cert_subject;
  j["assertions_allow"] = p.assertions_allow;
  j["assertions_deny"] = p.assertions_deny;
  j["canary_count"] = p.canary_count;
  j["approval_required"] = p.approval_required;
  j["incident_auto_respond"] = p.incident_auto_respond;
  return j;
}

std::string CanonicalPolicyJson(const Policy& p) {
  // nlohmann::json objects are std::map-backed: keys come out sorted.
  return PolicyToJson(p).dump();
}

std::string PolicyHash(const Policy& p) { return crypto::Sha256Hex(crypto::AsBytes(CanonicalPolicyJson(p))); }

}  // namespace concierge::core
