#include "store/sqlite/sqlite_store.h"

#include <algorithm>
#include <array>
#include <string_view>
#include <utility>

#include "store/common/sql_records.h"
#include "store/migrations/migrations.h"
#include "store/sqlite/sqlite_store_internal.h"

namespace concierge::store::sqlite_internal {

StatusOr<TenantState> LoadTenantState(sqlite3* db, const std::string& tenant_id) {
  ASSIGN_OR_RETURN(Statement s,
                   Statement::Prepare(db,
                                      "SELECT deleted, active_policy_version FROM tenants "
                                      "WHERE tenant_id = ?1",
                                      "reading tenant"));
  s.Bind(1, tenant_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  TenantState t;
  if (row) {
    t.exists = true;
    t.deleted = s.ColumnInt(0) != 0;
    t.active_policy_version = s.ColumnInt(1);
  }
  return t;
}

Status RequireNoOtherActiveKey(sqlite3* db, const std::string& tenant_id,
                               const std::string& except_key_id) {
  ASSIGN_OR_RETURN(Statement s,
                   Statement::Prepare(db,
                                      "SELECT key_id FROM keys WHERE tenant_id = ?1 AND "
                                      "state = 'active' AND key_id <> ?2",
                                      "checking for an active key"));
  s.Bind(1, tenant_id).Bind(2, except_key_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (row) {
    return OtherKeyActive(tenant_id, s.ColumnText(0));
  }
  return Status::Ok();
}

Status RequireTenantExists(sqlite3* db, const std::string& tenant_id) {
  ASSIGN_OR_RETURN(TenantState t, LoadTenantState(db, tenant_id));
  if (!t.exists) return TenantNotFound(tenant_id);
  return Status::Ok();
}

Status ChangeKeyState(sqlite3* db, const std::string& key_id, const std::string& expected_state,
                      const std::string& new_state, TimePoint at, const std::string& required_tenant) {
  std::string tenant_id;
  {
    ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                     "SELECT state, tenant_id FROM keys "
                                                     "WHERE key_id = ?1",
                                                     "reading key state"));
    s.Bind(1, key_id);
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return KeyNotFound(key_id);
    tenant_id = s.ColumnText(1);
    if (!required_tenant.empty() && tenant_id != required_tenant) {
      return KeyOfOtherTenant(key_id, required_tenant);
    }
    const std::string current = s.ColumnText(0);
    if (current != expected_state) return KeyChangedConcurrently(key_id, current, expected_state);
  }
  if (new_state == "active") {
    ASSIGN_OR_RETURN(TenantState t, LoadTenantState(db, tenant_id));
    if (t.deleted) return CannotActivateInDeletedTenant(key_id, tenant_id);
    RETURN_IF_ERROR(RequireNoOtherActiveKey(db, tenant_id, key_id));
  }
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                   "UPDATE keys SET state = ?2, "
                                                   "activated_at = COALESCE(activated_at, ?3), "
                                                   "retired_at = COALESCE(retired_at, ?4) "
                                                   "WHERE key_id = ?1",
                                                   "updating key state"));
  s.Bind(1, key_id).Bind(2, new_state);
  s.BindOptionalTime(3, ActivatedStamp(new_state, at));
  s.BindOptionalTime(4, RetiredStamp(new_state, at));
  return s.Run();
}

Status SupersedeActiveCertificateRow(sqlite3* db, const std::string& key_id) {
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                   "UPDATE certificates SET status = 'superseded' "
                                                   "WHERE key_id = ?1 AND status = 'active'",
                                                   "superseding certificate"));
  s.Bind(1, key_id);
  return s.Run();
}

}  // namespace concierge::store::sqlite_internal

