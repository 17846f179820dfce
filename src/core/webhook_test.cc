// Webhook signatures (checked independently with `openssl dgst -hmac`), secret
// sealing, backoff and URL rules. Delivery over real HTTP is exercised by
// tests/integration/incident_api_test.cc.
#include "core/webhook.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "testing/test_util.h"

namespace concierge::core {
namespace {

using json = nlohmann::json;

SecretBytes Secret(std::string_view s) { return SecretBytes::FromString(s, SecretAccess::Grant()); }

TEST(WebhookSignatureTest, MatchesOpensslHmacAndVerifies) {
  const std::string secret = "whsec_0123456789abcdef0123456789abcdef";
  WebhookEventRecord event = NewWebhookEvent("incident.opened", "acme", {{"incident", {{"title", "it's \"bad\""}}}},
                                             TimePoint(std::chrono::seconds(1'760'000'000)));
  EXPECT_EQ(event.event_id.rfind("evt_", 0), 0u);
  const std::string body = WebhookBody(event);
  json parsed = json::parse(body);
  EXPECT_EQ(parsed["id"], event.event_id);
  EXPECT_EQ(parsed["type"], "incident.opened");
  EXPECT_EQ(parsed["tenant_id"], "acme");
  EXPECT_EQ(parsed["data"]["incident"]["title"], "it's \"bad\"");

  const int64_t t = 1'760'000'123;
  const std::string header = WebhookSignature(Secret(secret), t, body);
  ASSERT_EQ(header.rfind("t=1760000123,v1=", 0), 0u) << header;
  const std::string mac = header.substr(header.find("v1=") + 3);

  // Independent check: openssl computes the same HMAC over "<t>.<body>".
  testing::TempDir dir;
  testing::WriteFile(dir.File("signed.txt"), std::to_string(t) + "." + body);
  auto r = testing::RunCommand("openssl dgst -sha256 -hmac '" + secret + "' -r " + dir.File("signed.txt"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.substr(0, 64), mac) << r.output;

  const TimePoint now = TimePoint(std::chrono::seconds(t + 30));
  EXPECT_TRUE(VerifyWebhookSignature(Secret(secret), header, body, now, std::chrono::seconds(300)).ok());
  EXPECT_EQ(VerifyWebhookSignature(Secret(secret), header, body + " ", now, std::chrono::seconds(300)).code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(VerifyWebhookSignature(Secret("other-secret-123456"), header, body, now, std::chrono::seconds(300)).code(),
            StatusCode::kPermissionDenied);
  // A replay long after the timestamp is refused even with a valid MAC.
  EXPECT_EQ(VerifyWebhookSignature(Secret(secret), header, body, now + std::chrono::hours(1),
                                   std::chrono::seconds(300))
                .code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(VerifyWebhookSignature(Secret(secret), "v1=abc", body, now, std::chrono::seconds(300)).code(),
            StatusCode::kInvalidArgument);
}

TEST(WebhookSecretBoxTest, SealsBoundToTheWebhookAndKey) {
  EXPECT_FALSE(WebhookSecretBox::Create(SecretBytes(16)).ok());
  auto box = WebhookSecretBox::Create(crypto::RandomSecret(32));
  ASSERT_TRUE(box.ok());
  auto sealed = box->Seal(Secret("the secret value"), "wh_1");
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(sealed->find("the secret"), std::string::npos);
  auto opened = box->Open(*sealed, "wh_1");
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(opened->RevealString(SecretAccess::Grant()), "the secret value");
  // Moved to another webhook's row, or opened with another key: refused.
  EXPECT_EQ(box->Open(*sealed, "wh_2").status().code(), StatusCode::kDataLoss);
  auto other = WebhookSecretBox::Create(crypto::RandomSecret(32));
  EXPECT_EQ(other->Open(*sealed, "wh_1").status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(box->Open("not base64!", "wh_1").status().code(), StatusCode::kDataLoss);
}

TEST(WebhookBackoffTest, DoublesUpToTheCap) {
  WebhookOptions o;
  o.initial_backoff = std::chrono::seconds(5);
  o.max_backoff = std::chrono::seconds(60);
  EXPECT_EQ(WebhookBackoff(1, o).count(), 5);
  EXPECT_EQ(WebhookBackoff(2, o).count(), 10);
  EXPECT_EQ(WebhookBackoff(3, o).count(), 20);
  EXPECT_EQ(WebhookBackoff(4, o).count(), 40);
  EXPECT_EQ(WebhookBackoff(5, o).count(), 60);
  EXPECT_EQ(WebhookBackoff(1000, o).count(), 60);
}

TEST(WebhookUrlTest, HttpsOnlyUnlessAllowedAndWellFormed) {
  EXPECT_TRUE(ValidateWebhookUrl("https://hooks.example.com/concierge?team=sec", false).ok());
  EXPECT_TRUE(ValidateWebhookUrl("https://[2001:db8::1]:8443/x", false).ok());
  EXPECT_TRUE(ValidateWebhookUrl("http://127.0.0.1:9000/hook", true).ok());
  for (const char* bad : {"http://127.0.0.1:9000/hook", "ftp://x", "https://", "https://user:pw@host/",
                          "https://host:99999/", "https://host:/", "https://host/a b", "https://host/#frag",
                          "hooks.example.com"}) {
    Status st = ValidateWebhookUrl(bad, false);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(st.details().at("field"), "url");
  }
}

}  // namespace
}  // namespace concierge::core
