// A conformance test suite for any concierge::LedgerStore implementation.
//
// Usage, in exactly one test .cc per implementation:
//
//   #include "store/ledger_test_suite.h"
//   INSTANTIATE_TEST_SUITE_P(Sqlite, LedgerConformanceTest,
//                            ::testing::Values(LedgerTestParam{"File", MakeHarness}),
//                            LedgerTestParamName);
//   (and the same for ResignConformanceTest, the mass re-sign cases)
//
// The factory returns a LedgerHarness over a fresh, migrated, empty database,
// distinct on every call. Everything goes through the LedgerStore interface,
// except the sabotage the harness performs "as another process would"
// (raw SQL on a separate connection). Engine-specific checks (busy timeouts,
// WAL checkpoints, pools) belong in that engine's own test file.
#ifndef CONCIERGE_STORE_LEDGER_TEST_SUITE_H_
#define CONCIERGE_STORE_LEDGER_TEST_SUITE_H_

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "concierge/ledger.h"
#include "concierge/store.h"
#include "store/store_test_util.h"

namespace concierge::store::conformance {

class LedgerHarness {
 public:
  virtual ~LedgerHarness() = default;
  virtual LedgerStore& ledger() = 0;
  // Closes the ledger and opens it again on the same database.
  virtual void Reopen() = 0;
  // Raw SQL on a separate connection, as another process would run it.
  virtual Status Exec(const std::string& sql) = 0;
  // First column of the first row of `sql`, -1 on error.
  virtual int64_t Count(const std::string& sql) = 0;
  // SQL that makes the insertion of a row with request_id 'poison' fail, and
  // SQL that undoes it (triggers differ between engines).
  virtual std::string PoisonTriggerSql() const = 0;
  virtual std::string DropPoisonTriggerSql() const = 0;
  // Reopens the ledger so that AppendBatch waits at most `timeout` for a
  // write lock held elsewhere.
  virtual void ReopenWithLockTimeout(std::chrono::milliseconds timeout) = 0;
  // On a connection the harness keeps: starts a write transaction that holds
  // the lock every append takes (SQLite's write lock, PostgreSQL's append
  // advisory lock) and runs `sql` in it; the second call rolls it back.
  virtual Status BeginConcurrentAppend(const std::string& sql) = 0;
  virtual Status RollbackConcurrentAppend() = 0;
  // A Store on the same database (for the re-sign job records the re-sign
  // cases need), opened on first use and kept across Reopen.
  virtual Store& store() = 0;
};

struct LedgerTestParam {
  std::string name;  // test-name suffix, [A-Za-z0-9_] only
  std::function<std::unique_ptr<LedgerHarness>()> factory;
};

// A parameter whose factory builds a harness of type H (default-constructible,
// with bool ok() saying whether it could open its ledger).
template <typename H>
LedgerTestParam HarnessParam(std::string name) {
  return LedgerTestParam{std::move(name), []() -> std::unique_ptr<LedgerHarness> {
                           auto h = std::make_unique<H>();
                           if (!h->ok()) return nullptr;
                           return h;
                         }};
}

inline std::string LedgerTestParamName(const ::testing::TestParamInfo<LedgerTestParam>& info) {
  return info.param.name;
}

inline LedgerEntry MakeEntry(const std::string& tenant, const std::string& key,
                             int64_t signed_at_ms, const std::string& request_id) {
  LedgerEntry e;
  e.tenant_id = tenant;
  e.key_id = key;
  e.key_version = 3;
  e.cert_serial = "0a:1b";
  e.algorithm = "ES256";
  e.kind = "digest";
  e.digest_hex = std::string(64, 'd');
  e.asset_id = "asset-" + request_id;
  e.request_id = request_id;
  e.api_key_id = "ak-1";
  e.client_address = "192.0.2.7";
  e.policy_hash = std::string(64, 'p');
  e.signed_at = T(signed_at_ms);
  return e;
}

inline std::vector<LedgerEntry> MakeBatch(const std::string& tenant, const std::string& key, int n,
                                          int64_t first_ms, const std::string& request_prefix) {
  std::vector<LedgerEntry> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(MakeEntry(tenant, key, first_ms + i, request_prefix + std::to_string(i)));
  }
  return out;
}

