// Mass re-sign jobs against a real SQLite ledger and real software keys: every
// entry re-signed exactly once (checked with OpenSSL, a sample with the openssl
// CLI), COSE/raw reported for the client, crash and abrupt stop resume with no
// gaps and no duplicates, pause/resume/cancel, throttling.
#include "core/resign_job.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <map>
#include <set>
#include <thread>

#include "core/incident_test_env.h"
#include "crypto/keys.h"
#include "crypto/signature.h"
#include "testing/standin_rotator.h"

namespace concierge::core {
namespace {

using json = nlohmann::json;

// The real SQLite ledger, with one fault: the N-th AppendResignBatch fails as
// if the process had died at that commit (nothing of it is written).
class CrashingLedger : public LedgerStore {
 public:
  explicit CrashingLedger(LedgerStore& real) : real_(real) {}
  Status AppendBatch(std::vector<LedgerEntry>& e, const AuditBuilder& audit) override {
    return real_.AppendBatch(e, audit);
  }
  StatusOr<LedgerPage> ListLedger(const LedgerQuery& q) override { return real_.ListLedger(q); }
  StatusOr<std::vector<MinuteCount>> CountByMinuteSince(TimePoint t) override { return real_.CountByMinuteSince(t); }
  StatusOr<bool> HasRequest(const std::string& t, const std::string& r) override { return real_.HasRequest(t, r); }
  StatusOr<std::vector<ResignCandidate>> ListResignCandidates(const ResignScan& s) override {
    return real_.ListResignCandidates(s);
  }
  StatusOr<int64_t> CountResignCandidates(const ResignScan& s) override { return real_.CountResignCandidates(s); }
  Status AppendResignBatch(ResignBatch& b, const AuditBuilder& audit) override {
    if (++calls_ == crash_at_) return UnavailableError("simulated crash during commit");
    return real_.AppendResignBatch(b, audit);
  }
  StatusOr<std::vector<ResignResult>> ListResignResults(const std::string& j, int64_t a, int l) override {
    return real_.ListResignResults(j, a, l);
  }
  std::atomic<int> calls_{0};
  int crash_at_ = 0;

 private:
  LedgerStore& real_;
};

class ResignJobTest : public IncidentTestEnv {
 protected:
  LedgerStore& LedgerFor() override {
    crashing_ = std::make_unique<CrashingLedger>(*ledger_);
    return *crashing_;
  }

  void SetUp() override {
    IncidentTestEnv::SetUp();
    old_key_ = CreateTenant("acme");
    rotator_ = std::make_unique<testing::TestStandInRotator>(*store_, backends_, certs_.get(), clock_);
  }

  // Rotates acme and returns the new active key.
  KeyRecord Rotate() {
    auto id = rotator_->RotateNow("acme", "test");
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return *store_->GetKey(*id);
  }

  std::unique_ptr<ResignJobEngine> Engine(ResignJobOptions o = {}) {
    o.batch_size = o.batch_size == 500 ? 100 : o.batch_size;
    return std::make_unique<ResignJobEngine>(*store_, *ledger_, *writer_, backends_, clock_, o);
  }

  // Steps until the job stops asking for more; returns the final record.
  ResignJobRecord RunToEnd(ResignJobEngine& engine, const std::string& job_id) {
    for (int i = 0; i < 100000; ++i) {
      auto more = engine.Step(job_id);
      EXPECT_TRUE(more.ok()) << more.status().ToString();
      if (!more.ok() || !*more) break;
    }
    return *store_->GetResignJob(job_id);
  }

  std::vector<ResignResult> Results(const std::string& job_id) {
    std::vector<ResignResult> all;
    int64_t after = 0;
    for (;;) {
      auto page = ledger_->ListResignResults(job_id, after, 1000);
      EXPECT_TRUE(page.ok());
      if (!page.ok() || page->empty()) break;
      for (auto& r : *page) all.push_back(r);
      after = all.back().original_seq;
    }
    return all;
  }

  // original seq -> re-sign rows by `key_id`.
  std::map<int64_t, int> ResignRowsPerOriginal(const std::string& key_id) {
    std::map<int64_t, int> per;
    LedgerQuery q;
    q.tenant_id = "acme";
    q.key_id = key_id;
    q.limit = 1000;
    for (;;) {
      auto page = ledger_->ListLedger(q);
      EXPECT_TRUE(page.ok());
      for (const auto& e : page->entries) {
        EXPECT_EQ(e.kind, "resign");
        per[e.resign_of_seq] += 1;
      }
      if (page->next_cursor == 0) break;
      q.after_seq = page->next_cursor;
    }
    return per;
  }

