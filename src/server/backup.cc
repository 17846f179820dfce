#include "server/backup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "store/migrations/migrations.h"
#include "store/postgres/postgres_dump.h"
#include "store/postgres/postgres_store.h"
#include "store/sqlite/sqlite_dump.h"
#include "store/sqlite/sqlite_store.h"

namespace concierge::server {
namespace {

namespace fs = std::filesystem;

constexpr char kKeystorePrefix[] = "keystore/";

std::string Engine(const ServerConfig& c) { return c.database_url ? "postgresql" : "sqlite"; }

std::string Url(const ServerConfig& c) { return std::string(c.database_url->RevealString(SecretAccess::Grant())); }

StatusOr<std::string> ReadFileBytes(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return UnavailableError("cannot read " + path.string());
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// keystore.json and keys/*, never master.key (see backup.h).
StatusOr<std::vector<store::BackupFile>> KeystoreFiles(const std::string& dir) {
  std::vector<store::BackupFile> out;
  std::error_code ec;
  if (!fs::exists(fs::path(dir) / "keystore.json", ec)) return out;
  ASSIGN_OR_RETURN(std::string meta, ReadFileBytes(fs::path(dir) / "keystore.json"));
  out.push_back({std::string(kKeystorePrefix) + "keystore.json", std::move(meta)});
  std::vector<fs::path> keys;
  for (const auto& e : fs::directory_iterator(fs::path(dir) / "keys", ec)) {
    if (e.is_regular_file() && e.path().extension() == ".key") keys.push_back(e.path());
  }
  std::sort(keys.begin(), keys.end());
  for (const fs::path& k : keys) {
    ASSIGN_OR_RETURN(std::string content, ReadFileBytes(k));
    out.push_back({std::string(kKeystorePrefix) + "keys/" + k.filename().string(), std::move(content)});
  }
  return out;
}

// What protects the keys in the backup, for the operator.
std::string KekNote(const ServerConfig& c, const std::vector<store::BackupFile>& files) {
  for (const store::BackupFile& f : files) {
    if (f.path != std::string(kKeystorePrefix) + "keystore.json") continue;
    nlohmann::json meta = nlohmann::json::parse(f.content, nullptr, false);
    const std::string source = meta.is_object() ? meta.value("kek_source", "") : "";
    if (source == "passphrase") {
      return "software keys are sealed under the master passphrase, which is not in the backup: "
             "restoring needs KEYCTL_MASTER_PASSPHRASE";
    }
    const std::string kek = c.master_key_file.empty() ? c.keystore_dir + "/master.key" : c.master_key_file;
    return "software keys are sealed under the key-encryption key " + kek +
           ", which is not in the backup: keep a copy of it apart from the backup; restoring needs it";
  }
  return "no software keystore in " + c.keystore_dir + ": the backup holds the database only";
}

Status WriteNewFile(const fs::path& path, const std::string& content) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return UnavailableError("cannot create " + path.string() + ": " + std::strerror(errno));
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return UnavailableError("cannot write " + path.string() + ": " + std::strerror(errno));
    }
    off += static_cast<size_t>(n);
  }
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) return UnavailableError("cannot write " + path.string() + ": " + std::strerror(errno));
  return Status::Ok();
}

// Puts the backed-up keystore in place: written to a sibling directory first,
// then renamed over the (missing or empty) keystore directory.
Status RestoreKeystore(const std::string& keystore_dir, const std::vector<store::BackupFile>& files) {
  if (files.empty()) return Status::Ok();
  const fs::path target(keystore_dir);
  const fs::path staging = target.string() + ".restoring";
  std::error_code ec;
  fs::remove_all(staging, ec);
  for (const store::BackupFile& f : files) {
    if (f.path.rfind(kKeystorePrefix, 0) != 0) return DataLossError("unexpected file in backup: " + f.path);
    const fs::path dest = staging / f.path.substr(sizeof(kKeystorePrefix) - 1);
    fs::create_directories(dest.parent_path(), ec);
    if (ec) return UnavailableError("cannot create " + dest.parent_path().string() + ": " + ec.message());
    RETURN_IF_ERROR(WriteNewFile(dest, f.content));
  }
  for (auto it = fs::recursive_directory_iterator(staging, ec); it != fs::recursive_directory_iterator(); ++it) {
    if (it->is_directory()) ::chmod(it->path().c_str(), 0700);
  }
  ::chmod(staging.c_str(), 0700);
  fs::create_directories(target.parent_path(), ec);
  fs::rename(staging, target, ec);  // replaces an empty directory
  if (ec) return UnavailableError("cannot move the restored keystore to " + keystore_dir + ": " + ec.message());
  return Status::Ok();
}

