#include "store/postgres/postgres_ledger.h"

#include <algorithm>
#include <array>
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

Status InsertBatch(PgPool& writer, std::vector<LedgerEntry>& entries,
                   std::chrono::milliseconds lock_timeout) {
  constexpr std::string_view kOp = "appending to ledger";
  ColumnArrays arrays(entries.size());
  for (const LedgerEntry& e : entries) arrays.Add(e);
  const PgParams params = arrays.Finish();
  ASSIGN_OR_RETURN(
      PgPool::Session session,
      writer.Begin(PgTxOptions{.lock_key = kLedgerAppendLockKey, .lock_timeout = lock_timeout},
                   kOp));
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
  return session.tx.Commit();
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

Status PostgresLedger::AppendBatch(std::vector<LedgerEntry>& entries) {
  for (LedgerEntry& e : entries) e.seq = 0;
  if (entries.empty()) return Status::Ok();
  RETURN_IF_ERROR(ValidateLedgerEntries(entries));
  Status s = InsertBatch(*writer_, entries, opts_.lock_timeout);
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
                      "WHERE signed_at >= $1 GROUP BY tenant_id, minute "
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

}  // namespace concierge::store
