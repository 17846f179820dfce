#include "server/config.h"

#include <gtest/gtest.h>

#include "testing/test_util.h"

namespace concierge::server {
namespace {

std::string FieldOf(const Status& s) {
  auto it = s.details().find("field");
  return it == s.details().end() ? "" : it->second;
}

TEST(ConfigTest, DefaultsWithoutFileOrEnv) {
  auto c = LoadConfig("", {});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->listen, "127.0.0.1:8443");
  EXPECT_EQ(c->data_dir, "./data");
  EXPECT_FALSE(c->master_passphrase.has_value());
  c->ResolvePaths();
  EXPECT_EQ(c->database_path, "./data/concierge.db");
  EXPECT_EQ(c->keystore_dir, "./data/keystore");
}

TEST(ConfigTest, EnvironmentOverridesFile) {
  testing::TempDir dir;
  testing::WriteFile(dir.File("c.toml"), "listen = \"0.0.0.0:9000\"\ndata_dir = \"/srv/kc\"\nio_threads = 4\n");
  auto c = LoadConfig(dir.File("c.toml"), {{"KEYCTL_LISTEN", "127.0.0.1:9100"}});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->listen, "127.0.0.1:9100");
  EXPECT_EQ(c->data_dir, "/srv/kc");
  EXPECT_EQ(c->io_threads, 4);
}

TEST(ConfigTest, ErrorsNameTheKey) {
  testing::TempDir dir;
  testing::WriteFile(dir.File("a.toml"), "io_threads = \"many\"\n");
  auto a = LoadConfig(dir.File("a.toml"), {});
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(FieldOf(a.status()), "io_threads");
  testing::WriteFile(dir.File("b.toml"), "lissten = \"x\"\n");
  auto b = LoadConfig(dir.File("b.toml"), {});
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(FieldOf(b.status()), "lissten");
  testing::WriteFile(dir.File("c.toml"), "listen = \n");
  EXPECT_EQ(LoadConfig(dir.File("c.toml"), {}).status().code(), StatusCode::kInvalidArgument);
  auto d = LoadConfig("", {{"KEYCTL_LISTEN", "nohost"}});
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(FieldOf(d.status()), "listen");
  EXPECT_NE(d.status().message().find("KEYCTL_LISTEN"), std::string::npos);
}

TEST(ConfigTest, LedgerWriterPriority) {
  auto defaults = LoadConfig("", {});
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->ledger_writer_priority, 10);
  auto off = LoadConfig("", {{"KEYCTL_LEDGER_WRITER_PRIORITY", "0"}});
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_EQ(off->ledger_writer_priority, 0);
  auto too_much = LoadConfig("", {{"KEYCTL_LEDGER_WRITER_PRIORITY", "20"}});
  ASSERT_FALSE(too_much.ok());
  EXPECT_EQ(FieldOf(too_much.status()), "ledger_writer_priority");
  EXPECT_EQ(LoadConfig("", {{"KEYCTL_LEDGER_WRITER_PRIORITY", "-5"}}).status().code(), StatusCode::kInvalidArgument);
}

TEST(ConfigTest, AuditSettings) {
  auto defaults = LoadConfig("", {});
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->audit_checkpoint_interval_seconds, 60u);
  EXPECT_EQ(defaults->audit_origin, "c2-concierge/audit");
  testing::TempDir dir;
  testing::WriteFile(dir.File("a.toml"), "audit_checkpoint_interval_seconds = 5\naudit_origin = \"acme.example/audit\"\n");
  auto c = LoadConfig(dir.File("a.toml"), {{"KEYCTL_AUDIT_CHECKPOINT_INTERVAL_SECONDS", "7"}});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->audit_checkpoint_interval_seconds, 7u);
  EXPECT_EQ(c->audit_origin, "acme.example/audit");
  EXPECT_EQ(FieldOf(LoadConfig("", {{"KEYCTL_AUDIT_CHECKPOINT_INTERVAL_SECONDS", "0"}}).status()),
            "audit_checkpoint_interval_seconds");
  EXPECT_EQ(FieldOf(LoadConfig("", {{"KEYCTL_AUDIT_ORIGIN", ""}}).status()), "audit_origin");
}

