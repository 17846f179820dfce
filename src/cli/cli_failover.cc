// keyctl key standby | failover | failback | failover-status: a tenant's
// standby key in its policy's failover backend, and switching signing to it
// and back (docs/incidents.md, "Backend failover").
#include <iostream>

#include "cli/cli_internal.h"

namespace concierge::cli {
namespace {

struct FailoverOptions {
  std::string tenant;
  std::string reason;
};

void PrintStatus(const json& r) {
  std::cout << "tenant " << r.value("tenant_id", "")
            << (r.value("failed_over", false) ? " is FAILED OVER" : " is on its primary")
            << ": signing key " << r.value("signing_key_id", "") << "\n";
  PrintObject(r);
}

}  // namespace

void AddFailoverCommands(CommandContext& ctx) {
  CLI::App* key = ctx.app.get_subcommand("key");
  if (key == nullptr) return;
  Globals& g = ctx.g;
  std::function<int()>& action = ctx.action;
  auto o = std::make_shared<FailoverOptions>();

  auto* standby = key->add_subcommand("standby",
                                      "provision (or replace) the tenant's standby key in its "
                                      "policy's first working failover backend");
  standby->add_option("--tenant-id", o->tenant, "tenant id")->required();
  standby->callback([&g, &action, o] {
    action = [&g, o] {
      Api api(g);
      json body = json::object();
      json r = api.CallJson("POST", TenantPath(o->tenant, "/keys/standby"), &body);
      Print(g, r, [&] {
        std::cout << "standby key " << r.value("key_id", "") << " (" << r.value("provider", "")
                  << ") for tenant " << o->tenant << "\n";
      });
      return 0;
    };
  });

  auto* status = key->add_subcommand("failover-status", "which key signs for the tenant, and why");
  status->add_option("--tenant-id", o->tenant, "tenant id")->required();
  status->callback([&g, &action, o] {
    action = [&g, o] {
      Api api(g);
      json r = api.CallJson("GET", TenantPath(o->tenant, "/failover"));
      Print(g, r, [&] { PrintStatus(r); });
      return 0;
    };
  });

  for (const char* verb : {"failover", "failback"}) {
    const bool over = std::string(verb) == "failover";
    auto* cmd = key->add_subcommand(
        verb, over ? "sign with the tenant's standby key now (opens an incident)"
                   : "sign with the tenant's active key again (resolves the incident)");
    cmd->add_option("--tenant-id", o->tenant, "tenant id")->required();
    cmd->add_option("--reason", o->reason, "why (timeline and audit log)");
    cmd->callback([&g, &action, o, verb] {
      action = [&g, o, verb] {
        Api api(g);
        json body = json::object();
        if (!o->reason.empty()) body["reason"] = o->reason;
        json r = api.CallJson("POST", TenantPath(o->tenant, std::string("/") + verb), &body);
        Print(g, r, [&] { PrintStatus(r); });
        return 0;
      };
    });
  }
}

}  // namespace concierge::cli
