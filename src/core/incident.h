// Incidents: the model (types, severities, the state machine) and the
// IncidentService that opens, folds, moves and annotates them.
//
// States run open -> investigating -> contained -> rotating -> resigning ->
// resolved -> closed. A change may skip ahead (a false alarm goes straight
// from open to resolved) but never goes back, and only a resolved incident
// may be closed. Every change and every action is a timeline event (actor,
// time, detail), written in the same transaction as the change, together with
// the webhook notification it causes (the Store's transactional outbox).
//
// Duplicate detections fold: opening an incident with a non-empty dedup_key
// while one with the same (tenant, type, dedup_key) is still open adds a
// timeline entry and bumps `occurrences` on that one instead. The store's
// unique index settles races between detectors.
//
// Thread-safe (the store serialises writes; listeners are set before use).
#ifndef CONCIERGE_CORE_INCIDENT_H_
#define CONCIERGE_CORE_INCIDENT_H_

#include <nlohmann/json.hpp>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "concierge/clock.h"
#include "concierge/status.h"
#include "concierge/store.h"

namespace concierge::core {

const std::vector<std::string>& IncidentTypes();
const std::vector<std::string>& IncidentSeverities();
// In order: open, investigating, contained, rotating, resigning, resolved, closed.
const std::vector<std::string>& IncidentStates();

bool IsOpenIncidentState(std::string_view state);  // neither resolved nor closed
// The state machine described above; false for unknown states too.
bool IncidentTransitionAllowed(std::string_view from, std::string_view to);

// RFC 3339 text, or null when unset (the API's shape for optional times).
nlohmann::json OptionalTimeJson(const std::optional<TimePoint>& t);

// The API / webhook shape of an incident and of a timeline event.
nlohmann::json IncidentJson(const IncidentRecord& incident);
nlohmann::json IncidentEventJson(const IncidentEvent& event);

struct NewIncident {
  std::string tenant_id;  // "" = global
  std::string type;
  std::string severity;
  std::string title;
  std::string detector = "manual";
  std::string dedup_key;  // "" = never folds
  std::string key_id;
  nlohmann::json details = nlohmann::json::object();
  std::string actor;  // principal id or "detector:<name>"
};

struct OpenedIncident {
  IncidentRecord incident;
  bool created = false;  // false: folded into an open incident
};

class IncidentService {
 public:
  IncidentService(Store& store, Clock& clock) : store_(store), clock_(clock) {}

  // Validates (FieldError naming type/severity/title/...), then creates the
  // incident or folds it into the open one with the same detection key.
  StatusOr<OpenedIncident> Open(const NewIncident& request);
  // kFailedPrecondition naming both states when the change is not allowed.
  StatusOr<IncidentRecord> Transition(const std::string& incident_id, const std::string& to_state,
                                      const std::string& actor, const std::string& detail);
  // Moves forward to `to_state` unless the incident is already there or past
  // it (no error then): what playbook steps use, so a resumed step is a no-op.
  StatusOr<IncidentRecord> AdvanceTo(const std::string& incident_id, const std::string& to_state,
                                     const std::string& actor, const std::string& detail);
  // Adds an action to the timeline; `notify` also emits "incident.action".
  Status RecordAction(const std::string& incident_id, const std::string& actor, const std::string& action,
                      const std::string& detail, bool notify);

  StatusOr<IncidentRecord> Get(const std::string& incident_id) { return store_.GetIncident(incident_id); }
  StatusOr<std::vector<IncidentRecord>> List(const IncidentQuery& query) { return store_.ListIncidents(query); }
  StatusOr<std::vector<IncidentEvent>> Timeline(const std::string& incident_id) {
    return store_.ListIncidentEvents(incident_id);
  }

  // Called after a new incident was committed (not for folds), e.g. to start
  // an automatic playbook and to wake the webhook dispatcher. Set before use.
  void AddOpenedListener(std::function<void(const IncidentRecord&)> listener);
  // Called after any committed change that enqueued a notification.
  void AddNotifyListener(std::function<void()> listener);

  Store& store() { return store_; }
  Clock& clock() { return clock_; }

 private:
  WebhookEventRecord Notification(const std::string& type, const IncidentRecord& incident, const IncidentEvent& event);
  void Notified();

  Store& store_;
  Clock& clock_;
  std::vector<std::function<void(const IncidentRecord&)>> opened_listeners_;
  std::vector<std::function<void()>> notify_listeners_;
};

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_INCIDENT_H_
