// A conformance test suite for any concierge::Store implementation.
//
// Usage, in exactly one test .cc per implementation:
//
//   #include "store/store_test_suite.h"
//   INSTANTIATE_TEST_SUITE_P(
//       Sqlite, StoreConformanceTest,
//       ::testing::Values(StoreTestParam{"file", [] { return MakeFreshStore(); }}),
//       StoreTestParamName);
//
// The factory must return a store over a fresh, empty, NOT yet migrated
// database, distinct on every call (tests create several). Everything here
// goes through the Store interface only, so the PostgreSQL store can run the
// very same cases; implementation-specific checks (files, sqlite_master, ...)
// belong in that implementation's own test file.
#ifndef CONCIERGE_STORE_STORE_TEST_SUITE_H_
#define CONCIERGE_STORE_STORE_TEST_SUITE_H_

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "concierge/clock.h"
#include "concierge/status.h"
#include "concierge/store.h"
#include "store/store_test_util.h"

namespace concierge::store::conformance {

using StoreFactory = std::function<std::unique_ptr<Store>()>;

struct StoreTestParam {
  std::string name;  // test-name suffix, [A-Za-z0-9_] only
  StoreFactory factory;
};

inline std::string StoreTestParamName(const ::testing::TestParamInfo<StoreTestParam>& info) {
  return info.param.name;
}

inline PolicyRecord MakePolicy(const std::string& tenant, int64_t version, TimePoint at = T(0)) {
  PolicyRecord p;
  p.tenant_id = tenant;
  p.version = version;
  p.body_json = R"({"algorithm":"ES256","v":)" + std::to_string(version) + "}";
  p.policy_hash = std::string(64, 'a' + static_cast<char>(version % 6));
  p.created_by = "admin-1";
  p.created_at = at;
  return p;
}

inline KeyRecord MakeKey(const std::string& tenant, int64_t version, const std::string& state,
                         TimePoint at = T(0)) {
  KeyRecord k;
  k.key_id = tenant + "-v" + std::to_string(version);
  k.tenant_id = tenant;
  k.version = version;
  k.algorithm = "ES256";
  k.provider = "software";
  k.key_uri = "software://" + k.key_id;
  k.state = state;
  k.public_key_pem = "-----BEGIN PUBLIC KEY-----\nMFkw" + k.key_id + "\n-----END PUBLIC KEY-----\n";
  k.fingerprint = std::string(64, 'f');
  k.created_at = at;
  if (state == "active") k.activated_at = at;
  return k;
}

inline ApiKeyRecord MakeApiKey(const std::string& id, const std::string& tenant,
                               TimePoint at = T(0)) {
  ApiKeyRecord a;
  a.id = id;
  a.secret_hash = std::string(64, '0');
  a.role = tenant.empty() ? "admin" : "signer";
  a.tenant_id = tenant;
  a.name = "key " + id;
  a.created_by = "bootstrap";
  a.created_at = at;
  return a;
}

inline void ExpectSameKey(const KeyRecord& a, const KeyRecord& b) {
  EXPECT_EQ(a.key_id, b.key_id);
  EXPECT_EQ(a.tenant_id, b.tenant_id);
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.algorithm, b.algorithm);
  EXPECT_EQ(a.provider, b.provider);
  EXPECT_EQ(a.key_uri, b.key_uri);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.public_key_pem, b.public_key_pem);
  EXPECT_EQ(a.fingerprint, b.fingerprint);
  EXPECT_EQ(a.attestation, b.attestation);
  EXPECT_EQ(a.created_at, b.created_at);
  EXPECT_EQ(a.activated_at, b.activated_at);
  EXPECT_EQ(a.retired_at, b.retired_at);
}

inline void ExpectSamePolicy(const PolicyRecord& a, const PolicyRecord& b) {
  EXPECT_EQ(a.tenant_id, b.tenant_id);
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.body_json, b.body_json);
  EXPECT_EQ(a.policy_hash, b.policy_hash);
  EXPECT_EQ(a.created_by, b.created_by);
  EXPECT_EQ(a.created_at, b.created_at);
}

class StoreConformanceTest : public ::testing::TestWithParam<StoreTestParam> {
 protected:
  std::unique_ptr<Store> NewStore() {
    std::unique_ptr<Store> s = GetParam().factory();
    EXPECT_NE(s, nullptr);
    return s;
  }

  void SetUp() override {
    store_ = NewStore();
    ASSERT_NE(store_, nullptr);
    ASSERT_TRUE(IsOk(store_->Migrate()));
  }

  // Tenant with policy v1 and an active key v1.
  void CreateTenant(const std::string& tenant) {
    ASSERT_TRUE(IsOk(store_->CreateTenant(MakePolicy(tenant, 1), MakeKey(tenant, 1, "active"))));
  }

  std::unique_ptr<Store> store_;
};

// --- migrations ---------------------------------------------------------------

TEST_P(StoreConformanceTest, MigrateFromEmptyIsIdempotent) {
  std::unique_ptr<Store> s = NewStore();
  ASSERT_NE(s, nullptr);
  StatusOr<int> v = s->SchemaVersion();
  ASSERT_TRUE(IsOk(v.status()));
  EXPECT_EQ(*v, 0);
  const int latest = s->LatestSchemaVersion();
  ASSERT_GE(latest, 2);

  ASSERT_TRUE(IsOk(s->Migrate()));
  EXPECT_EQ(*s->SchemaVersion(), latest);
  ASSERT_TRUE(IsOk(s->Migrate()));
  ASSERT_TRUE(IsOk(s->Migrate(latest)));
  EXPECT_EQ(*s->SchemaVersion(), latest);
}

TEST_P(StoreConformanceTest, MigrateStepwiseFromEachEarlierVersion) {
  const int latest = store_->LatestSchemaVersion();
  for (int from = 1; from < latest; ++from) {
    SCOPED_TRACE("from version " + std::to_string(from));
    std::unique_ptr<Store> s = NewStore();
    ASSERT_NE(s, nullptr);
    ASSERT_TRUE(IsOk(s->Migrate(from)));
    EXPECT_EQ(*s->SchemaVersion(), from);
    // Data methods need the latest schema and say so.
    EXPECT_TRUE(HasCode(s->GetTenant("t").status(), StatusCode::kFailedPrecondition));
    ASSERT_TRUE(IsOk(s->Migrate()));
    EXPECT_EQ(*s->SchemaVersion(), latest);
    EXPECT_TRUE(IsOk(s->CreateTenant(MakePolicy("t", 1), MakeKey("t", 1, "active"))));
  }
}

