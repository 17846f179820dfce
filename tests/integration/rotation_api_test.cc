// Key rotation over the REST API (docs/rotation.md): a rotation under signing
// load with zero failed requests, rollback inside and after the grace window,
// calendar and approval rules, the awaiting_certificate path with an external
// CA, and the key lifecycle. A FakeClock drives time; the scheduler is ticked
// by the test (App::RunRotationTick), never waited for.
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "core/fault_point.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "crypto/signature.h"
#include "integration/api_fixture.h"

namespace concierge {
namespace {

using testing::RunCommand;
using testing::WriteFile;

constexpr auto kDay = std::chrono::hours(24);

class RotationApiTest : public ApiTest {
 protected:
  RotationApiTest() : fake_(std::chrono::system_clock::now()) { clock_ = &fake_; }

  // The background thread only ticks at start-up; the test ticks explicitly.
  void Configure(server::ServerConfig& config) override { config.rotation_tick_seconds = 86400; }

  std::string Openssl(const std::string& args) {
    auto r = RunCommand("openssl " + args + " 2>&1");
    EXPECT_EQ(r.exit_code, 0) << "openssl " << args << "\n" << r.output;
    return r.output;
  }

  void InitCa() { ASSERT_EQ(Admin("POST", "/api/v1/ca", json::object()).status, 201); }

  json CreateTenant(const std::string& tenant, json extra = json::object()) {
    json body = {{"algorithm", "ES256"}, {"rotate_every_days", 30}, {"rotation_grace_days", 7}, {"canary_count", 5}};
    body.update(extra);
    auto r = Admin("POST", "/api/v1/tenants/" + tenant + "/policy", body);
    EXPECT_EQ(r.status, 201) << r.body;
    return json::parse(r.body);
  }

  std::string Schedule(const std::string& token, const std::string& tenant, json body = json::object()) {
    if (!body.contains("owner")) body["owner"] = "owner@example.com";
    auto r = Call(token, "POST", "/api/v1/tenants/" + tenant + "/rotations", body.dump());
    EXPECT_EQ(r.status, 201) << r.body;
    json j = json::parse(r.body, nullptr, false);
    return j.is_object() ? j.value("rotation_id", "") : "";
  }

  json Rotation(const std::string& id) {
    auto r = Admin("GET", "/api/v1/rotations/" + id);
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body);
  }

  // POST execute, then one synchronous scheduler round: the rotation has
  // settled when this returns.
  json Execute(const std::string& id, const std::string& token = "") {
    auto r = Call(token.empty() ? admin_token_ : token, "POST", "/api/v1/rotations/" + id + "/execute");
    EXPECT_EQ(r.status, 202) << r.body;
    Tick();
    return Rotation(id);
  }

  // An external CA made with the openssl CLI (ext-ca.pem / ext-ca.key,
  // leaf.ext in dir_) certifies `csr_pem`; returns leaf + CA in PEM. Moves the
  // fake clock past the certificate's notBefore (openssl stamps the wall clock).
  std::string ExternalChainFor(const std::string& csr_pem) {
    WriteFile(dir_.File("csr.pem"), csr_pem);
    Openssl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + dir_.File("ext-ca.key") +
            " -out " + dir_.File("ext-ca.pem") + " -days 30 -subj /CN=External-CA" +
            " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign");
    WriteFile(dir_.File("leaf.ext"),
              "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=emailProtection\n");
    Openssl("x509 -req -in " + dir_.File("csr.pem") + " -CA " + dir_.File("ext-ca.pem") + " -CAkey " +
            dir_.File("ext-ca.key") + " -CAcreateserial -days 20 -extfile " + dir_.File("leaf.ext") + " -out " +
            dir_.File("leaf.pem"));
    fake_.Set(std::chrono::system_clock::now() + std::chrono::minutes(1));
    return testing::ReadFile(dir_.File("leaf.pem")) + testing::ReadFile(dir_.File("ext-ca.pem"));
  }

  core::TickReport Tick() {
    core::TickReport report = app_->RunRotationTick();
    for (const auto& e : report.errors) ADD_FAILURE() << "tick error: " << e;
    return report;
  }

  std::map<std::string, std::string> KeyStates(const std::string& tenant) {
    auto r = Admin("GET", "/api/v1/tenants/" + tenant + "/keys");
    EXPECT_EQ(r.status, 200) << r.body;
    std::map<std::string, std::string> out;
    json keys = json::parse(r.body)["keys"];  // a named copy: the loop must not outlive the parsed value
    for (const auto& k : keys) out[k["key_id"]] = k["state"];
    return out;
  }

  int ActiveKeys(const std::string& tenant) {
    int n = 0;
    for (const auto& [id, state] : KeyStates(tenant)) n += state == "active";
    return n;
  }

  json Sign(const std::string& tenant, const std::string& text) {
    auto r = Admin("POST", "/api/v1/tenants/" + tenant + "/sign",
                   {{"digest", crypto::HexEncode(crypto::Sha256(crypto::AsBytes(text)))}});
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body);
  }

  bool Verifies(const std::string& tenant, const std::string& text, const json& signed_result) {
    auto r = Admin("POST", "/api/v1/tenants/" + tenant + "/verify",
                   {{"digest", crypto::HexEncode(crypto::Sha256(crypto::AsBytes(text)))},
                    {"signature", signed_result["signature"]},
                    {"key_id", signed_result["key_id"]}});
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body).value("valid", false);
  }

  FakeClock fake_;
};

// --- the load test ----------------------------------------------------------------

struct Signed {
  std::string digest_hex;
  std::string signature_b64;
  std::string key_id;
  int64_t key_version = 0;
  int64_t ledger_seq = 0;
};

