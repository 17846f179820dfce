// REST routes of the rotation engine and the key lifecycle (docs/rotation.md):
//
//   GET  /api/v1/tenants/{t}/rotations          calendar + rotations      tenant:read
//   POST /api/v1/tenants/{t}/rotations          schedule                  rotation:manage
//   GET  /api/v1/rotations/{id}                 status, phases, timeline  tenant:read
//   POST /api/v1/rotations/{id}/execute         run now (202)             rotation:manage
//   POST /api/v1/rotations/{id}/approve         second-person approval    rotation:approve
//   POST /api/v1/rotations/{id}/rollback        restore the previous key  rotation:manage
//   POST /api/v1/rotations/{id}/cancel          cancel a waiting one      rotation:manage
//   GET  /api/v1/rotations/{id}/evidence        Rotation Evidence Pack    tenant:read
//   GET  /api/v1/evidence-key                   evidence public key       public
//   POST /api/v1/tenants/{t}/keys/{k}/state     retire/compromise/destroy key:manage
#include <string>
#include <vector>

#include "server/api_internal.h"
#include "server/log.h"

namespace concierge::server {
namespace {

Status NoRotationEngine() { return UnavailableError("rotations are not configured on this server"); }

json OptionalTime(const std::optional<TimePoint>& t) { return t ? json(FormatRfc3339(*t)) : json(nullptr); }

json NullIfEmpty(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

// Status of each phase for progress displays: done, running, waiting, failed,
// skipped or pending.
json PhasesJson(const RotationRecord& r) {
  const int current = core::RotationPhaseNumber(r.phase);
  const bool closed_early = r.state == "failed" || r.state == "rolled_back" || r.state == "cancelled";
  json out = json::array();
  for (size_t i = 0; i < core::kRotationPhases.size(); ++i) {
    const int n = static_cast<int>(i) + 1;
    std::string status = "pending";
    if (r.state == "completed" || n < current) {
      status = "done";
    } else if (n == current) {
      if (r.state == "running") status = "running";
      else if (r.state == "awaiting_certificate") status = "waiting";
      else if (r.state == "cancelled") status = "skipped";
      // A manual rollback closes a rotation that had completed every phase.
      else if (r.state == "rolled_back" && r.phase == "complete") status = "done";
      else if (closed_early) status = "failed";
    } else if (closed_early) {
      status = "skipped";
    }
    out.push_back({{"name", std::string(core::kRotationPhases[i])}, {"status", status}});
  }
  return out;
}

json CanarySummary(const std::string& results_json) {
  json results = json::parse(results_json.empty() ? "[]" : results_json, nullptr, false);
  int total = 0, passed = 0, ledger = 0;
  if (results.is_array()) {
    for (const json& r : results) {
      ++total;
      if (r.value("ok", false)) ++passed;
      if (r.value("kind", "") == "resample") ++ledger;
    }
  }
  return {{"total", total}, {"passed", passed}, {"failed", total - passed}, {"ledger_resigned", ledger}};
}

json RotationJson(const core::RotationView& v, bool detailed) {
  const RotationRecord& r = v.record;
  json j = {{"rotation_id", r.rotation_id},
            {"tenant_id", r.tenant_id},
            {"state", r.state},
            {"phase", NullIfEmpty(r.phase)},
            {"phase_number", v.phase_number},
            {"phase_count", core::kRotationPhases.size()},
            {"trigger", r.trigger},
            {"scheduled_time", FormatRfc3339(r.scheduled_at)},
            {"owner", NullIfEmpty(r.owner)},
            {"approval_required", r.approval_required},
            {"approval_pending", v.approval_pending},
            {"approved_by", NullIfEmpty(r.approved_by)},
            {"approved_at", OptionalTime(r.approved_at)},
            {"created_by", r.created_by},
            {"certificate_source", NullIfEmpty(r.cert_source)},
            {"policy_version", r.policy_version ? json(r.policy_version) : json(nullptr)},
            {"policy_hash", NullIfEmpty(r.policy_hash)},
            {"old_key_id", NullIfEmpty(r.old_key_id)},
            {"new_key_id", NullIfEmpty(r.new_key_id)},
            {"certificate_serial", NullIfEmpty(r.cert_serial)},
            {"canary", CanarySummary(r.canary_results)},
            {"error", NullIfEmpty(r.error)},
            {"warning", v.warning},
            {"overdue", v.overdue},
            {"rollback_allowed", v.rollback_allowed},
            {"started_at", OptionalTime(r.started_at)},
            {"cutover_at", OptionalTime(r.cutover_at)},
            {"grace_until", OptionalTime(r.grace_until)},
            {"finished_at", OptionalTime(r.finished_at)},
            {"created_at", FormatRfc3339(r.created_at)},
            {"updated_at", FormatRfc3339(r.updated_at)},
            {"version", r.version}};
  if (detailed) {
    j["phases"] = PhasesJson(r);
    json timeline = json::array();
    for (const RotationEvent& e : v.events) {
      timeline.push_back({{"seq", e.seq},
                          {"at", FormatRfc3339(e.at)},
                          {"phase", NullIfEmpty(e.phase)},
                          {"event", e.event},
                          {"detail", e.detail},
                          {"actor", e.actor}});
    }
    j["timeline"] = std::move(timeline);
    json canary = json::parse(r.canary_results.empty() ? "[]" : r.canary_results, nullptr, false);
    j["canary_results"] = canary.is_discarded() ? json::array() : canary;
    j["csr_pem"] = NullIfEmpty(r.csr_pem);
  }
  return j;
}

json CalendarJson(const core::TenantCalendar& c, std::chrono::hours advance_warning) {
  return {{"rotate_every_days", c.rotate_every_days},
          {"rotation_grace_days", c.rotation_grace_days},
          {"advance_warning_days", advance_warning.count() / 24},
          {"active_key_id", NullIfEmpty(c.active_key_id)},
          {"active_since", OptionalTime(c.active_since)},
          {"next_due", OptionalTime(c.next_due)},
          {"warning", c.warning},
          {"overdue", c.overdue}};
}

// An optional JSON body: empty means {}.
StatusOr<json> OptionalBody(const std::string& body) {
  if (body.empty()) return json::object();
  return ParseBody(body);
}

}  // namespace

std::optional<HttpResponse> Api::DispatchRotation(Call& call, const std::vector<std::string>& s) {
  auto is = [&](std::initializer_list<const char*> pattern) { return PathIs(s, pattern); };
  auto post_only = [&](HttpResponse (Api::*handler)(Call&, const std::string&)) -> HttpResponse {
    return call.req.method == "POST" ? (this->*handler)(call, s[3]) : MethodNotAllowed(call.req, "POST");
  };
  const std::string& m = call.req.method;
  if (is({"api", "v1", "tenants", "*", "rotations"})) {
    if (m == "GET") return ListRotations(call, s[3]);
    if (m == "POST") return ScheduleRotation(call, s[3]);
    return MethodNotAllowed(call.req, "GET, POST");
  }
  if (is({"api", "v1", "tenants", "*", "keys", "*", "state"})) {
    return m == "POST" ? SetKeyState(call, s[3], s[5]) : MethodNotAllowed(call.req, "POST");
  }
  if (is({"api", "v1", "evidence-key"})) return m == "GET" ? EvidenceKey(call) : MethodNotAllowed(call.req, "GET");
  if (s.size() < 4 || s[2] != "rotations") return std::nullopt;
  if (is({"api", "v1", "rotations", "*"})) return m == "GET" ? GetRotation(call, s[3]) : MethodNotAllowed(call.req, "GET");
  if (is({"api", "v1", "rotations", "*", "execute"})) return post_only(&Api::ExecuteRotation);
  if (is({"api", "v1", "rotations", "*", "approve"})) return post_only(&Api::ApproveRotation);
  if (is({"api", "v1", "rotations", "*", "rollback"})) return post_only(&Api::RollbackRotation);
  if (is({"api", "v1", "rotations", "*", "cancel"})) return post_only(&Api::CancelRotation);
  if (is({"api", "v1", "rotations", "*", "evidence"})) {
    return m == "GET" ? RotationEvidence(call, s[3]) : MethodNotAllowed(call.req, "GET");
  }
  return std::nullopt;
}

StatusOr<core::RotationView> Api::AuthorizedRotation(Call& call, core::Permission permission,
                                                     const std::string& rotation_id) {
  RETURN_IF_ERROR(call.Authenticate(*this));
  if (d_.rotations == nullptr) return NoRotationEngine();
  auto view = d_.rotations->Get(rotation_id);
  const std::string& scope = call.principal->tenant_id;
  if (!view.ok() || (!scope.empty() && scope != view->record.tenant_id)) {
    if (!view.ok() && view.status().code() != StatusCode::kNotFound) return view.status();
    return NotFoundError("rotation " + rotation_id + " not found");
  }
  RETURN_IF_ERROR(d_.auth->Authorize(*call.principal, permission, view->record.tenant_id));
  return view;
}

// Records the attempt on the audit log, runs `change`, records its outcome.
StatusOr<RotationRecord> Api::AuditedRotationChange(Call& call, const char* action, const std::string& rotation_id,
                                                    const std::function<StatusOr<RotationRecord>()>& change) {
  ASSIGN_OR_RETURN(core::RotationView view, d_.rotations->Get(rotation_id));
  ASSIGN_OR_RETURN(AuditedChange audited, BeginChange(call, action, view.record.tenant_id, rotation_id));
  StatusOr<RotationRecord> result = change();
  audited.Finish(result.status(), result.ok() ? json{{"state", result->state}} : json::object());
  return result;
}

HttpResponse Api::ScheduleRotation(Call& call, const std::string& tenant) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kRotationManage, tenant));
  if (d_.rotations == nullptr) return ErrorResponse(NoRotationEngine(), call.request_id);
  API_ASSIGN_OR_RETURN(call, json body, OptionalBody(call.req.body));
  API_RETURN_IF_ERROR(call, OnlyFields(body, {"scheduled_time", "owner", "approval_required", "certificate"}));
  core::ScheduleRequest req;
  API_ASSIGN_OR_RETURN(call, std::string when, StringField(body, "scheduled_time", false));
  if (!when.empty()) {
    TimePoint t;
    if (!ParseRfc3339(when, &t)) {
      return ErrorResponse(FieldError("scheduled_time", "scheduled_time must be an RFC 3339 time, e.g. "
                                                        "2026-11-23T10:00:00Z"),
                           call.request_id);
    }
    req.scheduled_at = t;
  }
  API_ASSIGN_OR_RETURN(call, req.owner, StringField(body, "owner", false));
  API_ASSIGN_OR_RETURN(call, req.cert_source, StringField(body, "certificate", false));
  if (auto it = body.find("approval_required"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean()) {
      return ErrorResponse(FieldError("approval_required", "approval_required must be true or false"), call.request_id);
    }
    req.approval_required = it->get<bool>();
  }
  API_ASSIGN_OR_RETURN(call, AuditedChange change,
                       BeginChange(call, "rotation.schedule", tenant, tenant,
                                   {{"scheduled_time", when}, {"approval_required", req.approval_required}}));
  StatusOr<RotationRecord> scheduled = d_.rotations->Schedule(tenant, req, *call.principal);
  change.Finish(scheduled.status(), scheduled.ok() ? json{{"rotation_id", scheduled->rotation_id}} : json::object());
  API_ASSIGN_OR_RETURN(call, RotationRecord r, std::move(scheduled));
  Log(LogLevel::kInfo, "rotation_scheduled",
      {{"rotation_id", r.rotation_id}, {"tenant_id", tenant}, {"scheduled_time", FormatRfc3339(r.scheduled_at)},
       {"approval_required", r.approval_required}, {"actor", call.principal->id}, {"request_id", call.request_id}});
  API_ASSIGN_OR_RETURN(call, core::RotationView view, d_.rotations->Get(r.rotation_id));
  return JsonResponse(201, RotationJson(view, /*detailed=*/true));
}

