#include "store/postgres/postgres_ledger.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "store/migrations/migrations.h"
#include "store/postgres/postgres_store.h"

namespace concierge::store {
namespace {

constexpr char kAppendStatement[] = "concierge_ledger_append";
constexpr int kInsertColumnCount = 13;

// The INSERT of AppendBatch: one array parameter per column of
// kLedgerInsertColumns (key_version and signed_at are bigint, the rest text).
std::string AppendSql() {
  return Sql("INSERT INTO ledger (", kLedgerInsertColumns, ") SELECT ") +
         Sql(kLedgerInsertColumns,
             " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], "
             "$6::text[], "
             "$7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], "
             "$13::bigint[]) "
             "WITH ORDINALITY AS u(") +
         Sql(kLedgerInsertColumns, ", ord) ORDER BY ord RETURNING seq");
}

// Builds the array literals ({"a","b"} / {1,2}) of one batch, column by column.
class ColumnArrays {
 public:
  explicit ColumnArrays(size_t rows) {
    for (std::string& a : arrays_) {
      a.reserve(rows * 24 + 2);
      a.push_back('{');
    }
  }
  void Add(const LedgerEntry& e) {
    Text(0, e.tenant_id);
    Text(1, e.key_id);
    Int(2, e.key_version);
    Text(3, e.cert_serial);
    Text(4, e.algorithm);
    Text(5, e.kind);
    Text(6, e.digest_hex);
    Text(7, e.asset_id);
    Text(8, e.request_id);
    Text(9, e.api_key_id);
    Text(10, e.client_address);
    Text(11, e.policy_hash);
    Int(12, ToUnixMillis(e.signed_at));
  }
  PgParams Finish() {
    PgParams p;
    for (std::string& a : arrays_) p.Text(a.append("}"));
    return p;
  }

