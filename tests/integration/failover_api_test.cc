// Backend failover end to end over loopback HTTP: a tenant whose primary key
// lives in a SoftHSM2 token (PKCS#11) and whose policy lists the software
// keystore as its failover backend. The token is made to fail with the
// in-process "backend.sign" test fault; signing continues on the standby key
// (checked with the openssl CLI against the standby's certificate), one
// hsm_failure incident opens, and health probes driven by a FakeClock fail
// back once the token answers again.
#include <gtest/gtest.h>
#include <unistd.h>

#include "core/failover.h"
#include "core/fault_point.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "integration/api_fixture.h"
#include "server/config.h"

namespace concierge {
namespace {

constexpr char kSoftHsm[] = "/usr/lib/softhsm/libsofthsm2.so";
constexpr char kTenant[] = "fo-news";

class FailoverApiTest : public ApiTest {
 protected:
  FailoverApiTest() { clock_ = &fake_; }

  void Configure(server::ServerConfig& c) override {
    c.incident.failover_after_failures = 2;
    c.incident.failback_after_probes = 2;
    c.incident.failover_probe_interval_seconds = 10;
    // The maintenance thread's own ticks stay out of the way; the test ticks.
    c.incident.detector_interval_seconds = 3600;
  }

  void SetUp() override {
    if (::access(kSoftHsm, R_OK) != 0)
      GTEST_SKIP() << "SoftHSM2 not installed (" << kSoftHsm << ")";
    ApiTest::SetUp();
    auto ca = Admin("POST", "/api/v1/ca", json::object());
    ASSERT_EQ(ca.status, 201) << ca.body;
    testing::WriteFile(dir_.File("ca.pem"), Get("/api/v1/ca/certificate"));
  }

  void TearDown() override {
    core::DisarmBackendSignFault();
    ApiTest::TearDown();
  }

  std::string Get(const std::string& path) {
    auto r = Admin("GET", path);
    EXPECT_EQ(r.status, 200) << path << ": " << r.body;
    return r.body;
  }

  json CreateFailoverPolicy(bool auto_respond) {
    auto r = Admin("POST", std::string("/api/v1/tenants/") + kTenant + "/policy",
                   {{"algorithm", "ES256"},
                    {"key_type", "hsm"},
                    {"provider", "pkcs11"},
                    {"key_uri", "pkcs11:token=keyctl-dev"},
                    {"failover", {"software:"}},
                    {"incident_auto_respond", auto_respond}});
    EXPECT_EQ(r.status, 201) << r.body;
    return json::parse(r.body);
  }

  // Signs the SHA-256 of `data`; returns the HTTP result.
  HttpResult Sign(const std::string& data) {
    Bytes digest = crypto::DigestFor(Algorithm::kES256, crypto::AsBytes(data));
    return Admin("POST", std::string("/api/v1/tenants/") + kTenant + "/sign",
                 {{"digest", crypto::HexEncode(digest)}, {"asset_id", data}});
  }

  // The signature verifies with the openssl CLI against the public key of the
  // end-entity certificate in `chain_pem`, and that certificate against the CA.
  void VerifyWithOpenssl(const std::string& data, const std::string& signature_b64,
                         const std::string& chain_pem) {
    auto sig = crypto::Base64Decode(signature_b64);
    ASSERT_TRUE(sig.ok());
    testing::WriteFile(dir_.File("chain.pem"), chain_pem);
    testing::WriteFile(dir_.File("data.bin"), data);
    testing::WriteFile(dir_.File("sig.bin"), crypto::AsString(*sig));
    auto verify_cert = testing::RunCommand("openssl verify -CAfile " + dir_.File("ca.pem") + " " +
                                           dir_.File("chain.pem") + " 2>&1");
    EXPECT_EQ(verify_cert.exit_code, 0) << verify_cert.output;
    auto pub = testing::RunCommand("openssl x509 -noout -pubkey -in " + dir_.File("chain.pem") +
                                   " > " + dir_.File("cert-pub.pem") + " 2>&1");
    ASSERT_EQ(pub.exit_code, 0) << pub.output;
    const std::string cmd = "openssl dgst -sha256 -verify " + dir_.File("cert-pub.pem") +
                            " -signature " + dir_.File("sig.bin") + " " + dir_.File("data.bin") +
                            " 2>&1";
    auto v = testing::RunCommand(cmd);
    EXPECT_EQ(v.exit_code, 0) << cmd << "\n" << v.output;
    EXPECT_NE(v.output.find("Verified OK"), std::string::npos) << v.output;
  }

  std::string Subject(const std::string& chain_pem) {
    testing::WriteFile(dir_.File("subject.pem"), chain_pem);
    return testing::RunCommand("openssl x509 -noout -subject -in " + dir_.File("subject.pem"))
        .output;
  }

