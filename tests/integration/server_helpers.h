// Helpers for tests that run the real keyctl binary (ServerProcess) and talk
// to it over HTTP: the bootstrap token, a tenant, signing load from client
// threads, and the whole ledger of a tenant. Header-only. SigningLoad is
// thread-safe; the functions are as thread-safe as the client they are given.
#ifndef CONCIERGE_TESTS_INTEGRATION_SERVER_HELPERS_H_
#define CONCIERGE_TESTS_INTEGRATION_SERVER_HELPERS_H_

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client/http_client.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "testing/test_util.h"

namespace concierge::testing {

// The admin token `keyctl serve` wrote on its first start in `data_dir`.
inline std::string ReadBootstrapToken(const std::string& data_dir) {
  std::string t = ReadFile(data_dir + "/bootstrap-admin.token");
  while (!t.empty() && t.back() == '\n') t.pop_back();
  return t;
}

// Creates tenant `tenant` with an ES256 policy; fails the test otherwise.
inline void CreateEs256Tenant(client::HttpClient& admin, const std::string& tenant) {
  auto r = admin.Post("/api/v1/tenants/" + tenant + "/policy", R"({"algorithm":"ES256"})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->status, 201) << r->body;
}

// Every ledger row of `tenant` through the API, page by page: request_id -> digest.
inline std::map<std::string, std::string> ReadLedgerDigests(client::HttpClient& admin, const std::string& tenant) {
  std::map<std::string, std::string> ledger;
  std::string cursor;
  for (int pages = 0; pages < 10000; ++pages) {
    auto r = admin.Get("/api/v1/tenants/" + tenant + "/ledger?limit=1000" + cursor);
    if (!r.ok() || r->status != 200) {
      ADD_FAILURE() << (r.ok() ? r->body : r.status().ToString());
      break;
    }
    nlohmann::json page = nlohmann::json::parse(r->body);
    for (const auto& e : page["entries"]) ledger[e["request_id"]] = e["digest"];
    if (page["next_cursor"].is_null()) break;
    cursor = "&after=" + std::to_string(page["next_cursor"].get<int64_t>());
  }
  return ledger;
}

// Waits until `done()` holds or `seconds` pass, yielding meanwhile (a bounded
// wait on progress the test itself causes, not a sleep). Returns done().
inline bool WaitUntil(const std::function<bool()>& done, int seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (!done() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  return done();
}

// Client threads that sign digests of unique request ids against a tenant
// until stopped, remembering every signature acknowledged (HTTP 200). A
// thread whose server stops answering HTTP ends (the server was killed).
class SigningLoad {
 public:
  SigningLoad(const std::string& url, const std::string& token, const std::string& tenant, int threads) {
    for (int t = 0; t < threads; ++t) {
      threads_.emplace_back([this, url, token, tenant, t] { Run(url, token, tenant, t); });
    }
  }
  ~SigningLoad() { Stop(); }
  SigningLoad(const SigningLoad&) = delete;
  SigningLoad& operator=(const SigningLoad&) = delete;

  void Stop() {
    stop_ = true;
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  int acked() const { return acked_; }
  int unavailable() const { return unavailable_; }        // HTTP 503
  int other_statuses() const { return other_statuses_; }  // neither 200 nor 503
  int transport_errors() const { return transport_errors_; }
  // request_id -> digest hex of every acknowledged signature.
  std::map<std::string, std::string> acknowledged() const {
    std::lock_guard lock(mu_);
    return acknowledged_;
  }
  // The message of the first 503 answer, and the first unexpected answer.
  std::string first_unavailable_message() const {
    std::lock_guard lock(mu_);
    return first_unavailable_;
  }
  std::string first_other() const {
    std::lock_guard lock(mu_);
    return first_other_;
  }

 private:
  void Run(const std::string& url, const std::string& token, const std::string& tenant, int t) {
    client::HttpClient c(url, token, 10);
    for (int i = 0; !stop_; ++i) {
      const std::string request_id = "c" + std::to_string(t) + "-" + std::to_string(i);
      const std::string digest = crypto::HexEncode(crypto::Sha256(crypto::AsBytes(request_id)));
      auto r = c.Post("/api/v1/tenants/" + tenant + "/sign",
                      nlohmann::json({{"digest", digest}, {"request_id", request_id}}).dump());
      if (!r.ok()) {
        ++transport_errors_;
        return;
      }
      std::lock_guard lock(mu_);
      if (r->status == 200) {
        acknowledged_[request_id] = digest;
        ++acked_;
      } else if (r->status == 503) {
        if (first_unavailable_.empty()) {
          first_unavailable_ = nlohmann::json::parse(r->body, nullptr, false).value("message", r->body);
        }
        ++unavailable_;
      } else {
        if (first_other_.empty()) first_other_ = std::to_string(r->status) + " " + r->body;
        ++other_statuses_;
      }
    }
  }

  mutable std::mutex mu_;
  std::map<std::string, std::string> acknowledged_;  // guarded by mu_
  std::string first_unavailable_;                    // guarded by mu_
  std::string first_other_;                          // guarded by mu_
  std::atomic<bool> stop_{false};
  std::atomic<int> acked_{0};
  std::atomic<int> unavailable_{0};
  std::atomic<int> other_statuses_{0};
  std::atomic<int> transport_errors_{0};
  std::vector<std::thread> threads_;
};

// How many of `acknowledged` (request_id -> digest) are absent from `ledger`
// or recorded with another digest.
inline size_t MissingFromLedger(const std::map<std::string, std::string>& acknowledged,
                                const std::map<std::string, std::string>& ledger) {
  size_t missing = 0;
  for (const auto& [request_id, digest] : acknowledged) {
    auto it = ledger.find(request_id);
    if (it == ledger.end() || it->second != digest) ++missing;
  }
  return missing;
}

}  // namespace concierge::testing

#endif  // CONCIERGE_TESTS_INTEGRATION_SERVER_HELPERS_H_
