// Small RAII layer over libpq, used only by the PostgreSQL store and ledger.
//
// PgResult owns a PGresult, PgParams holds text-format parameters, PgTransaction
// an open BEGIN..COMMIT that rolls back unless committed. None of these are
// thread-safe: a connection belongs to one thread at a time (PgPool hands it
// out). Every failure becomes a Status through PgStatus(), which names the
// operation and PostgreSQL's primary message but never bound values nor the
// message's DETAIL (where PostgreSQL quotes the offending values).
//
// Error conventions (SQLSTATE class or code -> StatusCode):
//   23505 unique_violation               -> kAlreadyExists
//   23503 foreign_key_violation          -> kFailedPrecondition
//   40001 serialization, 40P01 deadlock  -> kAborted
//   08xxx connection, 57P01..57P03 shutdown/starting, 53xxx resources,
//   55P03 lock_not_available, 57014 statement/lock timeout, and a connection
//   that broke without a SQLSTATE        -> kUnavailable
//   22xxx data exception                 -> kInvalidArgument (no message text:
//                                           it may quote the value)
//   XX001/XX002 data corrupted           -> kDataLoss
//   anything else                        -> kInternal
#ifndef CONCIERGE_STORE_POSTGRES_PG_UTIL_H_
#define CONCIERGE_STORE_POSTGRES_PG_UTIL_H_

#include <libpq-fe.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "concierge/clock.h"
#include "concierge/status.h"

namespace concierge::store {

struct PgConnCloser {
  void operator()(PGconn* conn) const noexcept { PQfinish(conn); }
};
using PgConnPtr = std::unique_ptr<PGconn, PgConnCloser>;

// Advisory lock keys. The bigint key space is per database and shared with any
// other application using the same database, so the keys are distinctive
// constants ("c2cc" + a purpose number). Add new ones here, with a line each.
inline constexpr int64_t kPgLockKeyBase = 0x63326363'00000000;  // "c2cc"
// Session lock held while migrations run: instances starting together wait.
inline constexpr int64_t kMigrationLockKey = kPgLockKeyBase + 1;
// Transaction lock taken by every PostgresStore write transaction, so store
// writes are serialised like SQLite's BEGIN IMMEDIATE (see postgres_store.h).
inline constexpr int64_t kStoreWriteLockKey = kPgLockKeyBase + 2;
// Transaction lock taken by every ledger append, so seq follows commit order
// across instances (see postgres_ledger.h).
inline constexpr int64_t kLedgerAppendLockKey = kPgLockKeyBase + 3;
// Session lock held by the leader of several instances on one database, on a
// connection of its own (see pg_leader.h).
inline constexpr int64_t kLeaderLockKey = kPgLockKeyBase + 8;

// Maps a failed result (or a broken connection when `result` is null) to our
// error conventions. `operation` says what we were doing ("inserting key").
Status PgStatus(PGconn* conn, const PGresult* result, std::string_view operation);

// Text-format parameters for PQexecParams ($1 is the first one added). A text
// value with a NUL byte cannot be sent (libpq would cut it there, and
// PostgreSQL text cannot hold one): it is remembered and reported by the exec.
class PgParams {
 public:
  PgParams& Text(std::string_view value);
  PgParams& Int(int64_t value);
  PgParams& Null();
  PgParams& Time(TimePoint value);
  PgParams& OptionalTime(const std::optional<TimePoint>& value);
  // Empty string -> NULL (for optional references such as api_keys.tenant_id).
  PgParams& TextOrNull(std::string_view value);
  // A bytea value (sent as text in hex format, so any byte is fine).
  PgParams& Bytes(std::string_view bytes);

  int size() const { return static_cast<int>(values_.size()); }
  // Pointers into this object, valid until it changes; NULL for SQL NULL.
  std::vector<const char*> Pointers() const;
  bool has_nul() const { return has_nul_; }

