#include "server/app.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <mutex>
#include <thread>

#include "backends/pkcs11/server_setup.h"
#include "backends/software/software_backend.h"
#include "core/audit_log.h"
#include "core/auth.h"
#include "core/ca.h"
#include "core/emergency_rotator.h"
#include "core/failover.h"
#include "core/incident.h"
#include "core/incident_detectors.h"
#include "core/incident_playbook.h"
#include "core/issuance.h"
#include "core/leadership.h"
#include "core/resign_job.h"
#include "core/webhook.h"
#include "crypto/hash.h"
#include "core/ledger_writer.h"
#include "core/rotation_engine.h"
#include "core/rotation_evidence.h"
#include "core/rotation_scheduler.h"
#include "core/signing_service.h"
#include "core/tenant_service.h"
#include "server/api.h"
#include "server/health_probe.h"
#include "server/http_server.h"
#include "server/log.h"
#include "store/postgres/pg_leader.h"
#include "store/postgres/pg_notify.h"
#include "store/postgres/postgres_ledger.h"
#include "store/postgres/postgres_store.h"
#include "server/webhook_transport.h"
#include "store/sqlite/sqlite_ledger.h"
#include "store/sqlite/sqlite_store.h"

namespace concierge::server {
namespace {

constexpr char kBootstrapTokenFile[] = "bootstrap-admin.token";

void LogRotationReport(const std::string& what, const core::TickReport& r) {
  for (const std::string& e : r.errors) Log(LogLevel::kWarn, "rotation_error", {{"during", what}, {"error", e}});
  if (r.calendar_scheduled + r.started + r.resumed + r.keys_retired + r.cancelled + r.evidence_built == 0) return;
  Log(LogLevel::kInfo, "rotation_" + what,
      {{"calendar_scheduled", r.calendar_scheduled}, {"started", r.started}, {"resumed", r.resumed},
       {"keys_retired", r.keys_retired}, {"cancelled", r.cancelled}, {"evidence_built", r.evidence_built}});
}

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

// The configured database: PostgreSQL when database_url is set, else the
// SQLite file at database_path.
struct OpenedStore {
  std::unique_ptr<Store> store;
  store::SqliteStore* sqlite = nullptr;  // set for SQLite, which needs checkpoints
  std::string description;               // file path, or the URL without password
};

StatusOr<OpenedStore> OpenStore(const ServerConfig& config) {
  OpenedStore out;
  if (config.database_url.has_value()) {
    store::PostgresOptions options;
    options.max_connections = config.database_pool_size;
    ASSIGN_OR_RETURN(auto pg, store::PostgresStore::Open(config.database_url->RevealString(SecretAccess::Grant()),
                                                         options));
    out.description = pg->description();
    out.store = std::move(pg);
    return out;
  }
  auto sqlite = store::SqliteStore::Open(config.database_path);
  if (!sqlite.ok()) return sqlite.status().Annotate("opening database " + config.database_path);
  out.sqlite = sqlite->get();
  out.description = config.database_path;
  out.store = *std::move(sqlite);
  return out;
}

// The signing ledger of the configured engine, which also holds the audit log
// (written in the ledger's transactions, so it lives in the same database).
struct OpenedLedger {
  std::unique_ptr<LedgerStore> ledger;
  AuditStore* audit = nullptr;  // the same object, seen as the audit store
};

StatusOr<OpenedLedger> OpenLedger(const ServerConfig& config) {
  OpenedLedger out;
  if (config.database_url.has_value()) {
    auto pg = store::PostgresLedger::Open(config.database_url->RevealString(SecretAccess::Grant()));
    if (!pg.ok()) return pg.status().Annotate("opening signing ledger");
    out.audit = pg->get();
    out.ledger = *std::move(pg);
  } else {
    auto sqlite = store::SqliteLedger::Open(config.database_path);
    if (!sqlite.ok()) return sqlite.status().Annotate("opening signing ledger");
    out.audit = sqlite->get();
    out.ledger = *std::move(sqlite);
  }
  return out;
}

// The key that seals webhook secrets lives beside the database, not in it.
StatusOr<core::WebhookSecretBox> LoadWebhookBox(const std::string& data_dir) {
  const std::string path = data_dir + "/webhook-secrets.key";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    Bytes key = crypto::RandomBytes(core::WebhookSecretBox::kKeySize);
    Status written = WritePrivateFile(path, std::string_view(reinterpret_cast<const char*>(key.data()), key.size()));
    std::fill(key.begin(), key.end(), 0);
    RETURN_IF_ERROR(written);
  }
  std::ifstream f(path, std::ios::binary);
  std::string content((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (!f.good() && !f.eof()) return UnavailableError("cannot read " + path);
  SecretBytes key = SecretBytes::FromString(content, SecretAccess::Grant());
  std::fill(content.begin(), content.end(), '\0');
  auto box = core::WebhookSecretBox::Create(std::move(key));
  if (!box.ok()) return DataLossError(path + " is not a webhook sealing key (expected 32 bytes)");
  return box;
}

core::DetectorOptions DetectorOptionsFrom(const IncidentSettings& s) {
  core::DetectorOptions d;
  d.enabled = s.detectors_enabled != 0;
  d.auth_failure_burst = static_cast<int>(s.auth_failure_burst);
  d.auth_failure_window = std::chrono::seconds(s.auth_failure_window_seconds);
  d.backend_error_rate = static_cast<double>(s.backend_error_rate_percent) / 100.0;
  d.backend_min_samples = static_cast<int>(s.backend_error_min_samples);
  d.backend_window = std::chrono::seconds(s.backend_error_window_seconds);
  d.cert_expiry_warn_days = static_cast<int>(s.cert_expiry_warn_days);
  d.cert_expiry_critical_days = static_cast<int>(s.cert_expiry_critical_days);
  d.rate_factor = static_cast<double>(s.rate_anomaly_factor);
  d.rate_min_per_minute = s.rate_anomaly_min_per_minute;
  d.rate_warmup_minutes = static_cast<int>(s.rate_anomaly_warmup_minutes);
  d.backend_latency_p99 = std::chrono::milliseconds(s.backend_latency_p99_ms);
  d.backend_latency_min_samples = static_cast<int>(s.backend_latency_min_samples);
  d.backend_latency_window = std::chrono::seconds(s.backend_latency_window_seconds);
  d.backend_latency_severity = s.backend_latency_severity;
  return d;
}

core::FailoverOptions FailoverOptionsFrom(const IncidentSettings& s) {
  core::FailoverOptions f;
  f.after_failures = static_cast<int>(s.failover_after_failures);
  f.latency_p99 = std::chrono::milliseconds(s.backend_latency_p99_ms);
  f.latency_min_samples = static_cast<int>(s.backend_latency_min_samples);
  f.probe_interval = std::chrono::seconds(s.failover_probe_interval_seconds);
  f.failback_after_probes = static_cast<int>(s.failback_after_probes);
  return f;
}

core::WebhookOptions WebhookOptionsFrom(const IncidentSettings& s) {
  core::WebhookOptions w;
  w.allow_http = s.webhook_allow_http != 0;
  w.max_attempts = static_cast<int>(s.webhook_max_attempts);
  w.initial_backoff = std::chrono::seconds(s.webhook_initial_backoff_seconds);
  w.max_backoff = std::chrono::seconds(std::max(s.webhook_max_backoff_seconds, s.webhook_initial_backoff_seconds));
  // A claim must outlast attempting its whole batch, or another dispatcher
  // would claim the tail of it again (harmless, at-least-once, but wasteful).
  w.lease = std::chrono::seconds(w.claim_batch * s.webhook_timeout_seconds + 30);
  return w;
}

}  // namespace

struct App::Impl {
  ServerConfig config;
  Clock* clock = nullptr;
  std::unique_ptr<Store> store;
  store::SqliteStore* sqlite = nullptr;  // the store, when it is SQLite
  std::unique_ptr<LedgerStore> ledger;
  AuditStore* audit_store = nullptr;  // the ledger, seen as the audit log
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
  std::unique_ptr<core::RotationEngine> rotations;
  std::unique_ptr<core::RotationEvidenceRecorder> evidence;
  std::unique_ptr<core::RotationScheduler> rotation_scheduler;
  std::unique_ptr<core::EngineEmergencyRotator> emergency_rotator;
  std::unique_ptr<HealthProber> prober;
  // Incident response.
  AppOptions options;
  std::optional<core::WebhookSecretBox> webhook_box;
  std::unique_ptr<core::IncidentService> incidents;
  std::unique_ptr<core::IncidentDetectors> detectors;
  std::unique_ptr<core::ResignJobEngine> jobs;
  std::unique_ptr<core::PlaybookRunner> playbooks;
  std::unique_ptr<core::FailoverService> failover;
  std::unique_ptr<CurlWebhookTransport> webhook_transport;
  std::unique_ptr<core::WebhookService> webhooks;
  std::unique_ptr<core::WebhookDispatcher> dispatcher;
  // Several instances on one PostgreSQL database (docs/postgres.md): the
  // leader lock, the election that runs the leader-only work, and the
  // listener that reloads tenants other instances changed. SQLite: no lock
  // and no listener, the election says "leader" from the start.
  std::unique_ptr<store::PgLeaderLock> leader_lock;
  std::unique_ptr<core::Leadership> leadership;
  std::unique_ptr<store::PgNotifyListener> tenant_listener;
  std::unique_ptr<Api> api;
  std::unique_ptr<HttpServer> http;
  std::string bootstrap_token_path;
  std::string host;

