#include "core/audit_log.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <future>
#include <thread>

#include "audit/checkpoint.h"
#include "audit/entry.h"
#include "audit/verify.h"
#include "backends/software/software_backend.h"
#include "crypto/keys.h"
#include "store/sqlite/sqlite_ledger.h"
#include "store/sqlite/sqlite_store.h"
#include "testing/test_util.h"

namespace concierge::core {
namespace {

using json = nlohmann::json;

// The real pieces the server wires together: SQLite store and ledger, the
// group-commit writer, the encrypted software keystore, a fake clock.
class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_path_ = dir_.File("audit.db");
    auto store = store::SqliteStore::Open(db_path_);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = *std::move(store);
    ASSERT_TRUE(store_->Migrate().ok());
    backends::SoftwareKeystoreOptions ks;
    ks.dir = dir_.File("keystore");
    auto software = backends::SoftwareBackend::Create(std::move(ks));
    ASSERT_TRUE(software.ok()) << software.status().ToString();
    ASSERT_TRUE(backends_.Register(*std::move(software)).ok());
    Open();
  }

  void Open(std::chrono::milliseconds poll_interval = std::chrono::milliseconds(1000)) {
    auto ledger = store::SqliteLedger::Open(db_path_);
    ASSERT_TRUE(ledger.ok()) << ledger.status().ToString();
    ledger_ = *std::move(ledger);
    auto tree = RestoreAuditTree(*ledger_);
    ASSERT_TRUE(tree.ok()) << tree.status().ToString();
    writer_ = std::make_unique<LedgerWriter>(*ledger_, LedgerWriterOptions{}, *tree);
    AuditLogOptions options;
    options.origin = "test.example/audit";
    options.checkpoint_interval = std::chrono::seconds(60);
    options.poll_interval = poll_interval;
    auto log = AuditLog::Create(*writer_, *ledger_, backends_, clock_, options);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    log_ = *std::move(log);
  }

  void Close() {
    writer_->Stop();
    log_.reset();  // final checkpoint
    writer_.reset();
    ledger_.reset();
  }

  AuditEvent Event(const std::string& action) {
    AuditEvent e;
    e.actor = "ak-admin";
    e.tenant_id = "acme";
    e.action = action;
    e.target = "acme";
    e.request_id = "req-" + action;
    e.client_address = "127.0.0.1";
    e.detail = {{"version", 1}};
    return e;
  }

  void Sign(const std::string& request_id) {
    LedgerEntry e;
    e.tenant_id = "acme";
    e.key_id = "acme-v1";
    e.key_version = 1;
    e.algorithm = "ES256";
    e.digest_hex = std::string(64, 'a');
    e.request_id = request_id;
    e.api_key_id = "ak-signer";
    e.signed_at = clock_.Now();
    std::promise<Status> done;
    writer_->Submit({e}, [&](const Status& st, std::vector<LedgerEntry>&) { done.set_value(st); });
    ASSERT_TRUE(done.get_future().get().ok());
  }

  std::vector<AuditRecord> AllRecords() {
    std::vector<AuditRecord> out;
    AuditQuery q;
    q.limit = 1000;
    for (;;) {
      auto page = ledger_->ListAudit(q);
      EXPECT_TRUE(page.ok());
      out.insert(out.end(), page->entries.begin(), page->entries.end());
      if (page->next_cursor < 0) return out;
      q.after_index = page->next_cursor;
    }
  }

  // The whole stored log against every stored checkpoint, as keyctl does.
  audit::LogVerification VerifyAll() {
    std::vector<audit::Checkpoint> checkpoints;
    auto keys = ledger_->ListAuditKeys();
    auto stored = ledger_->ListAuditCheckpoints(0, 1000);
    EXPECT_TRUE(stored.ok());
    for (const auto& c : *stored) {
      auto cp = VerifyStoredCheckpoint(c, *keys);
      EXPECT_TRUE(cp.ok()) << cp.status().ToString();
      if (cp.ok()) checkpoints.push_back(*cp);
    }
    audit::RecordVerifier v(checkpoints, log_ ? log_->key().origin : "test.example/audit");
    for (const auto& r : AllRecords()) v.Add(r);
    return v.Finish();
  }

