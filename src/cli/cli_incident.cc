// keyctl incident | job | webhook: incident response over the REST API.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <thread>

#include "cli/cli_internal.h"

namespace concierge::cli {
namespace {

const std::vector<std::string> kIncidentColumns = {"incident_id", "tenant_id", "type",        "severity",
                                                   "state",       "occurrences", "created_at", "title"};
const std::vector<std::string> kJobColumns = {"job_id", "tenant_id", "state", "done", "total", "resigned",
                                              "needs_client", "compromised_key_id", "new_key_id"};
const std::vector<std::string> kWebhookColumns = {"webhook_id", "tenant_id", "url", "events", "enabled", "created_at"};

std::string IncidentPath(const std::string& id, const std::string& rest = "") {
  return "/api/v1/incidents/" + id + rest;
}

void PrintIncident(const Globals& g, const json& r) {
  Print(g, r, [&] {
    PrintObject(r);
    if (r.contains("playbook") && r["playbook"].is_object()) {
      std::cout << "playbook  " << Cell(r["playbook"].value("step", json())) << " ("
                << Cell(r["playbook"].value("status", json())) << ")";
      if (r["playbook"].contains("error")) std::cout << ": " << Cell(r["playbook"]["error"]);
      std::cout << "\n";
    }
  });
}

std::string Duration(int64_t seconds) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(seconds / 3600),
                static_cast<long long>(seconds / 60 % 60), static_cast<long long>(seconds % 60));
  return buf;
}

// "[#########-----------]  45.2%  45200/100000  1234.5/s  ETA 0:00:44  running"
std::string ProgressLine(const json& j) {
  const double percent = j.value("percent", 0.0);
  constexpr int kWidth = 30;
  const int filled = std::clamp(static_cast<int>(std::lround(percent / 100.0 * kWidth)), 0, kWidth);
  char pct[16];
  std::snprintf(pct, sizeof pct, "%5.1f%%", percent);
  std::string line = "[" + std::string(static_cast<size_t>(filled), '#') +
                     std::string(static_cast<size_t>(kWidth - filled), '-') + "] " + pct + "  " +
                     std::to_string(j.value("done", int64_t{0})) + "/" + std::to_string(j.value("total", int64_t{0}));
  if (j.contains("rate_per_second") && j["rate_per_second"].is_number()) {
    char rate[32];
    std::snprintf(rate, sizeof rate, "  %.1f/s", j["rate_per_second"].get<double>());
    line += rate;
  }
  if (j.contains("eta_seconds") && j["eta_seconds"].is_number()) {
    line += "  ETA " + Duration(j["eta_seconds"].get<int64_t>());
  }
  return line + "  " + j.value("state", std::string());
}

bool Finished(const std::string& state) { return state == "completed" || state == "failed" || state == "cancelled"; }

