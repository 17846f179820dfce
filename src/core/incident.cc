#include "core/incident.h"

#include <algorithm>

#include "core/policy.h"
#include "core/webhook.h"
#include "crypto/hash.h"

namespace concierge::core {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxTitle = 200;
constexpr size_t kMaxDedupKey = 200;
constexpr size_t kMaxDetails = 16 * 1024;
constexpr size_t kMaxDetail = 2000;

bool OneOf(const std::vector<std::string>& list, std::string_view v) {
  return std::find(list.begin(), list.end(), v) != list.end();
}

int StateIndex(std::string_view state) {
  const auto& states = IncidentStates();
  auto it = std::find(states.begin(), states.end(), state);
  return it == states.end() ? -1 : static_cast<int>(it - states.begin());
}

std::string Clip(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(0, n); }

}  // namespace

json OptionalTimeJson(const std::optional<TimePoint>& t) { return t ? json(FormatRfc3339(*t)) : json(nullptr); }

const std::vector<std::string>& IncidentTypes() {
  static const std::vector<std::string> kTypes = {"key_compromise", "hsm_failure",     "backend_outage",
                                                  "policy_violation", "security_alert", "compliance_failure"};
  return kTypes;
}

const std::vector<std::string>& IncidentSeverities() {
  static const std::vector<std::string> kSeverities = {"low", "medium", "high", "critical"};
  return kSeverities;
}

const std::vector<std::string>& IncidentStates() {
  static const std::vector<std::string> kStates = {"open",      "investigating", "contained", "rotating",
                                                   "resigning", "resolved",      "closed"};
  return kStates;
}

bool IsOpenIncidentState(std::string_view state) { return state != "resolved" && state != "closed"; }

bool IncidentTransitionAllowed(std::string_view from, std::string_view to) {
  int f = StateIndex(from), t = StateIndex(to);
  if (f < 0 || t < 0 || t <= f) return false;
  // Closing is the last step after resolving; everything else may skip ahead.
  if (to == "closed") return from == "resolved";
  return true;
}

json IncidentJson(const IncidentRecord& r) {
  json details = json::parse(r.details_json, nullptr, /*allow_exceptions=*/false);
  json playbook = r.playbook_json.empty() ? json(nullptr) : json::parse(r.playbook_json, nullptr, false);
  return {{"incident_id", r.incident_id},
          {"tenant_id", r.tenant_id.empty() ? json(nullptr) : json(r.tenant_id)},
          {"type", r.type},
          {"severity", r.severity},
          {"state", r.state},
          {"title", r.title},
          {"detector", r.detector},
          {"dedup_key", r.dedup_key.empty() ? json(nullptr) : json(r.dedup_key)},
          {"key_id", r.key_id.empty() ? json(nullptr) : json(r.key_id)},
          {"occurrences", r.occurrences},
          {"details", details.is_discarded() ? json::object() : details},
          {"playbook", playbook.is_discarded() ? json(nullptr) : playbook},
          {"created_by", r.created_by},
          {"created_at", FormatRfc3339(r.created_at)},
          {"updated_at", FormatRfc3339(r.updated_at)},
          {"resolved_at", OptionalTimeJson(r.resolved_at)},
          {"closed_at", OptionalTimeJson(r.closed_at)}};
}

json IncidentEventJson(const IncidentEvent& e) {
  json j = {{"seq", e.seq}, {"at", FormatRfc3339(e.at)}, {"actor", e.actor}, {"action", e.action},
            {"detail", e.detail}};
  if (!e.to_state.empty()) {
    j["from_state"] = e.from_state;
    j["to_state"] = e.to_state;
  }
  return j;
}

void IncidentService::AddOpenedListener(std::function<void(const IncidentRecord&)> listener) {
  opened_listeners_.push_back(std::move(listener));
}

void IncidentService::AddNotifyListener(std::function<void()> listener) {
  notify_listeners_.push_back(std::move(listener));
}

void IncidentService::Notified() {
  for (const auto& l : notify_listeners_) l();
}

WebhookEventRecord IncidentService::Notification(const std::string& type, const IncidentRecord& incident,
                                                 const IncidentEvent& event) {
  return NewWebhookEvent(type, incident.tenant_id,
                         {{"incident", IncidentJson(incident)}, {"event", IncidentEventJson(event)}}, event.at);
}

