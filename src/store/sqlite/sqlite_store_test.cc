#include "store/sqlite/sqlite_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "store/migrations/migrations.h"
#include "store/store_test_suite.h"
#include "testing/test_util.h"

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

// One directory for the whole binary, removed at exit; each factory call gets
// its own file in it.
const concierge::testing::TempDir& SharedDir() {
  static const concierge::testing::TempDir dir;
  return dir;
}

std::string FreshPath() {
  static std::atomic<int> counter{0};
  return SharedDir().File("store-" + std::to_string(counter++) + ".db");
}

std::unique_ptr<Store> OpenFresh() {
  StatusOr<std::unique_ptr<SqliteStore>> s = SqliteStore::Open(FreshPath());
  if (!s.ok()) {
    ADD_FAILURE() << s.status().ToString();
    return nullptr;
  }
  return std::move(s).value();
}

INSTANTIATE_TEST_SUITE_P(
    Sqlite, StoreConformanceTest,
    ::testing::Values(StoreTestParam{"File", OpenFresh},
                      StoreTestParam{"Memory",
                                     []() -> std::unique_ptr<Store> {
                                       return std::move(SqliteStore::Open(":memory:").value());
                                     }}),
    conformance::StoreTestParamName);

// Raw access for checks the Store interface deliberately does not offer.
struct RawDb {
  explicit RawDb(const std::string& path) {
    StatusOr<SqliteDb> opened = OpenSqliteDb(path, "test open");
    EXPECT_TRUE(IsOk(opened.status()));
    if (opened.ok()) db = std::move(opened).value();
    if (db != nullptr) sqlite3_busy_timeout(db.get(), 5000);
  }
  Status Exec(const std::string& sql) { return ExecSql(db.get(), sql, "test exec"); }
  // Rows of a query as "a|b|c" strings.
  std::vector<std::string> Query(const std::string& sql) {
    std::vector<std::string> rows;
    StatusOr<Statement> s = Statement::Prepare(db.get(), sql, "test query");
    EXPECT_TRUE(IsOk(s.status()));
    if (!s.ok()) return rows;
    while (true) {
      StatusOr<bool> row = s->Step();
      EXPECT_TRUE(IsOk(row.status()));
      if (!row.ok() || !*row) break;
      std::string line;
      for (int c = 0; c < 4; ++c) line += s->ColumnText(c) + "|";
      rows.push_back(line);
    }
    return rows;
  }
  SqliteDb db;
};

std::vector<std::string> SchemaOf(const std::string& path) {
  RawDb raw(path);
  return raw.Query(
      "SELECT type, name, tbl_name, COALESCE(sql, '') FROM sqlite_master "
      "ORDER BY type, name");
}

std::unique_ptr<SqliteStore> MustOpen(const std::string& path, SqliteOptions opts = {}) {
  StatusOr<std::unique_ptr<SqliteStore>> s = SqliteStore::Open(path, opts);
  EXPECT_TRUE(IsOk(s.status()));
  return s.ok() ? std::move(s).value() : nullptr;
}

int64_t FileSize(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  return ec ? -1 : static_cast<int64_t>(size);
}

// --- migration framework ---------------------------------------------------------

TEST(MigrationsTest, SqliteListIsValid) {
  EXPECT_TRUE(IsOk(ValidateMigrations(SqliteMigrations())));
  EXPECT_GE(SqliteMigrations().size(), 2u);
}

TEST(MigrationsTest, ValidateRejectsBrokenLists) {
  EXPECT_FALSE(ValidateMigrations({}).ok());
  EXPECT_FALSE(ValidateMigrations({{2, "a", "SELECT 1"}}).ok());
  EXPECT_FALSE(ValidateMigrations({{1, "a", "SELECT 1"}, {2, "a", "SELECT 1"}}).ok());
  EXPECT_FALSE(ValidateMigrations({{1, "a", ""}}).ok());
}