void AddIncidentGroup(CommandContext& ctx) {
  Globals& g = ctx.g;
  auto* incident = ctx.app.add_subcommand("incident", "incidents: open, list, show, move, respond, report");
  incident->require_subcommand(1);

  struct CreateOpts {
    std::string tenant, type, severity, title, key_id, dedup_key;
  };
  auto c = std::make_shared<CreateOpts>();
  auto* create = incident->add_subcommand("create", "open an incident (a duplicate detection folds into the open one)");
  create->add_option("--tenant-id", c->tenant, "tenant id (omit for a global incident)");
  create->add_option("--type", c->type,
                     "key_compromise|hsm_failure|backend_outage|policy_violation|security_alert|compliance_failure")
      ->required();
  create->add_option("--severity", c->severity, "low|medium|high|critical")->required();
  create->add_option("--title", c->title, "one-line description")->required();
  create->add_option("--key-id", c->key_id, "the affected key");
  create->add_option("--dedup-key", c->dedup_key, "detection key: repeats fold while the incident is open");
  create->callback([&g, &action = ctx.action, c] {
    action = [&g, c] {
      Api api(g);
      json body = {{"type", c->type}, {"severity", c->severity}, {"title", c->title}};
      if (!c->tenant.empty()) body["tenant_id"] = c->tenant;
      if (!c->key_id.empty()) body["key_id"] = c->key_id;
      if (!c->dedup_key.empty()) body["dedup_key"] = c->dedup_key;
      json r = api.CallJson("POST", "/api/v1/incidents", &body);
      Print(g, r, [&] {
        std::cout << (r.value("created", false) ? "opened " : "folded into open incident ")
                  << r.value("incident_id", "") << " (occurrences " << r.value("occurrences", 0) << ")\n";
      });
      return 0;
    };
  });

  struct ListOpts {
    std::string tenant, state;
    bool open = false;
    int limit = 100;
  };
  auto l = std::make_shared<ListOpts>();
  auto* list = incident->add_subcommand("list", "list incidents, newest first");
  list->add_option("--tenant-id", l->tenant, "only this tenant");
  list->add_option("--state", l->state, "only this state");
  list->add_flag("--open", l->open, "only incidents not resolved or closed");
  list->add_option("--limit", l->limit, "at most N (1-1000)")->check(CLI::Range(1, 1000));
  list->callback([&g, &action = ctx.action, l] {
    action = [&g, l] {
      Api api(g);
      std::string q = "?limit=" + std::to_string(l->limit);
      if (!l->tenant.empty()) q += "&tenant_id=" + l->tenant;
      if (!l->state.empty()) q += "&state=" + l->state;
      if (l->open) q += "&open=true";
      json r = api.CallJson("GET", "/api/v1/incidents" + q);
      Print(g, r, [&] { PrintTable(kIncidentColumns, r["incidents"]); });
      return 0;
    };
  });

  auto id = std::make_shared<std::string>();
  auto* show = incident->add_subcommand("show", "show one incident");
  show->add_option("id", *id, "incident id")->required();
  show->callback([&g, &action = ctx.action, id] {
    action = [&g, id] {
      Api api(g);
      PrintIncident(g, api.CallJson("GET", IncidentPath(*id)));
      return 0;
    };
  });

  auto* timeline = incident->add_subcommand("timeline", "every state change and action, oldest first");
  timeline->add_option("id", *id, "incident id")->required();
  timeline->callback([&g, &action = ctx.action, id] {
    action = [&g, id] {
      Api api(g);
      json r = api.CallJson("GET", IncidentPath(*id, "/timeline"));
      Print(g, r["timeline"], [&] {
        json rows = json::array();
        for (const auto& e : r["timeline"]) {
          json row = e;
          row["state"] = e.contains("to_state") ? Cell(e["from_state"]) + " -> " + Cell(e["to_state"]) : "";
          rows.push_back(row);
        }
        PrintTable({"seq", "at", "actor", "action", "state", "detail"}, rows);
      });
      return 0;
    };
  });

  struct MoveOpts {
    std::string state, detail;
  };
  auto mv = std::make_shared<MoveOpts>();
  auto* transition = incident->add_subcommand("transition", "move an incident forward (e.g. to investigating)");
  transition->add_option("id", *id, "incident id")->required();
  transition->add_option("--state", mv->state, "investigating|contained|rotating|resigning|resolved|closed")
      ->required();
  transition->add_option("--detail", mv->detail, "why");
  auto* resolve = incident->add_subcommand("resolve", "resolve an incident");
  resolve->add_option("id", *id, "incident id")->required();
  resolve->add_option("--detail", mv->detail, "resolution summary");
  auto move = [&g, id, mv](const std::string& path, bool with_state) {
    Api api(g);
    json body = json::object();
    if (with_state) body["state"] = mv->state;
    if (!mv->detail.empty()) body["detail"] = mv->detail;
    json r = api.CallJson("POST", IncidentPath(*id, path), &body);
    Print(g, r, [&] { std::cout << r.value("incident_id", "") << " is now " << r.value("state", "") << "\n"; });
    return 0;
  };
  transition->callback([&action = ctx.action, move] { action = [move] { return move("/transition", true); }; });
  resolve->callback([&action = ctx.action, move] { action = [move] { return move("/resolve", false); }; });

  auto text = std::make_shared<std::string>();
  auto* note = incident->add_subcommand("note", "add a note to the timeline");
  note->add_option("id", *id, "incident id")->required();
  note->add_option("--text", *text, "the note")->required();
  note->callback([&g, &action = ctx.action, id, text] {
    action = [&g, id, text] {
      Api api(g);
      json body = {{"text", *text}};
      json r = api.CallJson("POST", IncidentPath(*id, "/notes"), &body);
      Print(g, r, [&] { std::cout << "noted on " << *id << "\n"; });
      return 0;
    };
  });

  struct RespondOpts {
    std::string since;
    bool wait = false;
  };
  auto ro = std::make_shared<RespondOpts>();
  auto* respond = incident->add_subcommand(
      "respond", "run the incident's playbook (key_compromise: pause, rotate, revoke, re-sign, resume, report)");
  respond->add_option("id", *id, "incident id")->required();
  respond->add_option("--since", ro->since, "re-sign only entries signed at or after this RFC 3339 time");
  respond->add_flag("--wait", ro->wait, "wait until the playbook is done or failed");
  respond->callback([&g, &action = ctx.action, id, ro] {
    action = [&g, id, ro] {
      Api api(g);
      json body = json::object();
      if (!ro->since.empty()) body["since"] = ro->since;
      json r = api.CallJson("POST", IncidentPath(*id, "/respond"), &body);
      std::string last;
      while (ro->wait) {
        const json& pb = r["playbook"];
        std::string status = pb.is_object() ? pb.value("status", "") : "";
        std::string line = pb.is_object() ? "step " + pb.value("step", std::string()) + " (" + status + ")" : "";
        if (line != last && g.output != "json") std::cerr << line << "\n";
        last = line;
        if (!pb.is_object() || status == "done" || status == "failed") break;
        std::this_thread::sleep_for(std::chrono::seconds(1));
        r = api.CallJson("GET", IncidentPath(*id));
      }
      PrintIncident(g, r);
      return r["playbook"].is_object() && r["playbook"].value("status", "") == "failed" ? kExitError : 0;
    };
  });

  struct ReportOpts {
    std::string html, json_file;
  };
  auto rep = std::make_shared<ReportOpts>();
  auto* report = incident->add_subcommand("report", "incident report: JSON, or HTML with --html FILE");
  report->add_option("id", *id, "incident id")->required();
  report->add_option("--html", rep->html, "write the human-readable HTML report to FILE");
  report->add_option("--json", rep->json_file, "write the JSON report to FILE");
  report->callback([&g, &action = ctx.action, id, rep] {
    action = [&g, id, rep] {
      Api api(g);
      if (!rep->html.empty()) {
        auto r = api.Call("GET", IncidentPath(*id, "/report?format=html"));
        WriteFileOrFail(rep->html, r.body);
        std::cerr << "wrote " << rep->html << "\n";
      }
      json r = api.CallJson("GET", IncidentPath(*id, "/report"));
      if (!rep->json_file.empty()) {
        WriteFileOrFail(rep->json_file, r.dump(2) + "\n");
        std::cerr << "wrote " << rep->json_file << "\n";
      }
      if (rep->html.empty() && rep->json_file.empty()) std::cout << r.dump(2) << "\n";
      return 0;
    };
  });
}

