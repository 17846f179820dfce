#include "server/app.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "backends/pkcs11/server_setup.h"
#include "backends/software/software_backend.h"
#include "core/audit_log.h"
#include "core/auth.h"
#include "core/ca.h"
#include "core/issuance.h"
#include "core/ledger_writer.h"
#include "core/signing_service.h"
#include "core/tenant_service.h"
#include "server/api.h"
#include "server/health_probe.h"
#include "server/http_server.h"
#include "server/log.h"
#include "store/sqlite/sqlite_ledger.h"
#include "store/sqlite/sqlite_store.h"

namespace concierge::server {
namespace {

constexpr char kBootstrapTokenFile[] = "bootstrap-admin.token";

Status MakePrivateDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return UnavailableError("cannot create directory " + dir + ": " + ec.message());
  if (::chmod(dir.c_str(), 0700) != 0) {
    return UnavailableError("cannot restrict permissions of " + dir + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

// Writes `content` to `path` with mode 0600, replacing any old file atomically.
Status WritePrivateFile(const std::string& path, std::string_view content) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return UnavailableError("cannot write " + path + ": " + std::strerror(errno));
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      return UnavailableError("cannot write " + path + ": " + std::strerror(errno));
    }
    off += static_cast<size_t>(n);
  }
  bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced || ::rename(tmp.c_str(), path.c_str()) != 0) {
    return UnavailableError("cannot write " + path + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<store::SqliteStore>> OpenStore(const ServerConfig& config) {
  auto store = store::SqliteStore::Open(config.database_path);
  if (!store.ok()) return store.status().Annotate("opening database " + config.database_path);
  return store;
}

}  // namespace

struct App::Impl {
  ServerConfig config;
  Clock* clock = nullptr;
  std::unique_ptr<store::SqliteStore> store;
  std::unique_ptr<store::SqliteLedger> ledger;
  core::IssuanceLimiter limiter;
  BackendRegistry backends;
  std::unique_ptr<core::LedgerWriter> ledger_writer;
  // After the writer and backends: destroyed first, its final checkpoint
  // still reads the writer's head and signs through the backend.
  std::unique_ptr<core::AuditLog> audit;
  std::unique_ptr<core::Authenticator> auth;
  std::unique_ptr<core::TenantService> tenants;
  std::unique_ptr<core::SigningService> signing;
  std::unique_ptr<core::CertificateService> certs;
  std::unique_ptr<HealthProber> prober;
  std::unique_ptr<Api> api;
  std::unique_ptr<HttpServer> http;
  std::string bootstrap_token_path;
  std::string host;

  // WAL checkpoints run here, off the request path (see SqliteStore).
  std::thread maintenance;
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;

  void MaintenanceLoop() {
    std::unique_lock lock(mu);
    while (!cv.wait_for(lock, std::chrono::seconds(2), [this] { return stopping; })) {
      lock.unlock();
      Status st = store->Checkpoint();
      if (!st.ok()) Log(LogLevel::kWarn, "wal_checkpoint_failed", {{"error", st.message()}});
      lock.lock();
    }
  }
};

App::App(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
App::~App() { Stop(); }

StatusOr<std::unique_ptr<App>> App::Create(ServerConfig config, Clock& clock) {
  config.ResolvePaths();
  SetLogLevel(config.log_level);
  auto impl = std::make_unique<Impl>();
  impl->clock = &clock;
  RETURN_IF_ERROR(MakePrivateDir(config.data_dir));

  ASSIGN_OR_RETURN(impl->store, OpenStore(config));
  RETURN_IF_ERROR(impl->store->Migrate().Annotate("migrating database"));
  auto ledger = store::SqliteLedger::Open(config.database_path);
  if (!ledger.ok()) return ledger.status().Annotate("opening signing ledger");
  impl->ledger = *std::move(ledger);
  // Issuance caps survive restarts: rebuild the 24h windows from the ledger.
  ASSIGN_OR_RETURN(auto counts,
                   impl->ledger->CountByMinuteSince(clock.Now() - std::chrono::hours(24) - std::chrono::minutes(1)));
  impl->limiter.Load(counts);
  // The audit tree continues from what is stored, after checking it against
  // the latest signed checkpoint (a tampered database refuses to start).
  ASSIGN_OR_RETURN(audit::CompactRange audit_tree, core::RestoreAuditTree(*impl->ledger));
  store::SqliteLedger* ledger_ptr = impl->ledger.get();
  impl->ledger_writer = std::make_unique<core::LedgerWriter>(
      *impl->ledger, core::LedgerWriterOptions{}, std::move(audit_tree),
      [ledger_ptr]() -> StatusOr<audit::CompactRange> {
        ASSIGN_OR_RETURN(int64_t size, ledger_ptr->AuditSize());
        core::StoreTreeReader reader(*ledger_ptr);
        return audit::CompactRangeAt(reader, static_cast<uint64_t>(size));
      });

  backends::SoftwareKeystoreOptions ks;
  ks.dir = config.keystore_dir;
  ks.master_key_file = config.master_key_file;
  ks.argon2 = {config.argon2_time_cost, config.argon2_memory_kib, config.argon2_parallelism};
  if (config.master_passphrase) ks.passphrase = config.master_passphrase->Clone();
  auto software = backends::SoftwareBackend::Create(std::move(ks));
  if (!software.ok()) return software.status().Annotate("opening software keystore " + config.keystore_dir);
  Log(LogLevel::kInfo, "keystore_opened",
      {{"dir", config.keystore_dir}, {"kek_source", std::string((*software)->kek_source())}});
  RETURN_IF_ERROR(impl->backends.Register(*std::move(software)));

  // PKCS#11 HSMs: the configured module, or a SoftHSM2 dev token (docs/pkcs11.md).
  backends::pkcs11::Pkcs11ServerSettings p11{config.data_dir, config.pkcs11_module, config.pkcs11_allowed_modules,
                                             config.pkcs11_sessions, config.io_threads, config.yubihsm2_module,
                                             &config.pkcs11_pin};
  ASSIGN_OR_RETURN(auto hsm, backends::pkcs11::CreatePkcs11Backends(p11));
  for (const auto& [warn, note] : hsm.notes) {
    Log(warn ? LogLevel::kWarn : LogLevel::kInfo, "pkcs11", {{"detail", note}});
  }
  for (auto& b : hsm.backends) RETURN_IF_ERROR(impl->backends.Register(std::move(b)));

  core::AuditLogOptions audit_options;
  audit_options.origin = config.audit_origin;
  audit_options.checkpoint_interval = std::chrono::seconds(config.audit_checkpoint_interval_seconds);
  audit_options.on_error = [](const Status& st) {
    Log(LogLevel::kWarn, "audit_checkpoint_failed", {{"error", st.message()}});
  };
  auto audit = core::AuditLog::Create(*impl->ledger_writer, *impl->ledger, impl->backends, clock, audit_options);
  if (!audit.ok()) return audit.status().Annotate("opening the audit log");
  impl->audit = *std::move(audit);

  impl->auth = std::make_unique<core::Authenticator>(*impl->store, clock);
  impl->tenants = std::make_unique<core::TenantService>(*impl->store, impl->backends, clock);
  core::SigningOptions signing_options;
  signing_options.max_batch = config.max_batch;
  impl->signing = std::make_unique<core::SigningService>(*impl->tenants, *impl->ledger_writer, impl->limiter, clock,
                                                         signing_options);
  impl->certs = std::make_unique<core::CertificateService>(*impl->store, impl->backends, *impl->tenants, clock);
  impl->prober = std::make_unique<HealthProber>(impl->backends, config.data_dir + "/health-probes.json");
  impl->api = std::make_unique<Api>(ApiDeps{impl->store.get(), &impl->backends, impl->auth.get(),
                                            impl->tenants.get(), impl->signing.get(), impl->ledger.get(),
                                            impl->ledger_writer.get(), impl->prober.get(), &clock,
                                            impl->certs.get(), impl->audit.get()});

  // First start: mint an admin key, write its token (0600) before storing the
  // key, so a crash in between leaves no admin key that nobody holds.
  ASSIGN_OR_RETURN(auto existing_keys, impl->store->ListApiKeys());
  if (existing_keys.empty()) {
    ASSIGN_OR_RETURN(core::NewApiKey admin,
                     impl->auth->MintApiKey(core::Role::kAdmin, "", "bootstrap admin", "system"));
    std::string path = config.data_dir + "/" + kBootstrapTokenFile;
    std::string content(admin.token.RevealString(SecretAccess::Grant()));
    content.push_back('\n');
    Status written = WritePrivateFile(path, content);
    std::fill(content.begin(), content.end(), '\0');
    RETURN_IF_ERROR(written);
    core::AuditEvent event{"system", "", "api_key.create", admin.record.id, "", "", "",
                           {{"role", admin.record.role}, {"name", admin.record.name}, {"bootstrap", true}}};
    ASSIGN_OR_RETURN(int64_t attempt, impl->audit->Begin(event));
    Status inserted = impl->store->InsertApiKey(admin.record);
    RETURN_IF_ERROR(impl->audit->Finish(event, attempt, inserted));
    RETURN_IF_ERROR(inserted);
    impl->bootstrap_token_path = path;
    Log(LogLevel::kInfo, "bootstrap_admin_created", {{"token_file", path}, {"api_key_id", admin.record.id}});
  }

  HttpServerOptions http;
  RETURN_IF_ERROR(ParseListen(config.listen, &http.host, &http.port));
  http.io_threads = config.io_threads;
  http.max_body_bytes = config.max_body_bytes;
  Api* api = impl->api.get();
  auto server = HttpServer::Create(http, [api](HttpRequest&& req, Responder respond) {
    api->Handle(std::move(req), std::move(respond));
  });
  if (!server.ok()) return server.status();
  impl->http = *std::move(server);
  impl->host = http.host;
  impl->config = std::move(config);
  return std::unique_ptr<App>(new App(std::move(impl)));
}

void App::Start() {
  impl_->audit->Start();
  impl_->http->Start();
  impl_->maintenance = std::thread([impl = impl_.get()] { impl->MaintenanceLoop(); });
  Log(LogLevel::kInfo, "listening", {{"url", url()}, {"data_dir", impl_->config.data_dir}});
}

void App::Stop() {
  if (!impl_) return;
  if (impl_->http) impl_->http->Stop();
  // After the listener: in-flight signatures are committed before we stop.
  if (impl_->ledger_writer) impl_->ledger_writer->Stop();
  // After the writer: the final checkpoint covers everything committed.
  if (impl_->audit) impl_->audit->Stop();
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->maintenance.joinable()) impl_->maintenance.join();
}

uint16_t App::port() const { return impl_->http->port(); }

std::string App::url() const {
  std::string host = impl_->host;
  if (host == "0.0.0.0") host = "127.0.0.1";
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return "http://" + host + ":" + std::to_string(port());
}

const std::string& App::bootstrap_token_path() const { return impl_->bootstrap_token_path; }

StatusOr<int> MigrateDatabase(const ServerConfig& config_in, int target_version) {
  ServerConfig config = config_in.Clone();
  config.ResolvePaths();
  RETURN_IF_ERROR(MakePrivateDir(config.data_dir));
  ASSIGN_OR_RETURN(auto store, OpenStore(config));
  RETURN_IF_ERROR(store->Migrate(target_version));
  return store->SchemaVersion();
}

}  // namespace concierge::server
