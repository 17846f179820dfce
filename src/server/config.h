// ServerConfig: everything `keyctl serve` needs, from defaults < TOML file <
// KEYCTL_* environment variables < command-line flags. Secrets (the master
// passphrase) come only from the environment or a file, never from flags or the
// TOML file, so they do not end up in shell history or config repositories.
#ifndef CONCIERGE_SERVER_CONFIG_H_
#define CONCIERGE_SERVER_CONFIG_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "concierge/secret.h"
#include "concierge/status.h"

namespace concierge::server {

// Incident response settings (docs/incidents.md). All integers (except the
// latency detector's severity name) so one table in config.cc parses them from
// TOML and KEYCTL_<NAME> alike; flags are 0/1.
struct IncidentSettings {
  int64_t resign_batch_size = 500;             // originals per committed batch
  int64_t resign_rate_per_backend = 0;         // re-signatures/s per backend, 0 = unlimited
  int64_t webhook_allow_http = 0;              // 1 = plain http:// webhook URLs allowed
  int64_t webhook_max_attempts = 20;
  int64_t webhook_initial_backoff_seconds = 5;
  int64_t webhook_max_backoff_seconds = 3600;
  int64_t webhook_timeout_seconds = 10;
  int64_t detectors_enabled = 1;
  int64_t detector_interval_seconds = 10;
  int64_t auth_failure_burst = 20;
  int64_t auth_failure_window_seconds = 60;
  int64_t backend_error_rate_percent = 50;
  int64_t backend_error_min_samples = 20;
  int64_t backend_error_window_seconds = 60;
  int64_t backend_latency_p99_ms = 0;  // 0 = the latency detector (and latency failover) is off
  int64_t backend_latency_min_samples = 20;
  int64_t backend_latency_window_seconds = 60;
  std::string backend_latency_severity = "high";  // low | medium | high | critical
  int64_t failover_after_failures = 3;      // backend faults in a row on a tenant's active key
  int64_t failover_probe_interval_seconds = 10;
  int64_t failback_after_probes = 3;        // good probes in a row before failing back
  int64_t cert_expiry_warn_days = 30;
  int64_t cert_expiry_critical_days = 7;
  int64_t rate_anomaly_factor = 5;
  int64_t rate_anomaly_min_per_minute = 100;
  int64_t rate_anomaly_warmup_minutes = 10;
};

// Every setting that may be copied freely. The secrets live in ServerConfig
// below, so adding a setting here needs no change to Clone().
struct ServerSettings {
  std::string listen = "127.0.0.1:8443";
  std::string data_dir = "./data";
  int io_threads = 0;  // 0 = number of cores
  // How far above the request threads the ledger writer (the serial stage of
  // every signature) is scheduled, in nice steps: the writer asks for nice -N;
  // when the kernel refuses (no CAP_SYS_NICE), the io threads take nice +N
  // instead, the same gap. 0 = no change. See README "Signing ledger".
  int ledger_writer_priority = 10;
  size_t max_body_bytes = 1 << 20;
  size_t max_batch = 1000;  // digests per /sign/batch request
  std::string log_level = "info";
  std::string database_path;      // SQLite file; default <data_dir>/concierge.db
  int database_pool_size = 8;     // PostgreSQL connections of the store
  // PostgreSQL, several instances (docs/postgres.md): how often a follower
  // tries the leader lock and the leader checks it still holds it.
  int leader_poll_ms = 1000;
  std::string keystore_dir;       // default <data_dir>/keystore
  std::string master_key_file;    // default <keystore_dir>/master.key
  uint32_t argon2_time_cost = 3;
  uint32_t argon2_memory_kib = 64 * 1024;
  uint32_t argon2_parallelism = 1;
  // PKCS#11 HSMs (docs/pkcs11.md). Empty pkcs11_module: a SoftHSM2 development
  // token in <data_dir>/softhsm when SoftHSM2 is installed; "none" disables it.
  std::string pkcs11_module;
  std::string pkcs11_allowed_modules;     // comma-separated paths; empty = any
  int pkcs11_sessions = 0;                // per token; 0 = io_threads (or cores)
  std::string yubihsm2_module;            // set to enable provider "yubihsm2"
  // Rotations (docs/rotation.md).
  int rotation_warning_days = 7;   // flag scheduled rotations this close as "warning"
  int rotation_tick_seconds = 30;  // how often the scheduler looks for due rotations
  int rotation_ledger_sample = 20; // recent ledger digests the canary re-signs
  IncidentSettings incident;
  // Audit log (docs/audit.md): seconds between signed checkpoints, and the log
  // name written into them (fixed when the audit key is first created).
  uint32_t audit_checkpoint_interval_seconds = 60;
  std::string audit_origin = "c2-concierge/audit";
};

struct ServerConfig : ServerSettings {
  std::optional<SecretBytes> master_passphrase;  // KEYCTL_MASTER_PASSPHRASE(_FILE)
  std::optional<SecretBytes> pkcs11_pin;         // KEYCTL_PKCS11_PIN (environment only)
  // postgresql://... : PostgreSQL instead of the SQLite file. It may carry a
  // password, so it is kept like a secret; a password is accepted only from
  // KEYCTL_DATABASE_URL(_FILE), not from the TOML file or --database-url.
  std::optional<SecretBytes> database_url;

  // Fills the derived paths from data_dir.
  void ResolvePaths();
  // ServerConfig is move-only (it may hold the passphrase); Clone copies it.
  ServerConfig Clone() const;
};

// Reads `toml_path` (may be empty) over the defaults, then applies environment
// overrides from `env` (pass the process environment; tests pass a map).
// Errors name the offending key, e.g. "config key 'io_threads' must be an integer".
StatusOr<ServerConfig> LoadConfig(const std::string& toml_path, const std::map<std::string, std::string>& env);

// Sets config.database_url after checking that `url` is a postgresql:// (or
// postgres://) URL. `source` names where it came from for messages
// ("--database-url"); without `password_allowed` a URL with a password is
// refused (put it in KEYCTL_DATABASE_URL, PGPASSWORD or ~/.pgpass instead).
// Messages never repeat the URL.
Status SetDatabaseUrl(ServerConfig& config, std::string_view url, bool password_allowed, std::string_view source);

// The process environment as a map (only KEYCTL_* variables).
std::map<std::string, std::string> KeyctlEnvironment();

// "host:port" -> parts; InvalidArgument naming `listen` otherwise.
Status ParseListen(const std::string& listen, std::string* host, uint16_t* port);

}  // namespace concierge::server

#endif  // CONCIERGE_SERVER_CONFIG_H_