namespace concierge::store {

using sqlite_internal::ChangeKeyState;
using sqlite_internal::LoadTenantState;
using sqlite_internal::ReadAllRows;
using sqlite_internal::RequireNoOtherActiveKey;
using sqlite_internal::RequireTenantExists;
using sqlite_internal::SupersedeActiveCertificateRow;

namespace {

StatusOr<int64_t> MaxPolicyVersion(sqlite3* db, const std::string& tenant_id) {
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                   "SELECT COALESCE(MAX(version), 0) FROM "
                                                   "policies WHERE tenant_id = ?1",
                                                   "reading latest policy version"));
  s.Bind(1, tenant_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  return row ? s.ColumnInt(0) : 0;
}

Status RequireNewPolicyVersion(sqlite3* db, const PolicyRecord& policy) {
  ASSIGN_OR_RETURN(int64_t max_version, MaxPolicyVersion(db, policy.tenant_id));
  if (policy.version <= max_version) {
    return PolicyVersionNotAbove(policy.version, max_version);
  }
  return Status::Ok();
}

Status InsertPolicyRow(sqlite3* db, const PolicyRecord& p) {
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                   Sql("INSERT INTO policies (", kPolicyColumns,
                                                       ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                                                   "inserting policy version"));
  s.Bind(1, p.tenant_id).Bind(2, p.version).Bind(3, p.body_json).Bind(4, p.policy_hash);
  s.Bind(5, p.created_by).BindTime(6, p.created_at);
  return s.Run();
}

Status InsertKeyRow(sqlite3* db, const KeyRecord& k) {
  if (k.state == "active") RETURN_IF_ERROR(RequireNoOtherActiveKey(db, k.tenant_id, k.key_id));
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                   Sql("INSERT INTO keys (", kKeyColumns,
                                                       ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
                                                       "?8, ?9, ?10, ?11, ?12, ?13)"),
                                                   "inserting key"));
  s.Bind(1, k.key_id).Bind(2, k.tenant_id).Bind(3, k.version).Bind(4, k.algorithm);
  s.Bind(5, k.provider).Bind(6, k.key_uri).Bind(7, k.state).Bind(8, k.public_key_pem);
  s.Bind(9, k.fingerprint).Bind(10, k.attestation).BindTime(11, k.created_at);
  s.BindOptionalTime(12, k.activated_at).BindOptionalTime(13, k.retired_at);
  return s.Run();
}

// Applies one migration on a SQLite connection. Each step is its own
// BEGIN IMMEDIATE transaction: DDL is transactional in SQLite, so a failed
// step leaves the previous version intact.
class SqliteMigrationDriver : public MigrationDriver {
 public:
  SqliteMigrationDriver(sqlite3* db, Clock& clock) : db_(db), clock_(clock) {}

  StatusOr<int> CurrentVersion() override {
    RETURN_IF_ERROR(ExecSql(db_,
                            "CREATE TABLE IF NOT EXISTS schema_migrations ("
                            "version INTEGER NOT NULL PRIMARY KEY, "
                            "name TEXT NOT NULL, "
                            "applied_at INTEGER NOT NULL)",
                            "creating schema_migrations"));
    return ReadVersion();
  }

  Status Apply(const Migration& m) override {
    ASSIGN_OR_RETURN(Transaction tx,
                     Transaction::Begin(db_, Transaction::Mode::kImmediate, "migrating"));
    ASSIGN_OR_RETURN(int current, ReadVersion());
    if (current >= m.version) return Status::Ok();  // another process got here first
    if (current != m.version - 1) {
      return AbortedError("schema moved to version " + std::to_string(current) +
                          " while migrating; retry");
    }
    RETURN_IF_ERROR(ExecSql(db_, std::string(m.sql), "running migration SQL"));
    ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_,
                                                     "INSERT INTO schema_migrations (version, "
                                                     "name, applied_at) VALUES (?1, ?2, ?3)",
                                                     "recording migration"));
    s.Bind(1, static_cast<int64_t>(m.version)).Bind(2, m.name).BindTime(3, clock_.Now());
    RETURN_IF_ERROR(s.Run());
    return tx.Commit();
  }

 private:
  StatusOr<int> ReadVersion() {
    ASSIGN_OR_RETURN(
        Statement s,
        Statement::Prepare(db_, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                           "reading schema version"));
    ASSIGN_OR_RETURN(bool row, s.Step());
    return row ? static_cast<int>(s.ColumnInt(0)) : 0;
  }

  sqlite3* db_;
  Clock& clock_;
};

