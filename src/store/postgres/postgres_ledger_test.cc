// PostgresLedger on a real PostgreSQL server that this binary starts once
// (PgEnvironment): the ledger conformance suite, plus the append lock, several
// instances appending at once, outages and a throughput figure.
#include "store/postgres/postgres_ledger.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "store/ledger_test_suite.h"
#include "store/postgres/postgres_store.h"
#include "testing/pg_cluster.h"

namespace concierge::store {
namespace {

using conformance::HasCode;
using conformance::IsOk;
using conformance::LedgerConformanceTest;
using conformance::LedgerHarness;
using conformance::ResignConformanceTest;
using conformance::ListAll;
using conformance::MakeBatch;
using conformance::T;
using testing::PgEnvironment;

::testing::Environment* const kPg = ::testing::AddGlobalTestEnvironment(new PgEnvironment);

testing::PgCluster& Cluster() { return PgEnvironment::Cluster(); }

// A fresh schema migrated to `version` (0 = latest); returns its URL.
std::string MigratedUrl(int version = 0) {
  const std::string url = Cluster().FreshSchemaUrl();
  StatusOr<std::unique_ptr<PostgresStore>> s = PostgresStore::Open(url);
  EXPECT_TRUE(IsOk(s.status()));
  if (s.ok()) {
    EXPECT_TRUE(IsOk((*s)->Migrate(version)));
  }
  return url;
}

std::unique_ptr<PostgresLedger> MustOpenLedger(const std::string& url,
                                               PostgresLedgerOptions opts = {}) {
  StatusOr<std::unique_ptr<PostgresLedger>> l = PostgresLedger::Open(url, opts);
  EXPECT_TRUE(IsOk(l.status()));
  return l.ok() ? std::move(l).value() : nullptr;
}

// A connection of its own, as another instance (or a saboteur) would have.
class RawConn {
 public:
  explicit RawConn(const std::string& url) : conn_(PQconnectdb(url.c_str())) {
    EXPECT_EQ(PQstatus(conn_.get()), CONNECTION_OK) << PQerrorMessage(conn_.get());
  }
  Status Exec(const std::string& sql) { return PgExecScript(conn_.get(), sql, "test exec"); }
  int64_t Count(const std::string& sql) {
    StatusOr<PgResult> r = PgExec(conn_.get(), sql, "test count");
    EXPECT_TRUE(IsOk(r.status()));
    return r.ok() && r->rows() > 0 ? r->row(0).ColumnInt(0) : -1;
  }

 private:
  PgConnPtr conn_;
};

class PostgresLedgerHarness : public LedgerHarness {
 public:
  PostgresLedgerHarness() : url_(MigratedUrl()), ledger_(MustOpenLedger(url_)) {}
  bool ok() const { return ledger_ != nullptr; }
  LedgerStore& ledger() override { return *ledger_; }
  void Reopen() override {
    ledger_.reset();
    ledger_ = MustOpenLedger(url_);
  }
  Status Exec(const std::string& sql) override { return RawConn(url_).Exec(sql); }
  int64_t Count(const std::string& sql) override { return RawConn(url_).Count(sql); }
  std::string PoisonTriggerSql() const override {
    return "CREATE FUNCTION reject_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
           "IF NEW.request_id = 'poison' THEN RAISE EXCEPTION 'poisoned row'; END IF; RETURN NEW; "
           "END $$; "
           "CREATE TRIGGER reject_poison BEFORE INSERT ON ledger FOR EACH ROW EXECUTE FUNCTION "
           "reject_poison()";
  }
  std::string DropPoisonTriggerSql() const override {
    return "DROP TRIGGER reject_poison ON ledger; DROP FUNCTION reject_poison()";
  }
  void ReopenWithLockTimeout(std::chrono::milliseconds timeout) override {
    ledger_.reset();
    ledger_ = MustOpenLedger(url_, PostgresLedgerOptions{.lock_timeout = timeout});
  }
  Status BeginConcurrentAppend(const std::string& sql) override {
    other_ = std::make_unique<RawConn>(url_);
    return other_->Exec("BEGIN; SELECT pg_advisory_xact_lock(" +
                        std::to_string(kLedgerAppendLockKey) + "); " + sql);
  }
  Status RollbackConcurrentAppend() override { return other_->Exec("ROLLBACK"); }
  const std::string& url() const { return url_; }
  Store& store() override {
    if (store_ == nullptr) {
      StatusOr<std::unique_ptr<PostgresStore>> s = PostgresStore::Open(url_);
      EXPECT_TRUE(IsOk(s.status()));
      if (s.ok()) store_ = std::move(s).value();
    }
    return *store_;
  }

