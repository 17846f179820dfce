#include "store/sqlite/sqlite_ledger.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "store/ledger_test_suite.h"
#include "store/sqlite/sqlite_store.h"
#include "testing/test_util.h"

namespace concierge::store {
namespace {

using conformance::HasCode;
using conformance::IsOk;
using conformance::LedgerConformanceTest;
using conformance::LedgerHarness;
using conformance::ResignConformanceTest;
using conformance::ListAll;
using conformance::MakeBatch;
using conformance::MakeEntry;
using conformance::T;

const concierge::testing::TempDir& SharedDir() {
  static const concierge::testing::TempDir dir;
  return dir;
}

std::string FreshPath() {
  static std::atomic<int> counter{0};
  return SharedDir().File("ledger-" + std::to_string(counter++) + ".db");
}

// Creates the file and migrates it to `version` (0 = latest). The store is
// returned so tests can checkpoint through it, as the service does.
std::unique_ptr<SqliteStore> MigratedStore(const std::string& path, int version = 0) {
  StatusOr<std::unique_ptr<SqliteStore>> s = SqliteStore::Open(path);
  EXPECT_TRUE(IsOk(s.status()));
  if (!s.ok()) return nullptr;
  EXPECT_TRUE(IsOk((*s)->Migrate(version)));
  return std::move(s).value();
}

std::unique_ptr<SqliteLedger> MustOpenLedger(const std::string& path,
                                             SqliteLedgerOptions opts = {}) {
  StatusOr<std::unique_ptr<SqliteLedger>> l = SqliteLedger::Open(path, opts);
  EXPECT_TRUE(IsOk(l.status()));
  return l.ok() ? std::move(l).value() : nullptr;
}

// A separate connection, as another process (or a saboteur) would have.
struct RawDb {
  explicit RawDb(const std::string& path) {
    StatusOr<SqliteDb> opened = OpenSqliteDb(path, "test open");
    EXPECT_TRUE(IsOk(opened.status()));
    if (opened.ok()) db = std::move(opened).value();
    if (db != nullptr) sqlite3_busy_timeout(db.get(), 5000);
  }
  Status Exec(const std::string& sql) { return ExecSql(db.get(), sql, "test exec"); }
  int64_t Count(const std::string& sql) {
    StatusOr<Statement> s = Statement::Prepare(db.get(), sql, "test count");
    EXPECT_TRUE(IsOk(s.status()));
    if (!s.ok()) return -1;
    StatusOr<bool> row = s->Step();
    EXPECT_TRUE(IsOk(row.status()));
    return row.ok() && *row ? s->ColumnInt(0) : -1;
  }
  SqliteDb db;
};

int64_t FileSize(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  return ec ? -1 : static_cast<int64_t>(size);
}

// The conformance suite on a database file, as the service opens it: a
// migrated SqliteStore and a SqliteLedger on the same file.
class SqliteLedgerHarness : public LedgerHarness {
 public:
  SqliteLedgerHarness() : path_(FreshPath()), store_(MigratedStore(path_)), ledger_(MustOpenLedger(path_)) {}
  bool ok() const { return store_ != nullptr && ledger_ != nullptr; }
  LedgerStore& ledger() override { return *ledger_; }
  void Reopen() override {
    ledger_.reset();
    store_.reset();
    ledger_ = MustOpenLedger(path_);
  }
  Status Exec(const std::string& sql) override { return RawDb(path_).Exec(sql); }
  int64_t Count(const std::string& sql) override { return RawDb(path_).Count(sql); }
  std::string PoisonTriggerSql() const override {
    return "CREATE TRIGGER reject_poison BEFORE INSERT ON ledger WHEN NEW.request_id = 'poison' "
           "BEGIN SELECT RAISE(ABORT, 'poisoned row'); END";
  }
  std::string DropPoisonTriggerSql() const override { return "DROP TRIGGER reject_poison"; }
  void ReopenWithLockTimeout(std::chrono::milliseconds timeout) override {
    ledger_.reset();
    ledger_ = MustOpenLedger(path_, SqliteLedgerOptions{.busy_timeout = timeout});
  }
  Status BeginConcurrentAppend(const std::string& sql) override {
    other_ = std::make_unique<RawDb>(path_);
    return other_->Exec("BEGIN IMMEDIATE; " + sql);
  }
  Status RollbackConcurrentAppend() override { return other_->Exec("ROLLBACK"); }
  Store& store() override {
    if (store_ == nullptr) store_ = MigratedStore(path_);
    return *store_;
  }

