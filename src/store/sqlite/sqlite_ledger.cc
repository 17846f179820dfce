#include "store/sqlite/sqlite_ledger.h"

#include <cstring>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>

#include "store/migrations/migrations.h"

namespace concierge::store {
namespace {

const std::string kInsertSql = Sql("INSERT INTO ledger (", kLedgerInsertColumns,
                                  ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)");

// INDEXED BY: without ANALYZE statistics the planner prefers scanning a
// (tenant_id, ...) index to get the GROUP BY order for free, which reads the
// whole table instead of the last day (measured 0.13 s vs 0.3 ms on 1M rows).
// Naming the index also makes its absence a loud error rather than a slow scan.
// Re-sign rows are not client signatures: they count toward neither issuance
// caps nor the signing-rate baseline.
constexpr std::string_view kCountSql =
    "SELECT tenant_id, signed_at / 60000 AS minute, COUNT(*) "
    "FROM ledger INDEXED BY ledger_by_signed_at WHERE signed_at >= ?1 AND resign_of_seq IS NULL "
    "GROUP BY tenant_id, minute ORDER BY tenant_id, minute";

constexpr std::string_view kHasRequestSql =
    "SELECT 1 FROM ledger WHERE tenant_id = ?1 AND request_id = ?2 LIMIT 1";

// Bits of the ListLedger statement shape.
constexpr int kByKey = 1;
constexpr int kFrom = 2;
constexpr int kTo = 4;

// Parameter numbers are fixed per filter so binding does not depend on the
// shape; only the parameters a shape mentions are bound.
std::string ListSql(int shape) {
  std::string sql = "SELECT ";
  sql.append(kLedgerColumns).append(" FROM ledger WHERE tenant_id = ?1 AND seq > ?2");
  if (shape & kByKey) sql += " AND key_id = ?3";
  if (shape & kFrom) sql += " AND signed_at >= ?4";
  if (shape & kTo) sql += " AND signed_at < ?5";
  sql += " ORDER BY seq LIMIT ?6";
  return sql;
}

// The current row of a raw statement, in the shape ReadLedgerEntry reads.
struct RawRow {
  sqlite3_stmt* s;
  std::string ColumnText(int col) const { return store::ColumnText(s, col); }
  int64_t ColumnInt(int col) const { return sqlite3_column_int64(s, col); }
  TimePoint ColumnTime(int col) const { return FromUnixMillis(ColumnInt(col)); }
};

LedgerEntry ReadEntry(sqlite3_stmt* s) { return ReadLedgerEntry(RawRow{s}); }

// Unlike OpenSqliteDb this never creates the file: a missing database means
// the service was pointed at the wrong path, not that it should start empty.
StatusOr<SqliteDb> OpenExisting(const std::string& path, std::string_view operation, bool read_only = false) {
  ConfigureSqliteLibrary();
  sqlite3* raw = nullptr;
  // NOMUTEX: each connection is guarded by a mutex of ours.
  const int rc = sqlite3_open_v2(path.c_str(), &raw,
                                 (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX,
                                 nullptr);
  SqliteDb db(raw);  // owns the handle even on failure, as SQLite requires
  if (rc != SQLITE_OK) return SqliteStatus(db.get(), rc, operation);
  sqlite3_extended_result_codes(db.get(), 1);
  return db;
}

Status ConfigureConnection(sqlite3* db, std::chrono::milliseconds busy_timeout, bool reader) {
  const int rc = SetBusyTimeout(db, busy_timeout);
  if (rc != SQLITE_OK) return SqliteStatus(db, rc, "setting busy timeout");
  // Persistent in the file (SqliteStore already set it); repeating it is cheap
  // and proves the file really is in WAL mode, on which "readers never wait
  // for the writer" depends.
  RETURN_IF_ERROR(EnableWal(db));
  RETURN_IF_ERROR(ExecSql(db, "PRAGMA synchronous = FULL", "setting synchronous=FULL"));
  // See the header: checkpoints run in SqliteStore::Checkpoint, off the
  // signing path. Set on both connections, since any connection that commits
  // (or closes last) could otherwise run one.
  RETURN_IF_ERROR(ExecSql(db, "PRAGMA wal_autocheckpoint = 0", "disabling automatic checkpoints"));
  if (reader) {
    // Defence in depth: the reader connection can never write.
    RETURN_IF_ERROR(ExecSql(db, "PRAGMA query_only = ON", "making reader connection read-only"));
  }
  return Status::Ok();
}

StatusOr<int> ReadSchemaVersion(sqlite3* db) {
  ASSIGN_OR_RETURN(Statement exists,
                   Statement::Prepare(db,
                                      "SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                      "name = 'schema_migrations'",
                                      "reading schema version"));
  ASSIGN_OR_RETURN(bool has_table, exists.Step());
  if (!has_table) return 0;
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                   "SELECT COALESCE(MAX(version), 0) FROM "
                                                   "schema_migrations",
                                                   "reading schema version"));
  ASSIGN_OR_RETURN(bool row, s.Step());
  return row ? static_cast<int>(s.ColumnInt(0)) : 0;
}

Status InsertAudit(sqlite3* db, const SqliteLedger::WriterStatements& stmts, const AuditAppend& audit) {
  constexpr std::string_view kOp = "appending to audit log";
  for (const AuditRecord& r : audit.entries) {
    sqlite3_stmt* insert = stmts.audit_insert.get();
    StatementUse use(insert);
    Binder b(insert);
    b.Int(1, r.index).Int(2, ToUnixMillis(r.time)).Text(3, r.actor).Text(4, r.tenant_id).Text(5, r.action);
    b.Text(6, r.target).Text(7, r.outcome).Text(8, r.request_id).Text(9, r.client_address);
    b.Text(10, r.policy_hash).Text(11, r.detail_json).Blob(12, ByteView(r.leaf_hash.data(), r.leaf_hash.size()));
    if (b.rc() != SQLITE_OK) return SqliteStatus(db, b.rc(), "appending to audit log (binding)");
    const int rc = sqlite3_step(insert);
    if (rc != SQLITE_DONE) return SqliteStatus(db, rc, kOp);
  }
  for (const AuditNode& n : audit.nodes) {
    sqlite3_stmt* insert = stmts.node_insert.get();
    StatementUse use(insert);
    Binder b(insert);
    b.Int(1, n.level).Int(2, n.index).Blob(3, ByteView(n.hash.data(), n.hash.size()));
    if (b.rc() != SQLITE_OK) return SqliteStatus(db, b.rc(), "appending audit nodes (binding)");
    const int rc = sqlite3_step(insert);
    if (rc != SQLITE_DONE) return SqliteStatus(db, rc, "appending audit nodes");
  }
  return Status::Ok();
}

// One transaction, one reused INSERT per table. Fills seq as it goes; the
// caller zeroes them again if this fails. The Transaction rolls back on every
// early return, including a failing audit builder.
Status InsertBatch(sqlite3* db, const SqliteLedger::WriterStatements& stmts, std::vector<LedgerEntry>& entries,
                   const AuditBuilder& audit) {
  constexpr std::string_view kOp = "appending to ledger";
  sqlite3_stmt* insert = stmts.ledger_insert.get();
  ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(db, Transaction::Mode::kImmediate, kOp));
  for (LedgerEntry& e : entries) {
    StatementUse use(insert);
    Binder b(insert);
    b.Text(1, e.tenant_id).Text(2, e.key_id).Int(3, e.key_version).Text(4, e.cert_serial);
    b.Text(5, e.algorithm).Text(6, e.kind).Text(7, e.digest_hex).Text(8, e.asset_id);
    b.Text(9, e.request_id).Text(10, e.api_key_id).Text(11, e.client_address);
    b.Text(12, e.policy_hash).Int(13, ToUnixMillis(e.signed_at));
    if (b.rc() != SQLITE_OK) return SqliteStatus(db, b.rc(), "appending to ledger (binding)");
    const int rc = sqlite3_step(insert);
    if (rc != SQLITE_DONE) return SqliteStatus(db, rc, kOp);
    e.seq = sqlite3_last_insert_rowid(db);
  }
  if (audit) {
    AuditAppend out;
    RETURN_IF_ERROR(audit(entries, out));
    RETURN_IF_ERROR(InsertAudit(db, stmts, out));
  }
  return tx.Commit();
}

