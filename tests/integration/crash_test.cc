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
    auto r = admin.Post("/api/v1/tenants/acme-news/policy", R"({"algorithm":"ES256"})");
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->status, 201) << r->body;
  }

  // Load: 8 client threads sign until the server dies under them.
  std::mutex mu;
  std::map<std::string, std::string> acknowledged;  // request_id -> digest hex
  std::atomic<int> acked{0};
  std::atomic<bool> dead{false};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&, t] {
      client::HttpClient c(server.url(), token, 5);
      for (int i = 0; !dead; ++i) {
        std::string request_id = "c" + std::to_string(t) + "-" + std::to_string(i);
        std::string digest = crypto::HexEncode(crypto::Sha256(crypto::AsBytes(request_id)));
        auto r = c.Post("/api/v1/tenants/acme-news/sign",
                        json({{"digest", digest}, {"request_id", request_id}}).dump());
        if (!r.ok() || r->status != 200) {
          if (!r.ok()) return;  // server gone
          continue;
        }
        std::lock_guard lock(mu);
        acknowledged[request_id] = digest;
        ++acked;
      }
    });
  }
  // Kill once a good number of signatures were acknowledged (bounded wait).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (acked < 2000 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  server.Kill(SIGKILL);
  dead = true;
  for (auto& c : clients) c.join();
  ASSERT_GE(acked.load(), 2000) << "load generator made too little progress";

  // Restart on the same data dir and read the whole ledger.
  testing::ServerProcess restarted;
  ASSERT_TRUE(restarted.Start(data)) << restarted.error();
  client::HttpClient admin(restarted.url(), token);
  std::map<std::string, std::string> ledger;
  std::string cursor;
  for (int pages = 0; pages < 10000; ++pages) {
    auto r = admin.Get("/api/v1/tenants/acme-news/ledger?limit=1000" + cursor);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->status, 200) << r->body;
    json page = json::parse(r->body);
    for (const auto& e : page["entries"]) ledger[e["request_id"]] = e["digest"];
    if (page["next_cursor"].is_null()) break;
    cursor = "&after=" + std::to_string(page["next_cursor"].get<int64_t>());
  }
  size_t missing = 0;
  for (const auto& [request_id, digest] : acknowledged) {
    auto it = ledger.find(request_id);
    if (it == ledger.end() || it->second != digest) ++missing;
  }
  EXPECT_EQ(missing, 0u) << "of " << acknowledged.size() << " acknowledged signatures";
  EXPECT_GE(ledger.size(), acknowledged.size());  // rows committed but not yet answered may exist
  // And the restarted server keeps signing.
  auto again = admin.Post("/api/v1/tenants/acme-news/sign", json({{"digest", std::string(64, 'e')}}).dump());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->status, 200) << again->body;
}

}  // namespace
}  // namespace concierge