// Per-connection settings. journal_mode is persistent in the file, but setting
// it on every open is cheap and also catches a non-database file early.
Status ConfigureConnection(sqlite3* db, std::chrono::milliseconds busy_timeout,
                           bool request_connection, bool in_memory) {
  const int rc = SetBusyTimeout(db, busy_timeout);
  if (rc != SQLITE_OK) return SqliteStatus(db, rc, "setting busy timeout");
  if (!in_memory) {
    RETURN_IF_ERROR(EnableWal(db));
  }
  RETURN_IF_ERROR(ExecSql(db, "PRAGMA synchronous = FULL", "setting synchronous=FULL"));
  RETURN_IF_ERROR(ExecSql(db, "PRAGMA foreign_keys = ON", "enabling foreign keys"));
  if (request_connection) {
    // See the class comment: checkpoints are the background task's job.
    RETURN_IF_ERROR(
        ExecSql(db, "PRAGMA wal_autocheckpoint = 0", "disabling automatic checkpoints"));
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(const std::string& path,
                                                         SqliteOptions opts) {
  const bool in_memory = path.empty() || path == ":memory:";
  const std::string context = "opening database " + (in_memory ? std::string(":memory:") : path);
  auto annotate = [&](const Status& s) { return s.Annotate(context); };

  StatusOr<SqliteDb> db = OpenSqliteDb(in_memory ? ":memory:" : path, "open");
  if (!db.ok()) return annotate(db.status());
  if (Status s = ConfigureConnection(db->get(), opts.busy_timeout, true, in_memory); !s.ok()) {
    return annotate(s);
  }

  SqliteDb checkpoint_db;
  if (!in_memory) {
    StatusOr<SqliteDb> cdb = OpenSqliteDb(path, "open checkpoint connection");
    if (!cdb.ok()) return annotate(cdb.status());
    if (Status s = ConfigureConnection(cdb->get(), opts.busy_timeout, false, false); !s.ok()) {
      return annotate(s);
    }
    checkpoint_db = std::move(cdb).value();
  }

  auto store = std::make_unique<SqliteStore>(PrivateTag(), std::move(db).value(),
                                             std::move(checkpoint_db), opts);
  {
    std::lock_guard<std::mutex> lock(store->mu_);
    StatusOr<int> version = store->ReadSchemaVersionLocked();
    if (!version.ok()) return annotate(version.status());
    const int latest = store->LatestSchemaVersion();
    if (*version > latest) return annotate(SchemaTooNewError(*version, latest));
    store->schema_version_ = *version;
  }
  return store;
}

SqliteStore::SqliteStore(PrivateTag, SqliteDb db, SqliteDb checkpoint_db, SqliteOptions opts)
    : db_(std::move(db)), checkpoint_db_(std::move(checkpoint_db)), opts_(opts) {}

Status SqliteStore::Checkpoint(CheckpointMode mode) {
  std::lock_guard<std::mutex> lock(checkpoint_mu_);
  if (checkpoint_db_ == nullptr) return Status::Ok();  // :memory: has no WAL
  const int sqlite_mode =
      mode == CheckpointMode::kPassive ? SQLITE_CHECKPOINT_PASSIVE : SQLITE_CHECKPOINT_TRUNCATE;
  const int rc =
      sqlite3_wal_checkpoint_v2(checkpoint_db_.get(), nullptr, sqlite_mode, nullptr, nullptr);
  // A passive checkpoint that could not copy everything (readers still using
  // old frames) is normal and reported as OK; the next run continues. So is
  // SQLITE_BUSY in passive mode: it means another connection (another process
  // sharing the file) is checkpointing right now, which is the work we wanted.
  if (mode == CheckpointMode::kPassive && (rc & 0xff) == SQLITE_BUSY) return Status::Ok();
  if (rc != SQLITE_OK) return SqliteStatus(checkpoint_db_.get(), rc, "checkpointing WAL");
  return Status::Ok();
}

// --- migrations -------------------------------------------------------------

int SqliteStore::LatestSchemaVersion() const { return static_cast<int>(SqliteMigrations().size()); }

StatusOr<int> SqliteStore::ReadSchemaVersionLocked() {
  // Must not create anything: Open() and SchemaVersion() are read-only, and a
  // garbage file has to fail here with NOTADB rather than later.
  ASSIGN_OR_RETURN(Statement exists,
                   Statement::Prepare(db_.get(),
                                      "SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                      "name = 'schema_migrations'",
                                      "reading schema version"));
  ASSIGN_OR_RETURN(bool has_table, exists.Step());
  if (!has_table) return 0;
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   "SELECT COALESCE(MAX(version), 0) FROM "
                                                   "schema_migrations",
                                                   "reading schema version"));
  ASSIGN_OR_RETURN(bool row, s.Step());
  return row ? static_cast<int>(s.ColumnInt(0)) : 0;
}