TEST_F(RotationApiTest, RotationUnderLoadFailsNoRequestAndEverySignatureVerifiesWithItsLedgerKey) {
  InitCa();
  json created = CreateTenant("acme-news", {{"canary_count", 10}});
  const std::string old_key = created["key"]["key_id"];

  std::mutex mu;
  std::condition_variable progress;
  std::vector<Signed> results;
  std::vector<std::string> failures;
  std::atomic<int> total{0}, on_new_key{0};
  std::atomic<bool> stop{false};
  std::string new_key;  // set once the rotation completed; read under mu
  std::vector<std::thread> load;
  for (int t = 0; t < 4; ++t) {
    load.emplace_back([&, t] {
      HttpClient c(app_->url(), admin_token_, 10);
      for (int i = 0; !stop; ++i) {
        std::string digest = crypto::HexEncode(crypto::Sha256(crypto::AsBytes(std::to_string(t) + "/" + std::to_string(i))));
        auto r = c.Post("/api/v1/tenants/acme-news/sign", json({{"digest", digest}}).dump());
        std::lock_guard lock(mu);
        if (!r.ok() || r->status != 200) {
          failures.push_back(r.ok() ? std::to_string(r->status) + " " + r->body : r.status().ToString());
          continue;
        }
        json j = json::parse(r->body);
        results.push_back({digest, j["signature"], j["key_id"], j["key_version"], j["ledger_seq"]});
        ++total;
        if (!new_key.empty() && j["key_id"] == new_key) ++on_new_key;
        progress.notify_all();
      }
    });
  }
  // Bounded waits for the load generator's progress (not for time).
  auto wait_for = [&](const std::atomic<int>& counter, int n) {
    std::unique_lock lock(mu);
    progress.wait_for(lock, std::chrono::seconds(60), [&] { return counter >= n; });
  };
  wait_for(total, 300);
  ASSERT_GE(total.load(), 300) << "load generator made too little progress";

  // Rotate while the load runs.
  std::string id = Schedule(admin_token_, "acme-news");
  json done = Execute(id);
  EXPECT_EQ(done["state"], "completed") << done.dump(2);
  {
    std::lock_guard lock(mu);
    new_key = done["new_key_id"];
  }
  EXPECT_NE(new_key, old_key);
  EXPECT_EQ(done["canary"]["total"].get<int>(), done["canary"]["passed"].get<int>());
  EXPECT_GE(done["canary"]["ledger_resigned"].get<int>(), 1) << "the canary re-signs recent ledger digests";
  // Keep signing on the new key for a while.
  wait_for(on_new_key, 300);
  stop = true;
  for (auto& th : load) th.join();

  ASSERT_TRUE(failures.empty()) << failures.size() << " failed requests, first: " << failures.front();
  ASSERT_GE(on_new_key.load(), 300);
  std::map<std::string, int> per_key;
  for (const Signed& s : results) ++per_key[s.key_id];
  EXPECT_GE(per_key[old_key], 300);
  EXPECT_GE(per_key[new_key], 300);
  EXPECT_EQ(per_key.size(), 2u);

  // Every signature against the key its ledger row names.
  std::map<int64_t, json> ledger;
  int64_t cursor = 0;
  for (;;) {
    auto r = Admin("GET", "/api/v1/tenants/acme-news/ledger?limit=1000&after=" + std::to_string(cursor));
    ASSERT_EQ(r.status, 200) << r.body;
    json page = json::parse(r.body);
    for (auto& e : page["entries"]) ledger[e["seq"].get<int64_t>()] = e;
    if (page["next_cursor"].is_null()) break;
    cursor = page["next_cursor"].get<int64_t>();
  }
  std::map<std::string, crypto::EvpPkeyPtr> public_keys;
  std::map<std::string, std::string> public_pems;
  for (const std::string& key_id : {old_key, new_key}) {
    auto pem = Admin("GET", "/api/v1/tenants/acme-news/public-key?key_id=" + key_id);
    ASSERT_EQ(pem.status, 200) << pem.body;
    public_pems[key_id] = pem.body;
    auto parsed = crypto::PublicKeyFromPem(pem.body);
    ASSERT_TRUE(parsed.ok());
    public_keys[key_id] = *std::move(parsed);
  }
  size_t bad = 0;
  std::map<std::string, int> sampled;
  for (const Signed& s : results) {
    auto it = ledger.find(s.ledger_seq);
    ASSERT_NE(it, ledger.end()) << "signature without a ledger row, seq " << s.ledger_seq;
    const json& row = it->second;
    ASSERT_EQ(row["digest"], s.digest_hex);
    ASSERT_EQ(row["key_id"], s.key_id);
    ASSERT_EQ(row["key_version"], s.key_version);
    const std::string ledger_key = row["key_id"];
    Bytes digest = *crypto::HexDecode(s.digest_hex);
    Bytes signature = *crypto::Base64Decode(s.signature_b64);
    if (!crypto::VerifyDigest(public_keys[ledger_key].get(), Algorithm::kES256, digest, signature).ok()) ++bad;
    // And a sample of each key through the openssl command line.
    if (sampled[ledger_key]++ < 8) {
      const std::string n = std::to_string(s.ledger_seq);
      WriteFile(dir_.File("pub-" + ledger_key + ".pem"), public_pems[ledger_key]);
      WriteFile(dir_.File("digest-" + n + ".bin"), crypto::AsString(digest));
      WriteFile(dir_.File("sig-" + n + ".der"), crypto::AsString(signature));
      std::string out = Openssl("pkeyutl -verify -pubin -inkey " + dir_.File("pub-" + ledger_key + ".pem") + " -in " +
                                dir_.File("digest-" + n + ".bin") + " -sigfile " + dir_.File("sig-" + n + ".der"));
      EXPECT_NE(out.find("Signature Verified Successfully"), std::string::npos) << out;
    }
  }
  EXPECT_EQ(bad, 0u) << "of " << results.size() << " signatures";
  EXPECT_EQ(sampled.size(), 2u);

  // The old key is verify-only now, still listed with its certificate.
  auto keys = json::parse(Admin("GET", "/api/v1/tenants/acme-news/keys").body)["keys"];
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0]["state"], "retiring");
  EXPECT_TRUE(keys[0]["certificate_serial"].is_string());
  EXPECT_EQ(keys[1]["state"], "active");
  EXPECT_EQ(keys[1]["certificate_serial"], done["certificate_serial"]);
}