HttpResponse Api::ListRotations(Call& call, const std::string& tenant) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kTenantRead, tenant));
  if (d_.rotations == nullptr) return ErrorResponse(NoRotationEngine(), call.request_id);
  API_ASSIGN_OR_RETURN(call, auto views, d_.rotations->List(tenant));
  json rotations = json::array();
  for (const auto& v : views) rotations.push_back(RotationJson(v, /*detailed=*/false));
  json out = {{"tenant_id", tenant}, {"rotations", rotations}};
  // A deleted tenant keeps its history but has no calendar.
  if (auto calendar = d_.rotations->Calendar(tenant); calendar.ok()) {
    out["calendar"] = CalendarJson(*calendar, d_.rotations->options().advance_warning);
  }
  return JsonResponse(200, out);
}

HttpResponse Api::GetRotation(Call& call, const std::string& rotation_id) {
  API_ASSIGN_OR_RETURN(call, core::RotationView view, AuthorizedRotation(call, Permission::kTenantRead, rotation_id));
  return JsonResponse(200, RotationJson(view, /*detailed=*/true));
}

HttpResponse Api::ExecuteRotation(Call& call, const std::string& rotation_id) {
  API_RETURN_IF_ERROR(call, AuthorizedRotation(call, Permission::kRotationManage, rotation_id).status());
  API_ASSIGN_OR_RETURN(call, RotationRecord r, AuditedRotationChange(call, "rotation.execute", rotation_id, [&] {
                         return d_.rotations->RequestExecution(rotation_id, *call.principal);
                       }));
  // The phases run on the scheduler thread; the client follows GET .../{id}.
  if (d_.rotation_scheduler != nullptr) d_.rotation_scheduler->Submit(rotation_id);
  Log(LogLevel::kInfo, "rotation_execute",
      {{"rotation_id", rotation_id}, {"tenant_id", r.tenant_id}, {"actor", call.principal->id},
       {"request_id", call.request_id}});
  API_ASSIGN_OR_RETURN(call, core::RotationView view, d_.rotations->Get(rotation_id));
  HttpResponse resp = JsonResponse(202, RotationJson(view, /*detailed=*/true));
  resp.headers.emplace_back("Location", "/api/v1/rotations/" + rotation_id);
  return resp;
}