// The keystore directory must not hold a keystore: a restore never mixes keys.
Status RequireNoKeystore(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return Status::Ok();
  if (fs::exists(fs::path(dir) / "keystore.json", ec) || !fs::is_empty(dir, ec)) {
    return FailedPreconditionError("the keystore directory " + dir +
                                   " is not empty; restore into a fresh data directory");
  }
  return Status::Ok();
}

}  // namespace

StatusOr<BackupReport> BackupToFile(const ServerConfig& config_in, const std::string& out_path, Clock& clock) {
  ServerConfig config = config_in.Clone();
  config.ResolvePaths();
  std::error_code ec;
  if (fs::exists(out_path, ec)) return AlreadyExistsError(out_path + " exists; choose another file name");
  if (!config.database_url && !fs::exists(config.database_path, ec)) {
    return FailedPreconditionError("no database at " + config.database_path + " (wrong --data-dir?)");
  }
  // The database snapshot first, then the keystore: every key the snapshot
  // names was written to the keystore before its row was committed.
  ASSIGN_OR_RETURN(std::unique_ptr<store::SqlSnapshot> snapshot,
                   config.database_url ? store::OpenPostgresSnapshot(Url(config))
                                       : store::OpenSqliteSnapshot(config.database_path));
  ASSIGN_OR_RETURN(std::vector<store::BackupFile> files, KeystoreFiles(config.keystore_dir));

  const std::string tmp = out_path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return UnavailableError("cannot create " + tmp + ": " + std::strerror(errno));
  ::close(fd);
  StatusOr<store::BackupSummary> summary = [&]() -> StatusOr<store::BackupSummary> {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return UnavailableError("cannot write " + tmp);
    return store::WriteBackup(*snapshot, Engine(config), files, clock.Now(), out);
  }();
  if (summary.ok()) {
    // Durable before it replaces anything.
    fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
    const bool synced = fd >= 0 && ::fsync(fd) == 0;
    if (fd >= 0) ::close(fd);
    if (!synced || ::rename(tmp.c_str(), out_path.c_str()) != 0) {
      summary = UnavailableError("cannot write " + out_path + ": " + std::strerror(errno));
    }
  }
  if (!summary.ok()) {
    fs::remove(tmp, ec);
    return summary.status();
  }
  BackupReport report{*std::move(summary), {}};
  report.notes.push_back(KekNote(config, files));
  report.notes.push_back("keys inside HSMs (PKCS#11) stay in the HSM and are not in the backup");
  return report;
}

StatusOr<BackupReport> RestoreFromFile(const ServerConfig& config_in, const std::string& in_path) {
  ServerConfig config = config_in.Clone();
  config.ResolvePaths();
  const int latest = static_cast<int>(store::SqliteMigrations().size());
  {
    std::ifstream in(in_path, std::ios::binary);
    if (!in) return InvalidArgumentError("cannot read backup file " + in_path);
    StatusOr<store::BackupSummary> checked = store::VerifyBackup(in, latest);
    if (!checked.ok()) return checked.status().Annotate(in_path);
  }
  RETURN_IF_ERROR(RequireNoKeystore(config.keystore_dir));
  if (!config.database_url) {
    std::error_code ec;
    fs::create_directories(config.data_dir, ec);
    if (ec) return UnavailableError("cannot create " + config.data_dir + ": " + ec.message());
    ::chmod(config.data_dir.c_str(), 0700);
  }
  std::ifstream in(in_path, std::ios::binary);
  if (!in) return InvalidArgumentError("cannot read backup file " + in_path);
  bool had_keystore = false;
  ASSIGN_OR_RETURN(
      store::BackupSummary summary,
      store::RestoreBackup(
          in,
          [&](int version) {
            return config.database_url ? store::OpenPostgresLoader(Url(config), version)
                                       : store::OpenSqliteLoader(config.database_path, version);
          },
          [&](const std::vector<store::BackupFile>& files) {
            had_keystore = !files.empty();
            return RestoreKeystore(config.keystore_dir, files);
          }));
  // A backup from an older build: bring the schema up to this one.
  if (config.database_url) {
    ASSIGN_OR_RETURN(auto store, store::PostgresStore::Open(Url(config)));
    RETURN_IF_ERROR(store->Migrate());
  } else {
    ASSIGN_OR_RETURN(auto store, store::SqliteStore::Open(config.database_path));
    RETURN_IF_ERROR(store->Migrate());
  }
  BackupReport report{std::move(summary), {}};
  if (had_keystore) {
    const std::string kek = config.master_key_file.empty() ? config.keystore_dir + "/master.key" : config.master_key_file;
    report.notes.push_back("before keyctl serve: put the keystore's key-encryption key at " + kek +
                           " (mode 0600), or set KEYCTL_MASTER_PASSPHRASE if the keystore uses a passphrase");
  }
  report.notes.push_back("API tokens from the backup work again; no new bootstrap token is created");
  return report;
}

}  // namespace concierge::server