  json TenantIncidents() {
    return json::parse(Get(std::string("/api/v1/incidents?tenant_id=") + kTenant))["incidents"];
  }

  core::FailoverService& Failover() { return *app_->services().failover; }

  FakeClock fake_{RealClock().Now()};
};

TEST_F(FailoverApiTest, HsmOutageFailsOverToTheStandbyAndFailsBackWhenHealthy) {
  json created = CreateFailoverPolicy(/*auto_respond=*/false);
  const std::string primary = created["key"]["key_id"];
  ASSERT_TRUE(created.contains("standby_key")) << created.dump();
  const std::string standby = created["standby_key"]["key_id"];
  EXPECT_EQ(created["standby_key"]["provider"], "software");
  EXPECT_EQ(created["standby_key"]["state"], "standby");
  const std::string primary_chain =
      Get(std::string("/api/v1/tenants/") + kTenant + "/certificate-chain");
  json tenant = json::parse(Get(std::string("/api/v1/tenants/") + kTenant));
  EXPECT_EQ(tenant["signing_key_id"], primary);
  EXPECT_EQ(tenant["standby_key"]["key_id"], standby);
  EXPECT_EQ(tenant["failed_over"], false);

  // 1. Healthy: the HSM signs.
  auto ok = Sign("before");
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(json::parse(ok.body)["key_id"], primary);
  VerifyWithOpenssl("before", json::parse(ok.body)["signature"], primary_chain);

  // 2. The token stops answering. The first failure reaches the client (503,
  // naming the backend); the second trips the failover and is retried on the
  // standby, so that client sees a signature.
  core::ArmBackendSignFault("pkcs11");
  auto failed = Sign("lost");
  EXPECT_EQ(failed.status, 503) << failed.body;
  EXPECT_NE(failed.body.find("pkcs11"), std::string::npos) << failed.body;
  EXPECT_TRUE(TenantIncidents().empty());
  std::vector<std::string> signatures;
  for (int i = 0; i < 4; ++i) {
    auto r = Sign("during-" + std::to_string(i));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(json::parse(r.body)["key_id"], standby);
    signatures.push_back(json::parse(r.body)["signature"]);
  }
  // The chain now served is the standby's: same CA, same subject.
  const std::string standby_chain =
      Get(std::string("/api/v1/tenants/") + kTenant + "/certificate-chain");
  EXPECT_NE(standby_chain, primary_chain);
  EXPECT_EQ(Subject(standby_chain), Subject(primary_chain));
  for (int i = 0; i < 4; ++i)
    VerifyWithOpenssl("during-" + std::to_string(i), signatures[i], standby_chain);
  // COSE: signed by the standby with the standby's certificate in x5chain.
  auto cose = Admin("POST", std::string("/api/v1/tenants/") + kTenant + "/sign/cose",
                    {{"payload", crypto::Base64Encode(crypto::AsBytes(std::string("manifest")))}});
  ASSERT_EQ(cose.status, 200) << cose.body;
  EXPECT_EQ(json::parse(cose.body)["key_id"], standby);
  json status = json::parse(Get(std::string("/api/v1/tenants/") + kTenant + "/failover"));
  EXPECT_EQ(status["failed_over"], true);
  EXPECT_EQ(status["signing_key_id"], standby);

  // Exactly one incident: hsm_failure (a PKCS#11 backend), contained, with
  // the failover on its timeline.
  json incidents = TenantIncidents();
  ASSERT_EQ(incidents.size(), 1u) << incidents.dump();
  const std::string incident_id = incidents[0]["incident_id"];
  EXPECT_EQ(incidents[0]["type"], "hsm_failure");
  EXPECT_EQ(incidents[0]["state"], "contained");
  EXPECT_EQ(incidents[0]["key_id"], primary);
  EXPECT_EQ(status["incident_id"], incident_id);

  // 3. Probes while the token is still down change nothing.
  Failover().Tick();
  fake_.Advance(std::chrono::seconds(10));
  Failover().Tick();
  EXPECT_EQ(
      json::parse(Get(std::string("/api/v1/tenants/") + kTenant + "/failover"))["failed_over"],
      true);

  // 4. The token is back: two good probes, one probe_interval apart, fail back.
  core::DisarmBackendSignFault();
  fake_.Advance(std::chrono::seconds(10));
  EXPECT_FALSE(Failover().Tick());
  fake_.Advance(std::chrono::seconds(5));
  EXPECT_FALSE(Failover().Tick());  // too soon for the next probe
  fake_.Advance(std::chrono::seconds(5));
  EXPECT_TRUE(Failover().Tick());
  auto after = Sign("after");
  ASSERT_EQ(after.status, 200) << after.body;
  EXPECT_EQ(json::parse(after.body)["key_id"], primary);
  VerifyWithOpenssl("after", json::parse(after.body)["signature"], primary_chain);
  json inc = json::parse(Get("/api/v1/incidents/" + incident_id + "/timeline"));
  EXPECT_EQ(inc["state"], "resolved") << inc.dump();
  std::vector<std::string> actions;
  for (const auto& e : inc["timeline"]) actions.push_back(e.value("action", ""));
  EXPECT_NE(std::find(actions.begin(), actions.end(), "failover"), actions.end()) << inc.dump();
  EXPECT_NE(std::find(actions.begin(), actions.end(), "failback"), actions.end()) << inc.dump();
  EXPECT_EQ(TenantIncidents().size(), 1u);

  // The ledger names the key that actually signed each row.
  json entries =
      json::parse(Get(std::string("/api/v1/tenants/") + kTenant + "/ledger?limit=100"))["entries"];
  std::map<std::string, std::string> signer;
  for (const auto& e : entries) {
    if (e["asset_id"].is_string()) signer[e["asset_id"].get<std::string>()] = e["key_id"];
  }
  EXPECT_EQ(signer["before"], primary);
  EXPECT_EQ(signer.count("lost"), 0u);  // refused: nothing was issued
  for (int i = 0; i < 4; ++i) EXPECT_EQ(signer["during-" + std::to_string(i)], standby) << i;
  EXPECT_EQ(signer["after"], primary);

  // Failover and failback are on the audit log.
  for (const char* action : {"key.failover", "key.failback", "key.standby"}) {
    json audit = json::parse(
        Get(std::string("/api/v1/audit/entries?limit=100&action=") + action))["entries"];
    EXPECT_FALSE(audit.empty()) << action;
  }
}

TEST_F(FailoverApiTest, RespondForcesFailoverAndFailbackResolves) {
  json created = CreateFailoverPolicy(/*auto_respond=*/false);
  const std::string standby = created["standby_key"]["key_id"];
  auto opened = Admin("POST", "/api/v1/incidents",
                      {{"tenant_id", kTenant},
                       {"type", "hsm_failure"},
                       {"severity", "high"},
                       {"title", "HSM vendor reports a firmware fault"}});
  ASSERT_EQ(opened.status, 201) << opened.body;
  const std::string id = json::parse(opened.body)["incident_id"];
  // Read-only roles cannot switch; a security officer can.
  auto denied = Call(NewToken("auditor"), "POST",
                     std::string("/api/v1/tenants/") + kTenant + "/failover", "{}");
  EXPECT_EQ(denied.status, 403) << denied.body;
  auto responded = Admin("POST", "/api/v1/incidents/" + id + "/respond", json::object());
  ASSERT_EQ(responded.status, 202) << responded.body;
  EXPECT_EQ(json::parse(responded.body)["state"], "contained");
  EXPECT_EQ(json::parse(responded.body)["playbook"]["name"], "failover");
  EXPECT_EQ(json::parse(responded.body)["playbook"]["status"], "done");
  EXPECT_EQ(json::parse(responded.body)["playbook"]["tenants"], json::array({kTenant}));
  auto r = Sign("forced");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["key_id"], standby);
  // No second incident: the failover was recorded on the one responded to.
  EXPECT_EQ(TenantIncidents().size(), 1u);
  // Failback by hand resolves it.
  auto back = Admin("POST", std::string("/api/v1/tenants/") + kTenant + "/failback",
                    {{"reason", "vendor fixed it"}});
  ASSERT_EQ(back.status, 200) << back.body;
  EXPECT_EQ(json::parse(back.body)["failed_over"], false);
  EXPECT_EQ(json::parse(Get("/api/v1/incidents/" + id))["state"], "resolved");
  auto again =
      Admin("POST", std::string("/api/v1/tenants/") + kTenant + "/failback", json::object());
  EXPECT_EQ(again.status, 409) << again.body;
  // Unknown fields are refused and change nothing.
  auto bad =
      Admin("POST", std::string("/api/v1/tenants/") + kTenant + "/failover", {{"reasn", "typo"}});
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_EQ(
      json::parse(Get(std::string("/api/v1/tenants/") + kTenant + "/failover"))["failed_over"],
      false);
}

TEST_F(FailoverApiTest, AutoRespondFailsOverOnAHighBackendIncident) {
  json created = CreateFailoverPolicy(/*auto_respond=*/true);
  const std::string standby = created["standby_key"]["key_id"];
  // A global backend incident naming the provider (what the error-rate and
  // latency detectors open) fails over every auto-responding tenant on it.
  auto opened = Admin("POST", "/api/v1/incidents",
                      {{"type", "backend_outage"},
                       {"severity", "critical"},
                       {"title", "pkcs11 slow"},
                       {"details", {{"provider", "pkcs11"}}}});
  ASSERT_EQ(opened.status, 201) << opened.body;
  auto r = Sign("auto");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["key_id"], standby);
  EXPECT_EQ(TenantIncidents().size(), 1u);  // the tenant's own failover incident
}

