// PostgresStore on a real PostgreSQL server that this binary starts once
// (PgEnvironment): the whole store conformance suite, plus what is specific to
// PostgreSQL (dialect rendering, migration lock, write lock, pool, outages).
#include "store/postgres/postgres_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "store/common/sql_records.h"
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

}  // namespace
}  // namespace concierge::store
