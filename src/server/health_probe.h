// HealthProber: readiness of each key backend, proven by a real signature.
//
// For every registered backend it keeps one small probe key (ES256, label
// "keyctl/health-probe"), created on first use inside the backend itself and
// remembered in `state_file` so restarts reuse it. Each Probe() asks the backend
// for its own health and then signs a fixed digest with the probe key and
// verifies the result against the key's public key, so /ready fails when the
// device can no longer sign even if its session still answers. The probe key
// never signs anything else and is never used by a tenant. Thread-safe.
#ifndef CONCIERGE_SERVER_HEALTH_PROBE_H_
#define CONCIERGE_SERVER_HEALTH_PROBE_H_

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "concierge/key_backend.h"

namespace concierge::server {

struct ComponentHealth {
  std::string name;  // "backend:pkcs11"
  bool ok = false;
  std::string detail;
};

class HealthProber {
 public:
  HealthProber(BackendRegistry& backends, std::string state_file);
  std::vector<ComponentHealth> Probe();

 private:
  struct ProbeKey {
    std::string uri;
    Bytes spki;
  };
  StatusOr<ProbeKey> KeyFor(KeyBackend& backend);  // requires mu_
  void Save();                                      // requires mu_

  BackendRegistry& backends_;
  std::string state_file_;
  std::mutex mu_;
  std::map<std::string, ProbeKey> keys_;  // by provider
};

}  // namespace concierge::server

#endif  // CONCIERGE_SERVER_HEALTH_PROBE_H_