// --- lifecycle ---------------------------------------------------------------------

TEST_F(RotationApiTest, CompletedRotationShowsPhasesTimelineAndServesTheNewChain) {
  InitCa();
  json created = CreateTenant("acme-news");
  json before = Sign("acme-news", "before");
  std::string id = Schedule(admin_token_, "acme-news");
  json scheduled = Rotation(id);
  EXPECT_EQ(scheduled["state"], "scheduled");
  EXPECT_EQ(scheduled["phase_number"], 0);
  EXPECT_EQ(scheduled["owner"], "owner@example.com");

  json r = Execute(id);
  ASSERT_EQ(r["state"], "completed") << r.dump(2);
  EXPECT_EQ(r["phase"], "complete");
  EXPECT_EQ(r["phase_number"], 7);
  for (const auto& p : r["phases"]) EXPECT_EQ(p["status"], "done") << p.dump();
  EXPECT_EQ(r["old_key_id"], created["key"]["key_id"]);
  EXPECT_TRUE(r["rollback_allowed"].get<bool>());
  EXPECT_EQ(r["grace_until"], FormatRfc3339(fake_.Now() + 7 * kDay));
  EXPECT_EQ(r["canary"]["total"], 6);  // 5 test signatures + the one ledger entry
  EXPECT_EQ(r["canary"]["failed"], 0);
  ASSERT_EQ(r["canary_results"].size(), 6u);
  EXPECT_EQ(r["canary_results"][5]["kind"], "resample");
  EXPECT_EQ(r["canary_results"][5]["digest"], crypto::HexEncode(crypto::Sha256(crypto::AsBytes("before"))));
  std::vector<std::string> events;
  for (const auto& e : r["timeline"]) events.push_back(e["event"]);
  for (const char* want : {"scheduled", "started", "key_allocated", "csr_created", "cutover", "completed"}) {
    EXPECT_NE(std::find(events.begin(), events.end(), want), events.end()) << want;
  }
  // Each phase was recorded as started before it ran.
  for (const auto& phase : {"prepare", "generate_key", "certificate", "canary", "cutover", "validate", "complete"}) {
    bool started = false;
    for (const auto& e : r["timeline"]) started = started || (e["phase"] == phase && e["event"] == "phase_started");
    EXPECT_TRUE(started) << phase;
  }

  // The CSR was made by the new key; the served chain is the new key's and
  // verifies under the CA with openssl.
  WriteFile(dir_.File("csr.pem"), r["csr_pem"]);
  Openssl("req -verify -noout -in " + dir_.File("csr.pem"));
  auto chain = Admin("GET", "/api/v1/tenants/acme-news/certificate-chain");
  ASSERT_EQ(chain.status, 200);
  EXPECT_EQ(chain.headers["x-key-id"], r["new_key_id"]);
  EXPECT_EQ(chain.headers["x-certificate-serial"], r["certificate_serial"]);
  WriteFile(dir_.File("chain.pem"), chain.body);
  WriteFile(dir_.File("ca.pem"), Call("", "GET", "/api/v1/ca/certificate").body);
  Openssl("verify -CAfile " + dir_.File("ca.pem") + " " + dir_.File("chain.pem"));
  EXPECT_EQ(Openssl("req -noout -pubkey -in " + dir_.File("csr.pem")),
            Openssl("x509 -noout -pubkey -in " + dir_.File("chain.pem")));

  // New signatures use the new key; the old signature still verifies.
  json after = Sign("acme-news", "after");
  EXPECT_EQ(after["key_id"], r["new_key_id"]);
  EXPECT_EQ(after["key_version"], 2);
  EXPECT_TRUE(Verifies("acme-news", "before", before));
  EXPECT_TRUE(Verifies("acme-news", "after", after));

  // The calendar schedules the next one from the new key's activation.
  Tick();
  json list = json::parse(Admin("GET", "/api/v1/tenants/acme-news/rotations").body);
  ASSERT_EQ(list["rotations"].size(), 2u);
  EXPECT_EQ(list["rotations"][1]["trigger"], "calendar");
  EXPECT_EQ(list["rotations"][1]["scheduled_time"], FormatRfc3339(fake_.Now() + 30 * kDay));
  EXPECT_EQ(list["calendar"]["active_key_id"], r["new_key_id"]);
  EXPECT_EQ(list["calendar"]["next_due"], FormatRfc3339(fake_.Now() + 30 * kDay));
  EXPECT_FALSE(list["calendar"]["overdue"].get<bool>());
}

