// REST routes for mass re-sign jobs.
//
//   POST /api/v1/tenants/{t}/resign-jobs {compromised_key_id, new_key_id, since}  incident:manage
//   GET  /api/v1/jobs[?tenant_id=&state=]                                          incident:read
//   GET  /api/v1/jobs/{id}              progress: done / total / rate / ETA        incident:read
//   POST /api/v1/jobs/{id}/pause|resume|cancel                                     incident:manage
//   GET  /api/v1/jobs/{id}/results[?after=SEQ&limit=N]  JSONL, one line per original entry
//
// The results are what a publishing pipeline needs to re-embed signatures:
// original seq, asset id, digest, new signature, key id/version, new seq (or
// why the client must re-sign it). With a limit, X-Next-After names the cursor
// of the next page.
#include <nlohmann/json.hpp>

#include <cmath>

#include "server/api_internal.h"
#include "server/log.h"

namespace concierge::server {
namespace {

constexpr int64_t kMaxResultsPerResponse = 2'000'000;

json ProgressJson(const core::JobProgress& p) {
  json j = core::ResignJobJson(p.job);
  const int64_t total = std::max(p.job.total, p.job.processed);
  j["percent"] = total == 0 ? (core::IsFinishedJobState(p.job.state) ? 100.0 : 0.0)
                            : std::floor(1000.0 * static_cast<double>(p.job.processed) / static_cast<double>(total)) /
                                  10.0;
  j["rate_per_second"] = p.rate_per_second ? json(std::round(*p.rate_per_second * 10) / 10) : json(nullptr);
  j["eta_seconds"] = p.eta ? json(p.eta->count()) : json(nullptr);
  j["results"] = "/api/v1/jobs/" + p.job.job_id + "/results";
  return j;
}

StatusOr<HttpResponse> CreateJob(const RouteCtx& c, const std::string& tenant) {
  RETURN_IF_ERROR(c.d.auth->Authorize(c.p, Permission::kIncidentManage, tenant));
  ASSIGN_OR_RETURN(json body, ParseBody(c.req.body));
  RETURN_IF_ERROR(OnlyFields(body, {"compromised_key_id", "new_key_id", "since", "incident_id"}));
  core::NewResignJob req;
  req.tenant_id = tenant;
  ASSIGN_OR_RETURN(req.compromised_key_id, StringField(body, "compromised_key_id", true));
  ASSIGN_OR_RETURN(req.new_key_id, StringField(body, "new_key_id", false));
  ASSIGN_OR_RETURN(req.incident_id, StringField(body, "incident_id", false));
  if (!req.incident_id.empty()) {
    auto inc = c.d.store->GetIncident(req.incident_id);
    if (!inc.ok() || inc->tenant_id != tenant) {
      return FieldError("incident_id", "tenant '" + tenant + "' has no incident '" + req.incident_id.substr(0, 64) + "'");
    }
  }
  ASSIGN_OR_RETURN(std::string since, StringField(body, "since", false));
  if (!since.empty()) {
    TimePoint t;
    if (!ParseRfc3339(since, &t)) return FieldError("since", "since must be an RFC 3339 time");
    req.since = t;
  }
  req.actor = c.p.id;
  ASSIGN_OR_RETURN(ResignJobRecord job, c.d.jobs->Create(req));
  Log(LogLevel::kInfo, "resign_job_created",
      {{"job_id", job.job_id}, {"tenant_id", tenant}, {"compromised_key_id", job.compromised_key_id},
       {"new_key_id", job.new_key_id}, {"actor", c.p.id}});
  return JsonResponse(202, ProgressJson(core::JobProgress{job, std::nullopt, std::nullopt}));
}

StatusOr<HttpResponse> ListJobs(const RouteCtx& c) {
  ASSIGN_OR_RETURN(std::optional<std::string> tenant, ListingScope(c, Permission::kIncidentRead));
  std::vector<std::string> states;
  if (std::string st = QueryParam(c.req, "state"); !st.empty()) states.push_back(st);
  ASSIGN_OR_RETURN(auto jobs, c.d.store->ListResignJobs(tenant, states));
  json out = json::array();
  for (const auto& j : jobs) out.push_back(core::ResignJobJson(j));
  return JsonResponse(200, {{"jobs", out}});
}

StatusOr<HttpResponse> Results(const RouteCtx& c, const ResignJobRecord& job) {
  int64_t after = 0, limit = kMaxResultsPerResponse;
  if (std::string a = QueryParam(c.req, "after"); !a.empty()) {
    auto v = ParseInt(a, 0, INT64_MAX);
    if (!v) return FieldError("after", "after must be a non-negative integer (an original ledger seq)");
    after = *v;
  }
  if (std::string l = QueryParam(c.req, "limit"); !l.empty()) {
    auto v = ParseInt(l, 1, kMaxResultsPerResponse);
    if (!v) return FieldError("limit", "limit must be an integer from 1 to " + std::to_string(kMaxResultsPerResponse));
    limit = *v;
  }
  HttpResponse r;
  r.content_type = "application/x-ndjson";
  int64_t sent = 0;
  bool more = false;
  while (sent < limit) {
    const int page = static_cast<int>(std::min<int64_t>(1000, limit - sent));
    ASSIGN_OR_RETURN(auto results, c.d.ledger->ListResignResults(job.job_id, after, page));
    for (const auto& res : results) {
      r.body += core::ResignResultJson(res).dump(-1, ' ', false, json::error_handler_t::replace);
      r.body.push_back('\n');
      after = res.original_seq;
    }
    sent += static_cast<int64_t>(results.size());
    if (static_cast<int>(results.size()) < page) break;
    more = sent >= limit;
  }
  if (more) {
    // A full last page may be followed by nothing; the next call then returns no lines.
    r.headers.emplace_back("X-Next-After", std::to_string(after));
  }
  r.headers.emplace_back("X-Job-State", job.state);
  return r;
}

}  // namespace

std::optional<HttpResponse> Api::DispatchJobs(Call& call, const std::vector<std::string>& s) {
  const std::string& m = call.req.method;
  const bool create = PathIs(s, {"api", "v1", "tenants", "*", "resign-jobs"});
  if (!create && (s.size() < 3 || s[2] != "jobs" || s.size() > 5)) return std::nullopt;
  const std::string sub = s.size() == 5 ? s[4] : "";
  const char* allowed = create || (s.size() == 5 && sub != "results") ? "POST" : "GET";
  if (!create && s.size() == 5 && sub != "results" && sub != "pause" && sub != "resume" && sub != "cancel") {
    return std::nullopt;
  }
  if (!MethodIn(m, allowed)) return MethodNotAllowed(call.req, allowed);
  if (d_.jobs == nullptr) {
    return ErrorResponse(UnavailableError("re-sign jobs are not configured on this server"), call.request_id);
  }
  API_RETURN_IF_ERROR(call, call.Authenticate(*this));
  RouteCtx c{d_, call.req, *call.principal};
  StatusOr<HttpResponse> r = NotFoundError("no route for " + call.req.path);
  std::optional<AuditedChange> change;  // state changes: attempt before, outcome after
  if (create) {
    auto begun = BeginChange(call, "resign_job.create", s[3], s[3]);
    if (begun.ok()) change = *std::move(begun);
    r = begun.ok() ? CreateJob(c, s[3]) : StatusOr<HttpResponse>(begun.status());
  } else if (s.size() == 3) {
    r = ListJobs(c);
  } else {
    const bool read = m == "GET";
    auto job = d_.store->GetResignJob(s[3]);
    Status allowed_st = job.ok() ? AllowScoped(c, read ? Permission::kIncidentRead : Permission::kIncidentManage,
                                               job->tenant_id, "job " + s[3])
                                 : job.status();
    if (!allowed_st.ok()) {
      r = allowed_st;
    } else if (sub.empty()) {
      auto progress = d_.jobs->Progress(s[3]);
      r = progress.ok() ? StatusOr<HttpResponse>(JsonResponse(200, ProgressJson(*progress)))
                        : StatusOr<HttpResponse>(progress.status());
    } else if (sub == "results") {
      r = Results(c, *job);
    } else if (auto begun = BeginChange(call, "resign_job." + sub, job->tenant_id, s[3]); !begun.ok()) {
      r = begun.status();
    } else {
      change = *std::move(begun);
      auto moved = sub == "pause" ? d_.jobs->Pause(s[3]) : sub == "resume" ? d_.jobs->Resume(s[3]) : d_.jobs->Cancel(s[3]);
      if (moved.ok()) {
        Log(LogLevel::kInfo, "resign_job_" + sub, {{"job_id", s[3]}, {"actor", c.p.id}});
        r = JsonResponse(200, core::ResignJobJson(*moved));
      } else {
        r = moved.status();
      }
    }
  }
  if (change) change->Finish(r.status(), r.ok() ? json{{"http_status", r->status}} : json::object());
  if (!r.ok()) return ErrorResponse(r.status(), call.request_id);
  return *std::move(r);
}

}  // namespace concierge::server