 private:
  std::vector<std::optional<std::string>> values_;
  bool has_nul_ = false;
};

// bytea in PostgreSQL's hex text format ("\\x0a1b..."), as sent in text-format
// parameters and returned by servers with the default bytea_output = hex.
std::string EncodeByteaHex(std::string_view bytes);
// kInternal for any other text (e.g. bytea_output = escape).
StatusOr<std::string> DecodeByteaHex(std::string_view text);

// One row of a PgResult, in the shape the readers of sql_records.h take.
class PgRow {
 public:
  PgRow(const PGresult* result, int row) : result_(result), row_(row) {}
  std::string ColumnText(int col) const;  // NULL -> ""
  int64_t ColumnInt(int col) const;       // NULL or unparsable -> 0
  bool ColumnIsNull(int col) const;
  TimePoint ColumnTime(int col) const;
  std::optional<TimePoint> ColumnOptionalTime(int col) const;

 private:
  const PGresult* result_;
  int row_;
};

class PgResult {
 public:
  explicit PgResult(PGresult* result) : result_(result) {}
  int rows() const { return PQntuples(result_.get()); }
  PgRow row(int i) const { return PgRow(result_.get(), i); }
  // Rows changed by INSERT/UPDATE/DELETE (0 when not applicable).
  int64_t affected() const;
  // For column metadata (PQnfields, PQfname, PQftype).
  const PGresult* raw() const { return result_.get(); }

 private:
  struct Clearer {
    void operator()(PGresult* r) const noexcept { PQclear(r); }
  };
  std::unique_ptr<PGresult, Clearer> result_;
};

// Runs one statement with parameters (extended protocol, so `sql` is a single
// statement). Succeeds for PGRES_COMMAND_OK and PGRES_TUPLES_OK.
StatusOr<PgResult> PgExec(PGconn* conn, std::string_view sql, const PgParams& params,
                          std::string_view operation);
StatusOr<PgResult> PgExec(PGconn* conn, std::string_view sql, std::string_view operation);
// Runs a statement prepared on this connection with PQprepare.
StatusOr<PgResult> PgExecPrepared(PGconn* conn, const char* name, const PgParams& params,
                                  std::string_view operation);
// Prepares `sql` (with `param_count` parameters) as statement `name` on this
// connection, for PgExecPrepared.
Status PgPrepare(PGconn* conn, const char* name, std::string_view sql, int param_count,
                 std::string_view operation);
// Runs one or more statements without parameters (simple protocol: DDL,
// migrations, BEGIN; SET ...). Statements after a failing one do not run.
Status PgExecScript(PGconn* conn, std::string_view sql, std::string_view operation);

// A transaction on one connection. Rolls back on destruction unless Commit()
// succeeded (or the connection broke, when there is nothing left to undo).
struct PgTxOptions {
  // Take pg_advisory_xact_lock(lock_key) right after BEGIN, waiting at most
  // lock_timeout (0 = no limit) for it and for any row lock in the transaction.
  std::optional<int64_t> lock_key;
  std::chrono::milliseconds lock_timeout{0};
  // REPEATABLE READ READ ONLY: every statement sees one snapshot.
  bool read_only_snapshot = false;
};

class PgTransaction {
 public:
  static StatusOr<PgTransaction> Begin(PGconn* conn, const PgTxOptions& options,
                                       std::string_view operation);
  PgTransaction(PgTransaction&& other) noexcept;
  PgTransaction& operator=(PgTransaction&&) = delete;
  PgTransaction(const PgTransaction&) = delete;
  ~PgTransaction();

  Status Commit();

 private:
  PgTransaction(PGconn* conn, std::string operation)
      : conn_(conn), operation_(std::move(operation)) {}
  PGconn* conn_;  // null once committed or moved from
  std::string operation_;
};

// Whether an idle connection is still usable: it reads what the server sent
// while the connection sat idle (a shutdown notice and EOF after a server
// restart) without blocking. Drops notifications.
bool PgConnectionLooksAlive(PGconn* conn);

}  // namespace concierge::store

#endif  // CONCIERGE_STORE_POSTGRES_PG_UTIL_H_
