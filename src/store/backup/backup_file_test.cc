#include "store/backup/backup_file.h"

#include <gtest/gtest.h>

#include <sstream>

#include "store/migrations/migrations.h"
#include "store/sqlite/sqlite_dump.h"
#include "store/sqlite/sqlite_store.h"
#include "store/sqlite/sqlite_util.h"
#include "store/store_test_util.h"
#include "testing/test_util.h"

namespace concierge::store {
namespace {

// The schema version this build writes and reads.
int Latest() { return static_cast<int>(SqliteMigrations().size()); }

using conformance::HasCode;
using conformance::IsOk;
using conformance::T;

// A migrated SQLite file with `sql` run on it.
std::string MakeDatabase(const testing::TempDir& dir, const std::string& name, const std::string& sql) {
  const std::string path = dir.File(name);
  auto store = SqliteStore::Open(path);
  EXPECT_TRUE(IsOk(store.status()));
  EXPECT_TRUE(IsOk((*store)->Migrate()));
  StatusOr<SqliteDb> db = OpenSqliteDb(path, "test");
  EXPECT_TRUE(IsOk(db.status()));
  EXPECT_TRUE(IsOk(ExecSql(db->get(), sql, "test data")));
  return path;
}

std::string Backup(const std::string& path, const std::vector<BackupFile>& files = {}) {
  StatusOr<std::unique_ptr<SqlSnapshot>> snap = OpenSqliteSnapshot(path);
  EXPECT_TRUE(IsOk(snap.status()));
  std::ostringstream out;
  EXPECT_TRUE(IsOk(WriteBackup(**snap, "sqlite", files, T(0), out).status()));
  return out.str();
}

TEST(BackupFileTest, RoundTripKeepsBytesThatAreNotUtf8AndSeqCounters) {
  testing::TempDir dir;
  // A text value that is not UTF-8 (SQLite stores whatever it is given), and
  // ledger rows whose seq the restored AUTOINCREMENT counter must continue.
  const std::string src = MakeDatabase(dir, "src.db",
                                       "INSERT INTO tenants VALUES ('acme', 1, 0, 1, 2);"
                                       "INSERT INTO policies VALUES ('acme', 1, '{}', 'h', CAST(X'FF00FE' AS TEXT), 1);"
                                       "INSERT INTO ledger (tenant_id, key_id, key_version, algorithm, kind, digest_hex,"
                                       " request_id, api_key_id, client_address, policy_hash, signed_at) VALUES"
                                       " ('acme', 'k', 1, 'ES256', 'raw', '00', 'r1', '', '', '', 5),"
                                       " ('acme', 'k', 1, 'ES256', 'raw', '00', 'r2', '', '', '', 6);"
                                       // A BLOB (an evidence pack) with every kind of byte.
                                       "INSERT INTO rotations (rotation_id, tenant_id, state, trigger_kind,"
                                       " scheduled_at, created_by, created_at, updated_at, version) VALUES"
                                       " ('rot-1', 'acme', 'completed', 'manual', 1, 'ops', 1, 2, 3);"
                                       "INSERT INTO rotation_evidence VALUES ('rot-1', 'completed', 2, 'ab',"
                                       " X'00FF0A5C7800');");
  const std::string text = Backup(src, {{"keystore/keys/a.key", std::string("\0\1\2", 3)}});
  std::istringstream verify(text);
  StatusOr<BackupSummary> summary = VerifyBackup(verify, Latest());
  ASSERT_TRUE(IsOk(summary.status()));
  EXPECT_EQ(summary->rows.at("ledger"), 2);
  EXPECT_EQ(summary->rows.at("rotation_evidence"), 1);
  EXPECT_EQ(summary->files, 1);

  const std::string dst = dir.File("dst.db");
  std::vector<BackupFile> restored_files;
  std::istringstream in(text);
  ASSERT_TRUE(IsOk(RestoreBackup(
                       in, [&](int v) { return OpenSqliteLoader(dst, v); },
                       [&](const std::vector<BackupFile>& f) {
                         restored_files = f;
                         return Status::Ok();
                       })
                       .status()));
  ASSERT_EQ(restored_files.size(), 1u);
  EXPECT_EQ(restored_files[0].content, std::string("\0\1\2", 3));
  EXPECT_EQ(Backup(dst, restored_files).substr(text.find('\n')), text.substr(text.find('\n')));
  // New ledger rows continue after the restored seqs.
  StatusOr<SqliteDb> db = OpenSqliteDb(dst, "test");
  ASSERT_TRUE(IsOk(ExecSql(db->get(),
                           "INSERT INTO ledger (tenant_id, key_id, key_version, algorithm, kind, digest_hex,"
                           " request_id, api_key_id, client_address, policy_hash, signed_at) VALUES"
                           " ('acme', 'k', 1, 'ES256', 'raw', '00', 'r3', '', '', '', 7)",
                           "insert")));
  StatusOr<Statement> s = Statement::Prepare(db->get(), "SELECT MAX(seq) FROM ledger", "max");
  ASSERT_TRUE(IsOk(s.status()));
  ASSERT_TRUE(*s->Step());
  EXPECT_EQ(s->ColumnInt(0), 3);
  StatusOr<Statement> pack = Statement::Prepare(db->get(), "SELECT pack FROM rotation_evidence", "pack");
  ASSERT_TRUE(IsOk(pack.status()));
  ASSERT_TRUE(*pack->Step());
  EXPECT_EQ(pack->ColumnBytes(0), std::string("\0\xff\n\\x\0", 6));
}

TEST(BackupFileTest, RefusesTargetsWithRowsAndUnsafeOrForeignFiles) {
  testing::TempDir dir;
  const std::string src = MakeDatabase(dir, "src.db", "INSERT INTO tenants VALUES ('acme', 0, 0, 1, 2);");
  const std::string text = Backup(src);
  const std::string used = MakeDatabase(dir, "used.db", "INSERT INTO tenants VALUES ('other', 0, 0, 1, 2);");
  std::istringstream in(text);
  Status st = RestoreBackup(
                  in, [&](int v) { return OpenSqliteLoader(used, v); },
                  [](const std::vector<BackupFile>&) { return Status::Ok(); })
                  .status();
  EXPECT_TRUE(HasCode(st, StatusCode::kFailedPrecondition));
  EXPECT_NE(st.message().find("not empty (table tenants has rows)"), std::string::npos) << st.message();

  EXPECT_FALSE(SafeBackupPath("../etc/passwd"));
  EXPECT_FALSE(SafeBackupPath("/etc/passwd"));
  EXPECT_FALSE(SafeBackupPath("keystore/../../x"));
  EXPECT_FALSE(SafeBackupPath("keystore//x"));
  EXPECT_TRUE(SafeBackupPath("keystore/keys/a.key"));
  std::string evil = text;
  evil.insert(evil.find("{\"end\""), "{\"file\":\"../../evil\",\"b64\":\"\"}\n");
  std::istringstream evil_in(evil);
  EXPECT_TRUE(HasCode(VerifyBackup(evil_in, Latest()).status(), StatusCode::kDataLoss));

  std::istringstream newer("{\"format\":\"c2-concierge-backup\",\"version\":1,\"schema_version\":99}\n");
  EXPECT_TRUE(HasCode(VerifyBackup(newer, Latest()).status(), StatusCode::kFailedPrecondition));
  std::istringstream other("{\"hello\":1}\n");
  EXPECT_TRUE(HasCode(VerifyBackup(other, Latest()).status(), StatusCode::kDataLoss));
}

TEST(BackupFileTest, OrderByReferencesPutsReferencedTablesFirst) {
  StatusOr<std::vector<std::string>> order =
      OrderByReferences({"policies", "tenants", "api_keys", "ledger", "keys"},
                        {{"policies", "tenants"}, {"keys", "tenants"}, {"api_keys", "tenants"}, {"keys", "keys"}});
  ASSERT_TRUE(IsOk(order.status()));
  EXPECT_EQ(*order, (std::vector<std::string>{"ledger", "tenants", "api_keys", "keys", "policies"}));
  EXPECT_FALSE(OrderByReferences({"a", "b"}, {{"a", "b"}, {"b", "a"}}).ok());
}

}  // namespace
}  // namespace concierge::store
