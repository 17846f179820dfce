#include "store/postgres/postgres_store.h"

#include <utility>

#include "store/common/sql_records.h"
#include "store/migrations/migrations.h"
#include "store/postgres/pg_notify.h"
#include "store/postgres/postgres_store_internal.h"

namespace concierge::store::pg_internal {

StatusOr<TenantState> LoadTenantState(PGconn* c, const std::string& tenant_id) {
  ASSIGN_OR_RETURN(PgResult r, PgExec(c,
                                      "SELECT deleted, active_policy_version FROM tenants "
                                      "WHERE tenant_id = $1",
                                      PgParams().Text(tenant_id), "reading tenant"));
  TenantState t;
  if (r.rows() > 0) {
    t.exists = true;
    t.deleted = r.row(0).ColumnInt(0) != 0;
    t.active_policy_version = r.row(0).ColumnInt(1);
  }
  return t;
}

Status RequireNoOtherActiveKey(PGconn* c, const std::string& tenant_id,
                               const std::string& except_key_id) {
  ASSIGN_OR_RETURN(PgResult r, PgExec(c,
                                      "SELECT key_id FROM keys WHERE tenant_id = $1 AND "
                                      "state = 'active' AND key_id <> $2",
                                      PgParams().Text(tenant_id).Text(except_key_id),
                                      "checking for an active key"));
  if (r.rows() > 0) return OtherKeyActive(tenant_id, r.row(0).ColumnText(0));
  return Status::Ok();
}

Status RequireTenantExists(PGconn* c, const std::string& tenant_id) {
  ASSIGN_OR_RETURN(TenantState t, LoadTenantState(c, tenant_id));
  if (!t.exists) return TenantNotFound(tenant_id);
  return Status::Ok();
}

Status ChangeKeyState(PGconn* c, const std::string& key_id, const std::string& expected_state,
                      const std::string& new_state, TimePoint at, const std::string& required_tenant) {
  ASSIGN_OR_RETURN(PgResult r, PgExec(c, "SELECT state, tenant_id FROM keys WHERE key_id = $1",
                                      PgParams().Text(key_id), "reading key state"));
  if (r.rows() == 0) return KeyNotFound(key_id);
  const std::string tenant_id = r.row(0).ColumnText(1);
  if (!required_tenant.empty() && tenant_id != required_tenant) {
    return KeyOfOtherTenant(key_id, required_tenant);
  }
  const std::string current = r.row(0).ColumnText(0);
  if (current != expected_state) return KeyChangedConcurrently(key_id, current, expected_state);
  if (new_state == "active") {
    ASSIGN_OR_RETURN(TenantState t, LoadTenantState(c, tenant_id));
    if (t.deleted) return CannotActivateInDeletedTenant(key_id, tenant_id);
    RETURN_IF_ERROR(RequireNoOtherActiveKey(c, tenant_id, key_id));
  }
  PgParams p;
  p.Text(key_id)
      .Text(new_state)
      .OptionalTime(ActivatedStamp(new_state, at))
      .OptionalTime(RetiredStamp(new_state, at));
  RETURN_IF_ERROR(PgExec(c,
                         "UPDATE keys SET state = $2, activated_at = COALESCE(activated_at, $3), "
                         "retired_at = COALESCE(retired_at, $4) WHERE key_id = $1",
                         p, "updating key state")
                      .status());
  // Other instances reload the tenant's snapshot when this commits (pg_notify.h).
  return NotifyTenantChanged(c, tenant_id);
}

Status SupersedeActiveCertificateRow(PGconn* c, const std::string& key_id) {
  return PgExec(c,
                "UPDATE certificates SET status = 'superseded' WHERE key_id = $1 AND status = 'active'",
                PgParams().Text(key_id), "superseding certificate")
      .status();
}

}  // namespace concierge::store::pg_internal

