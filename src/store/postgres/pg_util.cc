#include "store/postgres/pg_util.h"

#include <poll.h>

#include <charconv>
#include <cstring>
#include <utility>

#include "store/common/sql_records.h"

namespace concierge::store {
namespace {

// libpq messages end with a newline and may continue with hints on further
// lines; the first line is the message.
std::string FirstLine(const char* text) {
  if (text == nullptr) return std::string();
  std::string s(text);
  const size_t nl = s.find('\n');
  if (nl != std::string::npos) s.resize(nl);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

StatusOr<PgResult> Checked(PGconn* conn, PGresult* raw, std::string_view operation) {
  PgResult result(raw);  // owns it whatever happens next
  const ExecStatusType st = raw == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(raw);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return result;
  return PgStatus(conn, raw, operation);
}

}  // namespace

Status PgStatus(PGconn* conn, const PGresult* result, std::string_view operation) {
  const std::string prefix = "postgres: " + std::string(operation) + ": ";
  const char* state_field =
      result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  const std::string state = state_field != nullptr ? state_field : "";
  if (conn == nullptr || PQstatus(conn) == CONNECTION_BAD) {
    std::string why = conn != nullptr ? FirstLine(PQerrorMessage(conn)) : std::string();
    if (why.empty()) why = "connection lost";
    return UnavailableError(prefix + "database unavailable: " + why);
  }
  if (state.empty()) {
    // A client-side failure (out of memory, protocol confusion).
    std::string why =
        FirstLine(result != nullptr ? PQresultErrorMessage(result) : PQerrorMessage(conn));
    return InternalError(prefix + (why.empty() ? "unknown libpq error" : why));
  }
  const char* primary_field = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
  const std::string primary = primary_field != nullptr ? primary_field : "error";
  const std::string message = prefix + primary + " (SQLSTATE " + state + ")";
  if (state == "23505") return AlreadyExistsError(message);
  if (state == "23503") return FailedPreconditionError(message);
  if (state == "40001" || state == "40P01") return AbortedError(message);
  if (StartsWith(state, "08") || StartsWith(state, "53") || state == "57P01" || state == "57P02" ||
      state == "57P03") {
    return UnavailableError(prefix + "database unavailable: " + primary + " (SQLSTATE " + state +
                            ")");
  }
  if (state == "55P03" || state == "57014") {
    return UnavailableError(message + " (database busy: lock or statement timeout expired)");
  }
  if (StartsWith(state, "22")) {
    // The primary message of a data exception may quote the value.
    return InvalidArgumentError(prefix + "invalid value (SQLSTATE " + state + ")");
  }
  if (state == "XX001" || state == "XX002") return DataLossError(message);
  return InternalError(message);
}

// --- parameters and rows -------------------------------------------------------------

PgParams& PgParams::Text(std::string_view value) {
  if (value.find('\0') != std::string_view::npos) has_nul_ = true;
  values_.emplace_back(std::string(value));
  return *this;
}

PgParams& PgParams::Bytes(std::string_view bytes) {
  values_.emplace_back(EncodeByteaHex(bytes));
  return *this;
}

std::string EncodeByteaHex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\\x";
  out.reserve(2 + 2 * bytes.size());
  for (unsigned char b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

StatusOr<std::string> DecodeByteaHex(std::string_view text) {
  if (text.substr(0, 2) != "\\x" || text.size() % 2 != 0) return InternalError("unexpected bytea output format");
  std::string out;
  out.reserve((text.size() - 2) / 2);
  for (size_t i = 2; i < text.size(); i += 2) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(text.data() + i, text.data() + i + 2, v, 16);
    if (ec != std::errc() || p != text.data() + i + 2) return InternalError("unexpected bytea output format");
    out.push_back(static_cast<char>(v));
  }
  return out;
}

PgParams& PgParams::Int(int64_t value) {
  values_.emplace_back(std::to_string(value));
  return *this;
}

PgParams& PgParams::Null() {
  values_.emplace_back(std::nullopt);
  return *this;
}

PgParams& PgParams::Time(TimePoint value) { return Int(ToUnixMillis(value)); }

PgParams& PgParams::OptionalTime(const std::optional<TimePoint>& value) {
  return value.has_value() ? Time(*value) : Null();
}

PgParams& PgParams::TextOrNull(std::string_view value) {
  return value.empty() ? Null() : Text(value);
}

std::vector<const char*> PgParams::Pointers() const {
  std::vector<const char*> out;
  out.reserve(values_.size());
  for (const auto& v : values_) out.push_back(v.has_value() ? v->c_str() : nullptr);
  return out;
}

std::string PgRow::ColumnText(int col) const {
  if (PQgetisnull(result_, row_, col)) return std::string();
  return std::string(PQgetvalue(result_, row_, col),
                     static_cast<size_t>(PQgetlength(result_, row_, col)));
}

int64_t PgRow::ColumnInt(int col) const {
  if (PQgetisnull(result_, row_, col)) return 0;
  const char* text = PQgetvalue(result_, row_, col);
  const size_t len = static_cast<size_t>(PQgetlength(result_, row_, col));
  int64_t v = 0;
  std::from_chars(text, text + len, v);
  return v;
}

bool PgRow::ColumnIsNull(int col) const { return PQgetisnull(result_, row_, col) != 0; }

TimePoint PgRow::ColumnTime(int col) const { return FromUnixMillis(ColumnInt(col)); }

std::optional<TimePoint> PgRow::ColumnOptionalTime(int col) const {
  if (ColumnIsNull(col)) return std::nullopt;
  return ColumnTime(col);
}

int64_t PgResult::affected() const {
  const char* n = PQcmdTuples(result_.get());
  int64_t v = 0;
  if (n != nullptr) std::from_chars(n, n + std::strlen(n), v);
  return v;
}

// --- execution ----------------------------------------------------------------------

namespace {

// libpq sends text parameters NUL-terminated: one with a NUL inside would be
// cut short silently, so it is refused before anything is sent.
Status RefuseNul(const PgParams& params, std::string_view operation) {
  if (!params.has_nul()) return Status::Ok();
  return InvalidArgumentError("postgres: " + std::string(operation) +
                              ": a text value contains a NUL byte, which PostgreSQL cannot store");
}

}  // namespace

StatusOr<PgResult> PgExec(PGconn* conn, std::string_view sql, const PgParams& params,
                          std::string_view operation) {
  RETURN_IF_ERROR(RefuseNul(params, operation));
  const std::vector<const char*> values = params.Pointers();
  const std::string text(sql);  // libpq wants NUL-terminated SQL
  return Checked(
      conn,
      PQexecParams(conn, text.c_str(), params.size(), nullptr, values.data(), nullptr, nullptr, 0),
      operation);
}

StatusOr<PgResult> PgExec(PGconn* conn, std::string_view sql, std::string_view operation) {
  return PgExec(conn, sql, PgParams(), operation);
}

StatusOr<PgResult> PgExecPrepared(PGconn* conn, const char* name, const PgParams& params,
                                  std::string_view operation) {
  RETURN_IF_ERROR(RefuseNul(params, operation));
  const std::vector<const char*> values = params.Pointers();
  return Checked(conn,
                 PQexecPrepared(conn, name, params.size(), values.data(), nullptr, nullptr, 0),
                 operation);
}

Status PgPrepare(PGconn* conn, const char* name, std::string_view sql, int param_count,
                 std::string_view operation) {
  const std::string text(sql);
  return Checked(conn, PQprepare(conn, name, text.c_str(), param_count, nullptr), operation)
      .status();
}

Status PgExecScript(PGconn* conn, std::string_view sql, std::string_view operation) {
  const std::string text(sql);
  return Checked(conn, PQexec(conn, text.c_str()), operation).status();
}

// --- transactions ----------------------------------------------------------------------

StatusOr<PgTransaction> PgTransaction::Begin(PGconn* conn, const PgTxOptions& options,
                                             std::string_view operation) {
  // One round trip for BEGIN and its settings (simple protocol, several statements).
  std::string sql =
      options.read_only_snapshot ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" : "BEGIN";
  if (options.lock_timeout.count() > 0) {
    sql += "; SET LOCAL lock_timeout = " + std::to_string(options.lock_timeout.count());
  }
  if (options.lock_key.has_value()) {
    sql += "; SELECT pg_advisory_xact_lock(" + std::to_string(*options.lock_key) + ")";
  }
  PgTransaction tx(conn, std::string(operation));
  Status s = PgExecScript(conn, sql, std::string(operation) + " (begin transaction)");
  if (!s.ok()) return s;  // tx's destructor rolls back what BEGIN opened
  return tx;
}

PgTransaction::PgTransaction(PgTransaction&& other) noexcept
    : conn_(std::exchange(other.conn_, nullptr)), operation_(std::move(other.operation_)) {}

PgTransaction::~PgTransaction() {
  if (conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK &&
      PQtransactionStatus(conn_) != PQTRANS_IDLE) {
    PQclear(PQexec(conn_, "ROLLBACK"));
  }
}

Status PgTransaction::Commit() {
  if (conn_ == nullptr) return InternalError("postgres: " + operation_ + ": transaction not open");
  // COMMIT of a failed transaction "succeeds" as a ROLLBACK; refuse instead.
  if (PQtransactionStatus(conn_) == PQTRANS_INERROR) {
    return InternalError("postgres: " + operation_ + ": transaction failed earlier, not committed");
  }
  Status s = PgExecScript(conn_, "COMMIT", operation_ + " (commit)");
  if (s.ok()) conn_ = nullptr;
  return s;
}

bool PgConnectionLooksAlive(PGconn* conn) {
  if (PQstatus(conn) != CONNECTION_OK || PQtransactionStatus(conn) != PQTRANS_IDLE) return false;
  // Something may have arrived while the connection sat idle: a notification,
  // or the server's goodbye (an error message, then EOF) when it shut down or
  // dropped us. One read can return the message without yet seeing the EOF
  // behind it, so read until nothing is pending or the connection is bad.
  for (int reads = 0; reads < 8; ++reads) {
    pollfd p{PQsocket(conn), POLLIN, 0};
    const int ready = poll(&p, 1, 0);
    if (ready == 0) return true;  // nothing (more) pending
    if (ready < 0) return false;
    if (PQconsumeInput(conn) == 0) return false;
    // Parses what arrived: notifications are dropped, an error sent while idle
    // goes to the (silent) notice processor.
    while (PGnotify* n = PQnotifies(conn)) PQfreemem(n);
    if (PQstatus(conn) != CONNECTION_OK) return false;
  }
  return false;  // still more arriving: not a connection to trust with a request
}

}  // namespace concierge::store