 private:
  void Separator(std::string& a) {
    if (a.size() > 1) a.push_back(',');
  }
  // Quoted element: only " and \ need a backslash inside double quotes.
  void Text(int col, std::string_view v) {
    std::string& a = arrays_[col];
    Separator(a);
    a.push_back('"');
    for (char c : v) {
      if (c == '"' || c == '\\') a.push_back('\\');
      a.push_back(c);
    }
    a.push_back('"');
  }
  void Int(int col, int64_t v) {
    std::string& a = arrays_[col];
    Separator(a);
    a.append(std::to_string(v));
  }
  std::array<std::string, kInsertColumnCount> arrays_;
};

// Writer connection set-up: durability as the contract needs it, and the
// append statement prepared once per connection.
Status PrepareWriter(PGconn* conn) {
  ASSIGN_OR_RETURN(PgResult sc, PgExec(conn, "SELECT current_setting('synchronous_commit')",
                                       "reading synchronous_commit"));
  if (sc.rows() > 0 && sc.row(0).ColumnText(0) == "off") {
    RETURN_IF_ERROR(
        PgExecScript(conn, "SET synchronous_commit = on", "enabling synchronous_commit"));
  }
  return PgPrepare(conn, kAppendStatement, AppendSql(), kInsertColumnCount,
                   "preparing ledger insert");
}

// Rows per multi-row audit INSERT: 12 parameters each, far below the
// protocol's 65535 parameters per statement.
constexpr size_t kAuditRowsPerInsert = 1000;

Status InsertAudit(PGconn* conn, const AuditAppend& audit) {
  constexpr std::string_view kOp = "appending to audit log";
  for (size_t start = 0; start < audit.entries.size(); start += kAuditRowsPerInsert) {
    const size_t end = std::min(audit.entries.size(), start + kAuditRowsPerInsert);
    std::string sql = Sql("INSERT INTO audit_entries (", kAuditColumns, ") VALUES ");
    PgParams p;
    for (size_t i = start; i < end; ++i) {
      const AuditRecord& r = audit.entries[i];
      const int base = p.size();
      sql += i == start ? "(" : ",(";
      for (int c = 1; c <= 12; ++c) sql += (c == 1 ? "$" : ",$") + std::to_string(base + c);
      sql += ")";
      p.Int(r.index).Time(r.time).Text(r.actor).Text(r.tenant_id).Text(r.action).Text(r.target);
      p.Text(r.outcome).Text(r.request_id).Text(r.client_address).Text(r.policy_hash).Text(r.detail_json);
      p.Bytes(std::string_view(reinterpret_cast<const char*>(r.leaf_hash.data()), r.leaf_hash.size()));
    }
    RETURN_IF_ERROR(PgExec(conn, sql, p, kOp).status());
  }
  for (size_t start = 0; start < audit.nodes.size(); start += kAuditRowsPerInsert) {
    const size_t end = std::min(audit.nodes.size(), start + kAuditRowsPerInsert);
    std::string sql = "INSERT INTO audit_nodes (level, idx, hash) VALUES ";
    PgParams p;
    for (size_t i = start; i < end; ++i) {
      const AuditNode& n = audit.nodes[i];
      const int base = p.size();
      sql += (i == start ? "($" : ",($") + std::to_string(base + 1) + ",$" + std::to_string(base + 2) + ",$" +
             std::to_string(base + 3) + ")";
      p.Int(n.level).Int(n.index);
      p.Bytes(std::string_view(reinterpret_cast<const char*>(n.hash.data()), n.hash.size()));
    }
    RETURN_IF_ERROR(PgExec(conn, sql, p, "appending audit nodes").status());
  }
  return Status::Ok();
}

// The signing states of core::MaySign, in SQL (key_state_test compares them).
constexpr char kSigningKeyStatesSql[] = "('active', 'standby')";

// The commit fence (see the header): the batch's keys, share-locked in key id
// order, must all still be allowed to sign. A key id without a keys row is
// not governed by this database (ledger-only tests) and passes.
Status CheckKeysMaySign(PGconn* conn, const std::vector<LedgerEntry>& entries) {
  std::vector<std::string_view> ids;
  ids.reserve(entries.size());
  for (const LedgerEntry& e : entries) ids.push_back(e.key_id);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  std::string array = "{";
  for (std::string_view id : ids) {
    if (array.size() > 1) array.push_back(',');
    array.push_back('"');
    for (char c : id) {
      if (c == '"' || c == '\\') array.push_back('\\');
      array.push_back(c);
    }
    array.push_back('"');
  }
  array.push_back('}');
  ASSIGN_OR_RETURN(PgResult r,
                   PgExec(conn,
                          std::string("SELECT key_id, state, state IN ") + kSigningKeyStatesSql +
                              " FROM keys WHERE key_id = ANY($1::text[]) ORDER BY key_id COLLATE \"C\" FOR SHARE",
                          PgParams().Text(array), "checking the batch's keys"));
  for (int i = 0; i < r.rows(); ++i) {
    const PgRow row = r.row(i);
    if (row.ColumnText(2) != "t") return KeyFencedError(row.ColumnText(0), row.ColumnText(1));
  }
  return Status::Ok();
}

// The builder's audit records for `rows`, inserted in the caller's transaction.
// The stored log size is read under the append lock (no other instance can
// append until we commit), so a builder whose tree another instance has moved
// on catches up first (AuditAppend::stored_size).
Status BuildAndInsertAudit(PGconn* conn, const std::vector<LedgerEntry>& rows, const AuditBuilder& audit) {
  if (!audit) return Status::Ok();
  AuditAppend out;
  ASSIGN_OR_RETURN(PgResult size, PgExec(conn, kAuditSizeSql,
                                         "reading audit log size"));
  out.stored_size = size.row(0).ColumnInt(0);
  RETURN_IF_ERROR(audit(rows, out));
  return InsertAudit(conn, out);
}

// One transaction: the fence, the ledger rows (seq filled in), then the
// builder's audit records, then COMMIT. Any failure, the builder's included,
// rolls back (the Session's transaction does on every early return).
Status InsertBatch(PgPool& writer, std::vector<LedgerEntry>& entries, const AuditBuilder& audit,
                   const PostgresLedgerOptions& opts) {
  const std::chrono::milliseconds lock_timeout = opts.lock_timeout;
  constexpr std::string_view kOp = "appending to ledger";
  ASSIGN_OR_RETURN(
      PgPool::Session session,
      writer.Begin(PgTxOptions{.lock_key = kLedgerAppendLockKey, .lock_timeout = lock_timeout},
                   kOp));
  if (opts.fence_keys && !entries.empty()) RETURN_IF_ERROR(CheckKeysMaySign(session.conn(), entries));
  if (!entries.empty()) {
    ColumnArrays arrays(entries.size());
    for (const LedgerEntry& e : entries) arrays.Add(e);
    const PgParams params = arrays.Finish();
    ASSIGN_OR_RETURN(PgResult r, PgExecPrepared(session.conn(), kAppendStatement, params, kOp));
    if (r.rows() != static_cast<int>(entries.size())) {
      return InternalError("postgres: appending to ledger: inserted " + std::to_string(r.rows()) +
                           " rows of " + std::to_string(entries.size()));
    }
    std::vector<int64_t> seqs;
    seqs.reserve(entries.size());
    for (int i = 0; i < r.rows(); ++i) seqs.push_back(r.row(i).ColumnInt(0));
    // RETURNING order is not promised; the identity values follow the rows' order.
    std::sort(seqs.begin(), seqs.end());
    for (size_t i = 0; i < entries.size(); ++i) entries[i].seq = seqs[i];
  }
  RETURN_IF_ERROR(BuildAndInsertAudit(session.conn(), entries, audit));
  return session.tx.Commit();
}

StatusOr<AuditHash> ReadHash(const PgRow& row, int col, std::string_view what) {
  StatusOr<std::string> bytes = DecodeByteaHex(row.ColumnText(col));
  if (!bytes.ok() || bytes->size() != kAuditHashSize) {
    return DataLossError("audit log: " + std::string(what) + " is not a 32-byte hash");
  }
  AuditHash h;
  std::memcpy(h.data(), bytes->data(), kAuditHashSize);
  return h;
}

// Column order of kAuditColumns. A leaf hash of the wrong size is read as
// zeros, so the verifier reports the row instead of the read failing.
AuditRecord ReadAuditRecord(const PgRow& row) {
  AuditRecord r;
  r.index = row.ColumnInt(0);
  r.time = row.ColumnTime(1);
  r.actor = row.ColumnText(2);
  r.tenant_id = row.ColumnText(3);
  r.action = row.ColumnText(4);
  r.target = row.ColumnText(5);
  r.outcome = row.ColumnText(6);
  r.request_id = row.ColumnText(7);
  r.client_address = row.ColumnText(8);
  r.policy_hash = row.ColumnText(9);
  r.detail_json = row.ColumnText(10);
  if (auto h = ReadHash(row, 11, "leaf hash"); h.ok()) r.leaf_hash = *h;
  return r;
}

constexpr std::string_view kCheckpointColumns = "id, tree_size, root_hash, timestamp_ms, key_id, note, signature";

StatusOr<AuditCheckpointRecord> ReadCheckpoint(const PgRow& row) {
  AuditCheckpointRecord c;
  c.id = row.ColumnInt(0);
  c.tree_size = row.ColumnInt(1);
  auto root = ReadHash(row, 2, "checkpoint root");
  if (!root.ok()) return DataLossError("audit checkpoint root is not a 32-byte hash");
  c.root_hash = *root;
  c.timestamp = row.ColumnTime(3);
  c.key_id = row.ColumnText(4);
  c.note = row.ColumnText(5);
  ASSIGN_OR_RETURN(std::string sig, DecodeByteaHex(row.ColumnText(6)));
  c.signature.assign(sig.begin(), sig.end());
  return c;
}

}  // namespace

StatusOr<std::unique_ptr<PostgresLedger>> PostgresLedger::Open(std::string_view url,
                                                               PostgresLedgerOptions opts) {
  PgPoolOptions writer_options;
  writer_options.max_connections = 1;
  writer_options.acquire_timeout = opts.acquire_timeout;
  writer_options.application_name = "keyctl-ledger";
  writer_options.on_connect = PrepareWriter;
  ASSIGN_OR_RETURN(std::unique_ptr<PgPool> writer, PgPool::Create(url, std::move(writer_options)));
  PgPoolOptions reader_options;
  reader_options.max_connections = opts.reader_connections;
  reader_options.acquire_timeout = opts.acquire_timeout;
  ASSIGN_OR_RETURN(std::unique_ptr<PgPool> readers, PgPool::Create(url, std::move(reader_options)));

  const std::string context = "opening ledger on " + readers->description();
  {
    StatusOr<PgPool::Lease> reader = readers->Acquire("open");
    if (!reader.ok()) return reader.status().Annotate(context);
    StatusOr<int> version = ReadPgSchemaVersion(reader->get());
    if (!version.ok()) return version.status().Annotate(context);
    const int latest = static_cast<int>(PostgresMigrations().size());
    if (*version > latest) return SchemaTooNewError(*version, latest).Annotate(context);
    if (*version < kMinSchemaVersion) {
      return SchemaBehindError(*version, kMinSchemaVersion, "the ledger").Annotate(context);
    }
    // Connect the writer now, so a broken set-up shows at start-up.
    StatusOr<PgPool::Lease> w = writer->Acquire("open writer");
    if (!w.ok()) return w.status().Annotate(context);
  }
  return std::make_unique<PostgresLedger>(PrivateTag(), std::move(writer), std::move(readers),
                                          opts);
}

PostgresLedger::PostgresLedger(PrivateTag, std::unique_ptr<PgPool> writer,
                               std::unique_ptr<PgPool> readers, PostgresLedgerOptions opts)
    : writer_(std::move(writer)), readers_(std::move(readers)), opts_(opts) {}

Status PostgresLedger::AppendBatch(std::vector<LedgerEntry>& entries, const AuditBuilder& audit) {
  for (LedgerEntry& e : entries) e.seq = 0;
  if (entries.empty() && !audit) return Status::Ok();
  RETURN_IF_ERROR(ValidateLedgerEntries(entries));
  Status s = InsertBatch(*writer_, entries, audit, opts_);
  if (!s.ok()) {
    // Rolled back (or never sent): none of these rows may be reported stored.
    for (LedgerEntry& e : entries) e.seq = 0;
  }
  return s;
}

StatusOr<LedgerPage> PostgresLedger::ListLedger(const LedgerQuery& query) {
  RETURN_IF_ERROR(ValidateLedgerQuery(query));
  // Parameters are numbered in the order the filters appear.
  PgParams params;
  params.Text(query.tenant_id).Int(query.after_seq);
  std::string sql =
      Sql("SELECT ", kLedgerColumns, " FROM ledger WHERE tenant_id = $1 AND seq > $2");
  int n = 2;
  auto next = [&n] { return "$" + std::to_string(++n); };
  if (!query.key_id.empty()) {
    sql += " AND key_id = " + next();
    params.Text(query.key_id);
  }
  if (query.from) {
    sql += " AND signed_at >= " + next();
    params.Time(*query.from);
  }
  if (query.to) {
    sql += " AND signed_at < " + next();
    params.Time(*query.to);
  }
  sql += " ORDER BY seq LIMIT " + next();
  params.Int(query.limit);

  ASSIGN_OR_RETURN(PgResult r, readers_->Query(sql, params, "listing ledger"));
  LedgerPage page;
  page.entries.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) page.entries.push_back(ReadLedgerEntry(r.row(i)));
  if (page.entries.size() == static_cast<size_t>(query.limit)) {
    page.next_cursor = page.entries.back().seq;
  }
  return page;
}

