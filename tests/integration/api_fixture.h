// Shared fixture for REST integration tests: a real App (SQLite store, ledger,
// encrypted software keystore) in a temp data dir on a loopback port, driven over
// real HTTP. The clock is injectable so rate limits and windows need no sleeping.
#ifndef CONCIERGE_TESTS_INTEGRATION_API_FIXTURE_H_
#define CONCIERGE_TESTS_INTEGRATION_API_FIXTURE_H_

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <string>

#include "client/http_client.h"
#include "concierge/clock.h"
#include "server/app.h"
#include "testing/test_util.h"

namespace concierge {

using json = nlohmann::json;
using client::HttpClient;
using client::HttpResult;

class ApiTest : public ::testing::Test {
 protected:
  // Tests that need a controlled clock set this before SetUp (constructor).
  Clock* clock_ = &RealClock();

  void SetUp() override { StartServer(); }
  // Hooks for fixtures that need other settings or App options (called on every start).
  virtual void Configure(server::ServerConfig&) {}
  virtual server::AppOptions Options() { return {}; }

  void StartServer() {
    server::ServerConfig config;
    config.listen = "127.0.0.1:0";
    config.data_dir = dir_.File("data");
    config.io_threads = 2;
    config.max_body_bytes = 64 * 1024;
    config.log_level = "error";
    Configure(config);
    auto app = server::App::Create(std::move(config), *clock_, Options());
    ASSERT_TRUE(app.ok()) << app.status().ToString();
    app_ = *std::move(app);
    app_->Start();
    if (admin_token_.empty()) {
      ASSERT_FALSE(app_->bootstrap_token_path().empty());
      admin_token_ = testing::ReadBootstrapToken(dir_.File("data"));
    }
  }

  void RestartServer() {
    app_->Stop();
    app_.reset();
    StartServer();
  }

  HttpResult Call(const std::string& token, const std::string& method, const std::string& path,
                  const std::string& body = "", const std::map<std::string, std::string>& headers = {}) {
    HttpClient c(app_->url(), token);
    auto r = c.Request(method, path, body, headers);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : HttpResult{};
  }
  HttpResult Admin(const std::string& method, const std::string& path, const json& body = nullptr) {
    return Call(admin_token_, method, path, body.is_null() ? "" : body.dump());
  }

  json CreatePolicy(const std::string& tenant, const std::string& alg) {
    auto r = Admin("POST", "/api/v1/tenants/" + tenant + "/policy",
                   {{"algorithm", alg}, {"key_type", "software"}, {"provider", "software"}, {"rotate_every_days", 30}});
    EXPECT_EQ(r.status, 201) << r.body;
    return json::parse(r.body);
  }

  std::string NewToken(const std::string& role, const std::string& tenant = "") {
    json body = {{"role", role}, {"name", "test " + role}};
    if (!tenant.empty()) body["tenant_id"] = tenant;
    auto r = Admin("POST", "/api/v1/api-keys", body);
    EXPECT_EQ(r.status, 201) << r.body;
    return json::parse(r.body)["token"].get<std::string>();
  }

  // Asserts an error response of the documented shape naming `field` if given.
  void ExpectError(const HttpResult& r, int status, const std::string& field = "") {
    EXPECT_EQ(r.status, status) << r.body;
    json j = json::parse(r.body, nullptr, false);
    ASSERT_TRUE(j.is_object()) << r.body;
    EXPECT_TRUE(j["error"].is_string());
    EXPECT_TRUE(j["message"].is_string());
    EXPECT_EQ(j["code"], status);
    EXPECT_TRUE(j["details"].is_object());
    if (!field.empty()) {
      EXPECT_EQ(j["details"].value("field", ""), field) << r.body;
    }
  }

  testing::TempDir dir_;
  std::unique_ptr<server::App> app_;
  std::string admin_token_;
};

}  // namespace concierge

#endif  // CONCIERGE_TESTS_INTEGRATION_API_FIXTURE_H_