namespace concierge::store {

using pg_internal::ChangeKeyState;
using pg_internal::LoadTenantState;
using pg_internal::ReadAll;
using pg_internal::RequireNoOtherActiveKey;
using pg_internal::RequireTenantExists;
using pg_internal::SupersedeActiveCertificateRow;

namespace {

Status RequireNewPolicyVersion(PGconn* c, const PolicyRecord& policy) {
  ASSIGN_OR_RETURN(PgResult r,
                   PgExec(c,
                          "SELECT COALESCE(MAX(version), 0) FROM policies "
                          "WHERE tenant_id = $1",
                          PgParams().Text(policy.tenant_id), "reading latest policy version"));
  const int64_t max_version = r.rows() > 0 ? r.row(0).ColumnInt(0) : 0;
  if (policy.version <= max_version) return PolicyVersionNotAbove(policy.version, max_version);
  return Status::Ok();
}

Status InsertPolicyRow(PGconn* c, const PolicyRecord& p) {
  PgParams params;
  params.Text(p.tenant_id).Int(p.version).Text(p.body_json).Text(p.policy_hash);
  params.Text(p.created_by).Time(p.created_at);
  return PgExec(c,
                Sql("INSERT INTO policies (", kPolicyColumns, ") VALUES ($1, $2, $3, $4, $5, $6)"),
                params, "inserting policy version")
      .status();
}

Status InsertKeyRow(PGconn* c, const KeyRecord& k) {
  if (k.state == "active") RETURN_IF_ERROR(RequireNoOtherActiveKey(c, k.tenant_id, k.key_id));
  PgParams p;
  p.Text(k.key_id).Text(k.tenant_id).Int(k.version).Text(k.algorithm).Text(k.provider);
  p.Text(k.key_uri).Text(k.state).Text(k.public_key_pem).Text(k.fingerprint).Text(k.attestation);
  p.Time(k.created_at).OptionalTime(k.activated_at).OptionalTime(k.retired_at);
  return PgExec(c,
                Sql("INSERT INTO keys (", kKeyColumns,
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"),
                p, "inserting key")
      .status();
}

// Applies one migration on a dedicated connection that holds the migration
// lock. Each step is its own transaction; DDL is transactional in PostgreSQL,
// so a failed step leaves the previous version intact.
class PgMigrationDriver : public MigrationDriver {
 public:
  PgMigrationDriver(PGconn* conn, Clock& clock) : conn_(conn), clock_(clock) {}

  StatusOr<int> CurrentVersion() override {
    RETURN_IF_ERROR(PgExecScript(conn_,
                                 "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                 "version BIGINT NOT NULL PRIMARY KEY, "
                                 "name TEXT NOT NULL, "
                                 "applied_at BIGINT NOT NULL)",
                                 "creating schema_migrations"));
    return ReadPgSchemaVersion(conn_);
  }

  Status Apply(const Migration& m) override {
    ASSIGN_OR_RETURN(PgTransaction tx, PgTransaction::Begin(conn_, PgTxOptions{}, "migrating"));
    ASSIGN_OR_RETURN(int current, ReadPgSchemaVersion(conn_));
    if (current >= m.version) return Status::Ok();  // another instance got here first
    if (current != m.version - 1) {
      return AbortedError("schema moved to version " + std::to_string(current) +
                          " while migrating; retry");
    }
    RETURN_IF_ERROR(PgExecScript(conn_, m.sql, "running migration SQL"));
    RETURN_IF_ERROR(PgExec(conn_,
                           "INSERT INTO schema_migrations (version, name, applied_at) "
                           "VALUES ($1, $2, $3)",
                           PgParams().Int(m.version).Text(m.name).Time(clock_.Now()),
                           "recording migration")
                        .status());
    return tx.Commit();
  }

 private:
  PGconn* conn_;
  Clock& clock_;
};

}  // namespace

StatusOr<int> ReadPgSchemaVersion(PGconn* conn) {
  // Must not create anything: Open() and SchemaVersion() are read-only.
  ASSIGN_OR_RETURN(PgResult exists,
                   PgExec(conn, "SELECT to_regclass('schema_migrations') IS NOT NULL",
                          "reading schema version"));
  if (exists.rows() == 0 || exists.row(0).ColumnText(0) != "t") return 0;
  ASSIGN_OR_RETURN(PgResult r,
                   PgExec(conn, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                          "reading schema version"));
  return r.rows() > 0 ? static_cast<int>(r.row(0).ColumnInt(0)) : 0;
}

StatusOr<std::unique_ptr<PostgresStore>> PostgresStore::Open(std::string_view url,
                                                             PostgresOptions opts) {
  PgPoolOptions pool_options;
  pool_options.max_connections = opts.max_connections;
  pool_options.acquire_timeout = opts.acquire_timeout;
  ASSIGN_OR_RETURN(std::unique_ptr<PgPool> pool, PgPool::Create(url, std::move(pool_options)));
  const std::string context = "opening database " + pool->description();
  auto store = std::make_unique<PostgresStore>(PrivateTag(), std::move(pool), opts);
  {
    StatusOr<PgPool::Lease> lease = store->pool_->Acquire("open");
    if (!lease.ok()) return lease.status().Annotate(context);
    StatusOr<int> version = ReadPgSchemaVersion(lease->get());
    if (!version.ok()) return version.status().Annotate(context);
    const int latest = store->LatestSchemaVersion();
    if (*version > latest) return SchemaTooNewError(*version, latest).Annotate(context);
    store->schema_version_ = *version;
  }
  return store;
}

PostgresStore::PostgresStore(PrivateTag, std::unique_ptr<PgPool> pool, PostgresOptions opts)
    : pool_(std::move(pool)), opts_(opts) {}

// --- migrations -------------------------------------------------------------

int PostgresStore::LatestSchemaVersion() const {
  return static_cast<int>(PostgresMigrations().size());
}

Status PostgresStore::RequireCurrentSchema() {
  const int latest = LatestSchemaVersion();
  if (schema_version_.load() == latest) return Status::Ok();
  ASSIGN_OR_RETURN(PgPool::Lease lease, pool_->Acquire("reading schema version"));
  ASSIGN_OR_RETURN(int version, ReadPgSchemaVersion(lease.get()));
  schema_version_ = version;
  if (version == latest) return Status::Ok();
  if (version > latest) return SchemaTooNewError(version, latest);
  return SchemaBehindError(version, latest, "this build");
}

StatusOr<PgResult> PostgresStore::Read(std::string_view sql, const PgParams& params,
                                       std::string_view operation) {
  RETURN_IF_ERROR(RequireCurrentSchema());
  return pool_->Query(sql, params, operation);
}

StatusOr<PgPool::Session> PostgresStore::Write(std::string_view operation) {
  RETURN_IF_ERROR(RequireCurrentSchema());
  return pool_->Begin(
      PgTxOptions{.lock_key = kStoreWriteLockKey, .lock_timeout = opts_.lock_timeout}, operation);
}

StatusOr<PgPool::Session> PostgresStore::Snapshot(std::string_view operation) {
  RETURN_IF_ERROR(RequireCurrentSchema());
  return pool_->Begin(PgTxOptions{.read_only_snapshot = true}, operation);
}

Status PostgresStore::Migrate(int target_version) {
  // A dedicated connection: the session-level lock must be released (or die
  // with the connection) whatever happens, and never ride along in the pool.
  ASSIGN_OR_RETURN(PgConnPtr conn, pool_->Connect("migrating"));
  RETURN_IF_ERROR(PgExecScript(conn.get(),
                               "SELECT pg_advisory_lock(" + std::to_string(kMigrationLockKey) + ")",
                               "waiting for the migration lock"));
  PgMigrationDriver driver(conn.get(), opts_.clock != nullptr ? *opts_.clock : RealClock());
  Status s = RunMigrations(driver, PostgresMigrations(), target_version);
  // Refresh the cache either way: a partial run still moved the version.
  StatusOr<int> version = ReadPgSchemaVersion(conn.get());
  if (version.ok()) schema_version_ = *version;
  PgExecScript(conn.get(), "SELECT pg_advisory_unlock(" + std::to_string(kMigrationLockKey) + ")",
               "releasing the migration lock")
      .IgnoreError();  // closing the connection releases it anyway
  return s;
}

StatusOr<int> PostgresStore::SchemaVersion() {
  ASSIGN_OR_RETURN(PgPool::Lease lease, pool_->Acquire("reading schema version"));
  ASSIGN_OR_RETURN(int version, ReadPgSchemaVersion(lease.get()));
  schema_version_ = version;
  return version;
}

Status PostgresStore::Ping() { return pool_->Query("SELECT 1", PgParams(), "ping").status(); }

// --- tenants and policies ------------------------------------------------------

Status PostgresStore::CreateTenant(const PolicyRecord& policy, const KeyRecord& key) {
  RETURN_IF_ERROR(ValidateNewTenant(policy, key));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("creating tenant"));
  PGconn* c = session.conn();
  ASSIGN_OR_RETURN(TenantState t, LoadTenantState(c, policy.tenant_id));
  if (t.exists && !t.deleted) {
    return AlreadyExistsError("tenant " + policy.tenant_id + " already exists");
  }
  const PgParams params =
      PgParams().Text(policy.tenant_id).Int(policy.version).Time(policy.created_at);
  if (t.exists) {
    // Re-creating a deleted tenant: its policy history stays and continues.
    RETURN_IF_ERROR(RequireNewPolicyVersion(c, policy));
    RETURN_IF_ERROR(PgExec(c,
                           "UPDATE tenants SET deleted = 0, active_policy_version = $2, "
                           "created_at = $3, updated_at = $3 WHERE tenant_id = $1",
                           params, "re-creating tenant")
                        .status());
  } else {
    RETURN_IF_ERROR(
        PgExec(c, Sql("INSERT INTO tenants (", kTenantColumns, ") VALUES ($1, $2, 0, $3, $3)"),
               params, "inserting tenant")
            .status());
  }
  RETURN_IF_ERROR(InsertPolicyRow(c, policy));
  RETURN_IF_ERROR(InsertKeyRow(c, key));
  return session.tx.Commit();
}

StatusOr<TenantRecord> PostgresStore::GetTenant(const std::string& tenant_id) {
  ASSIGN_OR_RETURN(PgResult r,
                   Read(Sql("SELECT ", kTenantColumns, " FROM tenants WHERE tenant_id = $1"),
                        PgParams().Text(tenant_id), "reading tenant"));
  if (r.rows() == 0) return TenantNotFound(tenant_id);
  return ReadTenant(r.row(0));
}

StatusOr<std::vector<TenantRecord>> PostgresStore::ListTenants(bool include_deleted) {
  ASSIGN_OR_RETURN(PgResult r, Read(Sql("SELECT ", kTenantColumns,
                                        " FROM tenants WHERE $1 = 1 OR deleted = 0 "
                                        "ORDER BY tenant_id COLLATE \"C\""),
                                    PgParams().Int(include_deleted ? 1 : 0), "listing tenants"));
  return ReadAll<TenantRecord>(r, ReadTenant<PgRow>);
}

Status PostgresStore::AddPolicyVersion(const PolicyRecord& policy,
                                       int64_t expected_active_version) {
  RETURN_IF_ERROR(ValidatePolicy(policy));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("adding policy version"));
  PGconn* c = session.conn();
  ASSIGN_OR_RETURN(TenantState t, LoadTenantState(c, policy.tenant_id));
  if (!t.exists || t.deleted) return TenantNotFoundOrDeleted(policy.tenant_id);
  if (t.active_policy_version != expected_active_version) {
    return PolicyChangedConcurrently(policy.tenant_id, t.active_policy_version,
                                     expected_active_version);
  }
  RETURN_IF_ERROR(RequireNewPolicyVersion(c, policy));
  RETURN_IF_ERROR(InsertPolicyRow(c, policy));
  RETURN_IF_ERROR(
      PgExec(c,
             "UPDATE tenants SET active_policy_version = $2, updated_at = $3 "
             "WHERE tenant_id = $1",
             PgParams().Text(policy.tenant_id).Int(policy.version).Time(policy.created_at),
             "activating policy version")
          .status());
  RETURN_IF_ERROR(NotifyTenantChanged(c, policy.tenant_id));
  return session.tx.Commit();
}

