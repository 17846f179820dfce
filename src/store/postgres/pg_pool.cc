#include "store/postgres/pg_pool.h"

#include <algorithm>
#include <map>
#include <utility>

namespace concierge::store {
namespace {

struct ConninfoFree {
  void operator()(PQconninfoOption* o) const noexcept { PQconninfoFree(o); }
};

// The non-empty options of a connection string, or kInvalidArgument. libpq's
// parse error is not passed on: it quotes the offending part of the URL,
// which may be the password.
StatusOr<std::map<std::string, std::string>> ParseConninfo(std::string_view url) {
  if (url.empty()) return FieldError("database_url", "the database URL is empty");
  const std::string text(url);
  char* err = nullptr;
  std::unique_ptr<PQconninfoOption, ConninfoFree> opts(PQconninfoParse(text.c_str(), &err));
  if (err != nullptr) PQfreemem(err);
  if (opts == nullptr) {
    return FieldError("database_url",
                      "the database URL does not parse; expected "
                      "postgresql://[user[:password]@]host[:port]/dbname[?param=value&...]");
  }
  std::map<std::string, std::string> out;
  for (PQconninfoOption* o = opts.get(); o->keyword != nullptr; ++o) {
    if (o->val != nullptr && *o->val != '\0') out[o->keyword] = o->val;
  }
  return out;
}

std::string Describe(const std::map<std::string, std::string>& o) {
  auto get = [&](const char* k) {
    auto it = o.find(k);
    return it == o.end() ? std::string() : it->second;
  };
  std::string host = get("host");
  if (host.empty()) host = get("hostaddr");
  std::string out = "postgresql://";
  if (!get("user").empty()) out += get("user") + "@";
  out += host.empty() ? "localhost" : host;
  if (!get("port").empty()) out += ":" + get("port");
  out += "/" + get("dbname");
  return out;
}

void IgnoreNotice(void*, const char*) {}

}  // namespace

StatusOr<std::string> DescribeDatabaseUrl(std::string_view url) {
  ASSIGN_OR_RETURN(auto opts, ParseConninfo(url));
  return Describe(opts);
}

StatusOr<bool> DatabaseUrlHasPassword(std::string_view url) {
  ASSIGN_OR_RETURN(auto opts, ParseConninfo(url));
  const bool has = opts.count("password") != 0;
  for (auto& [key, value] : opts) std::fill(value.begin(), value.end(), '\0');
  return has;
}

StatusOr<std::unique_ptr<PgPool>> PgPool::Create(std::string_view url, PgPoolOptions options) {
  if (options.max_connections < 1)
    return FieldError("max_connections", "the pool needs at least one connection");
  ASSIGN_OR_RETURN(auto opts, ParseConninfo(url));
  std::string description = Describe(opts);
  std::string password = opts.count("password") != 0 ? opts["password"] : std::string();
  for (auto& [key, value] : opts) std::fill(value.begin(), value.end(), '\0');
  auto pool =
      std::make_unique<PgPool>(PrivateTag(), SecretBytes::FromString(url, SecretAccess::Grant()),
                               std::move(password), std::move(description), std::move(options));
  return pool;
}

PgPool::PgPool(PrivateTag, SecretBytes url, std::string password, std::string description,
               PgPoolOptions options)
    : url_(std::move(url)),
      password_(SecretBytes::FromString(password, SecretAccess::Grant())),
      description_(std::move(description)),
      options_(std::move(options)) {
  std::fill(password.begin(), password.end(), '\0');
}

PgPool::~PgPool() = default;

std::string PgPool::Scrub(std::string message) const {
  const std::string_view pw = password_.RevealString(SecretAccess::Grant());
  if (pw.size() < 4) return message;  // too short to search for without mangling the text
  for (size_t pos = message.find(pw); pos != std::string::npos; pos = message.find(pw, pos)) {
    message.replace(pos, pw.size(), "***");
  }
  return message;
}

StatusOr<PgConnPtr> PgPool::Connect(std::string_view operation) {
  // Our defaults first: with expand_dbname, what the URL itself says wins.
  const std::string timeout = std::to_string(options_.connect_timeout_seconds);
  std::string url(url_.RevealString(SecretAccess::Grant()));
  const char* keys[] = {"connect_timeout",
                        "application_name",
                        "client_encoding",
                        "keepalives_idle",
                        "keepalives_interval",
                        "keepalives_count",
                        "tcp_user_timeout",
                        "dbname",
                        nullptr};
  const char* values[] = {timeout.c_str(),
                          options_.application_name.c_str(),
                          "UTF8",
                          "30",
                          "10",
                          "3",
                          "30000",
                          url.c_str(),
                          nullptr};
  PgConnPtr conn(PQconnectdbParams(keys, values, /*expand_dbname=*/1));
  std::fill(url.begin(), url.end(), '\0');
  if (conn == nullptr)
    return UnavailableError("postgres: " + std::string(operation) + ": out of memory connecting");
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    std::string why = PQerrorMessage(conn.get());
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    for (char& c : why) {
      if (c == '\n' || c == '\t') c = ' ';
    }
    return UnavailableError("postgres: " + std::string(operation) +
                            ": database unavailable: cannot connect to " + description_ + ": " +
                            Scrub(std::move(why)));
  }
  // Server notices (e.g. "relation already exists, skipping") would go to
  // stderr by default.
  PQsetNoticeProcessor(conn.get(), IgnoreNotice, nullptr);
  return conn;
}

