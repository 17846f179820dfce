// Durability: SIGKILL the real server while clients sign continuously; after a
// restart, every signature any client received must be in the ledger.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "client/http_client.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "integration/server_helpers.h"
#include "testing/server_process.h"
#include "testing/test_util.h"

namespace concierge {
namespace {

using json = nlohmann::json;

TEST(CrashTest, EveryAcknowledgedSignatureSurvivesSigkill) {
  testing::TempDir dir;
  std::string data = dir.File("data");
  testing::ServerProcess server;
  ASSERT_TRUE(server.Start(data)) << server.error();
  std::string token = testing::ReadBootstrapToken(data);
  {
    client::HttpClient admin(server.url(), token);
    ASSERT_NO_FATAL_FAILURE(testing::CreateEs256Tenant(admin, "acme-news"));
  }

  // Load: 8 client threads sign until the server dies under them.
  testing::SigningLoad load(server.url(), token, "acme-news", 8);
  // Kill once a good number of signatures were acknowledged (bounded wait).
  testing::WaitUntil([&] { return load.acked() >= 2000; }, 60);
  server.Kill(SIGKILL);
  load.Stop();
  ASSERT_GE(load.acked(), 2000) << "load generator made too little progress";
  const std::map<std::string, std::string> acknowledged = load.acknowledged();

  // Restart on the same data dir and read the whole ledger.
  testing::ServerProcess restarted;
  ASSERT_TRUE(restarted.Start(data)) << restarted.error();
  client::HttpClient admin(restarted.url(), token);
  std::map<std::string, std::string> ledger = testing::ReadLedgerDigests(admin, "acme-news");
  const size_t missing = testing::MissingFromLedger(acknowledged, ledger);
  EXPECT_EQ(missing, 0u) << "of " << acknowledged.size() << " acknowledged signatures";
  EXPECT_GE(ledger.size(), acknowledged.size());  // rows committed but not yet answered may exist
  // And the restarted server keeps signing.
  auto again = admin.Post("/api/v1/tenants/acme-news/sign", json({{"digest", std::string(64, 'e')}}).dump());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->status, 200) << again->body;
}

}  // namespace
}  // namespace concierge