StatusOr<PolicyRecord> PostgresStore::GetActivePolicy(const std::string& tenant_id) {
  ASSIGN_OR_RETURN(PgResult r,
                   Read("SELECT p.tenant_id, p.version, p.body_json, p.policy_hash, "
                        "p.created_by, p.created_at FROM tenants t JOIN policies p "
                        "ON p.tenant_id = t.tenant_id AND p.version = t.active_policy_version "
                        "WHERE t.tenant_id = $1 AND t.deleted = 0",
                        PgParams().Text(tenant_id), "reading active policy"));
  if (r.rows() == 0) return NoActivePolicy(tenant_id);
  return ReadPolicy(r.row(0));
}

StatusOr<PolicyRecord> PostgresStore::GetPolicyVersion(const std::string& tenant_id,
                                                       int64_t version) {
  ASSIGN_OR_RETURN(
      PgResult r,
      Read(Sql("SELECT ", kPolicyColumns, " FROM policies WHERE tenant_id = $1 AND version = $2"),
           PgParams().Text(tenant_id).Int(version), "reading policy version"));
  if (r.rows() == 0) return PolicyVersionNotFound(tenant_id, version);
  return ReadPolicy(r.row(0));
}

StatusOr<std::vector<PolicyRecord>> PostgresStore::ListPolicyVersions(
    const std::string& tenant_id) {
  // One snapshot for the existence check and the listing.
  ASSIGN_OR_RETURN(PgPool::Session session, Snapshot("listing policy versions"));
  PGconn* c = session.conn();
  RETURN_IF_ERROR(RequireTenantExists(c, tenant_id));
  ASSIGN_OR_RETURN(PgResult r, PgExec(c,
                                      Sql("SELECT ", kPolicyColumns,
                                          " FROM policies WHERE tenant_id = $1 ORDER BY version"),
                                      PgParams().Text(tenant_id), "listing policy versions"));
  RETURN_IF_ERROR(session.tx.Commit());
  return ReadAll<PolicyRecord>(r, ReadPolicy<PgRow>);
}

