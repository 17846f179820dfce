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

namespace concierge::store::conformance {

using StoreFactory = std::function<std::unique_ptr<Store>()>;

struct StoreTestParam {
  std::string name;  // test-name suffix, [A-Za-z0-9_] only
  StoreFactory factory;
};

inline std::string StoreTestParamName(const ::testing::TestParamInfo<StoreTestParam>& info) {
  return info.param.name;
}

inline ::testing::AssertionResult IsOk(const Status& s) {
  if (s.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << s.ToString();
}

inline ::testing::AssertionResult HasCode(const Status& s, StatusCode code) {
  if (s.code() == code) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "expected " << StatusCodeName(code) << ", got " << s.ToString();
}

// Whole milliseconds, since stores keep millisecond precision.
inline TimePoint T(int64_t ms) {
  return TimePoint(std::chrono::milliseconds(1'760'000'000'000 + ms));
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

}  // namespace concierge::store::conformance

// Incidents, webhooks and re-sign job records (issue 9).
#include "store/store_test_suite_incidents.h"

#endif  // CONCIERGE_STORE_STORE_TEST_SUITE_H_