constexpr std::string_view kAuditInsertSql =
    "INSERT INTO audit_entries (idx, time_ms, actor, tenant_id, action, target, outcome, request_id, "
    "client_address, policy_hash, detail, leaf_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
constexpr std::string_view kNodeInsertSql = "INSERT INTO audit_nodes (level, idx, hash) VALUES (?1, ?2, ?3)";

// Bits of the ListAudit statement shape; parameter numbers are fixed per
// filter, as in ListSql.
constexpr int kAuditByTenant = 1;
constexpr int kAuditByActor = 2;
constexpr int kAuditByAction = 4;
constexpr int kAuditFrom = 8;
constexpr int kAuditTo = 16;

std::string AuditListSql(int shape) {
  std::string sql = "SELECT ";
  sql.append(kAuditColumns).append(" FROM audit_entries WHERE idx > ?1");
  if (shape & kAuditByTenant) sql += " AND tenant_id = ?2";
  if (shape & kAuditByActor) sql += " AND actor = ?3";
  if (shape & kAuditByAction) sql += " AND action = ?4";
  if (shape & kAuditFrom) sql += " AND time_ms >= ?5";
  if (shape & kAuditTo) sql += " AND time_ms < ?6";
  sql += " ORDER BY idx LIMIT ?7";
  return sql;
}