Status SqliteStore::RequireCurrentSchemaLocked() {
  const int latest = LatestSchemaVersion();
  if (schema_version_ == latest) return Status::Ok();
  ASSIGN_OR_RETURN(schema_version_, ReadSchemaVersionLocked());
  if (schema_version_ == latest) return Status::Ok();
  if (schema_version_ > latest) return SchemaTooNewError(schema_version_, latest);
  return SchemaBehindError(schema_version_, latest, "this build");
}

Status SqliteStore::Migrate(int target_version) {
  std::lock_guard<std::mutex> lock(mu_);
  SqliteMigrationDriver driver(db_.get(), opts_.clock != nullptr ? *opts_.clock : RealClock());
  Status s = RunMigrations(driver, SqliteMigrations(), target_version);
  // Refresh the cache either way: a partial run still moved the version.
  StatusOr<int> version = ReadSchemaVersionLocked();
  if (version.ok()) schema_version_ = *version;
  return s;
}

StatusOr<int> SqliteStore::SchemaVersion() {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(schema_version_, ReadSchemaVersionLocked());
  return schema_version_;
}

Status SqliteStore::Ping() {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(), "SELECT 1", "ping"));
  return s.Step().status();
}

// --- tenants and policies ------------------------------------------------------

Status SqliteStore::CreateTenant(const PolicyRecord& policy, const KeyRecord& key) {
  RETURN_IF_ERROR(ValidateNewTenant(policy, key));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx,
                   Transaction::Begin(db, Transaction::Mode::kImmediate, "creating tenant"));
  ASSIGN_OR_RETURN(TenantState t, LoadTenantState(db, policy.tenant_id));
  if (t.exists && !t.deleted) {
    return AlreadyExistsError("tenant " + policy.tenant_id + " already exists");
  }
  if (t.exists) {
    // Re-creating a deleted tenant: its policy history stays and continues.
    RETURN_IF_ERROR(RequireNewPolicyVersion(db, policy));
    ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                     "UPDATE tenants SET deleted = 0, "
                                                     "active_policy_version = ?2, "
                                                     "created_at = ?3, updated_at = ?3 "
                                                     "WHERE tenant_id = ?1",
                                                     "re-creating tenant"));
    s.Bind(1, policy.tenant_id).Bind(2, policy.version).BindTime(3, policy.created_at);
    RETURN_IF_ERROR(s.Run());
  } else {
    ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                     Sql("INSERT INTO tenants (", kTenantColumns,
                                                         ") VALUES (?1, ?2, 0, ?3, ?3)"),
                                                     "inserting tenant"));
    s.Bind(1, policy.tenant_id).Bind(2, policy.version).BindTime(3, policy.created_at);
    RETURN_IF_ERROR(s.Run());
  }
  RETURN_IF_ERROR(InsertPolicyRow(db, policy));
  RETURN_IF_ERROR(InsertKeyRow(db, key));
  return tx.Commit();
}