 private:
  std::string path_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<SqliteLedger> ledger_;
  std::unique_ptr<RawDb> other_;
};

INSTANTIATE_TEST_SUITE_P(Sqlite, LedgerConformanceTest,
                         ::testing::Values(conformance::HarnessParam<SqliteLedgerHarness>("File")),
                         conformance::LedgerTestParamName);
INSTANTIATE_TEST_SUITE_P(Sqlite, ResignConformanceTest,
                         ::testing::Values(conformance::HarnessParam<SqliteLedgerHarness>("File")),
                         conformance::LedgerTestParamName);

// A stand-in for the writer's AuditBuilder: one audit record per ledger row
// (plus `extra` state-change records), indexes continuing from `*next`.
// Leaf hashes are arbitrary here; their computation is the writer's job.
AuditBuilder CountingBuilder(int64_t* next, int extra = 0) {
  return [next, extra](const std::vector<LedgerEntry>& rows, AuditAppend& out) {
    auto add = [&](const std::string& action, const std::string& tenant, const std::string& actor, int64_t ms) {
      AuditRecord r;
      r.index = (*next)++;
      r.time = T(ms);
      r.actor = actor;
      r.tenant_id = tenant;
      r.action = action;
      r.target = "k";
      r.outcome = "success";
      r.detail_json = "{}";
      r.leaf_hash.fill(static_cast<uint8_t>(r.index));
      out.entries.push_back(r);
      if (r.index % 16 == 15) out.nodes.push_back(AuditNode{4, r.index / 16, r.leaf_hash});
    };
    for (int i = 0; i < extra; ++i) add("policy.update", "acme", "admin", 0);
    for (const LedgerEntry& e : rows) {
      EXPECT_GT(e.seq, 0) << "the builder sees the ledger rows' seq";
      add("sign." + e.kind, e.tenant_id, e.api_key_id, ToUnixMillis(e.signed_at) - ToUnixMillis(T(0)));
    }
    return Status::Ok();
  };
}

class SqliteLedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = FreshPath();
    store_ = MigratedStore(path_);
    ASSERT_NE(store_, nullptr);
    ledger_ = MustOpenLedger(path_);
    ASSERT_NE(ledger_, nullptr);
  }

  std::string path_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<SqliteLedger> ledger_;
};

TEST(SqliteLedgerOpenTest, UnmigratedDatabaseIsFailedPrecondition) {
  for (int version : {-1, 2}) {
    SCOPED_TRACE(version);
    const std::string path = FreshPath();
    std::unique_ptr<SqliteStore> store;
    if (version < 0) {
      ASSERT_TRUE(IsOk(SqliteStore::Open(path).status()));  // empty file, no schema at all
    } else {
      store = MigratedStore(path, version);
    }
    StatusOr<std::unique_ptr<SqliteLedger>> l = SqliteLedger::Open(path);
    ASSERT_TRUE(HasCode(l.status(), StatusCode::kFailedPrecondition));
    EXPECT_NE(l.status().message().find("run migrations first"), std::string::npos)
        << l.status().message();
  }
}