TEST(MigrationsTest, Plan) {
  const std::vector<Migration> list = {{1, "a", "x"}, {2, "b", "y"}, {3, "c", "z"}};
  StatusOr<std::vector<const Migration*>> plan = PlanMigrations(list, 1, 0);
  ASSERT_TRUE(IsOk(plan.status()));
  ASSERT_EQ(plan->size(), 2u);
  EXPECT_EQ((*plan)[0]->version, 2);
  EXPECT_EQ((*plan)[1]->version, 3);
  EXPECT_TRUE(PlanMigrations(list, 3, 0)->empty());
  EXPECT_EQ(PlanMigrations(list, 0, 2)->size(), 2u);
  Status too_new = PlanMigrations(list, 4, 0).status();
  EXPECT_TRUE(HasCode(too_new, StatusCode::kFailedPrecondition));
  EXPECT_NE(too_new.message().find("newer than this build"), std::string::npos);
  EXPECT_TRUE(HasCode(PlanMigrations(list, 3, 2).status(), StatusCode::kFailedPrecondition));
  EXPECT_TRUE(HasCode(PlanMigrations(list, 0, 4).status(), StatusCode::kInvalidArgument));
}

// A driver that records calls, to check RunMigrations without a database.
class FakeDriver : public MigrationDriver {
 public:
  StatusOr<int> CurrentVersion() override { return version; }
  Status Apply(const Migration& m) override {
    if (m.version == fail_at) return InternalError("boom");
    applied.push_back(m.version);
    version = m.version;
    return Status::Ok();
  }
  int version = 0;
  int fail_at = -1;
  std::vector<int> applied;
};

TEST(MigrationsTest, RunStopsAtFirstFailureAndNamesIt) {
  const std::vector<Migration> list = {{1, "a", "x"}, {2, "b", "y"}, {3, "c", "z"}};
  FakeDriver driver;
  driver.fail_at = 2;
  Status s = RunMigrations(driver, list, 0);
  EXPECT_TRUE(HasCode(s, StatusCode::kInternal));
  EXPECT_NE(s.message().find("migration 2 (b)"), std::string::npos) << s.message();
  EXPECT_EQ(driver.applied, std::vector<int>{1});
  driver.fail_at = -1;
  ASSERT_TRUE(IsOk(RunMigrations(driver, list, 0)));
  EXPECT_EQ(driver.applied, (std::vector<int>{1, 2, 3}));
}

// --- SQLite specifics ----------------------------------------------------------------

TEST(SqliteStoreTest, StepwiseMigrationYieldsSameSchemaAsFresh) {
  const std::string fresh_path = FreshPath();
  {
    auto fresh = MustOpen(fresh_path);
    ASSERT_TRUE(IsOk(fresh->Migrate()));
  }
  const std::vector<std::string> want = SchemaOf(fresh_path);
  ASSERT_FALSE(want.empty());

  const int latest = static_cast<int>(SqliteMigrations().size());
  for (int from = 1; from < latest; ++from) {
    SCOPED_TRACE("from version " + std::to_string(from));
    const std::string path = FreshPath();
    {
      auto s = MustOpen(path);
      ASSERT_TRUE(IsOk(s->Migrate(from)));
    }
    if (from == 1) {
      // Data written under v1 must survive and pick up v2's defaults.
      RawDb raw(path);
      ASSERT_TRUE(IsOk(raw.Exec(
          "INSERT INTO tenants VALUES ('old', 1, 0, 1, 1);"
          "INSERT INTO policies VALUES ('old', 1, '{}', 'h', 'me', 1);"
          "INSERT INTO keys VALUES ('old-v1', 'old', 1, 'ES256', 'software', 'software://x', "
          "'active', 'pem', 'fp', 1, 1, NULL);")));
    }
    {
      auto s = MustOpen(path);  // reopen between steps, as an upgrade would
      ASSERT_TRUE(IsOk(s->Migrate()));
      EXPECT_EQ(*s->SchemaVersion(), latest);
      if (from == 1) {
        StatusOr<KeyRecord> k = s->GetActiveKey("old");
        ASSERT_TRUE(IsOk(k.status()));
        EXPECT_EQ(k->attestation, "");
        EXPECT_EQ(k->retired_at, std::nullopt);
      }
    }
    EXPECT_EQ(SchemaOf(path), want);
  }
}

