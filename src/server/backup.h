// `keyctl backup` and `keyctl restore`: local admin commands that copy the
// configured database (SQLite file or PostgreSQL, from one consistent
// snapshot; safe while the server runs) and the software keystore's encrypted
// files into one backup file, and put them back into an empty database and
// keystore (on either engine: a SQLite backup restores into PostgreSQL and
// back). Key material stays as the keystore holds it, sealed under its
// key-encryption key; that KEK (master.key or the master passphrase) is NOT
// in the backup and must be kept separately. Keys inside HSMs are not either.
//
// Thread-compatible free functions.
#ifndef CONCIERGE_SERVER_BACKUP_H_
#define CONCIERGE_SERVER_BACKUP_H_

#include <string>
#include <vector>

#include "concierge/clock.h"
#include "concierge/status.h"
#include "server/config.h"
#include "store/backup/backup_file.h"

namespace concierge::server {

struct BackupReport {
  store::BackupSummary summary;
  std::vector<std::string> notes;  // what the operator must know (one line each)
};

// Writes the backup to `out_path` (mode 0600, via a temporary file and
// rename). kAlreadyExists if `out_path` exists.
StatusOr<BackupReport> BackupToFile(const ServerConfig& config, const std::string& out_path,
                                    Clock& clock = RealClock());

// Checks the whole file first (kDataLoss when damaged, before anything is
// written), then restores into the configured database, which must be empty
// (kFailedPrecondition), and keystore directory, which must hold no keystore;
// finally migrates the database to this build's schema.
StatusOr<BackupReport> RestoreFromFile(const ServerConfig& config, const std::string& in_path);

}  // namespace concierge::server

#endif  // CONCIERGE_SERVER_BACKUP_H_
