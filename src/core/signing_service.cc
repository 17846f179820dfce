#include "core/signing_service.h"

#include <utility>

#include "core/failover.h"
#include "core/key_state.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "crypto/signature.h"

namespace concierge::core {

namespace {

// The fields every ledger row shares, whatever was signed.
LedgerEntry NewLedgerEntry(const std::string& tenant_id, const TenantState& state, Algorithm alg, TimePoint now,
                           const std::string& request_id, const std::string& api_key_id,
                           const std::string& client_address) {
  LedgerEntry e;
  e.tenant_id = tenant_id;
  e.key_id = state.SigningKey().key_id;
  e.key_version = state.SigningKey().version;
  e.algorithm = std::string(AlgorithmName(alg));
  e.request_id = request_id;
  e.api_key_id = api_key_id;
  e.client_address = client_address;
  e.policy_hash = state.policy.hash;
  e.signed_at = now;
  return e;
}

}  // namespace

std::string_view SignatureFormatName(SignatureFormat f) {
  switch (f) {
    case SignatureFormat::kDer: return "der";
    case SignatureFormat::kP1363: return "p1363";
    case SignatureFormat::kRaw: return "raw";
  }
  return "der";
}

Status SigningService::CheckAssetId(const std::string& field, const std::string& asset_id) const {
  if (asset_id.size() > options_.max_asset_id_bytes) {
    return FieldError(field, field + " is longer than " + std::to_string(options_.max_asset_id_bytes) + " bytes");
  }
  if (asset_id.find('\0') != std::string::npos) return FieldError(field, field + " must not contain a NUL byte");
  return Status::Ok();
}

// Runs on the ledger writer thread, rarely (a cutover on another instance):
// a blocking read there is acceptable. Every request of a fenced batch comes
// here; only the first finds the snapshot still on the fenced key and reloads.
Status SigningService::RefreshAfterFence(const std::string& tenant_id, const std::string& fenced_key_id) {
  auto current = tenants_.Active(tenant_id);
  if (current.ok() && (*current)->SigningKey().key_id != fenced_key_id) return Status::Ok();
  return tenants_.Reload(tenant_id);
}

void SigningService::SignAsync(const std::string& tenant_id, SignRequest request, SignCallback done) {
  Sign(tenant_id, std::move(request), std::move(done), false);
}

void SigningService::SignMessageAsync(const std::string& tenant_id, MessageSignRequest request,
                                      MessageCallback done) {
  SignMessage(tenant_id, std::move(request), std::move(done), false);
}

void SigningService::Sign(const std::string& tenant_id, SignRequest request, SignCallback done, bool retried) {
  auto refuse = [&](Status st) { done(std::move(st)); };
  auto state_or = tenants_.Active(tenant_id);
  if (!state_or.ok()) return refuse(state_or.status());
  std::shared_ptr<const TenantState> state = *std::move(state_or);
  const Policy& policy = state->policy.policy;
  if (request.items.empty()) return refuse(FieldError("digests", "no digests to sign"));
  if (request.items.size() > options_.max_batch) {
    return refuse(FieldError("digests", "batch has " + std::to_string(request.items.size()) +
                                            " digests; the limit is " + std::to_string(options_.max_batch)));
  }
  if (!policy.sign_enabled) {
    return refuse(FailedPreconditionError("signing is paused for tenant '" + tenant_id + "' (sign_enabled=false)"));
  }
  if (request.algorithm && *request.algorithm != policy.algorithm) {
    return refuse(FieldError("algorithm", "tenant '" + tenant_id + "' signs with " +
                                              std::string(AlgorithmName(policy.algorithm)) + ", not " +
                                              std::string(AlgorithmName(*request.algorithm))));
  }
  // All-or-nothing validation before anything is signed or reserved.
  for (size_t i = 0; i < request.items.size(); ++i) {
    const SignItem& item = request.items[i];
    std::string field = request.batch ? "digests[" + std::to_string(i) + "]" : "digest";
    if (!DigestSizeAccepted(policy.algorithm, item.digest.size())) {
      std::string expected = policy.algorithm == Algorithm::kEd25519
                                 ? "32 or 64 bytes (SHA-256 or SHA-512)"
                                 : std::to_string(DigestSize(policy.algorithm)) + " bytes (" +
                                       std::string(DigestName(policy.algorithm)) + ")";
      return refuse(FieldError(field, field + " is " + std::to_string(item.digest.size()) + " bytes; " +
                                          std::string(AlgorithmName(policy.algorithm)) + " needs " + expected));
    }
    Status asset = CheckAssetId(request.batch ? "items[" + std::to_string(i) + "].asset_id" : "asset_id",
                                item.asset_id);
    if (!asset.ok()) return refuse(asset);
  }
  const KeyRecord* key = &state->SigningKey();
  if (!MaySign(key->state)) {
    return refuse(FailedPreconditionError("key '" + key->key_id + "' is " + key->state + ", not active"));
  }
  KeyBackend* backend = tenants_.backends().Find(key->provider);
  if (backend == nullptr) {
    return refuse(UnavailableError("backend '" + key->provider + "' for key '" + key->key_id + "' is not configured"));
  }
  const int64_t n = static_cast<int64_t>(request.items.size());
  TimePoint now = clock_.Now();
  Status reserved = limiter_.Reserve(tenant_id, policy.max_issuance_per_24h, policy.rate_limit_per_second, n, now);
  if (!reserved.ok()) return refuse(reserved);

  std::vector<SignResult> results;
  std::vector<LedgerEntry> rows;
  results.reserve(request.items.size());
  rows.reserve(request.items.size());
  bool failed_over = false;  // at most one failover retry (a fence retry is `retried`)
  std::shared_ptr<const TenantState> failed_state;  // keeps `policy` alive across a retry
  for (size_t i = 0; i < request.items.size(); ++i) {
    const SignItem& item = request.items[i];
    auto signature = backend->SignDigest(key->key_uri, policy.algorithm, item.digest);
    if (!signature.ok() && !failed_over) {
      // A failure that fails the tenant over: sign the whole request again on
      // the standby, so the client never sees the failing backend.
      FailoverService* failover = failover_.load();
      auto next = failover != nullptr ? failover->OnSignFailure(tenant_id, *state, signature.status()) : nullptr;
      KeyBackend* next_backend = next ? tenants_.backends().Find(next->SigningKey().provider) : nullptr;
      if (next_backend != nullptr && next->policy.policy.algorithm == policy.algorithm) {
        failed_over = true;
        failed_state = std::exchange(state, std::move(next));
        key = &state->SigningKey();
        backend = next_backend;
        results.clear();
        rows.clear();
        i = static_cast<size_t>(-1);
        continue;
      }
    }
    if (!signature.ok()) {
      limiter_.Release(tenant_id, n, now);
      return refuse(signature.status().Annotate("signing with key '" + key->key_id + "'"));
    }
    SignResult r;
    r.format = SignatureFormat::kRaw;
    if (FamilyOf(policy.algorithm) == KeyFamily::kEcdsa) {
      r.format = request.format == SignatureFormat::kP1363 ? SignatureFormat::kP1363 : SignatureFormat::kDer;
      if (r.format == SignatureFormat::kP1363) {
        auto raw = crypto::EcdsaDerToP1363(*signature, EcdsaFieldBytes(policy.algorithm));
        if (!raw.ok()) {
          limiter_.Release(tenant_id, n, now);
          return refuse(raw.status());
        }
        *signature = *std::move(raw);
      }
    }
    r.signature = *std::move(signature);
    r.key_id = key->key_id;
    r.key_version = key->version;
    r.algorithm = policy.algorithm;
    r.policy_hash = state->policy.hash;
    r.asset_id = item.asset_id;
    r.signed_at = now;
    r.request_id = request.request_id;

    LedgerEntry e = NewLedgerEntry(tenant_id, *state, policy.algorithm, now, request.request_id,
                                   request.api_key_id, request.client_address);
    e.kind = request.batch ? "batch" : "digest";
    e.digest_hex = crypto::HexEncode(item.digest);
    e.asset_id = item.asset_id;
    rows.push_back(std::move(e));
    results.push_back(std::move(r));
  }
  ledger_.Submit(std::move(rows), [this, tenant_id, n, now, results = std::move(results), retried,
                                   request = std::move(request),
                                   done = std::move(done)](const Status& st, std::vector<LedgerEntry>& committed) mutable {
    if (!st.ok()) {
      limiter_.Release(tenant_id, n, now);
      if (IsKeyFenced(st) && !retried && RefreshAfterFence(tenant_id, results.front().key_id).ok()) {
        return Sign(tenant_id, std::move(request), std::move(done), true);
      }
      // The signatures were produced but are never revealed: nothing unrecorded leaves.
      done(UnavailableError("signing ledger unavailable, no signature issued: " + st.message()));
      return;
    }
    for (size_t i = 0; i < results.size() && i < committed.size(); ++i) results[i].ledger_seq = committed[i].seq;
    done(std::move(results));
  });
}

void SigningService::SignMessage(const std::string& tenant_id, MessageSignRequest request, MessageCallback done,
                                 bool retried) {
  std::shared_ptr<const TenantState> state = std::move(request.state);
  if (!state || state->active_key.tenant_id != tenant_id) {
    auto state_or = tenants_.Active(tenant_id);
    if (!state_or.ok()) return done(state_or.status());
    state = *std::move(state_or);
  }
  const Policy& policy = state->policy.policy;
  const KeyRecord& key = state->SigningKey();
  if (!policy.sign_enabled) {
    return done(FailedPreconditionError("signing is paused for tenant '" + tenant_id + "' (sign_enabled=false)"));
  }
  if (Status asset = CheckAssetId("asset_id", request.asset_id); !asset.ok()) return done(asset);
  if (!request.expected_key_id.empty() && request.expected_key_id != key.key_id) {
    return done(AbortedError("the active key of tenant '" + tenant_id + "' changed during the request; retry"));
  }
  if (!MaySign(key.state)) {
    return done(FailedPreconditionError("key '" + key.key_id + "' is " + key.state + ", not active"));
  }
  KeyBackend* backend = tenants_.backends().Find(key.provider);
  if (backend == nullptr) {
    return done(UnavailableError("backend '" + key.provider + "' for key '" + key.key_id + "' is not configured"));
  }
  TimePoint now = clock_.Now();
  Status reserved = limiter_.Reserve(tenant_id, policy.max_issuance_per_24h, policy.rate_limit_per_second, 1, now);
  if (!reserved.ok()) return done(reserved);
  const Algorithm alg = policy.algorithm;
  auto signature = FamilyOf(alg) == KeyFamily::kEdDsa
                       ? backend->SignMessage(key.key_uri, alg, request.message)
                       : backend->SignDigest(key.key_uri, alg, crypto::DigestFor(alg, request.message));
  if (signature.ok() && FamilyOf(alg) == KeyFamily::kEcdsa) {
    signature = crypto::EcdsaDerToP1363(*signature, EcdsaFieldBytes(alg));
  }
  if (!signature.ok()) {
    limiter_.Release(tenant_id, 1, now);
    // The message embeds the failed key's certificate chain (COSE), so it
    // cannot simply be signed again here: the client retries on the standby.
    FailoverService* failover = failover_.load();
    if (failover != nullptr && failover->OnSignFailure(tenant_id, *state, signature.status()) != nullptr) {
      return done(UnavailableError("signing with key '" + key.key_id + "' failed (" + signature.status().message() +
                                   "); tenant '" + tenant_id + "' has failed over to its standby key, retry"));
    }
    return done(signature.status().Annotate("signing with key '" + key.key_id + "'"));
  }
  MessageSignResult r;
  r.signature = *std::move(signature);
  r.key_id = key.key_id;
  r.key_version = key.version;
  r.algorithm = alg;
  r.policy_hash = state->policy.hash;
  r.cert_serial = request.cert_serial;
  r.signed_at = now;
  r.request_id = request.request_id;

  LedgerEntry e = NewLedgerEntry(tenant_id, *state, alg, now, request.request_id, request.api_key_id,
                                 request.client_address);
  e.cert_serial = request.cert_serial;
  e.kind = request.kind;
  e.digest_hex = request.ledger_digest_hex.empty() ? crypto::Sha256Hex(request.message) : request.ledger_digest_hex;
  e.asset_id = request.asset_id;
  std::vector<LedgerEntry> rows;
  rows.push_back(std::move(e));
  ledger_.Submit(std::move(rows), [this, tenant_id, now, r = std::move(r), retried, request = std::move(request),
                                   done = std::move(done)](const Status& st,
                                                           std::vector<LedgerEntry>& committed) mutable {
    if (!st.ok()) {
      limiter_.Release(tenant_id, 1, now);
      if (IsKeyFenced(st) && !retried && RefreshAfterFence(tenant_id, r.key_id).ok()) {
        return SignMessage(tenant_id, std::move(request), std::move(done), true);
      }
      done(UnavailableError("signing ledger unavailable, no signature issued: " + st.message()));
      return;
    }
    if (!committed.empty()) r.ledger_seq = committed.front().seq;
    done(std::move(r));
  });
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
  return state->SigningKey();
}

}  // namespace concierge::core