TEST_F(FailoverApiTest, StandbyCanBeProvisionedLater) {
  auto r = Admin(
      "POST", std::string("/api/v1/tenants/") + kTenant + "/policy",
      {{"algorithm", "ES256"}, {"provider", "pkcs11"}, {"key_uri", "pkcs11:token=keyctl-dev"}});
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_FALSE(json::parse(r.body).contains("standby_key"));
  auto none =
      Admin("POST", std::string("/api/v1/tenants/") + kTenant + "/keys/standby", json::object());
  EXPECT_EQ(none.status, 409) << none.body;
  EXPECT_NE(none.body.find("failover"), std::string::npos);
  // Adding failover backends to the policy provisions the standby.
  auto updated = Admin("PATCH", std::string("/api/v1/tenants/") + kTenant + "/policy",
                       {{"failover", {"software"}}});
  ASSERT_EQ(updated.status, 200) << updated.body;
  ASSERT_TRUE(json::parse(updated.body).contains("standby_key")) << updated.body;
  const std::string first = json::parse(updated.body)["standby_key"]["key_id"];
  // Replacing it retires the old one.
  auto replaced =
      Admin("POST", std::string("/api/v1/tenants/") + kTenant + "/keys/standby", json::object());
  ASSERT_EQ(replaced.status, 201) << replaced.body;
  EXPECT_NE(json::parse(replaced.body)["key_id"], first);
  EXPECT_EQ(json::parse(Get(std::string("/api/v1/tenants/") + kTenant + "/keys/" + first))["state"],
            "retired");
}

