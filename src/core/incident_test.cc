// Incident model, IncidentService (folding, transitions, outbox), detectors
// (FakeClock) and reports, against a real SQLite store.
#include "core/incident.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "core/incident_detectors.h"
#include "core/incident_report.h"
#include "core/incident_test_env.h"

namespace concierge::core {
namespace {

using json = nlohmann::json;

NewIncident Manual(const std::string& tenant, const std::string& dedup = "") {
  NewIncident n;
  n.tenant_id = tenant;
  n.type = "security_alert";
  n.severity = "medium";
  n.title = "suspicious signing from a new address";
  n.dedup_key = dedup;
  n.actor = "officer-1";
  return n;
}

std::vector<std::string> PendingEventTypes(Store& store, TimePoint now) {
  std::vector<std::string> types;
  auto due = store.ClaimWebhookDeliveries(now, now + std::chrono::seconds(1), 1000);
  EXPECT_TRUE(due.ok());
  if (due.ok()) {
    for (const auto& d : *due) types.push_back(d.event.type);
  }
  // Events of one millisecond have no defined order among themselves.
  std::sort(types.begin(), types.end());
  return types;
}

TEST(IncidentModelTest, StatesOnlyMoveForwardAndCloseOnlyAfterResolve) {
  EXPECT_TRUE(IncidentTransitionAllowed("open", "investigating"));
  EXPECT_TRUE(IncidentTransitionAllowed("investigating", "contained"));
  EXPECT_TRUE(IncidentTransitionAllowed("contained", "rotating"));
  EXPECT_TRUE(IncidentTransitionAllowed("rotating", "resigning"));
  EXPECT_TRUE(IncidentTransitionAllowed("resigning", "resolved"));
  EXPECT_TRUE(IncidentTransitionAllowed("resolved", "closed"));
  EXPECT_TRUE(IncidentTransitionAllowed("open", "resolved"));  // a false alarm
  EXPECT_FALSE(IncidentTransitionAllowed("open", "closed"));
  EXPECT_FALSE(IncidentTransitionAllowed("contained", "closed"));
  EXPECT_FALSE(IncidentTransitionAllowed("contained", "open"));
  EXPECT_FALSE(IncidentTransitionAllowed("resolved", "resigning"));
  EXPECT_FALSE(IncidentTransitionAllowed("closed", "open"));
  EXPECT_FALSE(IncidentTransitionAllowed("open", "open"));
  EXPECT_FALSE(IncidentTransitionAllowed("open", "bogus"));
  EXPECT_FALSE(IncidentTransitionAllowed("bogus", "closed"));
  EXPECT_TRUE(IsOpenIncidentState("resigning"));
  EXPECT_FALSE(IsOpenIncidentState("resolved"));
}

class IncidentServiceTest : public IncidentTestEnv {};

TEST_F(IncidentServiceTest, OpenValidatesEveryField) {
  CreateTenant("acme");
  auto bad = [&](NewIncident n, const std::string& field) {
    auto r = incidents_->Open(n);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
    EXPECT_EQ(r.status().details().at("field"), field);
  };
  NewIncident n = Manual("acme");
  n.type = "alien_invasion";
  bad(n, "type");
  n = Manual("acme");
  n.severity = "apocalyptic";
  bad(n, "severity");
  n = Manual("acme");
  n.title = "";
  bad(n, "title");
  n = Manual("acme");
  n.key_id = "someone-elses-key";
  bad(n, "key_id");
  n = Manual("acme");
  n.details = json::array();
  bad(n, "details");
  EXPECT_EQ(incidents_->Open(Manual("nobody")).status().code(), StatusCode::kNotFound);
  IncidentQuery all;
  EXPECT_TRUE(incidents_->List(all)->empty());  // nothing was written
}

TEST_F(IncidentServiceTest, DuplicateDetectionsFoldWhileOpen) {
  CreateTenant("acme");
  auto first = incidents_->Open(Manual("acme", "new-address:192.0.2.9"));
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_TRUE(first->created);
  clock_.Advance(std::chrono::minutes(1));
  auto second = incidents_->Open(Manual("acme", "new-address:192.0.2.9"));
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->incident.incident_id, first->incident.incident_id);
  EXPECT_EQ(second->incident.occurrences, 2);
  EXPECT_EQ(incidents_->Get(first->incident.incident_id)->occurrences, 2);
  // A different detection key, or none, is a separate incident.
  EXPECT_TRUE(incidents_->Open(Manual("acme", "new-address:192.0.2.10"))->created);
  EXPECT_TRUE(incidents_->Open(Manual("acme"))->created);
  EXPECT_TRUE(incidents_->Open(Manual("acme"))->created);
  auto timeline = incidents_->Timeline(first->incident.incident_id);
  ASSERT_EQ(timeline->size(), 2u);
  EXPECT_EQ((*timeline)[1].action, "detected_again");
  EXPECT_EQ(PendingEventTypes(*store_, clock_.Now()), std::vector<std::string>{});  // no webhooks yet

