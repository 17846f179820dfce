// The key_compromise playbook end to end on real components (SQLite, software
// keys, built-in CA), with the TEST STAND-IN rotator behind the EmergencyRotator
// seam; plus resuming after a failed step and after a "restart", and the
// automatic start for high/critical incidents when the policy allows.
#include "core/incident_playbook.h"

#include <gtest/gtest.h>

#include "core/incident_report.h"
#include "core/incident_test_env.h"
#include "crypto/x509.h"
#include "testing/standin_rotator.h"

namespace concierge::core {
namespace {

using json = nlohmann::json;

class PlaybookTest : public IncidentTestEnv {
 protected:
  void SetUp() override {
    IncidentTestEnv::SetUp();
    ASSERT_TRUE(certs_->InitCa(CaInitOptions{}).ok());
    jobs_ = std::make_unique<ResignJobEngine>(*store_, *ledger_, *writer_, backends_, clock_, ResignJobOptions{});
    runner_ = std::make_unique<PlaybookRunner>(*incidents_, *tenants_, certs_.get(), *jobs_, clock_);
    rotator_ = std::make_unique<testing::TestStandInRotator>(*store_, backends_, certs_.get(), clock_);
    incidents_->AddOpenedListener([this](const IncidentRecord& r) { runner_->OnIncidentOpened(r); });
  }

  KeyRecord CertifiedTenant(const std::string& tenant, json extra = json::object()) {
    KeyRecord key = CreateTenant(tenant, "ES256", extra);
    auto cert = certs_->IssueForTenant(tenant);
    EXPECT_TRUE(cert.ok()) << cert.status().ToString();
    return key;
  }

  std::string Compromise(const std::string& tenant, const std::string& key_id, const std::string& severity = "high") {
    NewIncident n;
    n.tenant_id = tenant;
    n.type = "key_compromise";
    n.severity = severity;
    n.title = "signing key leaked in a public repository";
    n.key_id = key_id;
    n.actor = "officer-1";
    auto opened = incidents_->Open(n);
    EXPECT_TRUE(opened.ok()) << opened.status().ToString();
    return opened.ok() ? opened->incident.incident_id : "";
  }

  // Drives playbooks and jobs like the background threads would, until quiet.
  void Drive() {
    for (int i = 0; i < 1000; ++i) {
      bool progressed = runner_->RunOnce();
      auto runnable = store_->ListResignJobs(std::nullopt, {"queued", "running"});
      EXPECT_TRUE(runnable.ok());
      for (const auto& j : *runnable) {
        auto more = jobs_->Step(j.job_id);
        progressed = progressed || (more.ok() && *more);
      }
      // A job that just finished wakes its playbook: give the runner one more look.
      if (!progressed && !runner_->RunOnce()) return;
    }
  }

  json Playbook(const std::string& id) { return json::parse(incidents_->Get(id)->playbook_json); }