  // No gaps (every original has a row), no duplicates (exactly one).
  void ExpectExactlyOnce(const std::vector<LedgerEntry>& originals, const std::string& new_key_id) {
    auto per = ResignRowsPerOriginal(new_key_id);
    EXPECT_EQ(per.size(), originals.size());
    size_t wrong = 0;
    for (const auto& o : originals) {
      auto it = per.find(o.seq);
      if (it == per.end() || it->second != 1) ++wrong;
    }
    EXPECT_EQ(wrong, 0u);
  }

  std::unique_ptr<CrashingLedger> crashing_;
  KeyRecord old_key_;
  std::unique_ptr<testing::TestStandInRotator> rotator_;
};

TEST_F(ResignJobTest, ReSignsEachEntryOnceWithVerifiableSignatures) {
  auto digests = Seed(old_key_, 1200, "digest", "d");
  auto batch = Seed(old_key_, 30, "batch", "b");
  auto cose = Seed(old_key_, 5, "cose", "c");
  auto raw = Seed(old_key_, 3, "raw", "r");
  KeyRecord other = CreateTenant("globex");
  Seed(other, 50, "digest", "g");  // another tenant's rows stay untouched
  KeyRecord new_key = Rotate();

  auto engine = Engine();
  auto job = engine->Create({"acme", old_key_.key_id, "", std::nullopt, "", "officer"});
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->new_key_id, new_key.key_id);  // defaults to the active key
  EXPECT_EQ(job->state, "queued");
  ResignJobRecord done = RunToEnd(*engine, job->job_id);
  EXPECT_EQ(done.state, "completed");
  EXPECT_EQ(done.total, 1238);
  EXPECT_EQ(done.processed, 1238);
  EXPECT_EQ(done.resigned, 1230);
  EXPECT_EQ(done.needs_client, 8);
  EXPECT_EQ(done.already_resigned, 0);
  EXPECT_TRUE(done.finished_at.has_value());

  std::vector<LedgerEntry> signable = digests;
  signable.insert(signable.end(), batch.begin(), batch.end());
  ExpectExactlyOnce(signable, new_key.key_id);

  auto results = Results(job->job_id);
  ASSERT_EQ(results.size(), 1238u);
  auto pub = crypto::PublicKeyFromPem(new_key.public_key_pem);
  ASSERT_TRUE(pub.ok());
  size_t verified = 0, needs_client = 0;
  std::set<int64_t> new_seqs;
  for (const auto& r : results) {
    if (r.status == "needs_client") {
      ++needs_client;
      EXPECT_TRUE(r.original_kind == "cose" || r.original_kind == "raw");
      EXPECT_NE(r.detail.find(r.original_kind == "cose" ? "COSE_Sign1" : "raw"), std::string::npos);
      EXPECT_TRUE(r.signature_b64.empty());
      continue;
    }
    ASSERT_EQ(r.status, "resigned");
    EXPECT_EQ(r.key_id, new_key.key_id);
    EXPECT_EQ(r.key_version, new_key.version);
    EXPECT_EQ(r.signature_format, "der");
    EXPECT_EQ(r.digest_hex, crypto::Sha256Hex(crypto::AsBytes(r.asset_id)));
    new_seqs.insert(r.new_seq);
    auto sig = crypto::Base64Decode(r.signature_b64);
    auto digest = crypto::HexDecode(r.digest_hex);
    if (sig.ok() && digest.ok() && crypto::VerifyDigest(pub->get(), Algorithm::kES256, *digest, *sig).ok()) ++verified;
  }
  EXPECT_EQ(verified, 1230u);
  EXPECT_EQ(needs_client, 8u);
  EXPECT_EQ(new_seqs.size(), 1230u);