TEST_P(StoreConformanceTest, MigrateRejectsBadTargets) {
  const int latest = store_->LatestSchemaVersion();
  EXPECT_TRUE(HasCode(store_->Migrate(latest + 1), StatusCode::kInvalidArgument));
  EXPECT_TRUE(HasCode(store_->Migrate(-1), StatusCode::kInvalidArgument));
  EXPECT_TRUE(HasCode(store_->Migrate(1), StatusCode::kFailedPrecondition));  // no downgrades
  EXPECT_EQ(*store_->SchemaVersion(), latest);
}

TEST_P(StoreConformanceTest, DataMethodsRefuseUnmigratedStore) {
  std::unique_ptr<Store> s = NewStore();
  ASSERT_NE(s, nullptr);
  Status st = s->CreateTenant(MakePolicy("t", 1), MakeKey("t", 1, "active"));
  EXPECT_TRUE(HasCode(st, StatusCode::kFailedPrecondition));
  EXPECT_NE(st.message().find("migrat"), std::string::npos) << st.ToString();
}

TEST_P(StoreConformanceTest, Ping) { EXPECT_TRUE(IsOk(store_->Ping())); }

// --- tenants and policies -------------------------------------------------------

TEST_P(StoreConformanceTest, CreateTenantRoundTrips) {
  const PolicyRecord policy = MakePolicy("acme", 1, T(5));
  const KeyRecord key = MakeKey("acme", 1, "active", T(5));
  ASSERT_TRUE(IsOk(store_->CreateTenant(policy, key)));

  StatusOr<TenantRecord> t = store_->GetTenant("acme");
  ASSERT_TRUE(IsOk(t.status()));
  EXPECT_EQ(t->tenant_id, "acme");
  EXPECT_EQ(t->active_policy_version, 1);
  EXPECT_FALSE(t->deleted);
  EXPECT_EQ(t->created_at, T(5));
  EXPECT_EQ(t->updated_at, T(5));

  StatusOr<PolicyRecord> p = store_->GetActivePolicy("acme");
  ASSERT_TRUE(IsOk(p.status()));
  ExpectSamePolicy(*p, policy);
  StatusOr<KeyRecord> k = store_->GetKey(key.key_id);
  ASSERT_TRUE(IsOk(k.status()));
  ExpectSameKey(*k, key);

  EXPECT_TRUE(HasCode(store_->GetTenant("nobody").status(), StatusCode::kNotFound));
}

TEST_P(StoreConformanceTest, CreateTenantIsAtomic) {
  CreateTenant("acme");
  // The key id collides with acme's key, so the whole creation must vanish.
  KeyRecord clash = MakeKey("beta", 1, "active");
  clash.key_id = "acme-v1";
  EXPECT_TRUE(
      HasCode(store_->CreateTenant(MakePolicy("beta", 1), clash), StatusCode::kAlreadyExists));
  EXPECT_TRUE(HasCode(store_->GetTenant("beta").status(), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(store_->GetPolicyVersion("beta", 1).status(), StatusCode::kNotFound));
  EXPECT_EQ(store_->ListTenants(true)->size(), 1u);
  // And the failed attempt left nothing behind that blocks a correct retry.
  EXPECT_TRUE(IsOk(store_->CreateTenant(MakePolicy("beta", 1), MakeKey("beta", 1, "active"))));
}

TEST_P(StoreConformanceTest, CreateTenantValidatesInput) {
  EXPECT_TRUE(HasCode(store_->CreateTenant(MakePolicy("a", 1), MakeKey("b", 1, "active")),
                      StatusCode::kInvalidArgument));
  EXPECT_TRUE(HasCode(store_->CreateTenant(MakePolicy("a", 1), MakeKey("a", 1, "bogus")),
                      StatusCode::kInvalidArgument));
  EXPECT_TRUE(HasCode(store_->CreateTenant(MakePolicy("a", 0), MakeKey("a", 1, "active")),
                      StatusCode::kInvalidArgument));
  EXPECT_TRUE(store_->ListTenants(true)->empty());
}

TEST_P(StoreConformanceTest, DuplicateTenantIsAlreadyExists) {
  CreateTenant("acme");
  Status s = store_->CreateTenant(MakePolicy("acme", 2), MakeKey("acme", 2, "active"));
  EXPECT_TRUE(HasCode(s, StatusCode::kAlreadyExists));
  EXPECT_TRUE(HasCode(store_->GetKey("acme-v2").status(), StatusCode::kNotFound));
  EXPECT_EQ(store_->ListPolicyVersions("acme")->size(), 1u);
}

TEST_P(StoreConformanceTest, ListTenantsFiltersDeleted) {
  CreateTenant("b");
  CreateTenant("a");
  CreateTenant("c");
  ASSERT_TRUE(IsOk(store_->DeleteTenant("b", T(10), "retired")));
  std::vector<TenantRecord> live = *store_->ListTenants(false);
  ASSERT_EQ(live.size(), 2u);
  EXPECT_EQ(live[0].tenant_id, "a");
  EXPECT_EQ(live[1].tenant_id, "c");
  std::vector<TenantRecord> all = *store_->ListTenants(true);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[1].tenant_id, "b");
  EXPECT_TRUE(all[1].deleted);
}

TEST_P(StoreConformanceTest, AddPolicyVersionAdvancesActive) {
  CreateTenant("acme");
  ASSERT_TRUE(IsOk(store_->AddPolicyVersion(MakePolicy("acme", 2, T(20)), 1)));
  EXPECT_EQ(store_->GetActivePolicy("acme")->version, 2);
  StatusOr<TenantRecord> t = store_->GetTenant("acme");
  EXPECT_EQ(t->active_policy_version, 2);
  EXPECT_EQ(t->updated_at, T(20));
  EXPECT_EQ(t->created_at, T(0));
}

