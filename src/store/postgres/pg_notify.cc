#include "store/postgres/pg_notify.h"

#include <poll.h>

#include <cerrno>

#include <utility>

#include "store/postgres/pg_util.h"

namespace concierge::store {

Status NotifyTenantChanged(PGconn* conn, const std::string& tenant_id) {
  return PgExec(conn, "SELECT pg_notify($1, $2)", PgParams().Text(kTenantChangedChannel).Text(tenant_id),
                "notifying tenant change")
      .status();
}

StatusOr<std::unique_ptr<PgNotifyListener>> PgNotifyListener::Create(std::string_view url, Callback callback,
                                                                     PgNotifyListenerOptions options) {
  PgPoolOptions pool_options;
  pool_options.max_connections = 1;
  pool_options.application_name = "keyctl-listen";
  ASSIGN_OR_RETURN(std::unique_ptr<PgPool> connector, PgPool::Create(url, std::move(pool_options)));
  return std::make_unique<PgNotifyListener>(PrivateTag(), std::move(connector), std::move(callback), options);
}

PgNotifyListener::PgNotifyListener(PrivateTag, std::unique_ptr<PgPool> connector, Callback callback,
                                   PgNotifyListenerOptions options)
    : connector_(std::move(connector)), callback_(std::move(callback)), options_(options) {}

PgNotifyListener::~PgNotifyListener() { Stop(); }

void PgNotifyListener::Start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void PgNotifyListener::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool PgNotifyListener::Sleep(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  return !cv_.wait_for(lock, d, [this] { return stopping_; });
}

bool PgNotifyListener::WaitAndDeliver(PGconn* conn) {
  auto deliver = [&] {
    while (PGnotify* n = PQnotifies(conn)) {
      std::string payload = n->extra != nullptr ? n->extra : "";
      PQfreemem(n);
      // An empty payload would read as "everything": no tenant id is empty.
      if (!payload.empty()) callback_(payload);
    }
  };
  deliver();  // libpq may have buffered some with an earlier response
  pollfd pfd{PQsocket(conn), POLLIN, 0};
  if (pfd.fd < 0) return false;
  const int ready = ::poll(&pfd, 1, static_cast<int>(options_.wait.count()));
  if (ready < 0) return errno == EINTR;
  if (ready == 0) return true;
  if (PQconsumeInput(conn) == 0) return false;
  deliver();
  return PQstatus(conn) == CONNECTION_OK;
}

void PgNotifyListener::Loop() {
  const std::string listen = std::string("LISTEN ") + kTenantChangedChannel;
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
    }
    StatusOr<PgConnPtr> conn = connector_->Connect("listening for tenant changes");
    if (!conn.ok() || !PgExecScript(conn->get(), listen, "listening for tenant changes").ok()) {
      if (!Sleep(options_.wait)) return;
      continue;
    }
    ++connects_;
    // Whatever was notified while we were not listening is lost: reload all.
    callback_(std::string(kAllTenants));
    auto next_full = std::chrono::steady_clock::now() + options_.full_reload_every;
    for (;;) {
      {
        std::lock_guard lock(mu_);
        if (stopping_) return;
      }
      if (!WaitAndDeliver(conn->get())) break;  // reconnect
      if (options_.full_reload_every.count() > 0 && std::chrono::steady_clock::now() >= next_full) {
        callback_(std::string(kAllTenants));
        next_full = std::chrono::steady_clock::now() + options_.full_reload_every;
      }
    }
    if (!Sleep(options_.wait)) return;
  }
}

}  // namespace concierge::store