TEST_F(RotationApiTest, RollbackInsideTheGraceWindowRestoresThePreviousKeyAndIsRefusedAfterIt) {
  InitCa();
  json created = CreateTenant("acme-news");
  const std::string v1 = created["key"]["key_id"];
  json first = Execute(Schedule(admin_token_, "acme-news"));
  ASSERT_EQ(first["state"], "completed");
  const std::string v2 = first["new_key_id"];
  json on_v2 = Sign("acme-news", "signed by v2");

  // Inside the window: an operator (rotation:manage) may roll back; a signer may not.
  fake_.Advance(6 * kDay);
  std::string rollback_path = "/api/v1/rotations/" + first["rotation_id"].get<std::string>() + "/rollback";
  ExpectError(Call(NewToken("signer"), "POST", rollback_path, "{}"), 403);
  ExpectError(Call(NewToken("operator"), "POST", rollback_path, R"({"reason": 5})"), 400, "reason");
  auto rb = Call(NewToken("operator"), "POST", rollback_path, R"({"reason":"bad cert profile"})");
  ASSERT_EQ(rb.status, 200) << rb.body;
  json rolled = json::parse(rb.body);
  EXPECT_EQ(rolled["state"], "rolled_back");
  EXPECT_NE(rolled["error"].get<std::string>().find("bad cert profile"), std::string::npos);
  EXPECT_EQ(KeyStates("acme-news"), (std::map<std::string, std::string>{{v1, "active"}, {v2, "retired"}}));
  json back_on_v1 = Sign("acme-news", "signed by v1 again");
  EXPECT_EQ(back_on_v1["key_id"], v1);
  EXPECT_TRUE(Verifies("acme-news", "signed by v2", on_v2));  // retired still verifies
  ExpectError(Admin("POST", rollback_path), 409);              // only once

  // A new rotation; after its grace window closes, rollback is refused with
  // the window's end in the message, and the tick retires the old key.
  json second = Execute(Schedule(admin_token_, "acme-news"));
  ASSERT_EQ(second["state"], "completed");
  const std::string v3 = second["new_key_id"];
  const std::string grace_until = second["grace_until"];
  fake_.Advance(7 * kDay + std::chrono::seconds(1));
  EXPECT_FALSE(Rotation(second["rotation_id"])["rollback_allowed"].get<bool>());
  auto late = Admin("POST", "/api/v1/rotations/" + second["rotation_id"].get<std::string>() + "/rollback");
  ExpectError(late, 409);
  std::string message = json::parse(late.body)["message"];
  EXPECT_NE(message.find("can no longer be rolled back"), std::string::npos) << message;
  EXPECT_NE(message.find("grace window ended at " + grace_until), std::string::npos) << message;
  EXPECT_EQ(KeyStates("acme-news")[v3], "active");

  core::TickReport report = Tick();
  EXPECT_EQ(report.keys_retired, 1);
  EXPECT_EQ(KeyStates("acme-news")[v1], "retired");
  EXPECT_TRUE(Verifies("acme-news", "signed by v1 again", back_on_v1));
  auto timeline = Rotation(second["rotation_id"])["timeline"];
  EXPECT_EQ(timeline.back()["event"], "old_key_retired");
  EXPECT_EQ(ActiveKeys("acme-news"), 1);
}

// Runs keyctl against this test's server.
testing::CommandResult Keyctl(const std::string& url, const std::string& token, const std::string& args) {
  return RunCommand(testing::KeyctlBinary() + " --url " + url + " --token " + token + " " + args);
}

TEST_F(RotationApiTest, EveryClosedRotationHasAnEvidencePackThatVerifiesOfflineAndNamesAnAlteredFile) {
  InitCa();
  CreateTenant("acme-news");
  Sign("acme-news", "a real asset");
  std::string id = Schedule(admin_token_, "acme-news");
  ASSERT_EQ(Call(admin_token_, "POST", "/api/v1/rotations/" + id + "/execute").status, 202);
  Tick();  // the run (on whichever thread) and the evidence pass after it are done
  json r = Rotation(id);
  ASSERT_EQ(r["state"], "completed");
  // The pack was built when the rotation closed, not when first asked for.
  const std::string closed_at = FormatRfc3339(fake_.Now());
  fake_.Advance(std::chrono::hours(1));
  auto first = Admin("GET", "/api/v1/rotations/" + id + "/evidence");
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(first.headers["x-evidence-created-at"], closed_at);
  EXPECT_EQ(first.headers["x-evidence-outcome"], "completed");

  // Export with keyctl, pin the evidence key, verify offline (no server needed).
  const std::string pack = dir_.File("pack.tar");
  auto exported = Keyctl(app_->url(), admin_token_, "evidence export " + id + " --out " + pack);
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  EXPECT_NE(exported.output.find("completed"), std::string::npos) << exported.output;
  auto key = Keyctl(app_->url(), admin_token_, "evidence key --out " + dir_.File("evidence-key.pem"));
  ASSERT_EQ(key.exit_code, 0) << key.output;
  auto verified = RunCommand(testing::KeyctlBinary() + " evidence verify " + pack + " --trusted-key " +
                             dir_.File("evidence-key.pem"));
  EXPECT_EQ(verified.exit_code, 0) << verified.output;
  // The same pack every time: it was stored when built, not rebuilt per request.
  auto again = Admin("GET", "/api/v1/rotations/" + id + "/evidence");
  ASSERT_EQ(again.status, 200);
  EXPECT_EQ(again.body, testing::ReadFile(pack));
  EXPECT_EQ(again.headers["x-evidence-sha256"], crypto::Sha256Hex(crypto::AsBytes(again.body)));

  // Independently of keyctl: tar, sha256sum and openssl.
  const std::string x = dir_.File("x");
  ASSERT_EQ(RunCommand("mkdir -p " + x + " && tar -xf " + pack + " -C " + x).exit_code, 0);
  auto sums = RunCommand("cd " + x + " && sha256sum -c digests.txt");
  EXPECT_EQ(sums.exit_code, 0) << sums.output;
  Openssl("dgst -sha256 -verify " + dir_.File("evidence-key.pem") + " -signature " + x + "/manifest.sig " + x +
          "/manifest.json");
  EXPECT_EQ(crypto::Sha256Hex(crypto::AsBytes(testing::ReadFile(x + "/policy.json"))), r["policy_hash"]);
  json keys = json::parse(testing::ReadFile(x + "/keys.json"));
  EXPECT_EQ(keys["pre"]["key_id"], r["old_key_id"]);
  EXPECT_EQ(keys["post"]["key_id"], r["new_key_id"]);
  Openssl("verify -CAfile " + x + "/chain.pem " + x + "/certificate.pem");
  std::string csv = testing::ReadFile(x + "/canary-results.csv");
  EXPECT_NE(csv.find(",resample,"), std::string::npos) << csv;  // the re-signed ledger digest

  // One altered byte is caught and the file named.
  std::string bytes = testing::ReadFile(pack);
  for (const auto& [file, marker] : std::vector<std::pair<std::string, std::string>>{
           {"canary-results.csv", "index,kind"}, {"statement.html", "<!DOCTYPE html>"}}) {
    std::string tampered = bytes;
    size_t at = tampered.find(marker);
    ASSERT_NE(at, std::string::npos) << marker;
    tampered[at + 1] ^= 0x20;
    WriteFile(dir_.File("tampered.tar"), tampered);
    auto bad = RunCommand(testing::KeyctlBinary() + " evidence verify " + dir_.File("tampered.tar") +
                          " --trusted-key " + dir_.File("evidence-key.pem"));
    EXPECT_EQ(bad.exit_code, 1) << bad.output;
    EXPECT_NE(bad.output.find("FAIL " + file), std::string::npos) << bad.output;
  }

  // A rollback adds a rolled_back pack; the completed one stays available.
  ASSERT_EQ(Admin("POST", "/api/v1/rotations/" + id + "/rollback").status, 200);
  auto rolled = Admin("GET", "/api/v1/rotations/" + id + "/evidence");
  ASSERT_EQ(rolled.status, 200) << rolled.body;
  EXPECT_EQ(rolled.headers["x-evidence-outcome"], "rolled_back");
  auto completed = Admin("GET", "/api/v1/rotations/" + id + "/evidence?outcome=completed");
  ASSERT_EQ(completed.status, 200);
  EXPECT_EQ(completed.body, bytes);

  // Open rotations have none, and other tenants' tokens learn nothing.
  std::string open = Schedule(admin_token_, "acme-news");
  auto none = Admin("GET", "/api/v1/rotations/" + open + "/evidence");
  ExpectError(none, 409);
  EXPECT_NE(none.body.find("no evidence pack"), std::string::npos) << none.body;
  CreateTenant("beta-news");
  ExpectError(Call(NewToken("operator", "beta-news"), "GET", "/api/v1/rotations/" + id + "/evidence"), 404);
  EXPECT_EQ(Call(NewToken("operator", "acme-news"), "GET", "/api/v1/rotations/" + id + "/evidence").status, 200);
  // Auditors read audit data and nothing else.
  ExpectError(Call(NewToken("auditor", "acme-news"), "GET", "/api/v1/rotations/" + id + "/evidence"), 403);
  auto unauthenticated = Keyctl(app_->url(), "kc_0000000000000000.00", "evidence export " + id + " --out " + pack);
  EXPECT_NE(unauthenticated.exit_code, 0);
}

