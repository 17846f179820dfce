// Small RAII layer over the SQLite C API, used only by SqliteStore.
//
// SqliteDb owns a sqlite3* connection, Statement a sqlite3_stmt*, Transaction
// an open BEGIN..COMMIT that rolls back unless committed. None of these are
// thread-safe: the owner serialises access (SqliteStore holds a mutex).
// Every failure is turned into a Status by SqliteStatus(), which names the
// operation that failed and SQLite's own message, but never bound values (the
// values may be secret hashes or key material).
#ifndef CONCIERGE_STORE_SQLITE_SQLITE_UTIL_H_
#define CONCIERGE_STORE_SQLITE_SQLITE_UTIL_H_

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <span>
#include <string_view>
#include <vector>

#include "concierge/clock.h"
#include "concierge/key_backend.h"  // Bytes, ByteView
#include "concierge/status.h"
#include "store/common/sql_records.h"  // ToUnixMillis / FromUnixMillis

namespace concierge::store {

struct SqliteDbCloser {
  void operator()(sqlite3* db) const noexcept;
};
using SqliteDb = std::unique_ptr<sqlite3, SqliteDbCloser>;

// Maps a SQLite result code to our error conventions:
//   CONSTRAINT_UNIQUE / _PRIMARYKEY -> kAlreadyExists
//   CONSTRAINT_FOREIGNKEY           -> kFailedPrecondition (referenced row missing)
//   BUSY / LOCKED (after the busy timeout), CANTOPEN -> kUnavailable
//   CORRUPT / NOTADB                -> kDataLoss
//   anything else                   -> kInternal
// `operation` says what we were doing ("inserting key"); `db` may be null.
Status SqliteStatus(sqlite3* db, int rc, std::string_view operation);

// Process-wide SQLite settings, applied once before the first connection
// opens (every opener here calls it): memory statistics off.
void ConfigureSqliteLibrary();

// Opens (creating if needed) a connection with extended result codes on.
StatusOr<SqliteDb> OpenSqliteDb(const std::string& path, std::string_view operation);

// Instead of sqlite3_busy_timeout: a connection that finds the database
// locked by another retries every 0.5 ms (SQLite's own handler backs off to
// 100 ms sleeps) until `timeout` has passed, and each such wait is counted
// (BusyWaits) so that an in-process writer committing back to back (the
// ledger under load) can leave a gap: otherwise the lock is free only for
// microseconds between its commits and the waiter can poll until it times out.
int SetBusyTimeout(sqlite3* db, std::chrono::milliseconds timeout);
// Waits for a lock begun so far by any connection of this process.
uint64_t BusyWaits();

// Runs SQL text with no bound values (pragmas, DDL, BEGIN/COMMIT).
Status ExecSql(sqlite3* db, const std::string& sql, std::string_view operation);

// Switches the file to WAL mode and checks that it took (kFailedPrecondition
// otherwise): "readers never wait for the writer" depends on it.
Status EnableWal(sqlite3* db);

// Text of column `col` of the current row (NULL -> ""), embedded NULs kept.
// Shared by Statement and the ledger's cached raw statements.
std::string ColumnText(sqlite3_stmt* stmt, int col);
// Bytes of a BLOB (or any) column; NULL -> empty.
Bytes ColumnBlob(sqlite3_stmt* stmt, int col);

// Long-lived prepared statements (the ledger's hot and repeated queries).
struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const noexcept { sqlite3_finalize(stmt); }
};
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

// Prepares with SQLITE_PREPARE_PERSISTENT (not from the lookaside pool meant
// for short-lived statements).
StatusOr<StmtPtr> PrepareCached(sqlite3* db, std::string_view sql, std::string_view operation);

