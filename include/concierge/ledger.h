// Signing ledger: one row per signature the service returned. It is what makes
// mass re-signing possible after a key compromise ("everything key K signed
// between T1 and T2"), and what issuance caps are derived from after a restart.
//
// Contract: a signature is returned to a client only after its ledger row is
// durable (AppendBatch returned OK). Rows are append-only; `seq` is assigned by
// the store, strictly increasing in commit order. Implementations must be
// thread-safe; AppendBatch is called by a single group-commit writer thread, so
// it should not share a lock with request-path reads.
//
// Audit (concierge/audit.h): AppendBatch also writes the batch's audit records
// in the SAME transaction. Inside the transaction, after the ledger rows are
// inserted and their seq filled in, the store calls the AuditBuilder once with
// those rows; the builder returns the audit records and tree nodes to insert
// (the writer computes the leaf hashes, in order, so every store hashes the
// same way). If the builder or any insert fails, nothing of the batch is
// stored. A batch may hold audit records and no ledger rows (state-change
// records), which still needs its own transaction.
#ifndef CONCIERGE_LEDGER_H_
#define CONCIERGE_LEDGER_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "concierge/audit.h"
#include "concierge/clock.h"
#include "concierge/status.h"

namespace concierge {

struct LedgerEntry {
  int64_t seq = 0;            // assigned by AppendBatch
  std::string tenant_id;
  std::string key_id;
  int64_t key_version = 0;
  std::string cert_serial;    // empty until certificates exist
  std::string algorithm;      // "ES256", ...
  std::string kind = "digest";  // "digest" | "batch" | "cose" | "raw" | "resign"
  std::string digest_hex;     // what was signed (digest, or hash of the payload)
  std::string asset_id;       // opaque client reference, may be empty
  std::string request_id;
  std::string api_key_id;
  std::string client_address;
  std::string policy_hash;
  TimePoint signed_at{};
  // Kind "resign" only: the seq of the row this one re-signs (same digest and
  // asset_id, new key). At most one re-signature per (original, key).
  int64_t resign_of_seq = 0;
};

struct LedgerQuery {
  std::string tenant_id;              // required
  std::string key_id;                 // optional filter
  std::optional<TimePoint> from;      // inclusive
  std::optional<TimePoint> to;        // exclusive
  int64_t after_seq = 0;              // cursor: rows with seq > after_seq
  int limit = 100;                    // 1..1000
};

struct LedgerPage {
  std::vector<LedgerEntry> entries;  // ascending seq
  int64_t next_cursor = 0;           // 0 = no more rows
};

// Signatures per minute, for rebuilding issuance windows at start-up.
struct MinuteCount {
  std::string tenant_id;
  int64_t minute = 0;  // unix minutes
  int64_t count = 0;
};

// Mass re-sign (see core/resign_job.h). A scan lists the rows a job still has
// to handle: rows of `tenant_id` signed by `key_id` with seq > after_seq (and
// signed_at >= since), ascending.
struct ResignScan {
  std::string tenant_id;
  std::string key_id;
  std::optional<TimePoint> since;
  int64_t after_seq = 0;
  std::string resigned_by_key_id;  // reports an existing re-signature by this key
  int limit = 500;                 // 1..1000
};

struct ResignCandidate {
  LedgerEntry entry;
  int64_t existing_resign_seq = 0;  // seq of a re-signature by resigned_by_key_id, 0 = none
};

// The outcome for one original row, kept for the job's results download.
struct ResignResult {
  std::string job_id;
  int64_t original_seq = 0;
  std::string status;  // resigned | needs_client | already_resigned
  int64_t new_seq = 0;  // the "resign" row (resigned, already_resigned)
  std::string original_kind;
  std::string asset_id;
  std::string digest_hex;
  std::string signature_b64;     // resigned only
  std::string signature_format;  // "der" (ECDSA) or "raw"
  std::string key_id;            // the new key
  int64_t key_version = 0;
  std::string detail;  // why the client must act (needs_client), or a note
};

// One step of a job, committed atomically: the new ledger rows, one result per
// original in (expected_cursor, new_cursor], and the job's cursor and counters.
struct ResignBatch {
  std::string job_id;
  int64_t expected_cursor = 0;  // the job's cursor_seq before this batch
  int64_t new_cursor = 0;       // the last original seq this batch covers
  TimePoint at{};
  std::vector<LedgerEntry> rows;       // kind "resign", resign_of_seq set; seq filled on success
  std::vector<ResignResult> results;   // new_seq filled from `rows` on success
};
// The commit fence (several instances on one database): a store shared by
// several `keyctl serve` processes refuses, in AppendBatch's transaction, a
// batch naming a key that may no longer sign (another instance cut over to a
// new key after this one signed). Nothing of the batch is stored. The status
// is kAborted with a recognisable message; the signer reloads its tenant
// snapshot and signs again with the current key.
Status KeyFencedError(const std::string& key_id, const std::string& state);
bool IsKeyFenced(const Status& status);

// Called inside AppendBatch's transaction with the ledger rows (seq filled in).
// Fills `out` with the audit records and nodes to commit with them.
using AuditBuilder = std::function<Status(const std::vector<LedgerEntry>& rows, AuditAppend& out)>;

class LedgerStore {
 public:
  virtual ~LedgerStore() = default;
  // Appends all entries, and whatever `audit` returns, in one transaction,
  // durable on return; fills `seq`. A null `audit` appends ledger rows only.
  // On failure nothing is stored and every seq is 0.
  virtual Status AppendBatch(std::vector<LedgerEntry>& entries, const AuditBuilder& audit = nullptr) = 0;
  virtual StatusOr<LedgerPage> ListLedger(const LedgerQuery& query) = 0;
  // Per-tenant, per-minute counts of rows with signed_at >= since, not
  // counting re-sign rows (resign_of_seq set): those are no client signatures.
  virtual StatusOr<std::vector<MinuteCount>> CountByMinuteSince(TimePoint since) = 0;
  // Whether a row with this request id exists for the tenant (tests, idempotency).
  virtual StatusOr<bool> HasRequest(const std::string& tenant_id, const std::string& request_id) = 0;

