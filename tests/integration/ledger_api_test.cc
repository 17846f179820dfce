// Ledger, batch signing and issuance limits over real HTTP.
#include <set>

#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "integration/api_fixture.h"

namespace concierge {
namespace {

class LedgerApiTest : public ApiTest {
 protected:
  LedgerApiTest() { clock_ = &fake_clock_; }

  json Ledger(const std::string& tenant, const std::string& query = "") {
    auto r = Admin("GET", "/api/v1/tenants/" + tenant + "/ledger" + query);
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body);
  }

  HttpResult SignDigest(const std::string& tenant, const Bytes& digest, const std::string& request_id = "") {
    json body = {{"digest", crypto::HexEncode(digest)}};
    if (!request_id.empty()) body["request_id"] = request_id;
    return Admin("POST", "/api/v1/tenants/" + tenant + "/sign", body);
  }

  FakeClock fake_clock_{TimePoint(std::chrono::seconds(1'800'000'000))};
};

TEST_F(LedgerApiTest, EverySignatureIsInTheLedger) {
  json created = CreatePolicy("acme-news", "ES256");
  Bytes digest = crypto::Sha256(crypto::AsBytes("asset-1"));
  auto r = Admin("POST", "/api/v1/tenants/acme-news/sign",
                 {{"digest", crypto::HexEncode(digest)}, {"asset_id", "urn:asset:1"}, {"request_id", "client-req-1"}});
  ASSERT_EQ(r.status, 200) << r.body;
  json s = json::parse(r.body);
  EXPECT_GT(s["ledger_seq"].get<int64_t>(), 0);
  json page = Ledger("acme-news");
  ASSERT_EQ(page["entries"].size(), 1u);
  json e = page["entries"][0];
  EXPECT_EQ(e["seq"], s["ledger_seq"]);
  EXPECT_EQ(e["digest"], crypto::HexEncode(digest));
  EXPECT_EQ(e["asset_id"], "urn:asset:1");
  EXPECT_EQ(e["request_id"], "client-req-1");
  EXPECT_EQ(e["key_id"], created["key"]["key_id"]);
  EXPECT_EQ(e["key_version"], 1);
  EXPECT_EQ(e["algorithm"], "ES256");
  EXPECT_EQ(e["kind"], "digest");
  EXPECT_EQ(e["policy_hash"], created["policy_hash"]);
  EXPECT_EQ(e["client_address"], "127.0.0.1");
  EXPECT_EQ(e["signed_at"], FormatRfc3339(fake_clock_.Now()));
  EXPECT_EQ(e["api_key_id"], json::parse(Admin("GET", "/api/v1/whoami").body)["id"]);
}

TEST_F(LedgerApiTest, BatchSignaturesVerifyWithOpensslAndEachHasARow) {
  CreatePolicy("acme-news", "ES256");
  json items = json::array();
  for (int i = 0; i < 5; ++i) {
    std::string data = "batch asset " + std::to_string(i);
    testing::WriteFile(dir_.File("asset" + std::to_string(i)), data);
    items.push_back({{"digest", crypto::HexEncode(crypto::Sha256(crypto::AsBytes(data)))},
                     {"asset_id", "asset-" + std::to_string(i)}});
  }
  auto r = Admin("POST", "/api/v1/tenants/acme-news/sign/batch", {{"items", items}});
  ASSERT_EQ(r.status, 200) << r.body;
  json out = json::parse(r.body);
  ASSERT_EQ(out["count"], 5);
  testing::WriteFile(dir_.File("pub.pem"), Admin("GET", "/api/v1/tenants/acme-news/public-key").body);
  for (int i = 0; i < 5; ++i) {
    json sig = out["signatures"][i];
    EXPECT_EQ(sig["asset_id"], "asset-" + std::to_string(i));
    testing::WriteFile(dir_.File("sig"), crypto::AsString(*crypto::Base64Decode(sig["signature"].get<std::string>())));
    auto v = testing::RunCommand("openssl dgst -sha256 -verify " + dir_.File("pub.pem") + " -signature " +
                                 dir_.File("sig") + " " + dir_.File("asset" + std::to_string(i)));
    EXPECT_EQ(v.exit_code, 0) << v.output;
  }
  json page = Ledger("acme-news");
  ASSERT_EQ(page["entries"].size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(page["entries"][i]["kind"], "batch");
    EXPECT_EQ(page["entries"][i]["asset_id"], "asset-" + std::to_string(i));
    EXPECT_EQ(page["entries"][i]["seq"], out["signatures"][i]["ledger_seq"]);
  }
  // Plain list of digests works too.
  auto plain = Admin("POST", "/api/v1/tenants/acme-news/sign/batch",
                     {{"digests", {std::string(64, 'a'), std::string(64, 'b')}}});
  ASSERT_EQ(plain.status, 200) << plain.body;
  EXPECT_EQ(json::parse(plain.body)["count"], 2);
}

TEST_F(LedgerApiTest, BatchValidationIsAllOrNothing) {
  CreatePolicy("acme-news", "ES256");
  json digests = json::array();
  for (int i = 0; i < 5; ++i) digests.push_back(std::string(64, 'a'));
  digests[3] = std::string(62, 'a');
  auto r = Admin("POST", "/api/v1/tenants/acme-news/sign/batch", {{"digests", digests}});
  ExpectError(r, 400, "digests[3]");
  digests[3] = "zz";
  ExpectError(Admin("POST", "/api/v1/tenants/acme-news/sign/batch", {{"digests", digests}}), 400, "digests[3]");
  ExpectError(Admin("POST", "/api/v1/tenants/acme-news/sign/batch", {{"digests", json::array()}}), 400, "digests");
  json too_many = json::array();
  for (int i = 0; i < 1001; ++i) too_many.push_back("aa");  // the count is checked first
  ExpectError(Admin("POST", "/api/v1/tenants/acme-news/sign/batch", {{"digests", too_many}}), 400, "digests");
  EXPECT_EQ(Ledger("acme-news")["entries"].size(), 0u);
}

TEST_F(LedgerApiTest, IssuanceCapRefusesAndDoesNotRecordAndSurvivesRestart) {
  CreatePolicy("acme-news", "ES256");
  ASSERT_EQ(Admin("PUT", "/api/v1/tenants/acme-news/policy", {{"max_issuance_per_24h", 3}}).status, 200);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(SignDigest("acme-news", crypto::Sha256(crypto::AsBytes(std::to_string(i)))).status, 200);
  }
  auto refused = SignDigest("acme-news", crypto::Sha256(crypto::AsBytes("4th")), "the-fourth");
  ExpectError(refused, 429);
  EXPECT_EQ(refused.headers["retry-after"], std::to_string(24 * 3600));
  json page = Ledger("acme-news");
  EXPECT_EQ(page["entries"].size(), 3u);
  for (const auto& e : page["entries"]) EXPECT_NE(e["request_id"], "the-fourth");
  // A batch that would cross the cap is refused whole.
  ASSERT_EQ(Admin("PUT", "/api/v1/tenants/acme-news/policy", {{"max_issuance_per_24h", 4}}).status, 200);
  ExpectError(Admin("POST", "/api/v1/tenants/acme-news/sign/batch", {{"digests", {std::string(64, 'a'), std::string(64, 'b')}}}), 429);
  EXPECT_EQ(Ledger("acme-news")["entries"].size(), 3u);
  // The window is rebuilt from the ledger after a restart.
  RestartServer();
  ASSERT_EQ(SignDigest("acme-news", crypto::Sha256(crypto::AsBytes("x"))).status, 200);
  ExpectError(SignDigest("acme-news", crypto::Sha256(crypto::AsBytes("y"))), 429);
  // A day later the window has slid.
  fake_clock_.Advance(std::chrono::hours(24) + std::chrono::minutes(1));
  EXPECT_EQ(SignDigest("acme-news", crypto::Sha256(crypto::AsBytes("z"))).status, 200);
}

TEST_F(LedgerApiTest, RateLimitUsesInjectedClock) {
  CreatePolicy("acme-news", "ES256");
  ASSERT_EQ(Admin("PUT", "/api/v1/tenants/acme-news/policy", {{"rate_limit_per_second", 2}}).status, 200);
  EXPECT_EQ(SignDigest("acme-news", Bytes(32, 1)).status, 200);
  EXPECT_EQ(SignDigest("acme-news", Bytes(32, 2)).status, 200);
  auto limited = SignDigest("acme-news", Bytes(32, 3));
  ExpectError(limited, 429);
  EXPECT_EQ(limited.headers["retry-after"], "1");
  fake_clock_.Advance(std::chrono::milliseconds(500));
  EXPECT_EQ(SignDigest("acme-news", Bytes(32, 4)).status, 200);
}

TEST_F(LedgerApiTest, CursorPagingAndFilters) {
  json created = CreatePolicy("acme-news", "ES256");
  CreatePolicy("other-co", "ES256");
  for (int i = 0; i < 3; ++i) {
    json digests = json::array();
    for (int j = 0; j < 90; ++j) digests.push_back(crypto::HexEncode(Bytes(32, static_cast<uint8_t>(j))));
    ASSERT_EQ(Admin("POST", "/api/v1/tenants/acme-news/sign/batch", {{"digests", digests}}).status, 200);
    fake_clock_.Advance(std::chrono::hours(1));
  }
  ASSERT_EQ(SignDigest("other-co", Bytes(32, 9)).status, 200);
  std::set<int64_t> seen;
  std::string cursor;
  int pages = 0;
  for (;;) {
    json page = Ledger("acme-news", "?limit=100" + cursor);
    ++pages;
    for (const auto& e : page["entries"]) {
      EXPECT_EQ(e["tenant_id"], "acme-news");
      EXPECT_TRUE(seen.insert(e["seq"].get<int64_t>()).second);
    }
    if (page["next_cursor"].is_null()) break;
    cursor = "&after=" + std::to_string(page["next_cursor"].get<int64_t>());
    ASSERT_LT(pages, 10);
  }
  EXPECT_EQ(seen.size(), 270u);
  // Time window: only the second hour's batch.
  TimePoint t0 = fake_clock_.Now() - std::chrono::hours(3);
  std::string window = "?limit=1000&from=" + FormatRfc3339(t0 + std::chrono::hours(1)) +
                       "&to=" + FormatRfc3339(t0 + std::chrono::hours(2));
  EXPECT_EQ(Ledger("acme-news", window)["entries"].size(), 90u);
  std::string key_id = created["key"]["key_id"];
  EXPECT_EQ(Ledger("acme-news", "?limit=1000&key_id=" + key_id)["entries"].size(), 270u);
  ExpectError(Admin("GET", "/api/v1/tenants/acme-news/ledger?limit=0"), 400, "limit");
  ExpectError(Admin("GET", "/api/v1/tenants/acme-news/ledger?from=yesterday"), 400, "from");
  // A signer scoped to another tenant cannot read this ledger.
  std::string other = NewToken("signer", "other-co");
  ExpectError(Call(other, "GET", "/api/v1/tenants/acme-news/ledger"), 403);
}

}  // namespace
}  // namespace concierge
