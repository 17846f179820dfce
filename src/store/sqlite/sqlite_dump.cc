#include "store/sqlite/sqlite_dump.h"

#include <map>
#include <utility>
#include <vector>

#include "store/migrations/migrations.h"
#include "store/sqlite/sqlite_store.h"
#include "store/sqlite/sqlite_util.h"

namespace concierge::store {
namespace {

StatusOr<std::vector<std::string>> TableNames(sqlite3* db) {
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                   "SELECT name FROM sqlite_master WHERE type = 'table' "
                                                   "AND name NOT LIKE 'sqlite_%' AND name <> ?1 ORDER BY name",
                                                   "listing tables"));
  s.Bind(1, std::string_view(kSchemaMigrationsTable));
  std::vector<std::string> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back(s.ColumnText(0));
  }
  return out;
}

struct ColumnInfo {
  std::vector<std::string> names;        // declaration order
  std::vector<std::string> primary_key;  // key order
};

StatusOr<ColumnInfo> Columns(sqlite3* db, const std::string& table) {
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db, "SELECT name, pk FROM pragma_table_info(?1)",
                                                   "reading columns of " + table));
  s.Bind(1, table);
  ColumnInfo info;
  std::map<int64_t, std::string> key;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    info.names.push_back(s.ColumnText(0));
    if (s.ColumnInt(1) > 0) key[s.ColumnInt(1)] = s.ColumnText(0);
  }
  for (auto& [pos, name] : key) info.primary_key.push_back(name);
  return info;
}

StatusOr<int> SchemaVersionOf(sqlite3* db) {
  ASSIGN_OR_RETURN(Statement exists, Statement::Prepare(db,
                                                        "SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                                        "AND name = 'schema_migrations'",
                                                        "reading schema version"));
  ASSIGN_OR_RETURN(bool has_table, exists.Step());
  if (!has_table) return 0;
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                                                   "reading schema version"));
  ASSIGN_OR_RETURN(bool row, s.Step());
  return row ? static_cast<int>(s.ColumnInt(0)) : 0;
}

class SqliteSnapshot : public SqlSnapshot {
 public:
  SqliteSnapshot(SqliteDb db, Transaction tx, int version)
      : db_(std::move(db)), tx_(std::move(tx)), version_(version) {}

  int schema_version() const override { return version_; }

  StatusOr<std::vector<std::string>> Tables() override {
    ASSIGN_OR_RETURN(std::vector<std::string> tables, TableNames(db_.get()));
    std::vector<std::pair<std::string, std::string>> refs;
    for (const std::string& t : tables) {
      ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(), "SELECT \"table\" FROM pragma_foreign_key_list(?1)",
                                                       "reading foreign keys of " + t));
      s.Bind(1, t);
      while (true) {
        ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        refs.emplace_back(t, s.ColumnText(0));
      }
    }
    return OrderByReferences(std::move(tables), refs);
  }

  Status Scan(const std::string& table, std::vector<std::string>* columns,
              const std::function<Status(const SqlRow&)>& row) override {
    ASSIGN_OR_RETURN(ColumnInfo info, Columns(db_.get(), table));
    *columns = info.names;
    std::string sql = "SELECT ";
    for (size_t i = 0; i < info.names.size(); ++i) sql += (i ? ", " : "") + QuoteIdentifier(info.names[i]);
    sql += " FROM " + QuoteIdentifier(table);
    for (size_t i = 0; i < info.primary_key.size(); ++i) {
      sql += (i ? ", " : " ORDER BY ") + QuoteIdentifier(info.primary_key[i]);
    }
    ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(), sql, "reading " + table));
    SqlRow values(info.names.size());
    while (true) {
      ASSIGN_OR_RETURN(bool more, s.Step());
      if (!more) break;
      for (size_t c = 0; c < values.size(); ++c) {
        const int col = static_cast<int>(c);
        if (s.ColumnIsNull(col)) {
          values[c] = SqlValue::Null();
          continue;
        }
        switch (s.ColumnType(col)) {
          case SQLITE_INTEGER:
            values[c] = SqlValue::Int(s.ColumnInt(col));
            break;
          case SQLITE_BLOB:
            values[c] = SqlValue::Bytes(s.ColumnBytes(col));
            break;
          case SQLITE_TEXT:
            values[c] = SqlValue::Text(s.ColumnText(col));
            break;
          default:
            return InternalError("table " + table + " column " + info.names[c] +
                                 " holds a floating-point value, which backups do not carry");
        }
      }
      RETURN_IF_ERROR(row(values));
    }
    return Status::Ok();
  }

 private:
  SqliteDb db_;
  Transaction tx_;  // the read transaction that pins the snapshot
  int version_;
};