TEST_P(StoreConformanceTest, AddPolicyVersionWithStaleExpectationIsAbortedAndChangesNothing) {
  CreateTenant("acme");
  ASSERT_TRUE(IsOk(store_->AddPolicyVersion(MakePolicy("acme", 2), 1)));
  // A writer that still believes version 1 is active loses.
  EXPECT_TRUE(HasCode(store_->AddPolicyVersion(MakePolicy("acme", 3), 1), StatusCode::kAborted));
  EXPECT_EQ(store_->GetActivePolicy("acme")->version, 2);
  EXPECT_EQ(store_->ListPolicyVersions("acme")->size(), 2u);
  EXPECT_TRUE(HasCode(store_->GetPolicyVersion("acme", 3).status(), StatusCode::kNotFound));
  // Versions never go backwards or repeat.
  EXPECT_TRUE(
      HasCode(store_->AddPolicyVersion(MakePolicy("acme", 2), 2), StatusCode::kInvalidArgument));
  EXPECT_TRUE(HasCode(store_->AddPolicyVersion(MakePolicy("nobody", 2), 1), StatusCode::kNotFound));
}

TEST_P(StoreConformanceTest, ListPolicyVersionsIsAscending) {
  CreateTenant("acme");
  for (int v = 2; v <= 5; ++v) {
    ASSERT_TRUE(IsOk(store_->AddPolicyVersion(MakePolicy("acme", v, T(v)), v - 1)));
  }
  std::vector<PolicyRecord> all = *store_->ListPolicyVersions("acme");
  ASSERT_EQ(all.size(), 5u);
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].version, static_cast<int64_t>(i) + 1);
  ExpectSamePolicy(*store_->GetPolicyVersion("acme", 3), MakePolicy("acme", 3, T(3)));
  EXPECT_TRUE(HasCode(store_->ListPolicyVersions("nobody").status(), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(store_->GetPolicyVersion("acme", 9).status(), StatusCode::kNotFound));
}

