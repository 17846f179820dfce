// Crash safety of mass re-sign jobs: SIGKILL the real server while a job runs;
// after a restart the job resumes by itself and finishes with every original
// entry re-signed exactly once (no gaps, no duplicates), each re-signature
// valid under the new key.
//
// Setup runs offline on the server's own files while it is down: 60,000 ledger
// rows for the tenant's key, then the TEST STAND-IN rotation
// (tests/testing/standin_rotator.h) to a new key in the same keystore.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <stdlib.h>

#include <map>
#include <set>
#include <thread>

#include "backends/software/software_backend.h"
#include "client/http_client.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "crypto/signature.h"
#include "store/sqlite/sqlite_ledger.h"
#include "store/sqlite/sqlite_store.h"
#include "testing/server_process.h"
#include "testing/standin_rotator.h"
#include "testing/test_util.h"

namespace concierge {
namespace {

using json = nlohmann::json;

constexpr int kEntries = 60000;

std::string ReadToken(const std::string& data_dir) {
  std::string t = testing::ReadFile(data_dir + "/bootstrap-admin.token");
  while (!t.empty() && t.back() == '\n') t.pop_back();
  return t;
}

json GetJson(client::HttpClient& c, const std::string& path) {
  auto r = c.Get(path);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (!r.ok()) return json();
  EXPECT_EQ(r->status, 200) << r->body;
  return json::parse(r->body, nullptr, false);
}

TEST(ResignCrashTest, SigkillMidJobResumesWithNoGapsAndNoDuplicates) {
  testing::TempDir dir;
  const std::string data = dir.File("data");
  std::string old_key_id;
  {
    testing::ServerProcess server;
    ASSERT_TRUE(server.Start(data)) << server.error();
    client::HttpClient admin(server.url(), ReadToken(data));
    auto r = admin.Post("/api/v1/tenants/acme-news/policy", R"({"algorithm":"ES256"})");
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->status, 201) << r->body;
    old_key_id = json::parse(r->body)["key"]["key_id"];
    server.Kill(SIGTERM);
  }

  // Offline, on the server's files: the history to re-sign, and a new key.
  std::set<int64_t> originals;
  {
    auto store = store::SqliteStore::Open(data + "/concierge.db");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    auto ledger = store::SqliteLedger::Open(data + "/concierge.db");
    ASSERT_TRUE(ledger.ok()) << ledger.status().ToString();
    KeyRecord old_key = *(*store)->GetKey(old_key_id);
    for (int b = 0; b < kEntries / 10000; ++b) {
      std::vector<LedgerEntry> batch;
      for (int i = b * 10000; i < (b + 1) * 10000; ++i) {
        LedgerEntry e;
        e.tenant_id = "acme-news";
        e.key_id = old_key.key_id;
        e.key_version = old_key.version;
        e.algorithm = "ES256";
        e.asset_id = "asset-" + std::to_string(i);
        e.digest_hex = crypto::Sha256Hex(crypto::AsBytes(e.asset_id));
        e.request_id = "seed-" + std::to_string(i);
        e.api_key_id = "seeder";
        e.client_address = "127.0.0.1";
        e.policy_hash = std::string(64, 'p');
        e.signed_at = RealClock().Now();
        batch.push_back(std::move(e));
      }
      ASSERT_TRUE((*ledger)->AppendBatch(batch).ok());
      for (const auto& e : batch) originals.insert(e.seq);
    }
    backends::SoftwareKeystoreOptions ks;
    ks.dir = data + "/keystore";
    auto software = backends::SoftwareBackend::Create(std::move(ks));
    ASSERT_TRUE(software.ok()) << software.status().ToString();
    BackendRegistry registry;
    ASSERT_TRUE(registry.Register(*std::move(software)).ok());
    testing::TestStandInRotator rotator(**store, registry, nullptr, RealClock());
    ASSERT_TRUE(rotator.RotateNow("acme-news", "crash test").ok());
  }

