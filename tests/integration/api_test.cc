// The REST API over real loopback HTTP, against a real App (SQLite store,
// encrypted software keystore) in a temp data dir. Signatures are checked with
// the openssl command line, not only with our own code.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <filesystem>

#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "integration/api_fixture.h"

namespace concierge {
namespace {

TEST_F(ApiTest, HealthAndReadyNeedNoAuth) {
  auto h = Call("", "GET", "/health");
  EXPECT_EQ(h.status, 200);
  // A single instance (SQLite) always leads: no election.
  EXPECT_TRUE(json::parse(h.body)["leader"].get<bool>()) << h.body;
  auto r = Call("", "GET", "/ready");
  EXPECT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  EXPECT_TRUE(j["ready"].get<bool>());
  EXPECT_TRUE(j["components"]["database"]["ok"].get<bool>());
  EXPECT_TRUE(j["components"]["backend:software"]["ok"].get<bool>());
  // Readiness is proven by a real signature with each backend's probe key.
  EXPECT_NE(j["components"]["backend:software"]["detail"].get<std::string>().find("probe signature verified"),
            std::string::npos)
      << r.body;
  // The probe key is created once and reused.
  std::string state = testing::ReadFile(dir_.File("data") + "/health-probes.json");
  EXPECT_EQ(Call("", "GET", "/ready").status, 200);
  EXPECT_EQ(testing::ReadFile(dir_.File("data") + "/health-probes.json"), state);
}

TEST_F(ApiTest, BootstrapTokenIsPrivateAndAdmin) {
  struct stat st {};
  ASSERT_EQ(::stat(app_->bootstrap_token_path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  auto r = Call(admin_token_, "GET", "/api/v1/whoami");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["role"], "admin");
}

// Signs a digest through the API for every algorithm and checks the signature
// with the openssl CLI and with the verify endpoint.
TEST_F(ApiTest, SignVerifiesWithOpensslForEveryAlgorithm) {
  const std::string data = "C2PA claim bytes for the walkthrough\n";
  testing::WriteFile(dir_.File("data.bin"), data);
  for (const std::string alg : {"ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "Ed25519"}) {
    SCOPED_TRACE(alg);
    std::string tenant = "tenant-" + std::string(1, static_cast<char>(std::tolower(alg[0]))) +
                         (alg == "Ed25519" ? "ed" : alg.substr(2));
    CreatePolicy(tenant, alg);
    Algorithm a = *ParseAlgorithm(alg);
    Bytes digest = crypto::DigestFor(a, crypto::AsBytes(data));
    auto r = Admin("POST", "/api/v1/tenants/" + tenant + "/sign", {{"digest", crypto::HexEncode(digest)}});
    ASSERT_EQ(r.status, 200) << r.body;
    json s = json::parse(r.body);
    EXPECT_EQ(s["algorithm"], alg);
    auto sig = crypto::Base64Decode(s["signature"].get<std::string>());
    ASSERT_TRUE(sig.ok());
    testing::WriteFile(dir_.File("sig.bin"), crypto::AsString(*sig));
    testing::WriteFile(dir_.File("digest.bin"), crypto::AsString(digest));
    auto pem = Admin("GET", "/api/v1/tenants/" + tenant + "/public-key");
    ASSERT_EQ(pem.status, 200);
    testing::WriteFile(dir_.File("pub.pem"), pem.body);

    std::string cmd;
    if (alg[0] == 'E' && alg != "Ed25519") {
      cmd = "openssl dgst -" + std::string(DigestName(a)) + " -verify " + dir_.File("pub.pem") + " -signature " +
            dir_.File("sig.bin") + " " + dir_.File("data.bin");
    } else if (alg[0] == 'P') {
      cmd = "openssl dgst -" + std::string(DigestName(a)) + " -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:" +
            std::to_string(DigestSize(a)) + " -verify " + dir_.File("pub.pem") + " -signature " +
            dir_.File("sig.bin") + " " + dir_.File("data.bin");
    } else {
      cmd = "openssl pkeyutl -verify -pubin -inkey " + dir_.File("pub.pem") + " -rawin -in " +
            dir_.File("digest.bin") + " -sigfile " + dir_.File("sig.bin");
    }
    auto v = testing::RunCommand(cmd);
    EXPECT_EQ(v.exit_code, 0) << cmd << "\n" << v.output;
    EXPECT_NE(v.output.find("Verified"), std::string::npos) << v.output;

    auto ok = Admin("POST", "/api/v1/tenants/" + tenant + "/verify",
                    {{"digest", crypto::HexEncode(digest)}, {"signature", s["signature"]}});
    ASSERT_EQ(ok.status, 200) << ok.body;
    EXPECT_TRUE(json::parse(ok.body)["valid"].get<bool>());
    Bytes tampered = *sig;
    tampered[tampered.size() / 2] ^= 0x01;
    auto bad = Admin("POST", "/api/v1/tenants/" + tenant + "/verify",
                     {{"digest", crypto::HexEncode(digest)}, {"signature", crypto::Base64Encode(tampered)}});
    ASSERT_EQ(bad.status, 200) << bad.body;
    EXPECT_FALSE(json::parse(bad.body)["valid"].get<bool>());
  }
}

TEST_F(ApiTest, EcdsaP1363Format) {
  CreatePolicy("acme-news", "ES256");
  Bytes digest = crypto::Sha256(crypto::AsBytes("x"));
  auto r = Admin("POST", "/api/v1/tenants/acme-news/sign", {{"digest", crypto::HexEncode(digest)}, {"format", "p1363"}});
  ASSERT_EQ(r.status, 200) << r.body;
  json s = json::parse(r.body);
  EXPECT_EQ(s["signature_format"], "p1363");
  EXPECT_EQ(crypto::Base64Decode(s["signature"].get<std::string>())->size(), 64u);
  auto v = Admin("POST", "/api/v1/tenants/acme-news/verify",
                 {{"digest", crypto::HexEncode(digest)}, {"signature", s["signature"]}, {"format", "p1363"}});
  EXPECT_TRUE(json::parse(v.body)["valid"].get<bool>()) << v.body;
}

// The single-signature reply is written without a JSON DOM (and the plain
// {"digest"} body read without one): it must be exactly what dumping the
// parsed reply gives (keys in byte order, nlohmann's escapes), with or without
// an asset id that needs escaping.
TEST_F(ApiTest, SignReplyIsCanonicalJson) {
  CreatePolicy("acme-news", "ES256");
  const std::string sign = "/api/v1/tenants/acme-news/sign";
  const std::string digest = crypto::HexEncode(crypto::Sha256(crypto::AsBytes("canonical")));
  auto plain = Call(admin_token_, "POST", sign, " {\n\"digest\" : \"" + digest + "\"\t} ");
  ASSERT_EQ(plain.status, 200) << plain.body;
  EXPECT_EQ(plain.body, json::parse(plain.body).dump());
  EXPECT_GT(json::parse(plain.body)["ledger_seq"].get<int64_t>(), 0);
  EXPECT_FALSE(json::parse(plain.body).contains("asset_id"));
  const std::string asset = "caf\xc3\xa9 \"q\" \\ \n\x01\x7f/\xe2\x82\xac";
  auto r = Admin("POST", sign, {{"digest", digest}, {"asset_id", asset}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, json::parse(r.body).dump());
  EXPECT_EQ(json::parse(r.body)["asset_id"], asset);
}

TEST_F(ApiTest, BadInputGetsClearErrorsAndServerKeepsServing) {
  CreatePolicy("acme-news", "ES256");
  std::string sign = "/api/v1/tenants/acme-news/sign";
  ExpectError(Call(admin_token_, "POST", sign, "{not json"), 400, "body");
  ExpectError(Call(admin_token_, "POST", sign, "[1,2]"), 400, "body");
  ExpectError(Admin("POST", sign, {{"digest", std::string(62, 'a')}}), 400, "digest");   // 31 bytes
  ExpectError(Admin("POST", sign, {{"digest", std::string(96, 'a')}}), 400, "digest");   // SHA-384 size
  ExpectError(Admin("POST", sign, {{"digest", std::string(63, 'a') + "g"}}), 400, "digest");
  ExpectError(Admin("POST", sign, {{"digest", 42}}), 400, "digest");
  ExpectError(Admin("POST", sign, json::object()), 400, "digest");
  ExpectError(Admin("POST", sign, {{"digest", std::string(64, 'a')}, {"colour", "red"}}), 400, "colour");
  ExpectError(Admin("POST", sign, {{"digest", std::string(64, 'a')}, {"algorithm", "ES384"}}), 400, "algorithm");
  ExpectError(Admin("POST", sign, {{"digest", std::string(64, 'a')}, {"format", "pem"}}), 400, "format");
  ExpectError(Admin("POST", "/api/v1/tenants/no-such-tenant/sign", {{"digest", std::string(64, 'a')}}), 404);
  ExpectError(Call(admin_token_, "POST", sign, "{\"digest\":\"" + std::string(70000, 'a') + "\"}"), 413);
  ExpectError(Call("kc_0000000000000000." + std::string(64, 'a'), "POST", sign, "{}"), 401);
  ExpectError(Call("", "POST", sign, "{}"), 401);
  ExpectError(Admin("GET", sign), 405);
  ExpectError(Admin("GET", "/api/v1/nothing-here"), 404);
  ExpectError(Admin("POST", "/api/v1/tenants/Bad_Id/policy", {{"algorithm", "ES256"}}), 400, "tenant_id");
  ExpectError(Admin("POST", "/api/v1/tenants/acme-news/verify",
                    {{"digest", std::string(64, 'a')}, {"signature", "***"}}),
              400, "signature");
  // Duplicate tenant.
  ExpectError(Admin("POST", "/api/v1/tenants/acme-news/policy", {{"algorithm", "ES256"}}), 409);
  // Provider not configured on this server (no HSM yet).
  ExpectError(Admin("POST", "/api/v1/tenants/hsm-tenant/policy", {{"provider", "aws-kms"}}), 409, "provider");
  // Still serving.
  auto ok = Admin("POST", sign, {{"digest", std::string(64, 'a')}});
  EXPECT_EQ(ok.status, 200) << ok.body;
}

TEST_F(ApiTest, FailedCreateChangesNothing) {
  auto key_files = [&] {
    size_t n = 0;
    std::string keys_dir = dir_.File("data") + "/keystore/keys";
    if (std::filesystem::exists(keys_dir)) {
      for (auto& e : std::filesystem::directory_iterator(keys_dir)) n += e.is_regular_file();
    }
    return n;
  };
  const size_t before = key_files();  // the audit key
  ExpectError(Admin("POST", "/api/v1/tenants/acme-news/policy", {{"algorithm", "ES999"}}), 400, "algorithm");
  ExpectError(Admin("GET", "/api/v1/tenants/acme-news/policy"), 404);
  auto list = Admin("GET", "/api/v1/tenants");
  EXPECT_EQ(json::parse(list.body)["tenants"].size(), 0u);
  // No key file was left behind in the keystore.
  EXPECT_EQ(key_files(), before);
}

TEST_F(ApiTest, AuthMatrix) {
  CreatePolicy("acme-news", "ES256");
  CreatePolicy("other-co", "ES256");
  std::map<std::string, std::string> tokens = {
      {"admin", admin_token_},
      {"operator", NewToken("operator")},
      {"security-officer", NewToken("security-officer")},
      {"signer", NewToken("signer")},
      {"auditor", NewToken("auditor")},
      {"scoped-signer", NewToken("signer", "acme-news")},
      {"scoped-operator", NewToken("operator", "acme-news")},
  };
  std::string digest = std::string(64, 'b');
  struct Endpoint {
    std::string name, method, path, body;
  };
  std::vector<Endpoint> endpoints = {
      {"get-policy", "GET", "/api/v1/tenants/other-co/policy", ""},
      {"update-policy", "PUT", "/api/v1/tenants/other-co/policy", R"({"canary_count": 5})"},
      {"sign", "POST", "/api/v1/tenants/other-co/sign", R"({"digest":")" + digest + R"("})"},
      {"verify", "POST", "/api/v1/tenants/other-co/verify", R"({"digest":")" + digest + R"(","signature":"AAAA"})"},
      {"public-key", "GET", "/api/v1/tenants/other-co/public-key", ""},
      {"keys", "GET", "/api/v1/tenants/other-co/keys", ""},
      {"api-keys", "GET", "/api/v1/api-keys", ""},
      {"create-api-key", "POST", "/api/v1/api-keys", R"({"role":"auditor"})"},
  };
  // Expected status per (principal, endpoint) on the tenant "other-co".
  std::map<std::string, std::vector<int>> expected = {
      //                    get  upd  sign ver  pub  keys akeys create
      {"admin",            {200, 200, 200, 200, 200, 200, 200, 201}},
      {"operator",         {200, 200, 403, 200, 200, 200, 403, 403}},
      {"security-officer", {200, 200, 403, 200, 200, 200, 403, 403}},
      {"signer",           {200, 403, 200, 200, 200, 200, 403, 403}},
      {"auditor",          {403, 403, 403, 403, 403, 403, 403, 403}},  // audit data only
      {"scoped-signer",    {403, 403, 403, 403, 403, 403, 403, 403}},
      {"scoped-operator",  {403, 403, 403, 403, 403, 403, 403, 403}},
  };
  for (const auto& [who, statuses] : expected) {
    for (size_t i = 0; i < endpoints.size(); ++i) {
      const auto& e = endpoints[i];
      auto r = Call(tokens[who], e.method, e.path, e.body);
      EXPECT_EQ(r.status, statuses[i]) << who << " " << e.name << ": " << r.body;
    }
  }
  // Scoped keys work on their own tenant.
  auto own = Call(tokens["scoped-signer"], "POST", "/api/v1/tenants/acme-news/sign", R"({"digest":")" + digest + R"("})");
  EXPECT_EQ(own.status, 200) << own.body;
  auto own_update = Call(tokens["scoped-operator"], "PUT", "/api/v1/tenants/acme-news/policy", R"({"canary_count": 3})");
  EXPECT_EQ(own_update.status, 200) << own_update.body;
  // Listings are filtered to the scope.
  auto listed = Call(tokens["scoped-signer"], "GET", "/api/v1/policies");
  ASSERT_EQ(listed.status, 200);
  ASSERT_EQ(json::parse(listed.body)["policies"].size(), 1u);
  EXPECT_EQ(json::parse(listed.body)["policies"][0]["tenant_id"], "acme-news");
  // Nobody can read another key's secret: listing never includes tokens or hashes.
  auto keys = Admin("GET", "/api/v1/api-keys");
  EXPECT_EQ(keys.body.find("secret"), std::string::npos);
  EXPECT_EQ(keys.body.find(tokens["signer"].substr(20)), std::string::npos);
}

TEST_F(ApiTest, RevokedKeyStopsWorking) {
  std::string token = NewToken("auditor");
  ASSERT_EQ(Call(token, "GET", "/api/v1/whoami").status, 200);
  std::string id = json::parse(Call(token, "GET", "/api/v1/whoami").body)["id"];
  ASSERT_EQ(Admin("DELETE", "/api/v1/api-keys/" + id).status, 200);
  ExpectError(Call(token, "GET", "/api/v1/whoami"), 401);
}

TEST_F(ApiTest, PolicyVersioningAndPause) {
  json created = CreatePolicy("acme-news", "ES256");
  EXPECT_EQ(created["version"], 1);
  std::string hash1 = created["policy_hash"];
  std::string path = "/api/v1/tenants/acme-news/policy";
  auto paused = Admin("PUT", path, {{"sign_enabled", false}});
  ASSERT_EQ(paused.status, 200) << paused.body;
  EXPECT_EQ(json::parse(paused.body)["version"], 2);
  EXPECT_NE(json::parse(paused.body)["policy_hash"], hash1);
  ExpectError(Admin("POST", "/api/v1/tenants/acme-news/sign", {{"digest", std::string(64, 'c')}}), 409);
  // Stale If-Match is refused and changes nothing.
  ExpectError(Call(admin_token_, "PUT", path, R"({"sign_enabled": true})", {{"If-Match", "1"}}), 409);
  EXPECT_EQ(json::parse(Admin("GET", path).body)["version"], 2);
  auto resumed = Call(admin_token_, "PUT", path, R"({"sign_enabled": true})", {{"If-Match", "2"}});
  ASSERT_EQ(resumed.status, 200) << resumed.body;
  EXPECT_EQ(json::parse(resumed.body)["version"], 3);
  EXPECT_EQ(json::parse(resumed.body)["policy_hash"], hash1);  // same content, same hash
  EXPECT_EQ(Admin("POST", "/api/v1/tenants/acme-news/sign", {{"digest", std::string(64, 'c')}}).status, 200);
  // Key-bound fields cannot change in place.
  ExpectError(Admin("PUT", path, {{"algorithm", "ES384"}}), 400, "algorithm");
  auto versions = json::parse(Admin("GET", path + "/versions").body)["versions"];
  ASSERT_EQ(versions.size(), 3u);
  EXPECT_EQ(versions[0]["sign_enabled"], true);
  EXPECT_EQ(versions[1]["sign_enabled"], false);
  auto v2 = Admin("GET", path + "?version=2");
  EXPECT_EQ(json::parse(v2.body)["sign_enabled"], false);
}

TEST_F(ApiTest, DeleteStopsSigningKeepsKeysAndAllowsRecreate) {
  json created = CreatePolicy("acme-news", "ES256");
  std::string key1 = created["key"]["key_id"];
  Bytes digest = crypto::Sha256(crypto::AsBytes("asset"));
  auto sig = Admin("POST", "/api/v1/tenants/acme-news/sign", {{"digest", crypto::HexEncode(digest)}});
  ASSERT_EQ(sig.status, 200);
  ASSERT_EQ(Admin("DELETE", "/api/v1/tenants/acme-news/policy").status, 200);
  ExpectError(Admin("POST", "/api/v1/tenants/acme-news/sign", {{"digest", crypto::HexEncode(digest)}}), 404);
  ExpectError(Admin("DELETE", "/api/v1/tenants/acme-news/policy"), 404);
  json recreated = CreatePolicy("acme-news", "ES384");
  EXPECT_EQ(recreated["version"], 2);
  EXPECT_EQ(recreated["key"]["version"], 2);
  auto keys = json::parse(Admin("GET", "/api/v1/tenants/acme-news/keys").body)["keys"];
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0]["key_id"], key1);
  EXPECT_EQ(keys[0]["state"], "disabled");
  EXPECT_EQ(keys[1]["state"], "active");
  // The old signature still verifies against the old key.
  auto v = Admin("POST", "/api/v1/tenants/acme-news/verify",
                 {{"digest", crypto::HexEncode(digest)}, {"signature", json::parse(sig.body)["signature"]}, {"key_id", key1}});
  ASSERT_EQ(v.status, 200) << v.body;
  EXPECT_TRUE(json::parse(v.body)["valid"].get<bool>());
}

TEST_F(ApiTest, KeysSurviveRestartAndNoPlaintextKeyOnDisk) {
  json created = CreatePolicy("acme-news", "ES256");
  std::string key_id = created["key"]["key_id"];
  std::string pem_before = Admin("GET", "/api/v1/tenants/acme-news/public-key").body;
  RestartServer();
  EXPECT_TRUE(app_->bootstrap_token_path().empty());  // no second bootstrap token
  Bytes digest = crypto::Sha256(crypto::AsBytes("after restart"));
  auto r = Admin("POST", "/api/v1/tenants/acme-news/sign", {{"digest", crypto::HexEncode(digest)}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["key_id"], key_id);
  EXPECT_EQ(Admin("GET", "/api/v1/tenants/acme-news/public-key").body, pem_before);
  for (auto& e : std::filesystem::recursive_directory_iterator(dir_.File("data"))) {
    if (!e.is_regular_file()) continue;
    std::string content = testing::ReadFile(e.path().string());
    EXPECT_EQ(content.find("PRIVATE KEY"), std::string::npos) << e.path();
  }
}

}  // namespace
}  // namespace concierge
