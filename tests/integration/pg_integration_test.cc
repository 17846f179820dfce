// The real keyctl binary on a real PostgreSQL server started by this binary
// (PgEnvironment): `keyctl migrate` / `keyctl serve` with --database-url, and
// PostgreSQL stopped under signing load and started again.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "client/http_client.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "testing/pg_cluster.h"
#include "integration/server_helpers.h"
#include "testing/server_process.h"
#include "testing/test_util.h"

namespace concierge {
namespace {

using json = nlohmann::json;

::testing::Environment* const kPg = ::testing::AddGlobalTestEnvironment(new testing::PgEnvironment);

testing::PgCluster& Cluster() { return testing::PgEnvironment::Cluster(); }

// A new, empty database; returns its URL.
std::string NewDatabase(const std::string& name) {
  EXPECT_EQ(Cluster().Exec("CREATE DATABASE " + name), "");
  return Cluster().Url(name);
}

int64_t CountRows(const std::string& url, const std::string& sql) {
  PGconn* conn = PQconnectdb(url.c_str());
  int64_t n = -1;
  if (PQstatus(conn) == CONNECTION_OK) {
    PGresult* r = PQexec(conn, sql.c_str());
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
      n = std::stoll(PQgetvalue(r, 0, 0));
    PQclear(r);
  }
  PQfinish(conn);
  return n;
}

TEST(PgIntegrationTest, MigrateAndServeSelectPostgresByUrl) {
  const std::string url = NewDatabase("concierge_cli");
  const std::string keyctl = testing::KeyctlBinary();
  testing::CommandResult m = testing::RunCommand(keyctl + " migrate --database-url '" + url + "'");
  EXPECT_EQ(m.exit_code, 0) << m.output;
  EXPECT_NE(m.output.find("schema version 4"), std::string::npos) << m.output;
  EXPECT_EQ(CountRows(url, "SELECT COUNT(*) FROM schema_migrations"), 4);

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

}  // namespace
}  // namespace concierge
