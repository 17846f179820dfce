// Crash safety of rotations: the real keyctl binary is made to die (_exit, no
// cleanup) at every phase boundary through the KEYCTL_FAULT_POINT test hook,
// then restarted on the same data directory. The rotation must resume to
// completion - or roll back - and the tenant must never have two active keys or
// none. Two more cases restart in-process with a FakeClock to show that a
// post-cutover failure (the new certificate revoked while the server was down)
// rolls back inside the grace window and does not after it.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "client/http_client.h"
#include "concierge/clock.h"
#include "core/fault_point.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "server/app.h"
#include "store/sqlite/sqlite_store.h"
#include "testing/server_process.h"
#include "testing/test_util.h"

namespace concierge {
namespace {

using json = nlohmann::json;

json Parse(const StatusOr<client::HttpResult>& r, int want_status) {
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (!r.ok()) return json();
  EXPECT_EQ(r->status, want_status) << r->body;
  return json::parse(r->body, nullptr, false);
}

std::string Digest(const std::string& text) { return crypto::HexEncode(crypto::Sha256(crypto::AsBytes(text))); }

struct Prepared {
  std::string token;
  std::string rotation_id;
  std::string old_key_id;
  std::vector<json> signatures;  // made before the rotation, with the old key
};

// Creates CA + tenant on a server that has the fault point armed, signs a few
// digests, then executes a rotation; the server dies on the way.
Prepared RotateUntilTheServerDies(const std::string& data, const std::string& point, const json& policy) {
  Prepared p;
  testing::ServerProcess server;
  EXPECT_TRUE(server.Start(data, {}, {{core::kFaultPointEnv, point}})) << server.error();
  p.token = testing::ReadBootstrapToken(data);
  client::HttpClient admin(server.url(), p.token, 10);
  Parse(admin.Post("/api/v1/ca", "{}"), 201);
  json created = Parse(admin.Post("/api/v1/tenants/acme-news/policy", policy.dump()), 201);
  p.old_key_id = created["key"]["key_id"];
  for (int i = 0; i < 3; ++i) {
    json s = Parse(admin.Post("/api/v1/tenants/acme-news/sign", json({{"digest", Digest(std::to_string(i))}}).dump()), 200);
    p.signatures.push_back(s);
  }
  json scheduled = Parse(admin.Post("/api/v1/tenants/acme-news/rotations", R"({"owner":"ops@example.com"})"), 201);
  p.rotation_id = scheduled["rotation_id"];
  // The scheduler thread may reach the fault point before this response is
  // written, so a vanished server is as good as a 202 here.
  auto exec = admin.Post("/api/v1/rotations/" + p.rotation_id + "/execute", "");
  if (exec.ok()) {
    EXPECT_EQ(exec->status, 202) << exec->body;
  }
  EXPECT_EQ(server.WaitForExit(60), core::kFaultExitCode) << "the server did not stop at " << point;
  return p;
}

std::map<std::string, std::string> KeyStates(client::HttpClient& c) {
  json keys = Parse(c.Get("/api/v1/tenants/acme-news/keys"), 200);
  std::map<std::string, std::string> out;
  for (const auto& k : keys["keys"]) out[k["key_id"]] = k["state"];
  return out;
}

int CountActive(const std::map<std::string, std::string>& states) {
  int n = 0;
  for (const auto& [id, state] : states) n += state == "active";
  return n;
}

class RotationCrashTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RotationCrashTest, KilledAtPhaseBoundaryResumesAfterRestartWithExactlyOneActiveKey) {
  const std::string point = GetParam();
  testing::TempDir dir;
  const std::string data = dir.File("data");
  Prepared p = RotateUntilTheServerDies(data, point, {{"algorithm", "ES256"}, {"canary_count", 3}});
  ASSERT_FALSE(p.rotation_id.empty());