StatusOr<AuditHash> HashColumn(sqlite3_stmt* s, int col, std::string_view what) {
  const void* data = sqlite3_column_blob(s, col);
  const int size = sqlite3_column_bytes(s, col);
  if (data == nullptr || size != static_cast<int>(kAuditHashSize)) {
    return DataLossError("audit log: " + std::string(what) + " is not a 32-byte hash");
  }
  AuditHash h;
  std::memcpy(h.data(), data, kAuditHashSize);
  return h;
}

// Column order of kAuditColumns. A leaf hash of the wrong size is read as
// zeros, so the verifier reports the row instead of the read failing.
AuditRecord ReadAuditRecord(sqlite3_stmt* s) {
  AuditRecord r;
  r.index = sqlite3_column_int64(s, 0);
  r.time = FromUnixMillis(sqlite3_column_int64(s, 1));
  r.actor = ColumnText(s, 2);
  r.tenant_id = ColumnText(s, 3);
  r.action = ColumnText(s, 4);
  r.target = ColumnText(s, 5);
  r.outcome = ColumnText(s, 6);
  r.request_id = ColumnText(s, 7);
  r.client_address = ColumnText(s, 8);
  r.policy_hash = ColumnText(s, 9);
  r.detail_json = ColumnText(s, 10);
  if (auto h = HashColumn(s, 11, "leaf hash"); h.ok()) r.leaf_hash = *h;
  return r;
}

constexpr std::string_view kCheckpointColumns = "id, tree_size, root_hash, timestamp_ms, key_id, note, signature";

StatusOr<AuditCheckpointRecord> ReadCheckpoint(const Statement& s) {
  AuditCheckpointRecord c;
  c.id = s.ColumnInt(0);
  c.tree_size = s.ColumnInt(1);
  Bytes root = s.ColumnBlob(2);
  if (root.size() != kAuditHashSize) return DataLossError("audit checkpoint root is not a 32-byte hash");
  std::copy(root.begin(), root.end(), c.root_hash.begin());
  c.timestamp = s.ColumnTime(3);
  c.key_id = s.ColumnText(4);
  c.note = s.ColumnText(5);
  c.signature = s.ColumnBlob(6);
  return c;
}

}  // namespace

StatusOr<std::unique_ptr<SqliteLedger>> SqliteLedger::Open(const std::string& path,
                                                           SqliteLedgerOptions opts) {
  if (path.empty() || path == ":memory:" || path.rfind("file::memory:", 0) == 0) {
    return FieldError("path", "the ledger needs a database file shared by its connections, not " +
                                  (path.empty() ? std::string("an empty path") : path));
  }
  const std::string context = "opening ledger on " + path;
  auto annotate = [&](const Status& s) { return s.Annotate(context); };

  StatusOr<SqliteDb> reader = OpenExisting(path, "open reader connection", opts.read_only);
  if (!reader.ok()) return annotate(reader.status());
  if (opts.read_only) {
    // Nothing that would write: not even the journal mode of a copied file.
    const int rc = SetBusyTimeout(reader->get(), opts.busy_timeout);
    if (rc != SQLITE_OK) return annotate(SqliteStatus(reader->get(), rc, "setting busy timeout"));
    if (Status s = ExecSql(reader->get(), "PRAGMA query_only = ON", "making connection read-only"); !s.ok()) {
      return annotate(s);
    }
  } else if (Status s = ConfigureConnection(reader->get(), opts.busy_timeout, true); !s.ok()) {
    return annotate(s);
  }

  StatusOr<int> version = ReadSchemaVersion(reader->get());
  if (!version.ok()) return annotate(version.status());
  const int latest = static_cast<int>(SqliteMigrations().size());
  if (*version > latest) return annotate(SchemaTooNewError(*version, latest));
  if (*version < kMinSchemaVersion) {
    return annotate(FailedPreconditionError(
        "database schema is at version " + std::to_string(*version) + " but the ledger needs " +
        std::to_string(kMinSchemaVersion) + "; run migrations first"));
  }

  if (opts.read_only) {
    return std::make_unique<SqliteLedger>(PrivateTag(), SqliteDb(), WriterStatements{}, std::move(reader).value(),
                                          opts);
  }
  StatusOr<SqliteDb> writer = OpenExisting(path, "open writer connection");
  if (!writer.ok()) return annotate(writer.status());
  if (Status s = ConfigureConnection(writer->get(), opts.busy_timeout, false); !s.ok()) {
    return annotate(s);
  }
  WriterStatements stmts;
  for (auto [slot, sql, what] : {std::tuple{&stmts.ledger_insert, std::string_view(kInsertSql), "preparing ledger insert"},
                                 std::tuple{&stmts.audit_insert, kAuditInsertSql, "preparing audit insert"},
                                 std::tuple{&stmts.node_insert, kNodeInsertSql, "preparing audit node insert"}}) {
    StatusOr<StmtPtr> prepared = PrepareCached(writer->get(), sql, what);
    if (!prepared.ok()) return annotate(prepared.status());
    *slot = std::move(prepared).value();
  }
  auto ledger = std::make_unique<SqliteLedger>(PrivateTag(), std::move(writer).value(), std::move(stmts),
                                               std::move(reader).value(), opts);
  // Replaces the automatic checkpointer (off anyway); runs on the writer
  // connection only, under writer_mu_ (every write there holds it).
  sqlite3_wal_hook(ledger->writer_.get(), &SqliteLedger::OnWalCommit, ledger.get());
  return ledger;
}

