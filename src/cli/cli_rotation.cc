// `keyctl rotation ...`, `keyctl key set-state` and `keyctl evidence
// export|key`: the rotation engine's commands (docs/rotation.md). Everything
// goes through the REST API.
#include <chrono>
#include <iostream>
#include <set>
#include <thread>

#include "cli/cli_internal.h"

namespace concierge::cli {
namespace {

const std::vector<std::string> kRotationColumns = {"rotation_id", "state", "phase", "trigger", "scheduled_time",
                                                   "owner", "approval", "flags", "new_key_id"};

std::string RotationPath(const std::string& id, const std::string& rest = "") {
  return "/api/v1/rotations/" + id + rest;
}

// The one-word flags a listing shows: warning, overdue, rollback window.
std::string Flags(const json& r) {
  std::string out;
  auto add = [&](const char* f) { out += (out.empty() ? "" : ",") + std::string(f); };
  if (r.value("overdue", false)) add("OVERDUE");
  if (r.value("warning", false)) add("due-soon");
  if (r.value("rollback_allowed", false)) add("rollback-ok");
  return out;
}

std::string Approval(const json& r) {
  if (!r.value("approval_required", false)) return "not needed";
  if (r["approved_by"].is_string()) return "by " + r["approved_by"].get<std::string>();
  return "PENDING";
}

// "[##>....] 3/7": phases before `n` done, `n` in progress (all done when `complete`).
std::string ProgressBar(int n, int total, bool complete) {
  std::string bar = "[";
  for (int i = 1; i <= total; ++i) bar += i < n || complete ? '#' : (i == n ? '>' : '.');
  return bar + "] " + std::to_string(n) + "/" + std::to_string(total);
}

std::string ProgressBar(const json& r) {
  return ProgressBar(r.value("phase_number", 0), r.value("phase_count", 7), r.value("state", "") == "completed");
}

int PhaseNumberOf(const json& r, const json& phase) {
  if (!phase.is_string()) return 0;
  int n = 0;
  for (const auto& p : r["phases"]) {
    ++n;
    if (p.value("name", "") == phase.get<std::string>()) return n;
  }
  return 0;
}

void PrintStatus(const json& r) {
  std::cout << "rotation      " << r.value("rotation_id", "") << " (" << r.value("trigger", "") << ", tenant "
            << r.value("tenant_id", "") << ")\n";
  std::cout << "state         " << r.value("state", "") << "  " << ProgressBar(r) << " " << Cell(r["phase"]) << "\n";
  std::cout << "scheduled     " << r.value("scheduled_time", "") << "  owner " << Cell(r["owner"]) << "\n";
  std::cout << "approval      " << Approval(r) << "\n";
  std::cout << "keys          " << Cell(r["old_key_id"]) << " -> " << Cell(r["new_key_id"]) << "\n";
  std::cout << "certificate   " << Cell(r["certificate_serial"]) << " (" << Cell(r["certificate_source"]) << ")\n";
  const json& c = r["canary"];
  std::cout << "canary        " << c.value("passed", 0) << "/" << c.value("total", 0) << " verified ("
            << c.value("ledger_resigned", 0) << " re-signed ledger digests)\n";
  if (r["grace_until"].is_string()) std::cout << "grace until   " << r["grace_until"].get<std::string>() << "\n";
  if (!Flags(r).empty()) std::cout << "flags         " << Flags(r) << "\n";
  if (r["error"].is_string()) std::cout << "error         " << r["error"].get<std::string>() << "\n";
  if (r.contains("phases")) {
    std::cout << "phases       ";
    for (const auto& p : r["phases"]) std::cout << " " << p.value("name", "") << ":" << p.value("status", "");
    std::cout << "\n";
  }
  if (r.contains("timeline")) {
    std::cout << "timeline\n";
    PrintTable({"seq", "at", "phase", "event", "actor", "detail"}, r["timeline"]);
  }
}

bool Settled(const json& r) {
  std::string state = r.value("state", "");
  return state != "running";
}

// Polls the rotation until it leaves "running", printing each new timeline
// entry as a progress line. Returns the final status.
json Follow(Api& api, const std::string& id, const Globals& g) {
  std::set<int64_t> seen;
  for (;;) {
    json r = api.CallJson("GET", RotationPath(id));
    if (g.output != "json") {
      for (const auto& e : r["timeline"]) {
        int64_t seq = e.value("seq", int64_t{0});
        if (!seen.insert(seq).second) continue;
        const bool done = e.value("event", "") == "completed";
        std::cout << ProgressBar(PhaseNumberOf(r, e["phase"]), r.value("phase_count", 7), done) << "  "
                  << e.value("at", "") << "  " << Cell(e["phase"]) << "  "
                  << e.value("event", "") << "  " << e.value("detail", "") << std::endl;
      }
    }
    if (Settled(r)) return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // polling a server-side job
  }
}

// Exit code of a finished command: 0 unless the rotation ended badly.
int Outcome(const json& r) {
  std::string state = r.value("state", "");
  if (state == "awaiting_certificate") {
    std::cout << "waiting for a certificate for key " << Cell(r["new_key_id"])
              << ": get the CSR with `keyctl rotation status " << r.value("rotation_id", "")
              << " --csr-out FILE`, have it certified, then `keyctl cert import`\n";
  }
  return state == "failed" || state == "rolled_back" || state == "cancelled" ? kExitError : 0;
}

}  // namespace

void AddRotationCommands(CommandContext& ctx) {
  Globals& g = ctx.g;
  std::function<int()>& action = ctx.action;
  auto* rotation = ctx.app.add_subcommand("rotation", "key rotations: calendar, execution, approval, rollback");
  rotation->require_subcommand(1);

  // One option block shared by the subcommands (only one runs per call);
  // out_file is --csr-out of `status` and --out of the evidence commands.
  struct Options {
    std::string tenant, id, when, owner, certificate, reason, out_file, state, key_id;
    bool approval_required = false, follow = false, no_follow = false, yes = false;
  };
  auto o = std::make_shared<Options>();

  auto* schedule = rotation->add_subcommand("schedule", "schedule a rotation of a tenant's key");
  schedule->add_option("--tenant-id", o->tenant, "tenant id")->required();
  schedule->add_option("--scheduled-time", o->when, "RFC 3339 time (default: now)");
  schedule->add_option("--owner", o->owner, "email of the person accountable for the rotation")->required();
  schedule->add_flag("--approval-required", o->approval_required, "a second principal must approve it first");
  schedule->add_option("--certificate", o->certificate, "builtin-ca or external (default: CA if initialised)")
      ->check(CLI::IsMember({"builtin-ca", "external"}));
  schedule->callback([&g, &action, o] {
    action = [&g, o] {
      Api api(g);
      json body = {{"owner", o->owner}};
      if (!o->when.empty()) body["scheduled_time"] = o->when;
      if (o->approval_required) body["approval_required"] = true;
      if (!o->certificate.empty()) body["certificate"] = o->certificate;
      json r = api.CallJson("POST", TenantPath(o->tenant, "/rotations"), &body);
      Print(g, r, [&] { PrintStatus(r); });
      return 0;
    };
  });

  auto* list = rotation->add_subcommand("list", "a tenant's rotation calendar and rotations");
  list->add_option("--tenant-id", o->tenant, "tenant id")->required();
  list->callback([&g, &action, o] {
    action = [&g, o] {
      Api api(g);
      json r = api.CallJson("GET", TenantPath(o->tenant, "/rotations"));
      Print(g, r, [&] {
        if (r.contains("calendar")) {
          const json& c = r["calendar"];
          std::cout << "active key " << Cell(c["active_key_id"]) << " since " << Cell(c["active_since"])
                    << "; rotate every " << c.value("rotate_every_days", 0) << " days, next due "
                    << Cell(c["next_due"]);
          if (c.value("overdue", false)) std::cout << "  OVERDUE";
          else if (c.value("warning", false)) std::cout << "  (due within " << c.value("advance_warning_days", 0) << " days)";
          std::cout << "\n";
        }
        json rows = json::array();
        for (json row : r["rotations"]) {
          row["approval"] = Approval(row);
          row["flags"] = Flags(row);
          rows.push_back(std::move(row));
        }
        PrintTable(kRotationColumns, rows);
      });
      return 0;
    };
  });

  auto* status = rotation->add_subcommand("status", "a rotation's phases, progress and timeline");
  status->add_option("id", o->id, "rotation id")->required();
  status->add_flag("--follow,-f", o->follow, "keep printing progress until the rotation settles");
  status->add_option("--csr-out", o->out_file, "write the new key's CSR (PEM) to this file");
  status->callback([&g, &action, o] {
    action = [&g, o] {
      Api api(g);
      json r = o->follow ? Follow(api, o->id, g) : api.CallJson("GET", RotationPath(o->id));
      if (!o->out_file.empty()) {
        if (!r["csr_pem"].is_string()) Fail("rotation " + o->id + " has no CSR yet");
        WriteFileOrFail(o->out_file, r["csr_pem"].get<std::string>());
      }
      Print(g, r, [&] { PrintStatus(r); });
      return o->follow ? Outcome(r) : 0;
    };
  });

  auto* execute = rotation->add_subcommand("execute", "run a rotation now and follow its progress");
  execute->add_option("id", o->id, "rotation id")->required();
  execute->add_flag("--no-follow", o->no_follow, "return once the server accepted it");
  execute->callback([&g, &action, o] {
    action = [&g, o] {
      Api api(g);
      json r = api.CallJson("POST", RotationPath(o->id, "/execute"));
      if (o->no_follow) {
        Print(g, r, [&] { std::cout << "rotation " << o->id << " accepted (" << r.value("state", "") << ")\n"; });
        return 0;
      }
      json last = Follow(api, o->id, g);
      Print(g, last, [&] { PrintStatus(last); });
      return Outcome(last);
    };
  });

  auto* approve = rotation->add_subcommand("approve", "approve a rotation scheduled by someone else");
  approve->add_option("id", o->id, "rotation id")->required();
  approve->callback([&g, &action, o] {
    action = [&g, o] {
      Api api(g);
      json r = api.CallJson("POST", RotationPath(o->id, "/approve"));
      Print(g, r, [&] { std::cout << "rotation " << o->id << " approved by " << Cell(r["approved_by"]) << "\n"; });
      return 0;
    };
  });

  auto* rollback = rotation->add_subcommand("rollback", "restore the previous key (inside the grace window)");
  rollback->add_option("id", o->id, "rotation id")->required();
  rollback->add_option("--reason", o->reason, "why (kept in the timeline)");
  rollback->add_flag("--yes", o->yes, "confirm");
  rollback->callback([&g, &action, o] {
    action = [&g, o] {
      if (!o->yes) Fail("refusing to roll back rotation " + o->id + " without --yes", kExitUsage);
      Api api(g);
      json body = json::object();
      if (!o->reason.empty()) body["reason"] = o->reason;
      json r = api.CallJson("POST", RotationPath(o->id, "/rollback"), &body);
      Print(g, r, [&] {
        std::cout << "rotation " << o->id << " rolled back: " << Cell(r["old_key_id"]) << " is active again, "
                  << Cell(r["new_key_id"]) << " retired\n";
      });
      return 0;
    };
  });

  auto* cancel = rotation->add_subcommand("cancel", "cancel a scheduled (or certificate-waiting) rotation");
  cancel->add_option("id", o->id, "rotation id")->required();
  cancel->callback([&g, &action, o] {
    action = [&g, o] {
      Api api(g);
      json r = api.CallJson("POST", RotationPath(o->id, "/cancel"));
      Print(g, r, [&] { std::cout << "rotation " << o->id << " cancelled\n"; });
      return 0;
    };
  });

  // keyctl evidence export / key: fetch packs and the key that signs them
  // (`evidence verify` itself is local, in cli_evidence.cc).
  if (CLI::App* evidence = ctx.app.get_subcommand("evidence"); evidence != nullptr) {
    auto* export_cmd = evidence->add_subcommand("export", "download a rotation's Rotation Evidence Pack (tar)");
    export_cmd->add_option("id", o->id, "rotation id")->required();
    export_cmd->add_option("--out", o->out_file, "write the pack to this file")->required();
    export_cmd->add_option("--outcome", o->state, "an earlier pack: completed, rolled_back or aborted")
        ->check(CLI::IsMember({"completed", "rolled_back", "aborted"}));
    export_cmd->callback([&g, &action, o] {
      action = [&g, o] {
        Api api(g);
        auto r = api.Call("GET", RotationPath(o->id, "/evidence") + (o->state.empty() ? "" : "?outcome=" + o->state));
        WriteFileOrFail(o->out_file, r.body);
        auto header = [&](const char* name) { return r.headers.count(name) ? r.headers.at(name) : std::string(); };
        json out = {{"rotation_id", o->id},
                    {"file", o->out_file},
                    {"outcome", header("x-evidence-outcome")},
                    {"sha256", header("x-evidence-sha256")},
                    {"bytes", r.body.size()}};
        Print(g, out, [&] {
          std::cout << "wrote " << o->out_file << " (" << r.body.size() << " bytes, " << out["outcome"].get<std::string>()
                    << ", sha256 " << out["sha256"].get<std::string>() << ")\n";
        });
        return 0;
      };
    });
    auto* key_cmd = evidence->add_subcommand("key", "print the service's evidence public key (PEM) to pin");
    key_cmd->add_option("--out", o->out_file, "write the PEM to this file");
    key_cmd->callback([&g, &action, o] {
      action = [&g, o] {
        Api api(g);
        auto r = api.Call("GET", "/api/v1/evidence-key");
        if (!o->out_file.empty()) WriteFileOrFail(o->out_file, r.body);
        else std::cout << r.body;
        return 0;
      };
    });
  }

  // keyctl key set-state: the manual part of the key lifecycle.
  if (CLI::App* key = ctx.app.get_subcommand("key"); key != nullptr) {
    auto* set_state = key->add_subcommand("set-state", "mark a key retired, compromised or destroyed");
    set_state->add_option("--tenant-id", o->tenant, "tenant id")->required();
    set_state->add_option("--key-id", o->key_id, "key id")->required();
    set_state->add_option("--state", o->state, "retired|compromised|destroyed")
        ->required()
        ->check(CLI::IsMember({"retired", "compromised", "destroyed"}));
    set_state->add_option("--reason", o->reason, "why (logged)");
    set_state->add_flag("--yes", o->yes, "confirm (required for destroyed)");
    set_state->callback([&g, &action, o] {
      action = [&g, o] {
        if (o->state == "destroyed" && !o->yes) {
          Fail("refusing to destroy key " + o->key_id + " without --yes (irreversible)", kExitUsage);
        }
        Api api(g);
        json body = {{"state", o->state}};
        if (!o->reason.empty()) body["reason"] = o->reason;
        json r = api.CallJson("POST", TenantPath(o->tenant, "/keys/" + o->key_id + "/state"), &body);
        Print(g, r, [&] { std::cout << "key " << o->key_id << " is now " << r.value("state", "") << "\n"; });
        return 0;
      };
    });
  }
}

}  // namespace concierge::cli
