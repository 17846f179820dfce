// PostgresStore on a real PostgreSQL server that this binary starts once
// (PgEnvironment): the whole store conformance suite, plus what is specific to
// PostgreSQL (dialect rendering, migration lock, write lock, pool, outages).
#include "store/postgres/postgres_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <mutex>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "store/common/sql_records.h"
#include "store/postgres/pg_leader.h"
#include "store/postgres/pg_notify.h"
#include "store/postgres/postgres_ledger.h"
#include "store/migrations/migrations.h"
#include "store/store_test_suite.h"
#include "testing/pg_cluster.h"

namespace concierge::store {
namespace {

using conformance::HasCode;
using conformance::IsOk;
using conformance::MakeApiKey;
using conformance::MakeKey;
using conformance::MakePolicy;
using conformance::StoreConformanceTest;
using conformance::StoreTestParam;
using conformance::T;
using testing::PgEnvironment;

::testing::Environment* const kPg = ::testing::AddGlobalTestEnvironment(new PgEnvironment);

testing::PgCluster& Cluster() { return PgEnvironment::Cluster(); }

std::unique_ptr<PostgresStore> MustOpen(const std::string& url, PostgresOptions opts = {}) {
  StatusOr<std::unique_ptr<PostgresStore>> s = PostgresStore::Open(url, opts);
  EXPECT_TRUE(IsOk(s.status()));
  return s.ok() ? std::move(s).value() : nullptr;
}

std::unique_ptr<Store> OpenFresh(PostgresOptions opts) {
  StatusOr<std::unique_ptr<PostgresStore>> s =
      PostgresStore::Open(Cluster().FreshSchemaUrl(), opts);
  if (!s.ok()) {
    ADD_FAILURE() << s.status().ToString();
    return nullptr;
  }
  return std::move(s).value();
}

// Each store gets a schema of its own (search_path in the URL): an empty
// database as far as the store can tell. "OneConnection" runs every case
// through a single pooled connection, so concurrent cases queue in the pool.
INSTANTIATE_TEST_SUITE_P(Postgres, StoreConformanceTest,
                         ::testing::Values(StoreTestParam{"Pooled", [] { return OpenFresh({}); }},
                                           StoreTestParam{
                                               "OneConnection",
                                               [] { return OpenFresh({.max_connections = 1}); }}),
                         conformance::StoreTestParamName);

// Rows of a query as "a|b|..." strings (`cols` columns), on a connection of our own.
std::vector<std::string> Query(const std::string& url, const std::string& sql, int cols) {
  std::vector<std::string> rows;
  PgConnPtr conn(PQconnectdb(url.c_str()));
  EXPECT_EQ(PQstatus(conn.get()), CONNECTION_OK) << PQerrorMessage(conn.get());
  StatusOr<PgResult> r = PgExec(conn.get(), sql, "test query");
  EXPECT_TRUE(IsOk(r.status()));
  if (!r.ok()) return rows;
  for (int i = 0; i < r->rows(); ++i) {
    std::string line;
    for (int c = 0; c < cols; ++c) line += (c > 0 ? "|" : "") + r->row(i).ColumnText(c);
    rows.push_back(line);
  }
  return rows;
}

// The schema a fresh-schema URL points at (its search_path).
std::string SchemaName(const std::string& url) { return url.substr(url.find("%3D") + 3); }

// --- the migration list ------------------------------------------------------------

TEST(PgMigrationsTest, OneListTwoDialects) {
  const std::vector<Migration>& pg = PostgresMigrations();
  const std::vector<Migration>& lite = SqliteMigrations();
  EXPECT_TRUE(IsOk(ValidateMigrations(pg)));
  ASSERT_EQ(pg.size(), lite.size());
  for (size_t i = 0; i < pg.size(); ++i) {
    EXPECT_EQ(pg[i].version, lite[i].version);
    EXPECT_EQ(pg[i].name, lite[i].name);
  }
  // The ledger's seq is an identity column on PostgreSQL, AUTOINCREMENT on SQLite.
  EXPECT_NE(pg[2].sql.find("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"),
            std::string_view::npos);
  EXPECT_NE(lite[2].sql.find("INTEGER PRIMARY KEY AUTOINCREMENT"), std::string_view::npos);
  EXPECT_EQ(pg[0].sql.find("INTEGER"), std::string_view::npos)
      << "32-bit columns would overflow on times";
}

TEST(PgMigrationsTest, RenderingAndValidation) {
  EXPECT_EQ(RenderMigrationSql("a {{INT}} b {{BLOB}} {{SEQ_PK}}", SqlDialect::kSqlite),
            "a INTEGER b BLOB INTEGER PRIMARY KEY AUTOINCREMENT");
  EXPECT_EQ(RenderMigrationSql("a {{INT}} b {{BLOB}}", SqlDialect::kPostgres), "a BIGINT b BYTEA");
  EXPECT_EQ(RenderMigrationSql("x {{NOPE}} {", SqlDialect::kPostgres), "x {{NOPE}} {");
  EXPECT_FALSE(ValidateMigrations({{1, "a", "CREATE TABLE t (x {{NOPE}})"}}).ok());
}

// --- PostgreSQL specifics ---------------------------------------------------------------

// information_schema and pg_indexes of the URL's schema, as comparable rows.
std::vector<std::string> SchemaOf(const std::string& url) {
  std::vector<std::string> out =
      Query(url,
            "SELECT table_name, column_name, data_type, is_nullable, "
            "COALESCE(column_default, ''), is_identity FROM information_schema.columns "
            "WHERE table_schema = current_schema() ORDER BY table_name, column_name",
            6);
  for (std::string& row :
       Query(url,
             "SELECT tablename, indexname, regexp_replace(indexdef, ' ON [a-z0-9_]+\\.', ' ON ') "
             "FROM pg_indexes WHERE schemaname = current_schema() ORDER BY indexname",
             3)) {
    out.push_back(std::move(row));
  }
  return out;
}

TEST(PostgresStoreTest, StepwiseMigrationYieldsSameSchemaAsFresh) {
  const std::string fresh = Cluster().FreshSchemaUrl();
  ASSERT_TRUE(IsOk(MustOpen(fresh)->Migrate()));
  const std::vector<std::string> want = SchemaOf(fresh);
  ASSERT_GT(want.size(), 40u);
  for (const std::string& row : want) {
    // Every integer column is 64-bit (times are unix milliseconds).
    EXPECT_EQ(row.find("|integer|"), std::string::npos) << row;
    EXPECT_EQ(row.find("|smallint|"), std::string::npos) << row;
  }

  const int latest = static_cast<int>(PostgresMigrations().size());
  for (int from = 1; from < latest; ++from) {
    SCOPED_TRACE("from version " + std::to_string(from));
    const std::string url = Cluster().FreshSchemaUrl();
    ASSERT_TRUE(IsOk(MustOpen(url)->Migrate(from)));
    if (from == 1) {
      // Data written under v1 must survive and pick up v2's defaults.
      ASSERT_EQ(Cluster().Exec("SET search_path = " + SchemaName(url) +
                               "; INSERT INTO tenants VALUES ('old', 1, 0, 1, 1);"
                               "INSERT INTO policies VALUES ('old', 1, '{}', 'h', 'me', 1);"
                               "INSERT INTO keys VALUES ('old-v1', 'old', 1, 'ES256', 'software', "
                               "'software://x', 'active', 'pem', 'fp', 1, 1, NULL);"),
                "");
    }
    auto s = MustOpen(url);  // reopen between steps, as an upgrade would
    ASSERT_TRUE(IsOk(s->Migrate()));
    EXPECT_EQ(*s->SchemaVersion(), latest);
    if (from == 1) {
      StatusOr<KeyRecord> k = s->GetActiveKey("old");
      ASSERT_TRUE(IsOk(k.status()));
      EXPECT_EQ(k->attestation, "");
    }
    EXPECT_EQ(SchemaOf(url), want);
  }
}

TEST(PostgresStoreTest, RecordsEachMigrationAndRefusesNewerSchema) {
  const std::string url = Cluster().FreshSchemaUrl();
  FakeClock clock(T(123));
  auto s = MustOpen(url, PostgresOptions{.clock = &clock});
  ASSERT_TRUE(IsOk(s->Migrate()));
  std::vector<std::string> rows =
      Query(url, "SELECT version, name, applied_at FROM schema_migrations ORDER BY version", 3);
  ASSERT_EQ(rows.size(), PostgresMigrations().size());
  EXPECT_EQ(rows[0], "1|initial_schema|" + std::to_string(ToUnixMillis(T(123))));

  ASSERT_EQ(Cluster().Exec("SET search_path = " + SchemaName(url) +
                           "; INSERT INTO schema_migrations VALUES (99, 'from_the_future', 0)"),
            "");
  StatusOr<std::unique_ptr<PostgresStore>> reopened = PostgresStore::Open(url);
  ASSERT_TRUE(HasCode(reopened.status(), StatusCode::kFailedPrecondition));
  EXPECT_NE(reopened.status().message().find("schema version 99 is newer"), std::string::npos)
      << reopened.status().message();
  // A store that was already open when the upgrade happened stops too.
  EXPECT_TRUE(HasCode(s->Migrate(), StatusCode::kFailedPrecondition));
}

TEST(PostgresStoreTest, InstancesMigratingTogetherApplyEachStepOnce) {
  const std::string url = Cluster().FreshSchemaUrl();
  constexpr int kInstances = 6;
  std::vector<std::unique_ptr<PostgresStore>> stores;
  for (int i = 0; i < kInstances; ++i) stores.push_back(MustOpen(url));
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (auto& s : stores) {
    threads.emplace_back([&s, &failures] {
      if (!s->Migrate().ok()) ++failures;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  const std::string n = std::to_string(PostgresMigrations().size());
  EXPECT_EQ(Query(url, "SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_migrations", 2),
            std::vector<std::string>{n + "|" + n});
  // Every instance sees the same, fully migrated database.
  ASSERT_TRUE(IsOk(stores[0]->CreateTenant(MakePolicy("t", 1), MakeKey("t", 1, "active"))));
  for (auto& s : stores) EXPECT_EQ(s->GetTenant("t")->active_policy_version, 1);
}

TEST(PostgresStoreTest, TwoInstancesRaceOnExpectedVersions) {
  // Like two keyctl serve processes: separate stores (pools) on one database.
  const std::string url = Cluster().FreshSchemaUrl();
  auto a = MustOpen(url);
  ASSERT_TRUE(IsOk(a->Migrate()));
  auto b = MustOpen(url);
  ASSERT_TRUE(IsOk(a->CreateTenant(MakePolicy("acme", 1), MakeKey("acme", 1, "active"))));
  // Each round, four writers on the two instances expect the same active
  // version: exactly one wins, the others are optimistic-concurrency losers
  // (kAborted), never a constraint error.
  int64_t active = 1;
  for (int round = 1; round <= 10; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::atomic<int> wins{0};
    std::atomic<int> aborted{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
      threads.emplace_back([&, i] {
        Store& s = i % 2 == 0 ? static_cast<Store&>(*a) : static_cast<Store&>(*b);
        Status st = s.AddPolicyVersion(MakePolicy("acme", round * 10 + i), active);
        if (st.ok()) {
          ++wins;
        } else if (st.code() == StatusCode::kAborted) {
          ++aborted;
        } else {
          ADD_FAILURE() << st.ToString();
        }
      });
    }
    for (std::thread& t : threads) t.join();
    EXPECT_EQ(wins.load(), 1);
    EXPECT_EQ(aborted.load(), 3);
    active = b->GetTenant("acme")->active_policy_version;
    EXPECT_GE(active, round * 10);
    EXPECT_LE(active, round * 10 + 3);
  }
  EXPECT_EQ(a->ListPolicyVersions("acme")->size(), 11u);
}

TEST(PostgresStoreTest, WriteLockHeldElsewhereIsUnavailableAfterTimeout) {
  const std::string url = Cluster().FreshSchemaUrl();
  auto s = MustOpen(url, PostgresOptions{.lock_timeout = std::chrono::milliseconds(50)});
  ASSERT_TRUE(IsOk(s->Migrate()));
  // Another instance in the middle of a write transaction.
  PgConnPtr other(PQconnectdb(url.c_str()));
  ASSERT_EQ(PQstatus(other.get()), CONNECTION_OK);
  ASSERT_TRUE(IsOk(PgExecScript(
      other.get(),
      "BEGIN; SELECT pg_advisory_xact_lock(" + std::to_string(kStoreWriteLockKey) + ")",
      "test lock")));
  Status st = s->CreateTenant(MakePolicy("acme", 1), MakeKey("acme", 1, "active"));
  EXPECT_TRUE(HasCode(st, StatusCode::kUnavailable));
  EXPECT_NE(st.message().find("creating tenant"), std::string::npos) << st.message();
  // Reads take no lock.
  EXPECT_TRUE(IsOk(s->ListTenants(true).status()));
  ASSERT_TRUE(IsOk(PgExecScript(other.get(), "ROLLBACK", "test unlock")));
  EXPECT_TRUE(IsOk(s->CreateTenant(MakePolicy("acme", 1), MakeKey("acme", 1, "active"))));
}

TEST(PostgresStoreTest, ErrorMessagesDoNotLeakValues) {
  auto s = MustOpen(Cluster().FreshSchemaUrl());
  ASSERT_TRUE(IsOk(s->Migrate()));
  ApiKeyRecord a = MakeApiKey("ak-5ec12e7-id", "");
  a.secret_hash = "5ec12e7-hash-value";
  ASSERT_TRUE(IsOk(s->InsertApiKey(a)));
  Status dup = s->InsertApiKey(a);
  EXPECT_TRUE(HasCode(dup, StatusCode::kAlreadyExists));
  EXPECT_EQ(dup.message().find("5ec12e7"), std::string::npos) << dup.message();
  EXPECT_NE(dup.message().find("inserting API key"), std::string::npos) << dup.message();
  // PostgreSQL text cannot hold NUL: refused, not cut short.
  ApiKeyRecord nul = MakeApiKey("ak-nul", "");
  nul.name = std::string("a\0b", 3);
  EXPECT_TRUE(HasCode(s->InsertApiKey(nul), StatusCode::kInvalidArgument));
  EXPECT_TRUE(HasCode(s->GetApiKey("ak-nul").status(), StatusCode::kNotFound));
}

TEST(PostgresStoreTest, UrlsAndUnreachableServersNeverShowThePassword) {
  // Nothing listens on port 1 of the loopback: connection refused at once.
  const std::string url = "postgresql://admin:Sup3r-S3cret-pw@127.0.0.1:1/db";
  StatusOr<std::unique_ptr<PostgresStore>> s = PostgresStore::Open(url);
  ASSERT_TRUE(HasCode(s.status(), StatusCode::kUnavailable));
  EXPECT_EQ(s.status().message().find("Sup3r"), std::string::npos) << s.status().message();
  EXPECT_NE(s.status().message().find("postgresql://admin@127.0.0.1:1/db"), std::string::npos)
      << s.status().message();
  EXPECT_NE(s.status().message().find("database unavailable"), std::string::npos)
      << s.status().message();

  StatusOr<std::string> d =
      DescribeDatabaseUrl("postgres://u:pw%20x@db.example:6543/concierge?sslmode=require");
  ASSERT_TRUE(IsOk(d.status()));
  EXPECT_EQ(*d, "postgresql://u@db.example:6543/concierge");
  // A malformed URL is refused without being quoted back.
  StatusOr<std::unique_ptr<PostgresStore>> bad =
      PostgresStore::Open("postgresql://u:Sup3r%zz@host/db");
  ASSERT_TRUE(HasCode(bad.status(), StatusCode::kInvalidArgument));
  EXPECT_EQ(bad.status().message().find("Sup3r"), std::string::npos) << bad.status().message();
}

TEST(PostgresStoreTest, DataPersistsAcrossReopen) {
  const std::string url = Cluster().FreshSchemaUrl();
  {
    auto s = MustOpen(url);
    ASSERT_TRUE(IsOk(s->Migrate()));
    ASSERT_TRUE(IsOk(s->CreateTenant(MakePolicy("acme", 1), MakeKey("acme", 1, "active"))));
    ASSERT_TRUE(IsOk(s->InsertApiKey(MakeApiKey("ak", "acme"))));
  }
  auto s = MustOpen(url);
  EXPECT_EQ(*s->SchemaVersion(), s->LatestSchemaVersion());
  EXPECT_EQ(s->GetActiveKey("acme")->key_id, "acme-v1");
  EXPECT_EQ(s->GetApiKey("ak")->tenant_id, "acme");
}

TEST(PgPoolTest, BusyPoolIsUnavailableAfterTheWait) {
  PgPoolOptions options;
  options.max_connections = 1;
  options.acquire_timeout = std::chrono::milliseconds(50);
  StatusOr<std::unique_ptr<PgPool>> pool = PgPool::Create(Cluster().Url(), options);
  ASSERT_TRUE(IsOk(pool.status()));
  {
    StatusOr<PgPool::Lease> held = (*pool)->Acquire("holding");
    ASSERT_TRUE(IsOk(held.status()));
    StatusOr<PgPool::Lease> second = (*pool)->Acquire("waiting");
    ASSERT_TRUE(HasCode(second.status(), StatusCode::kUnavailable));
    EXPECT_NE(second.status().message().find("stayed busy"), std::string::npos)
        << second.status().message();
  }
  // Returned: the same connection is handed out again.
  EXPECT_TRUE(IsOk((*pool)->Acquire("again").status()));
  EXPECT_EQ((*pool)->stats().connects, 1u);
}

// Pooled connections the server dropped while they sat idle (here by
// pg_terminate_backend, as an administrator or a failover would) are
// replaced: a query never fails because of them, whether the drop is noticed
// when the connection is acquired or only when the first round trip fails
// (pg_terminate_backend returns before the backend has gone).
TEST(PgPoolTest, ConnectionsDroppedWhileIdleAreReplaced) {
  PgPoolOptions options;
  options.application_name = "pool-drop-test";
  StatusOr<std::unique_ptr<PgPool>> pool = PgPool::Create(Cluster().Url(), options);
  ASSERT_TRUE(IsOk(pool.status()));
  {
    StatusOr<PgPool::Lease> a = (*pool)->Acquire("a");
    StatusOr<PgPool::Lease> b = (*pool)->Acquire("b");
    ASSERT_TRUE(IsOk(a.status()));
    ASSERT_TRUE(IsOk(b.status()));
  }
  ASSERT_EQ(Cluster().Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE application_name = 'pool-drop-test'"),
            "");
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(IsOk((*pool)->Query("SELECT 1", PgParams(), "query").status()));
  }
  EXPECT_EQ((*pool)->stats().discarded, 2u);
  EXPECT_EQ((*pool)->stats().connects, 3u);
  // Transactions start the same way.
  ASSERT_EQ(Cluster().Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE application_name = 'pool-drop-test'"),
            "");
  StatusOr<PgPool::Session> session = (*pool)->Begin(PgTxOptions{}, "begin");
  ASSERT_TRUE(IsOk(session.status()));
  EXPECT_TRUE(IsOk(session->tx.Commit()));
}

// Stops the binary's cluster and starts it again (safe: this binary's cases
// run one after another, and the guard brings the cluster back whatever fails).
TEST(PostgresStoreTest, OutageIsUnavailableAndThePoolReconnects) {
  testing::PgRestartGuard guard(Cluster());
  const std::string url = Cluster().FreshSchemaUrl();
  auto s = MustOpen(url);
  ASSERT_TRUE(IsOk(s->Migrate()));
  ASSERT_TRUE(IsOk(s->CreateTenant(MakePolicy("acme", 1), MakeKey("acme", 1, "active"))));
  // Several idle pooled connections, all of which the restart will break.
  std::vector<std::thread> warm;
  for (int i = 0; i < 4; ++i)
    warm.emplace_back([&] { EXPECT_TRUE(IsOk(s->GetTenant("acme").status())); });
  for (std::thread& t : warm) t.join();
  const uint64_t connects_before = s->pool_stats().connects;

  ASSERT_TRUE(Cluster().Stop());
  for (int i = 0; i < 3; ++i) {
    Status ping = s->Ping();
    EXPECT_TRUE(HasCode(ping, StatusCode::kUnavailable));
    EXPECT_NE(ping.message().find("database unavailable"), std::string::npos) << ping.message();
    Status write = s->InsertKey(MakeKey("acme", 2, "pending"));
    EXPECT_TRUE(HasCode(write, StatusCode::kUnavailable)) << write.ToString();
  }
  ASSERT_TRUE(Cluster().Restart()) << Cluster().error();

  // The same store works again at once: dead pooled connections are dropped
  // on acquire, not handed out to fail a request.
  EXPECT_TRUE(IsOk(s->Ping()));
  EXPECT_TRUE(IsOk(s->InsertKey(MakeKey("acme", 2, "pending"))));
  EXPECT_EQ(s->ListKeys("acme")->size(), 2u);
  EXPECT_GT(s->pool_stats().connects, connects_before);
}


// --- several instances: leader lock, tenant notifications, commit fence ---

// Waits (bounded) for `done`, yielding: for progress made by another thread
// or the database, never for time to pass.
bool Eventually(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!done() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  return done();
}

TEST(PgLeaderLockTest, OneHolderAtATimeAndADeadSessionHandsOver) {
  const std::string url = Cluster().FreshSchemaUrl();
  auto a = PgLeaderLock::Create(url);
  auto b = PgLeaderLock::Create(url);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE((*a)->Poll());
  EXPECT_FALSE((*b)->Poll());
  EXPECT_TRUE((*a)->Poll()) << "the holder keeps the lock";
  (*a)->Release();
  EXPECT_TRUE((*b)->Poll());
  EXPECT_FALSE((*a)->Poll());
  // The holder's session dies (as when its process is killed): PostgreSQL
  // releases the lock, the holder notices at its next poll, the other takes it.
  ASSERT_EQ(Cluster().Exec("SELECT pg_terminate_backend(pid, 10000) FROM pg_locks WHERE locktype = 'advisory' AND "
                           "granted AND objid = " + std::to_string(kLeaderLockKey & 0xffffffff)),
            "");
  EXPECT_FALSE((*b)->Poll());
  EXPECT_FALSE((*b)->last_error().empty());
  EXPECT_TRUE((*a)->Poll());
  EXPECT_FALSE((*b)->Poll());
}

class PgInstancesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = Cluster().FreshSchemaUrl();
    store_ = MustOpen(url_);
    ASSERT_NE(store_, nullptr);
    ASSERT_TRUE(IsOk(store_->Migrate()));
    ASSERT_TRUE(IsOk(store_->CreateTenant(MakePolicy("acme", 1), MakeKey("acme", 1, "active"))));
    ASSERT_TRUE(IsOk(store_->InsertKey(MakeKey("acme", 2, "pending"))));
    auto ledger = PostgresLedger::Open(url_);
    ASSERT_TRUE(IsOk(ledger.status()));
    ledger_ = *std::move(ledger);
  }
  static std::vector<LedgerEntry> Rows(const std::string& key_id, int n) {
    std::vector<LedgerEntry> rows(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      LedgerEntry& e = rows[static_cast<size_t>(i)];
      e.tenant_id = "acme";
      e.key_id = key_id;
      e.key_version = 1;
      e.algorithm = "ES256";
      e.digest_hex = std::string(64, 'e');
      e.request_id = key_id + "-" + std::to_string(i);
      e.api_key_id = "ak-1";
      e.signed_at = T(1000 + i);
    }
    return rows;
  }
  int64_t LedgerRows() {
    auto page = ledger_->ListLedger(LedgerQuery{.tenant_id = "acme", .limit = 1000});
    EXPECT_TRUE(IsOk(page.status()));
    return page.ok() ? static_cast<int64_t>(page->entries.size()) : -1;
  }

  std::string url_;
  std::unique_ptr<PostgresStore> store_;
  std::unique_ptr<PostgresLedger> ledger_;
};

TEST_F(PgInstancesTest, LedgerRefusesRowsOfAKeyThatMayNoLongerSign) {
  std::vector<LedgerEntry> rows = Rows("acme-v1", 2);
  ASSERT_TRUE(IsOk(ledger_->AppendBatch(rows)));
  // Another instance cut over: v1 leaves "active", v2 enters it.
  ASSERT_TRUE(IsOk(store_->UpdateKeyState("acme-v1", "active", "retiring", T(5))));
  std::vector<LedgerEntry> stale = Rows("acme-v1", 3);
  Status fenced = ledger_->AppendBatch(stale);
  EXPECT_TRUE(IsKeyFenced(fenced)) << fenced.ToString();
  EXPECT_NE(fenced.message().find("acme-v1"), std::string::npos) << fenced.message();
  for (const LedgerEntry& e : stale) EXPECT_EQ(e.seq, 0);
  // A key not yet active may not sign either; a mixed batch fails whole.
  std::vector<LedgerEntry> pending = Rows("acme-v2", 1);
  EXPECT_TRUE(IsKeyFenced(ledger_->AppendBatch(pending)));
  EXPECT_EQ(LedgerRows(), 2);
  ASSERT_TRUE(IsOk(store_->UpdateKeyState("acme-v2", "pending", "active", T(6))));
  std::vector<LedgerEntry> fresh = Rows("acme-v2", 2);
  EXPECT_TRUE(IsOk(ledger_->AppendBatch(fresh)));
  std::vector<LedgerEntry> mixed = Rows("acme-v2", 1);
  mixed.push_back(Rows("acme-v1", 1).front());
  mixed.back().request_id = "mixed";
  EXPECT_TRUE(IsKeyFenced(ledger_->AppendBatch(mixed)));
  EXPECT_EQ(LedgerRows(), 4);
  // Other errors are not mistaken for the fence.
  EXPECT_FALSE(IsKeyFenced(AbortedError("expected version 3")));
  EXPECT_TRUE(IsKeyFenced(KeyFencedError("k", "retired").Annotate("committing")));
}

// The fence is ordered with the cutover, not merely checked before it: an
// append that reads the key while a swap is uncommitted waits for it and then
// sees the new state.
TEST_F(PgInstancesTest, AppendWaitsForAnUncommittedCutoverAndIsFenced) {
  PgConnPtr other(PQconnectdb(url_.c_str()));
  ASSERT_EQ(PQstatus(other.get()), CONNECTION_OK);
  ASSERT_TRUE(IsOk(PgExecScript(other.get(),
                                "BEGIN; UPDATE keys SET state = 'retiring' WHERE key_id = 'acme-v1'",
                                "cutover elsewhere")));
  std::promise<Status> result;
  std::thread append([&] {
    std::vector<LedgerEntry> rows = Rows("acme-v1", 2);
    result.set_value(ledger_->AppendBatch(rows));
  });
  std::future<Status> done = result.get_future();
  // The append is blocked on the key's row lock.
  ASSERT_TRUE(Eventually([&] {
    PgConnPtr probe(PQconnectdb(url_.c_str()));
    StatusOr<PgResult> r = PgExec(probe.get(),
                                  "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
                                  "application_name = 'keyctl-ledger'",
                                  "probing locks");
    return r.ok() && r->row(0).ColumnInt(0) == 1;
  }));
  EXPECT_EQ(done.wait_for(std::chrono::seconds(0)), std::future_status::timeout);
  ASSERT_TRUE(IsOk(PgExecScript(other.get(), "COMMIT", "cutover commits")));
  append.join();
  Status st = done.get();
  EXPECT_TRUE(IsKeyFenced(st)) << st.ToString();
  EXPECT_EQ(LedgerRows(), 0);
}

// A re-sign batch takes the same commit fence as an interactive batch, and
// its audit builder learns the stored log size, so an instance whose tree
// another instance moved on catches up before it appends.
TEST_F(PgInstancesTest, ResignBatchesAreFencedAndSeeTheStoredAuditSize) {
  // One audit record per row, continuing from the size the store read.
  std::vector<int64_t> sizes;
  AuditBuilder builder = [&sizes](const std::vector<LedgerEntry>& rows, AuditAppend& out) {
    sizes.push_back(out.stored_size);
    for (const LedgerEntry& e : rows) {
      AuditRecord r;
      r.index = out.stored_size + static_cast<int64_t>(out.entries.size());
      r.time = e.signed_at;
      r.actor = "test";
      r.tenant_id = e.tenant_id;
      r.action = "sign." + e.kind;
      r.target = e.key_id;
      r.outcome = "success";
      r.detail_json = "{}";
      r.leaf_hash.fill(static_cast<uint8_t>(r.index + 1));
      out.entries.push_back(r);
    }
    return Status::Ok();
  };
  std::vector<LedgerEntry> originals = Rows("acme-v1", 3);
  ASSERT_TRUE(IsOk(ledger_->AppendBatch(originals, builder)));
  ResignJobRecord job = conformance::MakeJob("job-1", "acme");  // acme-v1 -> acme-v2
  job.state = "running";
  ASSERT_TRUE(IsOk(store_->InsertResignJob(job)));
  auto batch = [&] {
    ResignBatch b;
    b.job_id = "job-1";
    b.new_cursor = originals.back().seq;
    b.at = T(100);
    for (const LedgerEntry& o : originals) {
      LedgerEntry row = Rows("acme-v2", 1).front();
      row.kind = "resign";
      row.request_id = "re-" + std::to_string(o.seq);
      row.resign_of_seq = o.seq;
      b.rows.push_back(row);
      ResignResult r;
      r.job_id = "job-1";
      r.original_seq = o.seq;
      r.original_kind = o.kind;
      r.digest_hex = o.digest_hex;
      r.key_id = "acme-v2";
      r.key_version = 2;
      r.status = "resigned";
      r.signature_b64 = "c2ln";
      r.signature_format = "der";
      b.results.push_back(r);
    }
    return b;
  };
  // acme-v2 is still pending: it may not sign, so its re-signatures are refused.
  ResignBatch early = batch();
  Status fenced = ledger_->AppendResignBatch(early, builder);
  EXPECT_TRUE(IsKeyFenced(fenced)) << fenced.ToString();
  EXPECT_EQ(LedgerRows(), 3);
  // Another instance appends audit records meanwhile (here: a second ledger).
  auto other = PostgresLedger::Open(url_);
  ASSERT_TRUE(IsOk(other.status()));
  std::vector<LedgerEntry> more = Rows("acme-v1", 2);
  for (LedgerEntry& e : more) e.request_id += "-other";
  ASSERT_TRUE(IsOk((*other)->AppendBatch(more, builder)));
  ASSERT_TRUE(IsOk(store_->UpdateKeyState("acme-v1", "active", "retiring", T(5))));
  ASSERT_TRUE(IsOk(store_->UpdateKeyState("acme-v2", "pending", "active", T(6))));
  ResignBatch b = batch();
  ASSERT_TRUE(IsOk(ledger_->AppendResignBatch(b, builder)));
  EXPECT_EQ(sizes.back(), 5) << "the re-sign batch saw the other instance's records";
  EXPECT_EQ(LedgerRows(), 8);
}

TEST_F(PgInstancesTest, CommittedTenantChangesAreNotifiedAndRolledBackOnesAreNot) {
  std::mutex mu;
  std::vector<std::string> seen;
  auto listener = PgNotifyListener::Create(url_, [&](const std::string& tenant) {
    std::lock_guard lock(mu);
    seen.push_back(tenant);
  });
  ASSERT_TRUE(IsOk(listener.status()));
  (*listener)->Start();
  auto count = [&](const std::string& what) {
    std::lock_guard lock(mu);
    return std::count(seen.begin(), seen.end(), what);
  };
  // Connecting announces "reload everything": whatever happened before is unknown.
  ASSERT_TRUE(Eventually([&] { return count("") == 1; }));
  // A failed write (wrong expected state) sends nothing.
  EXPECT_FALSE(IsOk(store_->UpdateKeyState("acme-v2", "active", "retired", T(5))));
  ASSERT_TRUE(IsOk(store_->UpdateKeyState("acme-v2", "pending", "destroyed", T(5))));
  ASSERT_TRUE(Eventually([&] { return count("acme") == 1; }));
  ASSERT_TRUE(IsOk(store_->AddPolicyVersion(MakePolicy("acme", 2), 1)));
  ASSERT_TRUE(Eventually([&] { return count("acme") == 2; }));
  // A dropped listening session reconnects and announces "everything" again.
  ASSERT_EQ(Cluster().Exec("SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE application_name = "
                           "'keyctl-listen'"),
            "");
  ASSERT_TRUE(Eventually([&] { return count("") == 2; }));
  EXPECT_EQ((*listener)->connects(), 2u);
  (*listener)->Stop();
  EXPECT_EQ(count("acme"), 2);
}

}  // namespace
}  // namespace concierge::store