  // Once resolved, the same detection opens a fresh incident.
  ASSERT_TRUE(incidents_->Transition(first->incident.incident_id, "resolved", "officer-1", "false alarm").ok());
  auto third = incidents_->Open(Manual("acme", "new-address:192.0.2.9"));
  EXPECT_TRUE(third->created);
  EXPECT_NE(third->incident.incident_id, first->incident.incident_id);
}

TEST_F(IncidentServiceTest, TransitionsAreValidatedAndTimelined) {
  CreateTenant("acme");
  ASSERT_TRUE(store_->InsertWebhook(WebhookRecord{"wh-1", "acme", "https://x.example/h", "c2Vj", "", "o",
                                                  clock_.Now(), std::nullopt})
                  .ok());
  auto opened = incidents_->Open(Manual("acme"));
  ASSERT_TRUE(opened.ok());
  const std::string id = opened->incident.incident_id;
  auto refused = incidents_->Transition(id, "closed", "officer-1", "");
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("resolve it first"), std::string::npos);
  EXPECT_EQ(incidents_->Transition(id, "sideways", "officer-1", "").status().code(), StatusCode::kInvalidArgument);
  for (const char* s : {"investigating", "contained", "resolved", "closed"}) {
    clock_.Advance(std::chrono::seconds(10));
    auto moved = incidents_->Transition(id, s, "officer-1", std::string("to ") + s);
    ASSERT_TRUE(moved.ok()) << moved.status().ToString();
    EXPECT_EQ(moved->state, s);
  }
  EXPECT_EQ(incidents_->Transition(id, "resolved", "officer-1", "").status().code(),
            StatusCode::kFailedPrecondition);
  auto r = incidents_->Get(id);
  EXPECT_EQ(r->state, "closed");
  EXPECT_EQ(r->resolved_at, Epoch() + std::chrono::seconds(30));
  EXPECT_EQ(r->closed_at, Epoch() + std::chrono::seconds(40));
  auto timeline = incidents_->Timeline(id);
  ASSERT_EQ(timeline->size(), 5u);
  EXPECT_EQ((*timeline)[2].from_state, "investigating");
  EXPECT_EQ((*timeline)[2].to_state, "contained");
  EXPECT_EQ((*timeline)[2].actor, "officer-1");
  EXPECT_EQ((*timeline)[2].detail, "to contained");
  // Every change was queued for the tenant's webhook, in the same transaction.
  EXPECT_EQ(PendingEventTypes(*store_, clock_.Now()),
            (std::vector<std::string>{"incident.opened", "incident.resolved", "incident.state_changed",
                                      "incident.state_changed", "incident.state_changed", "incident.state_changed"}));
}

class DetectorTest : public IncidentTestEnv {
 protected:
  void SetUp() override {
    IncidentTestEnv::SetUp();
    options_.fold_interval = std::chrono::seconds(60);
    options_.auth_failure_burst = 5;
    options_.auth_failure_window = std::chrono::seconds(10);
    options_.rate_warmup_minutes = 3;
    options_.rate_min_per_minute = 50;
    options_.rate_factor = 4;
    detectors_ = std::make_unique<IncidentDetectors>(*incidents_, *store_, *ledger_, clock_, options_);
  }

