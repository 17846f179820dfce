// Store: persistence contract for tenants, policy versions, keys, certificates,
// rotations and API keys.
//
// Implementations: SQLite (embedded default, src/store/sqlite) and PostgreSQL
// (src/store/postgres, later). Every method is atomic: it either applies fully
// or returns an error and changes nothing. Implementations must be thread-safe.
// Times are stored with millisecond precision.
//
// Error conventions: kNotFound for a missing row, kAlreadyExists for a unique
// conflict, kAborted for an optimistic-concurrency conflict (expected version
// mismatch), kUnavailable when the database cannot be reached, kInternal/kDataLoss
// otherwise. Messages never contain secrets.
#ifndef CONCIERGE_STORE_H_
#define CONCIERGE_STORE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "concierge/clock.h"
#include "concierge/incident_records.h"
#include "concierge/status.h"

namespace concierge {

struct PolicyRecord {
  std::string tenant_id;
  int64_t version = 0;        // 1, 2, ... per tenant
  std::string body_json;      // canonical JSON of the policy fields
  std::string policy_hash;    // hex SHA-256 of body_json
  std::string created_by;     // principal id
  TimePoint created_at{};
};

// Key states: "pending", "standby", "active", "retiring", "retired",
// "compromised", "destroyed", "disabled" (core/key_state.h).
struct KeyRecord {
  std::string key_id;          // globally unique, e.g. "acme-news-v1-3f2a9c"
  std::string tenant_id;
  int64_t version = 0;         // key version per tenant: 1, 2, ...
  std::string algorithm;       // "ES256", ...
  std::string provider;        // "software", "pkcs11", ...
  std::string key_uri;
  std::string state;
  std::string public_key_pem;  // SPKI PEM
  std::string fingerprint;     // hex SHA-256 of SPKI DER
  std::string attestation;     // may be empty
  TimePoint created_at{};
  std::optional<TimePoint> activated_at;
  std::optional<TimePoint> retired_at;
};

struct TenantRecord {
  std::string tenant_id;
  int64_t active_policy_version = 0;  // 0 when the policy was deleted
  bool deleted = false;
  TimePoint created_at{};
  TimePoint updated_at{};
};

// Roles: "admin", "security-officer", "operator", "signer", "auditor".
struct ApiKeyRecord {
  std::string id;            // public identifier, part of the token
  std::string secret_hash;   // hex SHA-256 of the token secret; never the secret
  std::string role;
  std::string tenant_id;     // empty = all tenants
  std::string name;          // operator-chosen description
  std::string created_by;
  TimePoint created_at{};
  std::optional<TimePoint> revoked_at;
};

// An X.509 certificate of a tenant key. `serial` is lowercase hex; (issuer,
// serial) is unique. Status: "active" (the key's current certificate),
// "superseded" (replaced by a newer one for the same key) or "revoked".
// Source: "builtin-ca" or "imported".
struct CertificateRecord {
  std::string serial;
  std::string tenant_id;
  std::string key_id;
  std::string pem;        // the end-entity certificate
  std::string chain_pem;  // end-entity first, then intermediates, root last
  std::string issuer;     // RFC 2253 issuer name
  std::string source;
  std::string status = "active";
  TimePoint not_before{};
  TimePoint not_after{};
  TimePoint created_at{};
  std::optional<TimePoint> revoked_at;
};

// The built-in issuing CA (at most one per database).
struct CaRecord {
  std::string provider;   // backend holding the CA key
  std::string key_uri;
  std::string algorithm;  // "ES256", ...
  std::string cert_pem;   // self-signed CA certificate
  int64_t crl_number = 0; // last CRL number handed out
  TimePoint created_at{};
};

// A key rotation of one tenant (docs/rotation.md).
//
// `state`: "scheduled" (waiting for its time, and for approval when
// approval_required), "running", "awaiting_certificate" (waiting for an
// external CA's certificate for the new key), then one of the final states
// "completed", "rolled_back", "failed" (aborted before cutover) or
// "cancelled". The first three are *open*: a tenant has at most one open
// rotation (kAlreadyExists otherwise).
// `phase`: the phase in progress or last reached: "" before it starts, then
// "prepare", "generate_key", "certificate", "canary", "cutover", "validate",
// "complete". The store keeps phase names as given; the rotation engine owns
// their meaning.
// `version` supports optimistic updates: UpdateRotation and SwapActiveKey
// apply only when the stored version equals record.version, and the stored
// version then becomes record.version + 1.
struct RotationRecord {
  std::string rotation_id;        // globally unique, e.g. "rot-acme-news-3f2a9c1d"
  std::string tenant_id;
  std::string state = "scheduled";
  std::string phase;
  std::string trigger;            // "calendar" (auto-scheduled) or "manual"
  TimePoint scheduled_at{};
  std::string owner;              // accountable person (email); may be empty for calendar rotations
  bool approval_required = false;
  std::string approved_by;        // principal id; empty until approved
  std::optional<TimePoint> approved_at;
  std::string created_by;         // principal id that scheduled it ("system:scheduler" for calendar)
  std::string cert_source;        // "builtin-ca" or "external"
  int64_t policy_version = 0;     // policy the rotation runs under (set in prepare)
  std::string policy_hash;
  std::string old_key_id;         // the active key when the rotation started ("" if none)
  std::string new_key_id;         // allocated before the key is generated
  std::string csr_pem;            // CSR made by the new key inside its backend
  std::string cert_serial;        // the new key's certificate
  std::string canary_results;     // JSON array, one object per canary signature
  std::string error;              // why it failed or rolled back; empty otherwise
  std::optional<TimePoint> started_at;
  std::optional<TimePoint> cutover_at;
  std::optional<TimePoint> grace_until;  // rollback allowed until then; the old key retires then
  std::optional<TimePoint> finished_at;
  TimePoint created_at{};
  TimePoint updated_at{};
  int64_t version = 1;
};

// One entry of a rotation's timeline. `seq` is assigned by the store (1, 2, ...
// per rotation, in commit order).
struct RotationEvent {
  std::string rotation_id;
  int64_t seq = 0;
  TimePoint at{};
  std::string phase;
  std::string event;   // "scheduled", "phase_started", "phase_completed", "approved", "failed", ...
  std::string detail;  // human-readable; never secrets
  std::string actor;   // principal id, or "system:..." for the engine
};

// The atomic change of a tenant's active key. `from_key_id` (may be empty when
// the tenant has no active key) must be "active" and becomes `from_new_state`;
// `to_key_id` must be in `to_expected_state` and becomes "active". Cutover:
// old active -> "retiring", new "pending" -> active. Rollback: new active ->
// "retired", old "retiring" -> active.
struct KeySwap {
  std::string tenant_id;
  std::string from_key_id;
  std::string from_new_state;
  std::string to_key_id;
  std::string to_expected_state;
  TimePoint at{};
};

// A Rotation Evidence Pack as built when a rotation closed (docs/evidence.md):
// the ustar bytes, kept verbatim so the pack handed out later is the one
// signed then. One per (rotation, outcome): a completed rotation that is later
// rolled back gets a second pack.
struct RotationEvidenceRecord {
  std::string rotation_id;
  std::string outcome;   // "completed", "rolled_back" or "aborted"
  TimePoint created_at{};
  std::string sha256;    // hex SHA-256 of `pack`
  std::vector<uint8_t> pack;
};

// The service's evidence signing key (at most one per database): the key
// stays in its backend; this names it and keeps its public half.
struct EvidenceKeyRecord {
  std::string provider;
  std::string key_uri;
  std::string algorithm;
  std::string public_key_pem;
  std::string fingerprint;  // hex SHA-256 of the SPKI DER
  TimePoint created_at{};
};

class Store {
 public:
  virtual ~Store() = default;

