// The real keyctl binary on a real PostgreSQL server started by this binary
// (PgEnvironment): `keyctl migrate` / `keyctl serve` with --database-url,
// PostgreSQL stopped under signing load and started again, and incident
// response (incident, webhook outbox, key-compromise playbook, re-sign job).
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <sstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "client/http_client.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "store/migrations/migrations.h"
#include "testing/pg_cluster.h"
#include "integration/server_helpers.h"
#include "testing/server_process.h"
#include "testing/test_util.h"

namespace concierge {
namespace {

using json = nlohmann::json;

::testing::Environment* const kPg = ::testing::AddGlobalTestEnvironment(new testing::PgEnvironment);

testing::PgCluster& Cluster() { return testing::PgEnvironment::Cluster(); }

std::string NewDatabase(const std::string& name) { return Cluster().NewDatabase(name); }

int64_t CountRows(const std::string& url, const std::string& sql) {
  const auto rows = testing::PgQuery(url, sql);
  return rows.size() == 1 && rows[0].size() == 1 ? std::stoll(rows[0][0]) : -1;
}

TEST(PgIntegrationTest, MigrateAndServeSelectPostgresByUrl) {
  const std::string url = NewDatabase("concierge_cli");
  const std::string keyctl = testing::KeyctlBinary();
  testing::CommandResult m = testing::RunCommand(keyctl + " migrate --database-url '" + url + "'");
  EXPECT_EQ(m.exit_code, 0) << m.output;
  const int latest = static_cast<int>(store::PostgresMigrations().size());
  EXPECT_NE(m.output.find("schema version " + std::to_string(latest)), std::string::npos) << m.output;
  EXPECT_EQ(CountRows(url, "SELECT COUNT(*) FROM schema_migrations"), latest);

  // A password on the command line is refused, and not repeated back.
  const std::string with_password =
      "postgresql://postgres:Hunter2Hunter2@127.0.0.1:" + std::to_string(Cluster().port()) +
      "/concierge_cli";
  testing::CommandResult refused =
      testing::RunCommand(keyctl + " migrate --database-url '" + with_password + "'");
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_EQ(refused.output.find("Hunter2"), std::string::npos) << refused.output;
  EXPECT_NE(refused.output.find("KEYCTL_DATABASE_URL"), std::string::npos) << refused.output;
  // The environment variable works too (trust auth ignores the password).
  testing::CommandResult env =
      testing::RunCommand("KEYCTL_DATABASE_URL='" + with_password + "' " + keyctl + " migrate");
  EXPECT_EQ(env.exit_code, 0) << env.output;
  EXPECT_EQ(env.output.find("Hunter2"), std::string::npos) << env.output;

  testing::TempDir dir;
  const std::string data = dir.File("data");
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start(data, {"--database-url", url})) << server.error();
  client::HttpClient admin(server.url(), testing::ReadBootstrapToken(data));
  ASSERT_NO_FATAL_FAILURE(testing::CreateEs256Tenant(admin, "acme-news"));
  auto signed_r =
      admin.Post("/api/v1/tenants/acme-news/sign",
                 json({{"digest", std::string(64, 'a')}, {"request_id", "pg-1"}}).dump());
  ASSERT_TRUE(signed_r.ok());
  EXPECT_EQ(signed_r->status, 200) << signed_r->body;
  auto ready = admin.Get("/ready");
  ASSERT_TRUE(ready.ok());
  EXPECT_EQ(ready->status, 200) << ready->body;

  // Everything landed in PostgreSQL, nothing in a SQLite file.
  EXPECT_EQ(CountRows(url, "SELECT COUNT(*) FROM ledger WHERE request_id = 'pg-1'"), 1);
  EXPECT_EQ(CountRows(url, "SELECT COUNT(*) FROM tenants WHERE tenant_id = 'acme-news'"), 1);
  EXPECT_FALSE(std::filesystem::exists(data + "/concierge.db"));
  const std::string log = testing::ReadFile(data + ".serve.log");
  EXPECT_NE(log.find("postgresql://postgres@127.0.0.1"), std::string::npos) << log;
}

// Signing load through the real server while PostgreSQL crashes (immediate
// shutdown) and comes back: requests fail with 503 and a clear message while
// it is down, the same server process signs again once it is back, and every
// signature a client received is in the ledger.
TEST(PgIntegrationTest, PostgresStoppedUnderLoadAndRestarted) {
  testing::PgRestartGuard guard(Cluster());
  const std::string url = NewDatabase("concierge_outage");
  testing::TempDir dir;
  const std::string data = dir.File("data");
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start(data, {"--database-url", url})) << server.error();
  const std::string token = testing::ReadBootstrapToken(data);
  {
    client::HttpClient admin(server.url(), token);
    ASSERT_NO_FATAL_FAILURE(testing::CreateEs256Tenant(admin, "acme-news"));
  }

