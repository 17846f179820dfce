// Incident response over real loopback HTTP against a real App (SQLite,
// software keystore, built-in CA):
//  - the drill: 100,000 ledger entries, compromise declared, playbook to
//    resolved, every entry re-signed exactly once and verified (a sample with
//    the openssl CLI), old certificate on the CRL (openssl crl), tenant
//    resumed; the webhook receiver is down for all of it and across a server
//    restart, then up: every notification arrives exactly once per event id,
//    with a valid HMAC;
//  - the REST surface: validation, state machine, folding, authorisation and
//    tenant scope, webhook secrets never returned twice, job control and
//    JSONL paging; detectors fed by real requests; the keyctl commands.
// The emergency rotation is the TEST STAND-IN (tests/testing/standin_rotator.h).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "core/incident_detectors.h"
#include "core/incident_playbook.h"
#include "core/resign_job.h"
#include "core/webhook.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "crypto/signature.h"
#include "integration/api_fixture.h"
#include "server/http_server.h"
#include "testing/standin_rotator.h"

namespace concierge {
namespace {

using testing::RunCommand;

// A webhook endpoint on loopback. Down = not listening at all (connection
// refused); up again on the same port. Dedupes by event id like a real
// receiver should, and keeps every delivery to check counts and signatures.
class WebhookReceiver {
 public:
  struct Delivery {
    std::string event_id;
    std::string signature;
    std::string body;
  };

  WebhookReceiver() { Up(); }
  ~WebhookReceiver() { Down(); }

  void Up() {
    server::HttpServerOptions o;
    o.host = "127.0.0.1";
    o.port = port_;
    o.io_threads = 1;
    auto s = server::HttpServer::Create(o, [this](server::HttpRequest&& req, server::Responder respond) {
      {
        std::lock_guard lock(mu_);
        deliveries_.push_back({req.Header("x-concierge-event-id"), req.Header("x-concierge-signature"), req.body});
      }
      respond(server::HttpResponse{204, "text/plain", "", {}});
    });
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = *std::move(s);
    port_ = server_->port();
    server_->Start();
  }

  void Down() {
    if (server_) server_->Stop();
    server_.reset();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hooks/concierge"; }

  std::vector<Delivery> deliveries() {
    std::lock_guard lock(mu_);
    return deliveries_;
  }
  std::map<std::string, int> CountsById() {
    std::map<std::string, int> counts;
    for (const auto& d : deliveries()) counts[d.event_id] += 1;
    return counts;
  }

 private:
  uint16_t port_ = 0;
  std::unique_ptr<server::HttpServer> server_;
  std::mutex mu_;
  std::vector<Delivery> deliveries_;
};

class IncidentApiTest : public ApiTest {
 protected:
  IncidentApiTest() {
    clock_ = &fake_;
  }

  void Configure(server::ServerConfig& c) override {
    c.incident.webhook_allow_http = 1;
    c.incident.webhook_initial_backoff_seconds = 2;
    c.incident.webhook_max_backoff_seconds = 10;
    c.incident.auth_failure_burst = 5;
    c.max_body_bytes = 1 << 20;
  }

  void SetUp() override {
    ApiTest::SetUp();
    InstallRotator();
  }

  void TearDown() override {
    // The App's threads may still call the rotator: stop them first.
    if (app_) app_->Stop();
  }

  void InstallRotator() {
    server::AppServices s = app_->services();
    rotator_ = std::make_unique<testing::TestStandInRotator>(*s.store, *s.backends, s.certs, fake_);
    s.playbooks->SetRotator(rotator_.get());
  }

  void Restart() {
    app_->services().playbooks->SetRotator(nullptr);
    RestartServer();
    InstallRotator();
  }

