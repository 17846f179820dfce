#include "core/policy.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace concierge::core {
namespace {

using json = nlohmann::json;

Status ParseError(const json& body) {
  auto p = ParsePolicy(body, "acme-news");
  EXPECT_FALSE(p.ok()) << body.dump();
  return p.ok() ? Status() : p.status();
}

std::string FieldOf(const Status& s) {
  auto it = s.details().find("field");
  return it == s.details().end() ? "" : it->second;
}

TEST(PolicyTest, DefaultsFillInAndValidate) {
  auto p = ParsePolicy(json{{"algorithm", "ES256"}, {"key_type", "software"}, {"provider", "software"},
                            {"rotate_every_days", 30}},
                       "acme-news");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->algorithm, Algorithm::kES256);
  EXPECT_EQ(p->rotate_every_days, 30);
  EXPECT_TRUE(p->sign_enabled);
  EXPECT_EQ(p->tenant_id, "acme-news");
}

TEST(PolicyTest, ErrorsNameTheField) {
  EXPECT_EQ(FieldOf(ParseError({{"algorithm", "ES999"}})), "algorithm");
  EXPECT_EQ(FieldOf(ParseError({{"algorithm", 5}})), "algorithm");
  EXPECT_EQ(FieldOf(ParseError({{"rotate_every_days", 0}})), "rotate_every_days");
  EXPECT_EQ(FieldOf(ParseError({{"rotate_every_days", 366}})), "rotate_every_days");
  EXPECT_EQ(FieldOf(ParseError({{"rotate_every_days", "30"}})), "rotate_every_days");
  EXPECT_EQ(FieldOf(ParseError({{"key_type", "cloud"}})), "key_type");
  EXPECT_EQ(FieldOf(ParseError({{"provider", "aws-kms"}, {"key_type", "software"}})), "provider");
  EXPECT_EQ(FieldOf(ParseError({{"provider", "nope"}})), "provider");
  EXPECT_EQ(FieldOf(ParseError({{"rotaton_days", 3}})), "rotaton_days");  // typo is not ignored
  EXPECT_EQ(FieldOf(ParseError({{"sign_enabled", "yes"}})), "sign_enabled");
  EXPECT_EQ(FieldOf(ParseError({{"max_issuance_per_24h", -1}})), "max_issuance_per_24h");
  EXPECT_EQ(FieldOf(ParseError({{"rotate_every_days", 10}, {"rotation_grace_days", 10}})), "rotation_grace_days");
  EXPECT_EQ(FieldOf(ParseError({{"cert_validity_days", 30}, {"rotate_every_days", 90}})), "cert_validity_days");
  EXPECT_EQ(FieldOf(ParseError({{"canary_count", 1001}})), "canary_count");
  EXPECT_EQ(FieldOf(ParseError({{"tenant_id", "other"}})), "tenant_id");
  Status pin = ParseError({{"provider", "pkcs11"}, {"key_uri", "pkcs11:token=t?pin-value=1234"}});
  EXPECT_EQ(FieldOf(pin), "key_uri");
  EXPECT_EQ(pin.message().find("1234"), std::string::npos);
}

TEST(PolicyTest, AssertionListsMustNotOverlap) {
  Status s = ParseError({{"assertions_allow", {"c2pa.actions", "stds.exif"}}, {"assertions_deny", {"stds.exif"}}});
  EXPECT_EQ(FieldOf(s), "assertions_deny");
  EXPECT_NE(s.message().find("stds.exif"), std::string::npos);
  EXPECT_EQ(FieldOf(ParseError({{"assertions_allow", {"bad label!"}}})), "assertions_allow");
}

TEST(PolicyTest, KeyTypeFollowsProviderWhenOmitted) {
  auto p = ParsePolicy(json{{"provider", "pkcs11"}}, "acme-news");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->key_type, "hsm");
}

TEST(PolicyTest, TenantIdRules) {
  EXPECT_TRUE(ValidateTenantId("acme-news").ok());
  EXPECT_TRUE(ValidateTenantId("a1b").ok());
  EXPECT_FALSE(ValidateTenantId("ab").ok());
  EXPECT_FALSE(ValidateTenantId("Acme").ok());
  EXPECT_FALSE(ValidateTenantId("1acme").ok());
  EXPECT_FALSE(ValidateTenantId("acme-").ok());
  EXPECT_FALSE(ValidateTenantId("acme_news").ok());
  EXPECT_FALSE(ValidateTenantId("acme/../x").ok());
  EXPECT_FALSE(ValidateTenantId(std::string(64, 'a')).ok());
}

TEST(PolicyTest, HashIsCanonical) {
  auto a = ParsePolicy(json::parse(R"({"algorithm":"ES256","rotate_every_days":30})"), "acme-news");
  auto b = ParsePolicy(json::parse(R"({"rotate_every_days":30,"algorithm":"es256","canary_count":10})"), "acme-news");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(PolicyHash(*a), PolicyHash(*b));  // key order, case and explicit defaults do not matter
  EXPECT_EQ(PolicyHash(*a).size(), 64u);
  auto c = ParsePolicy(json::parse(R"({"algorithm":"ES256","rotate_every_days":31})"), "acme-news");
  ASSERT_TRUE(c.ok());
  EXPECT_NE(PolicyHash(*a), PolicyHash(*c));
  // The canonical JSON round-trips to the same policy.
  auto d = ParsePolicy(json::parse(CanonicalPolicyJson(*a)), "acme-news");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(PolicyHash(*d), PolicyHash(*a));
}

TEST(PolicyTest, UpdateCannotChangeKeyBoundFields) {
  auto p = ParsePolicy(json{{"algorithm", "ES256"}}, "acme-news");
  ASSERT_TRUE(p.ok());
  auto u = ApplyPolicyUpdate(*p, json{{"algorithm", "ES384"}});
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(FieldOf(u.status()), "algorithm");
  auto v = ApplyPolicyUpdate(*p, json{{"sign_enabled", false}, {"max_issuance_per_24h", 5}});
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_FALSE(v->sign_enabled);
  EXPECT_EQ(v->max_issuance_per_24h, 5);
  EXPECT_EQ(v->algorithm, Algorithm::kES256);
  EXPECT_FALSE(ApplyPolicyUpdate(*p, json{{"rotate_every_days", 0}}).ok());
}

}  // namespace
}  // namespace concierge::core