TEST(SqliteStoreTest, RecordsEachMigration) {
  const std::string path = FreshPath();
  FakeClock clock(T(123));
  {
    auto s = MustOpen(path, SqliteOptions{.clock = &clock});
    ASSERT_TRUE(IsOk(s->Migrate()));
  }
  RawDb raw(path);
  std::vector<std::string> rows =
      raw.Query("SELECT version, name, applied_at, '' FROM schema_migrations ORDER BY version");
  ASSERT_EQ(rows.size(), SqliteMigrations().size());
  EXPECT_EQ(rows[0], "1|initial_schema|" + std::to_string(ToUnixMillis(T(123))) + "||");
}

TEST(SqliteStoreTest, RefusesNewerSchema) {
  const std::string path = FreshPath();
  auto s = MustOpen(path);
  ASSERT_TRUE(IsOk(s->Migrate()));
  {
    RawDb raw(path);
    ASSERT_TRUE(IsOk(raw.Exec("INSERT INTO schema_migrations VALUES (99, 'from_the_future', 0)")));
  }
  StatusOr<std::unique_ptr<SqliteStore>> reopened = SqliteStore::Open(path);
  ASSERT_TRUE(HasCode(reopened.status(), StatusCode::kFailedPrecondition));
  EXPECT_NE(reopened.status().message().find("schema version 99 is newer"), std::string::npos)
      << reopened.status().message();
  // A store that was already open when the upgrade happened stops too.
  EXPECT_TRUE(HasCode(s->Migrate(), StatusCode::kFailedPrecondition));
  EXPECT_TRUE(HasCode(s->ListTenants(true).status(), StatusCode::kFailedPrecondition));
}

TEST(SqliteStoreTest, DataPersistsAcrossReopen) {
  const std::string path = FreshPath();
  {
    auto s = MustOpen(path);
    ASSERT_TRUE(IsOk(s->Migrate()));
    ASSERT_TRUE(IsOk(s->CreateTenant(MakePolicy("acme", 1), MakeKey("acme", 1, "active"))));
    ASSERT_TRUE(IsOk(s->InsertApiKey(MakeApiKey("ak", "acme"))));
  }
  auto s = MustOpen(path);
  EXPECT_EQ(*s->SchemaVersion(), s->LatestSchemaVersion());
  EXPECT_EQ(s->GetActiveKey("acme")->key_id, "acme-v1");
  EXPECT_EQ(s->GetActivePolicy("acme")->version, 1);
  EXPECT_EQ(s->GetApiKey("ak")->tenant_id, "acme");
}

TEST(SqliteStoreTest, GarbageFileIsDataLoss) {
  const std::string path = SharedDir().File("garbage.db");
  concierge::testing::WriteFile(path, std::string(8192, 'x'));
  StatusOr<std::unique_ptr<SqliteStore>> s = SqliteStore::Open(path);
  ASSERT_TRUE(HasCode(s.status(), StatusCode::kDataLoss));
  EXPECT_NE(s.status().message().find("not a database"), std::string::npos) << s.status().message();
  EXPECT_NE(s.status().message().find(path), std::string::npos) << s.status().message();
}

TEST(SqliteStoreTest, UnreachablePathIsUnavailable) {
  StatusOr<std::unique_ptr<SqliteStore>> s =
      SqliteStore::Open(SharedDir().File("no/such/dir/x.db"));
  EXPECT_TRUE(HasCode(s.status(), StatusCode::kUnavailable));
}

TEST(SqliteStoreTest, LockHeldElsewhereIsUnavailableAfterTimeout) {
  const std::string path = FreshPath();
  auto s = MustOpen(path, SqliteOptions{.busy_timeout = std::chrono::milliseconds(50)});
  ASSERT_TRUE(IsOk(s->Migrate()));
  RawDb other(path);
  ASSERT_TRUE(IsOk(other.Exec("BEGIN IMMEDIATE")));
  Status st = s->CreateTenant(MakePolicy("acme", 1), MakeKey("acme", 1, "active"));
  EXPECT_TRUE(HasCode(st, StatusCode::kUnavailable));
  EXPECT_NE(st.message().find("creating tenant"), std::string::npos) << st.message();
  // Readers are not blocked by a writer in WAL mode.
  EXPECT_TRUE(IsOk(s->ListTenants(true).status()));
  ASSERT_TRUE(IsOk(other.Exec("ROLLBACK")));
  EXPECT_TRUE(IsOk(s->CreateTenant(MakePolicy("acme", 1), MakeKey("acme", 1, "active"))));
}