inline void ExpectSameEntry(const LedgerEntry& a, const LedgerEntry& b) {
  EXPECT_EQ(a.seq, b.seq);
  EXPECT_EQ(a.tenant_id, b.tenant_id);
  EXPECT_EQ(a.key_id, b.key_id);
  EXPECT_EQ(a.key_version, b.key_version);
  EXPECT_EQ(a.cert_serial, b.cert_serial);
  EXPECT_EQ(a.algorithm, b.algorithm);
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.digest_hex, b.digest_hex);
  EXPECT_EQ(a.asset_id, b.asset_id);
  EXPECT_EQ(a.request_id, b.request_id);
  EXPECT_EQ(a.api_key_id, b.api_key_id);
  EXPECT_EQ(a.client_address, b.client_address);
  EXPECT_EQ(a.policy_hash, b.policy_hash);
  EXPECT_EQ(a.signed_at, b.signed_at);
}

// Every row matching `q` (whose cursor and limit are overwritten), page by page.
inline std::vector<LedgerEntry> ListAll(LedgerStore& ledger, LedgerQuery q, int limit = 1000,
                                        int* pages = nullptr) {
  std::vector<LedgerEntry> out;
  q.after_seq = 0;
  q.limit = limit;
  for (int page_count = 1;; ++page_count) {
    StatusOr<LedgerPage> page = ledger.ListLedger(q);
    EXPECT_TRUE(IsOk(page.status()));
    if (!page.ok()) return out;
    out.insert(out.end(), page->entries.begin(), page->entries.end());
    if (page->next_cursor == 0) {
      if (pages != nullptr) *pages = page_count;
      return out;
    }
    EXPECT_EQ(page->next_cursor, page->entries.back().seq);
    q.after_seq = page->next_cursor;
  }
}

class LedgerConformanceTest : public ::testing::TestWithParam<LedgerTestParam> {
 protected:
  void SetUp() override {
    h_ = GetParam().factory();
    ASSERT_NE(h_, nullptr);
  }
  LedgerStore& ledger() { return h_->ledger(); }

  std::unique_ptr<LedgerHarness> h_;
};

TEST_P(LedgerConformanceTest, AppendAndReadBackAllFields) {
  std::vector<LedgerEntry> batch = MakeBatch("acme", "acme-v1", 3, 1000, "req-");
  batch[1].kind = "cose";
  batch[1].cert_serial = "";
  batch[1].asset_id = "";
  batch[2].signed_at = T(1000) + std::chrono::microseconds(2500);  // kept to the millisecond
  ASSERT_TRUE(IsOk(ledger().AppendBatch(batch)));
  for (const LedgerEntry& e : batch) EXPECT_GT(e.seq, 0);

  LedgerQuery q;
  q.tenant_id = "acme";
  StatusOr<LedgerPage> page = ledger().ListLedger(q);
  ASSERT_TRUE(IsOk(page.status()));
  ASSERT_EQ(page->entries.size(), 3u);
  EXPECT_EQ(page->next_cursor, 0);
  batch[2].signed_at = T(1002);
  for (size_t i = 0; i < batch.size(); ++i) {
    SCOPED_TRACE(i);
    ExpectSameEntry(page->entries[i], batch[i]);
  }
  // Empty batches are a no-op.
  std::vector<LedgerEntry> none;
  EXPECT_TRUE(IsOk(ledger().AppendBatch(none)));
}