  std::unique_ptr<ResignJobEngine> jobs_;
  std::unique_ptr<PlaybookRunner> runner_;
  std::unique_ptr<testing::TestStandInRotator> rotator_;
};

TEST_F(PlaybookTest, KeyCompromiseRunsToResolved) {
  KeyRecord old_key = CertifiedTenant("acme");
  const std::string old_serial = store_->GetActiveCertificate(old_key.key_id)->serial;
  auto originals = Seed(old_key, 500);
  runner_->SetRotator(rotator_.get());
  const std::string id = Compromise("acme", old_key.key_id);

  auto started = runner_->Respond(id, "officer-1", std::nullopt);
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  EXPECT_EQ(runner_->Respond(id, "officer-1", std::nullopt).status().code(), StatusCode::kFailedPrecondition);
  Drive();

  auto inc = incidents_->Get(id);
  EXPECT_EQ(inc->state, "resolved");
  json pb = Playbook(id);
  EXPECT_EQ(pb["status"], "done") << pb.dump();
  EXPECT_EQ(pb["resign"]["resigned"], 500);
  EXPECT_EQ(rotator_->calls(), 1);
  // The old key is compromised, its certificate revoked and on the CRL.
  EXPECT_EQ(store_->GetKey(old_key.key_id)->state, "compromised");
  auto cert = store_->GetLatestCertificate(old_key.key_id);
  EXPECT_EQ(cert->status, "revoked");
  EXPECT_EQ(pb["revoked_serial"], old_serial);
  auto crl = certs_->Crl();
  ASSERT_TRUE(crl.ok());
  EXPECT_EQ(crl->revoked_count, 1u);
  // Signing resumed with the new key.
  auto state = tenants_->Active("acme");
  ASSERT_TRUE(state.ok());
  EXPECT_TRUE((*state)->policy.policy.sign_enabled);
  EXPECT_EQ((*state)->active_key.key_id, pb["new_key_id"]);
  EXPECT_NE((*state)->active_key.key_id, old_key.key_id);
  // Every state on the way is on the timeline.
  std::vector<std::string> states;
  auto timeline = incidents_->Timeline(id);
  ASSERT_TRUE(timeline.ok());
  for (const auto& e : *timeline) {
    if (e.action == "state_changed") states.push_back(e.to_state);
  }
  EXPECT_EQ(states, (std::vector<std::string>{"contained", "rotating", "resigning", "resolved"}));
  // The report names both keys and the counts.
  auto report = BuildIncidentReport(*store_, id, clock_.Now());
  ASSERT_TRUE(report.ok());
  EXPECT_EQ((*report)["resign_totals"]["resigned"], 500);
  EXPECT_EQ((*report)["affected_keys"].size(), 2u);
  EXPECT_EQ((*report)["affected_keys"][0]["state"], "compromised");
  EXPECT_EQ((*report)["affected_keys"][0]["certificate"]["status"], "revoked");
}

TEST_F(PlaybookTest, WithoutARotatorItStopsAtRotateAndResumesLater) {
  KeyRecord old_key = CertifiedTenant("acme");
  Seed(old_key, 50);
  const std::string id = Compromise("acme", old_key.key_id);
  ASSERT_TRUE(runner_->Respond(id, "officer-1", std::nullopt).ok());
  Drive();
  json pb = Playbook(id);
  EXPECT_EQ(pb["status"], "failed");
  EXPECT_EQ(pb["step"], "rotate");
  EXPECT_NE(pb["error"].get<std::string>().find("no emergency rotator"), std::string::npos);
  EXPECT_EQ(incidents_->Get(id)->state, "rotating");
  EXPECT_FALSE((*tenants_->Active("acme"))->policy.policy.sign_enabled);  // still paused: safe
  auto timeline = incidents_->Timeline(id);
  EXPECT_EQ(timeline->back().action, "playbook_failed");

  runner_->SetRotator(rotator_.get());
  ASSERT_TRUE(runner_->Respond(id, "officer-2", std::nullopt).ok());
  Drive();
  EXPECT_EQ(Playbook(id)["status"], "done");
  EXPECT_EQ(incidents_->Get(id)->state, "resolved");
  EXPECT_TRUE((*tenants_->Active("acme"))->policy.policy.sign_enabled);
}

TEST_F(PlaybookTest, ARestartedRunnerContinuesWithoutRotatingTwice) {
  KeyRecord old_key = CertifiedTenant("acme");
  auto originals = Seed(old_key, 300);
  runner_->SetRotator(rotator_.get());
  const std::string id = Compromise("acme", old_key.key_id);
  ASSERT_TRUE(runner_->Respond(id, "officer-1", std::nullopt).ok());
  runner_->RunOnce();  // pause, rotate, compromise, start the job; then waits for it
  json pb = Playbook(id);
  EXPECT_EQ(pb["status"], "waiting");
  EXPECT_EQ(pb["step"], "resign");
  // "Crash": a new runner and job engine, as after a restart.
  runner_.reset();
  jobs_ = std::make_unique<ResignJobEngine>(*store_, *ledger_, *writer_, backends_, clock_, ResignJobOptions{});
  runner_ = std::make_unique<PlaybookRunner>(*incidents_, *tenants_, certs_.get(), *jobs_, clock_);
  runner_->SetRotator(rotator_.get());
  Drive();
  EXPECT_EQ(Playbook(id)["status"], "done");
  EXPECT_EQ(rotator_->calls(), 1);
  EXPECT_EQ(store_->ListResignJobs(std::string("acme"), {})->size(), 1u);
}

TEST_F(PlaybookTest, HighSeverityStartsAutomaticallyOnlyWhenThePolicyAllows) {
  KeyRecord manual_key = CertifiedTenant("manual");
  KeyRecord auto_key = CertifiedTenant("autoresp", {{"incident_auto_respond", true}});
  runner_->SetRotator(rotator_.get());
  const std::string manual = Compromise("manual", manual_key.key_id, "critical");
  const std::string low = Compromise("autoresp", auto_key.key_id, "low");
  EXPECT_TRUE(incidents_->Get(manual)->playbook_json.empty());
  EXPECT_TRUE(incidents_->Get(low)->playbook_json.empty());
  ASSERT_TRUE(incidents_->Transition(low, "resolved", "officer-1", "test").ok());
  const std::string critical = Compromise("autoresp", auto_key.key_id, "critical");
  EXPECT_EQ(Playbook(critical)["actor"], "system:auto-respond");
  Drive();
  EXPECT_EQ(incidents_->Get(critical)->state, "resolved");
  EXPECT_EQ(incidents_->Get(manual)->state, "open");
}

TEST_F(PlaybookTest, SigningPausedBeforeTheIncidentStaysPaused) {
  KeyRecord old_key = CertifiedTenant("acme", {{"sign_enabled", false}});
  runner_->SetRotator(rotator_.get());
  const std::string id = Compromise("acme", old_key.key_id);
  ASSERT_TRUE(runner_->Respond(id, "officer-1", std::nullopt).ok());
  Drive();
  EXPECT_EQ(Playbook(id)["status"], "done");
  EXPECT_FALSE((*tenants_->Active("acme"))->policy.policy.sign_enabled);
}

TEST_F(PlaybookTest, OnlyKeyCompromiseHasAPlaybook) {
  CreateTenant("acme");
  NewIncident n;
  n.tenant_id = "acme";
  n.type = "hsm_failure";
  n.severity = "high";
  n.title = "token gone";
  n.actor = "officer-1";
  auto opened = incidents_->Open(n);
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(runner_->Respond(opened->incident.incident_id, "officer-1", std::nullopt).status().code(),
            StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace concierge::core