HttpResponse Api::ApproveRotation(Call& call, const std::string& rotation_id) {
  API_RETURN_IF_ERROR(call, AuthorizedRotation(call, Permission::kRotationApprove, rotation_id).status());
  API_ASSIGN_OR_RETURN(call, RotationRecord r, AuditedRotationChange(call, "rotation.approve", rotation_id, [&] {
                         return d_.rotations->Approve(rotation_id, *call.principal);
                       }));
  Log(LogLevel::kInfo, "rotation_approved",
      {{"rotation_id", rotation_id}, {"tenant_id", r.tenant_id}, {"actor", call.principal->id},
       {"request_id", call.request_id}});
  API_ASSIGN_OR_RETURN(call, core::RotationView view, d_.rotations->Get(rotation_id));
  return JsonResponse(200, RotationJson(view, /*detailed=*/true));
}

HttpResponse Api::RollbackRotation(Call& call, const std::string& rotation_id) {
  API_RETURN_IF_ERROR(call, AuthorizedRotation(call, Permission::kRotationManage, rotation_id).status());
  API_ASSIGN_OR_RETURN(call, json body, OptionalBody(call.req.body));
  API_RETURN_IF_ERROR(call, OnlyFields(body, {"reason"}));
  API_ASSIGN_OR_RETURN(call, std::string reason, StringField(body, "reason", false));
  if (reason.size() > 500) return ErrorResponse(FieldError("reason", "reason is longer than 500 characters"), call.request_id);
  API_ASSIGN_OR_RETURN(call, RotationRecord r, AuditedRotationChange(call, "rotation.rollback", rotation_id, [&] {
                         return d_.rotations->Rollback(rotation_id, *call.principal, reason);
                       }));
  Log(LogLevel::kWarn, "rotation_rolled_back",
      {{"rotation_id", rotation_id}, {"tenant_id", r.tenant_id}, {"restored_key_id", r.old_key_id},
       {"actor", call.principal->id}, {"request_id", call.request_id}});
  API_ASSIGN_OR_RETURN(call, core::RotationView view, d_.rotations->Get(rotation_id));
  return JsonResponse(200, RotationJson(view, /*detailed=*/true));
}