  std::vector<IncidentRecord> Open(const std::string& detector) {
    IncidentQuery q;
    q.open_only = true;
    std::vector<IncidentRecord> out;
    auto list = incidents_->List(q);
    EXPECT_TRUE(list.ok());
    for (auto& r : *list) {
      if (r.detector == detector) out.push_back(r);
    }
    return out;
  }

  // `n` client signatures for `tenant` stamped now (what the rate detector counts).
  void Signatures(const KeyRecord& key, int n) {
    static int counter = 0;
    Seed(key, n, "digest", "r" + std::to_string(counter++) + "-");
  }

  DetectorOptions options_;
  std::unique_ptr<IncidentDetectors> detectors_;
};

TEST_F(DetectorTest, IssuanceCapBreachOpensOnceAndFoldsRepeats) {
  CreateTenant("acme");
  detectors_->OnIssuanceCapRefused("acme", "cap of 10 reached");
  auto open = Open("issuance_cap");
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0].type, "policy_violation");
  EXPECT_EQ(open[0].severity, "high");
  EXPECT_EQ(open[0].tenant_id, "acme");
  // A flood within the fold interval is counted in memory, not written.
  for (int i = 0; i < 100; ++i) detectors_->OnIssuanceCapRefused("acme", "cap of 10 reached");
  EXPECT_EQ(incidents_->Get(open[0].incident_id)->occurrences, 1);
  clock_.Advance(std::chrono::seconds(61));
  detectors_->Tick();
  auto folded = incidents_->Get(open[0].incident_id);
  EXPECT_EQ(folded->occurrences, 2);
  auto timeline = incidents_->Timeline(open[0].incident_id);
  EXPECT_EQ(timeline->back().action, "detected_again");
  EXPECT_EQ(Open("issuance_cap").size(), 1u);
}

TEST_F(DetectorTest, AuthFailureBurstsPerAddressWithinTheWindow) {
  for (int i = 0; i < 4; ++i) detectors_->OnAuthFailure("198.51.100.7");
  clock_.Advance(std::chrono::seconds(11));  // the first four fall out of the window
  for (int i = 0; i < 4; ++i) detectors_->OnAuthFailure("198.51.100.7");
  for (int i = 0; i < 4; ++i) detectors_->OnAuthFailure("203.0.113.1");
  EXPECT_TRUE(Open("auth_failures").empty());
  detectors_->OnAuthFailure("198.51.100.7");
  auto open = Open("auth_failures");
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0].tenant_id, "");  // not tied to a tenant
  EXPECT_EQ(open[0].type, "security_alert");
  EXPECT_EQ(open[0].dedup_key, "auth-failures:198.51.100.7");
}

TEST_F(DetectorTest, SigningRateAnomalyAgainstEwmaBaseline) {
  KeyRecord key = CreateTenant("acme");
  // Start of a minute, then three normal minutes to learn the baseline.
  clock_.Set(TimePoint(std::chrono::minutes(std::chrono::duration_cast<std::chrono::minutes>(
                                                clock_.Now().time_since_epoch()).count() + 1)));
  detectors_->Tick();
  for (int minute = 0; minute < 4; ++minute) {
    Signatures(key, 20);
    clock_.Advance(std::chrono::minutes(1));
    detectors_->Tick();
  }
  EXPECT_TRUE(Open("signing_rate").empty());
  // 79 is below max(50, 4 x 20): normal. 200 is not.
  Signatures(key, 79);
  clock_.Advance(std::chrono::minutes(1));
  detectors_->Tick();
  EXPECT_TRUE(Open("signing_rate").empty());
  Signatures(key, 400);
  clock_.Advance(std::chrono::minutes(1));
  detectors_->Tick();
  auto open = Open("signing_rate");
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0].tenant_id, "acme");
  json details = json::parse(open[0].details_json);
  EXPECT_EQ(details["count"], 400);
  EXPECT_LT(details["baseline_per_minute"].get<double>(), 80.0);
}