TEST(SqliteLedgerOpenTest, RefusesNewerSchemaMemoryAndMissingFile) {
  const std::string path = FreshPath();
  ASSERT_NE(MigratedStore(path), nullptr);
  {
    RawDb raw(path);
    ASSERT_TRUE(IsOk(raw.Exec("INSERT INTO schema_migrations VALUES (99, 'from_the_future', 0)")));
  }
  EXPECT_TRUE(HasCode(SqliteLedger::Open(path).status(), StatusCode::kFailedPrecondition));
  EXPECT_TRUE(HasCode(SqliteLedger::Open(":memory:").status(), StatusCode::kInvalidArgument));
  const std::string missing = SharedDir().File("does-not-exist.db");
  EXPECT_TRUE(HasCode(SqliteLedger::Open(missing).status(), StatusCode::kUnavailable));
  EXPECT_FALSE(std::filesystem::exists(missing));  // not created as a side effect
}

TEST_F(SqliteLedgerTest, AuditRecordsCommitWithTheirLedgerRows) {
  int64_t next = 0;
  std::vector<LedgerEntry> batch = MakeBatch("acme", "k", 3, 0, "r");
  ASSERT_TRUE(IsOk(ledger_->AppendBatch(batch, CountingBuilder(&next, 2))));
  EXPECT_EQ(*ledger_->AuditSize(), 5);
  // Audit-only batches (state changes) commit too.
  std::vector<LedgerEntry> none;
  ASSERT_TRUE(IsOk(ledger_->AppendBatch(none, CountingBuilder(&next, 1))));
  EXPECT_EQ(*ledger_->AuditSize(), 6);

  StatusOr<AuditPage> page = ledger_->ListAudit(AuditQuery{});
  ASSERT_TRUE(IsOk(page.status()));
  ASSERT_EQ(page->entries.size(), 6u);
  EXPECT_EQ(page->next_cursor, -1);
  for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(page->entries[i].index, i);
  EXPECT_EQ(page->entries[2].action, "sign.digest");
  EXPECT_EQ(page->entries[2].actor, "ak-1");
  EXPECT_EQ(page->entries[2].leaf_hash[0], 2);

  // A failing builder or a failing audit insert rolls back the ledger rows too.
  std::vector<LedgerEntry> rejected = MakeBatch("acme", "k", 2, 10, "rejected-");
  EXPECT_TRUE(HasCode(ledger_->AppendBatch(rejected,
                                           [](const std::vector<LedgerEntry>&, AuditAppend&) {
                                             return UnavailableError("audit writer down");
                                           }),
                      StatusCode::kUnavailable));
  RawDb raw(path_);
  ASSERT_TRUE(IsOk(raw.Exec("CREATE TRIGGER audit_down BEFORE INSERT ON audit_entries "
                            "BEGIN SELECT RAISE(ABORT, 'injected audit failure'); END")));
  EXPECT_FALSE(ledger_->AppendBatch(rejected, CountingBuilder(&next)).ok());
  for (const LedgerEntry& e : rejected) EXPECT_EQ(e.seq, 0);
  EXPECT_FALSE(*ledger_->HasRequest("acme", "rejected-0"));
  EXPECT_EQ(raw.Count("SELECT COUNT(*) FROM ledger"), 3);
  EXPECT_EQ(*ledger_->AuditSize(), 6);
  ASSERT_TRUE(IsOk(raw.Exec("DROP TRIGGER audit_down")));
  next = 6;
  EXPECT_TRUE(IsOk(ledger_->AppendBatch(rejected, CountingBuilder(&next))));
  EXPECT_EQ(*ledger_->AuditSize(), 8);

  // An index that exists already fails the whole batch.
  next = 7;
  std::vector<LedgerEntry> dup = MakeBatch("acme", "k", 1, 20, "dup-");
  EXPECT_TRUE(HasCode(ledger_->AppendBatch(dup, CountingBuilder(&next)), StatusCode::kAlreadyExists));
  EXPECT_FALSE(*ledger_->HasRequest("acme", "dup-0"));
}

