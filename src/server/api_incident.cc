// REST routes for incidents and webhooks, and the detectors' view of finished
// requests.
//
//   GET  /api/v1/incidents[?tenant_id=&state=&open=true&limit=]      incident:read
//   POST /api/v1/incidents                                           incident:manage
//   GET  /api/v1/incidents/{id}                                      incident:read
//   GET  /api/v1/incidents/{id}/timeline                             incident:read
//   GET  /api/v1/incidents/{id}/report[?format=json|html]            incident:read
//   POST /api/v1/incidents/{id}/transition {state, detail}           incident:manage
//   POST /api/v1/incidents/{id}/resolve {detail}                     incident:manage
//   POST /api/v1/incidents/{id}/notes {text}                         incident:manage
//   POST /api/v1/incidents/{id}/respond {since}                      incident:manage
//   GET  /api/v1/webhooks[?tenant_id=]   POST /api/v1/webhooks       incident:manage
//   GET|DELETE /api/v1/webhooks/{id}, GET /api/v1/webhooks/{id}/deliveries
//
// Scope: an incident or webhook of another tenant (or a global one, for a
// tenant-scoped key) is reported as missing, like keys, so ids do not leak.
#include <nlohmann/json.hpp>

#include "core/incident_report.h"
#include "server/api_internal.h"
#include "server/log.h"

