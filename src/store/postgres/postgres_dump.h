// SqlSnapshot and SqlLoader (store/common/sql_dump.h) on PostgreSQL, for
// `keyctl backup` / `keyctl restore`. Tables are those of the connection's
// current schema (the first of its search_path).
//
// The snapshot is one REPEATABLE READ READ ONLY transaction on a connection of
// its own (it does not block the running service), and reads big tables
// through a cursor, a few thousand rows at a time. The loader migrates an
// empty database to the backup's schema version, then inserts every row in one
// transaction (multi-row INSERTs, identity values kept with OVERRIDING SYSTEM
// VALUE) holding the store write and ledger append locks, and moves identity
// sequences past the restored values before it commits.
//
// Each object owns its own connection; not thread-safe.
#ifndef CONCIERGE_STORE_POSTGRES_POSTGRES_DUMP_H_
#define CONCIERGE_STORE_POSTGRES_POSTGRES_DUMP_H_

#include <memory>
#include <string_view>

#include "concierge/status.h"
#include "store/common/sql_dump.h"

namespace concierge::store {

// kUnavailable when the database cannot be reached; kFailedPrecondition when
// it has no schema or a newer one than this build.
StatusOr<std::unique_ptr<SqlSnapshot>> OpenPostgresSnapshot(std::string_view url);

// The database must hold no rows (kFailedPrecondition otherwise); it is
// migrated to `schema_version` first.
StatusOr<std::unique_ptr<SqlLoader>> OpenPostgresLoader(std::string_view url, int schema_version);

}  // namespace concierge::store

#endif  // CONCIERGE_STORE_POSTGRES_POSTGRES_DUMP_H_