// Text the engines must store byte for byte, including what array literals,
// CSV or SQL quoting would trip over, in one large batch.
TEST_P(LedgerConformanceTest, LargeBatchWithAwkwardTextRoundTrips) {
  const std::vector<std::string> awkward = {"",
                                            "\"",
                                            "\\",
                                            "\\\"",
                                            "{a,b}",
                                            "NULL",
                                            "null",
                                            "a,b",
                                            "'; DROP TABLE ledger; --",
                                            "tab\there",
                                            "line\nbreak",
                                            "ünïcødé ✓",
                                            std::string(300, 'x')};
  std::vector<LedgerEntry> batch = MakeBatch("acme", "acme-v1", 5000, 0, "big-");
  for (size_t i = 0; i < batch.size(); ++i) {
    batch[i].asset_id = awkward[i % awkward.size()];
    batch[i].client_address = awkward[(i + 3) % awkward.size()];
    batch[i].cert_serial = awkward[(i + 7) % awkward.size()];
    batch[i].key_version = static_cast<int64_t>(i) * 1'000'000'007;
  }
  ASSERT_TRUE(IsOk(ledger().AppendBatch(batch)));
  std::vector<LedgerEntry> back = ListAll(ledger(), LedgerQuery{.tenant_id = "acme"});
  ASSERT_EQ(back.size(), batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    SCOPED_TRACE(i);
    ExpectSameEntry(back[i], batch[i]);
    if (i > 0) {
      EXPECT_GT(back[i].seq, back[i - 1].seq);
    }
  }
}

TEST_P(LedgerConformanceTest, SeqStrictlyIncreasesAcrossBatches) {
  int64_t last = 0;
  for (int b = 0; b < 10; ++b) {
    std::vector<LedgerEntry> batch =
        MakeBatch(b % 2 ? "acme" : "globex", "k", 7, b * 100, "b" + std::to_string(b) + "-");
    batch[0].seq = 999999;  // whatever the caller left there is overwritten
    ASSERT_TRUE(IsOk(ledger().AppendBatch(batch)));
    for (const LedgerEntry& e : batch) {
      EXPECT_GT(e.seq, last);
      last = e.seq;
    }
  }
}

TEST_P(LedgerConformanceTest, CursorPagingReturnsEveryRowOnce) {
  // Interleave another tenant so the tenant filter and cursor are exercised.
  for (int b = 0; b < 5; ++b) {
    std::vector<LedgerEntry> mine = MakeBatch("acme", "acme-v1", 500, b * 1000, "a-");
    std::vector<LedgerEntry> other = MakeBatch("globex", "globex-v1", 100, b * 1000, "g-");
    ASSERT_TRUE(IsOk(ledger().AppendBatch(mine)));
    ASSERT_TRUE(IsOk(ledger().AppendBatch(other)));
  }
  LedgerQuery q;
  q.tenant_id = "acme";
  q.limit = 1000;
  std::vector<size_t> sizes;
  std::vector<LedgerEntry> all;
  while (true) {
    StatusOr<LedgerPage> page = ledger().ListLedger(q);
    ASSERT_TRUE(IsOk(page.status()));
    sizes.push_back(page->entries.size());
    all.insert(all.end(), page->entries.begin(), page->entries.end());
    if (page->next_cursor == 0) break;
    q.after_seq = page->next_cursor;
  }
  EXPECT_EQ(sizes, (std::vector<size_t>{1000, 1000, 500}));
  ASSERT_EQ(all.size(), 2500u);
  std::set<int64_t> seqs;
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].tenant_id, "acme");
    if (i > 0) {
      EXPECT_GT(all[i].seq, all[i - 1].seq);
    }
    seqs.insert(all[i].seq);
  }
  EXPECT_EQ(seqs.size(), 2500u);

  // A page that ends exactly on the last row still says "maybe more"; the
  // next one is empty with cursor 0.
  int pages = 0;
  EXPECT_EQ(ListAll(ledger(), LedgerQuery{.tenant_id = "acme"}, 500, &pages).size(), 2500u);
  EXPECT_EQ(pages, 6);
  EXPECT_TRUE(ListAll(ledger(), LedgerQuery{.tenant_id = "nobody"}).empty());
}