HttpResponse Api::CancelRotation(Call& call, const std::string& rotation_id) {
  API_RETURN_IF_ERROR(call, AuthorizedRotation(call, Permission::kRotationManage, rotation_id).status());
  API_ASSIGN_OR_RETURN(call, RotationRecord r, AuditedRotationChange(call, "rotation.cancel", rotation_id, [&] {
                         return d_.rotations->Cancel(rotation_id, *call.principal);
                       }));
  Log(LogLevel::kInfo, "rotation_cancelled",
      {{"rotation_id", rotation_id}, {"tenant_id", r.tenant_id}, {"actor", call.principal->id},
       {"request_id", call.request_id}});
  API_ASSIGN_OR_RETURN(call, core::RotationView view, d_.rotations->Get(rotation_id));
  return JsonResponse(200, RotationJson(view, /*detailed=*/true));
}

HttpResponse Api::RotationEvidence(Call& call, const std::string& rotation_id) {
  API_RETURN_IF_ERROR(call, AuthorizedRotation(call, Permission::kTenantRead, rotation_id).status());
  if (d_.evidence == nullptr) return ErrorResponse(UnavailableError("evidence packs are not configured"), call.request_id);
  RotationEvidenceRecord pack;
  if (auto it = call.req.query.find("outcome"); it != call.req.query.end()) {
    // An earlier pack, e.g. the "completed" one of a rotation rolled back later.
    API_ASSIGN_OR_RETURN(call, pack, d_.store->GetRotationEvidence(rotation_id, it->second));
  } else {
    API_ASSIGN_OR_RETURN(call, pack, d_.evidence->Ensure(rotation_id));
  }
  HttpResponse r;
  r.content_type = "application/x-tar";
  r.body.assign(pack.pack.begin(), pack.pack.end());
  r.headers.emplace_back("Content-Disposition",
                         "attachment; filename=\"" + rotation_id + "-" + pack.outcome + "-evidence.tar\"");
  r.headers.emplace_back("X-Evidence-Outcome", pack.outcome);
  r.headers.emplace_back("X-Evidence-Sha256", pack.sha256);
  r.headers.emplace_back("X-Evidence-Created-At", FormatRfc3339(pack.created_at));
  return r;
}