SqliteLedger::SqliteLedger(PrivateTag, SqliteDb writer, WriterStatements statements, SqliteDb reader,
                           const SqliteLedgerOptions& opts)
    : writer_(std::move(writer)),
      writer_stmts_(std::move(statements)),
      checkpoint_frames_(opts.checkpoint_frames),
      next_checkpoint_at_(opts.checkpoint_frames),
      reader_(std::move(reader)) {}

int SqliteLedger::OnWalCommit(void* self, sqlite3*, const char*, int frames) {
  auto* ledger = static_cast<SqliteLedger*>(self);
  // Fewer frames than after the last commit: the log started again (after a
  // checkpoint here or on another connection), so count from its start.
  if (frames < ledger->wal_stats_.wal_frames) ledger->next_checkpoint_at_ = ledger->checkpoint_frames_;
  ledger->wal_stats_.wal_frames = frames;
  return SQLITE_OK;
}

Status SqliteLedger::Maintain() {
  if (writer_ == nullptr || checkpoint_frames_ <= 0) return Status::Ok();
  std::lock_guard<std::mutex> lock(writer_mu_);
  if (wal_stats_.wal_frames < next_checkpoint_at_) return Status::Ok();
  // Whatever happens, the next attempt waits for the log to grow again: a
  // reader pinning old frames would otherwise make every batch re-copy.
  next_checkpoint_at_ = wal_stats_.wal_frames + checkpoint_frames_;
  int log_frames = 0;
  int copied_frames = 0;
  const int rc = sqlite3_wal_checkpoint_v2(writer_.get(), "main", SQLITE_CHECKPOINT_PASSIVE, &log_frames,
                                           &copied_frames);
  if ((rc & 0xff) == SQLITE_BUSY) return Status::Ok();
  if (rc != SQLITE_OK) return SqliteStatus(writer_.get(), rc, "checkpointing the ledger's write-ahead log");
  ++wal_stats_.checkpoints;
  if (copied_frames == log_frames) ++wal_stats_.complete_checkpoints;
  return Status::Ok();
}

SqliteWalStats SqliteLedger::wal_stats() {
  std::lock_guard<std::mutex> lock(writer_mu_);
  return wal_stats_;
}

void SqliteLedger::StepAsideLocked() {
  const uint64_t waits = BusyWaits();
  if (waits == seen_busy_waits_) return;
  seen_busy_waits_ = waits;
  std::this_thread::sleep_for(kStepAside);
}

Status SqliteLedger::CheckWritable() const {
  if (writer_ == nullptr) return FailedPreconditionError("the ledger was opened read-only");
  return Status::Ok();
}

Status SqliteLedger::AppendBatch(std::vector<LedgerEntry>& entries, const AuditBuilder& audit) {
  for (LedgerEntry& e : entries) e.seq = 0;
  if (entries.empty() && !audit) return Status::Ok();
  RETURN_IF_ERROR(CheckWritable());
  RETURN_IF_ERROR(ValidateLedgerEntries(entries));
  Status s;
  {
    std::lock_guard<std::mutex> lock(writer_mu_);
    StepAsideLocked();
    s = InsertBatch(writer_.get(), writer_stmts_, entries, audit);
  }
  if (!s.ok()) {
    // Rolled back: none of these rows exist, so no seq may be reported.
    for (LedgerEntry& e : entries) e.seq = 0;
  }
  return s;
}

StatusOr<sqlite3_stmt*> SqliteLedger::ReaderStatementLocked(StmtPtr& slot, std::string_view sql,
                                                            std::string_view operation) {
  if (slot == nullptr) {
    ASSIGN_OR_RETURN(slot, PrepareCached(reader_.get(), sql, operation));
  }
  return slot.get();
}

