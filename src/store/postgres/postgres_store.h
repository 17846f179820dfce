// PostgresStore: the Store on PostgreSQL, for production and for several
// `keyctl serve` instances sharing one database.
//
// Thread-safe. Calls run on connections from a PgPool (opened lazily, up to
// max_connections). Its behaviour is SqliteStore's, case for case (the same
// conformance suite runs on both; see sqlite_store.h for the semantics beyond
// store.h): the same validation, error codes and messages, orders and time
// stamping. How the PostgreSQL side gets there:
//  - Writes are serialised. Every write transaction takes one transaction-level
//    advisory lock (kStoreWriteLockKey) right after BEGIN, as SQLite's BEGIN
//    IMMEDIATE takes the file's write lock, and then reads what it checks
//    under READ COMMITTED, so read-check-write sequences (expected versions,
//    "one active key per tenant", tenant not deleted) see every committed
//    write and cannot interleave, across all instances on the database. The
//    admin path writes rarely; reads take no lock. Waiting longer than
//    lock_timeout for it is kUnavailable, like SQLite's busy timeout.
//  - Listings that read twice (existence, then rows) use a REPEATABLE READ
//    snapshot. Text orders use COLLATE "C", i.e. bytewise like SQLite,
//    whatever the database's collation.
//  - Among certificates of one key with the same created_at (same millisecond)
//    the newest is taken to be the active one, then a revoked one: PostgreSQL
//    has no insertion rowid, and InsertCertificate always makes the newest
//    certificate the active one.
//  - Text cannot hold NUL bytes in PostgreSQL: such a value is kInvalidArgument.
//
// Availability: Open() connects once (kUnavailable if the database cannot be
// reached, kFailedPrecondition for a schema newer than this build). Later,
// while the database is down, every call fails with kUnavailable ("database
// unavailable: ...") and the pool reconnects by itself once it is back. A
// write whose COMMIT was cut off by the outage is reported kUnavailable even
// though it may have committed; callers that retry must be idempotent.
//
// Schema: Open() does not migrate. Migrate() runs under a session-level
// advisory lock (kMigrationLockKey) on a dedicated connection, so several
// instances starting at once apply each step exactly once; each step is one
// transaction (DDL is transactional in PostgreSQL). Until the schema is at
// LatestSchemaVersion(), data methods fail with kFailedPrecondition.
//
// The URL may contain a password: it is never logged nor put in errors (see
// PgPool). Tables live in the connection's search_path (a URL can choose a
// schema with options=-csearch_path%3Dname).
#ifndef CONCIERGE_STORE_POSTGRES_POSTGRES_STORE_H_
#define CONCIERGE_STORE_POSTGRES_POSTGRES_STORE_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "concierge/clock.h"
#include "concierge/status.h"
#include "concierge/store.h"
#include "store/postgres/pg_pool.h"

namespace concierge::store {

struct PostgresOptions {
  int max_connections = 8;
  // How long a call waits for a free pooled connection before kUnavailable.
  std::chrono::milliseconds acquire_timeout{5000};
  // How long a write waits for the store write lock (or a row lock) held by
  // another connection before kUnavailable.
  std::chrono::milliseconds lock_timeout{5000};
  // Source of schema_migrations.applied_at; RealClock() when null. Not owned.
  Clock* clock = nullptr;
};

class PostgresStore : public Store {
 public:
  static StatusOr<std::unique_ptr<PostgresStore>> Open(std::string_view url,
                                                       PostgresOptions opts = {});

  // "postgresql://user@host:port/dbname", without the password.
  const std::string& description() const { return pool_->description(); }
  PgPoolStats pool_stats() const { return pool_->stats(); }

  // Migrations ----------------------------------------------------------
  Status Migrate(int target_version = 0) override;
  StatusOr<int> SchemaVersion() override;
  int LatestSchemaVersion() const override;
  Status Ping() override;

