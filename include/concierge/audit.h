// Tamper-evident audit log: the records it holds and the storage contract.
//
// Every signature and every state-changing API call is one AuditRecord, a leaf
// of an append-only RFC 6962 Merkle tree (src/audit). Records get dense
// indexes 0, 1, 2, ... in the order the group-commit writer (core::LedgerWriter)
// appends them; a signature's record commits in the same transaction as its
// ledger row (LedgerStore::AppendBatch with an AuditBuilder). Signed
// checkpoints commit to "the first tree_size records have root root_hash".
//
// AuditStore is the read side plus checkpoints and the audit key. It is
// implemented by the same object as the LedgerStore (SQLite: SqliteLedger), so
// the writer path and the read path see one database. Implementations must be
// thread-safe; reads must never see a partially committed batch. Records are
// never updated or deleted by the service.
//
// Nothing here may carry a secret: the detail JSON holds identifiers, digests
// and outcomes only.
#ifndef CONCIERGE_AUDIT_H_
#define CONCIERGE_AUDIT_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "concierge/clock.h"
#include "concierge/key_backend.h"  // Bytes
#include "concierge/status.h"

namespace concierge {

inline constexpr size_t kAuditHashSize = 32;  // SHA-256
using AuditHash = std::array<uint8_t, kAuditHashSize>;

// Outcomes. A state change is recorded twice: kAuditAttempted before it is
// applied (so nothing changes unrecorded) and kAuditSuccess / kAuditFailure
// after. Signatures are recorded once, kAuditSuccess, when they are released.
inline constexpr char kAuditAttempted[] = "attempted";
inline constexpr char kAuditSuccess[] = "success";
inline constexpr char kAuditFailure[] = "failure";

struct AuditRecord {
  int64_t index = 0;           // leaf index, assigned by the writer
  TimePoint time{};            // stored and hashed with millisecond precision
  std::string actor;           // API key id; "system" for the service itself
  std::string tenant_id;       // empty = not about one tenant
  std::string action;          // "sign.digest", "policy.update", "api_key.create", ...
  std::string target;          // key id, tenant id, API key id, certificate serial, ...
  std::string outcome;         // kAuditAttempted | kAuditSuccess | kAuditFailure
  std::string request_id;
  std::string client_address;
  std::string policy_hash;     // the tenant's policy hash when it applies
  std::string detail_json = "{}";  // canonical JSON object (sorted keys, no spaces)
  AuditHash leaf_hash{};       // SHA-256(0x00 || canonical entry), see audit/entry.h
};

// A stored interior node: the root of the perfect subtree of 2^level leaves
// starting at leaf index << level. Only levels that are multiples of
// kAuditNodeLevelStride are stored, so proofs read a bounded number of rows
// per tree level instead of every leaf.
inline constexpr int kAuditNodeLevelStride = 4;
struct AuditNode {
  int level = 0;
  int64_t index = 0;
  AuditHash hash{};
};

// What one group commit adds to the audit log, written in the same
// transaction as the batch's ledger rows.
struct AuditAppend {
  std::vector<AuditRecord> entries;  // consecutive indexes
  std::vector<AuditNode> nodes;
  // Set by the store before it calls the builder, when other processes may
  // append to the same log (PostgreSQL): the log's committed size, read under
  // the append lock. A builder whose in-memory tree differs reloads it first.
  // -1: the caller is the only writer (SQLite), nothing was read.
  int64_t stored_size = -1;
};

// The key that signs checkpoints, and the log name (origin) it signs for.
struct AuditKeyRecord {
  std::string key_id;
  std::string origin;
  std::string algorithm;       // "ES256"
  std::string provider;        // backend holding the private key
  std::string key_uri;
  std::string public_key_pem;  // SPKI PEM
  TimePoint created_at{};
};

struct AuditCheckpointRecord {
  int64_t id = 0;              // assigned by the store, increasing
  int64_t tree_size = 0;
  AuditHash root_hash{};
  TimePoint timestamp{};       // millisecond precision, as in the note
  std::string key_id;
  std::string note;            // the signed bytes (audit/checkpoint.h format)
  Bytes signature;             // DER ECDSA over SHA-256(note)
};

struct AuditQuery {
  std::string tenant_id;           // exact match when set
  std::string actor;
  std::string action;
  std::optional<TimePoint> from;   // inclusive
  std::optional<TimePoint> to;     // exclusive
  int64_t after_index = -1;        // cursor: records with index > after_index
  int limit = 100;                 // 1..1000
};

struct AuditPage {
  std::vector<AuditRecord> entries;  // ascending index
  int64_t next_cursor = -1;          // -1 = no more rows
};

class AuditStore {
 public:
  virtual ~AuditStore() = default;

  virtual StatusOr<AuditPage> ListAudit(const AuditQuery& query) = 0;
  // Number of records committed (the next index).
  virtual StatusOr<int64_t> AuditSize() = 0;
  // Node hashes at `level` (0 = leaf hashes) for indexes [begin, end),
  // ascending. kDataLoss if any is missing: the tree is then not what was
  // committed.
  virtual StatusOr<std::vector<AuditHash>> AuditNodes(int level, int64_t begin, int64_t end) = 0;

  virtual Status InsertAuditCheckpoint(AuditCheckpointRecord& checkpoint) = 0;  // fills id
  // Ascending id; at most `limit` (1..1000) after `after_id`.
  virtual StatusOr<std::vector<AuditCheckpointRecord>> ListAuditCheckpoints(int64_t after_id, int limit) = 0;
  // The checkpoint with the largest id, or nullopt when none was signed yet.
  virtual StatusOr<std::optional<AuditCheckpointRecord>> LatestAuditCheckpoint() = 0;

  virtual Status InsertAuditKey(const AuditKeyRecord& key) = 0;
  virtual StatusOr<std::vector<AuditKeyRecord>> ListAuditKeys() = 0;
};

}  // namespace concierge

#endif  // CONCIERGE_AUDIT_H_
