// AuditLog: the service side of the tamper-evident audit log (docs/audit.md).
//
// - Recording: Record() appends one state-change record through the ledger's
//   group-commit writer (so it is ordered with signature records, which the
//   writer derives from ledger rows itself) and returns once it is durable.
//   State changes use audit-before-commit: Begin() records the attempt
//   ("attempted") before anything changes, and the caller applies the change
//   only if that succeeded; Finish() then records "success" or "failure". A
//   change that happened therefore always has at least its attempt on record,
//   and an audit failure refuses the change instead of hiding it.
// - Checkpoints: Checkpoint() signs (origin, tree size, root, time) with the
//   audit key, a key created in a backend (the software keystore by default)
//   at first start and recorded in the AuditStore. A background thread
//   (Start) checkpoints every `checkpoint_interval` by the injected clock, and
//   Stop() signs a final one, so a clean restart leaves nothing unanchored.
// - Proofs: inclusion and consistency proofs from the stored tree (leaf
//   hashes plus every kAuditNodeLevelStride-th level of interior nodes), so a
//   proof reads O(log^2 n) small ranges, not the whole log.
//
// RestoreAuditTree() is the start-up half: it rebuilds the writer's tree from
// storage and refuses (kDataLoss) a database whose stored tree no longer
// matches its latest signed checkpoint or whose unanchored tail was edited.
//
// Thread-safe. Borrows the writer, store, backends and clock, which must
// outlive it.
#ifndef CONCIERGE_CORE_AUDIT_LOG_H_
#define CONCIERGE_CORE_AUDIT_LOG_H_

#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "audit/checkpoint.h"
#include "audit/merkle.h"
#include "concierge/audit.h"
#include "concierge/clock.h"
#include "concierge/key_backend.h"
#include "core/ledger_writer.h"

namespace concierge::core {

// What a caller records. Strings are cut to 256 bytes of valid UTF-8; detail
// must be a JSON object of strings, integers, booleans, arrays and objects
// (no floats, never secrets), at most kMaxDetailBytes in canonical form.
struct AuditEvent {
  std::string actor;  // API key id, or "system"
  std::string tenant_id;
  std::string action;  // "<object>.<verb>": "policy.create", "api_key.revoke", ...
  std::string target;
  std::string request_id;
  std::string client_address;
  std::string policy_hash;
  nlohmann::json detail = nlohmann::json::object();
};

struct AuditLogOptions {
  // Log name in every checkpoint; fixed when the audit key is created (later
  // changes to the option do not rename an existing log).
  std::string origin = "c2-concierge/audit";
  std::chrono::seconds checkpoint_interval{60};
  std::string key_provider = "software";
  // How often the background thread looks at the (injected) clock.
  std::chrono::milliseconds poll_interval{1000};
  // Told about background checkpoint failures (the server logs them).
  std::function<void(const Status&)> on_error;
};

struct InclusionProofResult {
  int64_t index = 0;
  int64_t tree_size = 0;
  AuditHash leaf_hash{};
  AuditHash root_hash{};
  std::vector<AuditHash> path;
};

struct ConsistencyProofResult {
  int64_t from_size = 0;
  int64_t to_size = 0;
  AuditHash from_root{};
  AuditHash to_root{};
  std::vector<AuditHash> path;
};

// Reads a stored tree through an AuditStore.
class StoreTreeReader : public audit::TreeReader {
 public:
  explicit StoreTreeReader(AuditStore& store) : store_(store) {}
  StatusOr<std::vector<audit::Hash>> ReadNodes(int level, uint64_t begin, uint64_t end) override;

 private:
  AuditStore& store_;
};

// Verifies a stored checkpoint: its signature with the recorded key named by
// key_id, and that the signed note says what the row's columns say.
StatusOr<audit::Checkpoint> VerifyStoredCheckpoint(const AuditCheckpointRecord& checkpoint,
                                                   const std::vector<AuditKeyRecord>& keys);

// Start-up: the committed tree for LedgerWriter. Checks the latest signed
// checkpoint (signature, size <= stored entries, stored tree root at its
// size) and recomputes every record after it from its columns against its
// stored leaf hash. kDataLoss naming the problem (and the index) otherwise.
StatusOr<audit::CompactRange> RestoreAuditTree(AuditStore& store);

class AuditLog {
 public:
  static constexpr size_t kMaxDetailBytes = 4096;

  // Loads the audit key recorded in `store`, or creates one in
  // options.key_provider and records it (first start).
  static StatusOr<std::unique_ptr<AuditLog>> Create(LedgerWriter& writer, AuditStore& store,
                                                    BackendRegistry& backends, Clock& clock,
                                                    AuditLogOptions options = {});
  ~AuditLog();  // Stop()
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Appends one record with `outcome`; durable on return. kUnavailable when
  // the writer or storage fails, kInvalidArgument for a bad detail.
  StatusOr<AuditRecord> Record(const AuditEvent& event, std::string_view outcome);
  // Audit-before-commit (see the header comment). Begin returns the attempt
  // record's index; do not apply the change unless it is OK.
  StatusOr<int64_t> Begin(const AuditEvent& event);
  // Records the outcome of a begun change: "success" with `result` merged
  // into the detail, or "failure" with the error code and message.
  // detail.attempt_index links it to Begin's record.
  Status Finish(const AuditEvent& event, int64_t attempt_index, const Status& outcome,
                const nlohmann::json& result = nlohmann::json::object());

  // Signs and stores a checkpoint of the committed tree now. When the tree
  // has not grown since the latest checkpoint, returns that one instead
  // (unless `force`), so on-demand requests cannot flood the table.
  StatusOr<AuditCheckpointRecord> Checkpoint(bool force = false);
  // Checkpoint() if checkpoint_interval has passed on the clock since the
  // last one. The background thread calls this; tests call it directly.
  void Tick();
  StatusOr<std::optional<AuditCheckpointRecord>> Latest();

  // Proofs against the committed tree. InvalidArgument naming the parameter
  // when a size exceeds the committed tree size or the index is outside.
  StatusOr<InclusionProofResult> InclusionProof(int64_t index, int64_t tree_size);
  StatusOr<ConsistencyProofResult> ConsistencyProof(int64_t from_size, int64_t to_size);

  const AuditKeyRecord& key() const { return key_; }
  AuditHead head() const { return writer_.CommittedAuditHead(); }
  AuditStore& store() { return store_; }

  // Background checkpoints; Stop() joins the thread and signs a final
  // checkpoint if the tree grew (call after the writer has drained).
  void Start();
  void Stop();

 private:
  AuditLog(LedgerWriter& writer, AuditStore& store, KeyBackend& backend, Clock& clock, AuditLogOptions options,
           AuditKeyRecord key, std::optional<TimePoint> last_checkpoint);
  void Loop();

  LedgerWriter& writer_;
  AuditStore& store_;
  KeyBackend& backend_;
  Clock& clock_;
  AuditLogOptions options_;
  AuditKeyRecord key_;

  std::mutex checkpoint_mu_;                 // serialises Checkpoint()
  std::optional<TimePoint> last_checkpoint_;  // guarded by checkpoint_mu_

  std::mutex thread_mu_;
  std::condition_variable thread_cv_;
  bool stopping_ = false;  // guarded by thread_mu_
  std::thread thread_;
};

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_AUDIT_LOG_H_