  // Tenants and policies ------------------------------------------------
  Status CreateTenant(const PolicyRecord& policy, const KeyRecord& key) override;
  StatusOr<TenantRecord> GetTenant(const std::string& tenant_id) override;
  StatusOr<std::vector<TenantRecord>> ListTenants(bool include_deleted) override;
  Status AddPolicyVersion(const PolicyRecord& policy, int64_t expected_active_version) override;
  StatusOr<PolicyRecord> GetActivePolicy(const std::string& tenant_id) override;
  StatusOr<PolicyRecord> GetPolicyVersion(const std::string& tenant_id, int64_t version) override;
  StatusOr<std::vector<PolicyRecord>> ListPolicyVersions(const std::string& tenant_id) override;
  Status DeleteTenant(const std::string& tenant_id, TimePoint at,
                      const std::string& new_key_state) override;

  // Keys ------------------------------------------------------------------
  Status InsertKey(const KeyRecord& key) override;
  StatusOr<KeyRecord> GetKey(const std::string& key_id) override;
  StatusOr<std::vector<KeyRecord>> ListKeys(const std::string& tenant_id) override;
  StatusOr<KeyRecord> GetActiveKey(const std::string& tenant_id) override;
  Status UpdateKeyState(const std::string& key_id, const std::string& expected_state,
                        const std::string& new_state, TimePoint at) override;
  StatusOr<int64_t> NextKeyVersion(const std::string& tenant_id) override;

  // Certificates and the built-in CA ----------------------------------------
  Status InsertCa(const CaRecord& ca) override;
  StatusOr<CaRecord> GetCa() override;
  StatusOr<int64_t> NextCrlNumber() override;
  Status InsertCertificate(const CertificateRecord& cert) override;
  StatusOr<CertificateRecord> GetActiveCertificate(const std::string& key_id) override;
  StatusOr<CertificateRecord> GetLatestCertificate(const std::string& key_id) override;
  Status RevokeCertificate(const std::string& issuer, const std::string& serial,
                           TimePoint at) override;
  StatusOr<std::vector<CertificateRecord>> ListRevokedCertificates(
      const std::string& issuer) override;
  Status SupersedeActiveCertificate(const std::string& key_id) override;

  // Rotations (postgres_store_rotations.cc) ------------------------------------
  Status InsertRotation(const RotationRecord& rotation, const RotationEvent& event) override;
  StatusOr<RotationRecord> GetRotation(const std::string& rotation_id) override;
  StatusOr<std::vector<RotationRecord>> ListRotations(const std::string& tenant_id) override;
  StatusOr<std::vector<RotationRecord>> ListOpenRotations() override;
  Status UpdateRotation(const RotationRecord& rotation, const std::vector<RotationEvent>& events) override;
  Status SwapActiveKey(const KeySwap& swap, const RotationRecord& rotation,
                       const std::vector<RotationEvent>& events) override;
  StatusOr<std::vector<RotationEvent>> ListRotationEvents(const std::string& rotation_id) override;
  Status InsertRotationEvidence(const RotationEvidenceRecord& evidence) override;
  StatusOr<RotationEvidenceRecord> GetRotationEvidence(const std::string& rotation_id,
                                                       const std::string& outcome) override;
  Status InsertEvidenceKey(const EvidenceKeyRecord& key) override;
  StatusOr<EvidenceKeyRecord> GetEvidenceKey() override;

  // API keys --------------------------------------------------------------
  Status InsertApiKey(const ApiKeyRecord& key) override;
  StatusOr<ApiKeyRecord> GetApiKey(const std::string& id) override;
  StatusOr<std::vector<ApiKeyRecord>> ListApiKeys() override;
  Status RevokeApiKey(const std::string& id, TimePoint at) override;

  // Constructed only through Open().
  struct PrivateTag {
    explicit PrivateTag() = default;
  };
  PostgresStore(PrivateTag, std::unique_ptr<PgPool> pool, PostgresOptions opts);