TEST_P(StoreConformanceTest, DeleteTenantHidesPolicyAndRetiresKeys) {
  CreateTenant("acme");
  ASSERT_TRUE(IsOk(store_->InsertKey(MakeKey("acme", 2, "pending"))));
  ASSERT_TRUE(IsOk(store_->InsertKey(MakeKey("acme", 3, "compromised"))));
  ASSERT_TRUE(IsOk(store_->DeleteTenant("acme", T(50), "retired")));

  EXPECT_TRUE(HasCode(store_->GetActivePolicy("acme").status(), StatusCode::kNotFound));
  StatusOr<TenantRecord> t = store_->GetTenant("acme");
  ASSERT_TRUE(IsOk(t.status()));
  EXPECT_TRUE(t->deleted);
  EXPECT_EQ(t->active_policy_version, 0);
  EXPECT_EQ(t->updated_at, T(50));
  // History stays readable.
  EXPECT_EQ(store_->ListPolicyVersions("acme")->size(), 1u);
  EXPECT_TRUE(IsOk(store_->GetPolicyVersion("acme", 1).status()));

  std::vector<KeyRecord> keys = *store_->ListKeys("acme");
  ASSERT_EQ(keys.size(), 3u);
  EXPECT_EQ(keys[0].state, "retired");
  EXPECT_EQ(keys[0].retired_at, T(50));
  EXPECT_EQ(keys[1].state, "retired");
  EXPECT_EQ(keys[2].state, "compromised");  // already out of service: untouched
  EXPECT_EQ(keys[2].retired_at, std::nullopt);
  EXPECT_TRUE(HasCode(store_->GetActiveKey("acme").status(), StatusCode::kNotFound));

  // Deleted tenants take no writes, and deleting twice is kNotFound.
  EXPECT_TRUE(HasCode(store_->AddPolicyVersion(MakePolicy("acme", 2), 0), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(store_->InsertKey(MakeKey("acme", 4, "pending")), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(store_->DeleteTenant("acme", T(60), "retired"), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(store_->DeleteTenant("nobody", T(60), "retired"), StatusCode::kNotFound));
}

TEST_P(StoreConformanceTest, DeleteTenantRejectsInServiceTargetState) {
  CreateTenant("acme");
  EXPECT_TRUE(HasCode(store_->DeleteTenant("acme", T(1), "active"), StatusCode::kInvalidArgument));
  EXPECT_TRUE(HasCode(store_->DeleteTenant("acme", T(1), "gone"), StatusCode::kInvalidArgument));
  EXPECT_FALSE(store_->GetTenant("acme")->deleted);
}

TEST_P(StoreConformanceTest, RecreateAfterDeleteContinuesVersions) {
  CreateTenant("acme");
  ASSERT_TRUE(IsOk(store_->AddPolicyVersion(MakePolicy("acme", 2), 1)));
  ASSERT_TRUE(IsOk(store_->DeleteTenant("acme", T(100), "disabled")));

  StatusOr<int64_t> next_key = store_->NextKeyVersion("acme");
  ASSERT_TRUE(IsOk(next_key.status()));
  EXPECT_EQ(*next_key, 2);
  // Re-using an old policy version is refused; the next one works.
  EXPECT_TRUE(HasCode(store_->CreateTenant(MakePolicy("acme", 2, T(200)),
                                           MakeKey("acme", *next_key, "active", T(200))),
                      StatusCode::kInvalidArgument));
  ASSERT_TRUE(IsOk(store_->CreateTenant(MakePolicy("acme", 3, T(200)),
                                        MakeKey("acme", *next_key, "active", T(200)))));

  StatusOr<TenantRecord> t = store_->GetTenant("acme");
  EXPECT_FALSE(t->deleted);
  EXPECT_EQ(t->active_policy_version, 3);
  EXPECT_EQ(t->created_at, T(200));
  std::vector<PolicyRecord> versions = *store_->ListPolicyVersions("acme");
  ASSERT_EQ(versions.size(), 3u);
  EXPECT_EQ(versions[2].version, 3);
  EXPECT_EQ(store_->GetActivePolicy("acme")->version, 3);
  EXPECT_EQ(store_->GetActiveKey("acme")->key_id, "acme-v2");
  EXPECT_EQ(store_->GetKey("acme-v1")->state, "disabled");
  EXPECT_TRUE(HasCode(store_->CreateTenant(MakePolicy("acme", 4), MakeKey("acme", 3, "active")),
                      StatusCode::kAlreadyExists));
}

// --- keys ----------------------------------------------------------------------

TEST_P(StoreConformanceTest, KeyRoundTripWithOptionalFields) {
  CreateTenant("acme");
  KeyRecord k = MakeKey("acme", 2, "retired", T(7));
  k.attestation = "attestation-blob";
  k.activated_at = T(8);
  k.retired_at = T(9);
  ASSERT_TRUE(IsOk(store_->InsertKey(k)));
  ExpectSameKey(*store_->GetKey(k.key_id), k);
  EXPECT_TRUE(HasCode(store_->GetKey("missing").status(), StatusCode::kNotFound));
}

TEST_P(StoreConformanceTest, InsertKeyConflicts) {
  CreateTenant("acme");
  KeyRecord same_id = MakeKey("acme", 2, "pending");
  same_id.key_id = "acme-v1";
  EXPECT_TRUE(HasCode(store_->InsertKey(same_id), StatusCode::kAlreadyExists));
  KeyRecord same_version = MakeKey("acme", 1, "pending");
  same_version.key_id = "other";
  EXPECT_TRUE(HasCode(store_->InsertKey(same_version), StatusCode::kAlreadyExists));
  EXPECT_TRUE(HasCode(store_->InsertKey(MakeKey("acme", 2, "active")),
                      StatusCode::kFailedPrecondition));  // one active key per tenant
  EXPECT_TRUE(HasCode(store_->InsertKey(MakeKey("nobody", 1, "pending")), StatusCode::kNotFound));
  EXPECT_EQ(store_->ListKeys("acme")->size(), 1u);
}

TEST_P(StoreConformanceTest, RotationThroughStates) {
  CreateTenant("acme");
  StatusOr<KeyRecord> active = store_->GetActiveKey("acme");
  ASSERT_TRUE(IsOk(active.status()));
  EXPECT_EQ(active->key_id, "acme-v1");

  ASSERT_EQ(*store_->NextKeyVersion("acme"), 2);
  ASSERT_TRUE(IsOk(store_->InsertKey(MakeKey("acme", 2, "pending", T(10)))));
  EXPECT_EQ(*store_->NextKeyVersion("acme"), 3);
  EXPECT_EQ(*store_->NextKeyVersion("nobody"), 1);

  // Two active keys are never allowed, whatever the order of calls.
  EXPECT_TRUE(HasCode(store_->UpdateKeyState("acme-v2", "pending", "active", T(11)),
                      StatusCode::kFailedPrecondition));
  ASSERT_TRUE(IsOk(store_->UpdateKeyState("acme-v1", "active", "retiring", T(11))));
  ASSERT_TRUE(IsOk(store_->UpdateKeyState("acme-v2", "pending", "active", T(12))));
  EXPECT_EQ(store_->GetActiveKey("acme")->key_id, "acme-v2");
  EXPECT_EQ(store_->GetKey("acme-v2")->activated_at, T(12));
  EXPECT_EQ(store_->GetKey("acme-v1")->retired_at, std::nullopt);

  ASSERT_TRUE(IsOk(store_->UpdateKeyState("acme-v1", "retiring", "retired", T(13))));
  KeyRecord v1 = *store_->GetKey("acme-v1");
  EXPECT_EQ(v1.state, "retired");
  EXPECT_EQ(v1.retired_at, T(13));
  EXPECT_EQ(v1.activated_at, T(0));

  std::vector<KeyRecord> keys = *store_->ListKeys("acme");
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0].version, 1);
  EXPECT_EQ(keys[1].version, 2);
  EXPECT_TRUE(HasCode(store_->ListKeys("nobody").status(), StatusCode::kNotFound));
}

TEST_P(StoreConformanceTest, UpdateKeyStateWithWrongExpectationIsAbortedAndChangesNothing) {
  CreateTenant("acme");
  EXPECT_TRUE(
      HasCode(store_->UpdateKeyState("acme-v1", "pending", "retired", T(5)), StatusCode::kAborted));
  KeyRecord k = *store_->GetKey("acme-v1");
  EXPECT_EQ(k.state, "active");
  EXPECT_EQ(k.retired_at, std::nullopt);
  EXPECT_TRUE(
      HasCode(store_->UpdateKeyState("missing", "active", "retired", T(5)), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(store_->UpdateKeyState("acme-v1", "active", "exploded", T(5)),
                      StatusCode::kInvalidArgument));
}

// --- API keys -----------------------------------------------------------------------

TEST_P(StoreConformanceTest, ApiKeysInsertGetListRevoke) {
  CreateTenant("acme");
  const ApiKeyRecord global = MakeApiKey("ak_global", "", T(1));
  const ApiKeyRecord scoped = MakeApiKey("ak_acme", "acme", T(2));
  ASSERT_TRUE(IsOk(store_->InsertApiKey(scoped)));
  ASSERT_TRUE(IsOk(store_->InsertApiKey(global)));

  StatusOr<ApiKeyRecord> g = store_->GetApiKey("ak_global");
  ASSERT_TRUE(IsOk(g.status()));
  EXPECT_EQ(g->secret_hash, global.secret_hash);
  EXPECT_EQ(g->role, "admin");
  EXPECT_EQ(g->tenant_id, "");
  EXPECT_EQ(g->name, global.name);
  EXPECT_EQ(g->created_by, "bootstrap");
  EXPECT_EQ(g->created_at, T(1));
  EXPECT_EQ(g->revoked_at, std::nullopt);
  EXPECT_EQ(store_->GetApiKey("ak_acme")->tenant_id, "acme");

  std::vector<ApiKeyRecord> all = *store_->ListApiKeys();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].id, "ak_global");  // ordered by creation time
  EXPECT_EQ(all[1].id, "ak_acme");

  ASSERT_TRUE(IsOk(store_->RevokeApiKey("ak_acme", T(30))));
  EXPECT_EQ(store_->GetApiKey("ak_acme")->revoked_at, T(30));
  ASSERT_TRUE(IsOk(store_->RevokeApiKey("ak_acme", T(40))));  // idempotent, first time kept
  EXPECT_EQ(store_->GetApiKey("ak_acme")->revoked_at, T(30));
  EXPECT_EQ(store_->GetApiKey("ak_global")->revoked_at, std::nullopt);

  EXPECT_TRUE(HasCode(store_->RevokeApiKey("missing", T(1)), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(store_->GetApiKey("missing").status(), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(store_->InsertApiKey(global), StatusCode::kAlreadyExists));
  EXPECT_TRUE(HasCode(store_->InsertApiKey(MakeApiKey("ak_x", "nobody")), StatusCode::kNotFound));
  ApiKeyRecord bad_role = MakeApiKey("ak_y", "");
  bad_role.role = "root";
  EXPECT_TRUE(HasCode(store_->InsertApiKey(bad_role), StatusCode::kInvalidArgument));
  EXPECT_EQ(store_->ListApiKeys()->size(), 2u);
}

// --- concurrency --------------------------------------------------------------------

TEST_P(StoreConformanceTest, ConcurrentInsertsAllLand) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 10;
  for (int t = 0; t < kThreads; ++t) CreateTenant("t" + std::to_string(t));

  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string tenant = "t" + std::to_string(t);
      for (int i = 0; i < kPerThread; ++i) {
        if (!store_->InsertKey(MakeKey(tenant, i + 2, "pending")).ok()) ++failures;
        if (!store_->InsertApiKey(MakeApiKey(tenant + "_ak" + std::to_string(i), tenant)).ok()) {
          ++failures;
        }
        if (!store_->GetActiveKey(tenant).ok()) ++failures;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(store_->ListKeys("t" + std::to_string(t))->size(), kPerThread + 1u);
  }
  EXPECT_EQ(store_->ListApiKeys()->size(), static_cast<size_t>(kThreads * kPerThread));
}

TEST_P(StoreConformanceTest, ConcurrentVersionAllocationNeverDuplicates) {
  CreateTenant("acme");
  constexpr int kThreads = 8;
  constexpr int kPerThread = 5;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Read-then-insert races by design; the unique (tenant, version)
        // constraint turns a lost race into kAlreadyExists, and we retry.
        for (int attempt = 0; attempt < 100; ++attempt) {
          StatusOr<int64_t> v = store_->NextKeyVersion("acme");
          if (!v.ok()) {
            ++errors;
            return;
          }
          KeyRecord k = MakeKey("acme", *v, "pending");
          k.key_id = "k-" + std::to_string(t) + "-" + std::to_string(i);
          Status s = store_->InsertKey(k);
          if (s.ok()) break;
          if (s.code() != StatusCode::kAlreadyExists) {
            ++errors;
            return;
          }
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  std::vector<KeyRecord> keys = *store_->ListKeys("acme");
  ASSERT_EQ(keys.size(), 1u + kThreads * kPerThread);
  for (size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(keys[i].version, static_cast<int64_t>(i) + 1);
}

// --- certificates and the built-in CA ------------------------------------------

inline CertificateRecord MakeCert(const std::string& tenant, const std::string& key_id, const std::string& serial,
                                  TimePoint at = T(0)) {
  CertificateRecord c;
  c.serial = serial;
  c.tenant_id = tenant;
  c.key_id = key_id;
  c.pem = "-----BEGIN CERTIFICATE-----\n" + serial + "\n-----END CERTIFICATE-----\n";
  c.chain_pem = c.pem + c.pem;
  c.issuer = "CN=Test CA";
  c.source = "builtin-ca";
  c.not_before = at;
  c.not_after = at + std::chrono::hours(24);
  c.created_at = at;
  return c;
}

TEST_P(StoreConformanceTest, CaIsSingleAndNumbersCrls) {
  EXPECT_TRUE(HasCode(store_->GetCa().status(), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(store_->NextCrlNumber().status(), StatusCode::kNotFound));
  CaRecord ca{"software", "software:ca", "ES256", "-----BEGIN CERTIFICATE-----\nca\n", 0, T(5)};
  ASSERT_TRUE(IsOk(store_->InsertCa(ca)));
  EXPECT_TRUE(HasCode(store_->InsertCa(ca), StatusCode::kAlreadyExists));
  StatusOr<CaRecord> got = store_->GetCa();
  ASSERT_TRUE(IsOk(got.status()));
  EXPECT_EQ(got->key_uri, "software:ca");
  EXPECT_EQ(got->cert_pem, ca.cert_pem);
  EXPECT_EQ(got->created_at, T(5));
  EXPECT_EQ(*store_->NextCrlNumber(), 1);
  EXPECT_EQ(*store_->NextCrlNumber(), 2);
  EXPECT_EQ(store_->GetCa()->crl_number, 2);
}

TEST_P(StoreConformanceTest, NewCertificateSupersedesAndRevocationIsKept) {
  CreateTenant("acme");
  EXPECT_TRUE(HasCode(store_->GetActiveCertificate("acme-v1").status(), StatusCode::kNotFound));
  ASSERT_TRUE(IsOk(store_->InsertCertificate(MakeCert("acme", "acme-v1", "01", T(1)))));
  ASSERT_TRUE(IsOk(store_->InsertCertificate(MakeCert("acme", "acme-v1", "02", T(2)))));
  StatusOr<CertificateRecord> active = store_->GetActiveCertificate("acme-v1");
  ASSERT_TRUE(IsOk(active.status()));
  EXPECT_EQ(active->serial, "02");
  EXPECT_EQ(active->chain_pem, MakeCert("acme", "acme-v1", "02").chain_pem);
  EXPECT_EQ(active->not_after, T(2) + std::chrono::hours(24));
  // Same (issuer, serial) twice is a conflict and changes nothing.
  EXPECT_TRUE(HasCode(store_->InsertCertificate(MakeCert("acme", "acme-v1", "02", T(3))), StatusCode::kAlreadyExists));
  EXPECT_EQ(store_->GetActiveCertificate("acme-v1")->serial, "02");
  // Unknown or deleted tenants are refused.
  EXPECT_TRUE(HasCode(store_->InsertCertificate(MakeCert("nobody", "k", "09")), StatusCode::kNotFound));

  ASSERT_TRUE(IsOk(store_->RevokeCertificate("CN=Test CA", "02", T(10))));
  ASSERT_TRUE(IsOk(store_->RevokeCertificate("CN=Test CA", "02", T(20))));  // idempotent
  EXPECT_TRUE(HasCode(store_->RevokeCertificate("CN=Test CA", "ff", T(10)), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(store_->GetActiveCertificate("acme-v1").status(), StatusCode::kNotFound));
  StatusOr<CertificateRecord> latest = store_->GetLatestCertificate("acme-v1");
  ASSERT_TRUE(IsOk(latest.status()));
  EXPECT_EQ(latest->status, "revoked");
  EXPECT_EQ(latest->revoked_at, T(10));
  StatusOr<std::vector<CertificateRecord>> revoked = store_->ListRevokedCertificates("CN=Test CA");
  ASSERT_TRUE(IsOk(revoked.status()));
  ASSERT_EQ(revoked->size(), 1u);
  EXPECT_EQ((*revoked)[0].serial, "02");
  EXPECT_TRUE(store_->ListRevokedCertificates("CN=Other")->empty());
}

// --- rotations ----------------------------------------------------------------------

inline RotationRecord MakeRotation(const std::string& id, const std::string& tenant, TimePoint at = T(0)) {
  RotationRecord r;
  r.rotation_id = id;
  r.tenant_id = tenant;
  r.state = "scheduled";
  r.trigger = "manual";
  r.scheduled_at = at + std::chrono::hours(1);
  r.owner = "owner@example.com";
  r.approval_required = true;
  r.created_by = "ak_operator";
  r.cert_source = "builtin-ca";
  r.created_at = at;
  r.updated_at = at;
  return r;
}

inline RotationEvent MakeEvent(const std::string& rotation_id, const std::string& event, TimePoint at = T(0)) {
  RotationEvent e;
  e.rotation_id = rotation_id;
  e.at = at;
  e.event = event;
  e.detail = "detail of " + event;
  e.actor = "ak_operator";
  return e;
}

// The tenant's keys as "key_id=state" in version order, for compact checks.
inline std::vector<std::string> KeyStates(Store& store, const std::string& tenant) {
  std::vector<std::string> out;
  StatusOr<std::vector<KeyRecord>> keys = store.ListKeys(tenant);
  if (!keys.ok()) return {keys.status().ToString()};
  for (const KeyRecord& k : *keys) out.push_back(k.key_id + "=" + k.state);
  return out;
}

TEST_P(StoreConformanceTest, RotationRoundTripsWithTimeline) {
  CreateTenant("acme");
  RotationRecord r = MakeRotation("rot-1", "acme", T(5));
  ASSERT_TRUE(IsOk(store_->InsertRotation(r, MakeEvent("rot-1", "scheduled", T(5)))));
  StatusOr<RotationRecord> got = store_->GetRotation("rot-1");
  ASSERT_TRUE(IsOk(got.status()));
  EXPECT_EQ(got->tenant_id, "acme");
  EXPECT_EQ(got->state, "scheduled");
  EXPECT_EQ(got->phase, "");
  EXPECT_EQ(got->trigger, "manual");
  EXPECT_EQ(got->scheduled_at, T(5) + std::chrono::hours(1));
  EXPECT_EQ(got->owner, "owner@example.com");
  EXPECT_TRUE(got->approval_required);
  EXPECT_EQ(got->approved_at, std::nullopt);
  EXPECT_EQ(got->created_by, "ak_operator");
  EXPECT_EQ(got->cert_source, "builtin-ca");
  EXPECT_EQ(got->grace_until, std::nullopt);
  EXPECT_EQ(got->created_at, T(5));
  EXPECT_EQ(got->version, 1);
  EXPECT_TRUE(HasCode(store_->GetRotation("nope").status(), StatusCode::kNotFound));

  // Every mutable field survives an update; the immutable ones are kept.
  RotationRecord u = *got;
  u.state = "running";
  u.phase = "canary";
  u.approved_by = "ak_officer";
  u.approved_at = T(6);
  u.policy_version = 3;
  u.policy_hash = std::string(64, 'b');
  u.old_key_id = "acme-v1";
  u.new_key_id = "acme-v2";
  u.csr_pem = "-----BEGIN CERTIFICATE REQUEST-----\n";
  u.cert_serial = "0a";
  u.canary_results = R"([{"ok":true}])";
  u.error = "";
  u.started_at = T(7);
  u.cutover_at = T(8);
  u.grace_until = T(9);
  u.finished_at = T(10);
  u.updated_at = T(10);
  u.trigger = "calendar";     // immutable: ignored
  u.created_by = "someone";   // immutable: ignored
  ASSERT_TRUE(IsOk(store_->UpdateRotation(u, {MakeEvent("rot-1", "approved", T(6)),
                                              MakeEvent("rot-1", "phase_started", T(7))})));
  RotationRecord v = *store_->GetRotation("rot-1");
  EXPECT_EQ(v.version, 2);
  EXPECT_EQ(v.state, "running");
  EXPECT_EQ(v.phase, "canary");
  EXPECT_EQ(v.approved_by, "ak_officer");
  EXPECT_EQ(v.approved_at, T(6));
  EXPECT_EQ(v.policy_version, 3);
  EXPECT_EQ(v.policy_hash, u.policy_hash);
  EXPECT_EQ(v.old_key_id, "acme-v1");
  EXPECT_EQ(v.new_key_id, "acme-v2");
  EXPECT_EQ(v.csr_pem, u.csr_pem);
  EXPECT_EQ(v.cert_serial, "0a");
  EXPECT_EQ(v.canary_results, u.canary_results);
  EXPECT_EQ(v.started_at, T(7));
  EXPECT_EQ(v.cutover_at, T(8));
  EXPECT_EQ(v.grace_until, T(9));
  EXPECT_EQ(v.finished_at, T(10));
  EXPECT_EQ(v.updated_at, T(10));
  EXPECT_EQ(v.trigger, "manual");
  EXPECT_EQ(v.created_by, "ak_operator");
  EXPECT_EQ(v.created_at, T(5));

  StatusOr<std::vector<RotationEvent>> events = store_->ListRotationEvents("rot-1");
  ASSERT_TRUE(IsOk(events.status()));
  ASSERT_EQ(events->size(), 3u);
  EXPECT_EQ((*events)[0].seq, 1);
  EXPECT_EQ((*events)[0].event, "scheduled");
  EXPECT_EQ((*events)[1].seq, 2);
  EXPECT_EQ((*events)[1].event, "approved");
  EXPECT_EQ((*events)[1].detail, "detail of approved");
  EXPECT_EQ((*events)[1].actor, "ak_operator");
  EXPECT_EQ((*events)[1].at, T(6));
  EXPECT_EQ((*events)[2].seq, 3);
  EXPECT_TRUE(store_->ListRotationEvents("nope")->empty());
}

TEST_P(StoreConformanceTest, AtMostOneOpenRotationPerTenant) {
  CreateTenant("acme");
  CreateTenant("beta");
  ASSERT_TRUE(IsOk(store_->InsertRotation(MakeRotation("rot-1", "acme", T(1)), MakeEvent("rot-1", "scheduled"))));
  EXPECT_TRUE(HasCode(store_->InsertRotation(MakeRotation("rot-2", "acme", T(2)), MakeEvent("rot-2", "scheduled")),
                      StatusCode::kAlreadyExists));
  EXPECT_TRUE(HasCode(store_->InsertRotation(MakeRotation("rot-1", "beta", T(2)), MakeEvent("rot-1", "scheduled")),
                      StatusCode::kAlreadyExists));  // duplicate id
  EXPECT_TRUE(HasCode(store_->InsertRotation(MakeRotation("rot-3", "nobody"), MakeEvent("rot-3", "scheduled")),
                      StatusCode::kNotFound));
  RotationRecord bad = MakeRotation("rot-4", "beta");
  bad.state = "exploded";
  EXPECT_TRUE(HasCode(store_->InsertRotation(bad, MakeEvent("rot-4", "scheduled")), StatusCode::kInvalidArgument));
  ASSERT_TRUE(IsOk(store_->InsertRotation(MakeRotation("rot-5", "beta", T(3)), MakeEvent("rot-5", "scheduled"))));
  // Failed inserts left no rows or events behind.
  EXPECT_TRUE(HasCode(store_->GetRotation("rot-2").status(), StatusCode::kNotFound));
  EXPECT_TRUE(store_->ListRotationEvents("rot-2")->empty());
  EXPECT_EQ(store_->ListOpenRotations()->size(), 2u);

  // Closing the open one makes room for the next.
  RotationRecord r = *store_->GetRotation("rot-1");
  r.state = "completed";
  ASSERT_TRUE(IsOk(store_->UpdateRotation(r, {})));
  ASSERT_TRUE(IsOk(store_->InsertRotation(MakeRotation("rot-2", "acme", T(4)), MakeEvent("rot-2", "scheduled"))));
  // Re-opening the closed one would make two open rotations.
  r = *store_->GetRotation("rot-1");
  r.state = "running";
  EXPECT_TRUE(HasCode(store_->UpdateRotation(r, {}), StatusCode::kAlreadyExists));
  EXPECT_EQ(store_->GetRotation("rot-1")->state, "completed");

  StatusOr<std::vector<RotationRecord>> acme = store_->ListRotations("acme");
  ASSERT_TRUE(IsOk(acme.status()));
  ASSERT_EQ(acme->size(), 2u);
  EXPECT_EQ((*acme)[0].rotation_id, "rot-1");
  EXPECT_EQ((*acme)[1].rotation_id, "rot-2");
  EXPECT_TRUE(HasCode(store_->ListRotations("nobody").status(), StatusCode::kNotFound));
  StatusOr<std::vector<RotationRecord>> open = store_->ListOpenRotations();
  ASSERT_EQ(open->size(), 2u);
  EXPECT_EQ((*open)[0].rotation_id, "rot-5");  // scheduled earliest
  EXPECT_EQ((*open)[1].rotation_id, "rot-2");
}

TEST_P(StoreConformanceTest, UpdateRotationWithStaleVersionIsAbortedAndChangesNothing) {
  CreateTenant("acme");
  ASSERT_TRUE(IsOk(store_->InsertRotation(MakeRotation("rot-1", "acme"), MakeEvent("rot-1", "scheduled"))));
  RotationRecord a = *store_->GetRotation("rot-1");
  RotationRecord b = a;
  a.phase = "prepare";
  a.state = "running";
  ASSERT_TRUE(IsOk(store_->UpdateRotation(a, {MakeEvent("rot-1", "phase_started")})));
  b.state = "cancelled";
  EXPECT_TRUE(HasCode(store_->UpdateRotation(b, {MakeEvent("rot-1", "cancelled")}), StatusCode::kAborted));
  RotationRecord now = *store_->GetRotation("rot-1");
  EXPECT_EQ(now.state, "running");
  EXPECT_EQ(now.version, 2);
  EXPECT_EQ(store_->ListRotationEvents("rot-1")->size(), 2u);
  RotationRecord missing = MakeRotation("nope", "acme");
  EXPECT_TRUE(HasCode(store_->UpdateRotation(missing, {}), StatusCode::kNotFound));
}

TEST_P(StoreConformanceTest, SwapActiveKeyCutsOverAndRollsBackAtomically) {
  CreateTenant("acme");
  CreateTenant("beta");
  ASSERT_TRUE(IsOk(store_->InsertKey(MakeKey("acme", 2, "pending", T(1)))));
  ASSERT_TRUE(IsOk(store_->InsertRotation(MakeRotation("rot-1", "acme"), MakeEvent("rot-1", "scheduled"))));
  RotationRecord r = *store_->GetRotation("rot-1");
  r.state = "running";
  r.phase = "validate";
  r.cutover_at = T(20);

  KeySwap cutover{"acme", "acme-v1", "retiring", "acme-v2", "pending", T(20)};
  // Refusals change nothing: stale rotation version, wrong key state, foreign
  // key, missing key.
  RotationRecord stale = r;
  stale.version = 7;
  EXPECT_TRUE(HasCode(store_->SwapActiveKey(cutover, stale, {}), StatusCode::kAborted));
  KeySwap wrong_state = cutover;
  wrong_state.to_expected_state = "retiring";
  EXPECT_TRUE(HasCode(store_->SwapActiveKey(wrong_state, r, {}), StatusCode::kAborted));
  KeySwap foreign = cutover;
  foreign.to_key_id = "beta-v1";
  foreign.to_expected_state = "active";
  EXPECT_TRUE(HasCode(store_->SwapActiveKey(foreign, r, {}), StatusCode::kFailedPrecondition));
  KeySwap missing = cutover;
  missing.to_key_id = "acme-v9";
  EXPECT_TRUE(HasCode(store_->SwapActiveKey(missing, r, {}), StatusCode::kNotFound));
  EXPECT_EQ(KeyStates(*store_, "acme"), (std::vector<std::string>{"acme-v1=active", "acme-v2=pending"}));
  EXPECT_EQ(KeyStates(*store_, "beta"), (std::vector<std::string>{"beta-v1=active"}));
  EXPECT_EQ(store_->GetRotation("rot-1")->version, 1);

  ASSERT_TRUE(IsOk(store_->SwapActiveKey(cutover, r, {MakeEvent("rot-1", "cutover", T(20))})));
  EXPECT_EQ(KeyStates(*store_, "acme"), (std::vector<std::string>{"acme-v1=retiring", "acme-v2=active"}));
  EXPECT_EQ(store_->GetActiveKey("acme")->key_id, "acme-v2");
  EXPECT_EQ(store_->GetKey("acme-v2")->activated_at, T(20));
  EXPECT_EQ(store_->GetKey("acme-v1")->retired_at, std::nullopt);  // retiring still verifies
  RotationRecord after = *store_->GetRotation("rot-1");
  EXPECT_EQ(after.version, 2);
  EXPECT_EQ(after.phase, "validate");
  EXPECT_EQ(after.cutover_at, T(20));
  EXPECT_EQ(store_->ListRotationEvents("rot-1")->back().event, "cutover");
  // Replaying the same cutover (a crash-resume that lost track) is refused.
  EXPECT_TRUE(HasCode(store_->SwapActiveKey(cutover, after, {}), StatusCode::kAborted));

  after.state = "rolled_back";
  KeySwap rollback{"acme", "acme-v2", "retired", "acme-v1", "retiring", T(30)};
  ASSERT_TRUE(IsOk(store_->SwapActiveKey(rollback, after, {MakeEvent("rot-1", "rolled_back", T(30))})));
  EXPECT_EQ(KeyStates(*store_, "acme"), (std::vector<std::string>{"acme-v1=active", "acme-v2=retired"}));
  EXPECT_EQ(store_->GetKey("acme-v2")->retired_at, T(30));
  EXPECT_EQ(store_->GetKey("acme-v1")->activated_at, T(0));  // first activation kept
  EXPECT_EQ(store_->GetRotation("rot-1")->state, "rolled_back");
  EXPECT_EQ(store_->ListRotationEvents("rot-1")->size(), 3u);
}

TEST_P(StoreConformanceTest, SwapActiveKeyWithoutAnActiveKeyActivatesTheNewOne) {
  CreateTenant("acme");
  ASSERT_TRUE(IsOk(store_->UpdateKeyState("acme-v1", "active", "compromised", T(1))));
  ASSERT_TRUE(IsOk(store_->InsertKey(MakeKey("acme", 2, "pending", T(1)))));
  ASSERT_TRUE(IsOk(store_->InsertRotation(MakeRotation("rot-1", "acme"), MakeEvent("rot-1", "scheduled"))));
  RotationRecord r = *store_->GetRotation("rot-1");
  KeySwap swap{"acme", "", "", "acme-v2", "pending", T(2)};
  ASSERT_TRUE(IsOk(store_->SwapActiveKey(swap, r, {})));
  EXPECT_EQ(KeyStates(*store_, "acme"), (std::vector<std::string>{"acme-v1=compromised", "acme-v2=active"}));
  // A swap may never leave "active" as the old key's state.
  KeySwap bad{"acme", "acme-v2", "active", "acme-v1", "compromised", T(3)};
  r = *store_->GetRotation("rot-1");
  EXPECT_TRUE(HasCode(store_->SwapActiveKey(bad, r, {}), StatusCode::kInvalidArgument));
}

TEST_P(StoreConformanceTest, SupersedeActiveCertificate) {
  CreateTenant("acme");
  ASSERT_TRUE(IsOk(store_->SupersedeActiveCertificate("acme-v1")));  // none: fine
  ASSERT_TRUE(IsOk(store_->InsertCertificate(MakeCert("acme", "acme-v1", "01", T(1)))));
  ASSERT_TRUE(IsOk(store_->SupersedeActiveCertificate("acme-v1")));
  EXPECT_TRUE(HasCode(store_->GetActiveCertificate("acme-v1").status(), StatusCode::kNotFound));
  EXPECT_EQ(store_->GetLatestCertificate("acme-v1")->status, "superseded");
}

TEST_P(StoreConformanceTest, RotationEvidencePacksAndEvidenceKey) {
  CreateTenant("acme");
  ASSERT_TRUE(IsOk(store_->InsertRotation(MakeRotation("rot-1", "acme"), MakeEvent("rot-1", "scheduled"))));
  RotationEvidenceRecord e;
  e.rotation_id = "rot-1";
  e.outcome = "completed";
  e.created_at = T(40);
  e.sha256 = std::string(64, 'c');
  e.pack = {0x00, 0x75, 0x73, 0x74, 0x61, 0x72, 0x00, 0xff};  // binary, with NULs
  EXPECT_TRUE(HasCode(store_->GetRotationEvidence("rot-1", "completed").status(), StatusCode::kNotFound));
  ASSERT_TRUE(IsOk(store_->InsertRotationEvidence(e)));
  EXPECT_TRUE(HasCode(store_->InsertRotationEvidence(e), StatusCode::kAlreadyExists));
  RotationEvidenceRecord other = e;
  other.rotation_id = "rot-nope";
  EXPECT_TRUE(HasCode(store_->InsertRotationEvidence(other), StatusCode::kNotFound));
  RotationEvidenceRecord rolled = e;
  rolled.outcome = "rolled_back";
  rolled.pack = {0x01};
  ASSERT_TRUE(IsOk(store_->InsertRotationEvidence(rolled)));
  StatusOr<RotationEvidenceRecord> got = store_->GetRotationEvidence("rot-1", "completed");
  ASSERT_TRUE(IsOk(got.status()));
  EXPECT_EQ(got->pack, e.pack);
  EXPECT_EQ(got->sha256, e.sha256);
  EXPECT_EQ(got->created_at, T(40));
  EXPECT_EQ(store_->GetRotationEvidence("rot-1", "rolled_back")->pack, rolled.pack);

  EXPECT_TRUE(HasCode(store_->GetEvidenceKey().status(), StatusCode::kNotFound));
  EvidenceKeyRecord k{"software", "software:evidence", "ES256", "-----BEGIN PUBLIC KEY-----\n", std::string(64, 'e'),
                      T(41)};
  ASSERT_TRUE(IsOk(store_->InsertEvidenceKey(k)));
  EXPECT_TRUE(HasCode(store_->InsertEvidenceKey(k), StatusCode::kAlreadyExists));
  StatusOr<EvidenceKeyRecord> key = store_->GetEvidenceKey();
  ASSERT_TRUE(IsOk(key.status()));
  EXPECT_EQ(key->key_uri, "software:evidence");
  EXPECT_EQ(key->fingerprint, k.fingerprint);
  EXPECT_EQ(key->created_at, T(41));
}

}  // namespace concierge::store::conformance

// Incidents, webhooks and re-sign job records (issue 9).
#include "store/store_test_suite_incidents.h"

#endif  // CONCIERGE_STORE_STORE_TEST_SUITE_H_