  // Applies pending migrations up to the latest version (or `target_version`
  // when > 0). Idempotent.
  virtual Status Migrate(int target_version = 0) = 0;
  virtual StatusOr<int> SchemaVersion() = 0;
  virtual int LatestSchemaVersion() const = 0;
  // Cheap liveness check for /ready.
  virtual Status Ping() = 0;

  // --- tenants and policies ---
  // Creates (or re-creates a deleted) tenant with policy version `policy.version`
  // and its first key in one transaction. kAlreadyExists when the tenant exists
  // and is not deleted.
  virtual Status CreateTenant(const PolicyRecord& policy, const KeyRecord& key) = 0;
  virtual StatusOr<TenantRecord> GetTenant(const std::string& tenant_id) = 0;
  virtual StatusOr<std::vector<TenantRecord>> ListTenants(bool include_deleted) = 0;
  // Appends a policy version and makes it active, only if the tenant's active
  // version is still `expected_active_version` (else kAborted).
  virtual Status AddPolicyVersion(const PolicyRecord& policy, int64_t expected_active_version) = 0;
  // The active policy of a non-deleted tenant.
  virtual StatusOr<PolicyRecord> GetActivePolicy(const std::string& tenant_id) = 0;
  virtual StatusOr<PolicyRecord> GetPolicyVersion(const std::string& tenant_id, int64_t version) = 0;
  virtual StatusOr<std::vector<PolicyRecord>> ListPolicyVersions(const std::string& tenant_id) = 0;
  // Marks the tenant deleted (policy history kept) and moves its keys that are
  // "pending", "active" or "retiring" to `new_key_state`, in one transaction.
  virtual Status DeleteTenant(const std::string& tenant_id, TimePoint at,
                              const std::string& new_key_state) = 0;