TEST_F(RotationApiTest, KeyctlSchedulesApprovesExecutesWithProgressAndRollsBack) {
  InitCa();
  CreateTenant("acme-news");
  const std::string op = NewToken("operator");
  const std::string officer = NewToken("security-officer");
  auto scheduled = Keyctl(app_->url(), op,
                          "-o json rotation schedule --tenant-id acme-news --owner ops@acme.example "
                          "--approval-required --scheduled-time " + FormatRfc3339(fake_.Now() + kDay));
  ASSERT_EQ(scheduled.exit_code, 0) << scheduled.output;
  const std::string id = json::parse(scheduled.output)["rotation_id"];

  auto list = Keyctl(app_->url(), op, "rotation list --tenant-id acme-news");
  ASSERT_EQ(list.exit_code, 0) << list.output;
  EXPECT_NE(list.output.find(id), std::string::npos) << list.output;
  EXPECT_NE(list.output.find("PENDING"), std::string::npos) << list.output;
  EXPECT_NE(list.output.find("due-soon"), std::string::npos) << list.output;

  auto early = Keyctl(app_->url(), op, "rotation execute " + id);
  EXPECT_EQ(early.exit_code, 1) << early.output;
  EXPECT_NE(early.output.find("needs approval"), std::string::npos) << early.output;
  EXPECT_EQ(Keyctl(app_->url(), op, "rotation approve " + id).exit_code, 1);  // operators cannot approve
  auto approved = Keyctl(app_->url(), officer, "rotation approve " + id);
  ASSERT_EQ(approved.exit_code, 0) << approved.output;

  // execute follows the run on the server's scheduler thread until it settles.
  auto executed = Keyctl(app_->url(), op, "rotation execute " + id);
  ASSERT_EQ(executed.exit_code, 0) << executed.output;
  EXPECT_NE(executed.output.find("canary  phase_completed"), std::string::npos) << executed.output;
  EXPECT_NE(executed.output.find("[#######] 7/7"), std::string::npos) << executed.output;
  EXPECT_NE(executed.output.find("state         completed"), std::string::npos) << executed.output;

  auto status = Keyctl(app_->url(), op, "-o json rotation status " + id + " --csr-out " + dir_.File("new.csr"));
  ASSERT_EQ(status.exit_code, 0) << status.output;
  EXPECT_EQ(json::parse(status.output)["state"], "completed");
  Openssl("req -verify -noout -in " + dir_.File("new.csr"));

  auto unconfirmed = Keyctl(app_->url(), op, "rotation rollback " + id);
  EXPECT_EQ(unconfirmed.exit_code, 2) << unconfirmed.output;
  auto rolled = Keyctl(app_->url(), op, "rotation rollback " + id + " --yes --reason test");
  ASSERT_EQ(rolled.exit_code, 0) << rolled.output;
  EXPECT_NE(rolled.output.find("is active again"), std::string::npos) << rolled.output;
  auto twice = Keyctl(app_->url(), op, "rotation rollback " + id + " --yes");
  EXPECT_EQ(twice.exit_code, 1);
  EXPECT_NE(twice.output.find("only a completed rotation can be rolled back [HTTP 409]"), std::string::npos)
      << twice.output;
  EXPECT_EQ(std::count(twice.output.begin(), twice.output.end(), '\n'), 1) << twice.output;
}