class SqliteLoader : public SqlLoader {
 public:
  SqliteLoader(SqliteDb db, Transaction tx) : db_(std::move(db)), tx_(std::move(tx)) {}

  Status Insert(const std::string& table, const std::vector<std::string>& columns, const SqlRow& row) override {
    if (columns.size() != row.size()) return InvalidArgumentError("row of " + table + " has the wrong column count");
    auto it = inserts_.find(table);
    if (it == inserts_.end()) {
      std::string sql = "INSERT INTO " + QuoteIdentifier(table) + " (";
      std::string values;
      for (size_t i = 0; i < columns.size(); ++i) {
        sql += (i ? ", " : "") + QuoteIdentifier(columns[i]);
        values += (i ? ", ?" : "?") + std::to_string(i + 1);
      }
      sql += ") VALUES (" + values + ")";
      ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(), sql, "restoring " + table));
      it = inserts_.emplace(table, std::move(s)).first;
    }
    Statement& s = it->second;
    for (size_t i = 0; i < row.size(); ++i) {
      const int index = static_cast<int>(i) + 1;
      switch (row[i].kind) {
        case SqlValue::Kind::kNull: s.BindNull(index); break;
        case SqlValue::Kind::kInt: s.Bind(index, row[i].i); break;
        case SqlValue::Kind::kText: s.Bind(index, std::string_view(row[i].s)); break;
        case SqlValue::Kind::kBytes: s.BindBytes(index, row[i].s); break;
      }
    }
    Status st = s.Run();
    s.Reset();
    return st;
  }

  Status Commit() override {
    inserts_.clear();  // finalise the statements before COMMIT
    return tx_.Commit();
  }

 private:
  SqliteDb db_;
  Transaction tx_;
  std::map<std::string, Statement> inserts_;
};

}  // namespace

StatusOr<std::unique_ptr<SqlSnapshot>> OpenSqliteSnapshot(const std::string& path) {
  const std::string context = "reading database " + path;
  ConfigureSqliteLibrary();
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  SqliteDb db(raw);
  if (rc != SQLITE_OK) return SqliteStatus(db.get(), rc, "open").Annotate(context);
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), 5000);
  StatusOr<Transaction> tx = Transaction::Begin(db.get(), Transaction::Mode::kDeferred, "snapshot");
  if (!tx.ok()) return tx.status().Annotate(context);
  // The first read fixes the snapshot; everything after reads the same one.
  StatusOr<int> version = SchemaVersionOf(db.get());
  if (!version.ok()) return version.status().Annotate(context);
  const int latest = static_cast<int>(SqliteMigrations().size());
  if (*version > latest) return SchemaTooNewError(*version, latest).Annotate(context);
  if (*version == 0) return FailedPreconditionError(path + " has no schema: nothing to back up");
  return std::unique_ptr<SqlSnapshot>(new SqliteSnapshot(std::move(db), *std::move(tx), *version));
}

StatusOr<std::unique_ptr<SqlLoader>> OpenSqliteLoader(const std::string& path, int schema_version) {
  const std::string context = "restoring into " + path;
  {
    ASSIGN_OR_RETURN(auto store, SqliteStore::Open(path));
    ASSIGN_OR_RETURN(int current, store->SchemaVersion());
    if (current > 0) {
      ASSIGN_OR_RETURN(SqliteDb db, OpenSqliteDb(path, "open"));
      ASSIGN_OR_RETURN(std::vector<std::string> tables, TableNames(db.get()));
      for (const std::string& t : tables) {
        ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db.get(), "SELECT 1 FROM " + QuoteIdentifier(t) + " LIMIT 1",
                                                         "checking " + t));
        ASSIGN_OR_RETURN(bool row, s.Step());
        if (row) return TargetNotEmptyError(t).Annotate(context);
      }
    }
    Status migrated = store->Migrate(schema_version);
    if (!migrated.ok()) return migrated.Annotate(context);
  }
  StatusOr<SqliteDb> db = OpenSqliteDb(path, "open");
  if (!db.ok()) return db.status().Annotate(context);
  sqlite3_busy_timeout(db->get(), 5000);
  RETURN_IF_ERROR(ExecSql(db->get(), "PRAGMA foreign_keys = ON", "enabling foreign keys"));
  StatusOr<Transaction> tx = Transaction::Begin(db->get(), Transaction::Mode::kImmediate, "restoring");
  if (!tx.ok()) return tx.status().Annotate(context);
  return std::unique_ptr<SqlLoader>(new SqliteLoader(*std::move(db), *std::move(tx)));
}

}  // namespace concierge::store
