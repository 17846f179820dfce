// App: one running `keyctl serve` — store, key backends, services, REST API and
// HTTP listener wired together. Create() prepares everything (creating the data
// dir, database, keystore and bootstrap admin token on first start); Start()
// begins serving. Used by main() and by in-process integration tests.
// Thread-safe for Start/Stop.
#ifndef CONCIERGE_SERVER_APP_H_
#define CONCIERGE_SERVER_APP_H_

#include <memory>
#include <string>

#include "concierge/clock.h"
#include "concierge/key_backend.h"
#include "concierge/ledger.h"
#include "concierge/status.h"
#include "core/rotation_engine.h"
#include "concierge/store.h"
#include "server/config.h"

namespace concierge::core {
class CertificateService;
class EmergencyRotator;
class FailoverService;
class IncidentDetectors;
class IncidentService;
class PlaybookRunner;
class ResignJobEngine;
class TenantService;
class WebhookDispatcher;
}  // namespace concierge::core

namespace concierge::server {

struct AppOptions {
  // The emergency rotation the key_compromise playbook calls (not owned).
  // Null (the default) = the rotation engine (core::EngineEmergencyRotator);
  // tests may substitute their own.
  core::EmergencyRotator* emergency_rotator = nullptr;
  // Background threads for re-sign jobs, playbooks and webhook delivery.
  // Tests that drive them step by step (FakeClock) turn them off.
  bool background_workers = true;
};

// Borrowed views of the running services, for tests. Valid while the App lives.
struct AppServices {
  Store* store = nullptr;
  LedgerStore* ledger = nullptr;
  BackendRegistry* backends = nullptr;
  core::TenantService* tenants = nullptr;
  core::CertificateService* certs = nullptr;
  core::IncidentService* incidents = nullptr;
  core::IncidentDetectors* detectors = nullptr;
  core::ResignJobEngine* jobs = nullptr;
  core::PlaybookRunner* playbooks = nullptr;
  core::WebhookDispatcher* webhooks = nullptr;
  core::EmergencyRotator* engine_rotator = nullptr;  // emergency rotations by the rotation engine
  core::FailoverService* failover = nullptr;
};

class App {
 public:
  static StatusOr<std::unique_ptr<App>> Create(ServerConfig config, Clock& clock = RealClock(),
                                               AppOptions options = {});
  ~App();

  void Start();
  void Stop();
  uint16_t port() const;
  // "http://127.0.0.1:PORT"
  std::string url() const;
  // Path of the bootstrap admin token file; empty when this start did not create one.
  const std::string& bootstrap_token_path() const;
  // One synchronous round of the rotation scheduler (submitted rotations, then
  // due/interrupted ones, calendar, key retirement) on the calling thread.
  // Tests drive time with a FakeClock and call this instead of waiting.
  core::TickReport RunRotationTick();
  // One leader-election round (core::Leadership::Tick) on the calling thread:
  // tests take or check leadership without waiting for the poll interval.
  // Returns whether this instance is the leader.
  bool RunLeadershipTick();
  bool is_leader() const;
  AppServices services();

 private:
  struct Impl;
  explicit App(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Opens the configured database and applies migrations (`keyctl migrate`).
// Returns the schema version reached.
StatusOr<int> MigrateDatabase(const ServerConfig& config, int target_version);

}  // namespace concierge::server

#endif  // CONCIERGE_SERVER_APP_H_
