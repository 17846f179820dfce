// Several real `keyctl serve` processes on one PostgreSQL database (started by
// this binary, PgEnvironment), sharing one software keystore:
//  - exactly one is leader (GET /health "leader");
//  - the leader dies (_exit through KEYCTL_FAULT_POINT, as a kill -9 would)
//    in the middle of a scheduled rotation, the follower takes the lock and
//    finishes or rolls back the rotation: exactly one active key at the end;
//  - clients sign against both instances through the cutover: every signature
//    verifies with the key the response and its ledger row name, and once a
//    row names the new key no later row names the retired one;
//  - the audit log both instances appended to verifies (`keyctl audit verify`).
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "client/http_client.h"
#include "core/fault_point.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "integration/server_helpers.h"
#include "testing/pg_cluster.h"
#include "testing/server_process.h"
#include "testing/test_util.h"

namespace concierge {
namespace {

using json = nlohmann::json;

::testing::Environment* const kPg = ::testing::AddGlobalTestEnvironment(new testing::PgEnvironment);

testing::PgCluster& Cluster() { return testing::PgEnvironment::Cluster(); }

json Parse(const StatusOr<client::HttpResult>& r, int want_status) {
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (!r.ok()) return json();
  EXPECT_EQ(r->status, want_status) << r->body;
  return json::parse(r->body, nullptr, false);
}

// Whether the instance at `url` says it is the leader (false if it does not answer).
bool IsLeader(const std::string& url) {
  client::HttpClient c(url, "", 5);
  auto r = c.Get("/health");
  if (!r.ok() || r->status != 200) return false;
  json body = json::parse(r->body, nullptr, false);
  return body.is_object() && body.value("leader", false);
}

std::string Rfc3339(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The environment both instances share: one database, one keystore (the
// software backend's key files and master key), a fast leader poll and
// rotation tick.
std::map<std::string, std::string> SharedEnv(const std::string& url, const std::string& keystore) {
  return {{"KEYCTL_DATABASE_URL", url},
          {"KEYCTL_KEYSTORE_DIR", keystore},
          {"KEYCTL_MASTER_KEY_FILE", keystore + "/master.key"},
          {"KEYCTL_PKCS11_MODULE", "none"},
          {"KEYCTL_LEADER_POLL_MS", "100"},
          {"KEYCTL_ROTATION_TICK_SECONDS", "1"},
          {"KEYCTL_AUDIT_CHECKPOINT_INTERVAL_SECONDS", "1"}};
}

// A signature a client received: which instance, what it says.
struct Signed {
  std::string digest_hex;
  json response;
};

// Client threads signing against one instance until stopped.
class Load {
 public:
  Load(const std::string& url, const std::string& token, const std::string& name) {
    thread_ = std::thread([this, url, token, name] {
      client::HttpClient c(url, token, 10);
      for (int i = 0; !stop_; ++i) {
        const std::string digest = crypto::HexEncode(crypto::Sha256(crypto::AsBytes(name + std::to_string(i))));
        auto r = c.Post("/api/v1/tenants/acme-news/sign", json({{"digest", digest}}).dump());
        if (!r.ok()) return;  // the instance is gone
        std::lock_guard lock(mu_);
        if (r->status == 200) {
          signed_.push_back(Signed{digest, json::parse(r->body)});
        } else if (first_error_.empty()) {
          first_error_ = std::to_string(r->status) + " " + r->body;
        }
      }
    });
  }
  ~Load() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::vector<Signed> signatures() {
    std::lock_guard lock(mu_);
    return signed_;
  }
  size_t count() {
    std::lock_guard lock(mu_);
    return signed_.size();
  }
  std::string first_error() {
    std::lock_guard lock(mu_);
    return first_error_;
  }

 private:
  std::mutex mu_;
  std::vector<Signed> signed_;
  std::string first_error_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class MultiInstanceRotationTest : public ::testing::TestWithParam<std::string> {};

TEST_P(MultiInstanceRotationTest, FollowerTakesOverAndSettlesTheRotationTheLeaderDiedIn) {
  const std::string point = GetParam();  // "none": the leader rotates and lives
  const bool crash = point != "none";
  std::string db = "mi_" + (crash ? point.substr(std::string("rotation.").size()) : point);
  for (char& c : db) c = c == '.' ? '_' : c;
  const std::string url = Cluster().NewDatabase(db);
  testing::TempDir dir;
  const std::string keystore = dir.File("keystore");
  auto env = SharedEnv(url, keystore);

  // A starts first and leads; it carries the fault point.
  testing::ServerProcess a, b;
  auto env_a = env;
  if (crash) env_a[core::kFaultPointEnv] = point;
  ASSERT_TRUE(a.Start(dir.File("a"), {}, env_a)) << a.error();
  ASSERT_TRUE(b.Start(dir.File("b"), {}, env)) << b.error();
  EXPECT_TRUE(IsLeader(a.url()));
  EXPECT_FALSE(IsLeader(b.url())) << "two leaders on one database";

  const std::string token = testing::ReadBootstrapToken(dir.File("a"));
  client::HttpClient admin_a(a.url(), token, 10);
  client::HttpClient admin_b(b.url(), token, 10);
  Parse(admin_a.Post("/api/v1/ca", "{}"), 201);
  json created = Parse(admin_b.Post("/api/v1/tenants/acme-news/policy",
                                    json({{"algorithm", "ES256"}, {"canary_count", 2}}).dump()),
                       201);
  ASSERT_TRUE(created.is_object() && created.contains("key")) << created.dump();
  const std::string old_key = created["key"]["key_id"];

  // Both instances sign the whole time.
  Load load_a(a.url(), token, "a-");
  Load load_b(b.url(), token, "b-");
  ASSERT_TRUE(testing::WaitUntil([&] { return load_a.count() > 5 && load_b.count() > 5; }, 30))
      << load_a.first_error() << " / " << load_b.first_error();

  // Scheduled (not executed by hand): only the leader's scheduler tick runs it.
  const std::string when = Rfc3339(std::chrono::system_clock::now() + std::chrono::seconds(2));
  json scheduled = Parse(admin_b.Post("/api/v1/tenants/acme-news/rotations",
                                      json({{"owner", "ops@example.com"}, {"scheduled_time", when}}).dump()),
                         201);
  const std::string rotation_id = scheduled["rotation_id"];
  if (crash) {
    ASSERT_EQ(a.WaitForExit(60), core::kFaultExitCode) << "the leader did not stop at " << point;
    // The follower takes the lock and settles the rotation.
    ASSERT_TRUE(testing::WaitUntil([&] { return IsLeader(b.url()); }, 30)) << "the follower never became leader";
  }
  json r;
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        auto got = admin_b.Get("/api/v1/rotations/" + rotation_id);
        if (!got.ok() || got->status != 200) return false;
        r = json::parse(got->body);
        return r["state"] == "completed" || r["state"] == "rolled_back";
      },
      60))
      << point << "\n" << r.dump(2);
  // Both live instances keep signing after the rotation settled.
  const size_t b_before = load_b.count();
  const size_t a_before = load_a.count();
  ASSERT_TRUE(testing::WaitUntil([&] { return load_b.count() > b_before + 5; }, 30)) << load_b.first_error();
  if (!crash) {
    ASSERT_TRUE(testing::WaitUntil([&] { return load_a.count() > a_before + 5; }, 30)) << load_a.first_error();
    EXPECT_TRUE(IsLeader(a.url()));
    EXPECT_FALSE(IsLeader(b.url()));
  }
  load_a.Stop();
  load_b.Stop();
  // No request failed on either instance: not at the cutover (the fence's
  // retry signs again with the new key), not for the audit tree (a writer
  // that fell behind the other's appends catches up inside its transaction).
  EXPECT_EQ(load_a.first_error(), "");
  EXPECT_EQ(load_b.first_error(), "");

  json keys = Parse(admin_b.Get("/api/v1/tenants/acme-news/keys"), 200);
  std::map<std::string, std::string> states;
  for (const auto& k : keys["keys"]) states[k["key_id"]] = k["state"];
  int active = 0;
  for (const auto& [id, state] : states) active += state == "active";
  EXPECT_EQ(active, 1) << point << " " << keys.dump();
  const std::string new_key = r.value("new_key_id", "");
  const bool completed = r["state"] == "completed";
  const std::string retired = completed ? old_key : new_key;
  const std::string current = completed ? new_key : old_key;
  EXPECT_EQ(states[current], "active") << point;
  if (completed && crash) {
    EXPECT_TRUE(r["timeline"].dump().find("resumed") != std::string::npos)
        << point << ": the follower should have resumed the run";
  }

  // Every signature a client got verifies with the key it names, and its
  // ledger row names that key too.
  std::map<int64_t, std::string> ledger_keys;
  for (const auto& row : testing::PgQuery(url, "SELECT seq, key_id FROM ledger WHERE tenant_id = 'acme-news' ORDER BY seq")) {
    ledger_keys[std::stoll(row[0])] = row[1];
  }
  std::vector<Signed> all = load_a.signatures();
  for (Signed& s : load_b.signatures()) all.push_back(std::move(s));
  size_t checked = 0;
  for (const Signed& s : all) {
    const std::string key_id = s.response["key_id"];
    const int64_t seq = s.response["ledger_seq"];
    EXPECT_EQ(ledger_keys[seq], key_id) << "ledger row " << seq;
    if (checked++ % 10 != 0 && key_id == old_key) continue;  // every new-key one, a sample of the rest
    json v = Parse(admin_b.Post("/api/v1/tenants/acme-news/verify",
                                json({{"digest", s.digest_hex}, {"signature", s.response["signature"]},
                                      {"key_id", key_id}})
                                    .dump()),
                   200);
    EXPECT_TRUE(v.value("valid", false)) << "signature with ledger seq " << seq << " does not verify with " << key_id;
  }
  // In ledger (commit) order: once a row names the key now active after a
  // cutover, no later row names the one it replaced. Without the rotation,
  // only the follower's stale snapshot could write such rows.
  ASSERT_TRUE(completed || crash) << r.dump(2);
  if (completed) {
    bool cut = false;
    for (const auto& [seq, key_id] : ledger_keys) {
      if (key_id == new_key) cut = true;
      EXPECT_FALSE(cut && key_id == retired) << "ledger row " << seq << " names the retired key after the cutover";
    }
    EXPECT_TRUE(cut) << "no signature with the new key was recorded";
  }

  // The audit log both writers appended to is one consistent tree.
  auto verify = testing::RunCommand(testing::KeyctlBinary() + " --url " + b.url() + " --token " + token +
                                    " audit verify 2>&1");
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  // Instance B signed after the cutover: with the new key only.
  size_t b_new = 0;
  for (const Signed& s : load_b.signatures()) b_new += s.response["key_id"] == current;
  EXPECT_GT(b_new, 0u);
  b.Kill(SIGTERM);
  if (a.running()) a.Kill(SIGTERM);
}

INSTANTIATE_TEST_SUITE_P(LeaderDiesMidRotation, MultiInstanceRotationTest,
                         ::testing::Values("none", "rotation.canary.after", "rotation.cutover.after",
                                           "rotation.validate.before"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           if (info.param == "none") return std::string("leader_lives");
                           std::string name = info.param.substr(std::string("rotation.").size());
                           for (auto& c : name) c = c == '.' ? '_' : c;
                           return name;
                         });

// Leadership moves only when the leader goes: killed (PostgreSQL ends its
// session and releases the lock) or stopped.
TEST(MultiInstanceTest, OneLeaderAndAStoppedLeaderHandsOver) {
  const std::string url = Cluster().NewDatabase("mi_handover");
  testing::TempDir dir;
  auto env = SharedEnv(url, dir.File("keystore"));
  testing::ServerProcess a, b;
  ASSERT_TRUE(a.Start(dir.File("a"), {}, env)) << a.error();
  ASSERT_TRUE(b.Start(dir.File("b"), {}, env)) << b.error();
  EXPECT_TRUE(IsLeader(a.url()));
  EXPECT_FALSE(IsLeader(b.url()));
  // A clean stop releases the lock at once; a kill -9 lets PostgreSQL release it.
  a.Kill(SIGKILL);
  ASSERT_TRUE(testing::WaitUntil([&] { return IsLeader(b.url()); }, 30));
  testing::ServerProcess c;
  ASSERT_TRUE(c.Start(dir.File("c"), {}, env)) << c.error();
  EXPECT_FALSE(IsLeader(c.url())) << "a new instance must not take the lock from a live leader";
  b.Kill(SIGTERM);
  ASSERT_TRUE(testing::WaitUntil([&] { return IsLeader(c.url()); }, 30));
  c.Kill(SIGTERM);
}

// PostgreSQL crashes (immediate shutdown) under signing load on two
// instances and comes back: both answer 503 while it is down and sign again
// after, without a restart; one of them leads again; every signature a client
// got is in the ledger, and the audit log both appended to verifies.
TEST(MultiInstanceTest, PostgresStoppedUnderLoadOnTwoInstances) {
  testing::PgRestartGuard guard(Cluster());
  const std::string url = Cluster().NewDatabase("mi_outage");
  testing::TempDir dir;
  auto env = SharedEnv(url, dir.File("keystore"));
  testing::ServerProcess a, b;
  ASSERT_TRUE(a.Start(dir.File("a"), {}, env)) << a.error();
  ASSERT_TRUE(b.Start(dir.File("b"), {}, env)) << b.error();
  const std::string token = testing::ReadBootstrapToken(dir.File("a"));
  {
    client::HttpClient admin(a.url(), token);
    ASSERT_NO_FATAL_FAILURE(testing::CreateEs256Tenant(admin, "acme-news"));
  }
  testing::SigningLoad load_a(a.url(), token, "acme-news", 3);
  testing::SigningLoad load_b(b.url(), token, "acme-news", 3);
  ASSERT_TRUE(testing::WaitUntil([&] { return load_a.acked() >= 200 && load_b.acked() >= 200; }, 60))
      << load_a.acked() << " / " << load_b.acked();

  ASSERT_TRUE(Cluster().Stop(/*immediate=*/true));
  const int a_503 = load_a.unavailable();
  const int b_503 = load_b.unavailable();
  EXPECT_TRUE(testing::WaitUntil([&] { return load_a.unavailable() > a_503 + 50 && load_b.unavailable() > b_503 + 50; },
                                 30));
  // Without the database nobody can prove it holds the lock: no leader.
  EXPECT_TRUE(testing::WaitUntil([&] { return !IsLeader(a.url()) && !IsLeader(b.url()); }, 30));
  ASSERT_TRUE(Cluster().Restart()) << Cluster().error();
  const int a_acked = load_a.acked();
  const int b_acked = load_b.acked();
  EXPECT_TRUE(testing::WaitUntil([&] { return load_a.acked() > a_acked + 200 && load_b.acked() > b_acked + 200; },
                                 60))
      << load_a.acked() - a_acked << " / " << load_b.acked() - b_acked;
  EXPECT_TRUE(testing::WaitUntil([&] { return IsLeader(a.url()) != IsLeader(b.url()); }, 30))
      << "exactly one leader after the database came back";
  load_a.Stop();
  load_b.Stop();
  EXPECT_NE(IsLeader(a.url()), IsLeader(b.url()));

  for (testing::SigningLoad* load : {&load_a, &load_b}) {
    EXPECT_EQ(load->transport_errors(), 0) << "the servers must stay up throughout";
    EXPECT_EQ(load->other_statuses(), 0) << load->first_other();
  }
  // The two loads use the same request ids for the same digests, so the
  // union of what they got is checked against the ledger.
  client::HttpClient admin(b.url(), token);
  std::map<std::string, std::string> acknowledged = load_a.acknowledged();
  for (const auto& [id, digest] : load_b.acknowledged()) acknowledged[id] = digest;
  const std::map<std::string, std::string> ledger = testing::ReadLedgerDigests(admin, "acme-news");
  EXPECT_EQ(testing::MissingFromLedger(acknowledged, ledger), 0u) << "of " << acknowledged.size();
  auto verify = testing::RunCommand(testing::KeyctlBinary() + " --url " + b.url() + " --token " + token +
                                    " audit verify 2>&1");
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
  a.Kill(SIGTERM);
  b.Kill(SIGTERM);
}

}  // namespace
}  // namespace concierge