  // SQLite WAL checkpoints (see SqliteStore) and detector ticks run here, off
  // the request path.
  std::thread maintenance;
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;

  // Leader election and tenant change notifications (see the members).
  Status SetUpInstances(const ServerConfig& config);

  void MaintenanceLoop() {
    std::unique_lock lock(mu);
    auto next_tick = std::chrono::steady_clock::now();
    while (!cv.wait_for(lock, std::chrono::seconds(2), [this] { return stopping; })) {
      lock.unlock();
      if (sqlite != nullptr) {
        Status st = sqlite->Checkpoint();
        if (!st.ok()) Log(LogLevel::kWarn, "wal_checkpoint_failed", {{"error", st.message()}});
      }
      // Detector checks (signing-rate minutes, certificate expiry) off the request path.
      if (std::chrono::steady_clock::now() >= next_tick) {
        detectors->Tick();
        // Failover health checks and failback probes (probe_interval by the clock).
        failover->Tick();
        next_tick = std::chrono::steady_clock::now() +
                    std::chrono::seconds(config.incident.detector_interval_seconds);
      }
      lock.lock();
    }
  }
};

Status App::Impl::SetUpInstances(const ServerConfig& config) {
  core::LeadershipHooks hooks;
  if (!config.database_url.has_value()) {
    leadership = std::make_unique<core::Leadership>(nullptr, std::move(hooks));
    return Status::Ok();
  }
  const std::string url(config.database_url->RevealString(SecretAccess::Grant()));
  ASSIGN_OR_RETURN(leader_lock, store::PgLeaderLock::Create(url));
  store::PgLeaderLock* lock = leader_lock.get();
  core::Leadership::Poll poll = [lock] { return lock->Poll(); };
  App::Impl* i = this;
  // Gaining leadership is what start-up does for a single instance: settle
  // the rotations the previous leader left half done, then start the
  // leader-only workers.
  hooks.on_gain = [i] {
    LogRotationReport("recover", i->rotations->Recover());
    if (i->options.background_workers) {
      i->jobs->Start();
      i->playbooks->Start();
    }
  };
  hooks.on_loss = [i] {
    i->playbooks->Stop();
    i->jobs->Stop();
  };
  hooks.while_leader = [i] { i->audit->Tick(); };
  hooks.on_change = [lock](bool leader) {
    if (leader) {
      Log(LogLevel::kInfo, "leadership_gained", {});
    } else {
      Log(LogLevel::kWarn, "leadership_lost", {{"error", lock->last_error()}});
    }
  };
  leadership = std::make_unique<core::Leadership>(std::move(poll), std::move(hooks));
  core::TenantService* tenant_service = tenants.get();
  ASSIGN_OR_RETURN(tenant_listener,
                   store::PgNotifyListener::Create(url, [tenant_service](const std::string& tenant_id) {
                     Status st = tenant_id.empty() ? tenant_service->ReloadAll() : tenant_service->Reload(tenant_id);
                     if (!st.ok()) {
                       Log(LogLevel::kWarn, "tenant_reload_failed", {{"tenant_id", tenant_id}, {"error", st.message()}});
                     }
                   }));
  return Status::Ok();
}

App::App(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
App::~App() { Stop(); }

StatusOr<std::unique_ptr<App>> App::Create(ServerConfig config, Clock& clock, AppOptions options) {
  config.ResolvePaths();
  SetLogLevel(config.log_level);
  auto impl = std::make_unique<Impl>();
  impl->clock = &clock;
  impl->options = options;
  RETURN_IF_ERROR(MakePrivateDir(config.data_dir));

  ASSIGN_OR_RETURN(OpenedStore opened, OpenStore(config));
  impl->store = std::move(opened.store);
  impl->sqlite = opened.sqlite;
  RETURN_IF_ERROR(impl->store->Migrate().Annotate("migrating database"));
  Log(LogLevel::kInfo, "database_opened",
      {{"engine", impl->sqlite != nullptr ? "sqlite" : "postgresql"}, {"database", opened.description}});
  ASSIGN_OR_RETURN(OpenedLedger opened_ledger, OpenLedger(config));
  impl->ledger = std::move(opened_ledger.ledger);
  impl->audit_store = opened_ledger.audit;
  // Issuance caps survive restarts: rebuild the 24h windows from the ledger.
  ASSIGN_OR_RETURN(auto counts,
                   impl->ledger->CountByMinuteSince(clock.Now() - std::chrono::hours(24) - std::chrono::minutes(1)));
  impl->limiter.Load(counts);
  // The audit tree continues from what is stored, after checking it against
  // the latest signed checkpoint (a tampered database refuses to start).
  ASSIGN_OR_RETURN(audit::CompactRange audit_tree, core::RestoreAuditTree(*impl->audit_store));
  AuditStore* ledger_ptr = impl->audit_store;
  core::LedgerWriterOptions writer_options;
  writer_options.thread_nice = -config.ledger_writer_priority;
  impl->ledger_writer = std::make_unique<core::LedgerWriter>(
      *impl->ledger, writer_options, std::move(audit_tree),
      [ledger_ptr]() -> StatusOr<audit::CompactRange> {
        ASSIGN_OR_RETURN(int64_t size, ledger_ptr->AuditSize());
        core::StoreTreeReader reader(*ledger_ptr);
        return audit::CompactRangeAt(reader, static_cast<uint64_t>(size));
      });
  // The gap between the writer and the request threads is what matters, so
  // without the privilege to raise the writer the request threads (and the
  // re-sign worker below them) step down by the same amount instead.
  const int request_thread_nice =
      config.ledger_writer_priority > 0 && !impl->ledger_writer->priority_raised() ? config.ledger_writer_priority : 0;
  if (config.ledger_writer_priority > 0) {
    Log(LogLevel::kInfo, "ledger_writer_priority",
        {{"writer_nice", request_thread_nice == 0 ? -config.ledger_writer_priority : 0},
         {"io_thread_nice", request_thread_nice}});
  }
  // Incidents and detectors come before the backends: every backend is
  // registered behind an ObservedBackend that feeds the error-rate detector.
  impl->incidents = std::make_unique<core::IncidentService>(*impl->store, clock);
  impl->detectors = std::make_unique<core::IncidentDetectors>(*impl->incidents, *impl->store, *impl->ledger, clock,
                                                              DetectorOptionsFrom(config.incident));
  auto observed = [&](std::unique_ptr<KeyBackend> b) -> std::unique_ptr<KeyBackend> {
    return std::make_unique<core::ObservedBackend>(std::move(b), *impl->detectors);
  };

  backends::SoftwareKeystoreOptions ks;
  ks.dir = config.keystore_dir;
  ks.master_key_file = config.master_key_file;
  ks.argon2 = {config.argon2_time_cost, config.argon2_memory_kib, config.argon2_parallelism};
  if (config.master_passphrase) ks.passphrase = config.master_passphrase->Clone();
  auto software = backends::SoftwareBackend::Create(std::move(ks));
  if (!software.ok()) return software.status().Annotate("opening software keystore " + config.keystore_dir);
  Log(LogLevel::kInfo, "keystore_opened",
      {{"dir", config.keystore_dir}, {"kek_source", std::string((*software)->kek_source())}});
  RETURN_IF_ERROR(impl->backends.Register(observed(*std::move(software))));

  // PKCS#11 HSMs: the configured module, or a SoftHSM2 dev token (docs/pkcs11.md).
  backends::pkcs11::Pkcs11ServerSettings p11{config.data_dir, config.pkcs11_module, config.pkcs11_allowed_modules,
                                             config.pkcs11_sessions, config.io_threads, config.yubihsm2_module,
                                             &config.pkcs11_pin};
  ASSIGN_OR_RETURN(auto hsm, backends::pkcs11::CreatePkcs11Backends(p11));
  for (const auto& [warn, note] : hsm.notes) {
    Log(warn ? LogLevel::kWarn : LogLevel::kInfo, "pkcs11", {{"detail", note}});
  }
  for (auto& b : hsm.backends) RETURN_IF_ERROR(impl->backends.Register(observed(std::move(b))));

  core::AuditLogOptions audit_options;
  audit_options.origin = config.audit_origin;
  audit_options.checkpoint_interval = std::chrono::seconds(config.audit_checkpoint_interval_seconds);
  audit_options.on_error = [](const Status& st) {
    Log(LogLevel::kWarn, "audit_checkpoint_failed", {{"error", st.message()}});
  };
  auto audit = core::AuditLog::Create(*impl->ledger_writer, *impl->audit_store, impl->backends, clock, audit_options);
  if (!audit.ok()) return audit.status().Annotate("opening the audit log");
  impl->audit = *std::move(audit);

  impl->auth = std::make_unique<core::Authenticator>(*impl->store, clock);
  impl->tenants = std::make_unique<core::TenantService>(*impl->store, impl->backends, clock);
  core::SigningOptions signing_options;
  signing_options.max_batch = config.max_batch;
  impl->signing = std::make_unique<core::SigningService>(*impl->tenants, *impl->ledger_writer, impl->limiter, clock,
                                                         signing_options);
  impl->certs = std::make_unique<core::CertificateService>(*impl->store, impl->backends, *impl->tenants, clock);
  core::RotationOptions rotation_options;
  rotation_options.advance_warning = std::chrono::hours(24) * config.rotation_warning_days;
  rotation_options.ledger_sample = config.rotation_ledger_sample;
  impl->rotations = std::make_unique<core::RotationEngine>(*impl->store, *impl->ledger, *impl->tenants,
                                                           *impl->certs, clock, rotation_options);
  core::IncidentDetectors* detectors = impl->detectors.get();
  impl->rotations->SetCanaryFailureListener(
      [detectors](const RotationRecord& r, const std::string& error) { detectors->OnCanaryFailure(r, error); });
  impl->evidence = std::make_unique<core::RotationEvidenceRecorder>(*impl->store, impl->backends, clock);
  impl->rotation_scheduler = std::make_unique<core::RotationScheduler>(
      *impl->rotations, std::chrono::seconds(config.rotation_tick_seconds), LogRotationReport, impl->evidence.get());
  impl->prober = std::make_unique<HealthProber>(impl->backends, config.data_dir + "/health-probes.json");

  // Incident response: re-sign jobs (yielding to interactive signing),
  // playbooks, webhooks from the outbox.
  core::ResignJobOptions job_options;
  job_options.worker_nice = std::min(19, job_options.worker_nice + request_thread_nice);
  job_options.batch_size = static_cast<int>(config.incident.resign_batch_size);
  job_options.pipeline_batches = 4;  // sign the next batch while the writer commits one
  job_options.rate_per_backend = static_cast<double>(config.incident.resign_rate_per_backend);
  core::LedgerWriter* writer = impl->ledger_writer.get();
  job_options.interactive_busy = [writer] { return writer->queued_rows() > 0; };
  impl->jobs = std::make_unique<core::ResignJobEngine>(*impl->store, *impl->ledger, *impl->ledger_writer,
                                                       impl->backends, clock, job_options);
  impl->playbooks = std::make_unique<core::PlaybookRunner>(*impl->incidents, *impl->tenants, impl->certs.get(),
                                                           *impl->jobs, clock);
  // Emergency rotations go through the rotation engine unless the caller
  // supplies its own (tests).
  impl->emergency_rotator = std::make_unique<core::EngineEmergencyRotator>(*impl->rotations, impl->evidence.get());
  impl->playbooks->SetRotator(options.emergency_rotator != nullptr ? options.emergency_rotator
                                                                   : impl->emergency_rotator.get());
  // Backend failover to standby keys (docs/incidents.md).
  impl->failover = std::make_unique<core::FailoverService>(*impl->store, *impl->tenants, impl->certs.get(),
                                                           *impl->incidents, impl->detectors->health(), clock,
                                                           FailoverOptionsFrom(config.incident));
  impl->failover->SetAudit(impl->audit.get());
  impl->signing->SetFailover(impl->failover.get());
  impl->playbooks->SetFailover(impl->failover.get());
  ASSIGN_OR_RETURN(auto box, LoadWebhookBox(config.data_dir));
  impl->webhook_box.emplace(std::move(box));
  impl->webhook_transport = std::make_unique<CurlWebhookTransport>(
      static_cast<int>(config.incident.webhook_timeout_seconds));
  const core::WebhookOptions webhook_options = WebhookOptionsFrom(config.incident);
  impl->webhooks = std::make_unique<core::WebhookService>(*impl->store, *impl->webhook_box, clock, webhook_options);
  impl->dispatcher = std::make_unique<core::WebhookDispatcher>(*impl->store, *impl->webhook_transport,
                                                               *impl->webhook_box, clock, webhook_options);
  core::PlaybookRunner* playbooks = impl->playbooks.get();
  core::WebhookDispatcher* dispatcher = impl->dispatcher.get();
  impl->incidents->AddOpenedListener([playbooks](const IncidentRecord& r) { playbooks->OnIncidentOpened(r); });
  impl->incidents->AddNotifyListener([dispatcher] { dispatcher->Wake(); });
  impl->jobs->AddFinishedListener([playbooks, dispatcher](const ResignJobRecord&) {
    playbooks->Wake();
    dispatcher->Wake();
  });

  RETURN_IF_ERROR(impl->SetUpInstances(config));

  ApiDeps deps{impl->store.get(), &impl->backends, impl->auth.get(), impl->tenants.get(), impl->signing.get(),
               impl->ledger.get(), impl->ledger_writer.get(), impl->prober.get(), &clock, impl->certs.get()};
  deps.incidents = impl->incidents.get();
  deps.jobs = impl->jobs.get();
  deps.playbooks = impl->playbooks.get();
  deps.webhooks = impl->webhooks.get();
  deps.detectors = impl->detectors.get();
  deps.rotations = impl->rotations.get();
  deps.rotation_scheduler = impl->rotation_scheduler.get();
  deps.evidence = impl->evidence.get();
  deps.audit = impl->audit.get();
  deps.leadership = impl->leadership.get();
  deps.failover = impl->failover.get();
  impl->api = std::make_unique<Api>(deps);

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
  http.io_thread_nice = request_thread_nice;
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
  core::Leadership& leadership = *impl_->leadership;
  if (leadership.elected()) {
    // Several instances: the leader's work (rotation recovery and ticks,
    // checkpoints, jobs, playbooks) starts when this instance wins the lock.
    // One round before serving, so a lone instance still recovers first.
    impl_->tenant_listener->Start();
    leadership.Tick();
    Log(LogLevel::kInfo, leadership.is_leader() ? "leadership_gained" : "leadership_follower", {});
  } else {
    // Before serving: a rotation a crash interrupted is finished (or rolled
    // back) first, so the first request already sees a settled active key.
    LogRotationReport("recover", impl_->rotations->Recover());
    impl_->audit->Start();
  }
  impl_->http->Start();
  core::Leadership* gate = &leadership;
  impl_->rotation_scheduler->SetTickGate([gate] { return gate->is_leader(); });
  impl_->rotation_scheduler->Start();
  impl_->maintenance = std::thread([impl = impl_.get()] { impl->MaintenanceLoop(); });
  if (impl_->options.background_workers) {
    if (!leadership.elected()) {
      // Jobs and playbooks left running by a crash resume here.
      impl_->jobs->Start();
      impl_->playbooks->Start();
    }
    impl_->dispatcher->Start();  // every instance: deliveries are leased
  }
  if (leadership.elected()) leadership.Start(std::chrono::milliseconds(impl_->config.leader_poll_ms));
  Log(LogLevel::kInfo, "listening", {{"url", url()}, {"data_dir", impl_->config.data_dir}});
}

void App::Stop() {
  if (!impl_) return;
  if (impl_->http) impl_->http->Stop();
  // Leader work stops (jobs, playbooks); the lock is released below, once
  // this instance has stopped writing.
  if (impl_->leadership) impl_->leadership->Stop();
  if (impl_->tenant_listener) impl_->tenant_listener->Stop();
  // A rotation step in progress finishes (each step is persisted, so even an
  // abrupt stop would only be resumed at the next start).
  if (impl_->rotation_scheduler) impl_->rotation_scheduler->Stop();
  // Playbooks create jobs and jobs commit through the ledger writer: stop them first.
  if (impl_->playbooks) impl_->playbooks->Stop();
  if (impl_->jobs) impl_->jobs->Stop();
  // After the listener: in-flight signatures are committed before we stop.
  if (impl_->ledger_writer) impl_->ledger_writer->Stop();
  if (impl_->dispatcher) impl_->dispatcher->Stop();
  // After the writer: the final checkpoint covers everything committed.
  if (impl_->audit) impl_->audit->Stop();
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->maintenance.joinable()) impl_->maintenance.join();
  if (impl_->leader_lock) impl_->leader_lock->Release();  // a follower takes over now
}

uint16_t App::port() const { return impl_->http->port(); }

std::string App::url() const {
  std::string host = impl_->host;
  if (host == "0.0.0.0") host = "127.0.0.1";
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return "http://" + host + ":" + std::to_string(port());
}

const std::string& App::bootstrap_token_path() const { return impl_->bootstrap_token_path; }

core::TickReport App::RunRotationTick() { return impl_->rotation_scheduler->Tick(); }
bool App::RunLeadershipTick() { return impl_->leadership->Tick(); }
bool App::is_leader() const { return impl_->leadership->is_leader(); }
AppServices App::services() {
  Impl& i = *impl_;
  return AppServices{i.store.get(),     i.ledger.get(),    &i.backends,       i.tenants.get(),
                     i.certs.get(),     i.incidents.get(), i.detectors.get(), i.jobs.get(),
                     i.playbooks.get(), i.dispatcher.get(), i.emergency_rotator.get(), i.failover.get()};
}

StatusOr<int> MigrateDatabase(const ServerConfig& config_in, int target_version) {
  ServerConfig config = config_in.Clone();
  if (!config.database_url.has_value()) {
    config.ResolvePaths();
    RETURN_IF_ERROR(MakePrivateDir(config.data_dir));
  }
  ASSIGN_OR_RETURN(OpenedStore opened, OpenStore(config));
  RETURN_IF_ERROR(opened.store->Migrate(target_version));
  return opened.store->SchemaVersion();
}

}  // namespace concierge::server