  // --- keys ---
  virtual Status InsertKey(const KeyRecord& key) = 0;
  virtual StatusOr<KeyRecord> GetKey(const std::string& key_id) = 0;
  virtual StatusOr<std::vector<KeyRecord>> ListKeys(const std::string& tenant_id) = 0;
  // The key in state "active" for a tenant (kNotFound if none).
  virtual StatusOr<KeyRecord> GetActiveKey(const std::string& tenant_id) = 0;
  virtual Status UpdateKeyState(const std::string& key_id, const std::string& expected_state,
                                const std::string& new_state, TimePoint at) = 0;
  virtual StatusOr<int64_t> NextKeyVersion(const std::string& tenant_id) = 0;

  // --- certificates and the built-in CA ---
  // kAlreadyExists when the CA was initialised before.
  virtual Status InsertCa(const CaRecord& ca) = 0;
  // kNotFound when there is no CA.
  virtual StatusOr<CaRecord> GetCa() = 0;
  // Increments and returns the CA's CRL number (kNotFound without a CA).
  virtual StatusOr<int64_t> NextCrlNumber() = 0;
  // Stores `cert` as the active certificate of cert.key_id; the key's previous
  // active certificate (if any) becomes "superseded", in one transaction.
  // The tenant must exist and not be deleted (kNotFound).
  virtual Status InsertCertificate(const CertificateRecord& cert) = 0;
  // The key's "active" certificate (kNotFound if none). A revoked certificate
  // is returned by GetLatestCertificate, so callers can say why signing stops.
  virtual StatusOr<CertificateRecord> GetActiveCertificate(const std::string& key_id) = 0;
  // The newest certificate of the key whatever its status (kNotFound if none).
  virtual StatusOr<CertificateRecord> GetLatestCertificate(const std::string& key_id) = 0;
  // Marks a certificate revoked (idempotent: the first time is kept).
  virtual Status RevokeCertificate(const std::string& issuer, const std::string& serial, TimePoint at) = 0;
  // Revoked certificates of one issuer, oldest revocation first (for CRLs).
  virtual StatusOr<std::vector<CertificateRecord>> ListRevokedCertificates(const std::string& issuer) = 0;

  // --- certificates of keys leaving service ---
  // Marks the key's "active" certificate "superseded" (a rotation aborted
  // before its key went live). OK when the key has none.
  virtual Status SupersedeActiveCertificate(const std::string& key_id) = 0;