namespace concierge::server {
namespace {

StatusOr<IncidentRecord> LoadIncident(const RouteCtx& c, const std::string& id, Permission permission) {
  auto inc = c.d.incidents->Get(id);
  if (!inc.ok()) return inc.status();
  RETURN_IF_ERROR(AllowScoped(c, permission, inc->tenant_id, "incident " + id));
  return inc;
}

StatusOr<HttpResponse> ListIncidents(const RouteCtx& c) {
  IncidentQuery q;
  ASSIGN_OR_RETURN(q.tenant_id, ListingScope(c, Permission::kIncidentRead));
  q.state = QueryParam(c.req, "state");
  const std::string open = QueryParam(c.req, "open");
  if (!open.empty() && open != "true" && open != "false") return FieldError("open", "open must be true or false");
  q.open_only = open == "true";
  if (std::string limit = QueryParam(c.req, "limit"); !limit.empty()) {
    auto v = ParseInt(limit, 1, 1000);
    if (!v) return FieldError("limit", "limit must be an integer from 1 to 1000");
    q.limit = static_cast<int>(*v);
  }
  ASSIGN_OR_RETURN(auto list, c.d.incidents->List(q));
  json out = json::array();
  for (const auto& r : list) out.push_back(core::IncidentJson(r));
  return JsonResponse(200, {{"incidents", out}});
}

StatusOr<HttpResponse> CreateIncident(const RouteCtx& c) {
  ASSIGN_OR_RETURN(json body, ParseBody(c.req.body));
  RETURN_IF_ERROR(OnlyFields(body, {"tenant_id", "type", "severity", "title", "key_id", "dedup_key", "details"}));
  core::NewIncident n;
  ASSIGN_OR_RETURN(n.tenant_id, StringField(body, "tenant_id", false));
  RETURN_IF_ERROR(c.d.auth->Authorize(c.p, Permission::kIncidentManage, n.tenant_id));
  ASSIGN_OR_RETURN(n.type, StringField(body, "type", true));
  ASSIGN_OR_RETURN(n.severity, StringField(body, "severity", true));
  ASSIGN_OR_RETURN(n.title, StringField(body, "title", true));
  ASSIGN_OR_RETURN(n.key_id, StringField(body, "key_id", false));
  ASSIGN_OR_RETURN(n.dedup_key, StringField(body, "dedup_key", false));
  if (auto it = body.find("details"); it != body.end() && !it->is_null()) n.details = *it;
  n.actor = c.p.id;
  ASSIGN_OR_RETURN(core::OpenedIncident opened, c.d.incidents->Open(n));
  Log(LogLevel::kInfo, opened.created ? "incident_opened" : "incident_folded",
      {{"incident_id", opened.incident.incident_id}, {"tenant_id", n.tenant_id}, {"type", n.type},
       {"severity", n.severity}, {"actor", c.p.id}});
  json out = core::IncidentJson(opened.incident);
  out["created"] = opened.created;
  return JsonResponse(opened.created ? 201 : 200, out);
}

StatusOr<HttpResponse> IncidentWithTimeline(const RouteCtx& c, const IncidentRecord& inc) {
  ASSIGN_OR_RETURN(auto events, c.d.incidents->Timeline(inc.incident_id));
  json timeline = json::array();
  for (const auto& e : events) timeline.push_back(core::IncidentEventJson(e));
  json out = core::IncidentJson(inc);
  out["timeline"] = std::move(timeline);
  return JsonResponse(200, out);
}

StatusOr<HttpResponse> Transition(const RouteCtx& c, const IncidentRecord& inc, const std::string& to_state) {
  json body = json::object();
  if (!c.req.body.empty()) {
    ASSIGN_OR_RETURN(body, ParseBody(c.req.body));
  }
  std::string state = to_state;
  if (state.empty()) {
    RETURN_IF_ERROR(OnlyFields(body, {"state", "detail"}));
    ASSIGN_OR_RETURN(state, StringField(body, "state", true));
  } else {
    RETURN_IF_ERROR(OnlyFields(body, {"detail"}));
  }
  ASSIGN_OR_RETURN(std::string detail, StringField(body, "detail", false));
  ASSIGN_OR_RETURN(IncidentRecord moved, c.d.incidents->Transition(inc.incident_id, state, c.p.id, detail));
  Log(LogLevel::kInfo, "incident_state_changed",
      {{"incident_id", inc.incident_id}, {"from", inc.state}, {"to", state}, {"actor", c.p.id}});
  return JsonResponse(200, core::IncidentJson(moved));
}

StatusOr<HttpResponse> AddNote(const RouteCtx& c, const IncidentRecord& inc) {
  ASSIGN_OR_RETURN(json body, ParseBody(c.req.body));
  RETURN_IF_ERROR(OnlyFields(body, {"text"}));
  ASSIGN_OR_RETURN(std::string text, StringField(body, "text", true));
  if (text.empty()) return FieldError("text", "text is empty");
  RETURN_IF_ERROR(c.d.incidents->RecordAction(inc.incident_id, c.p.id, "note", text, false));
  return IncidentWithTimeline(c, inc);
}

StatusOr<HttpResponse> Respond(const RouteCtx& c, const IncidentRecord& inc) {
  if (c.d.playbooks == nullptr) return UnavailableError("incident playbooks are not running on this server");
  json body = json::object();
  if (!c.req.body.empty()) {
    ASSIGN_OR_RETURN(body, ParseBody(c.req.body));
  }
  RETURN_IF_ERROR(OnlyFields(body, {"since"}));
  ASSIGN_OR_RETURN(std::string since_text, StringField(body, "since", false));
  std::optional<TimePoint> since;
  if (!since_text.empty()) {
    TimePoint t;
    if (!ParseRfc3339(since_text, &t)) return FieldError("since", "since must be an RFC 3339 time");
    since = t;
  }
  ASSIGN_OR_RETURN(IncidentRecord started, c.d.playbooks->Respond(inc.incident_id, c.p.id, since));
  Log(LogLevel::kInfo, "incident_playbook_started", {{"incident_id", inc.incident_id}, {"actor", c.p.id}});
  return JsonResponse(202, core::IncidentJson(started));
}

StatusOr<HttpResponse> Report(const RouteCtx& c, const IncidentRecord& inc) {
  std::string format = QueryParam(c.req, "format");
  if (format.empty()) format = "json";
  if (format != "json" && format != "html") return FieldError("format", "format must be 'json' or 'html'");
  ASSIGN_OR_RETURN(json report, core::BuildIncidentReport(*c.d.store, inc.incident_id, c.d.clock->Now()));
  if (format == "json") return JsonResponse(200, report);
  HttpResponse r;
  r.content_type = "text/html; charset=utf-8";
  r.body = core::RenderIncidentReportHtml(report);
  // The page embeds only escaped text; forbid scripts and framing outright.
  r.headers.emplace_back("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'");
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  return r;
}

json WebhookJson(const WebhookRecord& w) {
  json types = json::array();
  for (size_t i = 0; i < w.event_types.size();) {
    size_t comma = w.event_types.find(',', i);
    if (comma == std::string::npos) comma = w.event_types.size();
    types.push_back(w.event_types.substr(i, comma - i));
    i = comma + 1;
  }
  return {{"webhook_id", w.webhook_id},
          {"tenant_id", w.tenant_id.empty() ? json(nullptr) : json(w.tenant_id)},
          {"url", w.url},
          {"events", types},
          {"enabled", !w.disabled_at.has_value()},
          {"created_by", w.created_by},
          {"created_at", FormatRfc3339(w.created_at)},
          {"disabled_at", w.disabled_at ? json(FormatRfc3339(*w.disabled_at)) : json(nullptr)}};
}

StatusOr<HttpResponse> CreateWebhook(const RouteCtx& c) {
  ASSIGN_OR_RETURN(json body, ParseBody(c.req.body));
  RETURN_IF_ERROR(OnlyFields(body, {"tenant_id", "url", "events", "secret"}));
  core::NewWebhook n;
  ASSIGN_OR_RETURN(n.tenant_id, StringField(body, "tenant_id", false));
  RETURN_IF_ERROR(c.d.auth->Authorize(c.p, Permission::kIncidentManage, n.tenant_id));
  ASSIGN_OR_RETURN(n.url, StringField(body, "url", true));
  if (auto it = body.find("events"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) return FieldError("events", "events must be an array of event types");
    for (const auto& e : *it) {
      if (!e.is_string()) return FieldError("events", "events must be an array of event types");
      n.event_types.push_back(e.get<std::string>());
    }
  }
  ASSIGN_OR_RETURN(std::string secret, StringField(body, "secret", false));
  if (!secret.empty()) n.secret = SecretBytes::FromString(secret, SecretAccess::Grant());
  std::fill(secret.begin(), secret.end(), '\0');
  n.actor = c.p.id;
  ASSIGN_OR_RETURN(core::CreatedWebhook created, c.d.webhooks->Create(std::move(n)));
  Log(LogLevel::kInfo, "webhook_created",
      {{"webhook_id", created.record.webhook_id}, {"tenant_id", created.record.tenant_id}, {"actor", c.p.id}});
  json out = WebhookJson(created.record);
  out["secret"] = std::string(created.secret.RevealString(SecretAccess::Grant()));  // shown once
  return JsonResponse(201, out);
}

StatusOr<HttpResponse> ListWebhooks(const RouteCtx& c) {
  ASSIGN_OR_RETURN(std::optional<std::string> tenant, ListingScope(c, Permission::kIncidentManage));
  ASSIGN_OR_RETURN(auto list, c.d.webhooks->List(tenant));
  json out = json::array();
  for (const auto& w : list) out.push_back(WebhookJson(w));
  return JsonResponse(200, {{"webhooks", out}});
}

StatusOr<HttpResponse> WebhookRoute(const RouteCtx& c, const std::string& id, const std::string& sub) {
  ASSIGN_OR_RETURN(WebhookRecord w, c.d.webhooks->Get(id));
  RETURN_IF_ERROR(AllowScoped(c, Permission::kIncidentManage, w.tenant_id, "webhook " + id));
  if (sub == "deliveries") {
    int limit = 100;
    if (std::string l = QueryParam(c.req, "limit"); !l.empty()) {
      auto v = ParseInt(l, 1, 1000);
      if (!v) return FieldError("limit", "limit must be an integer from 1 to 1000");
      limit = static_cast<int>(*v);
    }
    ASSIGN_OR_RETURN(auto deliveries, c.d.store->ListWebhookDeliveries(id, limit));
    json out = json::array();
    for (const auto& d : deliveries) {
      out.push_back({{"event_id", d.event_id},
                     {"state", d.state},
                     {"attempts", d.attempts},
                     {"next_attempt_at", d.state == "pending" ? json(FormatRfc3339(d.next_attempt_at)) : json(nullptr)},
                     {"last_status", d.last_status == 0 ? json(nullptr) : json(d.last_status)},
                     {"last_error", d.last_error.empty() ? json(nullptr) : json(d.last_error)},
                     {"created_at", FormatRfc3339(d.created_at)},
                     {"delivered_at", d.delivered_at ? json(FormatRfc3339(*d.delivered_at)) : json(nullptr)}});
    }
    return JsonResponse(200, {{"webhook_id", id}, {"deliveries", out}});
  }
  if (c.req.method == "DELETE") {
    RETURN_IF_ERROR(c.d.webhooks->Disable(id));
    Log(LogLevel::kInfo, "webhook_disabled", {{"webhook_id", id}, {"actor", c.p.id}});
    ASSIGN_OR_RETURN(w, c.d.webhooks->Get(id));
  }
  return JsonResponse(200, WebhookJson(w));
}

}  // namespace

std::optional<HttpResponse> Api::DispatchIncidents(Call& call, const std::vector<std::string>& s) {
  if (s.size() < 3 || (s[2] != "incidents" && s[2] != "webhooks")) return std::nullopt;
  const std::string& m = call.req.method;
  const bool incidents = s[2] == "incidents";
  // Route shapes first, so a wrong method is a 405 whoever asks.
  const char* allowed = nullptr;
  if (s.size() == 3) {
    allowed = "GET, POST";
  } else if (s.size() == 4) {
    allowed = incidents ? "GET" : "GET, DELETE";
  } else if (s.size() == 5 && incidents && (s[4] == "timeline" || s[4] == "report")) {
    allowed = "GET";
  } else if (s.size() == 5 && incidents &&
             (s[4] == "transition" || s[4] == "resolve" || s[4] == "notes" || s[4] == "respond")) {
    allowed = "POST";
  } else if (s.size() == 5 && !incidents && s[4] == "deliveries") {
    allowed = "GET";
  } else {
    return std::nullopt;
  }
  if (!MethodIn(m, allowed)) return MethodNotAllowed(call.req, allowed);
  if (d_.incidents == nullptr || d_.webhooks == nullptr) {
    return ErrorResponse(UnavailableError("incident response is not configured on this server"), call.request_id);
  }
  API_RETURN_IF_ERROR(call, call.Authenticate(*this));
  RouteCtx c{d_, call.req, *call.principal};
  // State changes are on the audit log: the attempt before, the outcome after.
  std::optional<AuditedChange> change;
  auto begin_change = [&](const std::string& action, const std::string& tenant, const std::string& target) {
    if (m == "GET") return Status::Ok();
    ASSIGN_OR_RETURN(AuditedChange begun, BeginChange(call, action, tenant, target));
    change = std::move(begun);
    return Status::Ok();
  };
  StatusOr<HttpResponse> r = NotFoundError("no route for " + call.req.path);
  if (!incidents) {
    Status audited = begin_change(s.size() == 3 ? "webhook.create" : "webhook.delete", "", s.size() > 3 ? s[3] : "");
    if (!audited.ok()) {
      r = audited;
    } else if (s.size() == 3) {
      r = m == "GET" ? ListWebhooks(c) : CreateWebhook(c);
    } else {
      r = WebhookRoute(c, s[3], s.size() == 5 ? s[4] : "");
    }
  } else if (s.size() == 3) {
    Status audited = begin_change("incident.create", "", "");
    r = !audited.ok() ? StatusOr<HttpResponse>(audited) : m == "GET" ? ListIncidents(c) : CreateIncident(c);
  } else {
    const std::string sub = s.size() == 5 ? s[4] : "";
    const bool read = m == "GET";
    auto inc = LoadIncident(c, s[3], read ? Permission::kIncidentRead : Permission::kIncidentManage);
    Status audited = inc.ok() ? begin_change("incident." + sub, inc->tenant_id, inc->incident_id) : Status::Ok();
    if (!inc.ok()) {
      r = inc.status();
    } else if (!audited.ok()) {
      r = audited;
    } else if (sub.empty() || sub == "timeline") {
      r = IncidentWithTimeline(c, *inc);
    } else if (sub == "report") {
      r = Report(c, *inc);
    } else if (sub == "transition") {
      r = Transition(c, *inc, "");
    } else if (sub == "resolve") {
      r = Transition(c, *inc, "resolved");
    } else if (sub == "notes") {
      r = AddNote(c, *inc);
    } else if (sub == "respond") {
      r = Respond(c, *inc);
    }
  }
  if (change) change->Finish(r.status(), r.ok() ? json{{"http_status", r->status}} : json::object());
  if (!r.ok()) return ErrorResponse(r.status(), call.request_id);
  return *std::move(r);
}

void Api::ObserveForDetectors(const Call& call, const HttpResponse& response) {
  if (response.status == 401) {
    d_.detectors->OnAuthFailure(call.req.remote_address);
    return;
  }
  if (response.status != 429) return;
  // Only the 24h cap is an incident; the per-second rate limit is throttling.
  if (response.body.find("max_issuance_per_24h") == std::string::npos) return;
  std::vector<std::string> s = Segments(call.req.path);
  if (s.size() >= 5 && s[2] == "tenants" && s[4] == "sign") {
    json body = json::parse(response.body, nullptr, /*allow_exceptions=*/false);
    std::string message = body.is_object() ? body.value("message", std::string()) : std::string();
    d_.detectors->OnIssuanceCapRefused(s[3], message);
  }
}

}  // namespace concierge::server