StatusOr<TenantRecord> SqliteStore::GetTenant(const std::string& tenant_id) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   Sql("SELECT ", kTenantColumns,
                                                       " FROM tenants WHERE tenant_id = ?1"),
                                                   "reading tenant"));
  s.Bind(1, tenant_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return TenantNotFound(tenant_id);
  return ReadTenant(s);
}

StatusOr<std::vector<TenantRecord>> SqliteStore::ListTenants(bool include_deleted) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   Sql("SELECT ", kTenantColumns,
                                                       " FROM tenants WHERE ?1 OR deleted = 0 "
                                                       "ORDER BY tenant_id"),
                                                   "listing tenants"));
  s.Bind(1, static_cast<int64_t>(include_deleted ? 1 : 0));
  return ReadAllRows<TenantRecord>(s, ReadTenant<Statement>);
}

Status SqliteStore::AddPolicyVersion(const PolicyRecord& policy, int64_t expected_active_version) {
  RETURN_IF_ERROR(ValidatePolicy(policy));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx,
                   Transaction::Begin(db, Transaction::Mode::kImmediate, "adding policy version"));
  ASSIGN_OR_RETURN(TenantState t, LoadTenantState(db, policy.tenant_id));
  if (!t.exists || t.deleted) return TenantNotFoundOrDeleted(policy.tenant_id);
  if (t.active_policy_version != expected_active_version) {
    return PolicyChangedConcurrently(policy.tenant_id, t.active_policy_version,
                                     expected_active_version);
  }
  RETURN_IF_ERROR(RequireNewPolicyVersion(db, policy));
  RETURN_IF_ERROR(InsertPolicyRow(db, policy));
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                   "UPDATE tenants SET active_policy_version = "
                                                   "?2, updated_at = ?3 WHERE tenant_id = ?1",
                                                   "activating policy version"));
  s.Bind(1, policy.tenant_id).Bind(2, policy.version).BindTime(3, policy.created_at);
  RETURN_IF_ERROR(s.Run());
  return tx.Commit();
}

StatusOr<PolicyRecord> SqliteStore::GetActivePolicy(const std::string& tenant_id) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   "SELECT p.tenant_id, p.version, p.body_json, "
                                                   "p.policy_hash, p.created_by, p.created_at "
                                                   "FROM tenants t JOIN policies p "
                                                   "ON p.tenant_id = t.tenant_id "
                                                   "AND p.version = t.active_policy_version "
                                                   "WHERE t.tenant_id = ?1 AND t.deleted = 0",
                                                   "reading active policy"));
  s.Bind(1, tenant_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return NoActivePolicy(tenant_id);
  return ReadPolicy(s);
}

StatusOr<PolicyRecord> SqliteStore::GetPolicyVersion(const std::string& tenant_id,
                                                     int64_t version) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s,
                   Statement::Prepare(db_.get(),
                                      Sql("SELECT ", kPolicyColumns,
                                          " FROM policies WHERE tenant_id = ?1 AND version = ?2"),
                                      "reading policy version"));
  s.Bind(1, tenant_id).Bind(2, version);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return PolicyVersionNotFound(tenant_id, version);
  return ReadPolicy(s);
}

StatusOr<std::vector<PolicyRecord>> SqliteStore::ListPolicyVersions(const std::string& tenant_id) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  // A read transaction so the existence check and the listing see one snapshot.
  ASSIGN_OR_RETURN(Transaction tx,
                   Transaction::Begin(db, Transaction::Mode::kDeferred, "listing policy versions"));
  RETURN_IF_ERROR(RequireTenantExists(db, tenant_id));
  ASSIGN_OR_RETURN(Statement s,
                   Statement::Prepare(db,
                                      Sql("SELECT ", kPolicyColumns,
                                          " FROM policies WHERE tenant_id = ?1 ORDER BY version"),
                                      "listing policy versions"));
  s.Bind(1, tenant_id);
  ASSIGN_OR_RETURN(std::vector<PolicyRecord> out, ReadAllRows<PolicyRecord>(s, ReadPolicy<Statement>));
  RETURN_IF_ERROR(tx.Commit());
  return out;
}

