// The `keyctl backup` file: an engine-neutral, line-oriented dump of every
// table of a store's database (from one consistent SqlSnapshot) plus files
// that belong with it (the software keystore's encrypted key envelopes),
// restorable into either engine (SQLite -> PostgreSQL and back).
//
// Format (one JSON object per line, UTF-8):
//   {"format":"c2-concierge-backup","version":1,"engine":"sqlite","schema_version":4,
//    "created_at":"...Z"}
//   {"table":"tenants","columns":["tenant_id",...]}     then its rows:
//   {"row":["acme",1,0,...]}        values: null, integer, "text", {"b64":"..."} (bytes)
//   {"file":"keystore/keys/x.key","b64":"..."}
//   {"end":{"rows":{"tenants":3,...},"files":2,"sha256":"<hex of every byte before this line>"}}
// Tables come in foreign-key order, so a restore inserts them as they come.
// Nothing is decrypted: key files are copied as the keystore holds them.
//
// Stateless functions; thread-safe as far as their arguments are.
#ifndef CONCIERGE_STORE_BACKUP_BACKUP_FILE_H_
#define CONCIERGE_STORE_BACKUP_BACKUP_FILE_H_

#include <cstdint>
#include <functional>
#include <istream>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "concierge/clock.h"
#include "concierge/status.h"
#include "store/common/sql_dump.h"

namespace concierge::store {

struct BackupFile {
  std::string path;     // relative, '/'-separated, e.g. "keystore/keys/acme.key"
  std::string content;  // bytes as on disk
};

struct BackupSummary {
  std::string engine;  // engine the backup was taken from
  int schema_version = 0;
  std::map<std::string, int64_t> rows;  // per table
  int64_t files = 0;
};

// Writes a complete backup of `snapshot` and `files` to `out`.
StatusOr<BackupSummary> WriteBackup(SqlSnapshot& snapshot, std::string_view engine,
                                    const std::vector<BackupFile>& files, TimePoint created_at,
                                    std::ostream& out);

// Reads a whole backup and checks it (format, every line, counts, checksum)
// without applying anything. kDataLoss for a damaged or truncated file,
// kFailedPrecondition for a schema newer than `latest_schema_version`.
StatusOr<BackupSummary> VerifyBackup(std::istream& in, int latest_schema_version);

// Replays a backup (verify it first: this stops at the first bad line, after
// rows may have been handed to the loader, which then rolls back). Calls
// `open_loader` with the backup's schema version, inserts every row, commits,
// and only then hands the files to `file_sink`.
StatusOr<BackupSummary> RestoreBackup(
    std::istream& in, const std::function<StatusOr<std::unique_ptr<SqlLoader>>(int schema_version)>& open_loader,
    const std::function<Status(const std::vector<BackupFile>&)>& file_sink);

// Whether a file path from a backup is safe to create under a directory:
// relative, no "..", no empty or "." parts.
bool SafeBackupPath(std::string_view path);

}  // namespace concierge::store

#endif  // CONCIERGE_STORE_BACKUP_BACKUP_FILE_H_