StatusOr<LedgerPage> SqliteLedger::ListLedger(const LedgerQuery& query) {
  if (query.tenant_id.empty()) return FieldError("tenant_id", "tenant id is required");
  if (query.limit < 1 || query.limit > kMaxPageSize) {
    return FieldError("limit", "limit must be between 1 and " + std::to_string(kMaxPageSize) +
                                   ", got " + std::to_string(query.limit));
  }
  if (query.after_seq < 0) return FieldError("after_seq", "cursor must not be negative");
  const int shape = (query.key_id.empty() ? 0 : kByKey) | (query.from ? kFrom : 0) |
                    (query.to ? kTo : 0);
  constexpr std::string_view kOp = "listing ledger";

  std::lock_guard<std::mutex> lock(reader_mu_);
  StmtPtr& slot = list_stmts_[shape];
  const std::string sql = slot == nullptr ? ListSql(shape) : std::string();
  ASSIGN_OR_RETURN(sqlite3_stmt * s, ReaderStatementLocked(slot, sql, kOp));
  StatementUse use(s);
  Binder b(s);
  b.Text(1, query.tenant_id).Int(2, query.after_seq).Int(6, query.limit);
  if (shape & kByKey) b.Text(3, query.key_id);
  if (shape & kFrom) b.Int(4, ToUnixMillis(*query.from));
  if (shape & kTo) b.Int(5, ToUnixMillis(*query.to));
  if (b.rc() != SQLITE_OK) return SqliteStatus(reader_.get(), b.rc(), "listing ledger (binding)");

  LedgerPage page;
  page.entries.reserve(static_cast<size_t>(query.limit));
  while (true) {
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return SqliteStatus(reader_.get(), rc, kOp);
    page.entries.push_back(ReadEntry(s));
  }
  if (page.entries.size() == static_cast<size_t>(query.limit)) {
    page.next_cursor = page.entries.back().seq;
  }
  return page;
}

StatusOr<std::vector<MinuteCount>> SqliteLedger::CountByMinuteSince(TimePoint since) {
  constexpr std::string_view kOp = "counting ledger rows per minute";
  std::lock_guard<std::mutex> lock(reader_mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * s,
                   ReaderStatementLocked(count_stmt_, kCountSql, kOp));
  StatementUse use(s);
  Binder b(s);
  b.Int(1, ToUnixMillis(since));
  if (b.rc() != SQLITE_OK) return SqliteStatus(reader_.get(), b.rc(), kOp);
  std::vector<MinuteCount> out;
  while (true) {
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return SqliteStatus(reader_.get(), rc, kOp);
    out.push_back(MinuteCount{ColumnText(s, 0), sqlite3_column_int64(s, 1),
                              sqlite3_column_int64(s, 2)});
  }
  return out;
}

StatusOr<bool> SqliteLedger::HasRequest(const std::string& tenant_id,
                                        const std::string& request_id) {
  constexpr std::string_view kOp = "looking up ledger request";
  std::lock_guard<std::mutex> lock(reader_mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * s,
                   ReaderStatementLocked(has_request_stmt_, kHasRequestSql, kOp));
  StatementUse use(s);
  Binder b(s);
  b.Text(1, tenant_id).Text(2, request_id);
  if (b.rc() != SQLITE_OK) return SqliteStatus(reader_.get(), b.rc(), kOp);
  const int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqliteStatus(reader_.get(), rc, kOp);
}

StatusOr<AuditPage> SqliteLedger::ListAudit(const AuditQuery& query) {
  if (query.limit < 1 || query.limit > kMaxPageSize) {
    return FieldError("limit", "limit must be between 1 and " + std::to_string(kMaxPageSize) + ", got " +
                                   std::to_string(query.limit));
  }
  if (query.after_index < -1) return FieldError("after", "cursor must not be below -1");
  const int shape = (query.tenant_id.empty() ? 0 : kAuditByTenant) | (query.actor.empty() ? 0 : kAuditByActor) |
                    (query.action.empty() ? 0 : kAuditByAction) | (query.from ? kAuditFrom : 0) |
                    (query.to ? kAuditTo : 0);
  constexpr std::string_view kOp = "listing audit log";
  std::lock_guard<std::mutex> lock(reader_mu_);
  StmtPtr& slot = audit_list_stmts_[shape];
  const std::string sql = slot == nullptr ? AuditListSql(shape) : std::string();
  ASSIGN_OR_RETURN(sqlite3_stmt * s, ReaderStatementLocked(slot, sql, kOp));
  StatementUse use(s);
  Binder b(s);
  b.Int(1, query.after_index).Int(7, query.limit);
  if (shape & kAuditByTenant) b.Text(2, query.tenant_id);
  if (shape & kAuditByActor) b.Text(3, query.actor);
  if (shape & kAuditByAction) b.Text(4, query.action);
  if (shape & kAuditFrom) b.Int(5, ToUnixMillis(*query.from));
  if (shape & kAuditTo) b.Int(6, ToUnixMillis(*query.to));
  if (b.rc() != SQLITE_OK) return SqliteStatus(reader_.get(), b.rc(), "listing audit log (binding)");
  AuditPage page;
  page.entries.reserve(static_cast<size_t>(query.limit));
  while (true) {
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return SqliteStatus(reader_.get(), rc, kOp);
    page.entries.push_back(ReadAuditRecord(s));
  }
  if (page.entries.size() == static_cast<size_t>(query.limit)) page.next_cursor = page.entries.back().index;
  return page;
}