  testing::SigningLoad load(server.url(), token, "acme-news", 8);
  if (!testing::WaitUntil([&] { return load.acked() >= 1000; }, 60)) {
    FAIL() << "load made too little progress before the outage: " << load.acked();
  }
  ASSERT_TRUE(Cluster().Stop(/*immediate=*/true));
  const int acked_at_stop = load.acked();
  const int unavailable_before = load.unavailable();
  const bool saw_503 = testing::WaitUntil([&] { return load.unavailable() >= unavailable_before + 200; }, 30);
  client::HttpClient probe(server.url(), token);
  auto ready_down = probe.Get("/ready");

  const auto restart_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(Cluster().Restart()) << Cluster().error();
  const int acked_at_restart = load.acked();
  const bool recovered = testing::WaitUntil([&] { return load.acked() > acked_at_restart; }, 60);
  const double recovery_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - restart_at).count();
  const bool kept_going = testing::WaitUntil([&] { return load.acked() >= acked_at_restart + 1000; }, 60);
  load.Stop();

  EXPECT_TRUE(saw_503) << "503s while PostgreSQL was down: " << load.unavailable();
  EXPECT_EQ(load.transport_errors(), 0) << "the server itself must stay up throughout";
  EXPECT_EQ(load.other_statuses(), 0) << load.first_other();
  const std::string message = load.first_unavailable_message();
  EXPECT_NE(message.find("database unavailable"), std::string::npos) << message;
  ASSERT_TRUE(ready_down.ok());
  EXPECT_EQ(ready_down->status, 503) << ready_down->body;
  EXPECT_FALSE(json::parse(ready_down->body)["components"]["database"]["ok"].get<bool>()) << ready_down->body;
  EXPECT_TRUE(recovered) << "no signature after the restart";
  EXPECT_TRUE(kept_going) << "acked " << load.acked() - acked_at_restart << " after the restart";
  std::printf("[ outage   ] %d signed before the stop, %d answered 503 while down, first signature %.0f ms "
              "after the restart, %d after\n[ outage   ] 503 message: %s\n",
              acked_at_stop, load.unavailable(), recovery_ms, load.acked() - acked_at_restart, message.c_str());

  // The same process (never restarted) answers, ready again, and every
  // signature a client received is in the ledger.
  ASSERT_TRUE(server.running());
  client::HttpClient admin(server.url(), token);
  auto ready_up = admin.Get("/ready");
  ASSERT_TRUE(ready_up.ok());
  EXPECT_EQ(ready_up->status, 200) << ready_up->body;
  const std::map<std::string, std::string> acknowledged = load.acknowledged();
  const std::map<std::string, std::string> ledger = testing::ReadLedgerDigests(admin, "acme-news");
  EXPECT_EQ(testing::MissingFromLedger(acknowledged, ledger), 0u) << "of " << acknowledged.size()
                                                                    << " acknowledged signatures";
  EXPECT_GE(ledger.size(), acknowledged.size());  // rows committed but never answered may exist
}

// The lines of a backup between its header and its end line: the tables and
// files, which must not depend on the engine the backup came from.
std::vector<std::string> BackupBody(const std::string& path) {
  std::vector<std::string> lines;
  std::istringstream in(testing::ReadFile(path));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  if (lines.size() < 2) return {};
  return std::vector<std::string>(lines.begin() + 1, lines.end() - 1);
}

bool IsMode0600(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && (st.st_mode & 0777) == 0600;
}

