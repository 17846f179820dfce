// Internals shared by the CLI's command files (cli.cc and cli_<area>.cc): the
// error type every command throws (caught once in RunKeyctl), global flags, the
// REST client wrapper that turns API errors into one readable line, and the
// table/JSON printers. Include only from src/cli/.
//
// A command file exposes `void Add<Area>Commands(CommandContext& ctx)`. Option
// storage must outlive RunKeyctl's parse: keep it in a std::shared_ptr captured
// by the subcommand's callback (CLI11 binds options by reference).
#ifndef CONCIERGE_CLI_CLI_INTERNAL_H_
#define CONCIERGE_CLI_CLI_INTERNAL_H_

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "client/http_client.h"

namespace concierge::cli {

using json = nlohmann::json;

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;

struct CliError {
  int exit_code;
  std::string message;
};

[[noreturn]] inline void Fail(const std::string& message, int code = kExitError) { throw CliError{code, message}; }

struct Globals {
  std::string url;
  std::string token;
  std::string token_file;
  std::string output = "table";
};

std::string EnvOr(const char* name, const std::string& fallback);
std::string ReadFileOrFail(const std::string& path);
void WriteFileOrFail(const std::string& path, const std::string& data);
std::string Trim(std::string s);

class Api {
 public:
  explicit Api(const Globals& g) {
    std::string token = g.token;
    if (token.empty() && !g.token_file.empty()) token = Trim(ReadFileOrFail(g.token_file));
    std::string url = g.url;
    while (!url.empty() && url.back() == '/') url.pop_back();
    client_ = std::make_unique<client::HttpClient>(url, token);
  }

  client::HttpResult Call(const std::string& method, const std::string& path, const json* body = nullptr,
                          const std::map<std::string, std::string>& headers = {}) {
    return CallBytes(method, path, body ? body->dump() : "", headers);
  }

  // Like Call, with an arbitrary (e.g. binary) request body.
  client::HttpResult CallBytes(const std::string& method, const std::string& path, const std::string& body,
                               const std::map<std::string, std::string>& headers = {}) {
    auto r = client_->Request(method, path, body, headers);
    if (!r.ok()) Fail(r.status().message(), kExitUnreachable);
    if (r->status >= 400) {
      json err = json::parse(r->body, nullptr, false);
      std::string message = "HTTP " + std::to_string(r->status);
      if (err.is_object() && err.contains("message") && err["message"].is_string()) {
        message = err["message"].get<std::string>();
        if (err.contains("details") && err["details"].is_object() && err["details"].contains("field") &&
            err["details"]["field"].is_string()) {
          std::string field = err["details"]["field"];
          if (message.find(field) == std::string::npos) message += " (field: " + field + ")";
        }
        message += " [HTTP " + std::to_string(r->status) + "]";
      }
      Fail(message);
    }
    return *std::move(r);
  }

  json CallJson(const std::string& method, const std::string& path, const json* body = nullptr,
                const std::map<std::string, std::string>& headers = {}) {
    auto r = Call(method, path, body, headers);
    json j = json::parse(r.body, nullptr, false);
    if (j.is_discarded()) Fail("server returned invalid JSON for " + path);
    return j;
  }

 private:
  std::unique_ptr<client::HttpClient> client_;
};

// One table cell: "-" for null/empty, arrays joined by commas.
std::string Cell(const json& v);
// Columns are JSON field names; the header is their upper-case form.
void PrintTable(const std::vector<std::string>& columns, const json& rows);
// "key  value" lines for the scalar fields of `obj`.
void PrintObject(const json& obj);
// JSON with -o json, else runs `table`.
void Print(const Globals& g, const json& value, const std::function<void()>& table);
std::string TenantPath(const std::string& tenant, const std::string& rest);

// What a command file needs to register its subcommands. `action` is set by a
// subcommand's callback and run after parsing.
struct CommandContext {
  CLI::App& app;
  Globals& g;
  std::function<int()>& action;
};

// Command groups, one per cli_<area>.cc.
void AddEvidenceCommands(CommandContext& ctx);
void AddRotationCommands(CommandContext& ctx);  // cli_rotation.cc (needs "key" registered first)
// keyctl incident | job | webhook (cli_incident.cc).
void AddIncidentCommands(CommandContext& ctx);
// keyctl key standby | failover | failback | failover-status (cli_failover.cc; needs "key").
void AddFailoverCommands(CommandContext& ctx);
// `keyctl audit ...` (cli_audit.cc).
void AddAuditCommands(CommandContext& ctx);

}  // namespace concierge::cli

#endif  // CONCIERGE_CLI_CLI_INTERNAL_H_