Status SqliteStore::DeleteTenant(const std::string& tenant_id, TimePoint at,
                                 const std::string& new_key_state) {
  RETURN_IF_ERROR(ValidateRetirementState(new_key_state));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx,
                   Transaction::Begin(db, Transaction::Mode::kImmediate, "deleting tenant"));
  ASSIGN_OR_RETURN(TenantState t, LoadTenantState(db, tenant_id));
  if (!t.exists || t.deleted) return TenantNotFoundOrDeleted(tenant_id);
  {
    ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                     "UPDATE tenants SET deleted = 1, "
                                                     "active_policy_version = 0, updated_at = ?2 "
                                                     "WHERE tenant_id = ?1",
                                                     "marking tenant deleted"));
    s.Bind(1, tenant_id).BindTime(2, at);
    RETURN_IF_ERROR(s.Run());
  }
  {
    ASSIGN_OR_RETURN(Statement s,
                     Statement::Prepare(db,
                                        "UPDATE keys SET state = ?2, "
                                        "retired_at = COALESCE(retired_at, ?3) "
                                        "WHERE tenant_id = ?1 "
                                        "AND state IN ('pending', 'standby', 'active', 'retiring')",
                                        "moving keys of deleted tenant"));
    s.Bind(1, tenant_id).Bind(2, new_key_state);
    s.BindOptionalTime(3, RetiredStamp(new_key_state, at));
    RETURN_IF_ERROR(s.Run());
  }
  return tx.Commit();
}

// --- keys ---------------------------------------------------------------------

Status SqliteStore::InsertKey(const KeyRecord& key) {
  RETURN_IF_ERROR(ValidateKey(key));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx,
                   Transaction::Begin(db, Transaction::Mode::kImmediate, "inserting key"));
  ASSIGN_OR_RETURN(TenantState t, LoadTenantState(db, key.tenant_id));
  if (!t.exists || t.deleted) return TenantNotFoundOrDeleted(key.tenant_id);
  RETURN_IF_ERROR(InsertKeyRow(db, key));
  return tx.Commit();
}

StatusOr<KeyRecord> SqliteStore::GetKey(const std::string& key_id) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(
      Statement s,
      Statement::Prepare(db_.get(), Sql("SELECT ", kKeyColumns, " FROM keys WHERE key_id = ?1"),
                         "reading key"));
  s.Bind(1, key_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return KeyNotFound(key_id);
  return ReadKey(s);
}

StatusOr<std::vector<KeyRecord>> SqliteStore::ListKeys(const std::string& tenant_id) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx,
                   Transaction::Begin(db, Transaction::Mode::kDeferred, "listing keys"));
  RETURN_IF_ERROR(RequireTenantExists(db, tenant_id));
  ASSIGN_OR_RETURN(
      Statement s,
      Statement::Prepare(
          db, Sql("SELECT ", kKeyColumns, " FROM keys WHERE tenant_id = ?1 ORDER BY version"),
          "listing keys"));
  s.Bind(1, tenant_id);
  ASSIGN_OR_RETURN(std::vector<KeyRecord> out, ReadAllRows<KeyRecord>(s, ReadKey<Statement>));
  RETURN_IF_ERROR(tx.Commit());
  return out;
}

StatusOr<KeyRecord> SqliteStore::GetActiveKey(const std::string& tenant_id) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s,
                   Statement::Prepare(db_.get(),
                                      Sql("SELECT ", kKeyColumns,
                                          " FROM keys WHERE tenant_id = ?1 AND state = 'active'"),
                                      "reading active key"));
  s.Bind(1, tenant_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return NoActiveKey(tenant_id);
  return ReadKey(s);
}

Status SqliteStore::UpdateKeyState(const std::string& key_id, const std::string& expected_state,
                                   const std::string& new_state, TimePoint at) {
  RETURN_IF_ERROR(ValidateKeyState("expected_state", expected_state));
  RETURN_IF_ERROR(ValidateKeyState("new_state", new_state));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx,
                   Transaction::Begin(db, Transaction::Mode::kImmediate, "updating key state"));
  RETURN_IF_ERROR(ChangeKeyState(db, key_id, expected_state, new_state, at, /*required_tenant=*/""));
  return tx.Commit();
}