TEST_F(FailoverApiTest, KeyctlCommands) {
  json created = CreateFailoverPolicy(/*auto_respond=*/false);
  const std::string primary = created["key"]["key_id"];
  const std::string standby = created["standby_key"]["key_id"];
  const std::string keyctl = testing::KeyctlBinary() + " --url " + app_->url() + " --token " + admin_token_ + " ";
  auto status = testing::RunCommand(keyctl + "key failover-status --tenant-id " + kTenant + " 2>&1");
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_NE(status.output.find("is on its primary: signing key " + primary), std::string::npos) << status.output;
  auto over = testing::RunCommand(keyctl + "key failover --tenant-id " + kTenant + " --reason 'HSM maintenance' 2>&1");
  EXPECT_EQ(over.exit_code, 0) << over.output;
  EXPECT_NE(over.output.find("is FAILED OVER: signing key " + standby), std::string::npos) << over.output;
  auto json_status = testing::RunCommand(keyctl + "-o json key failover-status --tenant-id " + kTenant);
  ASSERT_EQ(json_status.exit_code, 0) << json_status.output;
  EXPECT_EQ(json::parse(json_status.output)["reason"], "HSM maintenance");
  auto back = testing::RunCommand(keyctl + "key failback --tenant-id " + kTenant + " 2>&1");
  EXPECT_EQ(back.exit_code, 0) << back.output;
  // Failing back twice: one readable line, non-zero exit.
  auto twice = testing::RunCommand(keyctl + "key failback --tenant-id " + kTenant + " 2>&1");
  EXPECT_NE(twice.exit_code, 0);
  EXPECT_NE(twice.output.find("is not failed over"), std::string::npos) << twice.output;
  // `incident respond --wait` on a backend incident returns once failed over.
  auto opened = Admin("POST", "/api/v1/incidents",
                      {{"tenant_id", kTenant}, {"type", "hsm_failure"}, {"severity", "medium"}, {"title", "slow"}});
  ASSERT_EQ(opened.status, 201) << opened.body;
  const std::string id = json::parse(opened.body)["incident_id"];
  auto responded = testing::RunCommand("timeout 30 " + keyctl + "incident respond " + id + " --wait 2>&1");
  EXPECT_EQ(responded.exit_code, 0) << responded.output;
  EXPECT_EQ(json::parse(Get(std::string("/api/v1/tenants/") + kTenant + "/failover"))["failed_over"], true);
  auto renewed = testing::RunCommand(keyctl + "key standby --tenant-id " + kTenant + " 2>&1");
  EXPECT_EQ(renewed.exit_code, 0) << renewed.output;
  EXPECT_NE(renewed.output.find("(software) for tenant fo-news"), std::string::npos) << renewed.output;
}

}  // namespace
}  // namespace concierge