// Scope guard for one use of a cached statement: on exit it resets the
// statement (ending its implicit read transaction, so a finished query does not
// pin an old WAL snapshot and hold back checkpoints) and clears the bindings
// (so no SQLITE_STATIC binding outlives the value it points into).
class StatementUse {
 public:
  explicit StatementUse(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~StatementUse() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  StatementUse(const StatementUse&) = delete;
  StatementUse& operator=(const StatementUse&) = delete;

 private:
  sqlite3_stmt* stmt_;
};

// Binds without copying: SQLITE_STATIC is safe because every bound value
// outlives the statement use (StatementUse clears the bindings). The first
// failure is remembered and checked once before stepping.
class Binder {
 public:
  explicit Binder(sqlite3_stmt* stmt) : stmt_(stmt) {}
  Binder& Text(int index, std::string_view value) {
    // A null data pointer would bind SQL NULL; an empty string must stay ''.
    const char* data = value.data() != nullptr ? value.data() : "";
    Note(sqlite3_bind_text64(stmt_, index, data, value.size(), SQLITE_STATIC, SQLITE_UTF8));
    return *this;
  }
  Binder& Blob(int index, ByteView value) {
    static const uint8_t kEmpty = 0;
    Note(sqlite3_bind_blob64(stmt_, index, value.empty() ? &kEmpty : value.data(), value.size(), SQLITE_STATIC));
    return *this;
  }
  Binder& Int(int index, int64_t value) {
    Note(sqlite3_bind_int64(stmt_, index, value));
    return *this;
  }
  int rc() const { return rc_; }

 private:
  void Note(int rc) {
    if (rc_ == SQLITE_OK) rc_ = rc;
  }
  sqlite3_stmt* stmt_;
  int rc_ = SQLITE_OK;
};

// A prepared statement. Bind* use 1-based indexes, like SQLite. A bind failure
// (only possible through a programming error) is remembered and reported by
// the next Step(), which keeps call sites linear.
class Statement {
 public:
  static StatusOr<Statement> Prepare(sqlite3* db, std::string_view sql, std::string operation);

  Statement(Statement&&) noexcept = default;
  Statement& operator=(Statement&&) noexcept = default;

  Statement& Bind(int index, std::string_view value);
  Statement& Bind(int index, int64_t value);
  Statement& BindBlob(int index, ByteView value);
  Statement& BindNull(int index);
  Statement& BindTime(int index, TimePoint value);
  Statement& BindOptionalTime(int index, const std::optional<TimePoint>& value);
  // Empty string -> NULL (for optional references such as api_keys.tenant_id).
  Statement& BindTextOrNull(int index, std::string_view value);
  // The same, for bytes held in a std::string (backups).
  Statement& BindBytes(int index, std::string_view bytes);
  // true when a row is available, false when the statement is done.
  StatusOr<bool> Step();
  // Steps a statement that must not return rows (INSERT/UPDATE/DELETE).
  Status Run();
  // Makes the statement ready to run again with fresh bindings (loops that
  // insert many rows prepare once).
  void Reset();

  std::string ColumnText(int col) const;  // NULL -> ""
  Bytes ColumnBlob(int col) const;        // NULL -> empty
  int64_t ColumnInt(int col) const;
  bool ColumnIsNull(int col) const;
  int ColumnType(int col) const;          // SQLITE_INTEGER, SQLITE_TEXT, ...
  std::string ColumnBytes(int col) const;  // ColumnBlob into a std::string
  TimePoint ColumnTime(int col) const;
  std::optional<TimePoint> ColumnOptionalTime(int col) const;
  // For readers shared with cached raw statements (e.g. the ledger's ReadEntry).
  sqlite3_stmt* raw() const { return stmt_.get(); }

 private:
  struct Finalizer {
    void operator()(sqlite3_stmt* stmt) const noexcept { sqlite3_finalize(stmt); }
  };
  Statement(sqlite3* db, sqlite3_stmt* stmt, std::string operation)
      : db_(db), stmt_(stmt), operation_(std::move(operation)) {}
  void NoteBind(int rc);

  sqlite3* db_;
  std::unique_ptr<sqlite3_stmt, Finalizer> stmt_;
  std::string operation_;
  int bind_rc_ = SQLITE_OK;
};

// A write transaction. BEGIN IMMEDIATE takes the write lock up front, so a
// read-then-write never has to upgrade its lock (an upgrade that loses a race
// fails with SQLITE_BUSY immediately, bypassing the busy timeout). Rolls back
// on destruction unless Commit() succeeded.
class Transaction {
 public:
  enum class Mode { kImmediate, kDeferred };
  static StatusOr<Transaction> Begin(sqlite3* db, Mode mode, std::string_view operation);

  Transaction(Transaction&& other) noexcept;
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  ~Transaction();

  Status Commit();

 private:
  Transaction(sqlite3* db, std::string operation) : db_(db), operation_(std::move(operation)) {}
  sqlite3* db_;  // null once committed or moved from
  std::string operation_;
};

}  // namespace concierge::store

#endif  // CONCIERGE_STORE_SQLITE_SQLITE_UTIL_H_
