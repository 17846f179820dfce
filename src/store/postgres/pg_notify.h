// Tenant change notifications between `keyctl serve` instances sharing one
// PostgreSQL database.
//
// Every store transaction that changes what the sign path caches for a tenant
// (policy versions, tenant deletion, key states, the active-key swap of a
// cutover) calls NotifyTenantChanged inside the transaction: PostgreSQL
// delivers the NOTIFY to every listening session when, and only if, the
// transaction commits. PgNotifyListener is the receiving side: a thread with a
// connection of its own that LISTENs and hands each payload (the tenant id) to
// a callback, where the instance reloads that tenant's snapshot.
//
// Notifications sent while a listener is disconnected are lost, so after every
// (re)connection the callback receives kAllTenants ("reload everything"); and
// the callback also receives kAllTenants every `full_reload_every`, a slow
// safety net. Correctness does not rest on any of this: the ledger's commit
// fence (postgres_ledger.h) refuses rows signed with a key that was retired,
// whatever this instance's snapshot says. Notifications make that rare.
//
// PgNotifyListener is thread-safe (Start/Stop); the callback runs on its
// thread and may block briefly (a snapshot reload).
#ifndef CONCIERGE_STORE_POSTGRES_PG_NOTIFY_H_
#define CONCIERGE_STORE_POSTGRES_PG_NOTIFY_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "concierge/status.h"
#include "store/postgres/pg_pool.h"

namespace concierge::store {

inline constexpr char kTenantChangedChannel[] = "keyctl_tenant_changed";

// Queues a notification of `tenant_id` on kTenantChangedChannel, sent at commit.
Status NotifyTenantChanged(PGconn* conn, const std::string& tenant_id);

struct PgNotifyListenerOptions {
  // How long the thread waits for a notification before checking whether it
  // should stop, and the pause before reconnecting after a failure.
  std::chrono::milliseconds wait{500};
  // Every this long the callback also gets kAllTenants (0: never).
  std::chrono::milliseconds full_reload_every{std::chrono::seconds(30)};
};

class PgNotifyListener {
 public:
  // The payload standing for "any tenant may have changed".
  static constexpr std::string_view kAllTenants = "";
  using Callback = std::function<void(const std::string& tenant_id)>;

  static StatusOr<std::unique_ptr<PgNotifyListener>> Create(std::string_view url, Callback callback,
                                                            PgNotifyListenerOptions options = {});
  ~PgNotifyListener();  // Stop()

  void Start();  // idempotent
  void Stop();   // joins; idempotent
  // Times the listener has (re)connected and issued LISTEN (tests, health).
  uint64_t connects() const { return connects_.load(); }

  struct PrivateTag {
    explicit PrivateTag() = default;
  };
  PgNotifyListener(PrivateTag, std::unique_ptr<PgPool> connector, Callback callback, PgNotifyListenerOptions options);

 private:
  void Loop();
  // Waits up to options_.wait for input on the connection and delivers what
  // arrived. false when the connection broke.
  bool WaitAndDeliver(PGconn* conn);
  bool Sleep(std::chrono::milliseconds d);  // false when stopping

  std::unique_ptr<PgPool> connector_;
  Callback callback_;
  const PgNotifyListenerOptions options_;
  std::atomic<uint64_t> connects_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace concierge::store

#endif  // CONCIERGE_STORE_POSTGRES_PG_NOTIFY_H_