  testing::TempDir dir_;
  std::string db_path_;
  FakeClock clock_{TimePoint(std::chrono::seconds(1'760'000'000))};
  BackendRegistry backends_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<store::SqliteLedger> ledger_;
  std::unique_ptr<LedgerWriter> writer_;
  std::unique_ptr<AuditLog> log_;
};

TEST_F(AuditLogTest, RecordsAreDurableOrderedAndHashed) {
  auto a = log_->Record(Event("policy.create"), kAuditSuccess);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->index, 0);
  Sign("s-1");
  auto begun = log_->Begin(Event("policy.update"));
  ASSERT_TRUE(begun.ok());
  EXPECT_EQ(*begun, 2);
  ASSERT_TRUE(log_->Finish(Event("policy.update"), *begun, Status::Ok(), {{"new_version", 2}}).ok());
  ASSERT_TRUE(log_->Finish(Event("policy.delete"), 9, NotFoundError("no such tenant")).ok());

  auto records = AllRecords();
  ASSERT_EQ(records.size(), 5u);
  EXPECT_EQ(records[1].action, "sign.digest");
  EXPECT_EQ(records[1].actor, "ak-signer");
  EXPECT_EQ(records[2].outcome, kAuditAttempted);
  EXPECT_EQ(records[3].outcome, kAuditSuccess);
  EXPECT_EQ(records[3].detail_json, R"({"attempt_index":2,"new_version":2,"version":1})");
  EXPECT_EQ(records[4].outcome, kAuditFailure);
  EXPECT_EQ(json::parse(records[4].detail_json)["error"], "not_found");
  for (const auto& r : records) EXPECT_EQ(r.leaf_hash, audit::EntryLeafHash(r));
  EXPECT_EQ(log_->head().size, 5u);

  AuditEvent bad = Event("x.y");
  bad.detail = {{"ratio", 0.5}};
  EXPECT_EQ(log_->Record(bad, kAuditSuccess).status().code(), StatusCode::kInvalidArgument);
  bad.detail = {{"blob", std::string(5000, 'x')}};
  EXPECT_EQ(log_->Record(bad, kAuditSuccess).status().code(), StatusCode::kInvalidArgument);
  AuditEvent odd = Event("x.y");
  odd.target = "bad\xff utf8";
  ASSERT_TRUE(log_->Record(odd, kAuditSuccess).ok());
  EXPECT_EQ(AllRecords().back().target, "bad? utf8");
}

TEST_F(AuditLogTest, CheckpointsAreSignedPeriodicallyByTheInjectedClock) {
  ASSERT_TRUE(log_->Record(Event("policy.create"), kAuditSuccess).ok());
  log_->Tick();  // no checkpoint yet: the first one is due at once
  auto first = log_->Latest();
  ASSERT_TRUE(first.ok() && first->has_value());
  EXPECT_EQ((*first)->tree_size, 1);

  Sign("s-1");
  clock_.Advance(std::chrono::seconds(59));
  log_->Tick();
  EXPECT_EQ((*log_->Latest())->tree_size, 1) << "not due before the interval";
  clock_.Advance(std::chrono::seconds(1));
  log_->Tick();
  auto second = log_->Latest();
  EXPECT_EQ((*second)->tree_size, 2);
  EXPECT_EQ((*second)->timestamp, clock_.Now());

  // On demand: an unchanged tree returns the latest instead of a new row.
  auto again = log_->Checkpoint();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id, (*second)->id);
  auto forced = log_->Checkpoint(/*force=*/true);
  EXPECT_GT(forced->id, (*second)->id);

  // The note is what was signed, with the recorded public key.
  auto keys = ledger_->ListAuditKeys();
  ASSERT_EQ(keys->size(), 1u);
  auto cp = VerifyStoredCheckpoint(*forced, *keys);
  ASSERT_TRUE(cp.ok()) << cp.status().ToString();
  EXPECT_EQ(cp->origin, "test.example/audit");
  EXPECT_EQ(cp->tree_size, 2u);
  AuditCheckpointRecord forged = *forced;
  forged.root_hash[0] ^= 1;
  EXPECT_FALSE(VerifyStoredCheckpoint(forged, *keys).ok());
  forged = *forced;
  forged.note[forged.note.size() - 2] ^= 1;
  EXPECT_FALSE(VerifyStoredCheckpoint(forged, *keys).ok());
  EXPECT_TRUE(VerifyAll().ok()) << VerifyAll().message;
}

TEST_F(AuditLogTest, BackgroundThreadCheckpointsAndStopAnchorsEverything) {
  ASSERT_TRUE(log_->Record(Event("policy.create"), kAuditSuccess).ok());
  Close();
  // The final checkpoint on stop covers every record.
  auto ledger = store::SqliteLedger::Open(db_path_);
  ASSERT_TRUE(ledger.ok());
  auto latest = (*ledger)->LatestAuditCheckpoint();
  ASSERT_TRUE(latest.ok() && latest->has_value());
  EXPECT_EQ((*latest)->tree_size, 1);
  ledger->reset();
  Open(std::chrono::milliseconds(1));
  EXPECT_EQ(log_->head().size, 1u);
  ASSERT_TRUE(log_->Record(Event("policy.update"), kAuditSuccess).ok());
  log_->Start();
  // The thread follows the injected clock: once it has moved past the
  // interval, the next poll signs. Bounded wait for that, no sleeping.
  clock_.Advance(std::chrono::seconds(61));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int64_t size = 0;
  while (size != 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
    auto cp = log_->Latest();
    if (cp.ok() && cp->has_value()) size = (*cp)->tree_size;
  }
  EXPECT_EQ(size, 2);
}

TEST_F(AuditLogTest, ProofsFromTheStoreVerifyAgainstCheckpoints) {
  for (int i = 0; i < 40; ++i) {
    if (i % 3 == 0) {
      ASSERT_TRUE(log_->Record(Event("policy.update"), kAuditSuccess).ok());
    } else {
      Sign("s-" + std::to_string(i));
    }
  }
  auto small = log_->Checkpoint(true);
  for (int i = 0; i < 25; ++i) Sign("t-" + std::to_string(i));
  auto large = log_->Checkpoint(true);
  ASSERT_TRUE(small.ok() && large.ok());
  auto records = AllRecords();
  for (int64_t index : {0, 1, 17, 39, 64}) {
    auto proof = log_->InclusionProof(index, large->tree_size);
    ASSERT_TRUE(proof.ok()) << proof.status().ToString();
    EXPECT_EQ(proof->root_hash, large->root_hash);
    EXPECT_EQ(proof->leaf_hash, audit::EntryLeafHash(records[index]));
    EXPECT_TRUE(audit::VerifyInclusion(proof->leaf_hash, index, large->tree_size, proof->path, large->root_hash).ok());
  }
  auto consistency = log_->ConsistencyProof(small->tree_size, large->tree_size);
  ASSERT_TRUE(consistency.ok()) << consistency.status().ToString();
  EXPECT_EQ(consistency->from_root, small->root_hash);
  EXPECT_TRUE(audit::VerifyConsistency(small->tree_size, large->tree_size, small->root_hash, large->root_hash,
                                       consistency->path)
                  .ok());
  EXPECT_EQ(log_->InclusionProof(65, 65).status().details().at("field"), "index");
  EXPECT_EQ(log_->InclusionProof(0, 66).status().details().at("field"), "size");
  EXPECT_EQ(log_->ConsistencyProof(5, 66).status().details().at("field"), "to");
  EXPECT_EQ(log_->ConsistencyProof(6, 5).status().details().at("field"), "from");
}

TEST_F(AuditLogTest, RestartContinuesTheSameTree) {
  for (int i = 0; i < 20; ++i) Sign("a-" + std::to_string(i));
  ASSERT_TRUE(log_->Checkpoint().ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(log_->Record(Event("policy.update"), kAuditSuccess).ok());
  // A crash: no final checkpoint, five records unanchored.
  writer_->Stop();
  log_.release();  // NOLINT: skip the destructor's final checkpoint, as a crash would
  writer_.reset();
  ledger_.reset();
  Open();
  EXPECT_EQ(log_->head().size, 25u);
  for (int i = 0; i < 7; ++i) Sign("b-" + std::to_string(i));
  ASSERT_TRUE(log_->Checkpoint().ok());
  audit::LogVerification v = VerifyAll();
  EXPECT_TRUE(v.ok()) << v.message;
  EXPECT_EQ(v.verified_size, 32u);
}

TEST_F(AuditLogTest, StartRefusesATamperedDatabase) {
  for (int i = 0; i < 20; ++i) Sign("a-" + std::to_string(i));
  ASSERT_TRUE(log_->Checkpoint().ok());
  for (int i = 0; i < 3; ++i) Sign("b-" + std::to_string(i));
  writer_->Stop();
  log_.release();  // NOLINT: crash, no final checkpoint
  writer_.reset();
  ledger_.reset();
  auto exec = [&](const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(db_path_.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);
  };
  auto restore = [&] {
    auto ledger = store::SqliteLedger::Open(db_path_);
    EXPECT_TRUE(ledger.ok());
    return RestoreAuditTree(**ledger).status();
  };
  // An edit in the unanchored tail is named by index.
  exec("UPDATE audit_entries SET actor = 'mallory' WHERE idx = 21");
  Status st = restore();
  EXPECT_EQ(st.code(), StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("entry 21"), std::string::npos) << st.ToString();
  exec("UPDATE audit_entries SET actor = 'ak-signer' WHERE idx = 21");
  EXPECT_TRUE(restore().ok());
  // A stored tree that no longer matches the signed checkpoint (leaf 17 is
  // read for the root at size 20; leaves 0..15 are behind a stored node).
  exec("UPDATE audit_entries SET leaf_hash = zeroblob(32) WHERE idx = 17");
  st = restore();
  EXPECT_EQ(st.code(), StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("latest checkpoint"), std::string::npos) << st.ToString();
  // A forged checkpoint.
  exec("UPDATE audit_checkpoints SET tree_size = 21");
  EXPECT_EQ(restore().code(), StatusCode::kDataLoss);
}

// Fail-closed: with the audit table refusing inserts, records fail, nothing
// lands, and once it recovers the tree continues without a hole.
TEST_F(AuditLogTest, AuditStorageFailureRefusesAndRecovers) {
  ASSERT_TRUE(log_->Record(Event("policy.create"), kAuditSuccess).ok());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path_.c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  ASSERT_EQ(sqlite3_exec(db,
                         "CREATE TRIGGER audit_down BEFORE INSERT ON audit_entries "
                         "BEGIN SELECT RAISE(ABORT, 'injected'); END",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  auto refused = log_->Begin(Event("policy.delete"));
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  LedgerEntry row;
  row.tenant_id = "acme";
  row.key_id = "k";
  row.request_id = "lost";
  std::promise<Status> signed_row;
  writer_->Submit({row}, [&](const Status& st, std::vector<LedgerEntry>&) { signed_row.set_value(st); });
  EXPECT_FALSE(signed_row.get_future().get().ok());
  EXPECT_FALSE(*ledger_->HasRequest("acme", "lost"));
  ASSERT_EQ(sqlite3_exec(db, "DROP TRIGGER audit_down", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto later = log_->Record(Event("policy.update"), kAuditSuccess);
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(later->index, 1);
  ASSERT_TRUE(log_->Checkpoint().ok());
  EXPECT_TRUE(VerifyAll().ok()) << VerifyAll().message;
}

}  // namespace
}  // namespace concierge::core
