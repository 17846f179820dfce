#include "store/postgres/pg_leader.h"

#include <string>
#include <utility>

#include "store/postgres/pg_util.h"

namespace concierge::store {

StatusOr<std::unique_ptr<PgLeaderLock>> PgLeaderLock::Create(std::string_view url) {
  PgPoolOptions options;
  options.max_connections = 1;
  options.application_name = "keyctl-leader";
  ASSIGN_OR_RETURN(std::unique_ptr<PgPool> connector, PgPool::Create(url, std::move(options)));
  return std::make_unique<PgLeaderLock>(PrivateTag(), std::move(connector));
}

PgLeaderLock::PgLeaderLock(PrivateTag, std::unique_ptr<PgPool> connector) : connector_(std::move(connector)) {}

PgLeaderLock::~PgLeaderLock() { Release(); }

void PgLeaderLock::Release() {
  if (conn_ != nullptr && held_) {
    // Unlocked before we return, so a follower's next poll can win; closing
    // alone would leave it to the server's asynchronous session end.
    PgExec(conn_.get(), "SELECT pg_advisory_unlock(" + std::to_string(kLeaderLockKey) + ")",
           "releasing the leader lock")
        .status()
        .IgnoreError();
  }
  conn_.reset();  // the session ends, and with it the lock in any case
  held_ = false;
}

bool PgLeaderLock::Poll() {
  auto fail = [this](const Status& st) {
    last_error_ = st.message();
    Release();
    return false;
  };
  if (conn_ == nullptr) {
    StatusOr<PgConnPtr> conn = connector_->Connect("connecting for leader election");
    if (!conn.ok()) return fail(conn.status());
    conn_ = *std::move(conn);
  }
  if (held_) {
    // The lock lives exactly as long as this session: a round trip that
    // succeeds proves both.
    StatusOr<PgResult> alive = PgExec(conn_.get(), "SELECT 1", "checking the leader lock");
    if (!alive.ok()) return fail(alive.status());
    return true;
  }
  StatusOr<PgResult> r =
      PgExec(conn_.get(), "SELECT pg_try_advisory_lock(" + std::to_string(kLeaderLockKey) + ")",
             "trying the leader lock");
  if (!r.ok()) return fail(r.status());
  held_ = r->rows() == 1 && r->row(0).ColumnText(0) == "t";
  last_error_.clear();
  return held_;
}

}  // namespace concierge::store