  testing::ServerProcess restarted;
  ASSERT_TRUE(restarted.Start(data)) << restarted.error();
  client::HttpClient admin(restarted.url(), p.token, 10);
  // Recovery runs before the server listens: the rotation has settled.
  json r = Parse(admin.Get("/api/v1/rotations/" + p.rotation_id), 200);
  ASSERT_EQ(r["state"], "completed") << point << "\n" << r.dump(2);
  const std::string new_key = r["new_key_id"];
  std::map<std::string, std::string> states = KeyStates(admin);
  EXPECT_EQ(CountActive(states), 1) << point;
  // Resuming never generated a second key.
  EXPECT_EQ(states, (std::map<std::string, std::string>{{p.old_key_id, "retiring"}, {new_key, "active"}})) << point;
  if (point != "rotation.complete.after") {
    bool resumed = false;
    for (const auto& e : r["timeline"]) resumed = resumed || e["detail"] == "resumed";
    EXPECT_TRUE(resumed) << point << ": the timeline should show where the run resumed";
  }
  // Signing continues on the new key; what the old key signed still verifies.
  json s = Parse(admin.Post("/api/v1/tenants/acme-news/sign", json({{"digest", Digest("after")}}).dump()), 200);
  EXPECT_EQ(s["key_id"], new_key);
  for (size_t i = 0; i < p.signatures.size(); ++i) {
    json v = Parse(admin.Post("/api/v1/tenants/acme-news/verify",
                              json({{"digest", Digest(std::to_string(i))},
                                    {"signature", p.signatures[i]["signature"]},
                                    {"key_id", p.old_key_id}})
                                  .dump()),
                   200);
    EXPECT_TRUE(v["valid"].get<bool>()) << point;
  }
  restarted.Kill(SIGTERM);
}

std::vector<std::string> AllBoundaries() {
  std::vector<std::string> out;
  for (const char* phase : {"prepare", "generate_key", "certificate", "canary", "cutover", "validate", "complete"}) {
    out.push_back(std::string("rotation.") + phase + ".before");
    out.push_back(std::string("rotation.") + phase + ".after");
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(EveryPhaseBoundary, RotationCrashTest, ::testing::ValuesIn(AllBoundaries()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param.substr(std::string("rotation.").size());
                           for (auto& c : name) c = c == '.' ? '_' : c;
                           return name;
                         });

// The rotation died just before post-cutover validation. While the server is
// down, the new key's certificate is revoked in the database (say the CA
// withdrew it), so validation must fail when the rotation resumes. Restarts in
// this process with a clock moved `days` ahead and returns the settled rotation.
json RevokeNewCertificateAndRestartLater(const std::string& data, int days, const Prepared& p,
                                         std::map<std::string, std::string>* states) {
  FakeClock clock(std::chrono::system_clock::now() + std::chrono::hours(24) * days);
  {
    auto store = store::SqliteStore::Open(data + "/concierge.db");
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    if (!store.ok()) return json();
    auto rotation = (*store)->GetRotation(p.rotation_id);
    EXPECT_TRUE(rotation.ok()) << rotation.status().ToString();
    if (!rotation.ok()) return json();
    EXPECT_EQ(rotation->state, "running");
    EXPECT_EQ(rotation->phase, "validate");
    auto cert = (*store)->GetActiveCertificate(rotation->new_key_id);
    EXPECT_TRUE(cert.ok()) << cert.status().ToString();
    if (!cert.ok()) return json();
    EXPECT_TRUE((*store)->RevokeCertificate(cert->issuer, cert->serial, clock.Now()).ok());
  }
  server::ServerConfig config;
  config.listen = "127.0.0.1:0";
  config.data_dir = data;
  config.io_threads = 2;
  config.log_level = "error";
  config.rotation_tick_seconds = 86400;
  auto app = server::App::Create(std::move(config), clock);
  EXPECT_TRUE(app.ok()) << app.status().ToString();
  if (!app.ok()) return json();
  (*app)->Start();
  client::HttpClient admin((*app)->url(), p.token, 10);
  json r = Parse(admin.Get("/api/v1/rotations/" + p.rotation_id), 200);
  *states = KeyStates(admin);
  (*app)->Stop();
  return r;
}

const json kPolicy = {{"algorithm", "ES256"}, {"canary_count", 2}, {"rotation_grace_days", 7}};

struct Recovered {
  Prepared prepared;
  json rotation;
  std::map<std::string, std::string> states;
};

Recovered DieBeforeValidationThenRestartLater(int days) {
  testing::TempDir dir;
  const std::string data = dir.File("data");
  Recovered out;
  out.prepared = RotateUntilTheServerDies(data, "rotation.validate.before", kPolicy);
  out.rotation = RevokeNewCertificateAndRestartLater(data, days, out.prepared, &out.states);
  return out;
}

TEST(RotationRecoveryTest, PostCutoverFailureInsideTheGraceWindowRollsBackAutomatically) {
  Recovered rec = DieBeforeValidationThenRestartLater(2);
  const json& r = rec.rotation;
  ASSERT_EQ(r["state"], "rolled_back") << r.dump(2);
  EXPECT_NE(r["error"].get<std::string>().find("validate failed"), std::string::npos) << r["error"];
  EXPECT_NE(r["error"].get<std::string>().find("revoked"), std::string::npos) << r["error"];
  EXPECT_NE(r["error"].get<std::string>().find("rolled back automatically"), std::string::npos) << r["error"];
  EXPECT_EQ(rec.states,
            (std::map<std::string, std::string>{{rec.prepared.old_key_id, "active"}, {r["new_key_id"], "retired"}}));
}

TEST(RotationRecoveryTest, PostCutoverFailureAfterTheGraceWindowKeepsTheNewKeyAndSaysSo) {
  Recovered rec = DieBeforeValidationThenRestartLater(8);
  const json& r = rec.rotation;
  ASSERT_EQ(r["state"], "failed") << r.dump(2);
  EXPECT_NE(r["error"].get<std::string>().find("not rolled back"), std::string::npos) << r["error"];
  EXPECT_EQ(rec.states,
            (std::map<std::string, std::string>{{rec.prepared.old_key_id, "retiring"}, {r["new_key_id"], "active"}}));
  EXPECT_EQ(CountActive(rec.states), 1);
}

}  // namespace
}  // namespace concierge
