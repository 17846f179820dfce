#include "store/postgres/postgres_dump.h"

#include <map>
#include <utility>
#include <vector>

#include "store/migrations/migrations.h"
#include "store/postgres/pg_pool.h"
#include "store/postgres/postgres_store.h"

namespace concierge::store {
namespace {

constexpr Oid kInt8Oid = 20;
constexpr Oid kInt2Oid = 21;
constexpr Oid kInt4Oid = 23;
constexpr Oid kByteaOid = 17;
// Rows per FETCH when scanning, and at most this many values per INSERT.
constexpr int kFetchRows = 5000;
constexpr size_t kMaxValuesPerInsert = 30000;

StatusOr<std::vector<std::string>> TableNames(PGconn* c) {
  ASSIGN_OR_RETURN(PgResult r, PgExec(c,
                                      "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace "
                                      "AND relkind = 'r' AND relname <> $1 ORDER BY relname",
                                      PgParams().Text(kSchemaMigrationsTable), "listing tables"));
  std::vector<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(r.row(i).ColumnText(0));
  return out;
}

struct ColumnInfo {
  std::vector<std::string> names;  // attnum order
  std::vector<Oid> types;
  std::vector<std::string> primary_key;  // key order
};

StatusOr<ColumnInfo> Columns(PGconn* c, const std::string& table) {
  ColumnInfo info;
  ASSIGN_OR_RETURN(PgResult shape, PgExec(c, "SELECT * FROM " + QuoteIdentifier(table) + " LIMIT 0",
                                          "reading columns of " + table));
  // PQnfields/PQfname/PQftype of the empty result describe the columns.
  ASSIGN_OR_RETURN(PgResult key,
                   PgExec(c,
                          "SELECT a.attname FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY "
                          "AS k(attnum, ord) JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
                          "WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY k.ord",
                          PgParams().Text(QuoteIdentifier(table)), "reading the primary key of " + table));
  for (int i = 0; i < key.rows(); ++i) info.primary_key.push_back(key.row(i).ColumnText(0));
  const PGresult* raw = shape.raw();
  for (int i = 0; i < PQnfields(raw); ++i) {
    info.names.push_back(PQfname(raw, i));
    info.types.push_back(PQftype(raw, i));
  }
  return info;
}

bool IsInteger(Oid t) { return t == kInt8Oid || t == kInt4Oid || t == kInt2Oid; }

class PostgresSnapshot : public SqlSnapshot {
 public:
  PostgresSnapshot(PgConnPtr conn, int version) : conn_(std::move(conn)), version_(version) {}

  int schema_version() const override { return version_; }

  StatusOr<std::vector<std::string>> Tables() override {
    ASSIGN_OR_RETURN(std::vector<std::string> tables, TableNames(conn_.get()));
    ASSIGN_OR_RETURN(PgResult r, PgExec(conn_.get(),
                                        "SELECT c.relname, p.relname FROM pg_constraint k "
                                        "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid "
                                        "WHERE k.contype = 'f' AND k.connamespace = current_schema()::regnamespace",
                                        "reading foreign keys"));
    std::vector<std::pair<std::string, std::string>> refs;
    for (int i = 0; i < r.rows(); ++i) refs.emplace_back(r.row(i).ColumnText(0), r.row(i).ColumnText(1));
    return OrderByReferences(std::move(tables), refs);
  }