  // --- rotations ---
  // Inserts a rotation and `event` (its first timeline entry) in one
  // transaction. kNotFound when the tenant is missing or deleted;
  // kAlreadyExists when the id exists or the tenant already has an open
  // rotation (state scheduled, running or awaiting_certificate).
  virtual Status InsertRotation(const RotationRecord& rotation, const RotationEvent& event) = 0;
  // kNotFound when missing.
  virtual StatusOr<RotationRecord> GetRotation(const std::string& rotation_id) = 0;
  // All rotations of a tenant (deleted tenants too), oldest scheduled_at
  // first (ties by created_at, id). kNotFound for a tenant that never existed.
  virtual StatusOr<std::vector<RotationRecord>> ListRotations(const std::string& tenant_id) = 0;
  // Open rotations of every tenant, oldest scheduled_at first.
  virtual StatusOr<std::vector<RotationRecord>> ListOpenRotations() = 0;
  // Writes every field except rotation_id, tenant_id, trigger, created_by and
  // created_at, and appends `events`, in one transaction - only if the stored
  // version is rotation.version (else kAborted; nothing changes). The stored
  // version becomes rotation.version + 1. Moving to an open state when the
  // tenant has another open rotation is kAlreadyExists.
  virtual Status UpdateRotation(const RotationRecord& rotation, const std::vector<RotationEvent>& events) = 0;
  // The cutover (or its inverse, a rollback) in one transaction: applies
  // `swap` (see KeySwap), then writes `rotation` and `events` exactly like
  // UpdateRotation. kAborted when the rotation version or a key's state is not
  // the expected one; kFailedPrecondition when a key belongs to another tenant
  // or the tenant is deleted; kNotFound for a missing key or rotation. On any
  // error nothing changes, so a tenant never has two active keys or none
  // because of a swap.
  virtual Status SwapActiveKey(const KeySwap& swap, const RotationRecord& rotation,
                               const std::vector<RotationEvent>& events) = 0;
  // The timeline of a rotation, ascending seq (empty for an unknown id).
  virtual StatusOr<std::vector<RotationEvent>> ListRotationEvents(const std::string& rotation_id) = 0;

  // --- rotation evidence ---
  // kAlreadyExists when the rotation already has a pack for that outcome;
  // kNotFound for an unknown rotation.
  virtual Status InsertRotationEvidence(const RotationEvidenceRecord& evidence) = 0;
  // kNotFound when there is none.
  virtual StatusOr<RotationEvidenceRecord> GetRotationEvidence(const std::string& rotation_id,
                                                               const std::string& outcome) = 0;
  // kAlreadyExists when the evidence key was created before.
  virtual Status InsertEvidenceKey(const EvidenceKeyRecord& key) = 0;
  // kNotFound when there is none yet.
  virtual StatusOr<EvidenceKeyRecord> GetEvidenceKey() = 0;

  // --- API keys ---
  virtual Status InsertApiKey(const ApiKeyRecord& key) = 0;
  virtual StatusOr<ApiKeyRecord> GetApiKey(const std::string& id) = 0;
  virtual StatusOr<std::vector<ApiKeyRecord>> ListApiKeys() = 0;
  virtual Status RevokeApiKey(const std::string& id, TimePoint at) = 0;

  // --- incidents (records: concierge/incident_records.h) ---
  // Every incident write may carry webhook events (`notify`), enqueued in the
  // same transaction as the change (a transactional outbox: a committed change
  // never loses its notification, a failed one never sends one); see
  // EnqueueWebhookEvent for the fan-out.
  //
  // Inserts an incident and its first timeline event (event.seq is assigned).
  // kAlreadyExists when the id exists or, for a non-empty dedup_key, an
  // incident with the same (tenant_id, type, dedup_key) is still open (not
  // resolved/closed): the caller folds into that one instead.
  virtual Status InsertIncident(const IncidentRecord& incident, const IncidentEvent& first_event,
                                const std::vector<WebhookEventRecord>& notify) = 0;
  // Folds a repeated detection into an open incident: occurrences + 1,
  // updated_at = event.at, `event` appended. kNotFound for an unknown id,
  // kFailedPrecondition when the incident is resolved or closed.
  virtual Status FoldIncident(const std::string& incident_id, const IncidentEvent& event,
                              const std::vector<WebhookEventRecord>& notify) = 0;
  // The open incident with this (tenant_id, type, dedup_key), kNotFound if none.
  virtual StatusOr<IncidentRecord> FindOpenIncident(const std::string& tenant_id, const std::string& type,
                                                    const std::string& dedup_key) = 0;
  virtual StatusOr<IncidentRecord> GetIncident(const std::string& incident_id) = 0;
  // Newest first (created_at, then id). kInvalidArgument naming "limit".
  virtual StatusOr<std::vector<IncidentRecord>> ListIncidents(const IncidentQuery& query) = 0;
  // Moves the incident from `expected_state` to event.to_state and appends
  // `event` (whose from_state/to_state describe the change). The store does not
  // judge transitions (core does). kAborted when the state is not
  // `expected_state`; kNotFound for an unknown id. Entering "resolved" sets
  // resolved_at and entering "closed" sets closed_at (each only if unset).
  virtual Status TransitionIncident(const std::string& incident_id, const std::string& expected_state,
                                    const IncidentEvent& event, const std::vector<WebhookEventRecord>& notify) = 0;
  // Appends an action to the timeline (updated_at = event.at). kNotFound for an unknown id.
  virtual Status AppendIncidentEvent(const IncidentEvent& event, const std::vector<WebhookEventRecord>& notify) = 0;
  // Replaces the persisted playbook progress and appends `event`, in one transaction.
  virtual Status UpdateIncidentPlaybook(const std::string& incident_id, const std::string& playbook_json,
                                        const IncidentEvent& event) = 0;
  // The timeline, oldest first. kNotFound for an unknown incident.
  virtual StatusOr<std::vector<IncidentEvent>> ListIncidentEvents(const std::string& incident_id) = 0;