TEST(ConfigTest, PassphraseOnlyFromEnvironmentOrFile) {
  testing::TempDir dir;
  testing::WriteFile(dir.File("p.toml"), "master_passphrase = \"hunter2\"\n");
  auto a = LoadConfig(dir.File("p.toml"), {});
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().message().find("hunter2"), std::string::npos);  // never echoed
  auto b = LoadConfig("", {{"KEYCTL_MASTER_PASSPHRASE", "correct horse"}});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->master_passphrase->RevealString(SecretAccess::Grant()), "correct horse");
  testing::WriteFile(dir.File("pass"), "from file\n");
  auto c = LoadConfig("", {{"KEYCTL_MASTER_PASSPHRASE_FILE", dir.File("pass")}});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->master_passphrase->RevealString(SecretAccess::Grant()), "from file");
  EXPECT_FALSE(LoadConfig("", {{"KEYCTL_MASTER_PASSPHRASE", ""}}).ok());
}

TEST(ConfigTest, DatabaseUrlPicksPostgresAndKeepsPasswordsOutOfFilesAndFlags) {
  testing::TempDir dir;
  auto none = LoadConfig("", {});
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->database_url.has_value());  // SQLite by default

  testing::WriteFile(dir.File("ok.toml"), "database_url = \"postgresql://keyctl@db.internal:5432/concierge\"\n");
  auto from_file = LoadConfig(dir.File("ok.toml"), {});
  ASSERT_TRUE(from_file.ok()) << from_file.status().ToString();
  EXPECT_EQ(from_file->database_url->RevealString(SecretAccess::Grant()), "postgresql://keyctl@db.internal:5432/concierge");
  EXPECT_TRUE(from_file->Clone().database_url.has_value());

  // A password is refused in the TOML file and on the command line, never echoed.
  testing::WriteFile(dir.File("pw.toml"), "database_url = \"postgresql://keyctl:Hunter2Hunter2@db/concierge\"\n");
  auto with_pw = LoadConfig(dir.File("pw.toml"), {});
  ASSERT_FALSE(with_pw.ok());
  EXPECT_EQ(FieldOf(with_pw.status()), "database_url");
  EXPECT_EQ(with_pw.status().message().find("Hunter2"), std::string::npos) << with_pw.status().message();
  ServerConfig c;
  Status flag = SetDatabaseUrl(c, "postgresql://u@h/d?password=Hunter2Hunter2", false, "--database-url");
  EXPECT_EQ(flag.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(flag.message().find("--database-url"), std::string::npos);
  EXPECT_EQ(flag.message().find("Hunter2"), std::string::npos) << flag.message();

  // ... but taken from the environment, directly or from a file.
  auto env = LoadConfig("", {{"KEYCTL_DATABASE_URL", "postgres://keyctl:Hunter2Hunter2@db/concierge"}});
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  EXPECT_EQ(env->database_url->RevealString(SecretAccess::Grant()), "postgres://keyctl:Hunter2Hunter2@db/concierge");
  testing::WriteFile(dir.File("url"), "postgresql://keyctl:Hunter2Hunter2@db/concierge\n");
  auto env_file = LoadConfig("", {{"KEYCTL_DATABASE_URL_FILE", dir.File("url")}});
  ASSERT_TRUE(env_file.ok()) << env_file.status().ToString();
  EXPECT_EQ(env_file->database_url->RevealString(SecretAccess::Grant()), "postgresql://keyctl:Hunter2Hunter2@db/concierge");

  // Only PostgreSQL URLs, and not together with a SQLite path.
  auto sqlite_url = LoadConfig("", {{"KEYCTL_DATABASE_URL", "sqlite:///tmp/x.db"}});
  ASSERT_FALSE(sqlite_url.ok());
  EXPECT_EQ(FieldOf(sqlite_url.status()), "database_url");
  auto both = LoadConfig("", {{"KEYCTL_DATABASE_URL", "postgresql://db/c"}, {"KEYCTL_DATABASE_PATH", "/tmp/x.db"}});
  ASSERT_FALSE(both.ok());
  EXPECT_NE(both.status().message().find("not both"), std::string::npos);
  auto bad = LoadConfig("", {{"KEYCTL_DATABASE_URL", "postgresql://u:Hunter2%zz@db/c"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message().find("Hunter2"), std::string::npos) << bad.status().message();
  testing::WriteFile(dir.File("pool.toml"), "database_pool_size = 0\n");
  EXPECT_EQ(FieldOf(LoadConfig(dir.File("pool.toml"), {}).status()), "database_pool_size");
}

TEST(ConfigTest, IncidentSettingsFromFileAndEnvironment) {
  auto d = LoadConfig("", {});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->incident.resign_batch_size, 500);
  EXPECT_EQ(d->incident.webhook_allow_http, 0);
  EXPECT_EQ(d->incident.cert_expiry_critical_days, 7);
  testing::TempDir dir;
  testing::WriteFile(dir.File("i.toml"),
                     "resign_rate_per_backend = 2000\nwebhook_allow_http = true\ndetectors_enabled = false\n"
                     "auth_failure_burst = 7\n");
  auto c = LoadConfig(dir.File("i.toml"), {{"KEYCTL_RESIGN_BATCH_SIZE", "250"}, {"KEYCTL_AUTH_FAILURE_BURST", "9"}});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->incident.resign_rate_per_backend, 2000);
  EXPECT_EQ(c->incident.webhook_allow_http, 1);
  EXPECT_EQ(c->incident.detectors_enabled, 0);
  EXPECT_EQ(c->incident.resign_batch_size, 250);
  EXPECT_EQ(c->incident.auth_failure_burst, 9);  // the environment wins
  auto big = LoadConfig("", {{"KEYCTL_RESIGN_BATCH_SIZE", "5000"}});
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(FieldOf(big.status()), "resign_batch_size");
  EXPECT_NE(big.status().message().find("between 1 and 1000"), std::string::npos);
  EXPECT_EQ(FieldOf(LoadConfig("", {{"KEYCTL_RATE_ANOMALY_FACTOR", "1"}}).status()), "rate_anomaly_factor");
  EXPECT_EQ(FieldOf(LoadConfig("", {{"KEYCTL_WEBHOOK_ALLOW_HTTP", "maybe"}}).status()), "webhook_allow_http");
}