TEST_F(SqliteLedgerTest, AuditListingFiltersAndPages) {
  int64_t next = 0;
  for (int b = 0; b < 6; ++b) {
    std::vector<LedgerEntry> batch = MakeBatch(b % 2 ? "acme" : "globex", "k", 10, b * 10, "r");
    for (auto& e : batch) e.api_key_id = b < 3 ? "early" : "late";
    ASSERT_TRUE(IsOk(ledger_->AppendBatch(batch, CountingBuilder(&next, b == 5 ? 1 : 0))));
  }
  auto all = [&](AuditQuery q) {
    std::vector<AuditRecord> out;
    for (int pages = 0; pages < 100; ++pages) {
      StatusOr<AuditPage> page = ledger_->ListAudit(q);
      EXPECT_TRUE(IsOk(page.status()));
      if (!page.ok()) break;
      for (size_t i = 1; i < page->entries.size(); ++i) EXPECT_GT(page->entries[i].index, page->entries[i - 1].index);
      out.insert(out.end(), page->entries.begin(), page->entries.end());
      if (page->next_cursor < 0) break;
      q.after_index = page->next_cursor;
    }
    return out;
  };
  EXPECT_EQ(all(AuditQuery{.limit = 7}).size(), 61u);
  auto acme = all(AuditQuery{.tenant_id = "acme", .limit = 4});
  EXPECT_EQ(acme.size(), 31u);  // 30 signatures + the policy change
  for (const auto& r : acme) EXPECT_EQ(r.tenant_id, "acme");
  EXPECT_EQ(all(AuditQuery{.actor = "late"}).size(), 30u);
  EXPECT_EQ(all(AuditQuery{.tenant_id = "acme", .action = "policy.update"}).size(), 1u);
  EXPECT_EQ(all(AuditQuery{.from = T(15), .to = T(25)}).size(), 10u);
  EXPECT_EQ(all(AuditQuery{.after_index = 55}).size(), 5u);
  EXPECT_TRUE(HasCode(ledger_->ListAudit(AuditQuery{.limit = 0}).status(), StatusCode::kInvalidArgument));
  EXPECT_TRUE(HasCode(ledger_->ListAudit(AuditQuery{.after_index = -2}).status(), StatusCode::kInvalidArgument));
}

TEST_F(SqliteLedgerTest, AuditNodesReadRangesAndReportGaps) {
  int64_t next = 0;
  std::vector<LedgerEntry> batch = MakeBatch("acme", "k", 40, 0, "r");
  ASSERT_TRUE(IsOk(ledger_->AppendBatch(batch, CountingBuilder(&next))));
  StatusOr<std::vector<AuditHash>> leaves = ledger_->AuditNodes(0, 3, 9);
  ASSERT_TRUE(IsOk(leaves.status()));
  ASSERT_EQ(leaves->size(), 6u);
  EXPECT_EQ((*leaves)[0][0], 3);
  StatusOr<std::vector<AuditHash>> nodes = ledger_->AuditNodes(4, 0, 2);
  ASSERT_TRUE(IsOk(nodes.status()));
  EXPECT_EQ((*nodes)[1][0], 31);
  EXPECT_TRUE(HasCode(ledger_->AuditNodes(4, 0, 3).status(), StatusCode::kDataLoss));
  EXPECT_TRUE(HasCode(ledger_->AuditNodes(0, 38, 41).status(), StatusCode::kDataLoss));
  RawDb raw(path_);
  ASSERT_TRUE(IsOk(raw.Exec("DELETE FROM audit_entries WHERE idx = 5")));
  EXPECT_TRUE(HasCode(ledger_->AuditNodes(0, 3, 9).status(), StatusCode::kDataLoss));
  ASSERT_TRUE(IsOk(raw.Exec("UPDATE audit_entries SET leaf_hash = x'00' WHERE idx = 7")));
  EXPECT_TRUE(HasCode(ledger_->AuditNodes(0, 6, 9).status(), StatusCode::kDataLoss));
}

