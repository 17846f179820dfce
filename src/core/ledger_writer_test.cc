#include "core/ledger_writer.h"

#include <gtest/gtest.h>

#include <sys/resource.h>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <thread>
#include <set>

#include "audit/entry.h"
#include "audit/merkle.h"

namespace concierge::core {
namespace {

// In-memory LedgerStore with failure injection, to test the writer's batching
// and error paths in isolation (the SQLite ledger is tested on its own and by
// the integration tests).
class MemoryLedger : public LedgerStore {
 public:
  Status AppendBatch(std::vector<LedgerEntry>& entries, const AuditBuilder& audit) override {
    if (gate_) gate_->get();  // holds the writer thread inside a commit
    std::lock_guard lock(mu_);
    for (auto& e : entries) order_.push_back(e.request_id);
    ++batches_;
    max_batch_ = std::max(max_batch_, entries.size());
    if (fail_) return UnavailableError("disk on fire");
    const int64_t seq_before = seq_;
    for (auto& e : entries) e.seq = ++seq_;
    AuditAppend out;
    if (audit) {
      Status st = audit(entries, out);
      if (st.ok() && fail_audit_) st = UnavailableError("audit table on fire");
      if (!st.ok()) {  // a transaction: nothing of the batch stays
        seq_ = seq_before;
        for (auto& e : entries) e.seq = 0;
        return st;
      }
    }
    for (auto& e : entries) rows_.push_back(e);
    for (auto& r : out.entries) audit_.push_back(r);
    for (auto& n : out.nodes) nodes_.push_back(n);
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
  Status AppendResignBatch(ResignBatch& batch, const AuditBuilder&) override {
    std::lock_guard lock(mu_);
    order_.push_back("resign:" + batch.job_id);
    for (auto& e : batch.rows) e.seq = ++seq_;
    return Status::Ok();
  }
  StatusOr<std::vector<ResignResult>> ListResignResults(const std::string&, int64_t, int) override {
    return std::vector<ResignResult>{};
  }
  Status Maintain() override {
    std::lock_guard lock(mu_);
    events_.push_back("maintain");
    if (fail_maintain_) return UnavailableError("checkpoint on fire");
    return Status::Ok();
  }
  void Note(const std::string& event) {
    std::lock_guard lock(mu_);
    events_.push_back(event);
  }
  std::mutex mu_;
  std::vector<std::string> events_;  // Maintain() calls and what tests Note()
  bool fail_maintain_ = false;
  std::optional<std::shared_future<void>> gate_;
  std::vector<std::string> order_;  // request ids and "resign:<job>" in commit order
  std::vector<LedgerEntry> rows_;
  int64_t seq_ = 0;
  size_t batches_ = 0;
  size_t max_batch_ = 0;
  bool fail_ = false;
  bool fail_audit_ = false;
  std::vector<AuditRecord> audit_;
  std::vector<AuditNode> nodes_;
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

// --- audit records ---

AuditRecord StateChange(const std::string& action) {
  AuditRecord r;
  r.actor = "admin";
  r.action = action;
  r.outcome = kAuditAttempted;
  r.detail_json = "{}";
  return r;
}

TEST(LedgerWriterAuditTest, SignatureRowsAndStateChangesShareOneOrderedTree) {
  MemoryLedger store;
  {
    LedgerWriter writer(store);
    std::promise<AuditRecord> change;
    writer.SubmitAudit(StateChange("policy.create"),
                       [&](const Status& st, const AuditRecord& r) {
                         EXPECT_TRUE(st.ok());
                         change.set_value(r);
                       });
    EXPECT_EQ(change.get_future().get().index, 0);
    std::promise<void> signed_rows;
    writer.Submit({Row("s1"), Row("s2")}, [&](const Status& st, std::vector<LedgerEntry>&) {
      EXPECT_TRUE(st.ok());
      signed_rows.set_value();
    });
    signed_rows.get_future().get();
    std::promise<AuditRecord> after;
    writer.SubmitAudit(StateChange("policy.update"), [&](const Status&, const AuditRecord& r) { after.set_value(r); });
    EXPECT_EQ(after.get_future().get().index, 3);
    EXPECT_EQ(writer.CommittedAuditHead().size, 4u);
    EXPECT_EQ(writer.stats().audit_records, 4u);
  }
  ASSERT_EQ(store.audit_.size(), 4u);
  std::vector<audit::Hash> leaves;
  for (size_t i = 0; i < store.audit_.size(); ++i) {
    const AuditRecord& r = store.audit_[i];
    EXPECT_EQ(r.index, static_cast<int64_t>(i));
    EXPECT_EQ(r.leaf_hash, audit::EntryLeafHash(r)) << i;
    leaves.push_back(r.leaf_hash);
  }
  EXPECT_EQ(store.audit_[1].action, "sign.digest");
  EXPECT_EQ(store.audit_[1].request_id, "s1");
  EXPECT_EQ(store.audit_[1].outcome, kAuditSuccess);
  EXPECT_NE(store.audit_[2].detail_json.find("\"ledger_seq\":2"), std::string::npos) << store.audit_[2].detail_json;
}

TEST(LedgerWriterAuditTest, SignatureRecordIsCanonical) {
  LedgerEntry e = Row("req-1");
  e.seq = 42;
  e.key_id = "acme-v1";
  e.key_version = 1;
  e.algorithm = "ES256";
  e.kind = "cose";
  e.digest_hex = "abcd";
  e.asset_id = "asset \"7\"";
  e.cert_serial = "0a";
  e.api_key_id = "ak";
  AuditRecord r = SignatureAuditRecord(e);
  EXPECT_EQ(r.action, "sign.cose");
  EXPECT_EQ(r.target, "acme-v1");
  EXPECT_EQ(r.detail_json,
            R"({"algorithm":"ES256","asset_id":"asset \"7\"","cert_serial":"0a","digest":"abcd","key_version":1,"ledger_seq":42})");
  EXPECT_EQ(*audit::CanonicalDetail(nlohmann::json::parse(r.detail_json)), r.detail_json);
}

// The writer persists the nodes proofs need, and restarting from the
// persisted compact range continues the same tree.
TEST(LedgerWriterAuditTest, StoredNodesAndRestartContinueTheTree) {
  MemoryLedger store;
  audit::CompactRange reference;
  {
    LedgerWriter writer(store, {.max_batch_rows = 7});
    for (int i = 0; i < 100; ++i) writer.Submit({Row("r" + std::to_string(i))}, [](const Status&, std::vector<LedgerEntry>&) {});
  }
  for (const auto& r : store.audit_) reference.Append(r.leaf_hash);
  for (const AuditNode& n : store.nodes_) {
    EXPECT_EQ(n.level % kAuditNodeLevelStride, 0);
    std::vector<audit::Hash> leaves;
    for (int64_t i = n.index << n.level; i < (n.index + 1) << n.level; ++i) leaves.push_back(store.audit_[i].leaf_hash);
    EXPECT_EQ(n.hash, audit::RootFromLeafHashes(leaves));
  }
  EXPECT_EQ(store.nodes_.size(), 100u / 16);
  {
    LedgerWriter writer(store, {}, reference);
    EXPECT_EQ(writer.CommittedAuditHead().size, 100u);
    std::promise<void> done;
    writer.Submit({Row("late")}, [&](const Status&, std::vector<LedgerEntry>&) { done.set_value(); });
    done.get_future().get();
  }
  ASSERT_EQ(store.audit_.size(), 101u);
  EXPECT_EQ(store.audit_.back().index, 100);
  reference.Append(audit::EntryLeafHash(store.audit_.back()));
  std::vector<audit::Hash> all;
  for (const auto& r : store.audit_) all.push_back(r.leaf_hash);
  EXPECT_EQ(reference.Root(), audit::RootFromLeafHashes(all));
}

// Fail-closed: when the audit part of a batch fails, the whole batch fails,
// the signatures' callbacks get the error, and the tree is rolled back so the
// next batch continues without a hole.
TEST(LedgerWriterAuditTest, AuditFailureFailsTheBatchAndRollsBackTheTree) {
  MemoryLedger store;
  LedgerWriter writer(store);
  auto submit = [&](const std::string& id) {
    std::promise<Status> p;
    writer.Submit({Row(id)}, [&](const Status& st, std::vector<LedgerEntry>&) { p.set_value(st); });
    return p.get_future().get();
  };
  ASSERT_TRUE(submit("a").ok());
  store.fail_audit_ = true;
  EXPECT_EQ(submit("b").code(), StatusCode::kUnavailable);
  std::promise<Status> change;
  writer.SubmitAudit(StateChange("policy.delete"), [&](const Status& st, const AuditRecord&) { change.set_value(st); });
  EXPECT_FALSE(change.get_future().get().ok());
  EXPECT_EQ(writer.CommittedAuditHead().size, 1u);
  EXPECT_FALSE(*store.HasRequest("t-1", "b"));
  store.fail_audit_ = false;
  ASSERT_TRUE(submit("c").ok());
  ASSERT_EQ(store.audit_.size(), 2u);
  EXPECT_EQ(store.audit_[1].index, 1);
  EXPECT_EQ(store.audit_[1].request_id, "c");
  std::vector<audit::Hash> leaves = {store.audit_[0].leaf_hash, store.audit_[1].leaf_hash};
  EXPECT_EQ(writer.CommittedAuditHead().root, audit::RootFromLeafHashes(leaves));
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

TEST(LedgerWriterTest, MaintainRunsAfterTheBatchIsAnswered) {
  MemoryLedger store;
  LedgerWriter writer(store);
  for (const char* id : {"r1", "r2"}) {
    std::promise<void> done;
    writer.Submit({Row(id)}, [&, id](const Status& st, std::vector<LedgerEntry>&) {
      EXPECT_TRUE(st.ok());
      store.Note(std::string("answered ") + id);
      done.set_value();
    });
    done.get_future().get();
  }
  writer.Stop();  // joins the writer: its Maintain() after r2 has run
  std::lock_guard lock(store.mu_);
  EXPECT_EQ(store.events_, (std::vector<std::string>{"answered r1", "maintain", "answered r2", "maintain"}));
}

TEST(LedgerWriterTest, MaintenanceFailureIsCountedAndSigningGoesOn) {
  MemoryLedger store;
  store.fail_maintain_ = true;
  LedgerWriter writer(store);
  for (const char* id : {"r1", "r2"}) {
    std::promise<Status> done;
    writer.Submit({Row(id)}, [&](const Status& st, std::vector<LedgerEntry>&) { done.set_value(st); });
    EXPECT_TRUE(done.get_future().get().ok()) << id;
  }
  writer.Stop();
  EXPECT_EQ(writer.stats().maintenance_failures, 2u);
  EXPECT_EQ(writer.stats().commits, 2u);
  EXPECT_EQ(writer.last_maintenance_error().message(), "checkpoint on fire");
}

// The nice value of this process's thread named `name`, or nullopt.
std::optional<int> NiceOfThread(const std::string& name) {
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string line;
    if (!std::getline(comm, line) || line != name) continue;
    errno = 0;
    const int nice = getpriority(PRIO_PROCESS, static_cast<id_t>(std::stoi(task.path().filename().string())));
    if (errno != 0) return std::nullopt;
    return nice;
  }
  return std::nullopt;
}

TEST(LedgerWriterTest, WriterThreadTakesTheNiceValueItIsGiven) {
  MemoryLedger store;
  // One step lower than this process: allowed without any privilege.
  const int wanted = getpriority(PRIO_PROCESS, 0) + 1;
  {
    LedgerWriter writer(store, {.thread_nice = wanted});
    EXPECT_TRUE(writer.priority_raised());
    EXPECT_EQ(NiceOfThread("ledger-writer"), wanted);
  }
  LedgerWriter unchanged(store);
  EXPECT_FALSE(unchanged.priority_raised());
  EXPECT_EQ(NiceOfThread("ledger-writer"), getpriority(PRIO_PROCESS, 0));
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
