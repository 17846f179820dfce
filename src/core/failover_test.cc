// Backend health, the backend-latency detector and tenant failover with real
// components: SQLite store, software keystore (primary and standby), the
// built-in CA, a FakeClock. Backend faults are fed to the health tracker the
// way ObservedBackend reports them; the probes sign for real.
#include "core/failover.h"

#include <gtest/gtest.h>

#include <set>

#include "core/incident_detectors.h"
#include "core/incident_test_env.h"
#include "crypto/keys.h"
#include "crypto/signature.h"
#include "crypto/x509.h"

namespace concierge::core {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const Status kDown = UnavailableError("token removed");

TEST(BackendHealthTrackerTest, CountsOnlyBackendFaultsInARow) {
  FakeClock clock(Epoch());
  BackendHealthTracker health(clock, seconds(60));
  health.Record("pkcs11", "k1", kDown, milliseconds(1));
  health.Record("pkcs11", "k1", InvalidArgumentError("bad digest"),
                milliseconds(1));  // the request's fault
  health.Record("pkcs11", "k1", kDown, milliseconds(1));
  EXPECT_EQ(health.ConsecutiveFailures("k1"), 2);
  EXPECT_EQ(health.ConsecutiveFailures("k2"), 0);
  health.Record("pkcs11", "k2", kDown, milliseconds(1));
  EXPECT_EQ(health.ConsecutiveFailures("k1"), 2);  // per key
  health.Record("pkcs11", "k1", Status::Ok(), milliseconds(1));
  EXPECT_EQ(health.ConsecutiveFailures("k1"), 0);
  EXPECT_EQ(health.ConsecutiveFailures("k2"), 1);
}

TEST(BackendHealthTrackerTest, P99OverTheWindowByTheClock) {
  FakeClock clock(Epoch());
  BackendHealthTracker health(clock, seconds(60));
  for (int i = 1; i <= 100; ++i) health.Record("kms", "k", Status::Ok(), milliseconds(i));
  LatencyStats s = health.ProviderLatency("kms");
  EXPECT_EQ(s.samples, 100);
  EXPECT_EQ(s.p99, milliseconds(99));
  EXPECT_EQ(s.max, milliseconds(100));
  EXPECT_EQ(health.KeyLatency("k").p99, milliseconds(99));
  clock.Advance(seconds(30));
  for (int i = 0; i < 10; ++i) health.Record("kms", "k", Status::Ok(), milliseconds(1000));
  EXPECT_EQ(health.ProviderLatency("kms").p99, milliseconds(1000));
  // The first hundred leave the window; only the slow ten remain.
  clock.Advance(seconds(31));
  s = health.ProviderLatency("kms");
  EXPECT_EQ(s.samples, 10);
  clock.Advance(seconds(60));
  EXPECT_EQ(health.ProviderLatency("kms").samples, 0);
  EXPECT_EQ(health.Providers(), std::vector<std::string>{"kms"});
}

class FailoverTest : public IncidentTestEnv {
 protected:
  void SetUp() override {
    IncidentTestEnv::SetUp();
    ASSERT_TRUE(certs_->InitCa({}).ok());
    FailoverOptions options;
    options.after_failures = 3;
    options.probe_interval = seconds(10);
    options.failback_after_probes = 2;
    options.latency_p99 = milliseconds(200);
    options.latency_min_samples = 5;
    failover_ = std::make_unique<FailoverService>(*store_, *tenants_, certs_.get(), *incidents_,
                                                  health_, clock_, options);
    primary_ = CreateTenant("fo-news", "ES256", {{"failover", {"software:"}}});
    ASSERT_TRUE(
        certs_->IssueForKey(primary_, tenants_->GetPolicy("fo-news", std::nullopt)->policy).ok());
    auto standby = failover_->EnsureStandby("fo-news", "admin-test");
    ASSERT_TRUE(standby.ok()) << standby.status().ToString();
    ASSERT_TRUE(standby->has_value());
    standby_ = **standby;
  }

  std::shared_ptr<const TenantState> State() {
    auto s = tenants_->Active("fo-news");
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return *s;
  }

  std::vector<IncidentRecord> TenantIncidents() {
    IncidentQuery q;
    q.tenant_id = "fo-news";
    auto list = incidents_->List(q);
    EXPECT_TRUE(list.ok());
    return list.ok() ? *list : std::vector<IncidentRecord>{};
  }