void AddJobGroup(CommandContext& ctx) {
  Globals& g = ctx.g;
  auto* job = ctx.app.add_subcommand("job", "mass re-sign jobs");
  job->require_subcommand(1);

  struct ResignOpts {
    std::string tenant, compromised, new_key, since, incident;
  };
  auto o = std::make_shared<ResignOpts>();
  auto* resign = job->add_subcommand("resign", "re-sign everything a compromised key signed with the new active key");
  resign->add_option("--tenant-id", o->tenant, "tenant id")->required();
  resign->add_option("--compromised-key", o->compromised, "key id of the compromised key")->required();
  resign->add_option("--new-key", o->new_key, "key id to re-sign with (default: the active key)");
  resign->add_option("--since", o->since, "only entries signed at or after this RFC 3339 time");
  resign->add_option("--incident-id", o->incident, "link the job to an incident");
  resign->callback([&g, &action = ctx.action, o] {
    action = [&g, o] {
      Api api(g);
      json body = {{"compromised_key_id", o->compromised}};
      if (!o->new_key.empty()) body["new_key_id"] = o->new_key;
      if (!o->since.empty()) body["since"] = o->since;
      if (!o->incident.empty()) body["incident_id"] = o->incident;
      json r = api.CallJson("POST", TenantPath(o->tenant, "/resign-jobs"), &body);
      Print(g, r, [&] {
        std::cout << "job " << r.value("job_id", "") << " queued; follow it with: keyctl job status "
                  << r.value("job_id", "") << " --follow\n";
      });
      return 0;
    };
  });

  struct ListOpts {
    std::string tenant, state;
  };
  auto l = std::make_shared<ListOpts>();
  auto* list = job->add_subcommand("list", "list re-sign jobs");
  list->add_option("--tenant-id", l->tenant, "only this tenant");
  list->add_option("--state", l->state, "only this state");
  list->callback([&g, &action = ctx.action, l] {
    action = [&g, l] {
      Api api(g);
      std::string q;
      if (!l->tenant.empty()) q += (q.empty() ? "?" : "&") + std::string("tenant_id=") + l->tenant;
      if (!l->state.empty()) q += (q.empty() ? "?" : "&") + std::string("state=") + l->state;
      json r = api.CallJson("GET", "/api/v1/jobs" + q);
      Print(g, r, [&] { PrintTable(kJobColumns, r["jobs"]); });
      return 0;
    };
  });

  struct StatusOpts {
    std::string id;
    bool follow = false;
    double interval = 1.0;
  };
  auto so = std::make_shared<StatusOpts>();
  auto* status = job->add_subcommand("status", "progress: done / total / rate / ETA");
  status->add_option("id", so->id, "job id")->required();
  status->add_flag("--follow,-f", so->follow, "keep printing until the job finishes (progress bar)");
  status->add_option("--interval", so->interval, "seconds between updates with --follow")
      ->check(CLI::Range(0.1, 3600.0));
  status->callback([&g, &action = ctx.action, so] {
    action = [&g, so] {
      Api api(g);
      const bool tty = isatty(STDOUT_FILENO) != 0;
      json r;
      for (;;) {
        r = api.CallJson("GET", "/api/v1/jobs/" + so->id);
        if (!so->follow || Finished(r.value("state", ""))) break;
        if (g.output != "json") {
          // On a terminal the bar redraws in place; piped, one line per update.
          std::cout << (tty ? "\r" : "") << ProgressLine(r) << (tty ? "" : "\n") << std::flush;
        }
        std::this_thread::sleep_for(std::chrono::duration<double>(so->interval));
      }
      Print(g, r, [&] {
        if (so->follow) std::cout << (tty ? "\r" : "") << ProgressLine(r) << "\n";
        PrintObject(r);
      });
      const std::string state = r.value("state", "");
      return state == "failed" || state == "cancelled" ? kExitError : 0;
    };
  });

  auto jid = std::make_shared<std::string>();
  for (const char* verb : {"pause", "resume", "cancel"}) {
    auto* cmd = job->add_subcommand(verb, std::string(verb) + " a re-sign job");
    cmd->add_option("id", *jid, "job id")->required();
    cmd->callback([&g, &action = ctx.action, jid, verb] {
      action = [&g, jid, verb] {
        Api api(g);
        json body = json::object();
        json r = api.CallJson("POST", "/api/v1/jobs/" + *jid + "/" + verb, &body);
        Print(g, r, [&] { std::cout << "job " << *jid << " is " << r.value("state", "") << "\n"; });
        return 0;
      };
    });
  }

  struct ResultsOpts {
    std::string id, out;
  };
  auto ro = std::make_shared<ResultsOpts>();
  auto* results = job->add_subcommand("results", "download the results as JSONL (one line per original entry)");
  results->add_option("id", ro->id, "job id")->required();
  results->add_option("--out", ro->out, "write to FILE instead of stdout");
  results->callback([&g, &action = ctx.action, ro] {
    action = [&g, ro] {
      Api api(g);
      auto r = api.Call("GET", "/api/v1/jobs/" + ro->id + "/results");
      if (ro->out.empty()) {
        std::cout << r.body;
      } else {
        WriteFileOrFail(ro->out, r.body);
        std::cerr << "wrote " << ro->out << "\n";
      }
      return 0;
    };
  });
}