StatusOr<std::vector<MinuteCount>> PostgresLedger::CountByMinuteSince(TimePoint since) {
  constexpr std::string_view kOp = "counting ledger rows per minute";
  ASSIGN_OR_RETURN(
      PgResult r,
      readers_->Query("SELECT tenant_id, signed_at / 60000 AS minute, COUNT(*) FROM ledger "
                      "WHERE signed_at >= $1 AND resign_of_seq IS NULL GROUP BY tenant_id, minute "
                      "ORDER BY tenant_id COLLATE \"C\", minute",
                      PgParams().Time(since), kOp));
  std::vector<MinuteCount> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    const PgRow row = r.row(i);
    out.push_back(MinuteCount{row.ColumnText(0), row.ColumnInt(1), row.ColumnInt(2)});
  }
  return out;
}

StatusOr<bool> PostgresLedger::HasRequest(const std::string& tenant_id,
                                          const std::string& request_id) {
  constexpr std::string_view kOp = "looking up ledger request";
  ASSIGN_OR_RETURN(
      PgResult r,
      readers_->Query("SELECT 1 FROM ledger WHERE tenant_id = $1 AND request_id = $2 LIMIT 1",
                      PgParams().Text(tenant_id).Text(request_id), kOp));
  return r.rows() > 0;
}