Status PostgresStore::DeleteTenant(const std::string& tenant_id, TimePoint at,
                                   const std::string& new_key_state) {
  RETURN_IF_ERROR(ValidateRetirementState(new_key_state));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("deleting tenant"));
  PGconn* c = session.conn();
  ASSIGN_OR_RETURN(TenantState t, LoadTenantState(c, tenant_id));
  if (!t.exists || t.deleted) return TenantNotFoundOrDeleted(tenant_id);
  RETURN_IF_ERROR(
      PgExec(c,
             "UPDATE tenants SET deleted = 1, active_policy_version = 0, updated_at = $2 "
             "WHERE tenant_id = $1",
             PgParams().Text(tenant_id).Time(at), "marking tenant deleted")
          .status());
  RETURN_IF_ERROR(PgExec(c,
                         "UPDATE keys SET state = $2, retired_at = COALESCE(retired_at, $3) "
                         "WHERE tenant_id = $1 AND state IN ('pending', 'standby', 'active', 'retiring')",
                         PgParams()
                             .Text(tenant_id)
                             .Text(new_key_state)
                             .OptionalTime(RetiredStamp(new_key_state, at)),
                         "moving keys of deleted tenant")
                      .status());
  RETURN_IF_ERROR(NotifyTenantChanged(c, tenant_id));
  return session.tx.Commit();
}