TEST_F(SqliteLedgerTest, AuditCheckpointsAndKeys) {
  EXPECT_FALSE(ledger_->LatestAuditCheckpoint()->has_value());
  AuditKeyRecord key{"audit-1", "test/audit", "ES256", "software", "software:x", "PEM", T(0)};
  ASSERT_TRUE(IsOk(ledger_->InsertAuditKey(key)));
  EXPECT_TRUE(HasCode(ledger_->InsertAuditKey(key), StatusCode::kAlreadyExists));
  ASSERT_EQ(ledger_->ListAuditKeys()->size(), 1u);
  EXPECT_EQ(ledger_->ListAuditKeys()->front().key_uri, "software:x");
  for (int i = 1; i <= 5; ++i) {
    AuditCheckpointRecord cp;
    cp.tree_size = i * 10;
    cp.root_hash.fill(static_cast<uint8_t>(i));
    cp.timestamp = T(i);
    cp.key_id = "audit-1";
    cp.note = "note " + std::to_string(i);
    cp.signature = {1, 2, static_cast<uint8_t>(i)};
    ASSERT_TRUE(IsOk(ledger_->InsertAuditCheckpoint(cp)));
    EXPECT_EQ(cp.id, i);
  }
  auto latest = ledger_->LatestAuditCheckpoint();
  ASSERT_TRUE(IsOk(latest.status()));
  ASSERT_TRUE(latest->has_value());
  EXPECT_EQ((*latest)->tree_size, 50);
  EXPECT_EQ((*latest)->signature, (Bytes{1, 2, 5}));
  EXPECT_EQ((*latest)->timestamp, T(5));
  auto page = ledger_->ListAuditCheckpoints(2, 2);
  ASSERT_TRUE(IsOk(page.status()));
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].id, 3);
  EXPECT_EQ((*page)[1].note, "note 4");
}

TEST_F(SqliteLedgerTest, ReadOnlyOpenReadsAndRefusesWrites) {
  int64_t next = 0;
  std::vector<LedgerEntry> batch = MakeBatch("acme", "k", 4, 0, "r");
  ASSERT_TRUE(IsOk(ledger_->AppendBatch(batch, CountingBuilder(&next))));
  std::unique_ptr<SqliteLedger> ro = MustOpenLedger(path_, SqliteLedgerOptions{.read_only = true});
  ASSERT_NE(ro, nullptr);
  EXPECT_EQ(*ro->AuditSize(), 4);
  EXPECT_EQ(ro->ListAudit(AuditQuery{})->entries.size(), 4u);
  std::vector<LedgerEntry> more = MakeBatch("acme", "k", 1, 10, "more");
  EXPECT_TRUE(HasCode(ro->AppendBatch(more, CountingBuilder(&next)), StatusCode::kFailedPrecondition));
  EXPECT_TRUE(HasCode(ro->InsertAuditKey(AuditKeyRecord{}), StatusCode::kFailedPrecondition));
}

// Not a timed assertion (machines are shared and noisy): prints the figure to
// compare with PERFORMANCE.md's ~566k rows/s for 1024-row transactions. Also
// checks that the ledger never checkpoints by itself and that the store's
// background checkpoint can reset the WAL while the ledger is open.
// Under sustained signing the ledger commits back to back, and the lock is
// free only for microseconds in between. The admin store's writes (a rotation,
// a policy change) must still get in, not poll until their busy timeout: a
// rotation under load once failed with "database is locked" this way.
TEST_F(SqliteLedgerTest, StoreWritesGetInBetweenBackToBackLedgerCommits) {
  auto store = SqliteStore::Open(path_, SqliteOptions{.busy_timeout = std::chrono::milliseconds(500)});
  ASSERT_TRUE(IsOk(store.status()));
  std::atomic<bool> stop{false};
  std::atomic<int> commits{0};
  std::thread signer([&] {
    // One batch built once, so that nothing but the commit runs in the loop.
    std::vector<LedgerEntry> batch = MakeBatch("acme", "acme-v1", 200, 0, "b-");
    while (!stop.load()) {
      EXPECT_TRUE(IsOk(ledger_->AppendBatch(batch)));
      ++commits;
    }
  });
  for (int i = 0; i < 20; ++i) {
    // Each insert starts while the ledger is mid-stream.
    const int seen = commits.load();
    while (commits.load() < seen + 2) std::this_thread::yield();
    ApiKeyRecord key;
    key.id = "admin-" + std::to_string(i);
    key.secret_hash = std::string(64, '0');
    key.role = "admin";
    key.name = key.id;
    key.created_by = "test";
    key.created_at = T(i);
    EXPECT_TRUE(IsOk((*store)->InsertApiKey(key))) << i;
  }
  stop = true;
  signer.join();
}