TEST_F(RotationApiTest, ApprovalNeedsASecondPrincipalAndTheSchedulerWaitsForIt) {
  InitCa();
  CreateTenant("acme-news");
  std::string operator_token = NewToken("operator");
  std::string officer_token = NewToken("security-officer");
  std::string id = Schedule(operator_token, "acme-news",
                            {{"scheduled_time", FormatRfc3339(fake_.Now() + kDay)}, {"approval_required", true}});
  json r = Rotation(id);
  EXPECT_TRUE(r["approval_pending"].get<bool>());
  EXPECT_TRUE(r["warning"].get<bool>());  // due within the 7-day advance warning
  EXPECT_FALSE(r["overdue"].get<bool>());

  // Execute before approval is refused; so is the scheduler once it is due.
  auto early = Call(operator_token, "POST", "/api/v1/rotations/" + id + "/execute");
  ExpectError(early, 409);
  EXPECT_NE(early.body.find("needs approval"), std::string::npos) << early.body;
  fake_.Advance(2 * kDay);
  core::TickReport report = Tick();
  EXPECT_EQ(report.started, 0);
  r = Rotation(id);
  EXPECT_EQ(r["state"], "scheduled");
  EXPECT_TRUE(r["overdue"].get<bool>());

  // Who may approve: not the scheduling principal, not an operator role.
  ExpectError(Call(operator_token, "POST", "/api/v1/rotations/" + id + "/approve"), 403);
  auto self = Call(NewToken("operator"), "POST", "/api/v1/rotations/" + id + "/approve");
  ExpectError(self, 403);  // operators lack rotation:approve
  auto ok = Call(officer_token, "POST", "/api/v1/rotations/" + id + "/approve");
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_FALSE(json::parse(ok.body)["approval_pending"].get<bool>());
  ExpectError(Call(NewToken("security-officer"), "POST", "/api/v1/rotations/" + id + "/approve"), 409);

  report = Tick();
  EXPECT_EQ(report.started, 1);
  r = Rotation(id);
  EXPECT_EQ(r["state"], "completed");
  EXPECT_EQ(r["approved_by"], json::parse(Call(officer_token, "GET", "/api/v1/whoami").body)["id"]);

  // A security officer who schedules a rotation cannot approve it either.
  std::string own = Schedule(officer_token, "acme-news", {{"approval_required", true}});
  auto refused = Call(officer_token, "POST", "/api/v1/rotations/" + own + "/approve");
  ExpectError(refused, 403);
  EXPECT_NE(refused.body.find("different principal"), std::string::npos) << refused.body;
}

TEST_F(RotationApiTest, CalendarRotationRunsWhenDueAndRespectsPolicyApproval) {
  InitCa();
  CreateTenant("acme-news");
  CreateTenant("beta-news", {{"approval_required", true}});
  Tick();  // materialises both calendars
  json acme = json::parse(Admin("GET", "/api/v1/tenants/acme-news/rotations").body);
  ASSERT_EQ(acme["rotations"].size(), 1u);
  EXPECT_EQ(acme["rotations"][0]["trigger"], "calendar");
  EXPECT_EQ(acme["rotations"][0]["scheduled_time"], FormatRfc3339(fake_.Now() + 30 * kDay));
  EXPECT_FALSE(acme["calendar"]["warning"].get<bool>());

  fake_.Advance(25 * kDay);  // inside the 7-day advance warning
  acme = json::parse(Admin("GET", "/api/v1/tenants/acme-news/rotations").body);
  EXPECT_TRUE(acme["calendar"]["warning"].get<bool>());
  EXPECT_TRUE(acme["rotations"][0]["warning"].get<bool>());
  EXPECT_EQ(Tick().started, 0);

  fake_.Advance(6 * kDay);  // day 31: due
  core::TickReport report = Tick();
  EXPECT_EQ(report.started, 1);  // acme only: beta needs approval
  acme = json::parse(Admin("GET", "/api/v1/tenants/acme-news/rotations").body);
  EXPECT_EQ(acme["rotations"][0]["state"], "completed");
  EXPECT_EQ(acme["rotations"][0]["created_by"], "system:scheduler");
  json beta = json::parse(Admin("GET", "/api/v1/tenants/beta-news/rotations").body);
  ASSERT_EQ(beta["rotations"].size(), 1u);
  EXPECT_EQ(beta["rotations"][0]["state"], "scheduled");
  EXPECT_TRUE(beta["rotations"][0]["overdue"].get<bool>());
  EXPECT_TRUE(beta["rotations"][0]["approval_pending"].get<bool>());
  EXPECT_TRUE(beta["calendar"]["overdue"].get<bool>());

  // Anyone but the scheduler may approve a calendar rotation; then it runs.
  std::string beta_id = beta["rotations"][0]["rotation_id"];
  ASSERT_EQ(Call(NewToken("security-officer"), "POST", "/api/v1/rotations/" + beta_id + "/approve").status, 200);
  EXPECT_EQ(Tick().started, 1);
  EXPECT_EQ(Rotation(beta_id)["state"], "completed");

  // An explicit schedule replaces the waiting calendar rotation.
  Tick();
  std::string calendar_id;
  json listed = json::parse(Admin("GET", "/api/v1/tenants/acme-news/rotations").body)["rotations"];
  for (const auto& r : listed) {
    if (r["state"] == "scheduled") calendar_id = r["rotation_id"];
  }
  ASSERT_FALSE(calendar_id.empty());
  std::string manual = Schedule(admin_token_, "acme-news", {{"scheduled_time", FormatRfc3339(fake_.Now() + kDay)}});
  EXPECT_EQ(Rotation(calendar_id)["state"], "cancelled");
  // ...but not another open manual one.
  ExpectError(Admin("POST", "/api/v1/tenants/acme-news/rotations", {{"owner", "a@b.example"}}), 409);
  ASSERT_EQ(Admin("POST", "/api/v1/rotations/" + manual + "/cancel").status, 200);
}

