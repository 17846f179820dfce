// The HSM path end to end: a real App whose pkcs11 provider is a SoftHSM2 token
// created in the temp data dir (the `make run` development token), an `hsm`
// policy created over REST, signatures checked with the openssl CLI, and the
// key's protection checked from outside with OpenSC's pkcs11-tool.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "integration/api_fixture.h"
#include "server/config.h"

namespace concierge {
namespace {

constexpr char kSoftHsm[] = "/usr/lib/softhsm/libsofthsm2.so";

class Pkcs11ApiTest : public ApiTest {
 protected:
  void SetUp() override {
    if (::access(kSoftHsm, R_OK) != 0) GTEST_SKIP() << "SoftHSM2 not installed (" << kSoftHsm << ")";
    ApiTest::SetUp();
  }
  std::string DataDir() { return dir_.File("data"); }
  std::string UserPin() {
    std::string pin = testing::ReadFile(DataDir() + "/softhsm/user-pin");
    while (!pin.empty() && pin.back() == '\n') pin.pop_back();
    return pin;
  }

  // Signs `data`'s digest through the API and verifies it with the openssl CLI.
  void SignAndVerifyWithOpenssl(const std::string& tenant, Algorithm alg) {
    const std::string data = "claim bytes signed in the HSM\n";
    Bytes digest = crypto::DigestFor(alg, crypto::AsBytes(data));
    auto r = Admin("POST", "/api/v1/tenants/" + tenant + "/sign", {{"digest", crypto::HexEncode(digest)}});
    ASSERT_EQ(r.status, 200) << r.body;
    auto sig = crypto::Base64Decode(json::parse(r.body)["signature"].get<std::string>());
    ASSERT_TRUE(sig.ok());
    auto pem = Admin("GET", "/api/v1/tenants/" + tenant + "/public-key");
    ASSERT_EQ(pem.status, 200) << pem.body;
    testing::WriteFile(dir_.File("pub.pem"), pem.body);
    testing::WriteFile(dir_.File("data.bin"), data);
    testing::WriteFile(dir_.File("sig.bin"), crypto::AsString(*sig));
    std::string cmd = "openssl dgst -" + std::string(DigestName(alg));
    if (FamilyOf(alg) == KeyFamily::kRsaPss) {
      cmd += " -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:" + std::to_string(DigestSize(alg));
    }
    cmd += " -verify " + dir_.File("pub.pem") + " -signature " + dir_.File("sig.bin") + " " + dir_.File("data.bin");
    auto v = testing::RunCommand(cmd);
    EXPECT_EQ(v.exit_code, 0) << cmd << "\n" << v.output;
    EXPECT_NE(v.output.find("Verified OK"), std::string::npos) << v.output;
  }

