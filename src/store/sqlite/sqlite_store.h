// SqliteStore: the embedded Store implementation (single file, WAL mode).
//
// Thread-safe. Request traffic goes through one connection guarded by a mutex:
// simple and correct, and the signing hot path does not touch this store per
// request. Several processes may open the same file; writes take the SQLite
// write lock up front (BEGIN IMMEDIATE) and wait up to `busy_timeout` for it,
// after which the call fails with kUnavailable.
//
// Durability and checkpoints: the connection runs with journal_mode=WAL,
// synchronous=FULL, foreign_keys=ON and wal_autocheckpoint=0. Automatic
// checkpoints are off so that no request ever pays for copying the WAL back
// into the database file; instead the owner MUST call Checkpoint()
// periodically from a background task (every few seconds is plenty).
// Checkpoint() uses a second connection, so it never holds the request mutex.
// Without it the -wal file grows without bound (until the last connection
// closes, when SQLite checkpoints on its own).
//
// Schema: Open() does not migrate. Call Migrate() at startup; until the schema
// is at LatestSchemaVersion(), data methods fail with kFailedPrecondition.
// Open() refuses (kFailedPrecondition) a database whose schema is newer than
// this build knows, and returns kDataLoss for a file that is not a database.
//
// Semantics beyond store.h:
//  - A deleted tenant is invisible to writes and to GetActivePolicy (kNotFound);
//    GetTenant/ListTenants(true), GetPolicyVersion, ListPolicyVersions, GetKey
//    and ListKeys still return its history.
//  - ListPolicyVersions/ListKeys return kNotFound for a tenant that never
//    existed, otherwise ascending by version. ListTenants is ordered by id,
//    ListApiKeys by (created_at, id).
//  - Policy versions only go up: CreateTenant (re-create) and AddPolicyVersion
//    reject a version not above every stored version of that tenant with
//    kInvalidArgument. A re-created tenant gets created_at = policy.created_at.
//  - At most one key per tenant is "active" (enforced by a unique index too):
//    activating or inserting a second active key is kFailedPrecondition, so a
//    rotation must move the old key out of "active" before activating the new.
//  - UpdateKeyState with a stale `expected_state` is kAborted (it is an
//    optimistic-concurrency conflict, like a stale policy version), and changes
//    nothing. Entering "active" sets activated_at if unset; entering
//    "retired", "compromised" or "destroyed" sets retired_at if unset. The
//    store checks state names, not which transitions are allowed (core does).
//  - DeleteTenant: kNotFound if missing or already deleted; `new_key_state`
//    must be an out-of-service state (not pending/active/retiring).
//  - InsertApiKey with a tenant_id requires that tenant to exist and not be
//    deleted (kNotFound). RevokeApiKey is idempotent and keeps the first
//    revocation time.
//  - NextKeyVersion counts keys of deleted incarnations too, and returns 1 for
//    a tenant that does not exist yet (so CreateTenant can use it).
//  - Rotations: state names are validated (kInvalidArgument naming "state"),
//    phases are free text. The one-open-rotation-per-tenant rule is a partial
//    unique index, so it holds across processes too. ListRotations orders by
//    (scheduled_at, created_at, rotation_id).
#ifndef CONCIERGE_STORE_SQLITE_SQLITE_STORE_H_
#define CONCIERGE_STORE_SQLITE_SQLITE_STORE_H_

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "concierge/clock.h"
#include "concierge/status.h"
#include "concierge/store.h"
#include "store/sqlite/sqlite_util.h"

namespace concierge::store {

struct SqliteOptions {
  // How long a call waits for another connection's lock before kUnavailable.
  std::chrono::milliseconds busy_timeout{5000};
  // Source of schema_migrations.applied_at; RealClock() when null. Not owned.
  Clock* clock = nullptr;
};

class SqliteStore : public Store {
 public:
  // `path` is a file name (":memory:" works for throwaway use, without WAL or
  // a separate checkpoint connection).
  static StatusOr<std::unique_ptr<SqliteStore>> Open(const std::string& path,
                                                     SqliteOptions opts = {});

  enum class CheckpointMode {
    kPassive,   // copy what it can without waiting for readers or writers
    kTruncate,  // wait for a quiet moment and reset the WAL to zero bytes
  };
  // Copies committed WAL frames into the database file. See the class comment:
  // this is the only checkpointing that happens while the store is open.
  // kPassive never blocks request traffic; kTruncate may wait up to the busy
  // timeout and is meant for rare maintenance (e.g. when the WAL got large).
  Status Checkpoint(CheckpointMode mode = CheckpointMode::kPassive);

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
  Status RevokeCertificate(const std::string& issuer, const std::string& serial, TimePoint at) override;
  StatusOr<std::vector<CertificateRecord>> ListRevokedCertificates(const std::string& issuer) override;
  Status SupersedeActiveCertificate(const std::string& key_id) override;

  // Rotations (sqlite_store_rotations.cc) -------------------------------------
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

  // Incidents, webhooks, re-sign jobs (sqlite_incidents.cc) ------------------
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

  // Constructed only through Open(); the tag keeps the constructor usable by
  // std::make_unique without being callable from outside.
  struct PrivateTag {
    explicit PrivateTag() = default;
  };
  SqliteStore(PrivateTag, SqliteDb db, SqliteDb checkpoint_db, SqliteOptions opts);

 private:
  // Fails with kFailedPrecondition unless the schema is at the latest version.
  // Re-reads the version when the cached one is behind, so a migration run by
  // another process is picked up. Requires mu_.
  Status RequireCurrentSchemaLocked();
  StatusOr<int> ReadSchemaVersionLocked();

  std::mutex mu_;
  SqliteDb db_;             // guarded by mu_
  int schema_version_ = 0;  // guarded by mu_; cache of the on-disk version

  std::mutex checkpoint_mu_;
  SqliteDb checkpoint_db_;  // guarded by checkpoint_mu_; null for :memory:

  const SqliteOptions opts_;
};

}  // namespace concierge::store

#endif  // CONCIERGE_STORE_SQLITE_SQLITE_STORE_H_