StatusOr<int64_t> SqliteLedger::AuditSize() {
  constexpr std::string_view kOp = "reading audit log size";
  std::lock_guard<std::mutex> lock(reader_mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * s,
                   ReaderStatementLocked(audit_size_stmt_, kAuditSizeSql, kOp));
  StatementUse use(s);
  const int rc = sqlite3_step(s);
  if (rc != SQLITE_ROW) return SqliteStatus(reader_.get(), rc, kOp);
  return sqlite3_column_int64(s, 0);
}

StatusOr<std::vector<AuditHash>> SqliteLedger::AuditNodes(int level, int64_t begin, int64_t end) {
  if (level < 0 || begin < 0 || end < begin) return InvalidArgumentError("bad audit node range");
  constexpr std::string_view kOp = "reading audit tree";
  std::lock_guard<std::mutex> lock(reader_mu_);
  sqlite3_stmt* s = nullptr;
  if (level == 0) {
    ASSIGN_OR_RETURN(s, ReaderStatementLocked(leaf_range_stmt_,
                                              "SELECT idx, leaf_hash FROM audit_entries WHERE idx >= ?2 AND "
                                              "idx < ?3 ORDER BY idx",
                                              kOp));
  } else {
    ASSIGN_OR_RETURN(s, ReaderStatementLocked(node_range_stmt_,
                                              "SELECT idx, hash FROM audit_nodes WHERE level = ?1 AND idx >= ?2 "
                                              "AND idx < ?3 ORDER BY idx",
                                              kOp));
  }
  StatementUse use(s);
  Binder b(s);
  if (level != 0) b.Int(1, level);
  b.Int(2, begin).Int(3, end);
  if (b.rc() != SQLITE_OK) return SqliteStatus(reader_.get(), b.rc(), kOp);
  std::vector<AuditHash> out;
  out.reserve(static_cast<size_t>(end - begin));
  while (true) {
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return SqliteStatus(reader_.get(), rc, kOp);
    const int64_t idx = sqlite3_column_int64(s, 0);
    if (idx != begin + static_cast<int64_t>(out.size())) break;  // a gap: reported below
    ASSIGN_OR_RETURN(AuditHash h, HashColumn(s, 1, level == 0 ? "a leaf hash" : "a tree node"));
    out.push_back(h);
  }
  if (out.size() != static_cast<size_t>(end - begin)) {
    return AuditNodeMissingError(level, begin + static_cast<int64_t>(out.size()));
  }
  return out;
}

Status SqliteLedger::InsertAuditCheckpoint(AuditCheckpointRecord& c) {
  RETURN_IF_ERROR(CheckWritable());
  std::lock_guard<std::mutex> lock(writer_mu_);
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(writer_.get(),
                                                   "INSERT INTO audit_checkpoints (tree_size, root_hash, "
                                                   "timestamp_ms, key_id, note, signature) VALUES (?1, ?2, ?3, ?4, "
                                                   "?5, ?6)",
                                                   "storing audit checkpoint"));
  s.Bind(1, c.tree_size).BindBlob(2, ByteView(c.root_hash.data(), c.root_hash.size())).BindTime(3, c.timestamp);
  s.Bind(4, c.key_id).Bind(5, c.note).BindBlob(6, c.signature);
  RETURN_IF_ERROR(s.Run());
  c.id = sqlite3_last_insert_rowid(writer_.get());
  return Status::Ok();
}

StatusOr<std::vector<AuditCheckpointRecord>> SqliteLedger::ListAuditCheckpoints(int64_t after_id, int limit) {
  if (limit < 1 || limit > kMaxPageSize) {
    return FieldError("limit", "limit must be between 1 and " + std::to_string(kMaxPageSize));
  }
  std::lock_guard<std::mutex> lock(reader_mu_);
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(reader_.get(),
                                                   "SELECT " + std::string(kCheckpointColumns) +
                                                       " FROM audit_checkpoints WHERE id > ?1 ORDER BY id LIMIT ?2",
                                                   "listing audit checkpoints"));
  s.Bind(1, after_id).Bind(2, int64_t{limit});
  std::vector<AuditCheckpointRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    ASSIGN_OR_RETURN(AuditCheckpointRecord c, ReadCheckpoint(s));
    out.push_back(std::move(c));
  }
  return out;
}

