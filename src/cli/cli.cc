#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>
#include <thread>

#include "cli/cli_internal.h"
#include "client/http_client.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "server/app.h"
#include "server/backup.h"
#include "server/config.h"

namespace concierge::cli {
namespace {

// Policy fields settable from flags; only flags the user actually gave are sent.
struct PolicyFlags {
  std::string algorithm, key_type, provider, key_uri, cert_subject, file;
  int rotation_days = 0, grace_days = -1, cert_validity_days = 0, canary_count = -1;
  int64_t max_issuance = -1;
  bool approval_required = false, no_approval_required = false, sign_disabled = false, sign_enabled = false;
  bool auto_respond = false, no_auto_respond = false;
  std::vector<std::string> allow, deny, failover;

  void Add(CLI::App* cmd) {
    cmd->add_option("--algorithm", algorithm, "ES256|ES384|ES512|PS256|PS384|PS512|Ed25519");
    cmd->add_option("--key-type", key_type, "hsm|kms|software");
    cmd->add_option("--provider", provider, "software|pkcs11|yubihsm2|aws-kms|gcp-kms|azure-kv|vault-transit");
    cmd->add_option("--key-uri", key_uri, "where the backend creates the key (e.g. a pkcs11: URI)");
    cmd->add_option("--rotation-days", rotation_days, "rotate every N days (1-365)");
    cmd->add_option("--grace-days", grace_days, "rotation grace period in days");
    cmd->add_option("--max-issuance", max_issuance, "max signatures per 24h (0 = unlimited)");
    cmd->add_option("--cert-validity-days", cert_validity_days, "certificate validity in days");
    cmd->add_option("--cert-subject", cert_subject, "certificate subject, e.g. 'CN=Acme News,O=Acme'");
    cmd->add_option("--canary-count", canary_count, "canary signatures per rotation");
    cmd->add_option("--allow", allow, "allowed C2PA assertion label (repeatable)");
    cmd->add_option("--deny", deny, "denied C2PA assertion label (repeatable)");
    cmd->add_option("--failover", failover, "secondary backend key URI (repeatable)");
    cmd->add_flag("--approval-required", approval_required, "rotations need a second approver");
    cmd->add_flag("--no-approval-required", no_approval_required, "rotations need no approver");
    cmd->add_flag("--sign-disabled", sign_disabled, "pause signing for the tenant");
    cmd->add_flag("--sign-enabled", sign_enabled, "resume signing for the tenant");
    cmd->add_flag("--incident-auto-respond", auto_respond, "run the key_compromise playbook for high/critical "
                                                           "incidents without an operator");
    cmd->add_flag("--no-incident-auto-respond", no_auto_respond, "incident playbooks need keyctl incident respond");
    cmd->add_option("--file", file, "read the policy JSON from a file (flags override it)");
  }