// --- keys ---------------------------------------------------------------------

Status PostgresStore::InsertKey(const KeyRecord& key) {
  RETURN_IF_ERROR(ValidateKey(key));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("inserting key"));
  PGconn* c = session.conn();
  ASSIGN_OR_RETURN(TenantState t, LoadTenantState(c, key.tenant_id));
  if (!t.exists || t.deleted) return TenantNotFoundOrDeleted(key.tenant_id);
  RETURN_IF_ERROR(InsertKeyRow(c, key));
  return session.tx.Commit();
}

StatusOr<KeyRecord> PostgresStore::GetKey(const std::string& key_id) {
  ASSIGN_OR_RETURN(PgResult r, Read(Sql("SELECT ", kKeyColumns, " FROM keys WHERE key_id = $1"),
                                    PgParams().Text(key_id), "reading key"));
  if (r.rows() == 0) return KeyNotFound(key_id);
  return ReadKey(r.row(0));
}

StatusOr<std::vector<KeyRecord>> PostgresStore::ListKeys(const std::string& tenant_id) {
  // One snapshot for the existence check and the listing.
  ASSIGN_OR_RETURN(PgPool::Session session, Snapshot("listing keys"));
  PGconn* c = session.conn();
  RETURN_IF_ERROR(RequireTenantExists(c, tenant_id));
  ASSIGN_OR_RETURN(
      PgResult r,
      PgExec(c, Sql("SELECT ", kKeyColumns, " FROM keys WHERE tenant_id = $1 ORDER BY version"),
             PgParams().Text(tenant_id), "listing keys"));
  RETURN_IF_ERROR(session.tx.Commit());
  return ReadAll<KeyRecord>(r, ReadKey<PgRow>);
}

