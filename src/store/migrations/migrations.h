// Versioned schema migrations, shared by every SQL store.
//
// A migration list is an ordered vector of {version, name, sql}: versions run
// 1, 2, 3, ... with no gaps, and a database records each applied step in a
// `schema_migrations(version, name, applied_at)` table. There is one list of
// migrations (migrations.cc), each written once with small dialect tokens, and
// rendered per engine: SqliteMigrations() and PostgresMigrations() hold the
// same versions and names, so "schema version N" means the same logical
// schema everywhere and a migration cannot be added for one engine only. The
// planning/running logic here knows nothing about a particular database: each
// store supplies a MigrationDriver that applies one step in one transaction.
//
// Released migrations are append-only: never edit one that has shipped, add a
// new version instead (databases in the field have already run the old text).
//
// Thread-safety: the lists are immutable after first use; RunMigrations is as
// thread-safe as the driver it is given.
#ifndef CONCIERGE_STORE_MIGRATIONS_MIGRATIONS_H_
#define CONCIERGE_STORE_MIGRATIONS_MIGRATIONS_H_

#include <string>
#include <string_view>
#include <vector>

#include "concierge/status.h"

namespace concierge::store {

struct Migration {
  int version;            // 1, 2, ...; position in the list is version - 1
  std::string_view name;  // stable snake_case label, recorded in schema_migrations
  std::string_view sql;   // one or more statements, no bound values
};

enum class SqlDialect { kSqlite, kPostgres };

// The list rendered for one engine. Never empty; validated by
// ValidateMigrations in tests.
const std::vector<Migration>& MigrationsFor(SqlDialect dialect);
const std::vector<Migration>& SqliteMigrations();
const std::vector<Migration>& PostgresMigrations();

// Replaces the dialect tokens ({{INT}}, {{SEQ_PK}}, {{BLOB}}; see
// migrations.cc) in a migration's SQL. Unknown tokens are left in place for
// ValidateMigrations to refuse.
std::string RenderMigrationSql(std::string_view sql_template, SqlDialect dialect);

// Checks the invariants every list must hold: versions 1..N contiguous and in
// order, non-empty unique names and non-empty SQL with no dialect token left. kInternal otherwise (a
// broken list is a programming error, but we prefer a clear refusal at startup
// to touching a database with it).
Status ValidateMigrations(const std::vector<Migration>& migrations);

// Decides which migrations take a database from `current_version` to
// `target_version` (0 = latest). Returns them in application order; empty when
// there is nothing to do. kFailedPrecondition when the database is newer than
// the list (it was written by newer code we must not touch), kInvalidArgument
// for a target outside 1..latest, and kFailedPrecondition for a target older
// than the database (we do not migrate down).
StatusOr<std::vector<const Migration*>> PlanMigrations(const std::vector<Migration>& migrations,
                                                       int current_version, int target_version);

// The database-specific half of a migration run.
class MigrationDriver {
 public:
  virtual ~MigrationDriver() = default;
  // Highest version recorded in schema_migrations (0 for an empty database).
  // Creates the bookkeeping table when missing.
  virtual StatusOr<int> CurrentVersion() = 0;
  // Applies `m` and records it in one transaction. Must re-read the version
  // inside that transaction and treat "already at or past m.version" as done,
  // so two processes migrating the same database at once are both safe.
  virtual Status Apply(const Migration& m) = 0;
};

// Validates the list, plans from the driver's current version and applies each
// step through the driver. Idempotent.
Status RunMigrations(MigrationDriver& driver, const std::vector<Migration>& migrations,
                     int target_version);

// Shared wording for the "database is newer than this build" refusal, so every
// store says it the same way.
Status SchemaTooNewError(int db_version, int latest_known);

}  // namespace concierge::store

#endif  // CONCIERGE_STORE_MIGRATIONS_MIGRATIONS_H_