 private:
  std::string url_;
  std::unique_ptr<PostgresStore> store_;
  std::unique_ptr<PostgresLedger> ledger_;
  std::unique_ptr<RawConn> other_;
};

INSTANTIATE_TEST_SUITE_P(
    Postgres, LedgerConformanceTest,
    ::testing::Values(conformance::HarnessParam<PostgresLedgerHarness>("Schema")),
    conformance::LedgerTestParamName);
INSTANTIATE_TEST_SUITE_P(
    Postgres, ResignConformanceTest,
    ::testing::Values(conformance::HarnessParam<PostgresLedgerHarness>("Schema")),
    conformance::LedgerTestParamName);

// The re-sign cases plus what only PostgreSQL has to arrange: the ledger
// writer and the store write on different locks, so the job row's lock is
// what orders a batch against a pause or cancel.
class PostgresResignTest : public ResignConformanceTest {
 protected:
  const std::string& url() const { return static_cast<const PostgresLedgerHarness&>(*h_).url(); }
};

INSTANTIATE_TEST_SUITE_P(
    Postgres, PostgresResignTest,
    ::testing::Values(conformance::HarnessParam<PostgresLedgerHarness>("Schema")),
    conformance::LedgerTestParamName);

// A pause that is in flight when a batch starts: the batch waits for it on the
// job row instead of reading "running" and committing behind the pause, then
// finds the job paused and writes nothing.
TEST_P(PostgresResignTest, BatchWaitsForAJobChangeInFlightAndHonoursIt) {
  RawConn pauser(url());
  ASSERT_TRUE(IsOk(pauser.Exec("BEGIN; UPDATE resign_jobs SET state = 'paused' WHERE job_id = 'job-1'")));
  ResignBatch b = Batch(0, 0, 5);
  Status batch_status;
  std::thread batch([&] { batch_status = ledger().AppendResignBatch(b); });
  // Wait (bounded) until the writer is blocked on a lock, i.e. on the job row.
  RawConn watcher(url());
  bool waiting = false;
  for (int i = 0; i < 500 && !waiting; ++i) {
    waiting = watcher.Count("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'keyctl-ledger' "
                            "AND wait_event_type = 'Lock'") > 0;
    if (!waiting) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(waiting);
  ASSERT_TRUE(IsOk(pauser.Exec("COMMIT")));
  batch.join();
  EXPECT_TRUE(HasCode(batch_status, StatusCode::kAborted)) << batch_status.ToString();
  for (const auto& row : b.rows) EXPECT_EQ(row.seq, 0);
  EXPECT_EQ(h_->Count("SELECT COUNT(*) FROM ledger WHERE kind = 'resign'"), 0);
  EXPECT_EQ(h_->Count("SELECT COUNT(*) FROM resign_results"), 0);
  EXPECT_EQ(h_->Count("SELECT cursor_seq FROM resign_jobs"), 0);
}

// While another instance holds the append lock, a re-sign batch waits for it
// like AppendBatch does (kUnavailable after lock_timeout, nothing written).
TEST_P(PostgresResignTest, BatchTakesTheAppendLock) {
  h_->ReopenWithLockTimeout(std::chrono::milliseconds(200));
  ASSERT_TRUE(IsOk(h_->BeginConcurrentAppend("SELECT 1")));
  ResignBatch b = Batch(0, 0, 5);
  EXPECT_TRUE(HasCode(ledger().AppendResignBatch(b), StatusCode::kUnavailable));
  ASSERT_TRUE(IsOk(h_->RollbackConcurrentAppend()));
  EXPECT_EQ(h_->Count("SELECT COUNT(*) FROM ledger WHERE kind = 'resign'"), 0);
  ResignBatch again = Batch(0, 0, 5);
  EXPECT_TRUE(IsOk(ledger().AppendResignBatch(again)));
  EXPECT_EQ(h_->Count("SELECT COUNT(*) FROM ledger WHERE kind = 'resign'"), 5);
}

// Two instances append while a third follows the ledger by cursor, as a
// consumer would ("everything after the last seq I saw"). Because appends are
// serialised, seq order is commit order and the follower misses nothing.
TEST(PostgresLedgerTest, SeveralInstancesAppendAndAFollowerMissesNothing) {
  const std::string url = MigratedUrl();
  constexpr int kInstances = 3;
  constexpr int kBatches = 60;
  constexpr int kRows = 25;
  std::vector<std::unique_ptr<PostgresLedger>> writers;
  for (int i = 0; i < kInstances; ++i) writers.push_back(MustOpenLedger(url));
  auto follower = MustOpenLedger(url);
  std::atomic<int> writers_left{kInstances};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kInstances; ++i) {
    threads.emplace_back([&, i] {
      for (int b = 0; b < kBatches; ++b) {
        auto batch = MakeBatch("acme", "k" + std::to_string(i), kRows, b,
                               "w" + std::to_string(i) + "-" + std::to_string(b) + "-");
        if (!writers[i]->AppendBatch(batch).ok()) ++errors;
      }
      --writers_left;
    });
  }
  std::set<std::string> seen;
  int64_t cursor = 0;
  bool last_pass = false;
  while (!last_pass) {
    last_pass = writers_left.load() == 0;  // one more full pass after the writers finish
    for (;;) {
      StatusOr<LedgerPage> page = follower->ListLedger(
          LedgerQuery{.tenant_id = "acme", .after_seq = cursor, .limit = 1000});
      if (!page.ok()) {
        ADD_FAILURE() << page.status().ToString();
        break;
      }
      for (const LedgerEntry& e : page->entries) {
        EXPECT_GT(e.seq, cursor);
        cursor = e.seq;
        seen.insert(e.request_id);
      }
      if (page->next_cursor == 0) break;
    }
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(seen.size(), static_cast<size_t>(kInstances * kBatches * kRows));
}

TEST(PostgresLedgerTest, OutageIsUnavailableAndAppendsResumeWithoutReopening) {
  testing::PgRestartGuard guard(Cluster());
  const std::string url = MigratedUrl();
  auto ledger = MustOpenLedger(url);
  ASSERT_NE(ledger, nullptr);
  std::vector<LedgerEntry> first = MakeBatch("acme", "k", 3, 0, "first-");
  ASSERT_TRUE(IsOk(ledger->AppendBatch(first)));

  ASSERT_TRUE(Cluster().Stop(/*immediate=*/true));  // like a crash
  std::vector<LedgerEntry> during = MakeBatch("acme", "k", 3, 10, "during-");
  Status st = ledger->AppendBatch(during);
  EXPECT_TRUE(HasCode(st, StatusCode::kUnavailable)) << st.ToString();
  EXPECT_NE(st.message().find("database unavailable"), std::string::npos) << st.message();
  for (const LedgerEntry& e : during) EXPECT_EQ(e.seq, 0);
  EXPECT_TRUE(HasCode(ledger->ListLedger(LedgerQuery{.tenant_id = "acme"}).status(),
                      StatusCode::kUnavailable));
  ASSERT_TRUE(Cluster().Restart()) << Cluster().error();

  ASSERT_TRUE(IsOk(ledger->AppendBatch(during)));
  EXPECT_GT(during[0].seq, first.back().seq);
  std::vector<LedgerEntry> all = ListAll(*ledger, LedgerQuery{.tenant_id = "acme"});
  ASSERT_EQ(all.size(), 6u);
  EXPECT_EQ(all[3].request_id, "during-0");
  EXPECT_GE(ledger->writer_stats().connects, 2u);
}

// The audit records a builder returns commit with the ledger rows; a failing
// builder rolls the whole batch back. Hashes and signatures are BYTEA and must
// come back byte for byte.
TEST(PostgresLedgerTest, AuditBuilderCommitsWithTheBatchAndRollsBackWithIt) {
  auto ledger = MustOpenLedger(MigratedUrl());
  int64_t next = 0;
  AuditBuilder builder = [&next](const std::vector<LedgerEntry>& rows, AuditAppend& out) {
    for (const LedgerEntry& e : rows) {
      EXPECT_GT(e.seq, 0) << "the builder sees the ledger rows' seq";
      AuditRecord r;
      r.index = next++;
      r.time = e.signed_at;
      r.actor = e.api_key_id;
      r.tenant_id = e.tenant_id;
      r.action = "sign." + e.kind;
      r.target = e.key_id;
      r.outcome = "success";
      r.detail_json = "{}";
      r.leaf_hash.fill(static_cast<uint8_t>(0x80 + r.index));  // not valid UTF-8
      out.entries.push_back(r);
      if (r.index % 16 == 15) out.nodes.push_back(AuditNode{4, r.index / 16, r.leaf_hash});
    }
    return Status::Ok();
  };
  std::vector<LedgerEntry> batch = MakeBatch("acme", "acme-k", 20, 0, "a");
  ASSERT_TRUE(IsOk(ledger->AppendBatch(batch, builder)));
  EXPECT_EQ(*ledger->AuditSize(), 20);
  StatusOr<std::vector<AuditHash>> leaves = ledger->AuditNodes(0, 0, 20);
  ASSERT_TRUE(IsOk(leaves.status()));
  EXPECT_EQ((*leaves)[19][0], 0x80 + 19);
  StatusOr<std::vector<AuditHash>> nodes = ledger->AuditNodes(4, 0, 1);
  ASSERT_TRUE(IsOk(nodes.status()));
  EXPECT_EQ((*nodes)[0][0], 0x80 + 15);
  EXPECT_TRUE(HasCode(ledger->AuditNodes(4, 0, 2).status(), StatusCode::kDataLoss));
  AuditQuery q;
  q.tenant_id = "acme";
  q.limit = 5;
  q.after_index = 2;
  StatusOr<AuditPage> page = ledger->ListAudit(q);
  ASSERT_TRUE(IsOk(page.status()));
  ASSERT_EQ(page->entries.size(), 5u);
  EXPECT_EQ(page->entries[0].index, 3);
  EXPECT_EQ(page->next_cursor, 7);

  // A failing builder: nothing of the batch is stored, every seq is 0.
  std::vector<LedgerEntry> bad = MakeBatch("acme", "acme-k", 3, 100, "b");
  Status failed = ledger->AppendBatch(bad, [](const std::vector<LedgerEntry>&, AuditAppend&) {
    return UnavailableError("audit signer down");
  });
  EXPECT_TRUE(HasCode(failed, StatusCode::kUnavailable));
  for (const LedgerEntry& e : bad) EXPECT_EQ(e.seq, 0);
  EXPECT_FALSE(*ledger->HasRequest("acme", "b0"));
  EXPECT_EQ(*ledger->AuditSize(), 20);

  AuditCheckpointRecord c;
  c.tree_size = 20;
  c.root_hash.fill(0xff);
  c.timestamp = T(5);
  c.key_id = "audit-1";
  c.note = "note";
  c.signature = Bytes{0x30, 0x00, 0xff, 0x80};
  ASSERT_TRUE(IsOk(ledger->InsertAuditCheckpoint(c)));
  EXPECT_GT(c.id, 0);
  StatusOr<std::optional<AuditCheckpointRecord>> latest = ledger->LatestAuditCheckpoint();
  ASSERT_TRUE(IsOk(latest.status()));
  ASSERT_TRUE(latest->has_value());
  EXPECT_EQ((*latest)->signature, c.signature);
  EXPECT_EQ((*latest)->root_hash, c.root_hash);
  EXPECT_EQ((*latest)->id, c.id);
  ASSERT_TRUE(IsOk(ledger->InsertAuditKey(AuditKeyRecord{"audit-1", "software", "ES256", "software", "uri", "pem", T(1)})));
  EXPECT_EQ(ledger->ListAuditKeys()->size(), 1u);
}

TEST(PostgresLedgerOpenTest, RefusesUnmigratedNewerAndUnreachable) {
  for (int version : {-1, 2}) {
    SCOPED_TRACE(version);
    const std::string url = version < 0 ? Cluster().FreshSchemaUrl() : MigratedUrl(version);
    StatusOr<std::unique_ptr<PostgresLedger>> l = PostgresLedger::Open(url);
    ASSERT_TRUE(HasCode(l.status(), StatusCode::kFailedPrecondition));
    EXPECT_NE(l.status().message().find("run migrations first"), std::string::npos)
        << l.status().message();
  }
  const std::string url = MigratedUrl();
  ASSERT_TRUE(
      IsOk(RawConn(url).Exec("INSERT INTO schema_migrations VALUES (99, 'from_the_future', 0)")));
  EXPECT_TRUE(HasCode(PostgresLedger::Open(url).status(), StatusCode::kFailedPrecondition));
  EXPECT_TRUE(HasCode(PostgresLedger::Open("postgresql://postgres@127.0.0.1:1/postgres").status(),
                      StatusCode::kUnavailable));
}

// Not a timed assertion (machines are shared and noisy, and the test cluster
// runs with fsync off): prints the figure for 1024-row appends.
TEST(PostgresLedgerTest, ThroughputSanity) {
  auto ledger = MustOpenLedger(MigratedUrl());
  ASSERT_NE(ledger, nullptr);
  constexpr int kBatches = 100;
  constexpr int kRows = 1024;
  std::vector<std::vector<LedgerEntry>> batches;
  for (int b = 0; b < kBatches; ++b)
    batches.push_back(MakeBatch(b % 2 ? "acme" : "globex", "k", kRows, b * kRows, "r-"));
  const auto start = std::chrono::steady_clock::now();
  for (auto& batch : batches) ASSERT_TRUE(IsOk(ledger->AppendBatch(batch)));
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "[ ledger   ] %d batches x %d rows in %.3f s: %.0f rows/s (%.2f ms/commit, fsync off)\n",
      kBatches, kRows, secs, kBatches * kRows / secs, secs * 1000 / kBatches);
  EXPECT_EQ(ListAll(*ledger, LedgerQuery{.tenant_id = "acme"}).size(),
            static_cast<size_t>(kBatches / 2 * kRows));
  EXPECT_EQ(batches.back().back().seq, int64_t{kBatches} * kRows);
}

}  // namespace
}  // namespace concierge::store
