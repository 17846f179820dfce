// Records of incident response, as the Store keeps them: incidents and their
// timelines, per-tenant webhooks with their persistent delivery outbox, and
// mass re-sign jobs. Plain value types (copyable, no behaviour); the rules
// (which state may follow which, what a detector folds into) live in
// src/core/incident.h, src/core/webhook.h and src/core/resign_job.h.
//
// String enums are validated by the core services, not the store, like key
// states: the lists are expected to grow.
#ifndef CONCIERGE_INCIDENT_RECORDS_H_
#define CONCIERGE_INCIDENT_RECORDS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "concierge/clock.h"

namespace concierge {

// An incident. `tenant_id` empty = not tied to one tenant (an auth-failure
// burst, a whole backend); only unscoped principals see those.
struct IncidentRecord {
  std::string incident_id;  // "inc_<16 hex>"
  std::string tenant_id;
  std::string type;      // key_compromise | hsm_failure | backend_outage | policy_violation |
                         // security_alert | compliance_failure
  std::string severity;  // low | medium | high | critical
  std::string state;     // open | investigating | contained | rotating | resigning | resolved | closed
  std::string title;
  std::string detector;   // "manual", or the detector that opened it
  std::string dedup_key;  // detector key; while the incident is open (not resolved/closed),
                          // (tenant_id, type, dedup_key) is unique. "" never folds.
  std::string key_id;     // the affected key, may be empty
  int64_t occurrences = 1;  // detections folded into this incident, including the first
  std::string details_json = "{}";  // detector evidence, JSON object
  std::string playbook_json;        // "" until a playbook runs; its persisted progress (JSON)
  std::string created_by;
  TimePoint created_at{};
  TimePoint updated_at{};
  std::optional<TimePoint> resolved_at;
  std::optional<TimePoint> closed_at;
};

// One line of an incident's timeline: a state change or an action.
struct IncidentEvent {
  std::string incident_id;
  int64_t seq = 0;  // assigned by the store: 1, 2, ... per incident
  TimePoint at{};
  std::string actor;   // principal id, "system", or "detector:<name>"
  std::string action;  // opened | state_changed | detected_again | note | playbook | ...
  std::string from_state;  // state changes only
  std::string to_state;
  std::string detail;  // human-readable, no secrets
};

struct IncidentQuery {
  std::optional<std::string> tenant_id;  // nullopt = every tenant and the global ones
  std::string state;                     // "" = any
  bool open_only = false;                // not resolved or closed
  int limit = 100;                       // 1..1000, newest first
};

// A webhook endpoint. The HMAC secret is stored sealed (AES-256-GCM under a
// key that lives outside the database, see core/webhook.h); the store never
// sees it in clear. `tenant_id` empty = receives the events of every tenant.
struct WebhookRecord {
  std::string webhook_id;  // "wh_<16 hex>"
  std::string tenant_id;
  std::string url;
  std::string secret_sealed;  // base64 of nonce || ciphertext || tag
  std::string event_types;    // comma-separated filter ("incident.opened,job.completed"); "" = all
  std::string created_by;
  TimePoint created_at{};
  std::optional<TimePoint> disabled_at;
};

// One notification. Its id is stable across every delivery attempt and every
// webhook it fans out to, so receivers deduplicate on it.
struct WebhookEventRecord {
  std::string event_id;  // "evt_<16 hex>"
  std::string tenant_id;  // "" = global event
  std::string type;       // e.g. "incident.opened"
  std::string payload_json;  // the "data" object
  TimePoint created_at{};
};

// One (event, webhook) pair of the outbox. States: pending -> delivered, or
// pending -> failed after the dispatcher's last attempt.
struct WebhookDeliveryRecord {
  std::string event_id;
  std::string webhook_id;
  std::string state = "pending";
  int64_t attempts = 0;
  TimePoint next_attempt_at{};
  int64_t last_status = 0;  // HTTP status of the last attempt, 0 = no answer
  std::string last_error;
  TimePoint created_at{};
  std::optional<TimePoint> delivered_at;
};

// What the dispatcher needs to make one attempt.
struct DueWebhookDelivery {
  WebhookDeliveryRecord delivery;
  WebhookEventRecord event;
  WebhookRecord webhook;
};

// A mass re-sign job: every ledger row of `tenant_id` signed by
// `compromised_key_id` (at or after `since`, when set) re-signed by
// `new_key_id`. States: queued -> running <-> paused; running -> completed |
// failed; queued/running/paused -> cancelled. `cursor_seq` is the last
// original ledger seq handled; it only moves together with the rows it covers.
struct ResignJobRecord {
  std::string job_id;  // "job_<16 hex>"
  std::string tenant_id;
  std::string incident_id;  // may be empty
  std::string compromised_key_id;
  std::string new_key_id;
  std::optional<TimePoint> since;
  std::string state = "queued";
  int64_t cursor_seq = 0;
  int64_t total = 0;              // originals to handle, counted when the job starts
  int64_t processed = 0;          // originals handled (= results written)
  int64_t resigned = 0;           // new signatures made
  int64_t needs_client = 0;       // entries only the client can re-sign (COSE, raw)
  int64_t already_resigned = 0;   // had a re-signature by the new key already
  std::string error;
  std::string created_by;
  TimePoint created_at{};
  TimePoint updated_at{};
  std::optional<TimePoint> started_at;
  std::optional<TimePoint> finished_at;
};

}  // namespace concierge

#endif  // CONCIERGE_INCIDENT_RECORDS_H_
