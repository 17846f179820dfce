#include "core/auth.h"

#include <gtest/gtest.h>

#include "store/sqlite/sqlite_store.h"
#include "testing/test_util.h"

namespace concierge::core {
namespace {

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = store::SqliteStore::Open(dir_.File("db.sqlite"));
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = *std::move(s);
    ASSERT_TRUE(store_->Migrate().ok());
    auth_ = std::make_unique<Authenticator>(*store_, clock_);
  }

  std::string Token(Role role, const std::string& tenant = "") {
    auto k = auth_->CreateApiKey(role, tenant, "test", "tester");
    EXPECT_TRUE(k.ok()) << k.status().ToString();
    return k.ok() ? std::string(k->token.RevealString(SecretAccess::Grant())) : std::string();
  }

  testing::TempDir dir_;
  FakeClock clock_{TimePoint(std::chrono::seconds(1'800'000'000))};
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<Authenticator> auth_;
};

TEST_F(AuthTest, TokenAuthenticatesAndSecretIsNotStored) {
  std::string token = Token(Role::kSigner);
  auto p = auth_->Authenticate("Bearer " + token);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->role, Role::kSigner);
  EXPECT_EQ(p->tenant_id, "");
  auto rec = store_->GetApiKey(p->id);
  ASSERT_TRUE(rec.ok());
  std::string secret = token.substr(token.find('.') + 1);
  EXPECT_EQ(rec->secret_hash.find(secret), std::string::npos);
  EXPECT_EQ(rec->secret_hash.size(), 64u);
}

TEST_F(AuthTest, BadTokensAllGetTheSameError) {
  std::string token = Token(Role::kAdmin);
  std::string wrong_secret = token;
  wrong_secret.back() = wrong_secret.back() == '0' ? '1' : '0';
  for (const std::string& header :
       {std::string(""), std::string("Bearer"), "Basic " + token, "Bearer " + wrong_secret,
        std::string("Bearer kc_0000000000000000.") + std::string(64, 'a'), "Bearer " + token + "x"}) {
    auto p = auth_->Authenticate(header);
    ASSERT_FALSE(p.ok()) << header;
    EXPECT_EQ(p.status().code(), StatusCode::kUnauthenticated);
    EXPECT_EQ(p.status().message(), "missing or invalid API key");
  }
}

TEST_F(AuthTest, RevokedKeyIsRejected) {
  std::string token = Token(Role::kOperator);
  auto p = auth_->Authenticate("Bearer " + token);
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(auth_->Revoke(p->id).ok());
  EXPECT_EQ(auth_->Authenticate("Bearer " + token).status().code(), StatusCode::kUnauthenticated);
}

TEST_F(AuthTest, RevocationByAnotherProcessTakesEffectWithinCacheTtl) {
  std::string token = Token(Role::kOperator);
  auto p = auth_->Authenticate("Bearer " + token);
  ASSERT_TRUE(p.ok());
  // Another instance revokes directly in the shared database.
  ASSERT_TRUE(store_->RevokeApiKey(p->id, clock_.Now()).ok());
  clock_.Advance(std::chrono::seconds(29));
  EXPECT_TRUE(auth_->Authenticate("Bearer " + token).ok());  // still cached
  clock_.Advance(std::chrono::seconds(2));
  EXPECT_EQ(auth_->Authenticate("Bearer " + token).status().code(), StatusCode::kUnauthenticated);
}

TEST_F(AuthTest, RoleMatrix) {
  struct Row {
    Role role;
    bool read, write, sign, verify, manage, audit_read, audit_checkpoint;
  };
  // The auditor reads the audit log and nothing else.
  for (const Row& r : {Row{Role::kAdmin, true, true, true, true, true, true, true},
                       Row{Role::kSecurityOfficer, true, true, false, true, false, true, true},
                       Row{Role::kOperator, true, true, false, true, false, true, false},
                       Row{Role::kSigner, true, false, true, true, false, true, false},
                       Row{Role::kAuditor, false, false, false, false, false, true, true}}) {
    Principal p{"id", r.role, ""};
    EXPECT_EQ(auth_->Authorize(p, Permission::kAuditRead, "t-1").ok(), r.audit_read) << RoleName(r.role);
    EXPECT_EQ(auth_->Authorize(p, Permission::kAuditCheckpoint, "").ok(), r.audit_checkpoint) << RoleName(r.role);
    EXPECT_EQ(auth_->Authorize(p, Permission::kCaManage, "").ok(), r.role == Role::kAdmin) << RoleName(r.role);
    EXPECT_EQ(auth_->Authorize(p, Permission::kTenantRead, "t-1").ok(), r.read) << RoleName(r.role);
    EXPECT_EQ(auth_->Authorize(p, Permission::kPolicyWrite, "t-1").ok(), r.write) << RoleName(r.role);
    EXPECT_EQ(auth_->Authorize(p, Permission::kSign, "t-1").ok(), r.sign) << RoleName(r.role);
    EXPECT_EQ(auth_->Authorize(p, Permission::kVerify, "t-1").ok(), r.verify) << RoleName(r.role);
    EXPECT_EQ(auth_->Authorize(p, Permission::kApiKeyManage, "").ok(), r.manage) << RoleName(r.role);
  }
}

TEST_F(AuthTest, RotationPermissions) {
  struct Row {
    Role role;
    bool rotate, approve, key_manage;
  };
  for (const Row& r : {Row{Role::kAdmin, true, true, true}, Row{Role::kSecurityOfficer, true, true, true},
                       Row{Role::kOperator, true, false, false}, Row{Role::kSigner, false, false, false},
                       Row{Role::kAuditor, false, false, false}}) {
    Principal p{"id", r.role, ""};
    EXPECT_EQ(auth_->Authorize(p, Permission::kRotationManage, "t-1").ok(), r.rotate) << RoleName(r.role);
    EXPECT_EQ(auth_->Authorize(p, Permission::kRotationApprove, "t-1").ok(), r.approve) << RoleName(r.role);
    EXPECT_EQ(auth_->Authorize(p, Permission::kKeyManage, "t-1").ok(), r.key_manage) << RoleName(r.role);
  }
  EXPECT_EQ(PermissionName(Permission::kRotationApprove), "rotation:approve");
}

TEST_F(AuthTest, TenantScope) {
  Principal scoped{"id", Role::kAdmin, "acme-news"};
  EXPECT_TRUE(auth_->Authorize(scoped, Permission::kSign, "acme-news").ok());
  Status other = auth_->Authorize(scoped, Permission::kSign, "other-co");
  EXPECT_EQ(other.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(other.message().find("other-co"), std::string::npos);
  EXPECT_EQ(auth_->Authorize(scoped, Permission::kApiKeyManage, "").code(), StatusCode::kPermissionDenied);
}

TEST_F(AuthTest, ScopedKeyNeedsAnExistingTenant) {
  auto k = auth_->CreateApiKey(Role::kSigner, "no-such-tenant", "x", "tester");
  ASSERT_FALSE(k.ok());
  EXPECT_EQ(k.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(auth_->CreateApiKey(Role::kSigner, "Bad_Tenant", "x", "tester").status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(AuthTest, ParseTokenRejectsMalformed) {
  std::string id, secret;
  EXPECT_TRUE(ParseToken("kc_0123456789abcdef." + std::string(64, 'f'), &id, &secret));
  EXPECT_EQ(id, "0123456789abcdef");
  EXPECT_FALSE(ParseToken("kc_0123456789ABCDEF." + std::string(64, 'f'), &id, &secret));
  EXPECT_FALSE(ParseToken("xx_0123456789abcdef." + std::string(64, 'f'), &id, &secret));
  EXPECT_FALSE(ParseToken("kc_0123456789abcdef-" + std::string(64, 'f'), &id, &secret));
}

}  // namespace
}  // namespace concierge::core