StatusOr<KeyRecord> PostgresStore::GetActiveKey(const std::string& tenant_id) {
  ASSIGN_OR_RETURN(PgResult r, Read(Sql("SELECT ", kKeyColumns,
                                        " FROM keys WHERE tenant_id = $1 AND state = 'active'"),
                                    PgParams().Text(tenant_id), "reading active key"));
  if (r.rows() == 0) return NoActiveKey(tenant_id);
  return ReadKey(r.row(0));
}

Status PostgresStore::UpdateKeyState(const std::string& key_id, const std::string& expected_state,
                                     const std::string& new_state, TimePoint at) {
  RETURN_IF_ERROR(ValidateKeyState("expected_state", expected_state));
  RETURN_IF_ERROR(ValidateKeyState("new_state", new_state));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("updating key state"));
  PGconn* c = session.conn();
  RETURN_IF_ERROR(ChangeKeyState(c, key_id, expected_state, new_state, at, /*required_tenant=*/""));
  return session.tx.Commit();
}

StatusOr<int64_t> PostgresStore::NextKeyVersion(const std::string& tenant_id) {
  ASSIGN_OR_RETURN(PgResult r,
                   Read("SELECT COALESCE(MAX(version), 0) + 1 FROM keys WHERE tenant_id = $1",
                        PgParams().Text(tenant_id), "computing next key version"));
  return r.rows() > 0 ? r.row(0).ColumnInt(0) : int64_t{1};
}

// --- certificates and the built-in CA ----------------------------------------------

