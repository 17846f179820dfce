// LedgerWriter: the group-commit writer of the signing ledger and of the
// tamper-evident audit log.
//
// Request threads Submit() their rows and return at once; one writer thread
// takes everything queued (whole submissions, up to max_batch rows), commits it
// in one transaction, then runs each submission's callback with the outcome.
//
// Audit: the writer owns the audit tree's right edge (audit::CompactRange,
// restored from storage at start). Inside each batch's transaction it turns
// every ledger row into its audit record ("sign.<kind>", see
// SignatureAuditRecord) and takes queued state-change records
// (SubmitAudit), in queue order, assigning consecutive indexes and computing
// leaf hashes; the records commit in the same transaction as the ledger rows
// (LedgerStore::AppendBatch's AuditBuilder), so no signature is released
// without its audit record and the log order is the commit order. If the
// commit fails, the tree is rolled back (and re-read from storage when a
// reload function is given) and every submitter gets the error. Several
// instances on one PostgreSQL database each have a writer: the store tells
// the builder the log's committed size under its append lock, and a writer
// whose tree is behind reloads it first (CatchUpTree), so the log stays one
// tree. A batch the store fenced (IsKeyFenced: its key was retired by another
// instance) fails for its signers, who sign again; state-change records
// caught in that batch are queued again instead of failing.
// While one commit is in flight the next batch accumulates, so throughput grows
// with load without adding latency at low load. A caller must not reveal a
// signature before its callback reported OK: that is what makes "every
// signature returned is in the ledger" hold across crashes.
//
// Mass re-sign batches (CommitResign) go through the same thread, so the
// ledger keeps a single writer (seq order = commit order) and interactive
// signing keeps priority: a re-sign batch is committed only when no
// interactive submission is waiting.
//
// After answering a batch the writer runs the store's Maintain() (SQLite
// checkpoints its write-ahead log there), so upkeep delays the next commit,
// never a response.
//
// Scheduling: the writer is the one serial stage of every signature (commit
// latency bounds throughput at a fixed number of clients), and on a busy
// machine the request threads kept preempting it: a 40-row commit took ~1.1
// ms instead of ~0.6. With `thread_nice` set, the writer thread asks the
// kernel for that nice value; raising priority needs CAP_SYS_NICE (or
// RLIMIT_NICE), so it may be refused: priority_raised() says which.
// Thread-safe. Callbacks run on the writer thread and must not block.
#ifndef CONCIERGE_CORE_LEDGER_WRITER_H_
#define CONCIERGE_CORE_LEDGER_WRITER_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "audit/merkle.h"
#include "concierge/audit.h"
#include "concierge/ledger.h"

namespace concierge::core {

struct LedgerWriterOptions {
  size_t max_batch_rows = 2048;   // rows per transaction (a larger submission still goes whole)
  size_t max_queued_rows = 200000;  // back-pressure: beyond this Submit fails fast
  // Under load (the previous commit had >= linger_after_rows rows) the writer
  // waits up to `linger` for the group to reach linger_target_rows before it
  // commits: each commit has a fixed cost (WAL page writes, one fsync), so
  // fewer, larger commits cost less CPU per row. At low load it commits at
  // once, so a lone request never waits.
  // 32: at 64 closed-loop clients about half are in one commit while the
  // others are being signed, so a target of 48 was never reached and every
  // commit waited the whole linger (measured: 32 gave ~10% more req/s).
  std::chrono::microseconds linger{500};
  size_t linger_after_rows = 8;
  size_t linger_target_rows = 32;
  // Nice value for the writer thread (-20..19); 0 leaves it as created.
  int thread_nice = 0;
};

struct LedgerWriterStats {
  uint64_t commits = 0;
  uint64_t rows = 0;
  uint64_t failed_commits = 0;
  uint64_t audit_records = 0;
  uint64_t maintenance_failures = 0;  // LedgerStore::Maintain() errors
};

// Size and root of the audit tree as last committed.
struct AuditHead {
  uint64_t size = 0;
  audit::Hash root = audit::EmptyRoot();
};

// The audit record of a signature, from its committed ledger row: action
// "sign.<kind>", actor the API key, target the key id, outcome "success",
// detail {"algorithm","asset_id"?,"cert_serial"?,"digest","key_version",
// "ledger_seq"} in canonical form. Index and leaf hash are left to the writer.
AuditRecord SignatureAuditRecord(const LedgerEntry& row);

class LedgerWriter {
 public:
  using Done = std::function<void(const Status&)>;