  json Json(const HttpResult& r) {
    json j = json::parse(r.body, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.body;
    return j;
  }

  // Polls (bounded, real time) until `done` holds for the JSON at `path`.
  json WaitFor(const std::string& path, const std::function<bool(const json&)>& done, int seconds = 300) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    json j;
    while (std::chrono::steady_clock::now() < deadline) {
      j = Json(Admin("GET", path));
      if (done(j)) return j;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "timed out waiting on " << path << ": " << j.dump();
    return j;
  }

  std::vector<LedgerEntry> Seed(const json& key, int n) {
    std::vector<LedgerEntry> rows;
    for (int i = 0; i < n; ++i) {
      LedgerEntry e;
      e.tenant_id = key["tenant_id"];
      e.key_id = key["key_id"];
      e.key_version = key["version"];
      e.algorithm = key["algorithm"];
      e.asset_id = "urn:asset:" + std::to_string(i);
      e.digest_hex = crypto::Sha256Hex(crypto::AsBytes(e.asset_id));
      e.request_id = "seed-" + std::to_string(i);
      e.api_key_id = "seeder";
      e.client_address = "127.0.0.1";
      e.policy_hash = std::string(64, 'p');
      e.signed_at = fake_.Now();
      rows.push_back(std::move(e));
    }
    for (size_t i = 0; i < rows.size(); i += 10000) {
      std::vector<LedgerEntry> batch(rows.begin() + static_cast<long>(i),
                                     rows.begin() + static_cast<long>(std::min(rows.size(), i + 10000)));
      EXPECT_TRUE(app_->services().ledger->AppendBatch(batch).ok());
      for (size_t k = 0; k < batch.size(); ++k) rows[i + k].seq = batch[k].seq;
    }
    return rows;
  }

  FakeClock fake_{RealClock().Now()};
  std::unique_ptr<testing::TestStandInRotator> rotator_;
};

TEST_F(IncidentApiTest, KeyCompromiseDrillWith100kEntries) {
  constexpr int kSeeded = 100000;
  constexpr int kSignedLive = 10;
  // The drill rotates with the real rotation engine (not the stand-in): new
  // key, certificate from the built-in CA, canary, cutover, evidence pack.
  app_->services().playbooks->SetRotator(app_->services().engine_rotator);
  WebhookReceiver receiver;
  ASSERT_EQ(Admin("POST", "/api/v1/ca", json::object()).status, 201);
  json policy = CreatePolicy("acme-news", "ES256");
  ASSERT_TRUE(policy.contains("certificate")) << policy.dump();
  const json old_key = policy["key"];
  const std::string old_serial = policy["certificate"]["serial"];
  auto hook = Admin("POST", "/api/v1/webhooks", {{"tenant_id", "acme-news"}, {"url", receiver.url()}});
  ASSERT_EQ(hook.status, 201) << hook.body;
  const std::string webhook_id = Json(hook)["webhook_id"];
  const std::string secret = Json(hook)["secret"];
  receiver.Down();  // down for the whole drill

  // 100,000 entries the old key signed (real digests, straight into the
  // ledger) and a few real signatures through the API.
  std::vector<LedgerEntry> originals = Seed(old_key, kSeeded);
  const std::string signer = NewToken("signer", "acme-news");
  for (int i = 0; i < kSignedLive; ++i) {
    std::string digest = crypto::Sha256Hex(crypto::AsBytes("live-" + std::to_string(i)));
    auto r = Call(signer, "POST", "/api/v1/tenants/acme-news/sign",
                  json({{"digest", digest}, {"asset_id", "live-" + std::to_string(i)}}).dump());
    ASSERT_EQ(r.status, 200) << r.body;
  }

  // Compromise declared; the security officer runs the playbook.
  const std::string officer = NewToken("security-officer", "acme-news");
  auto opened = Call(officer, "POST", "/api/v1/incidents",
                     json({{"tenant_id", "acme-news"},
                           {"type", "key_compromise"},
                           {"severity", "critical"},
                           {"title", "signing key found in a leaked backup"},
                           {"key_id", old_key["key_id"]}})
                         .dump());
  ASSERT_EQ(opened.status, 201) << opened.body;
  const std::string incident = Json(opened)["incident_id"];
  auto respond = Call(officer, "POST", "/api/v1/incidents/" + incident + "/respond", "{}");
  ASSERT_EQ(respond.status, 202) << respond.body;

  json inc = WaitFor("/api/v1/incidents/" + incident, [](const json& j) {
    return j["playbook"].is_object() && j["playbook"].contains("job_id");
  });
  const std::string job_id = inc["playbook"]["job_id"];
  json progress = Json(Admin("GET", "/api/v1/jobs/" + job_id));
  for (const char* f : {"done", "total", "percent", "rate_per_second", "eta_seconds", "state"}) {
    EXPECT_TRUE(progress.contains(f)) << f;
  }
  inc = WaitFor("/api/v1/incidents/" + incident, [](const json& j) {
    return j["state"] == "resolved" || (j["playbook"].is_object() && j["playbook"]["status"] == "failed");
  });
  ASSERT_EQ(inc["state"], "resolved") << inc.dump();
  EXPECT_EQ(inc["playbook"]["resign"]["resigned"], kSeeded + kSignedLive);
  EXPECT_EQ(rotator_->calls(), 0);  // the stand-in was not used
  const std::string new_key_id = inc["playbook"]["new_key_id"];
  {
    // Exactly one rotation ran, through every phase, and left an evidence pack.
    json rotations = Json(Admin("GET", "/api/v1/tenants/acme-news/rotations"));
    const json& list = rotations.is_array() ? rotations : rotations["rotations"];
    int completed = 0;
    std::string rotation_id;
    for (const auto& r : list) {
      if (r["state"] == "completed") {
        ++completed;
        rotation_id = r["rotation_id"];
        EXPECT_EQ(r["new_key_id"], new_key_id) << r.dump();
      }
    }
    EXPECT_EQ(completed, 1) << rotations.dump();
    EXPECT_EQ(Admin("GET", "/api/v1/rotations/" + rotation_id + "/evidence").status, 200);
  }
  progress = Json(Admin("GET", "/api/v1/jobs/" + job_id));
  EXPECT_EQ(progress["state"], "completed");
  EXPECT_EQ(progress["done"], kSeeded + kSignedLive);
  EXPECT_EQ(progress["percent"], 100.0);

  // Every original entry: exactly one re-signature, by the new key, verified.
  auto results = Admin("GET", "/api/v1/jobs/" + job_id + "/results");
  ASSERT_EQ(results.status, 200);
  EXPECT_EQ(results.headers["content-type"], "application/x-ndjson");
  json new_key = Json(Admin("GET", "/api/v1/tenants/acme-news/keys/" + new_key_id));
  auto pub = crypto::PublicKeyFromPem(new_key["public_key_pem"].get<std::string>());
  ASSERT_TRUE(pub.ok());
  std::map<int64_t, std::string> expected_asset;
  for (const auto& o : originals) expected_asset[o.seq] = o.asset_id;
  std::set<int64_t> seen, new_seqs;
  std::vector<json> lines;
  size_t verified = 0, bad = 0, pos = 0;
  while (pos < results.body.size()) {
    size_t nl = results.body.find('\n', pos);
    json line = json::parse(results.body.substr(pos, nl - pos));
    pos = nl + 1;
    const int64_t seq = line["original_seq"];
    if (!seen.insert(seq).second || line["status"] != "resigned" || line["key_id"] != new_key_id) ++bad;
    new_seqs.insert(line["new_seq"].get<int64_t>());
    if (auto it = expected_asset.find(seq); it != expected_asset.end() && line["asset_id"] != it->second) ++bad;
    auto sig = crypto::Base64Decode(line["signature"].get<std::string>());
    auto digest = crypto::HexDecode(line["digest"].get<std::string>());
    if (sig.ok() && digest.ok() && crypto::VerifyDigest(pub->get(), Algorithm::kES256, *digest, *sig).ok()) {
      ++verified;
    }
    if (lines.size() < 3 || seq == originals[kSeeded / 2].seq) lines.push_back(line);
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kSeeded + kSignedLive));
  EXPECT_EQ(new_seqs.size(), seen.size());
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(verified, seen.size());
  for (const auto& o : originals) {
    if (!seen.count(o.seq)) {
      ADD_FAILURE() << "gap: original seq " << o.seq << " has no re-signature";
      break;
    }
  }
  // The ledger agrees: one "resign" row per original, linked to it.
  std::map<int64_t, int> per_original;
  std::string cursor;
  for (;;) {
    json page = Json(Admin("GET", "/api/v1/tenants/acme-news/ledger?limit=1000&key_id=" + new_key_id + cursor));
    for (const auto& e : page["entries"]) {
      if (e["kind"] == "resign") per_original[e["resign_of_seq"].get<int64_t>()] += 1;
    }
    if (page["next_cursor"].is_null()) break;
    cursor = "&after=" + std::to_string(page["next_cursor"].get<int64_t>());
  }
  EXPECT_EQ(per_original.size(), seen.size());
  size_t duplicated = 0;
  for (const auto& [seq, n] : per_original) duplicated += n != 1;
  EXPECT_EQ(duplicated, 0u);