  // Slow enough that the kill lands mid-job (15k/s: about 4 s for the job).
  ::setenv("KEYCTL_RESIGN_RATE_PER_BACKEND", "15000", 1);
  ::setenv("KEYCTL_RESIGN_BATCH_SIZE", "200", 1);
  std::string job_id;
  int64_t done_at_kill = 0;
  {
    testing::ServerProcess server;
    ASSERT_TRUE(server.Start(data)) << server.error();
    client::HttpClient admin(server.url(), ReadToken(data));
    auto r = admin.Post("/api/v1/tenants/acme-news/resign-jobs", json({{"compromised_key_id", old_key_id}}).dump());
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->status, 202) << r->body;
    job_id = json::parse(r->body)["job_id"];
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      json j = GetJson(admin, "/api/v1/jobs/" + job_id);
      done_at_kill = j.value("done", int64_t{0});
      if (done_at_kill >= kEntries / 6) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    server.Kill(SIGKILL);
  }
  ASSERT_GE(done_at_kill, kEntries / 6);
  ASSERT_LT(done_at_kill, kEntries) << "the job finished before the kill";

  testing::ServerProcess restarted;
  ASSERT_TRUE(restarted.Start(data)) << restarted.error();
  ::unsetenv("KEYCTL_RESIGN_RATE_PER_BACKEND");
  ::unsetenv("KEYCTL_RESIGN_BATCH_SIZE");
  client::HttpClient admin(restarted.url(), ReadToken(data));
  json job;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (std::chrono::steady_clock::now() < deadline) {
    job = GetJson(admin, "/api/v1/jobs/" + job_id);
    if (job.value("state", "") == "completed" || job.value("state", "") == "failed") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(job["state"], "completed") << job.dump();
  EXPECT_EQ(job["done"], kEntries);
  EXPECT_EQ(job["resigned"], kEntries);
  const std::string new_key_id = job["new_key_id"];

  // Results: one line per original, none twice, none missing.
  auto results = admin.Get("/api/v1/jobs/" + job_id + "/results");
  ASSERT_TRUE(results.ok());
  std::set<int64_t> result_seqs;
  size_t lines = 0;
  json sample;
  for (size_t pos = 0; pos < results->body.size(); ++lines) {
    size_t nl = results->body.find('\n', pos);
    json line = json::parse(results->body.substr(pos, nl - pos));
    result_seqs.insert(line["original_seq"].get<int64_t>());
    if (lines == kEntries / 2) sample = line;
    pos = nl + 1;
  }
  EXPECT_EQ(lines, static_cast<size_t>(kEntries));
  EXPECT_EQ(result_seqs, originals);

  // The ledger: exactly one re-sign row per original.
  std::map<int64_t, int> per_original;
  std::string cursor;
  for (int pages = 0; pages < 1000; ++pages) {
    json page = GetJson(admin, "/api/v1/tenants/acme-news/ledger?limit=1000&key_id=" + new_key_id + cursor);
    for (const auto& e : page["entries"]) per_original[e["resign_of_seq"].get<int64_t>()] += 1;
    if (page["next_cursor"].is_null()) break;
    cursor = "&after=" + std::to_string(page["next_cursor"].get<int64_t>());
  }
  EXPECT_EQ(per_original.size(), originals.size());
  size_t duplicated = 0, gaps = 0;
  for (const auto& [seq, n] : per_original) duplicated += n != 1;
  for (int64_t seq : originals) gaps += per_original.count(seq) == 0;
  EXPECT_EQ(duplicated, 0u);
  EXPECT_EQ(gaps, 0u);

  // And a re-signature made after the restart verifies under the new key.
  json key = GetJson(admin, "/api/v1/tenants/acme-news/keys/" + new_key_id);
  auto pub = crypto::PublicKeyFromPem(key["public_key_pem"].get<std::string>());
  ASSERT_TRUE(pub.ok());
  EXPECT_TRUE(crypto::VerifyDigest(pub->get(), Algorithm::kES256, *crypto::HexDecode(sample["digest"].get<std::string>()),
                                   *crypto::Base64Decode(sample["signature"].get<std::string>()))
                  .ok());
}

}  // namespace
}  // namespace concierge