TEST_P(LedgerConformanceTest, KeyAndTimeFilters) {
  // acme-v1 signs at 0..99 ms, acme-v2 at 100..199, interleaved in seq with
  // globex rows under a key id that is not acme's.
  std::vector<LedgerEntry> v1 = MakeBatch("acme", "acme-v1", 100, 0, "v1-");
  std::vector<LedgerEntry> g = MakeBatch("globex", "acme-v1-lookalike", 50, 0, "g-");
  std::vector<LedgerEntry> v2 = MakeBatch("acme", "acme-v2", 100, 100, "v2-");
  ASSERT_TRUE(IsOk(ledger().AppendBatch(v1)));
  ASSERT_TRUE(IsOk(ledger().AppendBatch(g)));
  ASSERT_TRUE(IsOk(ledger().AppendBatch(v2)));

  LedgerQuery q{.tenant_id = "acme", .key_id = "acme-v1"};
  EXPECT_EQ(ListAll(ledger(), q, 30).size(), 100u);
  q.key_id = "acme-v2";
  EXPECT_EQ(ListAll(ledger(), q, 30).size(), 100u);

  // from inclusive, to exclusive.
  q = LedgerQuery{.tenant_id = "acme", .from = T(90), .to = T(110)};
  std::vector<LedgerEntry> window = ListAll(ledger(), q, 7);
  ASSERT_EQ(window.size(), 20u);
  EXPECT_EQ(window.front().signed_at, T(90));
  EXPECT_EQ(window.back().signed_at, T(109));

  q.key_id = "acme-v1";
  window = ListAll(ledger(), q, 7);
  ASSERT_EQ(window.size(), 10u);
  for (const LedgerEntry& e : window) EXPECT_EQ(e.key_id, "acme-v1");

  q = LedgerQuery{.tenant_id = "acme", .key_id = "acme-v2", .from = T(150)};
  EXPECT_EQ(ListAll(ledger(), q).size(), 50u);
  q = LedgerQuery{.tenant_id = "acme", .key_id = "acme-v2", .to = T(150)};
  EXPECT_EQ(ListAll(ledger(), q).size(), 50u);
  // The key filter does not cross tenants.
  q = LedgerQuery{.tenant_id = "globex", .key_id = "acme-v1"};
  EXPECT_TRUE(ListAll(ledger(), q).empty());
  // The cursor combines with the filters.
  q = LedgerQuery{.tenant_id = "acme", .key_id = "acme-v1", .after_seq = v1[49].seq};
  EXPECT_EQ(ListAll(ledger(), q).size(), 100u);  // ListAll resets the cursor
  StatusOr<LedgerPage> page = ledger().ListLedger(q);
  ASSERT_TRUE(IsOk(page.status()));
  ASSERT_EQ(page->entries.size(), 50u);
  EXPECT_EQ(page->entries.front().seq, v1[50].seq);
}

TEST_P(LedgerConformanceTest, ListValidatesQuery) {
  for (int limit : {0, -1, 1001}) {
    Status s = ledger().ListLedger(LedgerQuery{.tenant_id = "acme", .limit = limit}).status();
    EXPECT_TRUE(HasCode(s, StatusCode::kInvalidArgument));
    EXPECT_EQ(s.details().count("field") ? s.details().at("field") : "", "limit") << s.ToString();
    EXPECT_NE(s.message().find("limit"), std::string::npos);
  }
  EXPECT_TRUE(IsOk(ledger().ListLedger(LedgerQuery{.tenant_id = "acme", .limit = 1}).status()));
  EXPECT_TRUE(IsOk(ledger().ListLedger(LedgerQuery{.tenant_id = "acme", .limit = 1000}).status()));
  EXPECT_TRUE(HasCode(ledger().ListLedger(LedgerQuery{}).status(), StatusCode::kInvalidArgument));
  EXPECT_TRUE(HasCode(ledger().ListLedger(LedgerQuery{.tenant_id = "a", .after_seq = -1}).status(),
                      StatusCode::kInvalidArgument));
}