StatusOr<int64_t> SqliteStore::NextKeyVersion(const std::string& tenant_id) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   "SELECT COALESCE(MAX(version), 0) + 1 "
                                                   "FROM keys WHERE tenant_id = ?1",
                                                   "computing next key version"));
  s.Bind(1, tenant_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  return row ? s.ColumnInt(0) : int64_t{1};
}

// --- certificates and the built-in CA ----------------------------------------------

Status SqliteStore::InsertCa(const CaRecord& ca) {
  RETURN_IF_ERROR(ValidateCa(ca));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   "INSERT INTO ca (id, provider, key_uri, algorithm, "
                                                   "cert_pem, crl_number, created_at) "
                                                   "VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
                                                   "inserting CA"));
  s.Bind(1, ca.provider).Bind(2, ca.key_uri).Bind(3, ca.algorithm).Bind(4, ca.cert_pem);
  s.Bind(5, ca.crl_number).BindTime(6, ca.created_at);
  Status st = s.Run();
  if (st.code() == StatusCode::kAlreadyExists) return CaAlreadyInitialised();
  return st;
}

StatusOr<CaRecord> SqliteStore::GetCa() {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   Sql("SELECT ", kCaColumns, " FROM ca WHERE id = 1"),
                                                   "reading CA"));
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return CaNotInitialised();
  return ReadCa(s);
}

StatusOr<int64_t> SqliteStore::NextCrlNumber() {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(db, Transaction::Mode::kImmediate, "numbering CRL"));
  {
    ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db, "UPDATE ca SET crl_number = crl_number + 1 WHERE id = 1",
                                                     "numbering CRL"));
    RETURN_IF_ERROR(s.Run());
    if (sqlite3_changes(db) == 0) return CaNotInitialised();
  }
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db, "SELECT crl_number FROM ca WHERE id = 1", "numbering CRL"));
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return CaNotInitialised();
  int64_t n = s.ColumnInt(0);
  RETURN_IF_ERROR(tx.Commit());
  return n;
}

Status SqliteStore::InsertCertificate(const CertificateRecord& c) {
  RETURN_IF_ERROR(ValidateNewCertificate(c));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx,
                   Transaction::Begin(db, Transaction::Mode::kImmediate, "inserting certificate"));
  ASSIGN_OR_RETURN(TenantState t, LoadTenantState(db, c.tenant_id));
  if (!t.exists || t.deleted) return TenantNotFoundOrDeleted(c.tenant_id);
  RETURN_IF_ERROR(SupersedeActiveCertificateRow(db, c.key_id));
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                   Sql("INSERT INTO certificates (", kCertColumns,
                                                       ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
                                                       "?10, ?11, ?12)"),
                                                   "inserting certificate"));
  s.Bind(1, c.issuer).Bind(2, c.serial).Bind(3, c.tenant_id).Bind(4, c.key_id).Bind(5, c.pem);
  s.Bind(6, c.chain_pem).Bind(7, c.source).Bind(8, c.status).BindTime(9, c.not_before);
  s.BindTime(10, c.not_after).BindTime(11, c.created_at).BindOptionalTime(12, c.revoked_at);
  RETURN_IF_ERROR(s.Run());
  return tx.Commit();
}

Status SqliteStore::SupersedeActiveCertificate(const std::string& key_id) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  return SupersedeActiveCertificateRow(db_.get(), key_id);
}

StatusOr<CertificateRecord> SqliteStore::GetActiveCertificate(const std::string& key_id) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   Sql("SELECT ", kCertColumns,
                                                       " FROM certificates WHERE key_id = ?1 "
                                                       "AND status = 'active'"),
                                                   "reading active certificate"));
  s.Bind(1, key_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return NoActiveCertificate(key_id);
  return ReadCert(s);
}