  // Independent check of a sample with the openssl command line.
  testing::TempDir dir;
  testing::WriteFile(dir.File("new.pem"), new_key.public_key_pem);
  for (size_t i : {size_t{0}, size_t{617}, size_t{1229}}) {
    const ResignResult& r = results[i];
    ASSERT_EQ(r.status, "resigned");
    testing::WriteFile(dir.File("digest.bin"), crypto::AsString(*crypto::HexDecode(r.digest_hex)));
    testing::WriteFile(dir.File("sig.der"), crypto::AsString(*crypto::Base64Decode(r.signature_b64)));
    auto v = testing::RunCommand("openssl pkeyutl -verify -pubin -inkey " + dir.File("new.pem") + " -in " +
                                 dir.File("digest.bin") + " -sigfile " + dir.File("sig.der"));
    EXPECT_EQ(v.exit_code, 0) << v.output;
    EXPECT_NE(v.output.find("Signature Verified Successfully"), std::string::npos) << v.output;
    // ... and not with the compromised key.
    testing::WriteFile(dir.File("old.pem"), old_key_.public_key_pem);
    auto w = testing::RunCommand("openssl pkeyutl -verify -pubin -inkey " + dir.File("old.pem") + " -in " +
                                 dir.File("digest.bin") + " -sigfile " + dir.File("sig.der"));
    EXPECT_NE(w.exit_code, 0) << w.output;
  }