  BackendHealthTracker health_{clock_, seconds(60)};
  std::unique_ptr<FailoverService> failover_;
  KeyRecord primary_;
  KeyRecord standby_;
};

TEST_F(FailoverTest, StandbyKeyIsCertifiedBySameCaWithSameSubject) {
  EXPECT_EQ(standby_.state, "standby");
  EXPECT_EQ(standby_.provider, "software");
  EXPECT_NE(standby_.key_id, primary_.key_id);
  EXPECT_NE(standby_.fingerprint, primary_.fingerprint);
  auto state = State();
  EXPECT_EQ(state->standby_key.key_id, standby_.key_id);
  EXPECT_EQ(state->SigningKey().key_id, primary_.key_id);
  auto primary_chain = certs_->ChainFor(primary_);
  auto standby_chain = certs_->ChainFor(standby_);
  ASSERT_TRUE(primary_chain.ok() && standby_chain.ok());
  auto p = crypto::CertificateFromPem(primary_chain->get()->chain_pem);
  auto s = crypto::CertificateFromPem(standby_chain->get()->chain_pem);
  ASSERT_TRUE(p.ok() && s.ok());
  EXPECT_EQ(crypto::SubjectString(p->get()), crypto::SubjectString(s->get()));
  EXPECT_EQ(crypto::IssuerString(p->get()), crypto::IssuerString(s->get()));
  // Already there: nothing to do. A forced one replaces it (the old one retires).
  auto again = failover_->EnsureStandby("fo-news", "admin-test");
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());
  auto replaced = failover_->ProvisionStandby("fo-news", "admin-test");
  ASSERT_TRUE(replaced.ok()) << replaced.status().ToString();
  EXPECT_EQ(State()->standby_key.key_id, replaced->key_id);
  EXPECT_EQ(store_->GetKey(standby_.key_id)->state, "retired");
}

TEST_F(FailoverTest, RemovingFailoverFromThePolicyRetiresTheStandbyAndFailsBack) {
  ASSERT_TRUE(failover_->FailOver("fo-news", "drill", "officer", "").ok());
  ASSERT_TRUE(tenants_->UpdatePolicy("fo-news", {{"failover", nlohmann::json::array()}}, Admin(), std::nullopt).ok());
  auto result = failover_->EnsureStandby("fo-news", "admin-test");
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_FALSE(result->has_value());
  EXPECT_EQ(store_->GetKey(standby_.key_id)->state, "retired");
  EXPECT_FALSE(tenants_->OnStandby("fo-news"));
  EXPECT_EQ(State()->SigningKey().key_id, primary_.key_id);
  auto incidents = TenantIncidents();
  ASSERT_EQ(incidents.size(), 1u);
  EXPECT_EQ(incidents[0].state, "resolved");
}