TEST_F(RotationApiTest, AwaitingCertificateContinuesAfterImport) {
  // No built-in CA: the new key waits for a certificate from an external CA.
  CreateTenant("acme-news");
  std::string id = Schedule(admin_token_, "acme-news");
  json r = Execute(id);
  ASSERT_EQ(r["state"], "awaiting_certificate") << r.dump(2);
  EXPECT_EQ(r["phase"], "certificate");
  EXPECT_EQ(r["certificate_source"], "external");
  EXPECT_EQ(r["phases"][2]["status"], "waiting");
  const std::string new_key = r["new_key_id"];
  EXPECT_EQ(KeyStates("acme-news")[new_key], "pending");
  Tick();  // still waiting, nothing changes
  EXPECT_EQ(Rotation(id)["state"], "awaiting_certificate");

  // An external CA made with the openssl CLI certifies the rotation's CSR.
  std::string chain = ExternalChainFor(r["csr_pem"]);
  // A chain for some other key is refused and changes nothing.
  Openssl("req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + dir_.File("other.key") +
          " -out " + dir_.File("other.csr") + " -subj /CN=other");
  Openssl("x509 -req -in " + dir_.File("other.csr") + " -CA " + dir_.File("ext-ca.pem") + " -CAkey " +
          dir_.File("ext-ca.key") + " -CAcreateserial -days 20 -extfile " + dir_.File("leaf.ext") + " -out " +
          dir_.File("other.pem"));
  auto other = Admin("POST", "/api/v1/tenants/acme-news/certificate",
                     {{"chain_pem", testing::ReadFile(dir_.File("other.pem")) + testing::ReadFile(dir_.File("ext-ca.pem"))}});
  ExpectError(other, 400, "chain_pem");
  EXPECT_NE(other.body.find("does not match the active key"), std::string::npos) << other.body;
  EXPECT_EQ(Rotation(id)["state"], "awaiting_certificate");

  // Imported with keyctl, like an operator would.
  WriteFile(dir_.File("chain.pem"), chain);
  auto imported = RunCommand(testing::KeyctlBinary() + " --url " + app_->url() + " --token " + admin_token_ +
                             " cert import --tenant-id acme-news --chain " + dir_.File("chain.pem"));
  ASSERT_EQ(imported.exit_code, 0) << imported.output;
  Tick();
  r = Rotation(id);
  ASSERT_EQ(r["state"], "completed") << r.dump(2);
  bool received = false;
  for (const auto& e : r["timeline"]) {
    received = received || e["detail"].get<std::string>().find("received") != std::string::npos;
  }
  EXPECT_TRUE(received);
  auto served = Admin("GET", "/api/v1/tenants/acme-news/certificate-chain");
  ASSERT_EQ(served.status, 200);
  EXPECT_EQ(served.headers["x-key-id"], new_key);
  WriteFile(dir_.File("served.pem"), served.body);
  Openssl("verify -CAfile " + dir_.File("ext-ca.pem") + " " + dir_.File("served.pem"));
  EXPECT_EQ(Sign("acme-news", "x")["key_id"], new_key);
}

// A canary that fails (here: the backend stops answering once the new key is
// certified) aborts the rotation before the cutover - the old key keeps
// signing - and opens one canary-failure incident naming the rotation.
TEST_F(RotationApiTest, CanaryFailureAbortsBeforeCutoverAndOpensOneIncident) {
  CreateTenant("acme-news");
  const std::string old_key = Sign("acme-news", "before")["key_id"];
  std::string id = Schedule(admin_token_, "acme-news");
  json r = Execute(id);
  ASSERT_EQ(r["state"], "awaiting_certificate") << r.dump(2);
  std::string chain = ExternalChainFor(r["csr_pem"]);
  ASSERT_EQ(Admin("POST", "/api/v1/tenants/acme-news/certificate", {{"chain_pem", chain}}).status, 201);
  core::ArmBackendSignFault("software");
  // The evidence key cannot sign either while the fault is armed: its pack
  // is the one error of this round, and the next round builds it.
  core::TickReport faulted = app_->RunRotationTick();
  core::DisarmBackendSignFault();
  for (const auto& e : faulted.errors) EXPECT_NE(e.find("evidence pack"), std::string::npos) << e;
  Tick();
  r = Rotation(id);
  EXPECT_NE(r["state"], "completed") << r.dump(2);
  EXPECT_NE(r["error"].get<std::string>().find("canary failed"), std::string::npos) << r.dump(2);
  EXPECT_EQ(KeyStates("acme-news")[old_key], "active");
  EXPECT_EQ(Sign("acme-news", "after")["key_id"], old_key);

  auto list = Admin("GET", "/api/v1/incidents?tenant_id=acme-news");
  ASSERT_EQ(list.status, 200) << list.body;
  int canary = 0;
  const json incidents = json::parse(list.body)["incidents"];
  for (const auto& i : incidents) {
    if (i["detector"] != "canary") continue;
    ++canary;
    EXPECT_EQ(i["type"], "security_alert");
    EXPECT_EQ(i["details"]["rotation_id"], id);
    EXPECT_EQ(i["details"]["new_key_id"], r["new_key_id"]);
  }
  EXPECT_EQ(canary, 1) << list.body;
}

