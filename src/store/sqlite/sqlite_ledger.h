// SqliteLedger: the SQLite LedgerStore (the `ledger` table of migration v3)
// and AuditStore (the audit_* tables of migration v5), in one object because
// a batch's ledger rows and audit records commit in one transaction.
//
// It lives in the same database file as SqliteStore but opens its own two
// connections, so the ledger never shares a lock with the admin/request store:
//  - a writer connection, used only by AppendBatch (in practice by the single
//    LedgerWriter thread), guarded by its own mutex;
//  - a reader connection for ListLedger, CountByMinuteSince and HasRequest,
//    guarded by another mutex. In WAL mode a reader works on the last
//    committed snapshot, so reads never wait for a commit (or its fsync) and
//    never see rows of a transaction that has not committed.
//
// Thread-safe. Readers are serialised among themselves on the one reader
// connection; that is enough for the ledger's read traffic (listings and a
// start-up count), which is not on the signing path.
//
// Durability: journal_mode=WAL and synchronous=FULL, so AppendBatch returning
// OK means the rows survive a power cut. wal_autocheckpoint=0 on both
// connections: an automatic checkpoint would run inside whichever commit
// crossed the threshold, i.e. on the signing path (p99 spikes of 0.2-0.8 s
// were measured).
//
// WAL upkeep: SQLite writes the log from its start again only after a
// checkpoint has copied every frame, and a passive checkpoint on another
// connection never catches up with a writer that commits without pause (the
// -wal file grew ~55 MB/s at 64 connections, and every fdatasync of a growing
// file also writes its inode: ~0.68 ms instead of ~0.43 ms per commit).
// So the writer connection checkpoints itself, in Maintain(), which the
// LedgerWriter calls between batches once their responses are out: when the
// log has grown by checkpoint_frames since the last attempt, a PASSIVE
// checkpoint copies it (one fsync of the database file, ~1.3 ms for ~500
// frames); the next commit then starts the log again, so the -wal file stays
// at a few MB and is overwritten in place. A reader that still uses old
// frames stops the copy short and the log grows until the next attempt;
// nothing waits for it. SqliteStore::Checkpoint() (the owner's background
// thread, every few seconds) still runs on its own connection for commits
// that never reach the threshold (the admin store's, an idle ledger).
//
// Schema: Open() does not migrate. Run SqliteStore::Migrate() first; Open()
// fails with kFailedPrecondition on a database below kMinSchemaVersion (or
// newer than this build knows). Every statement is prepared once: the INSERT
// at Open(), each read shape on first use, and reused with fresh bindings.
//
// Read-only mode (SqliteLedgerOptions::read_only, for `keyctl audit verify
// --db` on a live or copied database): only the reader connection is opened,
// with SQLITE_OPEN_READONLY; every write returns kFailedPrecondition.
//
// Semantics beyond concierge/ledger.h:
//  - AppendBatch with no entries is a no-op (OK). Entries need a tenant_id and
//    key_id (kInvalidArgument naming the field and entry index otherwise,
//    before anything is written). On any failure nothing of the batch is
//    stored and every entry's seq is 0.
//  - ListLedger: tenant_id required, limit 1..1000, after_seq >= 0
//    (kInvalidArgument naming the field). next_cursor is the last returned
//    seq when the page is full, else 0; so a page that happens to end exactly
//    at the last row is followed by one empty page.
//  - CountByMinuteSince: ordered by (tenant_id, minute); minute is
//    floor(signed_at_ms / 60000) for the non-negative times the service
//    writes.
//  - Audit records and nodes from the AuditBuilder are inserted after the
//    ledger rows, in the same transaction; an index that exists already
//    (kAlreadyExists) fails the whole batch.
//  - ListAudit: limit 1..1000, after_index >= -1 (kInvalidArgument naming the
//    field); next_cursor is the last index when the page is full, else -1.
//  - AuditNodes: kDataLoss when a requested node or leaf is missing or its
//    hash is not 32 bytes (the stored tree was damaged).
#ifndef CONCIERGE_STORE_SQLITE_SQLITE_LEDGER_H_
#define CONCIERGE_STORE_SQLITE_SQLITE_LEDGER_H_

#include <sqlite3.h>

#include <array>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "concierge/audit.h"
#include "concierge/clock.h"
#include "concierge/ledger.h"
#include "concierge/status.h"
#include "store/common/sql_records.h"
#include "store/sqlite/sqlite_util.h"

namespace concierge::store {

struct SqliteLedgerOptions {
  // How long AppendBatch waits for the database write lock (held by another
  // connection, e.g. SqliteStore or a migration) before kUnavailable.
  std::chrono::milliseconds busy_timeout{5000};
  // Open the reader connection only, read-only (see above).
  bool read_only = false;
  // Maintain() checkpoints once the log has grown by this many frames (4 KiB
  // pages) since its last attempt; 0 = never (SqliteStore's checkpoints only).
  int checkpoint_frames = 512;
};

// What Maintain() did so far (metrics, tests).
struct SqliteWalStats {
  uint64_t checkpoints = 0;           // attempts that ran
  uint64_t complete_checkpoints = 0;  // copied every frame: the log restarts
  int wal_frames = 0;                 // frames in the log after the last commit
};

class SqliteLedger : public LedgerStore, public AuditStore {
 public:
  // The schema version that created the ledger table.
  static constexpr int kMinSchemaVersion = kLedgerMinSchemaVersion;
  // Largest page ListLedger returns.
  static constexpr int kMaxPageSize = kMaxLedgerPageSize;