  // A sample, verified independently with the openssl command line.
  testing::WriteFile(dir_.File("new.pem"), new_key["public_key_pem"]);
  for (const auto& line : lines) {
    testing::WriteFile(dir_.File("d.bin"), crypto::AsString(*crypto::HexDecode(line["digest"].get<std::string>())));
    testing::WriteFile(dir_.File("s.der"), crypto::AsString(*crypto::Base64Decode(line["signature"].get<std::string>())));
    auto v = RunCommand("openssl pkeyutl -verify -pubin -inkey " + dir_.File("new.pem") + " -in " + dir_.File("d.bin") +
                        " -sigfile " + dir_.File("s.der") + " 2>&1");
    EXPECT_NE(v.output.find("Signature Verified Successfully"), std::string::npos) << v.output;
  }

  // The old certificate is on the CRL; the old key is compromised.
  auto crl = Call("", "GET", "/api/v1/ca/crl");
  ASSERT_EQ(crl.status, 200);
  testing::WriteFile(dir_.File("crl.pem"), crl.body);
  auto crl_text = RunCommand("openssl crl -in " + dir_.File("crl.pem") + " -noout -text 2>&1");
  ASSERT_EQ(crl_text.exit_code, 0) << crl_text.output;
  std::string serial_upper = old_serial;
  for (char& ch : serial_upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  while (serial_upper.size() > 1 && serial_upper[0] == '0') serial_upper.erase(0, 1);
  EXPECT_NE(crl_text.output.find(serial_upper), std::string::npos) << crl_text.output;
  EXPECT_EQ(Json(Admin("GET", "/api/v1/tenants/acme-news/keys/" + old_key["key_id"].get<std::string>()))["state"],
            "compromised");

  // The tenant signs again, with the new key.
  auto after = Call(signer, "POST", "/api/v1/tenants/acme-news/sign",
                    json({{"digest", std::string(64, 'a')}}).dump());
  ASSERT_EQ(after.status, 200) << after.body;
  EXPECT_EQ(Json(after)["key_id"], new_key_id);

  // The report: JSON with the counts, HTML for people.
  json report = Json(Call(officer, "GET", "/api/v1/incidents/" + incident + "/report"));
  EXPECT_EQ(report["resign_totals"]["resigned"], kSeeded + kSignedLive);
  auto html = Call(officer, "GET", "/api/v1/incidents/" + incident + "/report?format=html");
  ASSERT_EQ(html.status, 200);
  EXPECT_EQ(html.headers["content-type"], "text/html; charset=utf-8");
  EXPECT_NE(html.body.find("signing key found in a leaked backup"), std::string::npos);

  // Notifications: nothing reached the receiver yet, and a restart loses nothing.
  EXPECT_TRUE(receiver.deliveries().empty());
  Restart();
  receiver.Up();
  // Move the clock past any backoff and let the dispatcher (the background
  // one, and this thread's passes) work until the outbox is empty.
  auto* dispatcher = app_->services().webhooks;
  json deliveries = WaitFor("/api/v1/webhooks/" + webhook_id + "/deliveries", [&](const json& j) {
    fake_.Advance(std::chrono::seconds(20));
    EXPECT_TRUE(dispatcher->RunOnce().ok());
    for (const auto& d : j["deliveries"]) {
      if (d["state"] != "delivered") return false;
    }
    return !j["deliveries"].empty();
  }, 60);
  std::set<std::string> outbox;
  int retried = 0;
  for (const auto& d : deliveries["deliveries"]) {
    EXPECT_EQ(d["state"], "delivered") << d.dump();
    retried += d["attempts"].get<int>() >= 2;  // failed while the receiver was down
    outbox.insert(d["event_id"].get<std::string>());
  }
  EXPECT_GT(retried, 0);
  std::map<std::string, int> counts = receiver.CountsById();
  EXPECT_GE(outbox.size(), 7u);  // opened, 4 state changes, resolved, job.completed
  EXPECT_EQ(counts.size(), outbox.size());
  for (const auto& id : outbox) EXPECT_EQ(counts[id], 1) << id;
  std::set<std::string> types;
  const SecretBytes key = SecretBytes::FromString(secret, SecretAccess::Grant());
  for (const auto& d : receiver.deliveries()) {
    EXPECT_TRUE(core::VerifyWebhookSignature(key, d.signature, d.body, fake_.Now(), std::chrono::hours(1)).ok());
    json body = json::parse(d.body);
    EXPECT_EQ(body["id"], d.event_id);
    types.insert(body["type"].get<std::string>());
  }
  for (const char* t : {"incident.opened", "incident.state_changed", "incident.resolved", "job.completed"}) {
    EXPECT_TRUE(types.count(t)) << t;
  }
}

TEST_F(IncidentApiTest, IncidentLifecycleValidationAndScope) {
  CreatePolicy("acme-news", "ES256");
  CreatePolicy("globex", "ES256");
  const std::string officer = NewToken("security-officer", "acme-news");
  const std::string reader = NewToken("operator", "acme-news");
  const std::string signer = NewToken("signer", "acme-news");
  const std::string other = NewToken("security-officer", "globex");
  const json body = {{"tenant_id", "acme-news"},
                     {"type", "security_alert"},
                     {"severity", "medium"},
                     {"title", "odd traffic"},
                     {"dedup_key", "odd:1"}};

  ExpectError(Call(officer, "POST", "/api/v1/incidents", json({{"tenant_id", "acme-news"}, {"type", "x"},
                                                               {"severity", "low"}, {"title", "t"}})
                                                             .dump()),
              400, "type");
  ExpectError(Call(officer, "POST", "/api/v1/incidents", json({{"tenant_id", "acme-news"}, {"type", "security_alert"},
                                                               {"severity", "low"}, {"title", "t"}, {"bogus", 1}})
                                                             .dump()),
              400, "bogus");
  ExpectError(Call(officer, "POST", "/api/v1/incidents", "not json"), 400, "body");
  ExpectError(Call(reader, "POST", "/api/v1/incidents", body.dump()), 403);
  ExpectError(Call(other, "POST", "/api/v1/incidents", body.dump()), 403);
  ExpectError(Call("", "GET", "/api/v1/incidents"), 401);
  ExpectError(Call(officer, "PATCH", "/api/v1/incidents"), 405);

  auto created = Call(officer, "POST", "/api/v1/incidents", body.dump());
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string id = Json(created)["incident_id"];
  auto folded = Call(officer, "POST", "/api/v1/incidents", body.dump());
  ASSERT_EQ(folded.status, 200) << folded.body;
  EXPECT_EQ(Json(folded)["incident_id"], id);
  EXPECT_EQ(Json(folded)["occurrences"], 2);
  EXPECT_FALSE(Json(folded)["created"]);

  // Reading: a read-only operator yes, signers and auditors (audit data only) no,
  // other tenants do not even see it.
  ExpectError(Call(NewToken("auditor", "acme-news"), "GET", "/api/v1/incidents/" + id), 403);
  EXPECT_EQ(Call(reader, "GET", "/api/v1/incidents/" + id).status, 200);
  ExpectError(Call(signer, "GET", "/api/v1/incidents/" + id), 403);
  ExpectError(Call(other, "GET", "/api/v1/incidents/" + id), 404);
  EXPECT_TRUE(Json(Call(other, "GET", "/api/v1/incidents"))["incidents"].empty());
  ExpectError(Call(other, "GET", "/api/v1/incidents?tenant_id=acme-news"), 403);
  EXPECT_EQ(Json(Call(reader, "GET", "/api/v1/incidents"))["incidents"].size(), 1u);

  // The state machine, over HTTP.
  ExpectError(Call(reader, "POST", "/api/v1/incidents/" + id + "/resolve", "{}"), 403);
  ExpectError(Call(officer, "POST", "/api/v1/incidents/" + id + "/transition", json({{"state", "closed"}}).dump()),
              409, "state");
  ExpectError(Call(officer, "POST", "/api/v1/incidents/" + id + "/transition", json({{"state", "melted"}}).dump()),
              400, "state");
  auto moved = Call(officer, "POST", "/api/v1/incidents/" + id + "/transition",
                    json({{"state", "investigating"}, {"detail", "looking"}}).dump());
  ASSERT_EQ(moved.status, 200) << moved.body;
  ExpectError(Call(officer, "POST", "/api/v1/incidents/" + id + "/transition", json({{"state", "open"}}).dump()), 409);
  ASSERT_EQ(Call(officer, "POST", "/api/v1/incidents/" + id + "/notes", json({{"text", "called the CISO"}}).dump())
                .status,
            200);
  ASSERT_EQ(Call(officer, "POST", "/api/v1/incidents/" + id + "/resolve", json({{"detail", "benign"}}).dump()).status,
            200);
  ASSERT_EQ(Call(officer, "POST", "/api/v1/incidents/" + id + "/transition", json({{"state", "closed"}}).dump()).status,
            200);
  json timeline = Json(Call(reader, "GET", "/api/v1/incidents/" + id + "/timeline"))["timeline"];
  std::vector<std::string> actions;
  for (const auto& e : timeline) actions.push_back(e["action"]);
  EXPECT_EQ(actions, (std::vector<std::string>{"opened", "detected_again", "state_changed", "note", "state_changed",
                                               "state_changed"}));
  EXPECT_EQ(timeline[2]["detail"], "looking");
  EXPECT_EQ(Json(Call(reader, "GET", "/api/v1/incidents?state=closed"))["incidents"].size(), 1u);
  EXPECT_TRUE(Json(Call(reader, "GET", "/api/v1/incidents?open=true"))["incidents"].empty());
  ExpectError(Call(reader, "GET", "/api/v1/incidents?limit=0"), 400, "limit");
  // No playbook for other types; global incidents only for unscoped keys.
  ExpectError(Call(officer, "POST", "/api/v1/incidents/" + id + "/respond", "{}"), 501);
  auto global = Admin("POST", "/api/v1/incidents",
                      {{"type", "backend_outage"}, {"severity", "high"}, {"title", "HSM cluster down"}});
  ASSERT_EQ(global.status, 201);
  ExpectError(Call(officer, "GET", "/api/v1/incidents/" + Json(global)["incident_id"].get<std::string>()), 404);
  ExpectError(Call(officer, "POST", "/api/v1/incidents",
                   json({{"type", "backend_outage"}, {"severity", "high"}, {"title", "x"}}).dump()),
              403);
}

TEST_F(IncidentApiTest, WebhookSecretsAreShownOnceAndNeverAgain) {
  CreatePolicy("acme-news", "ES256");
  const std::string officer = NewToken("security-officer", "acme-news");
  const std::string reader = NewToken("operator", "acme-news");
  ExpectError(Call(officer, "POST", "/api/v1/webhooks", json({{"tenant_id", "acme-news"}, {"url", "ftp://x"}}).dump()),
              400, "url");
  ExpectError(Call(officer, "POST", "/api/v1/webhooks",
                   json({{"tenant_id", "acme-news"}, {"url", "https://h.example/x"}, {"events", {"nope"}}}).dump()),
              400, "events");
  ExpectError(Call(reader, "POST", "/api/v1/webhooks", json({{"tenant_id", "acme-news"}, {"url", "https://h.example/x"}}).dump()),
              403);
  auto created = Call(officer, "POST", "/api/v1/webhooks",
                      json({{"tenant_id", "acme-news"}, {"url", "https://h.example/x"}, {"events", {"job.completed"}}})
                          .dump());
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string secret = Json(created)["secret"];
  EXPECT_EQ(secret.rfind("whsec_", 0), 0u);
  const std::string id = Json(created)["webhook_id"];
  auto list = Call(officer, "GET", "/api/v1/webhooks");
  auto one = Call(officer, "GET", "/api/v1/webhooks/" + id);
  for (const auto* r : {&list, &one}) {
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body.find(secret), std::string::npos);
    EXPECT_EQ(r->body.find("secret"), std::string::npos) << r->body;
  }
  EXPECT_EQ(Json(one)["events"], json::array({"job.completed"}));
  // Not in the database in clear either.
  auto dump = RunCommand("sqlite3 " + dir_.File("data/concierge.db") + " .dump 2>&1");
  if (dump.exit_code == 0) {
    EXPECT_EQ(dump.output.find(secret.substr(6)), std::string::npos);
  }
  auto disabled = Call(officer, "DELETE", "/api/v1/webhooks/" + id);
  ASSERT_EQ(disabled.status, 200);
  EXPECT_FALSE(Json(disabled)["enabled"]);
  ExpectError(Call(NewToken("security-officer", ""), "GET", "/api/v1/webhooks/wh_nope"), 404);
}

TEST_F(IncidentApiTest, ResignJobsOverRest) {
  json policy = CreatePolicy("acme-news", "ES256");
  const json old_key = policy["key"];
  Seed(old_key, 2500);
  const std::string officer = NewToken("security-officer", "acme-news");
  const std::string reader = NewToken("operator", "acme-news");
  const std::string path = "/api/v1/tenants/acme-news/resign-jobs";
  const json body = {{"compromised_key_id", old_key["key_id"]}};
  ExpectError(Call(officer, "POST", path, body.dump()), 409, "compromised_key_id");  // still active
  ASSERT_TRUE(rotator_->RotateNow("acme-news", "test").ok());
  ExpectError(Call(officer, "POST", path, json({{"compromised_key_id", "ghost"}}).dump()), 400, "compromised_key_id");
  ExpectError(Call(officer, "POST", path, json({{"compromised_key_id", old_key["key_id"]}, {"since", "yesterday"}}).dump()),
              400, "since");
  ExpectError(Call(reader, "POST", path, body.dump()), 403);
  auto created = Call(officer, "POST", path, body.dump());
  ASSERT_EQ(created.status, 202) << created.body;
  const std::string job = Json(created)["job_id"];
  json done = WaitFor("/api/v1/jobs/" + job, [](const json& j) { return j["state"] == "completed"; });
  EXPECT_EQ(done["resigned"], 2500);
  EXPECT_EQ(Json(Call(reader, "GET", "/api/v1/jobs"))["jobs"].size(), 1u);
  ExpectError(Call(reader, "POST", "/api/v1/jobs/" + job + "/cancel", "{}"), 403);
  ExpectError(Call(officer, "POST", "/api/v1/jobs/" + job + "/pause", "{}"), 409);
  CreatePolicy("globex", "ES256");
  ExpectError(Call(NewToken("operator", "globex"), "GET", "/api/v1/jobs/" + job), 404);

  // JSONL in pages.
  std::set<int64_t> seqs;
  std::string after = "0";
  for (int page = 0; page < 10; ++page) {
    auto r = Call(reader, "GET", "/api/v1/jobs/" + job + "/results?limit=1000&after=" + after);
    ASSERT_EQ(r.status, 200);
    size_t lines = 0;
    for (size_t pos = 0; pos < r.body.size(); ++lines) {
      size_t nl = r.body.find('\n', pos);
      seqs.insert(json::parse(r.body.substr(pos, nl - pos))["original_seq"].get<int64_t>());
      pos = nl + 1;
    }
    if (r.headers.count("x-next-after") == 0) {
      EXPECT_LT(lines, 1000u);
      break;
    }
    after = r.headers["x-next-after"];
  }
  EXPECT_EQ(seqs.size(), 2500u);

  // Re-signatures are signatures: each one is on the audit log, and so are the
  // job's creation (attempt + outcome).
  std::set<int64_t> audited;
  std::string cursor;
  for (int page = 0; page < 10; ++page) {
    json entries = Json(Admin("GET", "/api/v1/audit/entries?tenant=acme-news&action=sign.resign&limit=1000" +
                                         (cursor.empty() ? std::string() : "&after=" + cursor)));
    for (const auto& e : entries["entries"]) audited.insert(e["index"].get<int64_t>());
    if (entries["next_cursor"].is_null()) break;
    cursor = std::to_string(entries["next_cursor"].get<int64_t>());
  }
  EXPECT_EQ(audited.size(), 2500u);
  int created_ok = 0, refused = 0;
  const json job_entries = Json(Admin("GET", "/api/v1/audit/entries?action=resign_job.create"));
  for (const auto& e : job_entries["entries"]) {
    if (e["outcome"] == "success") ++created_ok;
    if (e["outcome"] == "failure") ++refused;
  }
  EXPECT_EQ(created_ok, 1) << job_entries.dump();
  EXPECT_EQ(refused, 4);  // the refused attempts above are on the log too
  ExpectError(Call(reader, "GET", "/api/v1/jobs/" + job + "/results?limit=0"), 400, "limit");
  ExpectError(Call(reader, "GET", "/api/v1/jobs/job_nope"), 404);
}

TEST_F(IncidentApiTest, DetectorsSeeAuthBurstsAndCapBreachesFromRealRequests) {
  CreatePolicy("acme-news", "ES256");
  ASSERT_EQ(Admin("PATCH", "/api/v1/tenants/acme-news/policy", {{"max_issuance_per_24h", 2}}).status, 200);
  const std::string signer = NewToken("signer", "acme-news");
  for (int i = 0; i < 3; ++i) {
    Call(signer, "POST", "/api/v1/tenants/acme-news/sign", json({{"digest", std::string(64, 'b')}}).dump());
  }
  for (int i = 0; i < 5; ++i) Call("kc_0000000000000000.bad", "GET", "/api/v1/whoami");
  json list = Json(Admin("GET", "/api/v1/incidents"));
  std::map<std::string, json> by_detector;
  for (const auto& i : list["incidents"]) by_detector[i["detector"]] = i;
  ASSERT_TRUE(by_detector.count("issuance_cap")) << list.dump();
  EXPECT_EQ(by_detector["issuance_cap"]["type"], "policy_violation");
  EXPECT_EQ(by_detector["issuance_cap"]["tenant_id"], "acme-news");
  ASSERT_TRUE(by_detector.count("auth_failures")) << list.dump();
  EXPECT_EQ(by_detector["auth_failures"]["tenant_id"], nullptr);
}

TEST_F(IncidentApiTest, KeyctlIncidentAndJobCommands) {
  json policy = CreatePolicy("acme-news", "ES256");
  Seed(policy["key"], 300);
  const std::string keyctl = testing::KeyctlBinary() + " --url " + app_->url() + " --token " + admin_token_ + " ";
  auto created = RunCommand(keyctl + "-o json incident create --tenant-id acme-news --type key_compromise "
                                     "--severity high --title 'laptop stolen' --key-id " +
                            policy["key"]["key_id"].get<std::string>());
  ASSERT_EQ(created.exit_code, 0) << created.output;
  const std::string id = json::parse(created.output)["incident_id"];
  auto listed = RunCommand(keyctl + "incident list --open");
  EXPECT_EQ(listed.exit_code, 0);
  EXPECT_NE(listed.output.find(id), std::string::npos) << listed.output;
  auto bad = RunCommand(keyctl + "incident create --tenant-id acme-news --type nope --severity high --title x");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("type"), std::string::npos) << bad.output;
  auto respond = RunCommand(keyctl + "incident respond " + id + " --wait");
  ASSERT_EQ(respond.exit_code, 0) << respond.output;
  EXPECT_NE(respond.output.find("resolved"), std::string::npos) << respond.output;
  auto timeline = RunCommand(keyctl + "incident timeline " + id);
  EXPECT_NE(timeline.output.find("resigning -> resolved"), std::string::npos) << timeline.output;
  json inc = Json(Admin("GET", "/api/v1/incidents/" + id));
  const std::string job = inc["playbook"]["job_id"];
  auto status = RunCommand(keyctl + "job status " + job + " --follow");
  ASSERT_EQ(status.exit_code, 0) << status.output;
  EXPECT_NE(status.output.find("[##############################] 100.0%  300/300"), std::string::npos)
      << status.output;
  auto results = RunCommand(keyctl + "job results " + job + " --out " + dir_.File("results.jsonl"));
  ASSERT_EQ(results.exit_code, 0) << results.output;
  EXPECT_NE(testing::ReadFile(dir_.File("results.jsonl")).find("\"status\":\"resigned\""), std::string::npos);
  auto report = RunCommand(keyctl + "incident report " + id + " --html " + dir_.File("report.html"));
  ASSERT_EQ(report.exit_code, 0) << report.output;
  EXPECT_NE(testing::ReadFile(dir_.File("report.html")).find("laptop stolen"), std::string::npos);
  auto closed = RunCommand(keyctl + "incident transition " + id + " --state closed");
  EXPECT_EQ(closed.exit_code, 0) << closed.output;
}

}  // namespace
}  // namespace concierge
