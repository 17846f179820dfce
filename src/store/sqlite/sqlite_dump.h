// SqlSnapshot and SqlLoader (store/common/sql_dump.h) on a SQLite database
// file, for `keyctl backup` / `keyctl restore`.
//
// The snapshot is one read transaction on a connection of its own: in WAL
// mode it sees the last commit before its first read and nothing later, and
// it does not block the running server's writers. The loader migrates an
// empty database to the backup's schema version, then inserts every row in
// one IMMEDIATE transaction with foreign keys enforced; explicit ledger seq
// values move the AUTOINCREMENT counter past them.
//
// Each object owns its own connection; not thread-safe.
#ifndef CONCIERGE_STORE_SQLITE_SQLITE_DUMP_H_
#define CONCIERGE_STORE_SQLITE_SQLITE_DUMP_H_

#include <memory>
#include <string>

#include "concierge/status.h"
#include "store/common/sql_dump.h"

namespace concierge::store {

// kUnavailable when the file cannot be opened; kFailedPrecondition when it has
// no schema or a newer one than this build.
StatusOr<std::unique_ptr<SqlSnapshot>> OpenSqliteSnapshot(const std::string& path);

// Creates or opens `path`, which must hold no rows (kFailedPrecondition
// otherwise), and migrates it to `schema_version`.
StatusOr<std::unique_ptr<SqlLoader>> OpenSqliteLoader(const std::string& path, int schema_version);

}  // namespace concierge::store

#endif  // CONCIERGE_STORE_SQLITE_SQLITE_DUMP_H_