TEST_P(LedgerConformanceTest, AppendValidatesEntriesBeforeWriting) {
  std::vector<LedgerEntry> batch = MakeBatch("acme", "k", 3, 0, "r");
  batch[2].key_id = "";
  Status s = ledger().AppendBatch(batch);
  EXPECT_TRUE(HasCode(s, StatusCode::kInvalidArgument));
  EXPECT_EQ(s.details().at("field"), "key_id");
  for (const LedgerEntry& e : batch) EXPECT_EQ(e.seq, 0);
  EXPECT_FALSE(*ledger().HasRequest("acme", "r0"));

  // PostgreSQL text cannot hold NUL; both engines refuse it alike.
  batch = MakeBatch("acme", "k", 3, 0, "r");
  batch[1].asset_id = std::string("a\0b", 3);
  s = ledger().AppendBatch(batch);
  EXPECT_TRUE(HasCode(s, StatusCode::kInvalidArgument));
  EXPECT_EQ(s.details().at("field"), "asset_id");
  EXPECT_NE(s.message().find("entry 1"), std::string::npos) << s.message();
  EXPECT_FALSE(*ledger().HasRequest("acme", "r0"));
}

TEST_P(LedgerConformanceTest, CountByMinuteSince) {
  using std::chrono::milliseconds;
  using std::chrono::minutes;
  // Minute-aligned base so bucket edges are where the test says.
  const TimePoint base = TimePoint(minutes(29'000'000));
  const int64_t base_minute = 29'000'000;
  auto at = [&](milliseconds d) { return base + d; };
  std::vector<LedgerEntry> batch;
  auto add = [&](const std::string& tenant, TimePoint t) {
    LedgerEntry e = MakeEntry(tenant, tenant + "-k", 0, "r" + std::to_string(batch.size()));
    e.signed_at = t;
    batch.push_back(e);
  };
  add("acme", at(milliseconds(-1)));        // minute -1: before `since`, not counted
  add("acme", at(milliseconds(0)));         // minute 0
  add("acme", at(milliseconds(59'999)));    // minute 0
  add("acme", at(milliseconds(60'000)));    // minute 1
  add("globex", at(milliseconds(30'000)));  // minute 0
  add("globex", at(minutes(5)));            // minute 5
  add("globex", at(minutes(5) + milliseconds(1)));
  add("globex", at(minutes(5) + milliseconds(2)));
  add("Zeta", at(milliseconds(0)));  // uppercase sorts first, bytewise, on every engine
  ASSERT_TRUE(IsOk(ledger().AppendBatch(batch)));

  StatusOr<std::vector<MinuteCount>> counts = ledger().CountByMinuteSince(base);
  ASSERT_TRUE(IsOk(counts.status()));
  std::vector<std::string> got;
  for (const MinuteCount& c : *counts) {
    got.push_back(c.tenant_id + "@" + std::to_string(c.minute - base_minute) + "=" +
                  std::to_string(c.count));
  }
  EXPECT_EQ(got, (std::vector<std::string>{"Zeta@0=1", "acme@0=2", "acme@1=1", "globex@0=1",
                                           "globex@5=3"}));
  EXPECT_EQ(ledger().CountByMinuteSince(at(minutes(6)))->size(), 0u);
  StatusOr<std::vector<MinuteCount>> from_before =
      ledger().CountByMinuteSince(at(milliseconds(-1)));
  ASSERT_TRUE(IsOk(from_before.status()));
  ASSERT_GE(from_before->size(), 2u);
  EXPECT_EQ((*from_before)[1].tenant_id, "acme");
  EXPECT_EQ((*from_before)[1].minute, base_minute - 1);
}

TEST_P(LedgerConformanceTest, HasRequest) {
  std::vector<LedgerEntry> batch = MakeBatch("acme", "k", 2, 0, "req-");
  ASSERT_TRUE(IsOk(ledger().AppendBatch(batch)));
  EXPECT_TRUE(*ledger().HasRequest("acme", "req-0"));
  EXPECT_TRUE(*ledger().HasRequest("acme", "req-1"));
  EXPECT_FALSE(*ledger().HasRequest("acme", "req-2"));
  EXPECT_FALSE(*ledger().HasRequest("globex", "req-0"));  // scoped to the tenant
}

TEST_P(LedgerConformanceTest, FailingBatchLeavesNoPartialRows) {
  std::vector<LedgerEntry> first = MakeBatch("acme", "k", 5, 0, "ok-");
  ASSERT_TRUE(IsOk(ledger().AppendBatch(first)));
  // Another connection installs a trigger that rejects one row in the middle
  // of the next batch, after earlier rows of that batch were inserted. (It
  // also changes the schema under a cached INSERT, which must re-prepare.)
  ASSERT_TRUE(IsOk(h_->Exec(h_->PoisonTriggerSql())));
  std::vector<LedgerEntry> bad = MakeBatch("acme", "k", 10, 100, "bad-");
  bad[6].request_id = "poison";
  Status s = ledger().AppendBatch(bad);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("appending to ledger"), std::string::npos) << s.ToString();
  for (const LedgerEntry& e : bad) EXPECT_EQ(e.seq, 0);
  EXPECT_EQ(h_->Count("SELECT COUNT(*) FROM ledger"), 5);
  EXPECT_FALSE(*ledger().HasRequest("acme", "bad-0"));
  EXPECT_EQ(ListAll(ledger(), LedgerQuery{.tenant_id = "acme"}).size(), 5u);

  // The writer is usable again, and seq keeps increasing.
  ASSERT_TRUE(IsOk(h_->Exec(h_->DropPoisonTriggerSql())));
  std::vector<LedgerEntry> after = MakeBatch("acme", "k", 3, 200, "after-");
  ASSERT_TRUE(IsOk(ledger().AppendBatch(after)));
  EXPECT_GT(after[0].seq, first.back().seq);
  EXPECT_EQ(h_->Count("SELECT COUNT(*) FROM ledger"), 8);
}

TEST_P(LedgerConformanceTest, DroppedTableFailsCleanly) {
  ASSERT_TRUE(IsOk(h_->Exec("DROP TABLE ledger")));
  std::vector<LedgerEntry> batch = MakeBatch("acme", "k", 3, 0, "r");
  EXPECT_FALSE(ledger().AppendBatch(batch).ok());
  for (const LedgerEntry& e : batch) EXPECT_EQ(e.seq, 0);
  EXPECT_FALSE(ledger().ListLedger(LedgerQuery{.tenant_id = "acme"}).ok());
}

TEST_P(LedgerConformanceTest, WriteLockHeldElsewhereIsUnavailableAndReadsGoOn) {
  h_->ReopenWithLockTimeout(std::chrono::milliseconds(50));
  std::vector<LedgerEntry> before = MakeBatch("acme", "k", 2, 0, "before-");
  ASSERT_TRUE(IsOk(ledger().AppendBatch(before)));
  // Another instance in the middle of an append.
  ASSERT_TRUE(IsOk(h_->BeginConcurrentAppend(
      "INSERT INTO ledger (tenant_id, key_id, key_version, algorithm, kind, digest_hex, "
      "request_id, "
      "api_key_id, client_address, policy_hash, signed_at) VALUES ('acme', 'k', 1, 'ES256', 'raw', "
      "'00', 'uncommitted', '', '', '', 5)")));
  std::vector<LedgerEntry> batch = MakeBatch("acme", "k", 2, 10, "r");
  Status st = ledger().AppendBatch(batch);
  EXPECT_TRUE(HasCode(st, StatusCode::kUnavailable)) << st.ToString();
  for (const LedgerEntry& e : batch) EXPECT_EQ(e.seq, 0);
  // Reads are not blocked by the writer, and do not see its uncommitted row.
  EXPECT_EQ(ListAll(ledger(), LedgerQuery{.tenant_id = "acme"}).size(), 2u);
  EXPECT_FALSE(*ledger().HasRequest("acme", "uncommitted"));
  ASSERT_TRUE(IsOk(h_->RollbackConcurrentAppend()));
  EXPECT_TRUE(IsOk(ledger().AppendBatch(batch)));
}

TEST_P(LedgerConformanceTest, WriterAndConcurrentReaders) {
  constexpr int kBatches = 150;
  constexpr int kBatchRows = 40;
  constexpr int kReaders = 4;
  std::atomic<bool> writer_done{false};
  std::atomic<int> errors{0};
  std::atomic<int> torn_reads{0};
  std::atomic<int64_t> reader_passes{0};

  std::thread writer([&] {
    for (int b = 0; b < kBatches; ++b) {
      std::vector<LedgerEntry> batch =
          MakeBatch("acme", "acme-v1", kBatchRows, b * 1000, "b" + std::to_string(b) + "-");
      if (!ledger().AppendBatch(batch).ok()) ++errors;
    }
    writer_done = true;
  });
  std::vector<std::thread> readers;
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&, r] {
      int64_t last_total = 0;
      // At least a few passes even if the writer is quick.
      for (int pass = 0; !writer_done || pass < 3; ++pass) {
        // One statement is one snapshot: whole batches or nothing.
        StatusOr<std::vector<MinuteCount>> counts = ledger().CountByMinuteSince(T(0));
        if (!counts.ok()) {
          ++errors;
          break;
        }
        int64_t total = 0;
        for (const MinuteCount& c : *counts) total += c.count;
        if (total % kBatchRows != 0 || total < last_total) ++torn_reads;
        last_total = total;
        // Paging across snapshots: still ascending, no duplicates.
        LedgerQuery q{.tenant_id = "acme", .limit = 97 + r};
        int64_t prev = 0;
        while (true) {
          StatusOr<LedgerPage> page = ledger().ListLedger(q);
          if (!page.ok()) {
            ++errors;
            break;
          }
          for (const LedgerEntry& e : page->entries) {
            if (e.seq <= prev || e.tenant_id != "acme" || e.digest_hex.size() != 64) ++torn_reads;
            prev = e.seq;
          }
          if (page->next_cursor == 0) break;
          q.after_seq = page->next_cursor;
        }
        ++reader_passes;
      }
    });
  }
  writer.join();
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(torn_reads.load(), 0);
  EXPECT_GE(reader_passes.load(), kReaders * 3);
  EXPECT_EQ(ListAll(ledger(), LedgerQuery{.tenant_id = "acme"}).size(),
            static_cast<size_t>(kBatches * kBatchRows));
}

TEST_P(LedgerConformanceTest, PersistsAcrossReopen) {
  std::vector<LedgerEntry> batch = MakeBatch("acme", "k", 4, 0, "r");
  ASSERT_TRUE(IsOk(ledger().AppendBatch(batch)));
  h_->Reopen();
  std::vector<LedgerEntry> back = ListAll(ledger(), LedgerQuery{.tenant_id = "acme"});
  ASSERT_EQ(back.size(), 4u);
  for (size_t i = 0; i < back.size(); ++i) ExpectSameEntry(back[i], batch[i]);
  std::vector<LedgerEntry> more = MakeBatch("acme", "k", 1, 10, "more");
  ASSERT_TRUE(IsOk(ledger().AppendBatch(more)));
  EXPECT_GT(more[0].seq, batch.back().seq);
}

}  // namespace concierge::store::conformance

#include "store/ledger_test_suite_resign.h"  // IWYU pragma: export

#endif  // CONCIERGE_STORE_LEDGER_TEST_SUITE_H_