  // Re-reads the committed audit tree after a failed commit, in case the
  // failure left storage ahead of the writer (e.g. an error reported after
  // the commit reached the disk).
  using AuditReload = std::function<StatusOr<audit::CompactRange>()>;

  // `audit_tree` is the committed audit tree (empty for a new log).
  LedgerWriter(LedgerStore& store, LedgerWriterOptions options = {}, audit::CompactRange audit_tree = {},
               AuditReload reload = nullptr);
  ~LedgerWriter();  // commits what is queued, then stops
  LedgerWriter(const LedgerWriter&) = delete;
  LedgerWriter& operator=(const LedgerWriter&) = delete;

  // Queues `entries` to be committed together. `done` receives OK once they are
  // durable, or the error (kUnavailable when stopped or overloaded). Entries get
  // their seq filled in before `done` runs; `done` receives them back.
  using DoneWithEntries = std::function<void(const Status&, std::vector<LedgerEntry>&)>;
  void Submit(std::vector<LedgerEntry> entries, DoneWithEntries done);

  // Queues `batch` (LedgerStore::AppendResignBatch) for the writer thread;
  // `done` runs there once it is committed or failed (kUnavailable once
  // stopped, then on the caller's thread). `batch` must live until `done`.
  void SubmitResign(ResignBatch& batch, std::function<void(const Status&)> done);
  // SubmitResign and wait: its rows get their seqs.
  Status CommitResign(ResignBatch& batch);
  // Interactive rows queued and not yet committed: a busy signal for
  // background work that should yield to requests.
  size_t queued_rows() const;
  // Re-sign batches waiting for the writer (metrics, tests).
  size_t queued_resign_batches() const;
  // Queues one audit record that is not a signature (a state change). The
  // writer assigns its index and leaf hash; `done` receives the stored record
  // once it is durable, or the error. Ordered with signatures by queue order.
  using AuditDone = std::function<void(const Status&, const AuditRecord&)>;
  void SubmitAudit(AuditRecord record, AuditDone done);

  void Stop();
  LedgerWriterStats stats() const;
  // Whether the writer thread runs at options.thread_nice (false when that is
  // 0 or the kernel refused it).
  bool priority_raised() const { return priority_raised_; }
  // The last Maintain() error (OK if none).
  Status last_maintenance_error() const;
  AuditHead CommittedAuditHead() const;

 private:
  struct Pending {
    std::vector<LedgerEntry> entries;
    DoneWithEntries done;
    std::optional<AuditRecord> audit;  // set for SubmitAudit
    AuditDone audit_done;
  };
  struct PendingResign {
    ResignBatch* batch;
    std::function<void(const Status&)> done;
  };
  void Run();
  void RestoreTree(const audit::CompactRange& before);  // writer thread only
  // Reloads the tree when the store's log (AuditAppend::stored_size) is ahead
  // of it: another instance appended (writer thread only).
  Status CatchUpTree(int64_t stored_size);
  // After a fenced commit: the batch's state-change records, queued again.
  void RequeueAuditRecords(std::vector<Pending>& batch);
  // Assigns the next index, hashes the leaf and extends the tree; the record
  // and completed nodes at stored levels go to `out` (writer thread only).
  const AuditRecord& AppendAuditLeaf(AuditRecord record, AuditAppend& out);
  void Enqueue(Pending pending, size_t rows);
  // Store upkeep between batches (writer thread only).
  void Maintain();

  LedgerStore& store_;
  LedgerWriterOptions options_;
  audit::CompactRange tree_;       // writer thread only
  AuditReload reload_;
  audit::CompactRange committed_;  // guarded by mu_
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  std::deque<PendingResign> resign_queue_;
  size_t queued_rows_ = 0;
  bool stopping_ = false;
  bool lingering_ = false;  // writer is waiting for a larger group
  LedgerWriterStats stats_;
  Status maintenance_error_;  // guarded by mu_
  bool priority_raised_ = false;  // set before the constructor returns
  std::thread thread_;
};

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_LEDGER_WRITER_H_
