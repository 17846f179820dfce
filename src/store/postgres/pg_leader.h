// PgLeaderLock: the leader election of several `keyctl serve` instances on one
// PostgreSQL database. The leader is whoever holds a session-level advisory
// lock (kLeaderLockKey) on a connection of its own, outside every pool. When
// the leader process dies, or its connection breaks, PostgreSQL ends the
// session and releases the lock; a follower's next Poll() takes it.
//
// Poll() is the whole interface: on a follower it tries the lock once
// (pg_try_advisory_lock, never waits); on the leader it checks with one round
// trip that the connection, hence the lock, is still there. Any failure closes
// the connection (which releases the lock if the server still had it) and
// reports "not leader", so an instance that cannot prove it holds the lock
// stops acting as leader (core::Leadership). Callers poll periodically.
//
// Not thread-safe: one thread polls (core::Leadership's). The URL may carry a
// password; it is handled as in PgPool.
#ifndef CONCIERGE_STORE_POSTGRES_PG_LEADER_H_
#define CONCIERGE_STORE_POSTGRES_PG_LEADER_H_

#include <memory>
#include <string>
#include <string_view>

#include "concierge/status.h"
#include "store/postgres/pg_pool.h"

namespace concierge::store {

class PgLeaderLock {
 public:
  // Parses the URL; does not connect.
  static StatusOr<std::unique_ptr<PgLeaderLock>> Create(std::string_view url);
  ~PgLeaderLock();  // closes the connection: the lock is released

  // true: this instance holds the lock now. false: another instance does, or
  // the database cannot be reached (the error is kept in last_error()).
  bool Poll();
  // Gives the lock up (closes the connection). The next Poll() competes again.
  void Release();
  const std::string& last_error() const { return last_error_; }

  struct PrivateTag {
    explicit PrivateTag() = default;
  };
  PgLeaderLock(PrivateTag, std::unique_ptr<PgPool> connector);

 private:
  std::unique_ptr<PgPool> connector_;  // only for Connect(): URL, timeouts, scrubbing
  PgConnPtr conn_;
  bool held_ = false;
  std::string last_error_;
};

}  // namespace concierge::store

#endif  // CONCIERGE_STORE_POSTGRES_PG_LEADER_H_