// --- audit log ------------------------------------------------------------------------

StatusOr<AuditPage> PostgresLedger::ListAudit(const AuditQuery& query) {
  if (query.limit < 1 || query.limit > kMaxPageSize) {
    return FieldError("limit", "limit must be between 1 and " + std::to_string(kMaxPageSize) + ", got " +
                                   std::to_string(query.limit));
  }
  if (query.after_index < -1) return FieldError("after", "cursor must not be below -1");
  PgParams params;
  params.Int(query.after_index);
  std::string sql = Sql("SELECT ", kAuditColumns, " FROM audit_entries WHERE idx > $1");
  int n = 1;
  auto next = [&n] { return "$" + std::to_string(++n); };
  auto text_filter = [&](std::string_view column, const std::string& value) {
    if (value.empty()) return;
    sql += Sql(" AND ", column, " = ") + next();
    params.Text(value);
  };
  text_filter("tenant_id", query.tenant_id);
  text_filter("actor", query.actor);
  text_filter("action", query.action);
  if (query.from) {
    sql += " AND time_ms >= " + next();
    params.Time(*query.from);
  }
  if (query.to) {
    sql += " AND time_ms < " + next();
    params.Time(*query.to);
  }
  sql += " ORDER BY idx LIMIT " + next();
  params.Int(query.limit);
  ASSIGN_OR_RETURN(PgResult r, readers_->Query(sql, params, "listing audit log"));
  AuditPage page;
  page.entries.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) page.entries.push_back(ReadAuditRecord(r.row(i)));
  if (page.entries.size() == static_cast<size_t>(query.limit)) page.next_cursor = page.entries.back().index;
  return page;
}