  // `path` must name a database file (":memory:" is refused with
  // kInvalidArgument: two connections would see two different databases).
  static StatusOr<std::unique_ptr<SqliteLedger>> Open(const std::string& path,
                                                      SqliteLedgerOptions opts = {});

  Status AppendBatch(std::vector<LedgerEntry>& entries, const AuditBuilder& audit = nullptr) override;
  StatusOr<LedgerPage> ListLedger(const LedgerQuery& query) override;
  StatusOr<std::vector<MinuteCount>> CountByMinuteSince(TimePoint since) override;
  StatusOr<bool> HasRequest(const std::string& tenant_id, const std::string& request_id) override;

  // Mass re-sign. The scan and the count use the reader connection (index
  // ledger_by_key_seq_time); AppendResignBatch the writer connection, under
  // the same mutex as AppendBatch, so ledger seqs stay in commit order.
  StatusOr<std::vector<ResignCandidate>> ListResignCandidates(const ResignScan& scan) override;
  StatusOr<int64_t> CountResignCandidates(const ResignScan& scan) override;
  Status AppendResignBatch(ResignBatch& batch, const AuditBuilder& audit = nullptr) override;
  StatusOr<std::vector<ResignResult>> ListResignResults(const std::string& job_id, int64_t after_seq,
                                                        int limit) override;

  StatusOr<AuditPage> ListAudit(const AuditQuery& query) override;
  StatusOr<int64_t> AuditSize() override;
  StatusOr<std::vector<AuditHash>> AuditNodes(int level, int64_t begin, int64_t end) override;
  Status InsertAuditCheckpoint(AuditCheckpointRecord& checkpoint) override;
  StatusOr<std::vector<AuditCheckpointRecord>> ListAuditCheckpoints(int64_t after_id, int limit) override;
  StatusOr<std::optional<AuditCheckpointRecord>> LatestAuditCheckpoint() override;
  Status InsertAuditKey(const AuditKeyRecord& key) override;
  StatusOr<std::vector<AuditKeyRecord>> ListAuditKeys() override;

  // See "WAL upkeep" above. SQLITE_BUSY (another connection is
  // checkpointing) is not an error; other failures are, and change nothing.
  Status Maintain() override;
  SqliteWalStats wal_stats();

  // Constructed only through Open(); the tag keeps the constructor usable by
  // std::make_unique without being callable from outside.
  struct PrivateTag {
    explicit PrivateTag() = default;
  };
  struct WriterStatements {
    StmtPtr ledger_insert;
    StmtPtr audit_insert;
    StmtPtr node_insert;
  };
  SqliteLedger(PrivateTag, SqliteDb writer, WriterStatements statements, SqliteDb reader,
               const SqliteLedgerOptions& opts);

 private:
  // ListLedger's SQL varies with which optional filters are set (key_id, from,
  // to): one cached statement per combination, indexed by a 3-bit mask.
  static constexpr int kListShapes = 8;
  // ListAudit's, by tenant/actor/action/from/to: a 5-bit mask.
  static constexpr int kAuditListShapes = 32;

  // Returns the statement cached in `slot`, preparing `sql` on first use
  // (`sql` is only read then). Requires reader_mu_.
  StatusOr<sqlite3_stmt*> ReaderStatementLocked(StmtPtr& slot, std::string_view sql,
                                                std::string_view operation);

  // kFailedPrecondition in read-only mode.
  Status CheckWritable() const;
  // Before a write transaction: if a connection of this process has started
  // waiting for the database lock since the last call (BusyWaits, e.g. the
  // admin store starting a rotation), pauses kStepAside with the lock free so
  // it gets in between two ledger commits. Requires writer_mu_.
  void StepAsideLocked();
  static constexpr std::chrono::milliseconds kStepAside{2};

  std::mutex writer_mu_;
  SqliteDb writer_;                // guarded by writer_mu_; null when read-only
  WriterStatements writer_stmts_;  // guarded by writer_mu_; prepared at Open()
  uint64_t seen_busy_waits_ = 0;   // guarded by writer_mu_
  // sqlite3_wal_hook: runs inside every commit on the writer connection.
  static int OnWalCommit(void* self, sqlite3* db, const char* schema, int frames);
  const int checkpoint_frames_;
  SqliteWalStats wal_stats_;        // guarded by writer_mu_
  int next_checkpoint_at_;          // guarded by writer_mu_: wal_frames that trigger Maintain()

  std::mutex reader_mu_;
  SqliteDb reader_;                                        // guarded by reader_mu_
  std::array<StmtPtr, kListShapes> list_stmts_;            // guarded by reader_mu_
  std::array<StmtPtr, kAuditListShapes> audit_list_stmts_;  // guarded by reader_mu_
  StmtPtr count_stmt_;                                     // guarded by reader_mu_
  StmtPtr has_request_stmt_;                               // guarded by reader_mu_
  StmtPtr audit_size_stmt_;                                // guarded by reader_mu_
  StmtPtr leaf_range_stmt_;                                // guarded by reader_mu_
  StmtPtr node_range_stmt_;                                // guarded by reader_mu_
};

}  // namespace concierge::store

#endif  // CONCIERGE_STORE_SQLITE_SQLITE_LEDGER_H_
