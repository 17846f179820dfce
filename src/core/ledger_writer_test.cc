#include "core/ledger_writer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <set>

namespace concierge::core {
namespace {

// In-memory LedgerStore with failure injection, to test the writer's batching
// and error paths in isolation (the SQLite ledger is tested on its own and by
// the integration tests).
class MemoryLedger : public LedgerStore {
 public:
  Status AppendBatch(std::vector<LedgerEntry>& entries) override {
    std::lock_guard lock(mu_);
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
  std::mutex mu_;
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

}  // namespace
}  // namespace concierge::core