StatusOr<std::optional<AuditCheckpointRecord>> SqliteLedger::LatestAuditCheckpoint() {
  std::lock_guard<std::mutex> lock(reader_mu_);
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(reader_.get(),
                                                   "SELECT " + std::string(kCheckpointColumns) +
                                                       " FROM audit_checkpoints ORDER BY id DESC LIMIT 1",
                                                   "reading latest audit checkpoint"));
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return std::optional<AuditCheckpointRecord>();
  ASSIGN_OR_RETURN(AuditCheckpointRecord c, ReadCheckpoint(s));
  return std::optional<AuditCheckpointRecord>(std::move(c));
}

Status SqliteLedger::InsertAuditKey(const AuditKeyRecord& k) {
  RETURN_IF_ERROR(CheckWritable());
  std::lock_guard<std::mutex> lock(writer_mu_);
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(writer_.get(),
                                                   "INSERT INTO audit_keys (key_id, origin, algorithm, provider, "
                                                   "key_uri, public_key_pem, created_at) VALUES (?1, ?2, ?3, ?4, "
                                                   "?5, ?6, ?7)",
                                                   "storing audit key"));
  s.Bind(1, k.key_id).Bind(2, k.origin).Bind(3, k.algorithm).Bind(4, k.provider).Bind(5, k.key_uri);
  s.Bind(6, k.public_key_pem).BindTime(7, k.created_at);
  return s.Run();
}

StatusOr<std::vector<AuditKeyRecord>> SqliteLedger::ListAuditKeys() {
  std::lock_guard<std::mutex> lock(reader_mu_);
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(reader_.get(),
                                                   "SELECT key_id, origin, algorithm, provider, key_uri, "
                                                   "public_key_pem, created_at FROM audit_keys ORDER BY "
                                                   "created_at, key_id",
                                                   "listing audit keys"));
  std::vector<AuditKeyRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back(AuditKeyRecord{s.ColumnText(0), s.ColumnText(1), s.ColumnText(2), s.ColumnText(3),
                                 s.ColumnText(4), s.ColumnText(5), s.ColumnTime(6)});
  }
  return out;
}

// --- mass re-sign -------------------------------------------------------------------
//
// These run once per batch of hundreds of rows, so they prepare their
// statements per call (Statement finalizes on scope exit, ending the read
// transaction) instead of caching them like the per-request paths above.

namespace {

// Binds the shared filter parameters ?1..?4 of the scan and count shapes.
void BindScan(Statement& s, const ResignScan& scan) {
  s.Bind(1, scan.tenant_id).Bind(2, scan.key_id).Bind(3, scan.after_seq).BindOptionalTime(4, scan.since);
}

// INDEXED BY for the same reason as kCountSql: (key_id, seq, signed_at) serves
// the key filter, the cursor and the time bound in seq order.
constexpr std::string_view kScanWhere =
    " FROM ledger INDEXED BY ledger_by_key_seq_time WHERE key_id = ?2 AND tenant_id = ?1 AND seq > ?3 "
    "AND (?4 IS NULL OR signed_at >= ?4)";

// The whole batch inside one write transaction (see LedgerStore::AppendResignBatch).
Status InsertResignBatch(sqlite3* db, const SqliteLedger::WriterStatements& stmts, ResignBatch& b,
                         const AuditBuilder& audit) {
  constexpr std::string_view kOp = "appending re-sign batch";
  ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(db, Transaction::Mode::kImmediate, kOp));
  {
    ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db, "SELECT state, cursor_seq FROM resign_jobs WHERE job_id = ?1",
                                                     "reading re-sign job"));
    s.Bind(1, b.job_id);
    ASSIGN_OR_RETURN(bool row, s.Step());
    RETURN_IF_ERROR(CheckResignJobForBatch(b, row, row ? s.ColumnText(0) : "", row ? s.ColumnInt(1) : 0));
  }
  ASSIGN_OR_RETURN(Statement ins,
                   Statement::Prepare(db,
                                      Sql("INSERT INTO ledger (", kLedgerInsertColumns,
                                          ", resign_of_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
                                          "?12, ?13, ?14)"),
                                      "appending re-sign row"));
  for (LedgerEntry& e : b.rows) {
    ins.Reset();
    ins.Bind(1, e.tenant_id).Bind(2, e.key_id).Bind(3, e.key_version).Bind(4, e.cert_serial).Bind(5, e.algorithm);
    ins.Bind(6, e.kind).Bind(7, e.digest_hex).Bind(8, e.asset_id).Bind(9, e.request_id).Bind(10, e.api_key_id);
    ins.Bind(11, e.client_address).Bind(12, e.policy_hash).BindTime(13, e.signed_at).Bind(14, e.resign_of_seq);
    RETURN_IF_ERROR(ins.Run());
    e.seq = sqlite3_last_insert_rowid(db);
  }
  ASSIGN_OR_RETURN(ResignTally tally, LinkResignResults(b));
  ASSIGN_OR_RETURN(Statement store_result, Statement::Prepare(db,
                                                              Sql("INSERT INTO resign_results (", kResignResultColumns,
                                                                  ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
                                                                  "?10, ?11, ?12)"),
                                                              "storing re-sign result"));
  for (const ResignResult& r : b.results) {
    store_result.Reset();
    store_result.Bind(1, b.job_id).Bind(2, r.original_seq).Bind(3, r.status).Bind(4, r.new_seq).Bind(5, r.original_kind);
    store_result.Bind(6, r.asset_id).Bind(7, r.digest_hex).Bind(8, r.signature_b64).Bind(9, r.signature_format);
    store_result.Bind(10, r.key_id).Bind(11, r.key_version).Bind(12, r.detail);
    RETURN_IF_ERROR(store_result.Run());
  }
  ASSIGN_OR_RETURN(Statement u, Statement::Prepare(db,
                                                   "UPDATE resign_jobs SET cursor_seq = ?2, processed = processed + ?3, "
                                                   "resigned = resigned + ?4, needs_client = needs_client + ?5, "
                                                   "already_resigned = already_resigned + ?6, updated_at = ?7 "
                                                   "WHERE job_id = ?1",
                                                   "advancing re-sign job"));
  u.Bind(1, b.job_id).Bind(2, b.new_cursor).Bind(3, static_cast<int64_t>(b.results.size())).Bind(4, tally.resigned);
  u.Bind(5, tally.needs_client).Bind(6, tally.already_resigned).BindTime(7, b.at);
  RETURN_IF_ERROR(u.Run());
  if (audit) {
    AuditAppend out;
    RETURN_IF_ERROR(audit(b.rows, out));
    RETURN_IF_ERROR(InsertAudit(db, stmts, out));
  }
  return tx.Commit();
}

}  // namespace