Status PostgresStore::InsertCa(const CaRecord& ca) {
  RETURN_IF_ERROR(ValidateCa(ca));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("inserting CA"));
  PgParams p;
  p.Text(ca.provider)
      .Text(ca.key_uri)
      .Text(ca.algorithm)
      .Text(ca.cert_pem)
      .Int(ca.crl_number)
      .Time(ca.created_at);
  Status st =
      PgExec(session.conn(),
             Sql("INSERT INTO ca (id, ", kCaColumns, ") VALUES (1, $1, $2, $3, $4, $5, $6)"), p,
             "inserting CA")
          .status();
  if (st.code() == StatusCode::kAlreadyExists) return CaAlreadyInitialised();
  RETURN_IF_ERROR(st);
  return session.tx.Commit();
}

StatusOr<CaRecord> PostgresStore::GetCa() {
  ASSIGN_OR_RETURN(PgResult r, Read(Sql("SELECT ", kCaColumns, " FROM ca WHERE id = 1"), PgParams(),
                                    "reading CA"));
  if (r.rows() == 0) return CaNotInitialised();
  return ReadCa(r.row(0));
}

StatusOr<int64_t> PostgresStore::NextCrlNumber() {
  ASSIGN_OR_RETURN(PgPool::Session session, Write("numbering CRL"));
  ASSIGN_OR_RETURN(
      PgResult r,
      PgExec(session.conn(),
             "UPDATE ca SET crl_number = crl_number + 1 WHERE id = 1 RETURNING crl_number",
             "numbering CRL"));
  if (r.rows() == 0) return CaNotInitialised();
  RETURN_IF_ERROR(session.tx.Commit());
  return r.row(0).ColumnInt(0);
}

Status PostgresStore::InsertCertificate(const CertificateRecord& c) {
  RETURN_IF_ERROR(ValidateNewCertificate(c));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("inserting certificate"));
  PGconn* conn = session.conn();
  ASSIGN_OR_RETURN(TenantState t, LoadTenantState(conn, c.tenant_id));
  if (!t.exists || t.deleted) return TenantNotFoundOrDeleted(c.tenant_id);
  RETURN_IF_ERROR(SupersedeActiveCertificateRow(conn, c.key_id));
  PgParams p;
  p.Text(c.issuer).Text(c.serial).Text(c.tenant_id).Text(c.key_id).Text(c.pem).Text(c.chain_pem);
  p.Text(c.source)
      .Text(c.status)
      .Time(c.not_before)
      .Time(c.not_after)
      .Time(c.created_at)
      .OptionalTime(c.revoked_at);
  RETURN_IF_ERROR(PgExec(conn,
                         Sql("INSERT INTO certificates (", kCertColumns,
                             ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"),
                         p, "inserting certificate")
                      .status());
  return session.tx.Commit();
}

Status PostgresStore::SupersedeActiveCertificate(const std::string& key_id) {
  ASSIGN_OR_RETURN(PgPool::Session session, Write("superseding certificate"));
  RETURN_IF_ERROR(SupersedeActiveCertificateRow(session.conn(), key_id));
  return session.tx.Commit();
}

StatusOr<CertificateRecord> PostgresStore::GetActiveCertificate(const std::string& key_id) {
  ASSIGN_OR_RETURN(PgResult r,
                   Read(Sql("SELECT ", kCertColumns,
                            " FROM certificates WHERE key_id = $1 AND status = 'active'"),
                        PgParams().Text(key_id), "reading active certificate"));
  if (r.rows() == 0) return NoActiveCertificate(key_id);
  return ReadCert(r.row(0));
}

StatusOr<CertificateRecord> PostgresStore::GetLatestCertificate(const std::string& key_id) {
  // No rowid: within one millisecond the active certificate is the newest
  // (see the header), then a revoked one.
  ASSIGN_OR_RETURN(PgResult r,
                   Read(Sql("SELECT ", kCertColumns,
                            " FROM certificates WHERE key_id = $1 ORDER BY created_at DESC, "
                            "CASE status WHEN 'active' THEN 0 WHEN 'revoked' THEN 1 ELSE 2 END, "
                            "serial COLLATE \"C\" DESC LIMIT 1"),
                        PgParams().Text(key_id), "reading latest certificate"));
  if (r.rows() == 0) return NoCertificate(key_id);
  return ReadCert(r.row(0));
}

