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
#include "concierge/status.h"
#include "core/rotation_engine.h"
#include "server/config.h"

namespace concierge::server {

class App {
 public:
  static StatusOr<std::unique_ptr<App>> Create(ServerConfig config, Clock& clock = RealClock());
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