StatusOr<CertificateRecord> SqliteStore::GetLatestCertificate(const std::string& key_id) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   Sql("SELECT ", kCertColumns,
                                                       " FROM certificates WHERE key_id = ?1 "
                                                       "ORDER BY created_at DESC, rowid DESC LIMIT 1"),
                                                   "reading latest certificate"));
  s.Bind(1, key_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return NoCertificate(key_id);
  return ReadCert(s);
}

Status SqliteStore::RevokeCertificate(const std::string& issuer, const std::string& serial, TimePoint at) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   "UPDATE certificates SET status = 'revoked', "
                                                   "revoked_at = COALESCE(revoked_at, ?3) "
                                                   "WHERE issuer = ?1 AND serial = ?2",
                                                   "revoking certificate"));
  s.Bind(1, issuer).Bind(2, serial).BindTime(3, at);
  RETURN_IF_ERROR(s.Run());
  if (sqlite3_changes(db_.get()) == 0) return CertificateNotFound(serial);
  return Status::Ok();
}

StatusOr<std::vector<CertificateRecord>> SqliteStore::ListRevokedCertificates(const std::string& issuer) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   Sql("SELECT ", kCertColumns,
                                                       " FROM certificates WHERE issuer = ?1 AND "
                                                       "revoked_at IS NOT NULL ORDER BY revoked_at, serial"),
                                                   "listing revoked certificates"));
  s.Bind(1, issuer);
  return ReadAllRows<CertificateRecord>(s, ReadCert<Statement>);
}

// --- API keys --------------------------------------------------------------------

Status SqliteStore::InsertApiKey(const ApiKeyRecord& key) {
  RETURN_IF_ERROR(ValidateApiKey(key));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  sqlite3* db = db_.get();
  ASSIGN_OR_RETURN(Transaction tx,
                   Transaction::Begin(db, Transaction::Mode::kImmediate, "inserting API key"));
  if (!key.tenant_id.empty()) {
    ASSIGN_OR_RETURN(TenantState t, LoadTenantState(db, key.tenant_id));
    if (!t.exists || t.deleted) return TenantNotFoundOrDeleted(key.tenant_id);
  }
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db,
                                                   Sql("INSERT INTO api_keys (", kApiKeyColumns,
                                                       ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                                                   "inserting API key"));
  s.Bind(1, key.id).Bind(2, key.secret_hash).Bind(3, key.role).BindTextOrNull(4, key.tenant_id);
  s.Bind(5, key.name).Bind(6, key.created_by).BindTime(7, key.created_at);
  s.BindOptionalTime(8, key.revoked_at);
  RETURN_IF_ERROR(s.Run());
  return tx.Commit();
}

StatusOr<ApiKeyRecord> SqliteStore::GetApiKey(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(
      Statement s,
      Statement::Prepare(db_.get(), Sql("SELECT ", kApiKeyColumns, " FROM api_keys WHERE id = ?1"),
                         "reading API key"));
  s.Bind(1, id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return ApiKeyNotFound(id);
  return ReadApiKey(s);
}

StatusOr<std::vector<ApiKeyRecord>> SqliteStore::ListApiKeys() {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   Sql("SELECT ", kApiKeyColumns,
                                                       " FROM api_keys ORDER BY created_at, id"),
                                                   "listing API keys"));
  return ReadAllRows<ApiKeyRecord>(s, ReadApiKey<Statement>);
}

Status SqliteStore::RevokeApiKey(const std::string& id, TimePoint at) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(RequireCurrentSchemaLocked());
  // One statement, so autocommit makes it atomic without an explicit
  // transaction; sqlite3_changes counts matched rows even when the COALESCE
  // leaves the value unchanged.
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(),
                                                   "UPDATE api_keys SET revoked_at = "
                                                   "COALESCE(revoked_at, ?2) WHERE id = ?1",
                                                   "revoking API key"));
  s.Bind(1, id).BindTime(2, at);
  RETURN_IF_ERROR(s.Run());
  if (sqlite3_changes(db_.get()) == 0) return ApiKeyNotFound(id);
  return Status::Ok();
}

}  // namespace concierge::store
