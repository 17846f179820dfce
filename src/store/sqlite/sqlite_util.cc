#include "store/sqlite/sqlite_util.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>

namespace concierge::store {

void SqliteDbCloser::operator()(sqlite3* db) const noexcept {
  // close_v2 defers the close until outstanding statements are finalised, so
  // destruction order between a Statement and its connection cannot leak.
  sqlite3_close_v2(db);
}

namespace {

std::atomic<uint64_t> g_busy_waits{0};
constexpr std::chrono::microseconds kBusyStep{500};

// ctx: the timeout in milliseconds. `count` is the number of earlier calls for
// this lock, so count * kBusyStep is at least the time waited so far.
int BusyStep(void* ctx, int count) {
  if (count == 0) g_busy_waits.fetch_add(1, std::memory_order_relaxed);
  const int64_t timeout_ms = static_cast<int64_t>(reinterpret_cast<intptr_t>(ctx));
  if (static_cast<int64_t>(count) * kBusyStep.count() >= timeout_ms * 1000) return 0;
  std::this_thread::sleep_for(kBusyStep);
  return 1;
}

}  // namespace

int SetBusyTimeout(sqlite3* db, std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0) return sqlite3_busy_handler(db, nullptr, nullptr);
  return sqlite3_busy_handler(db, &BusyStep, reinterpret_cast<void*>(static_cast<intptr_t>(timeout.count())));
}

uint64_t BusyWaits() { return g_busy_waits.load(std::memory_order_relaxed); }

Status SqliteStatus(sqlite3* db, int rc, std::string_view operation) {
  // errmsg describes the failure (e.g. "UNIQUE constraint failed: keys.key_id")
  // without bound values. Fall back to errstr when no connection is at hand
  // or the connection's last error is not this one.
  std::string detail = sqlite3_errstr(rc);
  if (db != nullptr && sqlite3_extended_errcode(db) == rc) detail = sqlite3_errmsg(db);
  std::string message = "sqlite: " + std::string(operation) + ": " + detail;
  switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
      return AlreadyExistsError(std::move(message));
    case SQLITE_CONSTRAINT_FOREIGNKEY:
      return FailedPreconditionError(std::move(message));
    default:
      break;
  }
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return UnavailableError(message + " (database busy: busy timeout expired)");
    case SQLITE_CANTOPEN:
      return UnavailableError(std::move(message));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return DataLossError(std::move(message));
    default:
      return InternalError(std::move(message));
  }
}

void ConfigureSqliteLibrary() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Memory statistics make every SQLite allocation take a global mutex;
    // nothing here reads them, and the ledger writer allocates per row.
    // Only possible before the library initialises; if something else in
    // the process initialised it first, the default stays (slower, correct).
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  });
}

StatusOr<SqliteDb> OpenSqliteDb(const std::string& path, std::string_view operation) {
  ConfigureSqliteLibrary();
  sqlite3* raw = nullptr;
  // NOMUTEX: callers serialise access themselves, so SQLite's own per-call
  // mutex would only add cost.
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  SqliteDb db(raw);  // owns the handle even on failure, as SQLite requires
  if (rc != SQLITE_OK) return SqliteStatus(db.get(), rc, operation);
  sqlite3_extended_result_codes(db.get(), 1);
  return db;
}

Status ExecSql(sqlite3* db, const std::string& sql, std::string_view operation) {
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return SqliteStatus(db, sqlite3_extended_errcode(db), operation);
  return Status::Ok();
}

StatusOr<Statement> Statement::Prepare(sqlite3* db, std::string_view sql, std::string operation) {
  sqlite3_stmt* raw = nullptr;
  const int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &raw, nullptr);
  Statement stmt(db, raw, std::move(operation));
  if (rc != SQLITE_OK) return SqliteStatus(db, rc, stmt.operation_);
  return stmt;
}

void Statement::NoteBind(int rc) {
  if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
}

Statement& Statement::Bind(int index, std::string_view value) {
  NoteBind(sqlite3_bind_text64(stmt_.get(), index, value.data(), value.size(), SQLITE_TRANSIENT,
                               SQLITE_UTF8));
  return *this;
}

Statement& Statement::BindBlob(int index, std::span<const uint8_t> value) {
  // A zero-length blob must still be a blob, not NULL: pass a valid pointer.
  static const uint8_t kEmpty = 0;
  NoteBind(sqlite3_bind_blob64(stmt_.get(), index, value.empty() ? &kEmpty : value.data(), value.size(),
                               SQLITE_TRANSIENT));
  return *this;
}

Statement& Statement::Bind(int index, int64_t value) {
  NoteBind(sqlite3_bind_int64(stmt_.get(), index, value));
  return *this;
}


Statement& Statement::BindNull(int index) {
  NoteBind(sqlite3_bind_null(stmt_.get(), index));
  return *this;
}

Statement& Statement::BindTime(int index, TimePoint value) {
  return Bind(index, ToUnixMillis(value));
}

