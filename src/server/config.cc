#include "server/config.h"

#include <toml++/toml.h>

#include <cctype>
#include <charconv>
#include <vector>
#include <fstream>
#include <sstream>

#include "store/postgres/pg_pool.h"

extern char** environ;

namespace concierge::server {
namespace {

Status ParseUint(const std::string& key, const std::string& text, uint64_t max, uint64_t* out) {
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || v > max) {
    return FieldError(key, "config key '" + key + "' must be an integer between 0 and " + std::to_string(max) +
                               ", got '" + text.substr(0, 32) + "'");
  }
  *out = v;
  return Status::Ok();
}

template <typename T>
Status SetUint(const std::string& key, const std::string& text, uint64_t max, T* field) {
  uint64_t v;
  RETURN_IF_ERROR(ParseUint(key, text, max, &v));
  *field = static_cast<T>(v);
  return Status::Ok();
}

struct IncidentKey {
  const char* name;
  int64_t IncidentSettings::*field;
  int64_t min;
  int64_t max;
};

// The incident-response keys, each KEYCTL_<NAME> in the environment too.
const std::vector<IncidentKey>& IncidentKeys() {
  using S = IncidentSettings;
  static const std::vector<IncidentKey> kKeys = {
      {"resign_batch_size", &S::resign_batch_size, 1, 1000},
      {"resign_rate_per_backend", &S::resign_rate_per_backend, 0, 10'000'000},
      {"webhook_allow_http", &S::webhook_allow_http, 0, 1},
      {"webhook_max_attempts", &S::webhook_max_attempts, 1, 1000},
      {"webhook_initial_backoff_seconds", &S::webhook_initial_backoff_seconds, 1, 86400},
      {"webhook_max_backoff_seconds", &S::webhook_max_backoff_seconds, 1, 7 * 86400},
      {"webhook_timeout_seconds", &S::webhook_timeout_seconds, 1, 300},
      {"detectors_enabled", &S::detectors_enabled, 0, 1},
      {"detector_interval_seconds", &S::detector_interval_seconds, 1, 3600},
      {"auth_failure_burst", &S::auth_failure_burst, 1, 1'000'000},
      {"auth_failure_window_seconds", &S::auth_failure_window_seconds, 1, 86400},
      {"backend_error_rate_percent", &S::backend_error_rate_percent, 1, 100},
      {"backend_error_min_samples", &S::backend_error_min_samples, 1, 1'000'000},
      {"backend_error_window_seconds", &S::backend_error_window_seconds, 6, 3600},
      {"backend_latency_p99_ms", &S::backend_latency_p99_ms, 0, 600'000},
      {"backend_latency_min_samples", &S::backend_latency_min_samples, 1, 1'000'000},
      {"backend_latency_window_seconds", &S::backend_latency_window_seconds, 1, 3600},
      {"failover_after_failures", &S::failover_after_failures, 1, 1000},
      {"failover_probe_interval_seconds", &S::failover_probe_interval_seconds, 1, 3600},
      {"failback_after_probes", &S::failback_after_probes, 1, 1000},
      {"cert_expiry_warn_days", &S::cert_expiry_warn_days, 1, 365},
      {"cert_expiry_critical_days", &S::cert_expiry_critical_days, 0, 365},
      {"rate_anomaly_factor", &S::rate_anomaly_factor, 2, 1000},
      {"rate_anomaly_min_per_minute", &S::rate_anomaly_min_per_minute, 1, 1'000'000'000},
      {"rate_anomaly_warmup_minutes", &S::rate_anomaly_warmup_minutes, 1, 10080},
  };
  return kKeys;
}

std::string EnvName(std::string key) {
  for (char& ch : key) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return "KEYCTL_" + key;
}

// One setter per config key, shared by the TOML and environment paths.
Status Apply(ServerConfig& c, const std::string& key, const std::string& value) {
  for (const IncidentKey& k : IncidentKeys()) {
    if (key != k.name) continue;
    std::string text = value == "true" ? "1" : value == "false" ? "0" : value;
    uint64_t v = 0;
    if (!ParseUint(key, text, static_cast<uint64_t>(k.max), &v).ok() || static_cast<int64_t>(v) < k.min) {
      return FieldError(key, "config key '" + key + "' must be an integer between " + std::to_string(k.min) +
                                 " and " + std::to_string(k.max) + ", got '" + value.substr(0, 32) + "'");
    }
    c.incident.*k.field = static_cast<int64_t>(v);
    return Status::Ok();
  }
  if (key == "backend_latency_severity") {
    if (value != "low" && value != "medium" && value != "high" && value != "critical") {
      return FieldError(key, "config key 'backend_latency_severity' must be low, medium, high or critical");
    }
    c.incident.backend_latency_severity = value;
  } else if (key == "listen") {
    std::string h;
    uint16_t p;
    RETURN_IF_ERROR(ParseListen(value, &h, &p));
    c.listen = value;
  } else if (key == "data_dir") {
    if (value.empty()) return FieldError(key, "config key 'data_dir' must not be empty");
    c.data_dir = value;
  } else if (key == "io_threads") {
    return SetUint(key, value, 256, &c.io_threads);
  } else if (key == "ledger_writer_priority") {
    return SetUint(key, value, 19, &c.ledger_writer_priority);
  } else if (key == "max_body_bytes") {
    RETURN_IF_ERROR(SetUint(key, value, 64u << 20, &c.max_body_bytes));
    if (c.max_body_bytes < 1024) return FieldError(key, "config key 'max_body_bytes' must be at least 1024");
  } else if (key == "max_batch") {
    RETURN_IF_ERROR(SetUint(key, value, 100000, &c.max_batch));
    if (c.max_batch < 1) return FieldError(key, "config key 'max_batch' must be at least 1");
  } else if (key == "log_level") {
    if (value != "trace" && value != "debug" && value != "info" && value != "warn" && value != "error") {
      return FieldError(key, "config key 'log_level' must be trace, debug, info, warn or error");
    }
    c.log_level = value;
  } else if (key == "database_path") {
    c.database_path = value;
  } else if (key == "database_url") {
    return SetDatabaseUrl(c, value, /*password_allowed=*/false, "config key 'database_url'");
  } else if (key == "leader_poll_ms") {
    RETURN_IF_ERROR(SetUint(key, value, 60000, &c.leader_poll_ms));
    if (c.leader_poll_ms < 50) return FieldError(key, "config key 'leader_poll_ms' must be at least 50");
  } else if (key == "database_pool_size") {
    RETURN_IF_ERROR(SetUint(key, value, 1000, &c.database_pool_size));
    if (c.database_pool_size < 1) return FieldError(key, "config key 'database_pool_size' must be at least 1");
  } else if (key == "keystore_dir") {
    c.keystore_dir = value;
  } else if (key == "master_key_file") {
    c.master_key_file = value;
  } else if (key == "argon2_time_cost") {
    RETURN_IF_ERROR(SetUint(key, value, 100, &c.argon2_time_cost));
    if (c.argon2_time_cost < 1) return FieldError(key, "config key 'argon2_time_cost' must be at least 1");
  } else if (key == "argon2_memory_kib") {
    RETURN_IF_ERROR(SetUint(key, value, 4u << 20, &c.argon2_memory_kib));
    if (c.argon2_memory_kib < 8) return FieldError(key, "config key 'argon2_memory_kib' must be at least 8");
  } else if (key == "argon2_parallelism") {
    RETURN_IF_ERROR(SetUint(key, value, 64, &c.argon2_parallelism));
    if (c.argon2_parallelism < 1) return FieldError(key, "config key 'argon2_parallelism' must be at least 1");
  } else if (key == "pkcs11_module") {
    if (!value.empty() && value != "none" && value.front() != '/') {
      return FieldError(key, "config key 'pkcs11_module' must be an absolute path or 'none'");
    }
    c.pkcs11_module = value;
  } else if (key == "pkcs11_allowed_modules") {
    c.pkcs11_allowed_modules = value;
  } else if (key == "pkcs11_sessions") {
    return SetUint(key, value, 256, &c.pkcs11_sessions);
  } else if (key == "yubihsm2_module") {
    if (!value.empty() && value.front() != '/') {
      return FieldError(key, "config key 'yubihsm2_module' must be an absolute path");
    }
    c.yubihsm2_module = value;
  } else if (key == "rotation_warning_days") {
    return SetUint(key, value, 365, &c.rotation_warning_days);
  } else if (key == "rotation_tick_seconds") {
    RETURN_IF_ERROR(SetUint(key, value, 86400, &c.rotation_tick_seconds));
    if (c.rotation_tick_seconds < 1) return FieldError(key, "config key 'rotation_tick_seconds' must be at least 1");
  } else if (key == "rotation_ledger_sample") {
    return SetUint(key, value, 1000, &c.rotation_ledger_sample);
  } else if (key == "audit_checkpoint_interval_seconds") {
    RETURN_IF_ERROR(SetUint(key, value, 86400, &c.audit_checkpoint_interval_seconds));
    if (c.audit_checkpoint_interval_seconds < 1) {
      return FieldError(key, "config key 'audit_checkpoint_interval_seconds' must be at least 1");
    }
  } else if (key == "audit_origin") {
    if (value.empty()) return FieldError(key, "config key 'audit_origin' must not be empty");
    c.audit_origin = value;
  } else {
    return FieldError(key, "unknown config key '" + key + "'");
  }
  return Status::Ok();
}

Status ApplyToml(ServerConfig& c, const std::string& path) {
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << "cannot parse config file " << path << ": " << e.description() << " (line "
        << e.source().begin.line << ")";
    return InvalidArgumentError(msg.str());
  }
  for (const auto& [k, node] : table) {
    std::string key(k.str());
    if (key == "master_passphrase") {
      return FieldError(key, "the master passphrase is not read from the config file; set "
                             "KEYCTL_MASTER_PASSPHRASE or KEYCTL_MASTER_PASSPHRASE_FILE");
    }
    std::string value;
    if (auto s = node.value<std::string>()) {
      value = *s;
    } else if (auto b = node.value<bool>(); b && node.is_boolean()) {
      value = *b ? "true" : "false";
    } else if (auto i = node.value<int64_t>()) {
      if (*i < 0) return FieldError(key, "config key '" + key + "' must not be negative");
      value = std::to_string(*i);
    } else {
      return FieldError(key, "config key '" + key + "' must be a string or an integer");
    }
    RETURN_IF_ERROR(Apply(c, key, value).Annotate(path));
  }
  return Status::Ok();
}

Status BothDatabasesError() {
  return FieldError("database_url", "set either database_url (PostgreSQL) or database_path (SQLite), not both");
}

// The content of a file named by a *_FILE variable, without trailing newlines.
StatusOr<SecretBytes> ReadSecretFile(const std::string& variable, const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return InvalidArgumentError("cannot read " + variable + " " + path);
  std::string content((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  while (!content.empty() && (content.back() == '\n' || content.back() == '\r')) content.pop_back();
  if (content.empty()) return InvalidArgumentError(variable + " is empty");
  SecretBytes secret = SecretBytes::FromString(content, SecretAccess::Grant());
  std::fill(content.begin(), content.end(), '\0');
  return secret;
}

}  // namespace

Status SetDatabaseUrl(ServerConfig& config, std::string_view url, bool password_allowed, std::string_view source) {
  const std::string where(source);
  if (url.rfind("postgresql://", 0) != 0 && url.rfind("postgres://", 0) != 0) {
    return FieldError("database_url", where + " must be a postgresql:// URL (SQLite is chosen by database_path)");
  }
  ASSIGN_OR_RETURN(bool has_password, store::DatabaseUrlHasPassword(url));
  if (has_password && !password_allowed) {
    return FieldError("database_url", where +
                                          " must not contain a password (it would show in process lists or "
                                          "config files); put the URL in KEYCTL_DATABASE_URL or "
                                          "KEYCTL_DATABASE_URL_FILE, or the password in PGPASSWORD or ~/.pgpass");
  }
  if (!config.database_path.empty()) return BothDatabasesError();
  config.database_url = SecretBytes::FromString(url, SecretAccess::Grant());
  return Status::Ok();
}

void ServerConfig::ResolvePaths() {
  if (database_path.empty()) database_path = data_dir + "/concierge.db";
  if (keystore_dir.empty()) keystore_dir = data_dir + "/keystore";
}

ServerConfig ServerConfig::Clone() const {
  ServerConfig c;
  static_cast<ServerSettings&>(c) = *this;
  if (master_passphrase) c.master_passphrase = master_passphrase->Clone();
  if (pkcs11_pin) c.pkcs11_pin = pkcs11_pin->Clone();
  if (database_url) c.database_url = database_url->Clone();
  return c;
}

Status ParseListen(const std::string& listen, std::string* host, uint16_t* port) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == listen.size()) {
    return FieldError("listen", "listen address must be HOST:PORT, got '" + listen + "'");
  }
  uint64_t p;
  if (!ParseUint("listen", listen.substr(colon + 1), 65535, &p).ok()) {
    return FieldError("listen", "listen port must be 0..65535, got '" + listen.substr(colon + 1) + "'");
  }
  *host = listen.substr(0, colon);
  if (host->size() > 2 && host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  *port = static_cast<uint16_t>(p);
  return Status::Ok();
}

std::map<std::string, std::string> KeyctlEnvironment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    if (kv.rfind("KEYCTL_", 0) != 0) continue;
    auto eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return env;
}

StatusOr<ServerConfig> LoadConfig(const std::string& toml_path, const std::map<std::string, std::string>& env) {
  ServerConfig c;
  if (!toml_path.empty()) RETURN_IF_ERROR(ApplyToml(c, toml_path));
  static const std::map<std::string, std::string> kEnvKeys = {
      {"KEYCTL_LISTEN", "listen"},
      {"KEYCTL_DATA_DIR", "data_dir"},
      {"KEYCTL_IO_THREADS", "io_threads"},
      {"KEYCTL_LEDGER_WRITER_PRIORITY", "ledger_writer_priority"},
      {"KEYCTL_MAX_BODY_BYTES", "max_body_bytes"},
      {"KEYCTL_MAX_BATCH", "max_batch"},
      {"KEYCTL_LOG_LEVEL", "log_level"},
      {"KEYCTL_DATABASE_PATH", "database_path"},
      {"KEYCTL_DATABASE_POOL_SIZE", "database_pool_size"},
      {"KEYCTL_LEADER_POLL_MS", "leader_poll_ms"},
      {"KEYCTL_KEYSTORE_DIR", "keystore_dir"},
      {"KEYCTL_MASTER_KEY_FILE", "master_key_file"},
      {"KEYCTL_ARGON2_TIME_COST", "argon2_time_cost"},
      {"KEYCTL_ARGON2_MEMORY_KIB", "argon2_memory_kib"},
      {"KEYCTL_ARGON2_PARALLELISM", "argon2_parallelism"},
      {"KEYCTL_PKCS11_MODULE", "pkcs11_module"},
      {"KEYCTL_PKCS11_ALLOWED_MODULES", "pkcs11_allowed_modules"},
      {"KEYCTL_PKCS11_SESSIONS", "pkcs11_sessions"},
      {"KEYCTL_YUBIHSM2_MODULE", "yubihsm2_module"},
      {"KEYCTL_ROTATION_WARNING_DAYS", "rotation_warning_days"},
      {"KEYCTL_ROTATION_TICK_SECONDS", "rotation_tick_seconds"},
      {"KEYCTL_ROTATION_LEDGER_SAMPLE", "rotation_ledger_sample"},
      {"KEYCTL_AUDIT_CHECKPOINT_INTERVAL_SECONDS", "audit_checkpoint_interval_seconds"},
      {"KEYCTL_AUDIT_ORIGIN", "audit_origin"},
      {"KEYCTL_BACKEND_LATENCY_SEVERITY", "backend_latency_severity"},
  };
  for (const auto& [var, key] : kEnvKeys) {
    auto it = env.find(var);
    if (it != env.end()) RETURN_IF_ERROR(Apply(c, key, it->second).Annotate("environment variable " + var));
  }
  for (const IncidentKey& k : IncidentKeys()) {
    const std::string var = EnvName(k.name);
    auto it = env.find(var);
    if (it != env.end()) RETURN_IF_ERROR(Apply(c, k.name, it->second).Annotate("environment variable " + var));
  }
  if (auto pin = env.find("KEYCTL_PKCS11_PIN"); pin != env.end() && !pin->second.empty()) {
    c.pkcs11_pin = SecretBytes::FromString(pin->second, SecretAccess::Grant());
  }
  auto url = env.find("KEYCTL_DATABASE_URL");
  auto url_file = env.find("KEYCTL_DATABASE_URL_FILE");
  if (url != env.end() && url_file != env.end()) {
    return InvalidArgumentError("set only one of KEYCTL_DATABASE_URL and KEYCTL_DATABASE_URL_FILE");
  }
  if (url != env.end() && !url->second.empty()) {
    RETURN_IF_ERROR(SetDatabaseUrl(c, url->second, true, "KEYCTL_DATABASE_URL"));
  } else if (url_file != env.end()) {
    ASSIGN_OR_RETURN(SecretBytes content, ReadSecretFile("KEYCTL_DATABASE_URL_FILE", url_file->second));
    RETURN_IF_ERROR(SetDatabaseUrl(c, content.RevealString(SecretAccess::Grant()), true, "KEYCTL_DATABASE_URL_FILE"));
  }
  if (c.database_url.has_value() && !c.database_path.empty()) return BothDatabasesError();
  auto pass = env.find("KEYCTL_MASTER_PASSPHRASE");
  auto pass_file = env.find("KEYCTL_MASTER_PASSPHRASE_FILE");
  if (pass != env.end() && pass_file != env.end()) {
    return InvalidArgumentError("set only one of KEYCTL_MASTER_PASSPHRASE and KEYCTL_MASTER_PASSPHRASE_FILE");
  }
  if (pass != env.end()) {
    if (pass->second.empty()) return InvalidArgumentError("KEYCTL_MASTER_PASSPHRASE is set but empty");
    c.master_passphrase = SecretBytes::FromString(pass->second, SecretAccess::Grant());
  } else if (pass_file != env.end()) {
    ASSIGN_OR_RETURN(c.master_passphrase, ReadSecretFile("KEYCTL_MASTER_PASSPHRASE_FILE", pass_file->second));
  }
  return c;
}

}  // namespace concierge::server