  // --- webhooks and their outbox ---
  // kNotFound when tenant_id names no live tenant; kAlreadyExists for a duplicate id.
  virtual Status InsertWebhook(const WebhookRecord& webhook) = 0;
  virtual StatusOr<WebhookRecord> GetWebhook(const std::string& webhook_id) = 0;
  // Oldest first. nullopt = all webhooks; a tenant id = only that tenant's.
  virtual StatusOr<std::vector<WebhookRecord>> ListWebhooks(const std::optional<std::string>& tenant_id) = 0;
  // Stops new deliveries to the webhook and fails its pending ones
  // ("webhook disabled"). Idempotent (keeps the first time). kNotFound if unknown.
  virtual Status DisableWebhook(const std::string& webhook_id, TimePoint at) = 0;
  // Stores the event and one pending delivery (next_attempt_at = created_at)
  // for every enabled webhook that should see it: the event's tenant's
  // webhooks plus the global ones (a global event only reaches global
  // webhooks), whose event_types filter is empty or lists the type. Returns
  // the number of deliveries created (0 is fine: the event is still kept).
  virtual StatusOr<int> EnqueueWebhookEvent(const WebhookEventRecord& event) = 0;
  // Claims up to `limit` pending deliveries with next_attempt_at <= now, oldest
  // first, by moving their next_attempt_at to `lease_until` in the same
  // transaction, so two dispatchers (or processes) never attempt the same one
  // at once; a crashed dispatcher's claims come due again at lease_until.
  virtual StatusOr<std::vector<DueWebhookDelivery>> ClaimWebhookDeliveries(TimePoint now, TimePoint lease_until,
                                                                          int limit) = 0;
  // Records an attempt: `result` holds the new state ("pending" to retry at
  // next_attempt_at, "delivered" or "failed"), attempts, last_status,
  // last_error and delivered_at. kNotFound if the pair is unknown.
  virtual Status RecordWebhookAttempt(const WebhookDeliveryRecord& result) = 0;
  // Deliveries of one webhook, newest first, at most `limit` (1..1000).
  virtual StatusOr<std::vector<WebhookDeliveryRecord>> ListWebhookDeliveries(const std::string& webhook_id,
                                                                            int limit) = 0;
  virtual StatusOr<WebhookEventRecord> GetWebhookEvent(const std::string& event_id) = 0;

  // --- mass re-sign jobs (the rows themselves: LedgerStore::AppendResignBatch) ---
  // kNotFound when the tenant is unknown; kAlreadyExists for a duplicate id.
  virtual Status InsertResignJob(const ResignJobRecord& job) = 0;
  virtual StatusOr<ResignJobRecord> GetResignJob(const std::string& job_id) = 0;
  // Oldest first. nullopt = all jobs; `states` empty = any state.
  virtual StatusOr<std::vector<ResignJobRecord>> ListResignJobs(const std::optional<std::string>& tenant_id,
                                                                const std::vector<std::string>& states) = 0;
  // Moves a job from `expected_state` to `new_state` (kAborted otherwise, kNotFound
  // if unknown), setting error (when non-empty) and updated_at. Entering
  // "running" sets started_at if unset; entering completed/failed/cancelled
  // sets finished_at.
  // `notify` is enqueued in the same transaction (e.g. "job.completed").
  virtual Status UpdateResignJobState(const std::string& job_id, const std::string& expected_state,
                                      const std::string& new_state, const std::string& error, TimePoint at,
                                      const std::vector<WebhookEventRecord>& notify) = 0;
  // Records the job's total (counted when it starts). kNotFound if unknown.
  virtual Status SetResignJobTotal(const std::string& job_id, int64_t total, TimePoint at) = 0;
};

}  // namespace concierge

#endif  // CONCIERGE_STORE_H_