Statement& Statement::BindOptionalTime(int index, const std::optional<TimePoint>& value) {
  return value.has_value() ? BindTime(index, *value) : BindNull(index);
}

Statement& Statement::BindTextOrNull(int index, std::string_view value) {
  return value.empty() ? BindNull(index) : Bind(index, value);
}

Statement& Statement::BindBytes(int index, std::string_view bytes) {
  return BindBlob(index, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

StatusOr<bool> Statement::Step() {
  if (bind_rc_ != SQLITE_OK) return SqliteStatus(db_, bind_rc_, operation_ + " (binding)");
  const int rc = sqlite3_step(stmt_.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqliteStatus(db_, rc, operation_);
}

Status Statement::Run() {
  ASSIGN_OR_RETURN(bool row, Step());
  if (row) return InternalError("sqlite: " + operation_ + ": statement unexpectedly returned rows");
  return Status::Ok();
}

void Statement::Reset() {
  sqlite3_reset(stmt_.get());
  sqlite3_clear_bindings(stmt_.get());
  bind_rc_ = SQLITE_OK;
}

std::string ColumnText(sqlite3_stmt* stmt, int col) {
  const auto* text = sqlite3_column_text(stmt, col);
  if (text == nullptr) return std::string();
  // column_bytes after column_text gives the UTF-8 length, embedded NULs kept.
  return std::string(reinterpret_cast<const char*>(text), static_cast<size_t>(sqlite3_column_bytes(stmt, col)));
}

Bytes ColumnBlob(sqlite3_stmt* stmt, int col) {
  const auto* data = static_cast<const uint8_t*>(sqlite3_column_blob(stmt, col));
  if (data == nullptr) return Bytes();
  return Bytes(data, data + sqlite3_column_bytes(stmt, col));
}

StatusOr<StmtPtr> PrepareCached(sqlite3* db, std::string_view sql, std::string_view operation) {
  sqlite3_stmt* raw = nullptr;
  const int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                                    &raw, nullptr);
  StmtPtr stmt(raw);
  if (rc != SQLITE_OK) return SqliteStatus(db, rc, operation);
  return stmt;
}

std::string Statement::ColumnText(int col) const { return store::ColumnText(stmt_.get(), col); }

Bytes Statement::ColumnBlob(int col) const { return store::ColumnBlob(stmt_.get(), col); }

int64_t Statement::ColumnInt(int col) const { return sqlite3_column_int64(stmt_.get(), col); }

bool Statement::ColumnIsNull(int col) const {
  return sqlite3_column_type(stmt_.get(), col) == SQLITE_NULL;
}

int Statement::ColumnType(int col) const { return sqlite3_column_type(stmt_.get(), col); }

std::string Statement::ColumnBytes(int col) const {
  const void* data = sqlite3_column_blob(stmt_.get(), col);
  if (data == nullptr) return std::string();
  return std::string(static_cast<const char*>(data), static_cast<size_t>(sqlite3_column_bytes(stmt_.get(), col)));
}

TimePoint Statement::ColumnTime(int col) const { return FromUnixMillis(ColumnInt(col)); }

std::optional<TimePoint> Statement::ColumnOptionalTime(int col) const {
  if (ColumnIsNull(col)) return std::nullopt;
  return ColumnTime(col);
}

StatusOr<Transaction> Transaction::Begin(sqlite3* db, Mode mode, std::string_view operation) {
  const char* sql = mode == Mode::kImmediate ? "BEGIN IMMEDIATE" : "BEGIN DEFERRED";
  RETURN_IF_ERROR(ExecSql(db, sql, std::string(operation) + " (begin transaction)"));
  return Transaction(db, std::string(operation));
}

Transaction::Transaction(Transaction&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)), operation_(std::move(other.operation_)) {}

Transaction::~Transaction() {
  // SQLite may already have rolled back on its own (e.g. after SQLITE_FULL);
  // autocommit mode tells us, and a ROLLBACK then would only fail noisily.
  if (db_ != nullptr && sqlite3_get_autocommit(db_) == 0) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
}

Status Transaction::Commit() {
  if (db_ == nullptr) return InternalError("sqlite: " + operation_ + ": transaction not open");
  Status s = ExecSql(db_, "COMMIT", operation_ + " (commit)");
  // On failure the destructor still rolls back whatever remains open.
  if (s.ok()) db_ = nullptr;
  return s;
}

Status EnableWal(sqlite3* db) {
  ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db, "PRAGMA journal_mode = WAL", "enabling WAL mode"));
  ASSIGN_OR_RETURN(bool row, s.Step());
  const std::string mode = row ? s.ColumnText(0) : "";
  if (mode != "wal") {
    return FailedPreconditionError("sqlite: enabling WAL mode: database stayed in \"" + mode + "\" journal mode");
  }
  return Status::Ok();
}

}  // namespace concierge::store