StatusOr<PgPool::Lease> PgPool::Acquire(std::string_view operation) {
  const auto deadline = std::chrono::steady_clock::now() + options_.acquire_timeout;
  std::unique_lock lock(mu_);
  for (;;) {
    while (!idle_.empty()) {
      PgConnPtr conn = std::move(idle_.back());
      idle_.pop_back();
      if (PgConnectionLooksAlive(conn.get())) return Lease(this, conn.release(), /*reused=*/true);
      ++stats_.discarded;
      --stats_.open;
      lock.unlock();
      conn.reset();  // closing may touch the network: not under the lock
      lock.lock();
    }
    if (stats_.open < options_.max_connections) break;
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
        stats_.open >= options_.max_connections) {
      return UnavailableError("postgres: " + std::string(operation) + ": all " +
                              std::to_string(options_.max_connections) +
                              " database connections stayed busy for " +
                              std::to_string(options_.acquire_timeout.count()) + " ms");
    }
  }
  ++stats_.open;  // reserve the slot while connecting outside the lock
  lock.unlock();
  StatusOr<PgConnPtr> conn = Connect(operation);
  Status ready =
      conn.ok() && options_.on_connect ? options_.on_connect(conn->get()) : conn.status();
  lock.lock();
  if (!ready.ok()) {
    --stats_.open;
    ++stats_.failed_connects;
    lock.unlock();
    cv_.notify_one();
    return ready;
  }
  ++stats_.connects;
  return Lease(this, conn->release(), /*reused=*/false);
}

bool PgPool::WorthRetrying(const Lease& lease, int attempt) const {
  return lease.reused() && PQstatus(lease.get()) == CONNECTION_BAD &&
         attempt < options_.max_connections;
}

StatusOr<PgResult> PgPool::Query(std::string_view sql, const PgParams& params,
                                 std::string_view operation) {
  for (int attempt = 0;; ++attempt) {
    ASSIGN_OR_RETURN(Lease lease, Acquire(operation));
    StatusOr<PgResult> result = PgExec(lease.get(), sql, params, operation);
    if (result.ok() || !WorthRetrying(lease, attempt)) return result;
  }
}

StatusOr<PgPool::Session> PgPool::Begin(const PgTxOptions& options, std::string_view operation) {
  for (int attempt = 0;; ++attempt) {
    ASSIGN_OR_RETURN(Lease lease, Acquire(operation));
    StatusOr<PgTransaction> tx = PgTransaction::Begin(lease.get(), options, operation);
    if (tx.ok()) return Session{std::move(lease), *std::move(tx)};
    if (!WorthRetrying(lease, attempt)) return tx.status();
  }
}

void PgPool::Return(PGconn* raw) {
  PgConnPtr conn(raw);
  const bool reusable = PQstatus(raw) == CONNECTION_OK && PQtransactionStatus(raw) == PQTRANS_IDLE;
  {
    std::lock_guard lock(mu_);
    if (reusable) {
      idle_.push_back(std::move(conn));
    } else {
      ++stats_.discarded;
      --stats_.open;
    }
  }
  cv_.notify_one();
  // A broken connection is closed here, outside the lock.
}

PgPoolStats PgPool::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

PgPool::Lease::Lease(Lease&& other) noexcept
    : pool_(other.pool_), conn_(std::exchange(other.conn_, nullptr)), reused_(other.reused_) {}

PgPool::Lease::~Lease() {
  if (conn_ != nullptr) pool_->Return(conn_);
}

}  // namespace concierge::store