  json ToJson() const {
    json j = json::object();
    if (!file.empty()) {
      j = json::parse(ReadFileOrFail(file), nullptr, false);
      if (!j.is_object()) Fail(file + " is not a JSON object");
    }
    if (!algorithm.empty()) j["algorithm"] = algorithm;
    if (!key_type.empty()) j["key_type"] = key_type;
    if (!provider.empty()) j["provider"] = provider;
    if (!key_uri.empty()) j["key_uri"] = key_uri;
    if (rotation_days != 0) j["rotate_every_days"] = rotation_days;
    if (grace_days >= 0) j["rotation_grace_days"] = grace_days;
    if (max_issuance >= 0) j["max_issuance_per_24h"] = max_issuance;
    if (cert_validity_days != 0) j["cert_validity_days"] = cert_validity_days;
    if (!cert_subject.empty()) j["cert_subject"] = cert_subject;
    if (canary_count >= 0) j["canary_count"] = canary_count;
    if (!allow.empty()) j["assertions_allow"] = allow;
    if (!deny.empty()) j["assertions_deny"] = deny;
    if (!failover.empty()) j["failover"] = failover;
    if (approval_required && no_approval_required) Fail("--approval-required and --no-approval-required conflict");
    if (approval_required) j["approval_required"] = true;
    if (no_approval_required) j["approval_required"] = false;
    if (sign_disabled && sign_enabled) Fail("--sign-disabled and --sign-enabled conflict");
    if (sign_disabled) j["sign_enabled"] = false;
    if (sign_enabled) j["sign_enabled"] = true;
    if (auto_respond && no_auto_respond) Fail("--incident-auto-respond and --no-incident-auto-respond conflict");
    if (auto_respond) j["incident_auto_respond"] = true;
    if (no_auto_respond) j["incident_auto_respond"] = false;
    return j;
  }
};

const std::vector<std::string> kPolicyColumns = {"tenant_id", "version", "algorithm", "provider",
                                                 "rotate_every_days", "sign_enabled", "policy_hash"};
const std::vector<std::string> kKeyColumns = {"key_id", "version", "algorithm", "provider", "state",
                                              "activated_at", "fingerprint_sha256"};

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

// Settings shared by the commands that open the database themselves.
struct LocalFlags {
  std::string config_file, data_dir, database_url;
  void Add(CLI::App* cmd) {
    cmd->add_option("--config", config_file, "TOML config file");
    cmd->add_option("--data-dir", data_dir, "data directory (default ./data)");
    cmd->add_option("--database-url", database_url,
                    "postgresql://user@host:port/db to use PostgreSQL instead of SQLite "
                    "(env KEYCTL_DATABASE_URL; a password only there, in PGPASSWORD or ~/.pgpass)");
  }
  // The configuration: defaults < TOML < KEYCTL_* < these flags.
  server::ServerConfig Load() const {
    auto config = server::LoadConfig(config_file, server::KeyctlEnvironment());
    if (!config.ok()) Fail(config.status().message(), 2);
    if (!data_dir.empty()) config->data_dir = data_dir;
    if (!database_url.empty()) {
      Status st = server::SetDatabaseUrl(*config, database_url, /*password_allowed=*/false, "--database-url");
      if (!st.ok()) Fail(st.message(), 2);
    }
    return *std::move(config);
  }
};

int Serve(const LocalFlags& local, const std::string& listen, int io_threads) {
  server::ServerConfig config = local.Load();
  if (!listen.empty()) {
    std::string h;
    uint16_t p;
    Status st = server::ParseListen(listen, &h, &p);
    if (!st.ok()) Fail(st.message(), 2);
    config.listen = listen;
  }
  if (io_threads > 0) config.io_threads = io_threads;
  auto app = server::App::Create(std::move(config));
  if (!app.ok()) Fail("cannot start: " + app.status().message());
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  (*app)->Start();
  std::cout << "keyctl serve: listening on " << (*app)->url() << std::endl;
  if (!(*app)->bootstrap_token_path().empty()) {
    std::cout << "keyctl serve: bootstrap admin token written to " << (*app)->bootstrap_token_path()
              << " (mode 0600)" << std::endl;
  }
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));  // waits for a signal
  std::cout << "keyctl serve: shutting down" << std::endl;
  (*app)->Stop();
  return 0;
}

void PrintBackupReport(const std::string& what, const server::BackupReport& report) {
  int64_t rows = 0;
  for (const auto& [table, n] : report.summary.rows) rows += n;
  std::cout << what << ": " << report.summary.engine << " schema " << report.summary.schema_version << ", "
            << rows << " rows in " << report.summary.rows.size() << " tables, " << report.summary.files
            << " keystore files\n";
  for (const std::string& note : report.notes) std::cout << "note: " << note << "\n";
}

// Digest for sign/verify: from --digest HEX, or SHA-2 of --file with the tenant's algorithm.
std::string DigestHex(Api& api, const std::string& tenant, const std::string& digest, const std::string& file) {
  if (!digest.empty() && !file.empty()) Fail("give either --digest or --file, not both", 2);
  if (!digest.empty()) return digest;
  if (file.empty()) Fail("one of --digest or --file is required", 2);
  json policy = api.CallJson("GET", TenantPath(tenant, "/policy"));
  auto alg = ParseAlgorithm(policy.value("algorithm", ""));
  if (!alg) Fail("tenant policy has an unknown algorithm");
  std::string data = ReadFileOrFail(file);
  return crypto::HexEncode(crypto::DigestFor(*alg, crypto::AsBytes(data)));
}

}  // namespace