// Appends `batches` batches of 20 audited rows, calling Maintain() after each
// as the LedgerWriter does; returns the largest -wal file size seen.
int64_t AppendAndMaintain(SqliteLedger& ledger, const std::string& path, int batches, int64_t* next_audit,
                          int first_row) {
  int64_t largest = 0;
  const AuditBuilder builder = CountingBuilder(next_audit);
  for (int b = 0; b < batches; ++b) {
    std::vector<LedgerEntry> batch = MakeBatch("acme", "acme-v1", 20, first_row + b * 20, "m-");
    EXPECT_TRUE(IsOk(ledger.AppendBatch(batch, builder)));
    EXPECT_TRUE(IsOk(ledger.Maintain()));
    largest = std::max(largest, FileSize(path + "-wal"));
  }
  return largest;
}

TEST_F(SqliteLedgerTest, MaintainKeepsTheWalSmallAndReusesIt) {
  constexpr int kBatches = 200;
  constexpr int64_t kBound = 1 << 20;  // 64 frames of 4 KiB plus one batch, with room to spare
  ledger_ = MustOpenLedger(path_, SqliteLedgerOptions{.checkpoint_frames = 64});
  ASSERT_NE(ledger_, nullptr);
  int64_t next_audit = 0;
  EXPECT_LT(AppendAndMaintain(*ledger_, path_, kBatches, &next_audit, 0), kBound);
  const SqliteWalStats stats = ledger_->wal_stats();
  EXPECT_GE(stats.complete_checkpoints, 10u);
  EXPECT_EQ(stats.complete_checkpoints, stats.checkpoints);  // nothing held old frames
  EXPECT_LE(stats.wal_frames, 64 + 64);
  EXPECT_EQ(ListAll(*ledger_, LedgerQuery{.tenant_id = "acme"}).size(), size_t{kBatches} * 20);

  // The same load without upkeep grows the log past the bound: the check above can fail.
  const std::string other = FreshPath();
  auto other_store = MigratedStore(other);
  auto unmaintained = MustOpenLedger(other, SqliteLedgerOptions{.checkpoint_frames = 0});
  ASSERT_NE(unmaintained, nullptr);
  next_audit = 0;
  EXPECT_GT(AppendAndMaintain(*unmaintained, other, kBatches, &next_audit, 0), kBound);
  EXPECT_EQ(unmaintained->wal_stats().checkpoints, 0u);

  // What was checkpointed is all there after a restart.
  ledger_.reset();
  ledger_ = MustOpenLedger(path_);
  ASSERT_NE(ledger_, nullptr);
  EXPECT_EQ(ListAll(*ledger_, LedgerQuery{.tenant_id = "acme"}).size(), size_t{kBatches} * 20);
  EXPECT_EQ(*ledger_->AuditSize(), kBatches * 20);
}

