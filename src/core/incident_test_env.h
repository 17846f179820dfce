// Shared fixture of the incident-response unit tests: a real SQLite store and
// ledger in a temp dir, the group-commit writer, an encrypted software
// keystore, tenants with real keys, the built-in CA, and a FakeClock. Tests
// only; not thread-safe.
#ifndef CONCIERGE_CORE_INCIDENT_TEST_ENV_H_
#define CONCIERGE_CORE_INCIDENT_TEST_ENV_H_

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

#include "backends/software/software_backend.h"
#include "core/ca.h"
#include "core/incident.h"
#include "core/ledger_writer.h"
#include "core/tenant_service.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "store/sqlite/sqlite_ledger.h"
#include "store/sqlite/sqlite_store.h"
#include "testing/test_util.h"

namespace concierge::core {

inline TimePoint Epoch() { return TimePoint(std::chrono::seconds(1'760'000'000)); }

class IncidentTestEnv : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.File("concierge.db");
    auto store = store::SqliteStore::Open(path_);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = *std::move(store);
    ASSERT_TRUE(store_->Migrate().ok());
    auto ledger = store::SqliteLedger::Open(path_);
    ASSERT_TRUE(ledger.ok()) << ledger.status().ToString();
    ledger_ = *std::move(ledger);
    writer_ = std::make_unique<LedgerWriter>(LedgerFor());
    backends::SoftwareKeystoreOptions ks;
    ks.dir = dir_.File("keystore");
    auto software = backends::SoftwareBackend::Create(std::move(ks));
    ASSERT_TRUE(software.ok()) << software.status().ToString();
    ASSERT_TRUE(backends_.Register(*std::move(software)).ok());
    tenants_ = std::make_unique<TenantService>(*store_, backends_, clock_);
    certs_ = std::make_unique<CertificateService>(*store_, backends_, *tenants_, clock_);
    incidents_ = std::make_unique<IncidentService>(*store_, clock_);
  }

  void TearDown() override {
    if (writer_) writer_->Stop();
  }

  // The LedgerStore the writer commits to; tests may wrap the real one.
  virtual LedgerStore& LedgerFor() { return *ledger_; }

  const Principal& Admin() {
    static const Principal admin{"admin-test", Role::kAdmin, ""};
    return admin;
  }

  // A tenant with a real key ("software" provider). Returns its active key.
  KeyRecord CreateTenant(const std::string& tenant, const std::string& algorithm = "ES256",
                         nlohmann::json extra = nlohmann::json::object()) {
    nlohmann::json body = {{"algorithm", algorithm}, {"provider", "software"}};
    body.update(extra);
    auto created = tenants_->CreatePolicy(tenant, body, Admin());
    EXPECT_TRUE(created.ok()) << created.status().ToString();
    return created.ok() ? created->active_key : KeyRecord{};
  }

  // `n` ledger rows of `kind` signed (as the ledger says) by `key`: real
  // SHA-256 digests of "asset-<prefix><i>", asset ids carried. Fast: straight
  // through AppendBatch in 10k-row transactions.
  std::vector<LedgerEntry> Seed(const KeyRecord& key, int n, const std::string& kind = "digest",
                                const std::string& prefix = "") {
    std::vector<LedgerEntry> all;
    all.reserve(static_cast<size_t>(n));
    std::vector<LedgerEntry> batch;
    for (int i = 0; i < n; ++i) {
      LedgerEntry e;
      e.tenant_id = key.tenant_id;
      e.key_id = key.key_id;
      e.key_version = key.version;
      e.algorithm = key.algorithm;
      e.kind = kind;
      e.asset_id = "asset-" + prefix + std::to_string(i);
      e.digest_hex = crypto::Sha256Hex(crypto::AsBytes(e.asset_id));
      e.request_id = "seed-" + prefix + std::to_string(i);
      e.api_key_id = "seeder";
      e.client_address = "127.0.0.1";
      e.policy_hash = std::string(64, 'p');
      e.signed_at = clock_.Now();
      batch.push_back(std::move(e));
      if (batch.size() == 10000 || i + 1 == n) {
        EXPECT_TRUE(ledger_->AppendBatch(batch).ok());
        for (auto& b : batch) all.push_back(std::move(b));
        batch.clear();
      }
    }
    return all;
  }

  testing::TempDir dir_;
  FakeClock clock_{Epoch()};
  std::string path_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<store::SqliteLedger> ledger_;
  std::unique_ptr<LedgerWriter> writer_;
  BackendRegistry backends_;
  std::unique_ptr<TenantService> tenants_;
  std::unique_ptr<CertificateService> certs_;
  std::unique_ptr<IncidentService> incidents_;
};

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_INCIDENT_TEST_ENV_H_