int RunKeyctl(int argc, char** argv) {
  CLI::App app{"keyctl - C2-Concierge key custody and signing service"};
  app.require_subcommand(1);
  Globals g;
  g.url = EnvOr("KEYCTL_URL", "http://127.0.0.1:8443");
  g.token = EnvOr("KEYCTL_TOKEN", "");
  g.token_file = EnvOr("KEYCTL_TOKEN_FILE", "");
  app.add_option("--url", g.url, "server URL (env KEYCTL_URL)");
  app.add_option("--token", g.token, "API token (env KEYCTL_TOKEN)");
  app.add_option("--token-file", g.token_file, "file holding the API token (env KEYCTL_TOKEN_FILE)");
  app.add_option("--output,-o", g.output, "table or json")->check(CLI::IsMember({"table", "json"}));

  std::function<int()> action;
  CommandContext ctx{app, g, action};  // for Add<Area>Commands in cli_<area>.cc
  AddEvidenceCommands(ctx);
  AddAuditCommands(ctx);

  // serve
  LocalFlags local;
  std::string listen;
  int io_threads = 0;
  auto* serve = app.add_subcommand("serve", "run the server");
  local.Add(serve);
  serve->add_option("--listen", listen, "HOST:PORT (default 127.0.0.1:8443)");
  serve->add_option("--io-threads", io_threads, "io threads (default: cores)");
  serve->callback([&] { action = [&] { return Serve(local, listen, io_threads); }; });

  // migrate
  int target = 0;
  auto* migrate = app.add_subcommand("migrate", "apply database migrations (local)");
  local.Add(migrate);
  migrate->add_option("--target", target, "stop at this schema version (default latest)");
  migrate->callback([&] {
    action = [&] {
      auto v = server::MigrateDatabase(local.Load(), target);
      if (!v.ok()) Fail(v.status().message());
      std::cout << "schema version " << *v << "\n";
      return 0;
    };
  });

  // backup / restore
  std::string backup_out, backup_in;
  auto* backup = app.add_subcommand("backup", "write a backup of the database and keystore (local)");
  local.Add(backup);
  backup->add_option("--out", backup_out, "backup file to create (mode 0600)")->required();
  backup->callback([&] {
    action = [&] {
      auto report = server::BackupToFile(local.Load(), backup_out);
      if (!report.ok()) Fail("backup failed: " + report.status().message());
      PrintBackupReport("backup written to " + backup_out, *report);
      return 0;
    };
  });
  auto* restore = app.add_subcommand("restore", "restore a backup into an empty database and keystore (local)");
  local.Add(restore);
  restore->add_option("file", backup_in, "backup file written by keyctl backup")->required();
  restore->callback([&] {
    action = [&] {
      auto report = server::RestoreFromFile(local.Load(), backup_in);
      if (!report.ok()) Fail("restore failed: " + report.status().message());
      PrintBackupReport("restored " + backup_in, *report);
      return 0;
    };
  });

  // policy
  auto* policy = app.add_subcommand("policy", "manage tenant signing policies");
  policy->require_subcommand(1);
  std::string tenant;
  PolicyFlags pf;
  auto* pcreate = policy->add_subcommand("create", "create a tenant's policy and its first key");
  pcreate->add_option("--tenant-id", tenant, "tenant id (slug)")->required();
  pf.Add(pcreate);
  pcreate->callback([&] {
    action = [&] {
      Api api(g);
      json body = pf.ToJson();
      json r = api.CallJson("POST", TenantPath(tenant, "/policy"), &body);
      Print(g, r, [&] {
        PrintObject(r);
        std::cout << "key_id" << "  " << r["key"].value("key_id", "") << "\n";
      });
      return 0;
    };
  });
  auto* plist = policy->add_subcommand("list", "list active policies");
  plist->callback([&] {
    action = [&] {
      Api api(g);
      json r = api.CallJson("GET", "/api/v1/policies");
      Print(g, r, [&] { PrintTable(kPolicyColumns, r["policies"]); });
      return 0;
    };
  });
  int64_t version = 0;
  auto* pget = policy->add_subcommand("get", "show a tenant's policy");
  pget->add_option("--tenant-id", tenant, "tenant id")->required();
  pget->add_option("--version", version, "a specific version (default: active)");
  pget->callback([&] {
    action = [&] {
      Api api(g);
      json r = api.CallJson("GET", TenantPath(tenant, "/policy") + (version > 0 ? "?version=" + std::to_string(version) : ""));
      Print(g, r, [&] { PrintObject(r); });
      return 0;
    };
  });
  auto* pversions = policy->add_subcommand("versions", "list a tenant's policy versions");
  pversions->add_option("--tenant-id", tenant, "tenant id")->required();
  pversions->callback([&] {
    action = [&] {
      Api api(g);
      json r = api.CallJson("GET", TenantPath(tenant, "/policy/versions"));
      Print(g, r, [&] { PrintTable({"version", "policy_hash", "created_by", "created_at", "sign_enabled"}, r["versions"]); });
      return 0;
    };
  });
  int64_t if_version = 0;
  auto* pupdate = policy->add_subcommand("update", "change a tenant's policy (new version)");
  pupdate->add_option("--tenant-id", tenant, "tenant id")->required();
  pupdate->add_option("--if-version", if_version, "fail unless the active version is this one");
  pf.Add(pupdate);
  pupdate->callback([&] {
    action = [&] {
      Api api(g);
      json body = pf.ToJson();
      if (body.empty()) Fail("nothing to update: give at least one policy flag", 2);
      std::map<std::string, std::string> headers;
      if (if_version > 0) headers["If-Match"] = std::to_string(if_version);
      json r = api.CallJson("PUT", TenantPath(tenant, "/policy"), &body, headers);
      Print(g, r, [&] { PrintObject(r); });
      return 0;
    };
  });
  bool yes = false;
  auto* pdelete = policy->add_subcommand("delete", "delete a tenant's policy (signing stops; keys kept, disabled)");
  pdelete->add_option("--tenant-id", tenant, "tenant id")->required();
  pdelete->add_flag("--yes", yes, "confirm");
  pdelete->callback([&] {
    action = [&] {
      if (!yes) Fail("refusing to delete the policy of '" + tenant + "' without --yes", 2);
      Api api(g);
      json r = api.CallJson("DELETE", TenantPath(tenant, "/policy"));
      Print(g, r, [&] { std::cout << "deleted policy of tenant " << tenant << "\n"; });
      return 0;
    };
  });

  // sign
  std::string digest, file, format = "der", out_file, key_id;
  auto* sign = app.add_subcommand("sign", "sign a digest (or a file's digest) with the tenant's active key");
  sign->add_option("--tenant-id", tenant, "tenant id")->required();
  sign->add_option("--digest", digest, "hex digest (SHA-256/384/512 per the tenant's algorithm)");
  sign->add_option("--file", file, "hash this file locally and sign its digest");
  sign->add_option("--format", format, "ECDSA output: der or p1363")->check(CLI::IsMember({"der", "p1363"}));
  sign->add_option("--out", out_file, "write the binary signature to this file");
  std::string asset_id;
  sign->add_option("--asset-id", asset_id, "your reference for the asset, kept in the ledger");
  sign->callback([&] {
    action = [&] {
      Api api(g);
      json body = {{"digest", DigestHex(api, tenant, digest, file)}, {"format", format}};
      if (!asset_id.empty()) body["asset_id"] = asset_id;
      json r = api.CallJson("POST", TenantPath(tenant, "/sign"), &body);
      if (!out_file.empty()) {
        auto sig = crypto::Base64Decode(r.value("signature", ""));
        if (!sig.ok()) Fail("server returned a malformed signature");
        WriteFileOrFail(out_file, crypto::AsString(*sig));
      }
      Print(g, r, [&] { PrintObject(r); });
      return 0;
    };
  });

  // verify
  std::string signature, signature_file;
  auto* verify = app.add_subcommand("verify", "verify a signature with one of the tenant's keys");
  verify->add_option("--tenant-id", tenant, "tenant id")->required();
  verify->add_option("--digest", digest, "hex digest");
  verify->add_option("--file", file, "hash this file locally");
  verify->add_option("--signature", signature, "base64 signature");
  verify->add_option("--signature-file", signature_file, "binary signature file");
  verify->add_option("--format", format, "ECDSA signature format: der or p1363")->check(CLI::IsMember({"der", "p1363"}));
  verify->add_option("--key-id", key_id, "key to verify with (default: active key)");
  verify->callback([&] {
    action = [&] {
      Api api(g);
      if (signature.empty() == signature_file.empty()) Fail("give exactly one of --signature or --signature-file", 2);
      std::string sig_b64 = signature.empty() ? crypto::Base64Encode(crypto::AsBytes(ReadFileOrFail(signature_file)))
                                              : signature;
      json body = {{"digest", DigestHex(api, tenant, digest, file)}, {"signature", sig_b64}, {"format", format}};
      if (!key_id.empty()) body["key_id"] = key_id;
      json r = api.CallJson("POST", TenantPath(tenant, "/verify"), &body);
      bool valid = r.value("valid", false);
      Print(g, r, [&] {
        std::cout << (valid ? "signature is valid" : "signature is NOT valid") << " (key " << r.value("key_id", "")
                  << ", " << r.value("key_state", "") << ")\n";
      });
      return valid ? 0 : kExitError;
    };
  });

  // ledger
  auto* ledger = app.add_subcommand("ledger", "read the signing ledger");
  ledger->require_subcommand(1);
  int64_t after = 0;
  int limit = 100;
  std::string from, to;
  bool all_pages = false;
  auto* llist = ledger->add_subcommand("list", "list ledger entries (oldest first)");
  llist->add_option("--tenant-id", tenant, "tenant id")->required();
  llist->add_option("--key-id", key_id, "only entries signed by this key");
  llist->add_option("--from", from, "RFC 3339 start time (inclusive)");
  llist->add_option("--to", to, "RFC 3339 end time (exclusive)");
  llist->add_option("--after", after, "cursor: entries after this sequence number");
  llist->add_option("--limit", limit, "entries per page (1-1000)")->check(CLI::Range(1, 1000));
  llist->add_flag("--all", all_pages, "follow the cursor to the end");
  llist->callback([&] {
    action = [&] {
      Api api(g);
      json all = json::array();
      int64_t cursor = after;
      for (;;) {
        std::string q = "?limit=" + std::to_string(limit) + "&after=" + std::to_string(cursor);
        if (!key_id.empty()) q += "&key_id=" + client::QueryEscape(key_id);
        if (!from.empty()) q += "&from=" + client::QueryEscape(from);
        if (!to.empty()) q += "&to=" + client::QueryEscape(to);
        json page = api.CallJson("GET", TenantPath(tenant, "/ledger" + q));
        for (auto& e : page["entries"]) all.push_back(e);
        if (!all_pages || page["next_cursor"].is_null()) {
          if (!all_pages && !page["next_cursor"].is_null()) {
            std::cerr << "more entries: --after " << page["next_cursor"].get<int64_t>() << " (or --all)\n";
          }
          break;
        }
        cursor = page["next_cursor"].get<int64_t>();
      }
      json out = {{"tenant_id", tenant}, {"entries", all}};
      Print(g, out, [&] {
        PrintTable({"seq", "signed_at", "key_id", "kind", "asset_id", "request_id", "digest"}, all);
      });
      return 0;
    };
  });

  // key
  auto* key = app.add_subcommand("key", "inspect tenant keys");
  key->require_subcommand(1);
  auto* pubkey = key->add_subcommand("pubkey", "print a tenant's public key (PEM)");
  pubkey->add_option("--tenant-id", tenant, "tenant id")->required();
  pubkey->add_option("--key-id", key_id, "a specific key (default: active)");
  pubkey->add_option("--out", out_file, "write the PEM to this file");
  pubkey->callback([&] {
    action = [&] {
      Api api(g);
      auto r = api.Call("GET", TenantPath(tenant, "/public-key") + (key_id.empty() ? "" : "?key_id=" + key_id));
      if (!out_file.empty()) WriteFileOrFail(out_file, r.body);
      else std::cout << r.body;
      return 0;
    };
  });
  auto* klist = key->add_subcommand("list", "list a tenant's keys");
  klist->add_option("--tenant-id", tenant, "tenant id")->required();
  klist->callback([&] {
    action = [&] {
      Api api(g);
      json r = api.CallJson("GET", TenantPath(tenant, "/keys"));
      Print(g, r, [&] { PrintTable(kKeyColumns, r["keys"]); });
      return 0;
    };
  });
  auto* kget = key->add_subcommand("get", "show one key");
  kget->add_option("--tenant-id", tenant, "tenant id")->required();
  kget->add_option("--key-id", key_id, "key id")->required();
  kget->callback([&] {
    action = [&] {
      Api api(g);
      json r = api.CallJson("GET", TenantPath(tenant, "/keys/" + key_id));
      Print(g, r, [&] { PrintObject(r); });
      return 0;
    };
  });

  // ca (built-in issuing CA)
  auto* ca = app.add_subcommand("ca", "the built-in issuing CA");
  ca->require_subcommand(1);
  std::string ca_alg, ca_subject, ca_provider;
  int ca_validity_days = 0;
  auto* cainit = ca->add_subcommand("init", "create the CA key and self-signed CA certificate (admin)");
  cainit->add_option("--algorithm", ca_alg, "CA key algorithm (default ES256)");
  cainit->add_option("--subject", ca_subject, "CA subject (default 'CN=C2-Concierge Issuing CA')");
  cainit->add_option("--validity-days", ca_validity_days, "CA certificate validity (default 3650)");
  cainit->add_option("--provider", ca_provider, "backend for the CA key (default software)");
  cainit->add_option("--out", out_file, "also write the CA certificate PEM to this file");
  cainit->callback([&] {
    action = [&] {
      Api api(g);
      json body = json::object();
      if (!ca_alg.empty()) body["algorithm"] = ca_alg;
      if (!ca_subject.empty()) body["subject"] = ca_subject;
      if (!ca_provider.empty()) body["provider"] = ca_provider;
      if (ca_validity_days > 0) body["validity_days"] = ca_validity_days;
      json r = api.CallJson("POST", "/api/v1/ca", &body);
      if (!out_file.empty()) WriteFileOrFail(out_file, r.value("certificate_pem", ""));
      Print(g, r, [&] { PrintObject(r); });
      return 0;
    };
  });
  auto* cacert = ca->add_subcommand("cert", "print the CA certificate (PEM)");
  cacert->add_option("--out", out_file, "write the PEM to this file");
  cacert->callback([&] {
    action = [&] {
      Api api(g);
      auto r = api.Call("GET", "/api/v1/ca/certificate");
      if (!out_file.empty()) WriteFileOrFail(out_file, r.body);
      else std::cout << r.body;
      return 0;
    };
  });
  std::string crl_format = "pem";
  auto* cacrl = ca->add_subcommand("crl", "fetch the CA's current CRL");
  cacrl->add_option("--out", out_file, "write the CRL to this file (default stdout)");
  cacrl->add_option("--format", crl_format, "pem or der")->check(CLI::IsMember({"pem", "der"}));
  cacrl->callback([&] {
    action = [&] {
      Api api(g);
      auto r = api.Call("GET", "/api/v1/ca/crl?format=" + crl_format);
      if (!out_file.empty()) WriteFileOrFail(out_file, r.body);
      else std::cout << r.body;
      return 0;
    };
  });

  // cert (tenant certificates)
  auto* cert = app.add_subcommand("cert", "tenant certificates");
  cert->require_subcommand(1);
  std::string chain_file;
  auto* certget = cert->add_subcommand("get", "print the tenant's certificate chain (PEM, end-entity first)");
  certget->add_option("--tenant-id", tenant, "tenant id")->required();
  certget->add_option("--out", out_file, "write the PEM to this file");
  certget->callback([&] {
    action = [&] {
      Api api(g);
      auto r = api.Call("GET", TenantPath(tenant, "/certificate-chain"));
      if (!out_file.empty()) WriteFileOrFail(out_file, r.body);
      else std::cout << r.body;
      return 0;
    };
  });
  auto* certcsr = cert->add_subcommand("csr", "a CSR for the tenant's active key, signed inside its backend");
  certcsr->add_option("--tenant-id", tenant, "tenant id")->required();
  certcsr->add_option("--out", out_file, "write the PEM to this file");
  certcsr->callback([&] {
    action = [&] {
      Api api(g);
      auto r = api.Call("GET", TenantPath(tenant, "/csr"));
      if (!out_file.empty()) WriteFileOrFail(out_file, r.body);
      else std::cout << r.body;
      return 0;
    };
  });
  auto* certimport = cert->add_subcommand("import", "import a chain from an external CA for the active key");
  certimport->add_option("--tenant-id", tenant, "tenant id")->required();
  certimport->add_option("--chain", chain_file, "PEM file: end-entity first, intermediates, root last")->required();
  certimport->callback([&] {
    action = [&] {
      Api api(g);
      json body = {{"chain_pem", ReadFileOrFail(chain_file)}};
      json r = api.CallJson("POST", TenantPath(tenant, "/certificate"), &body);
      Print(g, r, [&] { PrintObject(r); });
      return 0;
    };
  });
  auto* certissue = cert->add_subcommand("issue", "issue a certificate for the active key from the built-in CA");
  certissue->add_option("--tenant-id", tenant, "tenant id")->required();
  certissue->callback([&] {
    action = [&] {
      Api api(g);
      json r = api.CallJson("POST", TenantPath(tenant, "/certificate/issue"));
      Print(g, r, [&] { PrintObject(r); });
      return 0;
    };
  });
  auto* certrevoke = cert->add_subcommand("revoke", "revoke the active key's certificate (security-officer/admin)");
  certrevoke->add_option("--tenant-id", tenant, "tenant id")->required();
  certrevoke->add_flag("--yes", yes, "confirm");
  certrevoke->callback([&] {
    action = [&] {
      if (!yes) Fail("refusing to revoke the certificate of '" + tenant + "' without --yes", 2);
      Api api(g);
      json r = api.CallJson("POST", TenantPath(tenant, "/certificate/revoke"));
      Print(g, r, [&] { PrintObject(r); });
      return 0;
    };
  });

  // c2pa-signer: c2patool's --signer-path protocol (docs/c2pa.md).
  bool signer_info = false;
  std::string tsa_url, legacy_alg;
  int64_t legacy_reserve = 0;
  auto* c2pa = app.add_subcommand("c2pa-signer", "external signer for c2patool --signer-path");
  c2pa->add_option("--tenant-id", tenant, "tenant id")->required();
  c2pa->add_flag("--signer-info", signer_info, "print {alg, sign_cert, reserve_size} JSON and exit");
  c2pa->add_option("--tsa-url", tsa_url, "timestamp authority URL to report in --signer-info");
  // Older c2patool releases pass these when alg and cert come from settings;
  // accepted so such invocations do not fail, and checked against the server.
  c2pa->add_option("--alg", legacy_alg, "(deprecated by c2patool) expected algorithm");
  c2pa->add_option("--reserve-size", legacy_reserve, "(deprecated by c2patool) ignored");
  c2pa->callback([&] {
    action = [&] {
      Api api(g);
      if (signer_info) {
        json info = api.CallJson("GET", TenantPath(tenant, "/c2pa-signer-info"));
        json out = {{"alg", info["alg"]}, {"sign_cert", info["sign_cert"]}, {"reserve_size", info["reserve_size"]}};
        if (!tsa_url.empty()) out["tsa_url"] = tsa_url;
        std::cout << out.dump() << std::endl;
        return 0;
      }
      std::string tbs((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
      if (tbs.empty()) Fail("nothing to sign on stdin");
      auto r = api.CallBytes("POST", TenantPath(tenant, "/sign/raw"), tbs,
                             {{"Content-Type", "application/octet-stream"}});
      if (!legacy_alg.empty()) {
        std::string got = r.headers.count("x-algorithm") ? r.headers.at("x-algorithm") : "";
        auto want = ParseAlgorithm(legacy_alg);
        if (!want || AlgorithmName(*want) != got) Fail("c2patool expects " + legacy_alg + " but the tenant signs with " + got);
      }
      if (r.body.empty()) Fail("server returned an empty signature");
      std::cout.write(r.body.data(), static_cast<std::streamsize>(r.body.size()));
      std::cout.flush();
      return std::cout ? 0 : kExitError;
    };
  });

  // apikey
  auto* apikey = app.add_subcommand("apikey", "manage API keys (admin)");
  apikey->require_subcommand(1);
  std::string role, name;
  auto* acreate = apikey->add_subcommand("create", "create an API key; the token is shown once");
  acreate->add_option("--role", role, "admin|security-officer|operator|signer|auditor")->required();
  acreate->add_option("--tenant-id", tenant, "scope the key to one tenant");
  acreate->add_option("--name", name, "description");
  acreate->callback([&] {
    action = [&] {
      Api api(g);
      json body = {{"role", role}, {"name", name}};
      if (!tenant.empty()) body["tenant_id"] = tenant;
      json r = api.CallJson("POST", "/api/v1/api-keys", &body);
      Print(g, r, [&] { PrintObject(r); });
      return 0;
    };
  });
  auto* alist = apikey->add_subcommand("list", "list API keys (never their secrets)");
  alist->callback([&] {
    action = [&] {
      Api api(g);
      json r = api.CallJson("GET", "/api/v1/api-keys");
      Print(g, r, [&] { PrintTable({"id", "role", "tenant_id", "name", "created_at", "revoked_at"}, r["api_keys"]); });
      return 0;
    };
  });
  std::string apikey_id;
  auto* arevoke = apikey->add_subcommand("revoke", "revoke an API key");
  arevoke->add_option("id", apikey_id, "API key id")->required();
  arevoke->callback([&] {
    action = [&] {
      Api api(g);
      json r = api.CallJson("DELETE", "/api/v1/api-keys/" + apikey_id);
      Print(g, r, [&] { std::cout << "revoked API key " << apikey_id << "\n"; });
      return 0;
    };
  });

  // tenant list / whoami / health
  auto* tenants = app.add_subcommand("tenant", "list tenants");
  tenants->require_subcommand(1);
  auto* tlist = tenants->add_subcommand("list", "list tenants");
  tlist->callback([&] {
    action = [&] {
      Api api(g);
      json r = api.CallJson("GET", "/api/v1/tenants");
      Print(g, r, [&] { PrintTable({"tenant_id", "policy_version", "created_at", "updated_at"}, r["tenants"]); });
      return 0;
    };
  });
  auto* whoami = app.add_subcommand("whoami", "show the identity of the API token");
  whoami->callback([&] {
    action = [&] {
      Api api(g);
      json r = api.CallJson("GET", "/api/v1/whoami");
      Print(g, r, [&] { PrintObject(r); });
      return 0;
    };
  });
  auto* ready = app.add_subcommand("status", "show server readiness");
  ready->callback([&] {
    action = [&] {
      client::HttpClient c(g.url, "");
      auto r = c.Get("/ready");
      if (!r.ok()) Fail(r.status().message(), kExitUnreachable);
      json j = json::parse(r->body, nullptr, false);
      Print(g, j, [&] {
        std::cout << "ready  " << (j.value("ready", false) ? "yes" : "no") << "\n";
        if (j.contains("components")) {
          for (const auto& [k, v] : j["components"].items()) {
            std::cout << k << "  " << (v.value("ok", false) ? "ok" : "FAIL") << "  " << v.value("detail", "") << "\n";
          }
        }
      });
      return r->status == 200 ? 0 : kExitError;
    };
  });

  AddRotationCommands(ctx);
  AddFailoverCommands(ctx);
  AddIncidentCommands(ctx);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  try {
    return action ? action() : 2;
  } catch (const CliError& e) {
    std::cerr << "error: " << e.message << "\n";
    return e.exit_code;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitError;
  }
}

}  // namespace concierge::cli