TEST_F(SqliteLedgerTest, MaintainStopsShortOfFramesAReaderUsesAndCatchesUpAfter) {
  ledger_ = MustOpenLedger(path_, SqliteLedgerOptions{.checkpoint_frames = 16});
  ASSERT_NE(ledger_, nullptr);
  int64_t next_audit = 0;
  AppendAndMaintain(*ledger_, path_, 5, &next_audit, 0);
  // Another connection in the middle of a read: its snapshot needs the log.
  RawDb reader(path_);
  ASSERT_TRUE(IsOk(reader.Exec("BEGIN")));
  ASSERT_EQ(reader.Count("SELECT COUNT(*) FROM ledger"), 100);
  const SqliteWalStats before = ledger_->wal_stats();
  AppendAndMaintain(*ledger_, path_, 40, &next_audit, 100);
  const SqliteWalStats held = ledger_->wal_stats();
  EXPECT_GT(held.checkpoints, before.checkpoints);  // it kept trying...
  EXPECT_EQ(held.complete_checkpoints, before.complete_checkpoints);  // ...and could not finish
  // ...but not after every batch: each try waits for 16 more frames.
  EXPECT_LT(held.checkpoints - before.checkpoints, 40u);
  EXPECT_GT(held.wal_frames, 16 * 4);
  EXPECT_EQ(reader.Count("SELECT COUNT(*) FROM ledger"), 100);  // the snapshot is intact

  ASSERT_TRUE(IsOk(reader.Exec("COMMIT")));
  AppendAndMaintain(*ledger_, path_, 40, &next_audit, 900);
  const SqliteWalStats after = ledger_->wal_stats();
  EXPECT_GT(after.complete_checkpoints, held.complete_checkpoints);
  EXPECT_LT(after.wal_frames, held.wal_frames);  // the log started again
  EXPECT_EQ(ListAll(*ledger_, LedgerQuery{.tenant_id = "acme"}).size(), size_t{85} * 20);
}

TEST_F(SqliteLedgerTest, ThroughputSanityAndCheckpointsLeftToStore) {
  constexpr int kBatches = 100;
  constexpr int kRows = 1024;
  std::vector<std::vector<LedgerEntry>> batches;
  for (int b = 0; b < kBatches; ++b) {
    batches.push_back(MakeBatch(b % 2 ? "acme" : "globex", "k", kRows, b * kRows, "r-"));
  }
  const auto start = std::chrono::steady_clock::now();
  for (auto& batch : batches) ASSERT_TRUE(IsOk(ledger_->AppendBatch(batch)));
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ ledger   ] %d batches x %d rows in %.3f s: %.0f rows/s (%.2f ms/commit)\n",
              kBatches, kRows, secs, kBatches * kRows / secs, secs * 1000 / kBatches);
  // The same rows with one audit record each, as the service writes them.
  {
    std::vector<std::vector<LedgerEntry>> audited;
    for (int b = 0; b < kBatches; ++b) audited.push_back(MakeBatch("acme", "k", kRows, b * kRows, "a-"));
    int64_t next = 0;
    const AuditBuilder builder = CountingBuilder(&next);
    const auto audited_start = std::chrono::steady_clock::now();
    for (auto& batch : audited) ASSERT_TRUE(IsOk(ledger_->AppendBatch(batch, builder)));
    const double audited_secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - audited_start).count();
    std::printf("[ ledger   ] same with an audit record per row: %.0f rows/s (%.2f ms/commit)\n",
                kBatches * kRows / audited_secs, audited_secs * 1000 / kBatches);
  }

  // Well past the 1000-page default auto-checkpoint threshold.
  const std::string wal = path_ + "-wal";
  EXPECT_GT(FileSize(wal), 1000 * 4096 * 3 / 2);
  EXPECT_EQ(ListAll(*ledger_, LedgerQuery{.tenant_id = "acme"}).size(),
            static_cast<size_t>(kBatches / 2 * kRows + kBatches * kRows));
  EXPECT_TRUE(IsOk(store_->Checkpoint(SqliteStore::CheckpointMode::kTruncate)));
  EXPECT_EQ(FileSize(wal), 0);
  std::vector<LedgerEntry> after = MakeBatch("acme", "k", 1, 0, "after");
  ASSERT_TRUE(IsOk(ledger_->AppendBatch(after)));
  EXPECT_EQ(after[0].seq, 2 * int64_t{kBatches} * kRows + 1);
}

}  // namespace
}  // namespace concierge::store