Status PostgresStore::RevokeCertificate(const std::string& issuer, const std::string& serial,
                                        TimePoint at) {
  ASSIGN_OR_RETURN(PgPool::Session session, Write("revoking certificate"));
  ASSIGN_OR_RETURN(
      PgResult r,
      PgExec(session.conn(),
             "UPDATE certificates SET status = 'revoked', revoked_at = COALESCE(revoked_at, $3) "
             "WHERE issuer = $1 AND serial = $2",
             PgParams().Text(issuer).Text(serial).Time(at), "revoking certificate"));
  if (r.affected() == 0) return CertificateNotFound(serial);
  return session.tx.Commit();
}

StatusOr<std::vector<CertificateRecord>> PostgresStore::ListRevokedCertificates(
    const std::string& issuer) {
  ASSIGN_OR_RETURN(PgResult r,
                   Read(Sql("SELECT ", kCertColumns,
                            " FROM certificates WHERE issuer = $1 AND revoked_at IS NOT NULL "
                            "ORDER BY revoked_at, serial COLLATE \"C\""),
                        PgParams().Text(issuer), "listing revoked certificates"));
  return ReadAll<CertificateRecord>(r, ReadCert<PgRow>);
}

// --- API keys --------------------------------------------------------------------

Status PostgresStore::InsertApiKey(const ApiKeyRecord& key) {
  RETURN_IF_ERROR(ValidateApiKey(key));
  ASSIGN_OR_RETURN(PgPool::Session session, Write("inserting API key"));
  PGconn* c = session.conn();
  if (!key.tenant_id.empty()) {
    ASSIGN_OR_RETURN(TenantState t, LoadTenantState(c, key.tenant_id));
    if (!t.exists || t.deleted) return TenantNotFoundOrDeleted(key.tenant_id);
  }
  PgParams p;
  p.Text(key.id).Text(key.secret_hash).Text(key.role).TextOrNull(key.tenant_id).Text(key.name);
  p.Text(key.created_by).Time(key.created_at).OptionalTime(key.revoked_at);
  RETURN_IF_ERROR(PgExec(c,
                         Sql("INSERT INTO api_keys (", kApiKeyColumns,
                             ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
                         p, "inserting API key")
                      .status());
  return session.tx.Commit();
}

StatusOr<ApiKeyRecord> PostgresStore::GetApiKey(const std::string& id) {
  ASSIGN_OR_RETURN(PgResult r, Read(Sql("SELECT ", kApiKeyColumns, " FROM api_keys WHERE id = $1"),
                                    PgParams().Text(id), "reading API key"));
  if (r.rows() == 0) return ApiKeyNotFound(id);
  return ReadApiKey(r.row(0));
}

StatusOr<std::vector<ApiKeyRecord>> PostgresStore::ListApiKeys() {
  ASSIGN_OR_RETURN(PgResult r, Read(Sql("SELECT ", kApiKeyColumns,
                                        " FROM api_keys ORDER BY created_at, id COLLATE \"C\""),
                                    PgParams(), "listing API keys"));
  return ReadAll<ApiKeyRecord>(r, ReadApiKey<PgRow>);
}

Status PostgresStore::RevokeApiKey(const std::string& id, TimePoint at) {
  ASSIGN_OR_RETURN(PgPool::Session session, Write("revoking API key"));
  // The affected count includes rows the COALESCE left unchanged.
  ASSIGN_OR_RETURN(PgResult r,
                   PgExec(session.conn(),
                          "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
                          PgParams().Text(id).Time(at), "revoking API key"));
  if (r.affected() == 0) return ApiKeyNotFound(id);
  return session.tx.Commit();
}

}  // namespace concierge::store
