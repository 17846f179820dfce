#include "core/ledger_writer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <optional>
#include <thread>
#include <set>

namespace concierge::core {
namespace {

// In-memory LedgerStore with failure injection, to test the writer's batching
// and error paths in isolation (the SQLite ledger is tested on its own and by
// the integration tests).
class MemoryLedger : public LedgerStore {
 public:
  Status AppendBatch(std::vector<LedgerEntry>& entries) override {
    if (gate_) gate_->get();  // holds the writer thread inside a commit
    std::lock_guard lock(mu_);
    for (auto& e : entries) order_.push_back(e.request_id);
    ++batches_;
    max_batch_ = std::max(max_batch_, entries.size());
    if (fail_) return UnavailableError("disk on fire");
    for (auto& e : entries) {
      e.seq = ++seq_;
      rows_.push_back(e);
    }
    return Status::Ok();
  }
  StatusOr<LedgerPage> ListLedger(const LedgerQuery&) override { return LedgerPage{}; }
  StatusOr<std::vector<MinuteCount>> CountByMinuteSince(TimePoint) override { return std::vector<MinuteCount>{}; }
  StatusOr<bool> HasRequest(const std::string&, const std::string& request_id) override {
    std::lock_guard lock(mu_);
    for (const auto& r : rows_) {
      if (r.request_id == request_id) return true;
    }
    return false;
  }
  StatusOr<std::vector<ResignCandidate>> ListResignCandidates(const ResignScan&) override {
    return std::vector<ResignCandidate>{};
  }
  StatusOr<int64_t> CountResignCandidates(const ResignScan&) override { return int64_t{0}; }
  Status AppendResignBatch(ResignBatch& batch) override {
    std::lock_guard lock(mu_);
    order_.push_back("resign:" + batch.job_id);
    for (auto& e : batch.rows) e.seq = ++seq_;
    return Status::Ok();
  }
  StatusOr<std::vector<ResignResult>> ListResignResults(const std::string&, int64_t, int) override {
    return std::vector<ResignResult>{};
  }
  std::mutex mu_;
  std::optional<std::shared_future<void>> gate_;
  std::vector<std::string> order_;  // request ids and "resign:<job>" in commit order
  std::vector<LedgerEntry> rows_;
  int64_t seq_ = 0;
  size_t batches_ = 0;
  size_t max_batch_ = 0;
  bool fail_ = false;
};

LedgerEntry Row(const std::string& request_id) {
  LedgerEntry e;
  e.tenant_id = "t-1";
  e.request_id = request_id;
  return e;
}

TEST(LedgerWriterTest, CallbackRunsAfterRowIsStoredWithSeq) {
  MemoryLedger store;
  LedgerWriter writer(store);
  std::promise<int64_t> seq;
  writer.Submit({Row("r1")}, [&](const Status& st, std::vector<LedgerEntry>& rows) {
    // The row must already be durable when we are told.
    EXPECT_TRUE(st.ok());
    EXPECT_TRUE(*store.HasRequest("t-1", "r1"));
    seq.set_value(rows[0].seq);
  });
  EXPECT_EQ(seq.get_future().get(), 1);
}

TEST(LedgerWriterTest, ConcurrentSubmissionsAreGroupedAndAllLand) {
  MemoryLedger store;
  std::atomic<int> ok{0};
  {
    LedgerWriter writer(store, {.max_batch_rows = 256});
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 500; ++i) {
          writer.Submit({Row("r" + std::to_string(t * 1000 + i))},
                        [&](const Status& st, std::vector<LedgerEntry>&) { ok += st.ok(); });
        }
      });
    }
    for (auto& th : threads) th.join();
  }  // destructor drains the queue
  EXPECT_EQ(ok.load(), 4000);
  EXPECT_EQ(store.rows_.size(), 4000u);
  EXPECT_LT(store.batches_, 4000u);  // grouped
  EXPECT_LE(store.max_batch_, 256u);
  std::set<int64_t> seqs;
  for (const auto& r : store.rows_) seqs.insert(r.seq);
  EXPECT_EQ(seqs.size(), 4000u);
}

TEST(LedgerWriterTest, MultiRowSubmissionIsNeverSplit) {
  MemoryLedger store;
  LedgerWriter writer(store, {.max_batch_rows = 4});
  std::promise<std::vector<int64_t>> got;
  std::vector<LedgerEntry> rows;
  for (int i = 0; i < 10; ++i) rows.push_back(Row("b" + std::to_string(i)));
  writer.Submit(std::move(rows), [&](const Status& st, std::vector<LedgerEntry>& committed) {
    EXPECT_TRUE(st.ok());
    std::vector<int64_t> seqs;
    for (auto& e : committed) seqs.push_back(e.seq);
    got.set_value(seqs);
  });
  auto seqs = got.get_future().get();
  ASSERT_EQ(seqs.size(), 10u);
  for (size_t i = 1; i < seqs.size(); ++i) EXPECT_EQ(seqs[i], seqs[i - 1] + 1);
  EXPECT_EQ(store.max_batch_, 10u);
}

TEST(LedgerWriterTest, StoreFailureIsReportedToEverySubmitter) {
  MemoryLedger store;
  store.fail_ = true;
  LedgerWriter writer(store);
  std::promise<Status> result;
  writer.Submit({Row("r1")}, [&](const Status& st, std::vector<LedgerEntry>&) { result.set_value(st); });
  Status st = result.get_future().get();
  EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  EXPECT_EQ(writer.stats().failed_commits, 1u);
  EXPECT_TRUE(store.rows_.empty());
}

TEST(LedgerWriterTest, SubmitAfterStopFailsFast) {
  MemoryLedger store;
  LedgerWriter writer(store);
  writer.Stop();
  Status got;
  writer.Submit({Row("late")}, [&](const Status& st, std::vector<LedgerEntry>&) { got = st; });
  EXPECT_EQ(got.code(), StatusCode::kUnavailable);
}

TEST(LedgerWriterTest, InteractiveRowsCommitBeforeAQueuedResignBatch) {
  MemoryLedger store;
  std::promise<void> open_gate;
  store.gate_ = open_gate.get_future().share();
  LedgerWriter writer(store);
  // The writer is now held inside the commit of "first".
  std::promise<void> first_done;
  writer.Submit({Row("first")}, [&](const Status&, std::vector<LedgerEntry>&) { first_done.set_value(); });
  while (writer.queued_rows() != 0) std::this_thread::yield();  // "first" was taken by the writer
  ResignBatch batch;
  batch.job_id = "job-1";
  Status resign_status = InternalError("not run");
  std::thread resigner([&] { resign_status = writer.CommitResign(batch); });
  while (writer.queued_resign_batches() == 0) std::this_thread::yield();
  // Queued after the re-sign batch, committed before it.
  std::promise<void> second_done;
  writer.Submit({Row("second")}, [&](const Status&, std::vector<LedgerEntry>&) { second_done.set_value(); });
  open_gate.set_value();
  first_done.get_future().get();
  second_done.get_future().get();
  resigner.join();
  EXPECT_TRUE(resign_status.ok()) << resign_status.ToString();
  std::lock_guard lock(store.mu_);
  EXPECT_EQ(store.order_, (std::vector<std::string>{"first", "second", "resign:job-1"}));
}

TEST(LedgerWriterTest, CommitResignAfterStopFailsFast) {
  MemoryLedger store;
  LedgerWriter writer(store);
  writer.Stop();
  ResignBatch batch;
  EXPECT_EQ(writer.CommitResign(batch).code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace concierge::core
