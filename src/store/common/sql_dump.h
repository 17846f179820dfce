// Engine-neutral access to every table of a store's database, for backups:
// SqlSnapshot reads all rows from one consistent snapshot, SqlLoader writes
// them into an empty database in one transaction. Each engine implements both
// (sqlite_dump.h, postgres_dump.h) from its own catalog, so tables that later
// migrations add are carried without changes here. Values are typed as the
// two engines store them: NULL, 64-bit integers, text and bytes.
//
// Not thread-safe: one snapshot or loader per thread.
#ifndef CONCIERGE_STORE_COMMON_SQL_DUMP_H_
#define CONCIERGE_STORE_COMMON_SQL_DUMP_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "concierge/status.h"

namespace concierge::store {

struct SqlValue {
  enum class Kind { kNull, kInt, kText, kBytes };
  Kind kind = Kind::kNull;
  int64_t i = 0;
  std::string s;  // text, or the bytes of kBytes

  static SqlValue Null() { return SqlValue{}; }
  static SqlValue Int(int64_t v) { return SqlValue{Kind::kInt, v, {}}; }
  static SqlValue Text(std::string v) { return SqlValue{Kind::kText, 0, std::move(v)}; }
  static SqlValue Bytes(std::string v) { return SqlValue{Kind::kBytes, 0, std::move(v)}; }
  bool operator==(const SqlValue& o) const { return kind == o.kind && i == o.i && s == o.s; }
};
using SqlRow = std::vector<SqlValue>;

// The bookkeeping table a restore recreates by migrating, so no snapshot
// carries it.
inline constexpr char kSchemaMigrationsTable[] = "schema_migrations";

class SqlSnapshot {
 public:
  virtual ~SqlSnapshot() = default;
  // The schema version of the snapshot.
  virtual int schema_version() const = 0;
  // Every table but schema_migrations, each after the tables its foreign keys
  // reference (so rows can be loaded in this order).
  virtual StatusOr<std::vector<std::string>> Tables() = 0;
  // Sets `columns`, then hands every row of `table` to `row`, in primary-key
  // order. A failing `row` stops the scan with its status.
  virtual Status Scan(const std::string& table, std::vector<std::string>* columns,
                      const std::function<Status(const SqlRow&)>& row) = 0;
};

class SqlLoader {
 public:
  virtual ~SqlLoader() = default;
  // Queues or inserts one row (identity / autoincrement values are kept).
  virtual Status Insert(const std::string& table, const std::vector<std::string>& columns,
                        const SqlRow& row) = 0;
  // Commits every row (and advances identity sequences past them), or nothing.
  virtual Status Commit() = 0;
};

// Orders `tables` so that every table comes after the ones it references
// (`references`: {table, referenced table} pairs; self-references and names
// outside `tables` are ignored). Ties keep alphabetical order. kInternal on a
// reference cycle.
StatusOr<std::vector<std::string>> OrderByReferences(
    std::vector<std::string> tables, const std::vector<std::pair<std::string, std::string>>& references);

// "name" quoted as an SQL identifier (both engines: double quotes, "" inside).
std::string QuoteIdentifier(const std::string& name);

// The error for a restore target that already holds data.
Status TargetNotEmptyError(const std::string& table);

}  // namespace concierge::store

#endif  // CONCIERGE_STORE_COMMON_SQL_DUMP_H_