  Status Scan(const std::string& table, std::vector<std::string>* columns,
              const std::function<Status(const SqlRow&)>& row) override {
    PGconn* c = conn_.get();
    ASSIGN_OR_RETURN(ColumnInfo info, Columns(c, table));
    *columns = info.names;
    std::map<std::string, Oid> type_of;
    for (size_t i = 0; i < info.names.size(); ++i) type_of[info.names[i]] = info.types[i];
    std::string sql = "DECLARE concierge_dump NO SCROLL CURSOR FOR SELECT ";
    for (size_t i = 0; i < info.names.size(); ++i) sql += (i ? ", " : "") + QuoteIdentifier(info.names[i]);
    sql += " FROM " + QuoteIdentifier(table);
    for (size_t i = 0; i < info.primary_key.size(); ++i) {
      const std::string& k = info.primary_key[i];
      // Bytewise text order, as SQLite sorts, whatever the database collation.
      sql += (i ? ", " : " ORDER BY ") + QuoteIdentifier(k) + (IsInteger(type_of[k]) ? "" : " COLLATE \"C\"");
    }
    RETURN_IF_ERROR(PgExecScript(c, sql, "reading " + table));
    SqlRow values(info.names.size());
    for (;;) {
      ASSIGN_OR_RETURN(PgResult r, PgExec(c, "FETCH " + std::to_string(kFetchRows) + " FROM concierge_dump",
                                          "reading " + table));
      for (int i = 0; i < r.rows(); ++i) {
        const PgRow pg = r.row(i);
        for (size_t col = 0; col < values.size(); ++col) {
          const int n = static_cast<int>(col);
          if (pg.ColumnIsNull(n)) {
            values[col] = SqlValue::Null();
          } else if (IsInteger(info.types[col])) {
            values[col] = SqlValue::Int(pg.ColumnInt(n));
          } else if (info.types[col] == kByteaOid) {
            ASSIGN_OR_RETURN(std::string bytes, DecodeByteaHex(pg.ColumnText(n)));
            values[col] = SqlValue::Bytes(std::move(bytes));
          } else {
            values[col] = SqlValue::Text(pg.ColumnText(n));
          }
        }
        RETURN_IF_ERROR(row(values));
      }
      if (r.rows() < kFetchRows) break;
    }
    return PgExecScript(c, "CLOSE concierge_dump", "reading " + table);
  }

 private:
  PgConnPtr conn_;  // inside the snapshot transaction until destroyed
  int version_;
};

class PostgresLoader : public SqlLoader {
 public:
  explicit PostgresLoader(PgConnPtr conn) : conn_(std::move(conn)) {}

  Status Insert(const std::string& table, const std::vector<std::string>& columns, const SqlRow& row) override {
    if (columns.size() != row.size()) return InvalidArgumentError("row of " + table + " has the wrong column count");
    if (table != table_ || columns != columns_) {
      RETURN_IF_ERROR(Flush());
      table_ = table;
      columns_ = columns;
      ASSIGN_OR_RETURN(ColumnInfo info, Columns(conn_.get(), table));
      std::map<std::string, Oid> type_of;
      for (size_t i = 0; i < info.names.size(); ++i) type_of[info.names[i]] = info.types[i];
      bytea_.clear();
      for (const std::string& c : columns) bytea_.push_back(type_of.count(c) != 0 && type_of[c] == kByteaOid);
    }
    for (size_t i = 0; i < row.size(); ++i) {
      const SqlValue& v = row[i];
      switch (v.kind) {
        case SqlValue::Kind::kNull: pending_.Null(); break;
        case SqlValue::Kind::kInt: pending_.Int(v.i); break;
        case SqlValue::Kind::kText: pending_.Text(v.s); break;
        case SqlValue::Kind::kBytes:
          pending_.Text(bytea_[i] ? EncodeByteaHex(v.s) : v.s);
          break;
      }
    }
    ++pending_rows_;
    if (static_cast<size_t>(pending_.size()) + columns.size() > kMaxValuesPerInsert) return Flush();
    return Status::Ok();
  }

  Status Commit() override {
    RETURN_IF_ERROR(Flush());
    PGconn* c = conn_.get();
    // Identity sequences continue after the restored values.
    ASSIGN_OR_RETURN(PgResult ids, PgExec(c,
                                          "SELECT table_name, column_name FROM information_schema.columns "
                                          "WHERE table_schema = current_schema() AND is_identity = 'YES'",
                                          "finding identity columns"));
    for (int i = 0; i < ids.rows(); ++i) {
      const std::string t = QuoteIdentifier(ids.row(i).ColumnText(0));
      const std::string col = QuoteIdentifier(ids.row(i).ColumnText(1));
      RETURN_IF_ERROR(PgExec(c,
                             "SELECT setval(pg_get_serial_sequence($1, $2), COALESCE(MAX(" + col + "), 0) + 1, false) "
                             "FROM " + t,
                             PgParams().Text(t).Text(ids.row(i).ColumnText(1)), "advancing identity of " + t)
                          .status());
    }
    return PgExecScript(c, "COMMIT", "restoring (commit)");
  }