  // --- mass re-sign (the job records themselves are in Store) ---
  virtual StatusOr<std::vector<ResignCandidate>> ListResignCandidates(const ResignScan& scan) = 0;
  // How many rows the scan would list without a limit.
  virtual StatusOr<int64_t> CountResignCandidates(const ResignScan& scan) = 0;
  // In one transaction: checks that the job is "running" with cursor_seq ==
  // expected_cursor (kAborted otherwise: paused, cancelled, or another runner
  // moved it), appends `rows`, stores `results` and advances the job's cursor
  // and counters. A second re-signature of the same original by the same key
  // is refused (kAlreadyExists) and nothing is written, so a retried batch can
  // never duplicate a row. Like AppendBatch, called by the single ledger writer.
  // `audit` (optional) runs inside the transaction once the rows have their
  // seq, like AppendBatch's: re-signatures are signatures, so they are audited.
  virtual Status AppendResignBatch(ResignBatch& batch, const AuditBuilder& audit = nullptr) = 0;
  // A job's results with original_seq > after_seq, ascending, at most `limit` (1..1000).
  virtual StatusOr<std::vector<ResignResult>> ListResignResults(const std::string& job_id, int64_t after_seq,
                                                                int limit) = 0;

  // Housekeeping the single ledger writer runs between batches, after the
  // previous batch has been answered, so no signer waits for it. It may take
  // a few milliseconds, and must be cheap when there is nothing to do (it is
  // called after every batch). SQLite checkpoints its write-ahead log here,
  // which keeps the -wal file small and reused. Default: nothing. An error
  // loses nothing (everything appended is already durable); it is counted.
  virtual Status Maintain() { return Status::Ok(); }
};

}  // namespace concierge

#endif  // CONCIERGE_LEDGER_H_