StatusOr<int64_t> PostgresLedger::AuditSize() {
  ASSIGN_OR_RETURN(PgResult r, readers_->Query(kAuditSizeSql, PgParams(),
                                               "reading audit log size"));
  return r.row(0).ColumnInt(0);
}

StatusOr<std::vector<AuditHash>> PostgresLedger::AuditNodes(int level, int64_t begin, int64_t end) {
  if (level < 0 || begin < 0 || end < begin) return InvalidArgumentError("bad audit node range");
  constexpr std::string_view kOp = "reading audit tree";
  StatusOr<PgResult> r =
      level == 0 ? readers_->Query("SELECT idx, leaf_hash FROM audit_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                                   PgParams().Int(begin).Int(end), kOp)
                 : readers_->Query("SELECT idx, hash FROM audit_nodes WHERE level = $1 AND idx >= $2 AND idx < $3 "
                                   "ORDER BY idx",
                                   PgParams().Int(level).Int(begin).Int(end), kOp);
  if (!r.ok()) return r.status();
  std::vector<AuditHash> out;
  out.reserve(static_cast<size_t>(end - begin));
  for (int i = 0; i < r->rows(); ++i) {
    const PgRow row = r->row(i);
    if (row.ColumnInt(0) != begin + static_cast<int64_t>(out.size())) break;  // a gap: reported below
    ASSIGN_OR_RETURN(AuditHash h, ReadHash(row, 1, level == 0 ? "a leaf hash" : "a tree node"));
    out.push_back(h);
  }
  if (out.size() != static_cast<size_t>(end - begin)) {
    return AuditNodeMissingError(level, begin + static_cast<int64_t>(out.size()));
  }
  return out;
}

Status PostgresLedger::InsertAuditCheckpoint(AuditCheckpointRecord& c) {
  ASSIGN_OR_RETURN(
      PgResult r,
      readers_->Query("INSERT INTO audit_checkpoints (tree_size, root_hash, timestamp_ms, key_id, note, signature) "
                      "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                      PgParams()
                          .Int(c.tree_size)
                          .Bytes(std::string_view(reinterpret_cast<const char*>(c.root_hash.data()),
                                                  c.root_hash.size()))
                          .Time(c.timestamp)
                          .Text(c.key_id)
                          .Text(c.note)
                          .Bytes(std::string_view(reinterpret_cast<const char*>(c.signature.data()),
                                                  c.signature.size())),
                      "storing audit checkpoint"));
  c.id = r.row(0).ColumnInt(0);
  return Status::Ok();
}

StatusOr<std::vector<AuditCheckpointRecord>> PostgresLedger::ListAuditCheckpoints(int64_t after_id, int limit) {
  if (limit < 1 || limit > kMaxPageSize) {
    return FieldError("limit", "limit must be between 1 and " + std::to_string(kMaxPageSize));
  }
  ASSIGN_OR_RETURN(PgResult r,
                   readers_->Query(Sql("SELECT ", kCheckpointColumns,
                                       " FROM audit_checkpoints WHERE id > $1 ORDER BY id LIMIT $2"),
                                   PgParams().Int(after_id).Int(limit), "listing audit checkpoints"));
  std::vector<AuditCheckpointRecord> out;
  for (int i = 0; i < r.rows(); ++i) {
    ASSIGN_OR_RETURN(AuditCheckpointRecord c, ReadCheckpoint(r.row(i)));
    out.push_back(std::move(c));
  }
  return out;
}

StatusOr<std::optional<AuditCheckpointRecord>> PostgresLedger::LatestAuditCheckpoint() {
  ASSIGN_OR_RETURN(PgResult r,
                   readers_->Query(Sql("SELECT ", kCheckpointColumns, " FROM audit_checkpoints ORDER BY id DESC LIMIT 1"),
                                   PgParams(), "reading latest audit checkpoint"));
  if (r.rows() == 0) return std::optional<AuditCheckpointRecord>();
  ASSIGN_OR_RETURN(AuditCheckpointRecord c, ReadCheckpoint(r.row(0)));
  return std::optional<AuditCheckpointRecord>(std::move(c));
}

Status PostgresLedger::InsertAuditKey(const AuditKeyRecord& k) {
  return readers_
      ->Query("INSERT INTO audit_keys (key_id, origin, algorithm, provider, key_uri, public_key_pem, created_at) "
              "VALUES ($1, $2, $3, $4, $5, $6, $7)",
              PgParams().Text(k.key_id).Text(k.origin).Text(k.algorithm).Text(k.provider).Text(k.key_uri)
                  .Text(k.public_key_pem).Time(k.created_at),
              "storing audit key")
      .status();
}

StatusOr<std::vector<AuditKeyRecord>> PostgresLedger::ListAuditKeys() {
  ASSIGN_OR_RETURN(PgResult r,
                   readers_->Query("SELECT key_id, origin, algorithm, provider, key_uri, public_key_pem, created_at "
                                   "FROM audit_keys ORDER BY created_at, key_id COLLATE \"C\"",
                                   PgParams(), "listing audit keys"));
  std::vector<AuditKeyRecord> out;
  for (int i = 0; i < r.rows(); ++i) {
    const PgRow row = r.row(i);
    out.push_back(AuditKeyRecord{row.ColumnText(0), row.ColumnText(1), row.ColumnText(2), row.ColumnText(3),
                                 row.ColumnText(4), row.ColumnText(5), row.ColumnTime(6)});
  }
  return out;
}

// --- mass re-sign --------------------------------------------------------------------
//
// AppendResignBatch is AppendBatch's transaction (same writer connection, same
// append lock, so seq follows commit order, and the AuditBuilder inside it)
// plus the job: its row is read FOR UPDATE, the lock PostgresStore's
// UpdateResignJobState also takes, so a pause or cancel committed first makes
// the batch kAborted and one committed later waits for the batch. The unique
// index ledger_one_resign_per_key (migration v7) refuses a second
// re-signature of a row by the same key (kAlreadyExists), and the cursor and
// counters commit with the rows.

namespace {

// The re-sign INSERT: AppendBatch's unnest with resign_of_seq as a 14th array.
std::string ResignAppendSql() {
  return Sql("INSERT INTO ledger (", kLedgerInsertColumns, ", resign_of_seq) SELECT ") +
         Sql(kLedgerInsertColumns,
             ", resign_of_seq FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], "
             "$6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], "
             "$13::bigint[], $14::bigint[]) WITH ORDINALITY AS u(") +
         Sql(kLedgerInsertColumns, ", resign_of_seq, ord) ORDER BY ord RETURNING seq");
}

// The rows of a batch, seq filled in (the caller clears them on failure).
Status InsertResignRows(PGconn* conn, std::vector<LedgerEntry>& rows) {
  constexpr std::string_view kOp = "appending re-sign rows";
  if (rows.empty()) return Status::Ok();
  ColumnArrays arrays(rows.size());
  std::string resign_of = "{";
  for (const LedgerEntry& e : rows) {
    arrays.Add(e);
    if (resign_of.size() > 1) resign_of.push_back(',');
    resign_of.append(std::to_string(e.resign_of_seq));
  }
  PgParams params = arrays.Finish();
  params.Text(resign_of.append("}"));
  ASSIGN_OR_RETURN(PgResult r, PgExec(conn, ResignAppendSql(), params, kOp));
  if (r.rows() != static_cast<int>(rows.size())) {
    return InternalError("postgres: " + std::string(kOp) + ": inserted " + std::to_string(r.rows()) + " rows of " +
                         std::to_string(rows.size()));
  }
  std::vector<int64_t> seqs;
  seqs.reserve(rows.size());
  for (int i = 0; i < r.rows(); ++i) seqs.push_back(r.row(i).ColumnInt(0));
  std::sort(seqs.begin(), seqs.end());  // as in InsertBatch
  for (size_t i = 0; i < rows.size(); ++i) rows[i].seq = seqs[i];
  return Status::Ok();
}

// 12 parameters a row, in chunks far below the 65535-parameter limit.
Status InsertResignResults(PGconn* conn, const ResignBatch& b) {
  constexpr size_t kRowsPerInsert = 1000;
  constexpr int kColumns = 12;
  for (size_t start = 0; start < b.results.size(); start += kRowsPerInsert) {
    const size_t end = std::min(b.results.size(), start + kRowsPerInsert);
    std::string sql = Sql("INSERT INTO resign_results (", kResignResultColumns, ") VALUES ");
    PgParams p;
    for (size_t i = start; i < end; ++i) {
      const ResignResult& r = b.results[i];
      const int base = p.size();
      sql += i == start ? "(" : ",(";
      for (int c = 1; c <= kColumns; ++c) sql += (c == 1 ? "$" : ",$") + std::to_string(base + c);
      sql += ")";
      p.Text(b.job_id).Int(r.original_seq).Text(r.status).Int(r.new_seq).Text(r.original_kind).Text(r.asset_id);
      p.Text(r.digest_hex).Text(r.signature_b64).Text(r.signature_format).Text(r.key_id).Int(r.key_version);
      p.Text(r.detail);
    }
    RETURN_IF_ERROR(PgExec(conn, sql, p, "storing re-sign results").status());
  }
  return Status::Ok();
}

Status InsertResignBatch(PgPool& writer, ResignBatch& b, const AuditBuilder& audit,
                         const PostgresLedgerOptions& opts) {
  constexpr std::string_view kOp = "appending re-sign batch";
  ASSIGN_OR_RETURN(
      PgPool::Session session,
      writer.Begin(PgTxOptions{.lock_key = kLedgerAppendLockKey, .lock_timeout = opts.lock_timeout}, kOp));
  PGconn* c = session.conn();
  // The same commit fence as AppendBatch: re-signing with a key that another
  // instance has since retired would hand out signatures by a retired key.
  if (opts.fence_keys && !b.rows.empty()) RETURN_IF_ERROR(CheckKeysMaySign(c, b.rows));
  {
    ASSIGN_OR_RETURN(PgResult job, PgExec(c, "SELECT state, cursor_seq FROM resign_jobs WHERE job_id = $1 FOR UPDATE",
                                          PgParams().Text(b.job_id), "reading re-sign job"));
    const bool found = job.rows() > 0;
    RETURN_IF_ERROR(CheckResignJobForBatch(b, found, found ? job.row(0).ColumnText(0) : "",
                                           found ? job.row(0).ColumnInt(1) : 0));
  }
  RETURN_IF_ERROR(InsertResignRows(c, b.rows));
  ASSIGN_OR_RETURN(ResignTally tally, LinkResignResults(b));
  RETURN_IF_ERROR(InsertResignResults(c, b));
  PgParams u;
  u.Text(b.job_id).Int(b.new_cursor).Int(static_cast<int64_t>(b.results.size())).Int(tally.resigned);
  u.Int(tally.needs_client).Int(tally.already_resigned).Time(b.at);
  RETURN_IF_ERROR(PgExec(c,
                         "UPDATE resign_jobs SET cursor_seq = $2, processed = processed + $3, "
                         "resigned = resigned + $4, needs_client = needs_client + $5, "
                         "already_resigned = already_resigned + $6, updated_at = $7 WHERE job_id = $1",
                         u, "advancing re-sign job")
                      .status());
  RETURN_IF_ERROR(BuildAndInsertAudit(c, b.rows, audit));
  return session.tx.Commit();
}

}  // namespace

StatusOr<std::vector<ResignCandidate>> PostgresLedger::ListResignCandidates(const ResignScan& scan) {
  RETURN_IF_ERROR(ValidateResignScan(scan));
  // The correlated subquery finds an existing re-signature through the partial
  // unique index (resign_of_seq = c.seq implies resign_of_seq IS NOT NULL).
  PgParams p;
  p.Text(scan.tenant_id).Text(scan.key_id).Int(scan.after_seq).OptionalTime(scan.since);
  p.Text(scan.resigned_by_key_id).Int(scan.limit);
  ASSIGN_OR_RETURN(PgResult r,
                   readers_->Query(Sql("SELECT c.*, COALESCE((SELECT r.seq FROM ledger r WHERE "
                                       "r.resign_of_seq = c.seq AND r.key_id = $5), 0) FROM (SELECT ",
                                       kLedgerColumns,
                                       " FROM ledger WHERE key_id = $2 AND tenant_id = $1 AND seq > $3 "
                                       "AND ($4::bigint IS NULL OR signed_at >= $4::bigint) "
                                       "ORDER BY seq LIMIT $6) c ORDER BY c.seq"),
                                   p, "listing re-sign candidates"));
  std::vector<ResignCandidate> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    const PgRow row = r.row(i);
    out.push_back(ResignCandidate{ReadLedgerEntry(row), row.ColumnInt(15)});
  }
  return out;
}