TEST_F(DetectorTest, CertificateExpiryWarnsAt30AndEscalatesAt7Days) {
  ASSERT_TRUE(certs_->InitCa(CaInitOptions{}).ok());
  KeyRecord key = CreateTenant("acme", "ES256", {{"cert_validity_days", 90}});
  auto cert = certs_->IssueForTenant("acme");
  ASSERT_TRUE(cert.ok()) << cert.status().ToString();
  detectors_->Tick();
  EXPECT_TRUE(Open("cert_expiry").empty());
  clock_.Advance(std::chrono::hours(24 * 65));  // 25 days left
  detectors_->Tick();
  auto open = Open("cert_expiry");
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0].severity, "medium");
  EXPECT_EQ(open[0].key_id, key.key_id);
  clock_.Advance(std::chrono::hours(24 * 20));  // 5 days left
  detectors_->Tick();
  open = Open("cert_expiry");
  ASSERT_EQ(open.size(), 2u);
  EXPECT_EQ(open[0].severity, "high");
}

// A backend that fails on demand, to drive the error-rate detector.
class FlakyBackend : public KeyBackend {
 public:
  std::string_view provider() const override { return "flaky"; }
  StatusOr<GeneratedKey> GenerateKey(const KeySpec&) override { return UnimplementedError("no"); }
  StatusOr<Bytes> SignDigest(std::string_view, Algorithm, ByteView) override {
    if (failing) return UnavailableError("device unplugged");
    return Bytes{1, 2, 3};
  }
  StatusOr<Bytes> PublicKeySpkiDer(std::string_view) override { return UnimplementedError("no"); }
  Status DestroyKey(std::string_view) override { return Status::Ok(); }
  BackendHealth Health() override { return {!failing, ""}; }
  bool failing = false;
};

TEST_F(DetectorTest, BackendErrorRateOpensABackendOutage) {
  auto flaky = std::make_unique<FlakyBackend>();
  FlakyBackend* raw = flaky.get();
  ObservedBackend observed(std::move(flaky), *detectors_);
  const Bytes digest(32, 1);
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(observed.SignDigest("k", Algorithm::kES256, digest).ok());
  raw->failing = true;
  for (int i = 0; i < 25; ++i) EXPECT_FALSE(observed.SignDigest("k", Algorithm::kES256, digest).ok());
  EXPECT_TRUE(Open("backend_errors").empty());  // 25 of 55: under half
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(observed.SignDigest("k", Algorithm::kES256, digest).ok());
  auto open = Open("backend_errors");
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0].type, "backend_outage");
  EXPECT_EQ(open[0].dedup_key, "backend-errors:flaky");
  // A minute later the old calls have left the window.
  clock_.Advance(std::chrono::seconds(70));
  raw->failing = false;
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(observed.SignDigest("k", Algorithm::kES256, digest).ok());
}

TEST_F(IncidentServiceTest, ReportEscapesEverythingInTheHtml) {
  CreateTenant("acme");
  NewIncident n = Manual("acme");
  n.title = "<script>alert('x')</script> & \"quotes\"";
  auto opened = incidents_->Open(n);
  ASSERT_TRUE(opened.ok());
  ASSERT_TRUE(incidents_->RecordAction(opened->incident.incident_id, "officer-1", "note", "<img src=x onerror=1>",
                                       false)
                  .ok());
  auto report = BuildIncidentReport(*store_, opened->incident.incident_id, clock_.Now());
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ((*report)["incident"]["title"], n.title);
  EXPECT_EQ((*report)["timeline"].size(), 2u);
  std::string html = RenderIncidentReportHtml(*report);
  EXPECT_EQ(html.find("<script>"), std::string::npos);
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quotes&quot;"), std::string::npos);
  EXPECT_NE(html.find("&lt;img src=x onerror=1&gt;"), std::string::npos);
  EXPECT_EQ(BuildIncidentReport(*store_, "nope", clock_.Now()).status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace concierge::core
