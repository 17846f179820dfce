// PostgresLedger: the LedgerStore on PostgreSQL (the `ledger` table of
// migration v3), the counterpart of SqliteLedger with the same semantics (the
// same ledger test suite runs on both; see sqlite_ledger.h for what goes
// beyond concierge/ledger.h).
//
// Connections: the writer has a pool of its own with one connection, used only
// by AppendBatch (in practice by the single LedgerWriter thread), so an append
// never waits behind request-path reads; ListLedger, CountByMinuteSince and
// HasRequest use a second small pool. Both reconnect by themselves after the
// database comes back (see PgPool); while it is down every call fails with
// kUnavailable and nothing of a failed batch is reported stored.
//
// AppendBatch is one transaction and one statement for the rows, however many:
//   BEGIN; SELECT pg_advisory_xact_lock(kLedgerAppendLockKey);
//   INSERT INTO ledger (...) SELECT ... FROM unnest($1::text[], ...)
//     WITH ORDINALITY ORDER BY ordinality RETURNING seq;
//   COMMIT
// with one array parameter per column (a prepared statement, so the batch
// size never changes the SQL nor hits the 65535-parameter limit). The lock
// serialises appends across instances sharing the database: without it an
// instance could commit seq 11 before another commits seq 10, and a reader
// paging by cursor past 11 would never see 10. Identity values are drawn in
// the SELECT's order, so sorting the returned seqs gives each entry its own.
//
// Several instances (docs/postgres.md): inside that transaction, before the
// INSERT, AppendBatch locks the keys its rows name (SELECT ... FOR SHARE) and
// refuses the batch with KeyFencedError if one is no longer "active" or
// "standby" (core::MaySign): a cutover on another instance (SwapActiveKey
// updates those rows) either committed before - the batch is refused - or
// waits for this commit - the rows precede the swap in commit order. So no
// row committed after a cutover names the retired key, whatever the timing
// of the other instances' snapshot reloads. It also reads the audit log's
// size under the append lock and hands it to the AuditBuilder
// (AuditAppend::stored_size), so a writer whose in-memory tree fell behind
// another instance's appends reloads it before extending it.
//
// Durability: AppendBatch returning OK means COMMIT returned, which with
// PostgreSQL's default synchronous_commit=on means the WAL is flushed. The
// writer connection turns synchronous_commit back on if the database or role
// default switched it off (it never weakens a stronger remote_* setting).
//
// Thread-safe. Open() does not migrate: run PostgresStore::Migrate() first.
#ifndef CONCIERGE_STORE_POSTGRES_POSTGRES_LEDGER_H_
#define CONCIERGE_STORE_POSTGRES_POSTGRES_LEDGER_H_

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "concierge/audit.h"
#include "concierge/ledger.h"
#include "concierge/status.h"
#include "store/common/sql_records.h"
#include "store/postgres/pg_pool.h"

namespace concierge::store {

struct PostgresLedgerOptions {
  int reader_connections = 2;
  // How long a read waits for a free reader connection before kUnavailable.
  std::chrono::milliseconds acquire_timeout{5000};
  // How long AppendBatch waits for the append lock held by another instance
  // before kUnavailable.
  std::chrono::milliseconds lock_timeout{5000};
  // The commit fence: AppendBatch refuses (KeyFencedError) rows whose key is
  // no longer in a signing state (see postgres_ledger.cc). Off only for
  // tests that append rows without keys.
  bool fence_keys = true;
};

class PostgresLedger : public LedgerStore, public AuditStore {
 public:
  static constexpr int kMinSchemaVersion = kLedgerMinSchemaVersion;
  static constexpr int kMaxPageSize = kMaxLedgerPageSize;

  // Connects once and checks the schema: kUnavailable when the database
  // cannot be reached, kFailedPrecondition below kMinSchemaVersion ("run
  // migrations first") or above what this build knows.
  static StatusOr<std::unique_ptr<PostgresLedger>> Open(std::string_view url,
                                                        PostgresLedgerOptions opts = {});

  Status AppendBatch(std::vector<LedgerEntry>& entries, const AuditBuilder& audit = nullptr) override;
  StatusOr<LedgerPage> ListLedger(const LedgerQuery& query) override;
  StatusOr<std::vector<MinuteCount>> CountByMinuteSince(TimePoint since) override;
  StatusOr<bool> HasRequest(const std::string& tenant_id, const std::string& request_id) override;

  // Mass re-sign (the last section of postgres_ledger.cc).
  StatusOr<std::vector<ResignCandidate>> ListResignCandidates(const ResignScan& scan) override;
  StatusOr<int64_t> CountResignCandidates(const ResignScan& scan) override;
  Status AppendResignBatch(ResignBatch& batch, const AuditBuilder& audit = nullptr) override;
  StatusOr<std::vector<ResignResult>> ListResignResults(const std::string& job_id, int64_t after_seq,
                                                        int limit) override;

  // AuditStore: the audit_* tables (migration v5), written by AppendBatch in
  // the ledger's transaction.
  StatusOr<AuditPage> ListAudit(const AuditQuery& query) override;
  StatusOr<int64_t> AuditSize() override;
  StatusOr<std::vector<AuditHash>> AuditNodes(int level, int64_t begin, int64_t end) override;
  Status InsertAuditCheckpoint(AuditCheckpointRecord& checkpoint) override;
  StatusOr<std::vector<AuditCheckpointRecord>> ListAuditCheckpoints(int64_t after_id, int limit) override;
  StatusOr<std::optional<AuditCheckpointRecord>> LatestAuditCheckpoint() override;
  Status InsertAuditKey(const AuditKeyRecord& key) override;
  StatusOr<std::vector<AuditKeyRecord>> ListAuditKeys() override;

  PgPoolStats writer_stats() const { return writer_->stats(); }

  struct PrivateTag {
    explicit PrivateTag() = default;
  };
  PostgresLedger(PrivateTag, std::unique_ptr<PgPool> writer, std::unique_ptr<PgPool> readers,
                 PostgresLedgerOptions opts);

 private:
  std::unique_ptr<PgPool> writer_;  // one connection, AppendBatch only
  std::unique_ptr<PgPool> readers_;
  const PostgresLedgerOptions opts_;
};

}  // namespace concierge::store

#endif  // CONCIERGE_STORE_POSTGRES_POSTGRES_LEDGER_H_