TEST(SqliteStoreTest, UsesWalAndLeavesCheckpointsToCaller) {
  const std::string path = FreshPath();
  auto s = MustOpen(path);
  ASSERT_TRUE(IsOk(s->Migrate()));
  ASSERT_TRUE(IsOk(s->CreateTenant(MakePolicy("acme", 1), MakeKey("acme", 1, "active"))));
  {
    RawDb raw(path);
    EXPECT_EQ(raw.Query("PRAGMA journal_mode"), std::vector<std::string>{"wal||||"});
  }
  // Write well past the default auto-checkpoint threshold (1000 pages): with
  // auto-checkpoints off, the WAL keeps growing instead of wrapping around.
  const std::string big(16 * 1024, 'p');
  for (int i = 2; i < 400; ++i) {
    KeyRecord k = MakeKey("acme", i, "pending");
    k.public_key_pem = big;
    ASSERT_TRUE(IsOk(s->InsertKey(k)));
  }
  const std::string wal = path + "-wal";
  EXPECT_GT(FileSize(wal), 1000 * 4096 * 3 / 2);
  EXPECT_TRUE(IsOk(s->Checkpoint()));
  EXPECT_TRUE(IsOk(s->Checkpoint(SqliteStore::CheckpointMode::kTruncate)));
  EXPECT_EQ(FileSize(wal), 0);
  EXPECT_EQ(s->ListKeys("acme")->size(), 399u);
}

TEST(SqliteStoreTest, SeveralStoresOnOneFile) {
  // Separate connections (as separate processes would have) contend for the
  // write lock; BEGIN IMMEDIATE plus the busy timeout must serialise them.
  const std::string path = FreshPath();
  {
    auto s = MustOpen(path);
    ASSERT_TRUE(IsOk(s->Migrate()));
  }
  constexpr int kStores = 4;
  constexpr int kPerStore = 25;
  std::vector<std::unique_ptr<SqliteStore>> stores;
  for (int i = 0; i < kStores; ++i) stores.push_back(MustOpen(path));
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kStores; ++i) {
    threads.emplace_back([&, i] {
      for (int j = 0; j < kPerStore; ++j) {
        const std::string id = "ak-" + std::to_string(i) + "-" + std::to_string(j);
        if (!stores[i]->InsertApiKey(MakeApiKey(id, "")).ok()) ++failures;
        if (j % 5 == 0 && !stores[i]->Checkpoint().ok()) ++failures;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(stores[0]->ListApiKeys()->size(), static_cast<size_t>(kStores * kPerStore));
}

TEST(SqliteStoreTest, ErrorMessagesDoNotLeakValues) {
  auto s = OpenFresh();
  ASSERT_TRUE(IsOk(s->Migrate()));
  ApiKeyRecord a = MakeApiKey("ak", "");
  a.secret_hash = "5ec12e7-hash-value";
  ASSERT_TRUE(IsOk(s->InsertApiKey(a)));
  Status dup = s->InsertApiKey(a);
  EXPECT_TRUE(HasCode(dup, StatusCode::kAlreadyExists));
  EXPECT_EQ(dup.message().find("5ec12e7"), std::string::npos) << dup.message();
  EXPECT_NE(dup.message().find("inserting API key"), std::string::npos) << dup.message();
}

TEST(SqliteStoreTest, TimesKeepMillisecondsAndFloor) {
  EXPECT_EQ(ToUnixMillis(FromUnixMillis(-1)), -1);
  EXPECT_EQ(ToUnixMillis(TimePoint(std::chrono::microseconds(-1))), -1);
  EXPECT_EQ(ToUnixMillis(TimePoint(std::chrono::microseconds(1999))), 1);
}

}  // namespace
}  // namespace concierge::store