TEST_F(RotationApiTest, CancellingAWaitingRotationDestroysItsPendingKey) {
  CreateTenant("acme-news");
  std::string id = Schedule(admin_token_, "acme-news", {{"certificate", "external"}});
  json r = Execute(id);
  ASSERT_EQ(r["state"], "awaiting_certificate");
  const std::string pending = r["new_key_id"];
  auto cancel = Call(NewToken("operator"), "POST", "/api/v1/rotations/" + id + "/cancel");
  ASSERT_EQ(cancel.status, 200) << cancel.body;
  r = json::parse(cancel.body);
  EXPECT_EQ(r["state"], "cancelled");
  EXPECT_EQ(r["phases"][2]["status"], "skipped");
  EXPECT_EQ(KeyStates("acme-news")[pending], "destroyed");
  EXPECT_EQ(ActiveKeys("acme-news"), 1);
  ExpectError(Admin("POST", "/api/v1/rotations/" + id + "/execute"), 409);
  // The destroyed key cannot be fetched for verification any more.
  ExpectError(Admin("GET", "/api/v1/tenants/acme-news/public-key?key_id=" + pending), 404);
}

TEST_F(RotationApiTest, BadRequestsAreRefusedAndChangeNothing) {
  CreateTenant("acme-news");
  CreateTenant("beta-news");
  const std::string path = "/api/v1/tenants/acme-news/rotations";
  ExpectError(Admin("POST", path, json::object()), 400, "owner");
  ExpectError(Admin("POST", path, {{"owner", "not-an-email"}}), 400, "owner");
  ExpectError(Admin("POST", path, {{"owner", "a@b.example"}, {"scheduled_time", "tomorrow"}}), 400, "scheduled_time");
  ExpectError(Admin("POST", path, {{"owner", "a@b.example"}, {"scheduled_time", "2001-01-01T00:00:00Z"}}), 400,
              "scheduled_time");
  ExpectError(Admin("POST", path, {{"owner", "a@b.example"}, {"approval_required", "yes"}}), 400, "approval_required");
  ExpectError(Admin("POST", path, {{"owner", "a@b.example"}, {"certificate", "builtin-ca"}}), 400, "certificate");
  ExpectError(Admin("POST", path, {{"owner", "a@b.example"}, {"colour", "red"}}), 400, "colour");
  ExpectError(Call(admin_token_, "POST", path, "not json"), 400, "body");
  ExpectError(Admin("POST", "/api/v1/tenants/nobody/rotations", {{"owner", "a@b.example"}}), 404);
  ExpectError(Call(NewToken("signer"), "POST", path, R"({"owner":"a@b.example"})"), 403);
  ExpectError(Call(NewToken("auditor"), "POST", path, R"({"owner":"a@b.example"})"), 403);
  ExpectError(Call("", "GET", path), 401);
  EXPECT_TRUE(json::parse(Admin("GET", path).body)["rotations"].empty());

  std::string id = Schedule(admin_token_, "acme-news");
  // A token scoped to another tenant does not learn the rotation exists.
  ExpectError(Call(NewToken("operator", "beta-news"), "GET", "/api/v1/rotations/" + id), 404);
  ExpectError(Call(NewToken("operator", "beta-news"), "POST", "/api/v1/rotations/" + id + "/execute"), 404);
  EXPECT_EQ(Call(NewToken("operator", "acme-news"), "GET", "/api/v1/rotations/" + id).status, 200);
  ExpectError(Admin("GET", "/api/v1/rotations/rot-nope"), 404);
  ExpectError(Admin("POST", "/api/v1/rotations/rot-nope/rollback"), 404);
  ExpectError(Admin("DELETE", "/api/v1/rotations/" + id), 405);
  ExpectError(Admin("POST", "/api/v1/rotations/" + id + "/rollback"), 409);  // not completed
  ExpectError(Admin("POST", "/api/v1/rotations/" + id + "/approve"), 409);   // needs no approval
  EXPECT_EQ(Rotation(id)["state"], "scheduled");
  EXPECT_EQ(Rotation(id)["version"], 1);
}

TEST_F(RotationApiTest, KeyLifecycleIsEnforcedInOnePlace) {
  InitCa();
  json created = CreateTenant("acme-news");
  const std::string v1 = created["key"]["key_id"];
  json r = Execute(Schedule(admin_token_, "acme-news"));
  const std::string v2 = r["new_key_id"];
  auto state_path = [](const std::string& key) { return "/api/v1/tenants/acme-news/keys/" + key + "/state"; };

  // The active key leaves service only through a rotation; unknown states,
  // wrong roles and keys of other tenants are refused.
  auto refused = Admin("POST", state_path(v2), {{"state", "retired"}});
  ExpectError(refused, 409);
  EXPECT_NE(refused.body.find("rotation"), std::string::npos) << refused.body;
  ExpectError(Admin("POST", state_path(v2), {{"state", "active"}}), 409);
  ExpectError(Admin("POST", state_path(v2), {{"state", "melted"}}), 400, "state");
  ExpectError(Call(NewToken("operator"), "POST", state_path(v1), R"({"state":"compromised"})"), 403);
  ExpectError(Admin("POST", state_path("nope"), {{"state", "compromised"}}), 404);
  // retiring -> compromised -> destroyed is allowed; destroyed is final.
  auto c = Call(NewToken("security-officer"), "POST", state_path(v1), R"({"state":"compromised","reason":"leak"})");
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(json::parse(c.body)["state"], "compromised");
  ASSERT_EQ(Admin("POST", state_path(v1), {{"state", "destroyed"}}).status, 200);
  ExpectError(Admin("POST", state_path(v1), {{"state", "compromised"}}), 409);
  EXPECT_EQ(KeyStates("acme-news"), (std::map<std::string, std::string>{{v1, "destroyed"}, {v2, "active"}}));
  // With the rotation's previous key gone, a rollback is refused.
  ExpectError(Admin("POST", "/api/v1/rotations/" + r["rotation_id"].get<std::string>() + "/rollback"), 409);
}

}  // namespace
}  // namespace concierge