 private:
  Status Flush() {
    if (pending_rows_ == 0) return Status::Ok();
    std::string sql = "INSERT INTO " + QuoteIdentifier(table_) + " (";
    for (size_t i = 0; i < columns_.size(); ++i) sql += (i ? ", " : "") + QuoteIdentifier(columns_[i]);
    sql += ") OVERRIDING SYSTEM VALUE VALUES ";
    int n = 0;
    for (int r = 0; r < pending_rows_; ++r) {
      sql += r ? ", (" : "(";
      for (size_t i = 0; i < columns_.size(); ++i) sql += (i ? ", $" : "$") + std::to_string(++n);
      sql += ")";
    }
    Status s = PgExec(conn_.get(), sql, pending_, "restoring " + table_).status();
    pending_ = PgParams();
    pending_rows_ = 0;
    return s;
  }

  PgConnPtr conn_;  // inside the restore transaction until Commit
  std::string table_;
  std::vector<std::string> columns_;
  std::vector<bool> bytea_;  // per column of columns_
  PgParams pending_;
  int pending_rows_ = 0;
};

}  // namespace

StatusOr<std::unique_ptr<SqlSnapshot>> OpenPostgresSnapshot(std::string_view url) {
  ASSIGN_OR_RETURN(std::unique_ptr<PgPool> pool, PgPool::Create(url));
  const std::string context = "reading database " + pool->description();
  StatusOr<PgConnPtr> conn = pool->Connect("snapshot");
  if (!conn.ok()) return conn.status().Annotate(context);
  Status begun = PgExecScript(conn->get(), "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "snapshot");
  if (!begun.ok()) return begun.Annotate(context);
  StatusOr<int> version = ReadPgSchemaVersion(conn->get());
  if (!version.ok()) return version.status().Annotate(context);
  const int latest = static_cast<int>(PostgresMigrations().size());
  if (*version > latest) return SchemaTooNewError(*version, latest).Annotate(context);
  if (*version == 0) return FailedPreconditionError(pool->description() + " has no schema: nothing to back up");
  return std::unique_ptr<SqlSnapshot>(new PostgresSnapshot(*std::move(conn), *version));
}

StatusOr<std::unique_ptr<SqlLoader>> OpenPostgresLoader(std::string_view url, int schema_version) {
  ASSIGN_OR_RETURN(std::unique_ptr<PgPool> pool, PgPool::Create(url));
  const std::string context = "restoring into " + pool->description();
  {
    StatusOr<std::unique_ptr<PostgresStore>> store = PostgresStore::Open(url);
    if (!store.ok()) return store.status().Annotate(context);
    StatusOr<PgConnPtr> check = pool->Connect("checking the target");
    if (!check.ok()) return check.status().Annotate(context);
    ASSIGN_OR_RETURN(std::vector<std::string> tables, TableNames(check->get()));
    for (const std::string& t : tables) {
      ASSIGN_OR_RETURN(PgResult r, PgExec(check->get(), "SELECT 1 FROM " + QuoteIdentifier(t) + " LIMIT 1",
                                          "checking " + t));
      if (r.rows() > 0) return TargetNotEmptyError(t).Annotate(context);
    }
    Status migrated = (*store)->Migrate(schema_version);
    if (!migrated.ok()) return migrated.Annotate(context);
  }
  StatusOr<PgConnPtr> conn = pool->Connect("restoring");
  if (!conn.ok()) return conn.status().Annotate(context);
  Status begun = PgExecScript(conn->get(),
                              "BEGIN; SELECT pg_advisory_xact_lock(" + std::to_string(kStoreWriteLockKey) +
                                  "); SELECT pg_advisory_xact_lock(" + std::to_string(kLedgerAppendLockKey) + ")",
                              "restoring (begin)");
  if (!begun.ok()) return begun.Annotate(context);
  return std::unique_ptr<SqlLoader>(new PostgresLoader(*std::move(conn)));
}

}  // namespace concierge::store