  json Keys(const std::string& tenant) {
    auto r = Admin("GET", "/api/v1/tenants/" + tenant + "/keys");
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body)["keys"];
  }
};

TEST_F(Pkcs11ApiTest, HsmPolicySignsAndKeyNeverLeavesTheToken) {
  // /ready shows the HSM backend and what its probe does.
  auto ready = Call("", "GET", "/ready");
  ASSERT_EQ(ready.status, 200) << ready.body;
  json components = json::parse(ready.body)["components"];
  ASSERT_TRUE(components.contains("backend:pkcs11")) << ready.body;
  EXPECT_TRUE(components["backend:pkcs11"]["ok"].get<bool>()) << ready.body;
  EXPECT_NE(components["backend:pkcs11"]["detail"].get<std::string>().find("C_GetSessionInfo"), std::string::npos);

  auto r = Admin("POST", "/api/v1/tenants/hsm-news/policy",
                 {{"algorithm", "ES256"}, {"key_type", "hsm"}, {"provider", "pkcs11"},
                  {"key_uri", "pkcs11:token=keyctl-dev"}, {"rotate_every_days", 30}});
  ASSERT_EQ(r.status, 201) << r.body;
  // key_uri omitted: the development token is the default.
  r = Admin("POST", "/api/v1/tenants/hsm-pss/policy", {{"algorithm", "PS256"}, {"provider", "pkcs11"}});
  ASSERT_EQ(r.status, 201) << r.body;

  SignAndVerifyWithOpenssl("hsm-news", Algorithm::kES256);
  SignAndVerifyWithOpenssl("hsm-pss", Algorithm::kPS256);

  json keys = Keys("hsm-news");
  ASSERT_EQ(keys.size(), 1u);
  std::string uri = keys[0]["key_uri"].get<std::string>();
  EXPECT_TRUE(uri.starts_with("pkcs11:token=keyctl-dev;")) << uri;
  EXPECT_NE(uri.find(";id=%"), std::string::npos) << uri;
  EXPECT_EQ(uri.find("pin-value"), std::string::npos) << uri;
  EXPECT_EQ(keys[0]["provider"], "pkcs11");

  // From outside, with OpenSC: both private keys are sensitive and never extractable.
  std::string cmd = "SOFTHSM2_CONF=" + DataDir() + "/softhsm2.conf pkcs11-tool --module " + kSoftHsm +
                    " --token-label keyctl-dev --login --pin " + UserPin() + " --list-objects --type privkey";
  auto out = testing::RunCommand(cmd);
  ASSERT_EQ(out.exit_code, 0) << out.output;
  size_t objects = 0, protected_keys = 0;
  for (size_t pos = 0; (pos = out.output.find("Private Key Object", pos)) != std::string::npos; ++pos) ++objects;
  for (size_t pos = 0; (pos = out.output.find("Access:", pos)) != std::string::npos; ++pos) {
    std::string line = out.output.substr(pos, out.output.find('\n', pos) - pos);
    if (line.find("sensitive") != std::string::npos && line.find("never extractable") != std::string::npos &&
        line.find(" extractable") == line.find(" never extractable") + 6) {
      ++protected_keys;
    }
  }
  // The two tenant keys, plus the /ready probe key when a readiness check ran
  // first; every one of them must be sensitive and never extractable.
  EXPECT_GE(objects, 2u) << out.output;
  EXPECT_EQ(protected_keys, objects) << out.output;
  EXPECT_NE(out.output.find("hsm-news/v1"), std::string::npos) << out.output;  // label = tenant/version

  // A restart re-opens the token from the stored URI (PIN from the pin-source file).
  RestartServer();
  SignAndVerifyWithOpenssl("hsm-news", Algorithm::kES256);
  ready = Call("", "GET", "/ready");
  EXPECT_EQ(ready.status, 200) << ready.body;
}

TEST_F(Pkcs11ApiTest, HsmErrorsAreClear) {
  auto r = Admin("POST", "/api/v1/tenants/no-token/policy",
                 {{"algorithm", "ES256"}, {"provider", "pkcs11"}, {"key_uri", "pkcs11:token=no-such-token"}});
  EXPECT_EQ(r.status / 100, 4) << r.body;
  EXPECT_NE(r.body.find("no-such-token"), std::string::npos) << r.body;
  r = Admin("POST", "/api/v1/tenants/bad-uri/policy",
            {{"algorithm", "ES256"}, {"provider", "pkcs11"}, {"key_uri", "pkcs11:token=a%zz"}});
  EXPECT_EQ(r.status, 400) << r.body;
  // yubihsm2 is not configured here.
  r = Admin("POST", "/api/v1/tenants/yk/policy", {{"algorithm", "ES256"}, {"provider", "yubihsm2"}});
  EXPECT_EQ(r.status / 100, 4) << r.body;
  // Still serving HSM requests.
  r = Admin("POST", "/api/v1/tenants/ok-co/policy", {{"algorithm", "ES384"}, {"provider", "pkcs11"}});
  ASSERT_EQ(r.status, 201) << r.body;
  SignAndVerifyWithOpenssl("ok-co", Algorithm::kES384);
}

TEST(Pkcs11ConfigTest, KeysFromTomlAndEnvironment) {
  testing::TempDir dir;
  testing::WriteFile(dir.File("c.toml"),
                     "pkcs11_module = \"/opt/vendor/lib/p11.so\"\npkcs11_sessions = 8\n"
                     "pkcs11_allowed_modules = \"/opt/vendor/lib/p11.so, /usr/lib/softhsm/libsofthsm2.so\"\n");
  auto c = server::LoadConfig(dir.File("c.toml"), {{"KEYCTL_PKCS11_PIN", "1234"},
                                                   {"KEYCTL_YUBIHSM2_MODULE", "/usr/lib/yubihsm_pkcs11.so"}});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->pkcs11_module, "/opt/vendor/lib/p11.so");
  EXPECT_EQ(c->pkcs11_sessions, 8);
  EXPECT_EQ(c->yubihsm2_module, "/usr/lib/yubihsm_pkcs11.so");
  ASSERT_TRUE(c->pkcs11_pin.has_value());
  EXPECT_EQ(c->Clone().pkcs11_pin->RevealString(SecretAccess::Grant()), "1234");
  auto env = server::LoadConfig("", {{"KEYCTL_PKCS11_MODULE", "none"}});
  ASSERT_TRUE(env.ok());
  EXPECT_EQ(env->pkcs11_module, "none");
  auto relative = server::LoadConfig("", {{"KEYCTL_PKCS11_MODULE", "libsofthsm2.so"}});
  EXPECT_EQ(relative.status().code(), StatusCode::kInvalidArgument);
  testing::WriteFile(dir.File("pin.toml"), "pkcs11_pin = \"1234\"\n");
  auto pin_in_toml = server::LoadConfig(dir.File("pin.toml"), {});
  EXPECT_FALSE(pin_in_toml.ok());
  EXPECT_EQ(pin_in_toml.status().ToString().find("1234"), std::string::npos);
}

TEST(Pkcs11ConfigTest, ModuleNoneDisablesTheProvider) {
  testing::TempDir dir;
  server::ServerConfig config;
  config.listen = "127.0.0.1:0";
  config.data_dir = dir.File("data");
  config.log_level = "error";
  config.pkcs11_module = "none";
  auto app = server::App::Create(std::move(config));
  ASSERT_TRUE(app.ok()) << app.status().ToString();
  EXPECT_FALSE(std::filesystem::exists(dir.File("data") + "/softhsm"));
}

TEST(Pkcs11ConfigTest, MissingConfiguredModuleFailsStartNamingIt) {
  testing::TempDir dir;
  server::ServerConfig config;
  config.listen = "127.0.0.1:0";
  config.data_dir = dir.File("data");
  config.log_level = "error";
  config.pkcs11_module = "/opt/nowhere/libp11.so";
  auto app = server::App::Create(std::move(config));
  ASSERT_FALSE(app.ok());
  EXPECT_NE(app.status().message().find("/opt/nowhere/libp11.so"), std::string::npos) << app.status().ToString();
}

}  // namespace
}  // namespace concierge