  // A second job for the same keys finds everything already re-signed.
  auto again = engine->Create({"acme", old_key_.key_id, new_key.key_id, std::nullopt, "", "officer"});
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  ResignJobRecord second = RunToEnd(*engine, again->job_id);
  EXPECT_EQ(second.state, "completed");
  EXPECT_EQ(second.already_resigned, 1230);
  EXPECT_EQ(second.resigned, 0);
  ExpectExactlyOnce(signable, new_key.key_id);
}

TEST_F(ResignJobTest, CreateRefusesWhatCannotWork) {
  Seed(old_key_, 10);
  auto engine = Engine();
  auto active = engine->Create({"acme", old_key_.key_id, "", std::nullopt, "", "officer"});
  EXPECT_EQ(active.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(active.status().message().find("rotate"), std::string::npos);
  KeyRecord new_key = Rotate();
  EXPECT_EQ(engine->Create({"acme", "ghost", "", std::nullopt, "", "o"}).status().details().at("field"),
            "compromised_key_id");
  EXPECT_EQ(engine->Create({"acme", old_key_.key_id, old_key_.key_id, std::nullopt, "", "o"}).status().code(),
            StatusCode::kFailedPrecondition);
  KeyRecord other = CreateTenant("globex");
  EXPECT_EQ(engine->Create({"acme", old_key_.key_id, other.key_id, std::nullopt, "", "o"}).status().details().at("field"),
            "new_key_id");
  EXPECT_EQ(engine->Create({"nobody", old_key_.key_id, "", std::nullopt, "", "o"}).status().code(),
            StatusCode::kNotFound);
  ASSERT_TRUE(engine->Create({"acme", old_key_.key_id, "", std::nullopt, "", "o"}).ok());
  EXPECT_EQ(engine->Create({"acme", old_key_.key_id, "", std::nullopt, "", "o"}).status().code(),
            StatusCode::kAlreadyExists);
  (void)new_key;
}

TEST_F(ResignJobTest, SinceLimitsTheJobToLaterEntries) {
  auto early = Seed(old_key_, 40, "digest", "early");
  clock_.Advance(std::chrono::hours(2));
  const TimePoint since = clock_.Now();
  auto late = Seed(old_key_, 60, "digest", "late");
  KeyRecord new_key = Rotate();
  auto engine = Engine();
  auto job = engine->Create({"acme", old_key_.key_id, "", since, "", "officer"});
  ASSERT_TRUE(job.ok());
  ResignJobRecord done = RunToEnd(*engine, job->job_id);
  EXPECT_EQ(done.total, 60);
  EXPECT_EQ(done.resigned, 60);
  ExpectExactlyOnce(late, new_key.key_id);
}

class ResignPipelineTest : public ResignJobTest, public ::testing::WithParamInterface<int> {};

TEST_P(ResignPipelineTest, CrashAtCommitResumesWithNoGapsAndNoDuplicates) {
  auto originals = Seed(old_key_, 1000);
  KeyRecord new_key = Rotate();
  crashing_->crash_at_ = 4;  // the fourth batch "dies" at its commit
  ResignJobOptions o;
  o.pipeline_batches = GetParam();  // with depth 3 the crash lands mid-pipeline
  auto engine = Engine(o);
  auto job = engine->Create({"acme", old_key_.key_id, "", std::nullopt, "", "officer"});
  ASSERT_TRUE(job.ok());
  StatusOr<bool> step = true;
  for (int i = 0; i < 10 && step.ok(); ++i) step = engine->Step(job->job_id);
  EXPECT_FALSE(step.ok());  // the batch's signatures were made, then lost with the "process"
  EXPECT_EQ(store_->GetResignJob(job->job_id)->processed, 300);
  engine.reset();

  // "After the restart": a fresh engine picks the job up from its cursor.
  auto restarted = Engine(o);
  ResignJobRecord done = RunToEnd(*restarted, job->job_id);
  EXPECT_EQ(done.state, "completed");
  EXPECT_EQ(done.processed, 1000);
  EXPECT_EQ(done.resigned, 1000);
  ExpectExactlyOnce(originals, new_key.key_id);
  auto results = Results(job->job_id);
  ASSERT_EQ(results.size(), 1000u);
  for (size_t i = 0; i < results.size(); ++i) EXPECT_EQ(results[i].original_seq, originals[i].seq);
}

INSTANTIATE_TEST_SUITE_P(Depth, ResignPipelineTest, ::testing::Values(1, 3));

TEST_F(ResignJobTest, AbruptStopOfTheRunningEngineLosesNothing) {
  auto originals = Seed(old_key_, 3000);
  KeyRecord new_key = Rotate();
  ResignJobOptions o;
  o.batch_size = 50;
  o.pipeline_batches = 4;
  auto engine = Engine(o);
  auto job = engine->Create({"acme", old_key_.key_id, "", std::nullopt, "", "officer"});
  ASSERT_TRUE(job.ok());
  engine->Start();
  // Wait (bounded) until the worker is part-way, then pull the plug.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (store_->GetResignJob(job->job_id)->processed < 500 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  engine->Stop();
  const int64_t at_stop = store_->GetResignJob(job->job_id)->processed;
  EXPECT_GE(at_stop, 500);
  EXPECT_LT(at_stop, 3000) << "the job finished before it could be interrupted";
  engine.reset();
  auto restarted = Engine(o);
  ResignJobRecord done = RunToEnd(*restarted, job->job_id);
  EXPECT_EQ(done.processed, 3000);
  ExpectExactlyOnce(originals, new_key.key_id);
}

TEST_F(ResignJobTest, PauseResumeCancelAndNotifications) {
  Seed(old_key_, 250);
  Rotate();
  ASSERT_TRUE(store_->InsertWebhook(WebhookRecord{"wh", "acme", "https://h.example/x", "c2Vj", "", "o", clock_.Now(),
                                                  std::nullopt})
                  .ok());
  auto engine = Engine();
  auto job = engine->Create({"acme", old_key_.key_id, "", std::nullopt, "", "officer"});
  ASSERT_TRUE(*engine->Step(job->job_id));
  ASSERT_TRUE(engine->Pause(job->job_id).ok());
  EXPECT_FALSE(*engine->Step(job->job_id));  // paused: nothing happens
  EXPECT_EQ(store_->GetResignJob(job->job_id)->processed, 100);
  EXPECT_EQ(engine->Pause(job->job_id)->state, "paused");  // idempotent
  ASSERT_TRUE(engine->Resume(job->job_id).ok());
  EXPECT_EQ(store_->GetResignJob(job->job_id)->state, "queued");
  ASSERT_TRUE(*engine->Step(job->job_id));
  auto resumed = store_->GetResignJob(job->job_id);
  EXPECT_EQ(resumed->state, "running");
  EXPECT_EQ(resumed->total, 250);  // recounted: done + left
  EXPECT_EQ(resumed->processed, 200);
  auto cancelled = engine->Cancel(job->job_id);
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->state, "cancelled");
  EXPECT_FALSE(*engine->Step(job->job_id));
  EXPECT_EQ(engine->Resume(job->job_id).status().code(), StatusCode::kFailedPrecondition);
  auto due = store_->ClaimWebhookDeliveries(clock_.Now(), clock_.Now() + std::chrono::seconds(1), 10);
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].event.type, "job.cancelled");
  EXPECT_EQ(json::parse((*due)[0].event.payload_json)["job"]["done"], 200);
}

