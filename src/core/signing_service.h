// SigningService: policy-enforced digest signing and verification, with every
// returned signature recorded in the ledger first.
//
// Sign path: cached tenant snapshot (no DB read) -> policy checks (paused,
// algorithm, digest sizes, key state) -> issuance cap / rate limit reservation
// -> backend signs on the calling thread -> rows handed to the group-commit
// LedgerWriter -> the callback gets the signatures only once their rows are
// durable. Any failure after the reservation releases it, so refused or failed
// requests never count toward caps. Verification uses the stored public key of
// any of the tenant's keys, so old signatures stay verifiable. Thread-safe.
#ifndef CONCIERGE_CORE_SIGNING_SERVICE_H_
#define CONCIERGE_CORE_SIGNING_SERVICE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "concierge/clock.h"
#include "concierge/key_backend.h"
#include "concierge/ledger.h"
#include "core/issuance.h"
#include "core/ledger_writer.h"
#include "core/tenant_service.h"

namespace concierge::core {

class FailoverService;

enum class SignatureFormat { kDer, kP1363, kRaw };
std::string_view SignatureFormatName(SignatureFormat f);

struct SignItem {
  Bytes digest;
  std::string asset_id;  // opaque client reference, recorded in the ledger
};

struct SignRequest {
  std::vector<SignItem> items;  // one for /sign, up to max_batch for /sign/batch
  bool batch = false;
  std::optional<Algorithm> algorithm;  // when given, must equal the policy's
  // Requested output for ECDSA: kDer (default) or kP1363. Ignored otherwise.
  SignatureFormat format = SignatureFormat::kDer;
  std::string request_id;
  std::string api_key_id;
  std::string client_address;
};

struct SignResult {
  Bytes signature;
  SignatureFormat format = SignatureFormat::kDer;
  std::string key_id;
  int64_t key_version = 0;
  Algorithm algorithm = Algorithm::kES256;
  std::string policy_hash;
  std::string asset_id;
  int64_t ledger_seq = 0;
  TimePoint signed_at{};
  std::string request_id;
};

// A whole message to sign (COSE Sig_structure, c2patool's to-be-signed bytes):
// hashed with the policy's digest, or signed as-is (PureEdDSA) for Ed25519.
struct MessageSignRequest {
  Bytes message;
  std::string kind = "raw";        // ledger kind: "raw" | "cose"
  std::string ledger_digest_hex;   // what the ledger records (e.g. SHA-256 of the payload)
  std::string expected_key_id;     // when set, the active key must still be this one
  // When set, sign with this snapshot instead of looking the tenant up again:
  // a caller that read the certificate chain for this snapshot's key gets a
  // signature by that same key even if a rotation cuts over in between.
  std::shared_ptr<const TenantState> state;
  std::string cert_serial;         // recorded in the ledger
  std::string asset_id;
  std::string request_id;
  std::string api_key_id;
  std::string client_address;
};

struct MessageSignResult {
  Bytes signature;  // ECDSA as P1363 r||s, RSA-PSS raw, Ed25519 raw
  std::string key_id;
  int64_t key_version = 0;
  Algorithm algorithm = Algorithm::kES256;
  std::string policy_hash;
  std::string cert_serial;
  int64_t ledger_seq = 0;
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

struct SigningOptions {
  size_t max_batch = 1000;
  size_t max_asset_id_bytes = 512;
};

class SigningService {
 public:
  using SignCallback = std::function<void(StatusOr<std::vector<SignResult>>)>;

  SigningService(TenantService& tenants, LedgerWriter& ledger, IssuanceLimiter& limiter, Clock& clock,
                 SigningOptions options = {})
      : tenants_(tenants), ledger_(ledger), limiter_(limiter), clock_(clock), options_(options) {}

  // Calls `done` exactly once: right away on a refusal, or from the ledger
  // writer thread once the rows are durable (or failed to be). When the
  // ledger fences the rows (IsKeyFenced: another instance sharing the
  // database retired the key after this one's snapshot was taken), both
  // methods reload the tenant's snapshot and sign once more with the current
  // key, so the client gets a success signed by the key now active; the
  // signatures of the fenced attempt are never revealed.
  void SignAsync(const std::string& tenant_id, SignRequest request, SignCallback done);
  // Same policy checks, reservation and ledger-before-response contract as
  // SignAsync, for one whole message. kAborted when expected_key_id is no
  // longer the active key (a rotation raced the request; retry).
  using MessageCallback = std::function<void(StatusOr<MessageSignResult>)>;
  void SignMessageAsync(const std::string& tenant_id, MessageSignRequest request, MessageCallback done);

  StatusOr<VerifyResult> Verify(const std::string& tenant_id, const VerifyRequest& request);
  // The active key, or `key_id` when given.
  StatusOr<KeyRecord> PublicKey(const std::string& tenant_id, const std::string& key_id);

  const SigningOptions& options() const { return options_; }

  // Told about backend faults on the signing key; may fail the tenant over to
  // its standby key (core/failover.h). A digest request whose failure trips
  // the failover is retried once on the standby. Not owned; set before use.
  void SetFailover(FailoverService* failover) { failover_.store(failover); }

 private:
  // At most max_asset_id_bytes, and no NUL byte: the ledger stores it as text,
  // which PostgreSQL cannot hold NUL in (one bad row would fail its whole
  // group commit). kInvalidArgument naming `field`.
  Status CheckAssetId(const std::string& field, const std::string& asset_id) const;
  // After a fenced commit: reloads the tenant's snapshot unless it already
  // moved on from `fenced_key_id`.
  Status RefreshAfterFence(const std::string& tenant_id, const std::string& fenced_key_id);
  // `retried`: this is the one attempt after a fenced commit.
  void Sign(const std::string& tenant_id, SignRequest request, SignCallback done, bool retried);
  void SignMessage(const std::string& tenant_id, MessageSignRequest request, MessageCallback done, bool retried);

  TenantService& tenants_;
  LedgerWriter& ledger_;
  IssuanceLimiter& limiter_;
  Clock& clock_;
  SigningOptions options_;
  std::atomic<FailoverService*> failover_{nullptr};
};

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_SIGNING_SERVICE_H_