StatusOr<OpenedIncident> IncidentService::Open(const NewIncident& req) {
  if (!OneOf(IncidentTypes(), req.type)) {
    return FieldError("type", "type must be one of key_compromise, hsm_failure, backend_outage, policy_violation, "
                              "security_alert, compliance_failure");
  }
  if (!OneOf(IncidentSeverities(), req.severity)) {
    return FieldError("severity", "severity must be one of low, medium, high, critical");
  }
  if (req.title.empty() || req.title.size() > kMaxTitle) {
    return FieldError("title", "title must be 1 to " + std::to_string(kMaxTitle) + " characters");
  }
  if (req.dedup_key.size() > kMaxDedupKey) {
    return FieldError("dedup_key", "dedup_key is longer than " + std::to_string(kMaxDedupKey) + " characters");
  }
  if (!req.details.is_object()) return FieldError("details", "details must be a JSON object");
  std::string details = req.details.dump(-1, ' ', false, json::error_handler_t::replace);
  if (details.size() > kMaxDetails) return FieldError("details", "details are larger than 16 KiB");
  if (req.actor.empty()) return FieldError("actor", "an incident needs an actor");
  if (!req.tenant_id.empty()) {
    RETURN_IF_ERROR(ValidateTenantId(req.tenant_id));
    RETURN_IF_ERROR(store_.GetTenant(req.tenant_id).status());
  }
  if (!req.key_id.empty()) {
    auto key = store_.GetKey(req.key_id);
    if (!key.ok() || key->tenant_id != req.tenant_id) {
      if (!key.ok() && key.status().code() != StatusCode::kNotFound) return key.status();
      return FieldError("key_id", "tenant '" + req.tenant_id + "' has no key '" + Clip(req.key_id, 64) + "'");
    }
  }

  TimePoint now = clock_.Now();
  // Two rounds cover both races: an insert losing to a concurrent one (fold
  // into the winner) and a fold losing to a resolve (insert a fresh one).
  for (int round = 0; round < 3; ++round) {
    if (!req.dedup_key.empty()) {
      auto open = store_.FindOpenIncident(req.tenant_id, req.type, req.dedup_key);
      if (open.ok()) {
        IncidentEvent e;
        e.incident_id = open->incident_id;
        e.at = now;
        e.actor = req.actor;
        e.action = "detected_again";
        e.detail = Clip(req.title, kMaxDetail);
        IncidentRecord folded = *open;
        folded.occurrences += 1;
        folded.updated_at = std::max(folded.updated_at, now);
        Status st = store_.FoldIncident(open->incident_id, e, {Notification("incident.detected_again", folded, e)});
        if (st.ok()) {
          Notified();
          return OpenedIncident{folded, false};
        }
        if (st.code() != StatusCode::kFailedPrecondition && st.code() != StatusCode::kNotFound) return st;
        continue;  // resolved meanwhile: open a new one
      }
      if (open.status().code() != StatusCode::kNotFound) return open.status();
    }
    IncidentRecord r;
    r.incident_id = "inc_" + crypto::RandomHex(8);
    r.tenant_id = req.tenant_id;
    r.type = req.type;
    r.severity = req.severity;
    r.state = "open";
    r.title = req.title;
    r.detector = req.detector.empty() ? "manual" : req.detector;
    r.dedup_key = req.dedup_key;
    r.key_id = req.key_id;
    r.occurrences = 1;
    r.details_json = details;
    r.created_by = req.actor;
    r.created_at = now;
    r.updated_at = now;
    IncidentEvent e;
    e.incident_id = r.incident_id;
    e.at = now;
    e.actor = req.actor;
    e.action = "opened";
    e.to_state = "open";
    e.detail = Clip(r.severity + " " + r.type + ": " + r.title, kMaxDetail);
    Status st = store_.InsertIncident(r, e, {Notification("incident.opened", r, e)});
    if (st.ok()) {
      Notified();
      for (const auto& l : opened_listeners_) l(r);
      return OpenedIncident{r, true};
    }
    if (st.code() != StatusCode::kAlreadyExists || req.dedup_key.empty()) return st;
  }
  return AbortedError("incident detection kept racing with concurrent changes; retry");
}

StatusOr<IncidentRecord> IncidentService::Transition(const std::string& incident_id, const std::string& to_state,
                                                     const std::string& actor, const std::string& detail) {
  if (StateIndex(to_state) < 0) {
    return FieldError("state", "state must be one of open, investigating, contained, rotating, resigning, "
                               "resolved, closed");
  }
  if (detail.size() > kMaxDetail) return FieldError("detail", "detail is longer than 2000 characters");
  ASSIGN_OR_RETURN(IncidentRecord r, store_.GetIncident(incident_id));
  if (!IncidentTransitionAllowed(r.state, to_state)) {
    return FailedPreconditionError("incident " + incident_id + " cannot move from " + r.state + " to " + to_state +
                                   (to_state == "closed" ? " (resolve it first)" : " (states only move forward)"))
        .WithDetail("field", "state");
  }
  TimePoint now = clock_.Now();
  IncidentEvent e;
  e.incident_id = incident_id;
  e.at = now;
  e.actor = actor;
  e.action = "state_changed";
  e.from_state = r.state;
  e.to_state = to_state;
  e.detail = detail;
  const std::string from = r.state;
  r.state = to_state;
  r.updated_at = std::max(r.updated_at, now);
  if (to_state == "resolved" && !r.resolved_at) r.resolved_at = now;
  if (to_state == "closed" && !r.closed_at) r.closed_at = now;
  std::vector<WebhookEventRecord> notify = {Notification("incident.state_changed", r, e)};
  if (to_state == "resolved") notify.push_back(Notification("incident.resolved", r, e));
  RETURN_IF_ERROR(store_.TransitionIncident(incident_id, from, e, notify));
  Notified();
  return r;
}

StatusOr<IncidentRecord> IncidentService::AdvanceTo(const std::string& incident_id, const std::string& to_state,
                                                    const std::string& actor, const std::string& detail) {
  ASSIGN_OR_RETURN(IncidentRecord r, store_.GetIncident(incident_id));
  if (StateIndex(r.state) >= StateIndex(to_state)) return r;
  return Transition(incident_id, to_state, actor, detail);
}

Status IncidentService::RecordAction(const std::string& incident_id, const std::string& actor,
                                     const std::string& action, const std::string& detail, bool notify) {
  if (detail.size() > kMaxDetail) return FieldError("detail", "detail is longer than 2000 characters");
  IncidentEvent e;
  e.incident_id = incident_id;
  e.at = clock_.Now();
  e.actor = actor;
  e.action = action;
  e.detail = detail;
  std::vector<WebhookEventRecord> events;
  if (notify) {
    ASSIGN_OR_RETURN(IncidentRecord r, store_.GetIncident(incident_id));
    events.push_back(Notification("incident.action", r, e));
  }
  RETURN_IF_ERROR(store_.AppendIncidentEvent(e, events));
  if (notify) Notified();
  return Status::Ok();
}

}  // namespace concierge::core