TEST(ConfigTest, BackendLatencyAndFailoverSettings) {
  auto d = LoadConfig("", {});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->incident.backend_latency_p99_ms, 0);  // off
  EXPECT_EQ(d->incident.backend_latency_severity, "high");
  EXPECT_EQ(d->incident.failover_after_failures, 3);
  EXPECT_EQ(d->incident.failback_after_probes, 3);
  testing::TempDir dir;
  testing::WriteFile(dir.File("f.toml"),
                     "backend_latency_p99_ms = 250\nbackend_latency_severity = \"critical\"\n"
                     "failover_after_failures = 5\nfailover_probe_interval_seconds = 30\n");
  auto c = LoadConfig(dir.File("f.toml"), {{"KEYCTL_FAILBACK_AFTER_PROBES", "4"},
                                           {"KEYCTL_BACKEND_LATENCY_SEVERITY", "medium"}});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->incident.backend_latency_p99_ms, 250);
  EXPECT_EQ(c->incident.backend_latency_severity, "medium");  // the environment wins
  EXPECT_EQ(c->incident.failover_after_failures, 5);
  EXPECT_EQ(c->incident.failover_probe_interval_seconds, 30);
  EXPECT_EQ(c->incident.failback_after_probes, 4);
  auto bad = LoadConfig("", {{"KEYCTL_BACKEND_LATENCY_SEVERITY", "urgent"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(FieldOf(bad.status()), "backend_latency_severity");
  EXPECT_EQ(FieldOf(LoadConfig("", {{"KEYCTL_FAILOVER_AFTER_FAILURES", "0"}}).status()), "failover_after_failures");
}

TEST(ConfigTest, ParseListen) {
  std::string host;
  uint16_t port;
  ASSERT_TRUE(ParseListen("[::1]:8443", &host, &port).ok());
  EXPECT_EQ(host, "::1");
  EXPECT_EQ(port, 8443);
  EXPECT_FALSE(ParseListen("127.0.0.1:99999", &host, &port).ok());
  EXPECT_FALSE(ParseListen(":80", &host, &port).ok());
}

}  // namespace
}  // namespace concierge::server