TEST_F(FailoverTest, ProvisioningNeedsFailoverBackends) {
  CreateTenant("plain-news");
  auto st = failover_->ProvisionStandby("plain-news", "admin-test");
  EXPECT_EQ(st.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.status().message().find("failover"), std::string::npos);
  auto none = failover_->EnsureStandby("plain-news", "admin-test");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  CreateTenant("nowhere-news", "ES256", {{"failover", {"aws-kms:alias/backup"}}});
  auto unavailable = failover_->ProvisionStandby("nowhere-news", "admin-test");
  EXPECT_EQ(unavailable.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(unavailable.status().message().find("aws-kms: not configured"), std::string::npos)
      << unavailable.status().message();
  EXPECT_EQ(tenants_->SetOnStandby("nowhere-news", true).code(), StatusCode::kFailedPrecondition);
}

TEST_F(FailoverTest, ConsecutiveFaultsFailOverOnceAndProbesFailBack) {
  auto state = State();
  for (int i = 0; i < 2; ++i) {
    health_.Record("software", primary_.key_uri, kDown, milliseconds(1));
    EXPECT_EQ(failover_->OnSignFailure("fo-news", *state, kDown), nullptr) << i;
  }
  // A refused request is not the backend's fault.
  EXPECT_EQ(failover_->OnSignFailure("fo-news", *state, InvalidArgumentError("x")), nullptr);
  EXPECT_TRUE(TenantIncidents().empty());
  health_.Record("software", primary_.key_uri, kDown, milliseconds(1));
  auto next = failover_->OnSignFailure("fo-news", *state, kDown);
  ASSERT_NE(next, nullptr);
  EXPECT_TRUE(next->on_standby);
  EXPECT_EQ(next->SigningKey().key_id, standby_.key_id);
  EXPECT_EQ(State()->SigningKey().key_id, standby_.key_id);
  EXPECT_EQ(certs_->ActiveChain("fo-news").value()->key_id, standby_.key_id);
  // Requests in flight on the old snapshot fail too: they retry on the
  // standby as well, and no second incident opens.
  health_.Record("software", primary_.key_uri, kDown, milliseconds(1));
  auto in_flight = failover_->OnSignFailure("fo-news", *state, kDown);
  ASSERT_NE(in_flight, nullptr);
  EXPECT_EQ(in_flight->SigningKey().key_id, standby_.key_id);
  auto incidents = TenantIncidents();
  ASSERT_EQ(incidents.size(), 1u);
  const IncidentRecord inc = incidents[0];
  EXPECT_EQ(inc.type, "backend_outage");  // a software backend; hsm_failure for HSMs
  EXPECT_EQ(inc.key_id, primary_.key_id);
  EXPECT_EQ(inc.state, "contained");
  EXPECT_EQ(failover_->StatusJson("fo-news")["incident_id"], inc.incident_id);

  // The probes sign for real with the (healthy) primary: two in a row, at
  // most one per probe_interval, then failback.
  EXPECT_FALSE(failover_->Tick());
  EXPECT_FALSE(failover_->Tick());  // same instant: no second probe
  EXPECT_EQ(failover_->StatusJson("fo-news")["healthy_probes"], 1);
  clock_.Advance(seconds(10));
  EXPECT_TRUE(failover_->Tick());
  EXPECT_EQ(State()->SigningKey().key_id, primary_.key_id);
  EXPECT_FALSE(State()->on_standby);
  auto resolved = incidents_->Get(inc.incident_id);
  ASSERT_TRUE(resolved.ok());
  EXPECT_EQ(resolved->state, "resolved");
  auto timeline = incidents_->Timeline(inc.incident_id);
  ASSERT_TRUE(timeline.ok());
  std::vector<std::string> actions;
  for (const auto& e : *timeline) {
    if (!e.action.empty()) actions.push_back(e.action);
  }
  EXPECT_NE(std::find(actions.begin(), actions.end(), "failover"), actions.end());
  EXPECT_NE(std::find(actions.begin(), actions.end(), "failback"), actions.end());
  EXPECT_EQ(failover_->FailBack("fo-news", "again", "admin-test").code(),
            StatusCode::kFailedPrecondition);
}

TEST_F(FailoverTest, FailoverAndFailbackAreWebhookEvents) {
  WebhookRecord hook;
  hook.webhook_id = "wh_0000000000000001";
  hook.tenant_id = "fo-news";
  hook.url = "https://hooks.example/fo";
  hook.secret_sealed = "c2VhbGVk";
  hook.event_types = "incident.action";
  hook.created_by = "test";
  hook.created_at = clock_.Now();
  ASSERT_TRUE(store_->InsertWebhook(hook).ok());
  ASSERT_TRUE(failover_->FailOver("fo-news", "maintenance", "officer", "").ok());
  ASSERT_TRUE(failover_->FailBack("fo-news", "done", "officer").ok());
  auto deliveries = store_->ListWebhookDeliveries(hook.webhook_id, 100);
  ASSERT_TRUE(deliveries.ok());
  std::vector<std::string> details;
  for (const auto& d : *deliveries) {
    auto event = store_->GetWebhookEvent(d.event_id);
    ASSERT_TRUE(event.ok());
    EXPECT_EQ(event->type, "incident.action");
    details.push_back(event->payload_json);
  }
  ASSERT_EQ(details.size(), 2u);
  const std::string all = details[0] + details[1];
  EXPECT_NE(all.find("\"failover\""), std::string::npos) << all;
  EXPECT_NE(all.find("\"failback\""), std::string::npos) << all;
}

TEST_F(FailoverTest, StandbyCertificateExpiryIsDetected) {
  IncidentDetectors detectors(*incidents_, *store_, *ledger_, clock_, DetectorOptions{});
  // Default policy validity is 365 days; warn 30 days before.
  clock_.Advance(std::chrono::hours(24) * 340);
  detectors.Tick();
  IncidentQuery q;
  q.tenant_id = "fo-news";
  auto list = incidents_->List(q);
  ASSERT_TRUE(list.ok());
  std::set<std::string> keys;
  for (const auto& r : *list) {
    if (r.detector == "cert_expiry") keys.insert(r.key_id);
  }
  EXPECT_EQ(keys, (std::set<std::string>{primary_.key_id, standby_.key_id}));
}

TEST_F(FailoverTest, SlowPrimaryFailsOverOnTickNotWithinAWindowOfFailback) {
  for (int i = 0; i < 4; ++i)
    health_.Record("software", primary_.key_uri, Status::Ok(), milliseconds(500));
  EXPECT_FALSE(failover_->Tick());  // 4 samples < latency_min_samples
  health_.Record("software", primary_.key_uri, Status::Ok(), milliseconds(500));
  EXPECT_TRUE(failover_->Tick());
  EXPECT_TRUE(State()->on_standby);
  ASSERT_TRUE(failover_->FailBack("fo-news", "operator", "admin-test").ok());
  // The slow samples are still in the window, but they predate the failback.
  EXPECT_FALSE(failover_->Tick());
  EXPECT_FALSE(State()->on_standby);
  clock_.Advance(seconds(61));
  for (int i = 0; i < 5; ++i)
    health_.Record("software", primary_.key_uri, Status::Ok(), milliseconds(300));
  EXPECT_TRUE(failover_->Tick());
  EXPECT_TRUE(State()->on_standby);
}

TEST_F(FailoverTest, RespondFailsOverTheIncidentsTenantOrEveryTenantOnTheBackend) {
  NewIncident n;
  n.tenant_id = "";
  n.type = "backend_outage";
  n.severity = "high";
  n.title = "software backend slow";
  n.details = {{"provider", "software"}};
  n.actor = "test";
  auto global = incidents_->Open(n);
  ASSERT_TRUE(global.ok());
  // Auto-respond only for tenants whose policy allows it: none does.
  auto none = failover_->RespondToIncident(global->incident, "system:auto-respond", true);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_FALSE(State()->on_standby);
  auto done = failover_->RespondToIncident(global->incident, "officer", false);
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_EQ(*done, std::vector<std::string>{"fo-news"});
  EXPECT_TRUE(State()->on_standby);
  // Responding again is harmless.
  EXPECT_TRUE(failover_->RespondToIncident(global->incident, "officer", false).ok());
  n.details = nlohmann::json::object();
  auto vague = incidents_->Open(n);
  ASSERT_TRUE(vague.ok());
  EXPECT_EQ(failover_->RespondToIncident(vague->incident, "officer", false).status().code(),
            StatusCode::kFailedPrecondition);
}

// The latency detector: p99 of a backend over the window against the
// threshold, with a minimum of samples; folds like the other detectors.
class LatencyDetectorTest : public IncidentTestEnv {
 protected:
  std::vector<IncidentRecord> Open() {
    IncidentQuery q;
    q.open_only = true;
    auto list = incidents_->List(q);
    EXPECT_TRUE(list.ok());
    std::vector<IncidentRecord> out;
    for (auto& r : *list) {
      if (r.detector == "backend_latency") out.push_back(r);
    }
    return out;
  }
};

TEST_F(LatencyDetectorTest, SlowBackendOpensABackendOutageWithTheConfiguredSeverity) {
  DetectorOptions options;
  options.backend_latency_p99 = milliseconds(250);
  options.backend_latency_min_samples = 20;
  options.backend_latency_severity = "critical";
  IncidentDetectors detectors(*incidents_, *store_, *ledger_, clock_, options);
  BackendHealthTracker& health = detectors.health();
  for (int i = 0; i < 19; ++i)
    health.Record("pkcs11", "pkcs11:object=a", Status::Ok(), milliseconds(400));
  detectors.Tick();
  EXPECT_TRUE(Open().empty());  // too few samples
  for (int i = 0; i < 200; ++i) health.Record("software", "s", Status::Ok(), milliseconds(5));
  health.Record("pkcs11", "pkcs11:object=a", Status::Ok(), milliseconds(400));
  detectors.Tick();
  auto open = Open();
  ASSERT_EQ(open.size(), 1u);  // the fast backend is fine
  EXPECT_EQ(open[0].type, "backend_outage");
  EXPECT_EQ(open[0].severity, "critical");
  EXPECT_EQ(open[0].tenant_id, "");
  EXPECT_EQ(open[0].dedup_key, "backend-latency:pkcs11");
  auto details = nlohmann::json::parse(open[0].details_json);
  EXPECT_EQ(details["provider"], "pkcs11");
  EXPECT_EQ(details["p99_ms"], 400);
  // Still slow: repeats are counted, then folded after fold_interval.
  detectors.Tick();
  clock_.Advance(seconds(61));
  for (int i = 0; i < 20; ++i)
    health.Record("pkcs11", "pkcs11:object=a", Status::Ok(), milliseconds(300));
  detectors.Tick();
  open = Open();
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0].occurrences, 2);
  // Fast again: nothing new.
  clock_.Advance(seconds(61));
  for (int i = 0; i < 100; ++i)
    health.Record("pkcs11", "pkcs11:object=a", Status::Ok(), milliseconds(10));
  clock_.Advance(seconds(61));
  detectors.Tick();
  EXPECT_EQ(Open()[0].occurrences, 2);
}

TEST_F(LatencyDetectorTest, OffByDefault) {
  IncidentDetectors detectors(*incidents_, *store_, *ledger_, clock_, DetectorOptions{});
  for (int i = 0; i < 100; ++i) detectors.health().Record("pkcs11", "k", Status::Ok(), seconds(5));
  detectors.Tick();
  EXPECT_TRUE(Open().empty());
}

}  // namespace
}  // namespace concierge::core