  // Incidents, webhooks, re-sign jobs (postgres_store_incidents.cc). A job's
  // cursor and counters move in PostgresLedger::AppendResignBatch, which
  // checks the job row under a row lock that UpdateResignJobState takes too.
  Status InsertIncident(const IncidentRecord& incident, const IncidentEvent& first_event,
                        const std::vector<WebhookEventRecord>& notify) override;
  Status FoldIncident(const std::string& incident_id, const IncidentEvent& event,
                      const std::vector<WebhookEventRecord>& notify) override;
  StatusOr<IncidentRecord> FindOpenIncident(const std::string& tenant_id, const std::string& type,
                                            const std::string& dedup_key) override;
  StatusOr<IncidentRecord> GetIncident(const std::string& incident_id) override;
  StatusOr<std::vector<IncidentRecord>> ListIncidents(const IncidentQuery& query) override;
  Status TransitionIncident(const std::string& incident_id, const std::string& expected_state,
                            const IncidentEvent& event, const std::vector<WebhookEventRecord>& notify) override;
  Status AppendIncidentEvent(const IncidentEvent& event, const std::vector<WebhookEventRecord>& notify) override;
  Status UpdateIncidentPlaybook(const std::string& incident_id, const std::string& playbook_json,
                                const IncidentEvent& event) override;
  StatusOr<std::vector<IncidentEvent>> ListIncidentEvents(const std::string& incident_id) override;

  Status InsertWebhook(const WebhookRecord& webhook) override;
  StatusOr<WebhookRecord> GetWebhook(const std::string& webhook_id) override;
  StatusOr<std::vector<WebhookRecord>> ListWebhooks(const std::optional<std::string>& tenant_id) override;
  Status DisableWebhook(const std::string& webhook_id, TimePoint at) override;
  StatusOr<int> EnqueueWebhookEvent(const WebhookEventRecord& event) override;
  StatusOr<std::vector<DueWebhookDelivery>> ClaimWebhookDeliveries(TimePoint now, TimePoint lease_until,
                                                                  int limit) override;
  Status RecordWebhookAttempt(const WebhookDeliveryRecord& result) override;
  StatusOr<std::vector<WebhookDeliveryRecord>> ListWebhookDeliveries(const std::string& webhook_id,
                                                                    int limit) override;
  StatusOr<WebhookEventRecord> GetWebhookEvent(const std::string& event_id) override;

  Status InsertResignJob(const ResignJobRecord& job) override;
  StatusOr<ResignJobRecord> GetResignJob(const std::string& job_id) override;
  StatusOr<std::vector<ResignJobRecord>> ListResignJobs(const std::optional<std::string>& tenant_id,
                                                        const std::vector<std::string>& states) override;
  Status UpdateResignJobState(const std::string& job_id, const std::string& expected_state,
                              const std::string& new_state, const std::string& error, TimePoint at,
                              const std::vector<WebhookEventRecord>& notify) override;
  Status SetResignJobTotal(const std::string& job_id, int64_t total, TimePoint at) override;
 private:
  // kFailedPrecondition unless the schema is at the latest version. Re-reads
  // the version when the cached one is behind, so a migration run by another
  // instance is picked up.
  Status RequireCurrentSchema();
  // One read statement (repeated once on another connection if a pooled one
  // turns out to be dropped; see PgPool::Query).
  StatusOr<PgResult> Read(std::string_view sql, const PgParams& params, std::string_view operation);
  // A write transaction holding the store write lock.
  StatusOr<PgPool::Session> Write(std::string_view operation);
  // A read-only REPEATABLE READ transaction: several reads, one snapshot.
  StatusOr<PgPool::Session> Snapshot(std::string_view operation);

  std::unique_ptr<PgPool> pool_;
  std::atomic<int> schema_version_{0};  // cache of the database's version
  const PostgresOptions opts_;
};

// The schema version recorded in the connection's database (0 when
// schema_migrations does not exist yet). Creates nothing. Shared with the ledger.
StatusOr<int> ReadPgSchemaVersion(PGconn* conn);

}  // namespace concierge::store

#endif  // CONCIERGE_STORE_POSTGRES_POSTGRES_STORE_H_