TEST_F(ResignJobTest, ProgressReportsRateAndEta) {
  Seed(old_key_, 300);
  Rotate();
  auto engine = Engine();
  auto job = engine->Create({"acme", old_key_.key_id, "", std::nullopt, "", "officer"});
  ASSERT_TRUE(*engine->Step(job->job_id));
  clock_.Advance(std::chrono::seconds(2));
  ASSERT_TRUE(*engine->Step(job->job_id));
  auto p = engine->Progress(job->job_id);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->job.processed, 200);
  ASSERT_TRUE(p->rate_per_second.has_value());
  EXPECT_DOUBLE_EQ(*p->rate_per_second, 50.0);  // 100 more in 2 fake seconds
  ASSERT_TRUE(p->eta.has_value());
  EXPECT_EQ(p->eta->count(), 2);  // 100 left at 50/s
}

TEST(TokenBucketTest, RefillsFromTheInjectedClock) {
  FakeClock clock(Epoch());
  TokenBucket bucket(100, 100);
  EXPECT_EQ(bucket.Take(100, clock.Now()).count(), 0);
  auto wait = bucket.Take(10, clock.Now());
  EXPECT_GE(wait, std::chrono::milliseconds(99));
  EXPECT_LE(wait, std::chrono::milliseconds(101));
  clock.Advance(std::chrono::milliseconds(50));
  EXPECT_GT(bucket.Take(10, clock.Now()).count(), 0);
  clock.Advance(std::chrono::milliseconds(50));
  EXPECT_EQ(bucket.Take(10, clock.Now()).count(), 0);
  clock.Advance(std::chrono::hours(1));
  EXPECT_EQ(bucket.Take(100, clock.Now()).count(), 0);  // capped at the burst
  EXPECT_GT(bucket.Take(1, clock.Now()).count(), 0);
}

TEST_F(ResignJobTest, YieldsWhileInteractiveSigningIsBusyButStillProgresses) {
  auto originals = Seed(old_key_, 200);
  KeyRecord new_key = Rotate();
  std::atomic<int> asked{0};
  ResignJobOptions o;
  o.chunk = 10;
  o.yield_for = std::chrono::microseconds(100);
  o.max_yield_per_chunk = std::chrono::milliseconds(1);
  o.interactive_busy = [&] {
    ++asked;
    return true;  // always busy: the job yields its cap per chunk, then goes on
  };
  auto engine = Engine(o);
  auto job = engine->Create({"acme", old_key_.key_id, "", std::nullopt, "", "officer"});
  ResignJobRecord done = RunToEnd(*engine, job->job_id);
  EXPECT_EQ(done.resigned, 200);
  EXPECT_GE(asked.load(), 20);  // consulted before every chunk of 10
  ExpectExactlyOnce(originals, new_key.key_id);
}

TEST_F(ResignJobTest, InteractiveSigningShrinksBatchesUntilItStops) {
  auto originals = Seed(old_key_, 300);
  KeyRecord new_key = Rotate();
  ResignJobOptions o;
  o.batch_size = 100;
  o.pipeline_batches = 3;
  o.busy_batch_size = 10;
  o.busy_pause_ratio = 0;
  o.busy_window = std::chrono::milliseconds(0);  // busy only when rows committed since the last step
  auto engine = Engine(o);
  auto job = engine->Create({"acme", old_key_.key_id, "", std::nullopt, "", "officer"});
  ASSERT_TRUE(job.ok());
  KeyRecord other = CreateTenant("other");  // interactive traffic of another tenant
  auto sign_interactively = [&] {
    LedgerEntry e = originals.front();
    e.tenant_id = other.tenant_id;
    e.key_id = other.key_id;
    e.request_id = "interactive";
    std::promise<Status> committed;
    writer_->Submit({e}, [&](const Status& st, std::vector<LedgerEntry>&) { committed.set_value(st); });
    ASSERT_TRUE(committed.get_future().get().ok());
  };
  sign_interactively();
  ASSERT_TRUE(*engine->Step(job->job_id));
  EXPECT_EQ(store_->GetResignJob(job->job_id)->processed, 10);  // one small batch, no pipeline
  ASSERT_TRUE(*engine->Step(job->job_id));
  EXPECT_EQ(store_->GetResignJob(job->job_id)->processed, 10 + 300 - 10);  // quiet again: full batches, depth 3
  sign_interactively();
  EXPECT_FALSE(*engine->Step(job->job_id));  // nothing left: completes
  ResignJobRecord done = *store_->GetResignJob(job->job_id);
  EXPECT_EQ(done.state, "completed");
  EXPECT_EQ(done.resigned, 300);
  ExpectExactlyOnce(originals, new_key.key_id);
}

}  // namespace
}  // namespace concierge::core
