// PgPool: a small thread-safe pool of libpq connections to one database.
//
// Connections are opened lazily, up to max_connections, and handed out one
// thread at a time as a Lease that returns the connection when destroyed. A
// connection that broke (server restart, network loss), or that is returned in
// the middle of a transaction, is closed instead of returned; an idle one is
// checked before it is handed out again (PgConnectionLooksAlive), so after the
// database comes back the pool reconnects by itself on the next Acquire. While
// the database is down Acquire fails at once with kUnavailable (connection
// refused) or after connect_timeout (unreachable host). Query() and Begin()
// also cover the moment between that check and the first round trip (the
// server dropping a connection just then): they repeat that round trip once
// on another connection, which is safe because a read or a BEGIN applies
// nothing. Nothing else is repeated behind the caller's back.
//
// The connection URL may hold a password. The pool keeps it in SecretBytes,
// and everything it says (description(), error messages) is built from the
// parsed host, port, user and database only, with libpq's connection errors
// scrubbed of the password as a second guard.
//
// Thread-safe. Leases must not outlive the pool.
#ifndef CONCIERGE_STORE_POSTGRES_PG_POOL_H_
#define CONCIERGE_STORE_POSTGRES_PG_POOL_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "concierge/secret.h"
#include "concierge/status.h"
#include "store/postgres/pg_util.h"

namespace concierge::store {

struct PgPoolOptions {
  int max_connections = 8;
  // How long Acquire waits for a busy pool before kUnavailable.
  std::chrono::milliseconds acquire_timeout{5000};
  // libpq connect_timeout, unless the URL sets one.
  int connect_timeout_seconds = 5;
  std::string application_name = "keyctl";
  // Runs on every new connection before its first use (e.g. PQprepare); a
  // failure closes the connection and fails the Acquire.
  std::function<Status(PGconn*)> on_connect;
};

struct PgPoolStats {
  uint64_t connects = 0;  // connections opened successfully
  uint64_t failed_connects = 0;
  uint64_t discarded = 0;  // closed because broken or mid-transaction
  int open = 0;            // currently open (idle + leased)
};

class PgPool {
 public:
  // Parses `url` (a postgresql:// URI or key=value string, as libpq takes)
  // without connecting. kInvalidArgument for a malformed URL; the message
  // does not repeat the URL.
  static StatusOr<std::unique_ptr<PgPool>> Create(std::string_view url, PgPoolOptions options = {});
  ~PgPool();

  class Lease {
   public:
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    PGconn* get() const { return conn_; }
    // Whether the connection came from the idle list (rather than being new).
    bool reused() const { return reused_; }

   private:
    friend class PgPool;
    Lease(PgPool* pool, PGconn* conn, bool reused) : pool_(pool), conn_(conn), reused_(reused) {}
    PgPool* pool_;
    PGconn* conn_;  // null once moved from
    bool reused_;
  };

  // A pooled connection with an open transaction. Members are destroyed in
  // reverse order: the transaction rolls back (unless committed) before the
  // connection goes back to the pool.
  struct Session {
    Lease lease;
    PgTransaction tx;
    PGconn* conn() const { return lease.get(); }
  };

  // An idle or new connection. kUnavailable when the database cannot be
  // reached or every connection stays busy for acquire_timeout.
  StatusOr<Lease> Acquire(std::string_view operation);

  // The two ways in which the store and ledger use a connection. Both repeat
  // their first round trip on another connection when a connection reused
  // from the pool turns out to have been dropped since it was last checked
  // (the server closed it a moment before): a read, and a BEGIN, are safe to
  // repeat, since nothing was applied. A failure later in a transaction is
  // reported, never repeated: the caller cannot know what was applied.
  //
  // Runs one statement (a read, or a write that is one statement and safe to
  // repeat) in its own implicit transaction.
  StatusOr<PgResult> Query(std::string_view sql, const PgParams& params,
                           std::string_view operation);
  // Opens a transaction with `options` on a pooled connection.
  StatusOr<Session> Begin(const PgTxOptions& options, std::string_view operation);
  // A new connection outside the pool (for session-level state such as the
  // migration lock); on_connect is not run.
  StatusOr<PgConnPtr> Connect(std::string_view operation);

  // "postgresql://user@host:port/dbname": for logs, never with the password.
  const std::string& description() const { return description_; }
  PgPoolStats stats() const;

  struct PrivateTag {
    explicit PrivateTag() = default;
  };
  PgPool(PrivateTag, SecretBytes url, std::string password, std::string description,
         PgPoolOptions options);

 private:
  void Return(PGconn* conn);
  // Whether a failure on `lease` is a dropped reused connection, worth one
  // more try on another connection (bounded by the pool size).
  bool WorthRetrying(const Lease& lease, int attempt) const;
  // Removes the password from a libpq message (belt and braces: libpq does
  // not quote it in connection errors).
  std::string Scrub(std::string message) const;

  const SecretBytes url_;
  const SecretBytes password_;  // as parsed from the URL, for Scrub; may be empty
  const std::string description_;
  const PgPoolOptions options_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<PgConnPtr> idle_;  // guarded by mu_
  PgPoolStats stats_;            // guarded by mu_
};

// Whether a database URL carries a password (kInvalidArgument if it does not
// parse; the message does not quote it).
StatusOr<bool> DatabaseUrlHasPassword(std::string_view url);

// Describes a database URL without its password ("postgresql://u@h:5432/db"),
// or says why it does not parse (without quoting it). For logs and messages.
StatusOr<std::string> DescribeDatabaseUrl(std::string_view url);

}  // namespace concierge::store

#endif  // CONCIERGE_STORE_POSTGRES_PG_POOL_H_