StatusOr<int64_t> PostgresLedger::CountResignCandidates(const ResignScan& scan) {
  RETURN_IF_ERROR(ValidateResignScan(scan));
  ASSIGN_OR_RETURN(PgResult r,
                   readers_->Query("SELECT COUNT(*) FROM ledger WHERE key_id = $2 AND tenant_id = $1 AND seq > $3 "
                                   "AND ($4::bigint IS NULL OR signed_at >= $4::bigint)",
                                   PgParams().Text(scan.tenant_id).Text(scan.key_id).Int(scan.after_seq).OptionalTime(
                                       scan.since),
                                   "counting re-sign candidates"));
  return r.rows() > 0 ? r.row(0).ColumnInt(0) : 0;
}

Status PostgresLedger::AppendResignBatch(ResignBatch& batch, const AuditBuilder& audit) {
  for (LedgerEntry& e : batch.rows) e.seq = 0;
  RETURN_IF_ERROR(ValidateResignBatch(batch));
  Status s = InsertResignBatch(*writer_, batch, audit, opts_);
  if (!s.ok()) ClearResignSeqs(batch);  // rolled back (or never sent)
  return s;
}

StatusOr<std::vector<ResignResult>> PostgresLedger::ListResignResults(const std::string& job_id, int64_t after_seq,
                                                                      int limit) {
  RETURN_IF_ERROR(ValidateResignResultsLimit(limit));
  ASSIGN_OR_RETURN(PgResult r, readers_->Query(Sql("SELECT ", kResignResultColumns,
                                                   " FROM resign_results WHERE job_id = $1 AND original_seq > $2 "
                                                   "ORDER BY original_seq LIMIT $3"),
                                               PgParams().Text(job_id).Int(after_seq).Int(limit),
                                               "listing re-sign results"));
  std::vector<ResignResult> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) out.push_back(ReadResignResult(r.row(i)));
  return out;
}

}  // namespace concierge::store