StatusOr<std::vector<ResignCandidate>> SqliteLedger::ListResignCandidates(const ResignScan& scan) {
  RETURN_IF_ERROR(ValidateResignScan(scan));
  std::lock_guard<std::mutex> lock(reader_mu_);
  // The correlated subquery finds an existing re-signature through the partial
  // unique index (resign_of_seq = c.seq implies resign_of_seq IS NOT NULL).
  ASSIGN_OR_RETURN(Statement s,
                   Statement::Prepare(reader_.get(),
                                      std::string("SELECT c.*, COALESCE((SELECT r.seq FROM ledger r WHERE "
                                                  "r.resign_of_seq = c.seq AND r.key_id = ?5), 0) FROM (SELECT ") +
                                          std::string(kLedgerColumns) + std::string(kScanWhere) +
                                          " ORDER BY seq LIMIT ?6) c ORDER BY c.seq",
                                      "listing re-sign candidates"));
  BindScan(s, scan);
  s.Bind(5, scan.resigned_by_key_id).Bind(6, static_cast<int64_t>(scan.limit));
  std::vector<ResignCandidate> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    ResignCandidate c;
    c.entry = ReadEntry(s.raw());
    c.existing_resign_seq = s.ColumnInt(15);
    out.push_back(std::move(c));
  }
  return out;
}

StatusOr<int64_t> SqliteLedger::CountResignCandidates(const ResignScan& scan) {
  RETURN_IF_ERROR(ValidateResignScan(scan));
  std::lock_guard<std::mutex> lock(reader_mu_);
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(reader_.get(), std::string("SELECT COUNT(*)") + std::string(kScanWhere),
                                                   "counting re-sign candidates"));
  BindScan(s, scan);
  ASSIGN_OR_RETURN(bool row, s.Step());
  return row ? s.ColumnInt(0) : 0;
}

Status SqliteLedger::AppendResignBatch(ResignBatch& batch, const AuditBuilder& audit) {
  for (LedgerEntry& e : batch.rows) e.seq = 0;
  RETURN_IF_ERROR(ValidateResignBatch(batch));
  Status s;
  {
    std::lock_guard<std::mutex> lock(writer_mu_);
    StepAsideLocked();
    s = InsertResignBatch(writer_.get(), writer_stmts_, batch, audit);
  }
  if (!s.ok()) ClearResignSeqs(batch);  // rolled back
  return s;
}

StatusOr<std::vector<ResignResult>> SqliteLedger::ListResignResults(const std::string& job_id, int64_t after_seq,
                                                                    int limit) {
  RETURN_IF_ERROR(ValidateResignResultsLimit(limit));
  std::lock_guard<std::mutex> lock(reader_mu_);
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(reader_.get(),
                                                   Sql("SELECT ", kResignResultColumns,
                                                       " FROM resign_results WHERE job_id = ?1 AND original_seq > ?2 "
                                                       "ORDER BY original_seq LIMIT ?3"),
                                                   "listing re-sign results"));
  s.Bind(1, job_id).Bind(2, after_seq).Bind(3, static_cast<int64_t>(limit));
  std::vector<ResignResult> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back(ReadResignResult(s));
  }
  return out;
}

}  // namespace concierge::store