// Public like the CA certificate: verifiers pin this key to check packs
// offline (keyctl evidence verify --trusted-key).
HttpResponse Api::EvidenceKey(Call& call) {
  if (d_.evidence == nullptr) return ErrorResponse(UnavailableError("evidence packs are not configured"), call.request_id);
  API_ASSIGN_OR_RETURN(call, EvidenceKeyRecord key, d_.evidence->Key());
  HttpResponse r = PemResponse(key.public_key_pem);
  r.headers.emplace_back("X-Key-Fingerprint", key.fingerprint);
  r.headers.emplace_back("X-Algorithm", key.algorithm);
  return r;
}

HttpResponse Api::SetKeyState(Call& call, const std::string& tenant, const std::string& key_id) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kKeyManage, tenant));
  API_ASSIGN_OR_RETURN(call, json body, ParseBody(call.req.body));
  API_RETURN_IF_ERROR(call, OnlyFields(body, {"state", "reason"}));
  API_ASSIGN_OR_RETURN(call, std::string state, StringField(body, "state", true));
  API_ASSIGN_OR_RETURN(call, std::string reason, StringField(body, "reason", false));
  API_ASSIGN_OR_RETURN(call, AuditedChange change,
                       BeginChange(call, "key.set_state", tenant, key_id, {{"state", state}}));
  StatusOr<KeyRecord> changed = d_.tenants->SetKeyState(tenant, key_id, state);
  change.Finish(changed.status());
  API_ASSIGN_OR_RETURN(call, KeyRecord key, std::move(changed));
  Log(LogLevel::kWarn, "key_state_changed",
      {{"tenant_id", tenant}, {"key_id", key_id}, {"state", key.state}, {"reason", reason},
       {"actor", call.principal->id}, {"request_id", call.request_id}});
  return JsonResponse(200, KeyJson(key));
}

std::string Api::ResumeAwaitingRotation(const std::string& tenant, const std::string& key_id) {
  if (d_.rotations == nullptr || d_.rotation_scheduler == nullptr) return "";
  auto views = d_.rotations->List(tenant);
  if (!views.ok()) return "";
  for (const auto& v : *views) {
    if (v.record.state == "awaiting_certificate" && v.record.new_key_id == key_id) {
      d_.rotation_scheduler->Submit(v.record.rotation_id);
      return v.record.rotation_id;
    }
  }
  return "";
}

}  // namespace concierge::server