void AddWebhookGroup(CommandContext& ctx) {
  Globals& g = ctx.g;
  auto* webhook = ctx.app.add_subcommand("webhook", "webhooks notified of incidents and jobs");
  webhook->require_subcommand(1);

  struct CreateOpts {
    std::string tenant, url, secret_file;
    std::vector<std::string> events;
  };
  auto c = std::make_shared<CreateOpts>();
  auto* create = webhook->add_subcommand("create", "register a webhook; its signing secret is shown once");
  create->add_option("--tenant-id", c->tenant, "tenant id (omit for a global webhook: every tenant's events)");
  create->add_option("--url", c->url, "https:// endpoint")->required();
  create->add_option("--event", c->events, "only this event type (repeatable; default all)");
  create->add_option("--secret-file", c->secret_file, "use the secret in FILE instead of generating one");
  create->callback([&g, &action = ctx.action, c] {
    action = [&g, c] {
      Api api(g);
      json body = {{"url", c->url}};
      if (!c->tenant.empty()) body["tenant_id"] = c->tenant;
      if (!c->events.empty()) body["events"] = c->events;
      if (!c->secret_file.empty()) body["secret"] = Trim(ReadFileOrFail(c->secret_file));
      json r = api.CallJson("POST", "/api/v1/webhooks", &body);
      Print(g, r, [&] {
        PrintObject(r);
        std::cerr << "store the secret now: it is not shown again\n";
      });
      return 0;
    };
  });

  auto tenant = std::make_shared<std::string>();
  auto* list = webhook->add_subcommand("list", "list webhooks (never their secrets)");
  list->add_option("--tenant-id", *tenant, "only this tenant");
  list->callback([&g, &action = ctx.action, tenant] {
    action = [&g, tenant] {
      Api api(g);
      json r = api.CallJson("GET", "/api/v1/webhooks" + (tenant->empty() ? "" : "?tenant_id=" + *tenant));
      Print(g, r, [&] { PrintTable(kWebhookColumns, r["webhooks"]); });
      return 0;
    };
  });

  auto wid = std::make_shared<std::string>();
  auto* del = webhook->add_subcommand("delete", "disable a webhook (pending deliveries fail)");
  del->add_option("id", *wid, "webhook id")->required();
  del->callback([&g, &action = ctx.action, wid] {
    action = [&g, wid] {
      Api api(g);
      json r = api.CallJson("DELETE", "/api/v1/webhooks/" + *wid);
      Print(g, r, [&] { std::cout << "webhook " << *wid << " disabled\n"; });
      return 0;
    };
  });

  auto* deliveries = webhook->add_subcommand("deliveries", "recent deliveries of a webhook");
  deliveries->add_option("id", *wid, "webhook id")->required();
  deliveries->callback([&g, &action = ctx.action, wid] {
    action = [&g, wid] {
      Api api(g);
      json r = api.CallJson("GET", "/api/v1/webhooks/" + *wid + "/deliveries");
      Print(g, r, [&] {
        PrintTable({"event_id", "state", "attempts", "last_status", "next_attempt_at", "last_error"}, r["deliveries"]);
      });
      return 0;
    };
  });
}

}  // namespace

void AddIncidentCommands(CommandContext& ctx) {
  AddIncidentGroup(ctx);
  AddJobGroup(ctx);
  AddWebhookGroup(ctx);
}

}  // namespace concierge::cli
