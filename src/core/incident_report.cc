#include "core/incident_report.h"

#include <set>

#include "core/incident.h"
#include "core/resign_job.h"
#include "crypto/encoding.h"

namespace concierge::core {

using crypto::HtmlEscape;
namespace {

using json = nlohmann::json;

json KeyReportJson(Store& store, const std::string& key_id, const std::string& role) {
  json k = {{"key_id", key_id}, {"role", role}};
  auto key = store.GetKey(key_id);
  if (!key.ok()) {
    k["error"] = key.status().message();
    return k;
  }
  k["version"] = key->version;
  k["algorithm"] = key->algorithm;
  k["provider"] = key->provider;
  k["state"] = key->state;
  k["fingerprint_sha256"] = key->fingerprint;
  k["created_at"] = FormatRfc3339(key->created_at);
  k["activated_at"] = OptionalTimeJson(key->activated_at);
  k["retired_at"] = OptionalTimeJson(key->retired_at);
  auto cert = store.GetLatestCertificate(key_id);
  if (cert.ok()) {
    k["certificate"] = {{"serial", cert->serial},     {"issuer", cert->issuer},
                        {"status", cert->status},     {"source", cert->source},
                        {"not_after", FormatRfc3339(cert->not_after)}, {"revoked_at", OptionalTimeJson(cert->revoked_at)}};
  } else {
    k["certificate"] = nullptr;
  }
  return k;
}

// A cell's text: strings as they are, null as "-", anything else as JSON.
std::string Text(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

std::string Row(std::initializer_list<std::string> cells, const char* tag = "td") {
  std::string out = "<tr>";
  for (const auto& c : cells) out += std::string("<") + tag + ">" + HtmlEscape(c) + "</" + tag + ">";
  return out + "</tr>\n";
}

}  // namespace

StatusOr<json> BuildIncidentReport(Store& store, const std::string& incident_id, TimePoint now) {
  ASSIGN_OR_RETURN(IncidentRecord inc, store.GetIncident(incident_id));
  ASSIGN_OR_RETURN(std::vector<IncidentEvent> events, store.ListIncidentEvents(incident_id));
  json report = {{"report_version", 1}, {"generated_at", FormatRfc3339(now)}, {"incident", IncidentJson(inc)}};
  json timeline = json::array();
  for (const auto& e : events) timeline.push_back(IncidentEventJson(e));
  report["timeline"] = std::move(timeline);

  const json& pb = report["incident"]["playbook"];
  json keys = json::array();
  std::set<std::string> seen;
  auto add_key = [&](const std::string& id, const std::string& role) {
    if (!id.empty() && seen.insert(id).second) keys.push_back(KeyReportJson(store, id, role));
  };
  add_key(inc.key_id, "affected");
  if (pb.is_object()) {
    add_key(pb.value("old_key_id", ""), "compromised");
    add_key(pb.value("new_key_id", ""), "replacement");
  }
  report["affected_keys"] = std::move(keys);

  json jobs = json::array();
  json totals = {{"jobs", 0}, {"entries", 0}, {"resigned", 0}, {"needs_client", 0}, {"already_resigned", 0}};
  json evidence = json::array();
  if (!inc.tenant_id.empty()) {
    ASSIGN_OR_RETURN(auto all, store.ListResignJobs(inc.tenant_id, {}));
    for (const auto& j : all) {
      if (j.incident_id != incident_id) continue;
      jobs.push_back(ResignJobJson(j));
      totals["jobs"] = totals["jobs"].get<int64_t>() + 1;
      totals["entries"] = totals["entries"].get<int64_t>() + j.processed;
      totals["resigned"] = totals["resigned"].get<int64_t>() + j.resigned;
      totals["needs_client"] = totals["needs_client"].get<int64_t>() + j.needs_client;
      totals["already_resigned"] = totals["already_resigned"].get<int64_t>() + j.already_resigned;
      evidence.push_back({{"kind", "resign_results"},
                          {"ref", "/api/v1/jobs/" + j.job_id + "/results"},
                          {"note", "JSONL: original seq, asset id, digest, new signature, key id/version, new seq"}});
    }
  }
  if (pb.is_object() && pb.value("revoked_on_crl", false)) {
    evidence.push_back({{"kind", "crl"},
                        {"ref", "/api/v1/ca/crl"},
                        {"note", "lists certificate " + pb.value("revoked_serial", std::string())}});
  }
  evidence.push_back({{"kind", "timeline"}, {"ref", "/api/v1/incidents/" + incident_id + "/timeline"}, {"note", ""}});
  report["resign_jobs"] = std::move(jobs);
  report["resign_totals"] = std::move(totals);
  report["evidence"] = std::move(evidence);
  return report;
}

std::string RenderIncidentReportHtml(const json& r) {
  const json& inc = r.value("incident", json::object());
  std::string h =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
      "<title>Incident report " + HtmlEscape(Text(inc.value("incident_id", json()))) + "</title>\n"
      "<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;"
      "margin-bottom:1.5em}td,th{border:1px solid #bbb;padding:4px 8px;text-align:left;vertical-align:top}"
      "th{background:#eee}</style></head><body>\n";
  h += "<h1>Incident report: " + HtmlEscape(Text(inc.value("title", json()))) + "</h1>\n";
  h += "<p>Generated " + HtmlEscape(Text(r.value("generated_at", json()))) + "</p>\n<h2>Summary</h2>\n<table>\n";
  for (const char* f : {"incident_id", "tenant_id", "type", "severity", "state", "detector", "key_id", "occurrences",
                        "created_by", "created_at", "resolved_at", "closed_at"}) {
    h += Row({f, Text(inc.value(f, json()))});
  }
  h += "</table>\n<h2>Affected keys</h2>\n<table>\n";
  h += Row({"key", "role", "version", "algorithm", "state", "fingerprint (SHA-256)", "certificate", "cert status"}, "th");
  for (const auto& k : r.value("affected_keys", json::array())) {
    const json cert = k.value("certificate", json());
    h += Row({Text(k.value("key_id", json())), Text(k.value("role", json())), Text(k.value("version", json())),
              Text(k.value("algorithm", json())), Text(k.value("state", json())),
              Text(k.value("fingerprint_sha256", json())),
              cert.is_object() ? Text(cert.value("serial", json())) : "-",
              cert.is_object() ? Text(cert.value("status", json())) : "-"});
  }
  const json totals = r.value("resign_totals", json::object());
  h += "</table>\n<h2>Re-signing</h2>\n<table>\n";
  for (const char* f : {"jobs", "entries", "resigned", "needs_client", "already_resigned"}) {
    h += Row({f, Text(totals.value(f, json()))});
  }
  h += "</table>\n<table>\n" + Row({"job", "state", "done", "resigned", "needs client", "finished"}, "th");
  for (const auto& j : r.value("resign_jobs", json::array())) {
    h += Row({Text(j.value("job_id", json())), Text(j.value("state", json())), Text(j.value("done", json())),
              Text(j.value("resigned", json())), Text(j.value("needs_client", json())),
              Text(j.value("finished_at", json()))});
  }
  h += "</table>\n<h2>Timeline</h2>\n<table>\n" + Row({"#", "time", "actor", "action", "state", "detail"}, "th");
  for (const auto& e : r.value("timeline", json::array())) {
    std::string state = e.contains("to_state") ? Text(e["from_state"]) + " \u2192 " + Text(e["to_state"]) : "";
    h += Row({Text(e.value("seq", json())), Text(e.value("at", json())), Text(e.value("actor", json())),
              Text(e.value("action", json())), state, Text(e.value("detail", json()))});
  }
  h += "</table>\n<h2>Evidence</h2>\n<table>\n" + Row({"kind", "reference", "note"}, "th");
  for (const auto& ev : r.value("evidence", json::array())) {
    h += Row({Text(ev.value("kind", json())), Text(ev.value("ref", json())), Text(ev.value("note", json()))});
  }
  h += "</table>\n</body></html>\n";
  return h;
}

}  // namespace concierge::core