// keyctl backup of a SQLite service, restored into PostgreSQL: the same keys
// sign (checked with openssl against the public key from before), the same
// tokens work, the ledger and certificates are there and seq continues; a
// backup of that PostgreSQL database restored into SQLite carries the very
// same rows; damaged or truncated backups and non-empty targets are refused
// before anything is written.
TEST(PgIntegrationTest, BackupFromSqliteRestoresIntoPostgresAndBack) {
  const std::string keyctl = testing::KeyctlBinary();
  testing::TempDir dir;
  const std::string a = dir.File("a");
  std::string token, public_key, rotation_id, evidence_before;
  json timeline_before;
  std::map<std::string, std::string> ledger_before;
  {
    testing::ServerProcess server;
    ASSERT_TRUE(server.Start(a)) << server.error();
    token = testing::ReadBootstrapToken(a);
    client::HttpClient admin(server.url(), token);
    ASSERT_NO_FATAL_FAILURE(testing::CreateEs256Tenant(admin, "acme-news"));
    auto ca = admin.Post("/api/v1/ca", "{}");
    ASSERT_TRUE(ca.ok());
    ASSERT_EQ(ca->status, 201) << ca->body;
    auto cert = admin.Post("/api/v1/tenants/acme-news/certificate/issue", "{}");
    ASSERT_TRUE(cert.ok());
    ASSERT_EQ(cert->status, 201) << cert->body;
    for (int i = 0; i < 25; ++i) {
      const std::string id = "b-" + std::to_string(i);
      auto r = admin.Post("/api/v1/tenants/acme-news/sign",
                          json({{"digest", crypto::HexEncode(crypto::Sha256(crypto::AsBytes(id)))},
                                {"request_id", id},
                                {"asset_id", "asset \"" + id + "\" ✓ \\ {x,y}"}})
                              .dump());
      ASSERT_TRUE(r.ok());
      ASSERT_EQ(r->status, 200) << r->body;
    }
    // A completed rotation: rotations, their timeline, a Rotation Evidence
    // Pack (bytes) and the evidence key are in the backup too.
    auto scheduled = admin.Post("/api/v1/tenants/acme-news/rotations", json({{"owner", "ops@example.com"}}).dump());
    ASSERT_TRUE(scheduled.ok());
    ASSERT_EQ(scheduled->status, 201) << scheduled->body;
    rotation_id = json::parse(scheduled->body)["rotation_id"].get<std::string>();
    testing::CommandResult executed = testing::RunCommand(keyctl + " --url " + server.url() + " --token " + token +
                                                          " rotation execute " + rotation_id);
    ASSERT_EQ(executed.exit_code, 0) << executed.output;
    // The pack is stored by the scheduler right after the run settles.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      auto pack = admin.Get("/api/v1/rotations/" + rotation_id + "/evidence");
      ASSERT_TRUE(pack.ok());
      if (pack->status == 200) {
        evidence_before = pack->body;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_FALSE(evidence_before.empty()) << "no evidence pack for " << rotation_id;
    timeline_before = json::parse(admin.Get("/api/v1/rotations/" + rotation_id)->body)["timeline"];
    ASSERT_FALSE(timeline_before.empty());
    public_key = admin.Get("/api/v1/tenants/acme-news/public-key")->body;
    ledger_before = testing::ReadLedgerDigests(admin, "acme-news");
    server.Kill(SIGTERM);
  }
  ASSERT_EQ(ledger_before.size(), 25u);

  // Backup of the SQLite service: a 0600 file without the key-encryption key.
  const std::string b1 = dir.File("sqlite.backup");
  testing::CommandResult backup = testing::RunCommand(keyctl + " backup --data-dir " + a + " --out " + b1);
  ASSERT_EQ(backup.exit_code, 0) << backup.output;
  EXPECT_NE(backup.output.find("note: software keys are sealed under the key-encryption key"), std::string::npos)
      << backup.output;
  EXPECT_TRUE(IsMode0600(b1));
  const std::string b1_text = testing::ReadFile(b1);
  const std::string kek = testing::ReadFile(a + "/keystore/master.key");
  EXPECT_EQ(b1_text.find(crypto::Base64Encode(crypto::AsBytes(kek))), std::string::npos);
  EXPECT_EQ(b1_text.find("PRIVATE KEY"), std::string::npos);
  EXPECT_NE(b1_text.find("\"keystore/keys/"), std::string::npos);
  testing::CommandResult again = testing::RunCommand(keyctl + " backup --data-dir " + a + " --out " + b1);
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.output.find("exists"), std::string::npos) << again.output;

  // Restore into PostgreSQL, with the KEK copied over by the operator.
  const std::string url = NewDatabase("concierge_restored");
  const std::string b = dir.File("b");
  testing::CommandResult restore =
      testing::RunCommand(keyctl + " restore " + b1 + " --data-dir " + b + " --database-url '" + url + "'");
  ASSERT_EQ(restore.exit_code, 0) << restore.output;
  EXPECT_NE(restore.output.find("key-encryption key at " + b + "/keystore/master.key"), std::string::npos)
      << restore.output;
  testing::WriteFile(b + "/keystore/master.key", kek);
  ::chmod((b + "/keystore/master.key").c_str(), 0600);
  testing::ServerProcess restored;
  ASSERT_TRUE(restored.Start(b, {"--database-url", url})) << restored.error();
  {
    client::HttpClient admin(restored.url(), token);  // the old token works
    EXPECT_EQ(admin.Get("/api/v1/tenants/acme-news/public-key")->body, public_key);
    EXPECT_EQ(testing::ReadLedgerDigests(admin, "acme-news"), ledger_before);
    auto rotation = admin.Get("/api/v1/rotations/" + rotation_id);
    ASSERT_TRUE(rotation.ok());
    ASSERT_EQ(rotation->status, 200) << rotation->body;
    EXPECT_EQ(json::parse(rotation->body)["state"], "completed");
    EXPECT_EQ(json::parse(rotation->body)["timeline"], timeline_before);
    auto pack = admin.Get("/api/v1/rotations/" + rotation_id + "/evidence");
    ASSERT_TRUE(pack.ok());
    ASSERT_EQ(pack->status, 200) << pack->body;
    EXPECT_EQ(pack->body, evidence_before);  // byte for byte, through BYTEA
    auto evidence_key = admin.Get("/api/v1/evidence-key");
    ASSERT_TRUE(evidence_key.ok());
    EXPECT_EQ(evidence_key->status, 200) << evidence_key->body;
    auto chain = admin.Get("/api/v1/tenants/acme-news/certificate-chain");
    ASSERT_TRUE(chain.ok());
    EXPECT_EQ(chain->status, 200) << chain->body;
    // The restored key signs; openssl checks it against the key from before.
    const std::string data = "signed after the restore";
    auto r = admin.Post("/api/v1/tenants/acme-news/sign",
                        json({{"digest", crypto::HexEncode(crypto::Sha256(crypto::AsBytes(data)))}}).dump());
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_GT(json::parse(r->body)["ledger_seq"].get<int64_t>(), 25);  // seq continues after the restored rows
    testing::WriteFile(dir.File("pub.pem"), public_key);
    testing::WriteFile(dir.File("data"), data);
    testing::WriteFile(dir.File("sig"), crypto::AsString(*crypto::Base64Decode(
                                            json::parse(r->body)["signature"].get<std::string>())));
    testing::CommandResult v = testing::RunCommand("openssl dgst -sha256 -verify " + dir.File("pub.pem") +
                                                   " -signature " + dir.File("sig") + " " + dir.File("data"));
    EXPECT_EQ(v.exit_code, 0) << v.output;
  }
  // A second restore into the same (now used) database is refused.
  testing::CommandResult twice = testing::RunCommand(keyctl + " restore " + b1 + " --data-dir " + dir.File("c") +
                                                     " --database-url '" + url + "'");
  EXPECT_NE(twice.exit_code, 0);
  EXPECT_NE(twice.output.find("not empty"), std::string::npos) << twice.output;

  // Online backup of the PostgreSQL service, restored into SQLite: same rows.
  const std::string b2 = dir.File("pg.backup");
  testing::CommandResult pg_backup =
      testing::RunCommand(keyctl + " backup --data-dir " + b + " --database-url '" + url + "' --out " + b2);
  ASSERT_EQ(pg_backup.exit_code, 0) << pg_backup.output;
  restored.Kill(SIGTERM);
  const std::string d = dir.File("d");
  testing::CommandResult to_sqlite = testing::RunCommand(keyctl + " restore " + b2 + " --data-dir " + d);
  ASSERT_EQ(to_sqlite.exit_code, 0) << to_sqlite.output;
  const std::string b3 = dir.File("sqlite-again.backup");
  ASSERT_EQ(testing::RunCommand(keyctl + " backup --data-dir " + d + " --out " + b3).exit_code, 0);
  const std::vector<std::string> pg_body = BackupBody(b2);
  EXPECT_GT(pg_body.size(), 30u);
  EXPECT_EQ(BackupBody(b3), pg_body);
  // Every table comes along, read from the database's own catalogue: the audit
  // log (BYTEA hashes and signatures, compared byte for byte above) and the
  // incident-response tables of migration v7, even while empty.
  {
    std::istringstream in(testing::ReadFile(b2));
    std::string line, last;
    while (std::getline(in, line)) {
      if (!line.empty()) last = line;
    }
    const json rows = json::parse(last)["end"]["rows"];
    EXPECT_GT(rows.value("audit_entries", int64_t{0}), 0) << last;
    EXPECT_GT(rows.value("audit_keys", int64_t{0}), 0) << last;
    for (const char* table : {"audit_nodes", "audit_checkpoints", "incidents", "incident_events", "webhooks",
                              "webhook_events", "webhook_deliveries", "resign_jobs", "resign_results"}) {
      EXPECT_TRUE(rows.contains(table)) << table << " missing from " << last;
    }
  }

  // Damaged and truncated backups are refused before anything is written.
  std::string damaged = testing::ReadFile(b2);
  const size_t at = damaged.find("b-1");
  ASSERT_NE(at, std::string::npos);
  damaged[at] = 'c';
  testing::WriteFile(dir.File("damaged.backup"), damaged);
  testing::CommandResult bad = testing::RunCommand(keyctl + " restore " + dir.File("damaged.backup") +
                                                   " --data-dir " + dir.File("e"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("damaged"), std::string::npos) << bad.output;
  std::string truncated = testing::ReadFile(b2);
  truncated.resize(truncated.rfind("{\"end\""));
  testing::WriteFile(dir.File("truncated.backup"), truncated);
  testing::CommandResult cut = testing::RunCommand(keyctl + " restore " + dir.File("truncated.backup") +
                                                   " --data-dir " + dir.File("e"));
  EXPECT_NE(cut.exit_code, 0);
  EXPECT_NE(cut.output.find("truncated"), std::string::npos) << cut.output;
  EXPECT_FALSE(std::filesystem::exists(dir.File("e")));
}


// Incident response on PostgreSQL through the real server: an incident opened,
// listed and notified (webhook outbox), then its key-compromise playbook
// (pause, rotate, re-sign every entry the key signed, resume) with the
// re-sign job's batches in the PostgreSQL ledger, and the job's results.
TEST(PgIntegrationTest, IncidentResponseAndResignJobOnPostgres) {
  const std::string url = NewDatabase("concierge_incidents");
  testing::TempDir dir;
  const std::string data = dir.File("data");
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start(data, {"--database-url", url})) << server.error();
  client::HttpClient admin(server.url(), testing::ReadBootstrapToken(data));
  auto call = [&](const std::string& method, const std::string& path, const std::string& body = "") {
    auto r = admin.Request(method, path, body);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : client::HttpResult{};
  };
  auto get_json = [&](const std::string& path) {
    client::HttpResult r = call("GET", path);
    EXPECT_EQ(r.status, 200) << path << ": " << r.body;
    return json::parse(r.body, nullptr, false);
  };
  ASSERT_EQ(call("POST", "/api/v1/ca", "{}").status, 201);
  client::HttpResult policy = call("POST", "/api/v1/tenants/acme-news/policy", R"({"algorithm":"ES256"})");
  ASSERT_EQ(policy.status, 201) << policy.body;
  const std::string old_key_id = json::parse(policy.body)["key"]["key_id"];
  constexpr int kSigned = 30;
  for (int i = 0; i < kSigned; ++i) {
    const std::string digest = crypto::Sha256Hex(crypto::AsBytes("pg-incident-" + std::to_string(i)));
    client::HttpResult r = call("POST", "/api/v1/tenants/acme-news/sign",
                                json({{"digest", digest}, {"asset_id", "a-" + std::to_string(i)}}).dump());
    ASSERT_EQ(r.status, 200) << r.body;
  }
  // Nothing listens there: deliveries stay in the outbox, which is the point.
  client::HttpResult hook = call("POST", "/api/v1/webhooks",
                                 json({{"tenant_id", "acme-news"}, {"url", "https://127.0.0.1:9/hook"}}).dump());
  ASSERT_EQ(hook.status, 201) << hook.body;

  client::HttpResult opened = call("POST", "/api/v1/incidents",
                                   json({{"tenant_id", "acme-news"},
                                         {"type", "key_compromise"},
                                         {"severity", "critical"},
                                         {"title", "key found in a leaked backup"},
                                         {"key_id", old_key_id}})
                                       .dump());
  ASSERT_EQ(opened.status, 201) << opened.body;
  const std::string incident = json::parse(opened.body)["incident_id"];
  json listed = get_json("/api/v1/incidents?tenant_id=acme-news&open=true");
  ASSERT_EQ(listed["incidents"].size(), 1u) << listed.dump();
  EXPECT_EQ(listed["incidents"][0]["incident_id"], incident);
  EXPECT_GE(CountRows(url, "SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'pending'"), 1);

  ASSERT_EQ(call("POST", "/api/v1/incidents/" + incident + "/respond", "{}").status, 202);
  json inc;
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));  // poll gently, 2 cores
        inc = get_json("/api/v1/incidents/" + incident);
        return inc["state"] == "resolved" || (inc["playbook"].is_object() && inc["playbook"]["status"] == "failed");
      },
      120));
  ASSERT_EQ(inc["state"], "resolved") << inc.dump();
  const std::string job_id = inc["playbook"]["job_id"];
  json job = get_json("/api/v1/jobs/" + job_id);
  EXPECT_EQ(job["state"], "completed") << job.dump();
  EXPECT_EQ(job["resigned"], kSigned) << job.dump();

  client::HttpResult results = call("GET", "/api/v1/jobs/" + job_id + "/results");
  ASSERT_EQ(results.status, 200) << results.body;
  // Every re-signature verifies under the new key with the openssl command line.
  const std::string new_key_id = inc["playbook"]["new_key_id"];
  json new_key = get_json("/api/v1/tenants/acme-news/keys/" + new_key_id);
  testing::WriteFile(dir.File("new.pem"), new_key["public_key_pem"].get<std::string>());
  std::istringstream lines(results.body);
  int resigned = 0, verified = 0;
  for (std::string text; std::getline(lines, text);) {
    if (text.empty()) continue;
    const json line = json::parse(text);
    if (line["status"] != "resigned" || line["key_id"] != new_key_id) continue;
    ++resigned;
    testing::WriteFile(dir.File("d.bin"), crypto::AsString(*crypto::HexDecode(line["digest"].get<std::string>())));
    testing::WriteFile(dir.File("s.der"),
                       crypto::AsString(*crypto::Base64Decode(line["signature"].get<std::string>())));
    testing::CommandResult v = testing::RunCommand("openssl pkeyutl -verify -pubin -inkey " + dir.File("new.pem") +
                                                   " -in " + dir.File("d.bin") + " -sigfile " + dir.File("s.der") +
                                                   " 2>&1");
    if (v.output.find("Signature Verified Successfully") != std::string::npos) ++verified;
  }
  EXPECT_EQ(resigned, kSigned);
  EXPECT_EQ(verified, kSigned);
  // In PostgreSQL: one re-signature per original, linked to it, by the new key.
  EXPECT_EQ(CountRows(url, "SELECT COUNT(*) FROM ledger WHERE kind = 'resign' AND resign_of_seq IS NOT NULL"),
            kSigned);
  EXPECT_EQ(CountRows(url, "SELECT COUNT(*) FROM ledger WHERE kind = 'resign' AND key_id = '" + old_key_id + "'"), 0);
  EXPECT_EQ(CountRows(url, "SELECT COUNT(*) FROM resign_results WHERE job_id = '" + job_id + "'"), kSigned);
  EXPECT_EQ(CountRows(url, "SELECT COUNT(*) FROM resign_jobs WHERE cursor_seq > 0 AND job_id = '" + job_id + "'"), 1);
  json timeline = get_json("/api/v1/incidents/" + incident + "/timeline");
  EXPECT_GE(timeline["timeline"].size(), 3u) << timeline.dump();
  EXPECT_GE(CountRows(url, "SELECT COUNT(*) FROM webhook_events WHERE tenant_id = 'acme-news'"), 2);
}

}  // namespace
}  // namespace concierge
