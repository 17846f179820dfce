// Mass re-sign throughput beside the backend's raw signing rate, and the p99 of
// interactive signing over HTTP while a job runs (PERFORMANCE.md: re-sign at
// >= 0.5x the raw rate while interactive signing keeps its p99).
//
// In one process: a real App (SQLite, software keystore, HTTP on loopback),
// N ledger entries seeded for the tenant's key, then
//   1. raw SignDigest rate on the new key, one thread (the job signs on one);
//   2. interactive capacity (C closed-loop clients), then a baseline paced at a
//      share of it (default 30%), no job;
//   3. job A alone (key v1 -> v2): re-signs per second, ratio to (1);
//   4. job B (v2 -> v3, re-signing job A's output) with the same paced
//      interactive load running throughout: its rate and the p50/p99;
//   5. the paced baseline again: "without" is the mean of (2) and (5), since
//      the background load of a shared machine drifts within a run.
// The rotations are the TEST STAND-IN (tests/testing/standin_rotator.h).
//
// Usage: resign_bench [--entries N] [--clients C] [--seconds S] [--load-share F]
//                     [--batch-size B] [--rate R]   (resign_batch_size / resign_rate_per_backend)
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "client/http_client.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "server/app.h"
#include "testing/standin_rotator.h"

namespace concierge {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Load {
  double rps = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  int64_t errors = 0;
};

// Signing clients until `stop` turns true: closed loop when `per_client_rate`
// is 0, else each client paced at that many requests per second.
Load RunLoad(const std::string& url, const std::string& token, int clients, const std::atomic<bool>& stop,
             double per_client_rate = 0) {
  std::vector<std::vector<double>> lat(static_cast<size_t>(clients));
  std::atomic<int64_t> errors{0};
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      client::HttpClient http(url, token, 10);
      const std::string body =
          json({{"digest", crypto::Sha256Hex(crypto::AsBytes("client-" + std::to_string(c)))}}).dump();
      const auto interval = per_client_rate > 0 ? std::chrono::duration<double>(1.0 / per_client_rate)
                                                : std::chrono::duration<double>(0);
      auto next = Clock::now();
      while (!stop) {
        if (per_client_rate > 0) {
          std::this_thread::sleep_until(next);
          next += std::chrono::duration_cast<Clock::duration>(interval);
        }
        const auto t0 = Clock::now();
        auto r = http.Post("/api/v1/tenants/bench-tenant/sign", body);
        const auto t1 = Clock::now();
        if (!r.ok() || r->status != 200) {
          ++errors;
          continue;
        }
        lat[static_cast<size_t>(c)].push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      }
    });
  }
  for (auto& t : threads) t.join();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  Load l;
  l.errors = errors;
  if (!all.empty()) {
    l.rps = static_cast<double>(all.size()) / secs;
    l.p50_ms = all[all.size() / 2];
    l.p99_ms = all[std::min(all.size() - 1, all.size() * 99 / 100)];
  }
  return l;
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "resign_bench: %s\n", what.c_str());
  std::exit(1);
}

json Must(StatusOr<client::HttpResult> r, int want) {
  if (!r.ok()) Die(r.status().ToString());
  if (r->status != want) Die("HTTP " + std::to_string(r->status) + ": " + r->body);
  return json::parse(r->body);
}

int Main(int argc, char** argv) {
  int entries = 100000, clients = 8, seconds = 5;
  double load_share = 0.3;
  int64_t batch_size = 0, rate = -1;  // server defaults unless given
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--load-share") load_share = std::atof(argv[i + 1]);
    if (a == "--entries") entries = std::atoi(argv[i + 1]);
    if (a == "--clients") clients = std::atoi(argv[i + 1]);
    if (a == "--seconds") seconds = std::atoi(argv[i + 1]);
    if (a == "--batch-size") batch_size = std::atoll(argv[i + 1]);
    if (a == "--rate") rate = std::atoll(argv[i + 1]);
  }
  const std::string dir = std::filesystem::temp_directory_path() / ("resign-bench-" + std::to_string(::getpid()));
  server::ServerConfig config;
  config.listen = "127.0.0.1:0";
  config.data_dir = dir;
  config.io_threads = 2;
  config.log_level = "error";
  if (batch_size > 0) config.incident.resign_batch_size = batch_size;
  if (rate >= 0) config.incident.resign_rate_per_backend = rate;
  auto app_or = server::App::Create(std::move(config));
  if (!app_or.ok()) Die(app_or.status().ToString());
  auto app = *std::move(app_or);
  app->Start();
  std::ifstream token_file(app->bootstrap_token_path());
  std::string token((std::istreambuf_iterator<char>(token_file)), std::istreambuf_iterator<char>());
  while (!token.empty() && token.back() == '\n') token.pop_back();
  client::HttpClient admin(app->url(), token, 60);
  json created = Must(admin.Post("/api/v1/tenants/bench-tenant/policy", R"({"algorithm":"ES256"})"), 201);
  server::AppServices s = app->services();
  testing::TestStandInRotator rotator(*s.store, *s.backends, s.certs, RealClock());
  // The stand-in writes the store directly; a policy change refreshes the
  // server's cached active key, as the real rotation engine's cutover does.
  int patch = 0;
  auto rotate = [&] {
    auto id = rotator.RotateNow("bench-tenant", "bench");
    if (!id.ok()) Die(id.status().ToString());
    Must(admin.Request("PATCH", "/api/v1/tenants/bench-tenant/policy",
                       json({{"canary_count", 11 + patch++}}).dump()),
         200);
    return *id;
  };

  std::fprintf(stderr, "[resign-bench] seeding %d ledger entries\n", entries);
  const std::string v1 = created["key"]["key_id"];
  for (int b = 0; b < entries; b += 10000) {
    std::vector<LedgerEntry> batch;
    for (int i = b; i < std::min(entries, b + 10000); ++i) {
      LedgerEntry e;
      e.tenant_id = "bench-tenant";
      e.key_id = v1;
      e.key_version = 1;
      e.algorithm = "ES256";
      e.asset_id = "asset-" + std::to_string(i);
      e.digest_hex = crypto::Sha256Hex(crypto::AsBytes(e.asset_id));
      e.request_id = "seed";
      e.api_key_id = "seed";
      e.client_address = "127.0.0.1";
      e.policy_hash = std::string(64, 'p');
      e.signed_at = RealClock().Now();
      batch.push_back(std::move(e));
    }
    if (!s.ledger->AppendBatch(batch).ok()) Die("seeding failed");
  }
  const std::string v2 = rotate();

  std::fprintf(stderr, "[resign-bench] raw SignDigest on the new key, 1 thread, %ds\n", seconds);
  KeyRecord k2 = *s.store->GetKey(v2);
  KeyBackend* backend = s.backends->Find(k2.provider);
  const Bytes digest(32, 7);
  int64_t raw_n = 0;
  const auto raw_start = Clock::now();
  while (Clock::now() - raw_start < std::chrono::seconds(seconds)) {
    if (!backend->SignDigest(k2.key_uri, Algorithm::kES256, digest).ok()) Die("raw sign failed");
    ++raw_n;
  }
  const double raw_rate = static_cast<double>(raw_n) / std::chrono::duration<double>(Clock::now() - raw_start).count();

  std::atomic<bool> stop{false};
  auto timed_load = [&](double per_client_rate) {
    stop = false;
    std::thread timer([&] {
      std::this_thread::sleep_for(std::chrono::seconds(seconds));
      stop = true;
    });
    Load l = RunLoad(app->url(), token, clients, stop, per_client_rate);
    timer.join();
    return l;
  };
  std::fprintf(stderr, "[resign-bench] interactive capacity: %d closed-loop clients, %ds\n", clients, seconds);
  Load capacity = timed_load(0);
  // The interactive load during the job is paced at a share of capacity: a
  // saturated closed loop leaves no CPU for anything, job or not.
  const double paced_total = capacity.rps * load_share;
  std::fprintf(stderr, "[resign-bench] interactive baseline paced at %.0f req/s, %ds\n", paced_total, seconds);
  Load base = timed_load(paced_total / clients);

  auto run_job = [&](const std::string& old_key) {
    const auto t0 = Clock::now();
    json job = Must(admin.Post("/api/v1/tenants/bench-tenant/resign-jobs",
                               json({{"compromised_key_id", old_key}}).dump()),
                    202);
    for (;;) {
      json j = Must(admin.Get("/api/v1/jobs/" + job["job_id"].get<std::string>()), 200);
      if (j["state"] == "completed") {
        return std::make_pair(j["done"].get<int64_t>(), std::chrono::duration<double>(Clock::now() - t0).count());
      }
      if (j["state"] == "failed" || j["state"] == "cancelled") Die("job " + j.dump());
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  };

  std::fprintf(stderr, "[resign-bench] job A alone (%d entries)\n", entries);
  auto [a_n, a_secs] = run_job(v1);
  rotate();
  std::fprintf(stderr, "[resign-bench] job B with %d interactive clients running\n", clients);
  stop = false;
  Load during;
  std::thread load([&] { during = RunLoad(app->url(), token, clients, stop, paced_total / clients); });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // load reaches steady state first
  auto [b_n, b_secs] = run_job(v2);
  stop = true;
  load.join();
  // The baseline again after the job: on a shared machine the background load
  // drifts within a run, so "without" is the mean of before and after.
  std::fprintf(stderr, "[resign-bench] interactive baseline again, after the job, %ds\n", seconds);
  Load base_after = timed_load(paced_total / clients);
  base.rps = (base.rps + base_after.rps) / 2;
  base.p50_ms = (base.p50_ms + base_after.p50_ms) / 2;
  base.p99_ms = (base.p99_ms + base_after.p99_ms) / 2;
  base.errors += base_after.errors;
  app->Stop();
  std::filesystem::remove_all(dir);

  const double a_rate = static_cast<double>(a_n) / a_secs;
  const double b_rate = static_cast<double>(b_n) / b_secs;
  std::printf("\n%-58s %12s %10s %6s\n", "mass re-sign (ES256, software backend)", "value", "baseline", "ratio");
  std::printf("%-58s %12.0f %10s %6s\n", "raw SignDigest, 1 thread (signatures/s)", raw_rate, "-", "-");
  std::printf("%-58s %12.0f %10.0f %6.2f\n", "job alone: re-signed entries/s vs raw", a_rate, raw_rate, a_rate / raw_rate);
  std::printf("%-58s %12.0f %10.0f %6.2f\n", "job under interactive load: entries/s vs raw", b_rate, raw_rate,
              b_rate / raw_rate);
  std::printf("%-58s %12.0f %10s %6s\n", "interactive capacity, closed loop (req/s)", capacity.rps, "-", "-");
  std::printf("%-58s %12.0f %10.0f %6.2f\n", "interactive req/s (paced): during job vs without", during.rps, base.rps,
              base.rps > 0 ? during.rps / base.rps : 0.0);
  std::printf("%-58s %12.2f %10.2f %6.2f\n", "interactive p50 ms: during job vs without", during.p50_ms, base.p50_ms,
              base.p50_ms > 0 ? during.p50_ms / base.p50_ms : 0.0);
  std::printf("%-58s %12.2f %10.2f %6.2f\n", "interactive p99 ms: during job vs without", during.p99_ms, base.p99_ms,
              base.p99_ms > 0 ? during.p99_ms / base.p99_ms : 0.0);
  std::printf("%-58s %12lld %10lld\n", "interactive errors: during job / without", static_cast<long long>(during.errors),
              static_cast<long long>(base.errors));
  std::printf("\n%d entries per job; interactive: %d HTTP clients paced at %.0f%% of capacity; 2 io threads;\n"
              "job A %.2f s, job B %.2f s. Latency is measured from each request's send time.\n",
              entries, clients, load_share * 100, a_secs, b_secs);
  std::printf("target (PERFORMANCE.md): re-sign >= 0.5x raw while interactive p99 holds.\n");
  return 0;
}

}  // namespace
}  // namespace concierge

int main(int argc, char** argv) { return concierge::Main(argc, argv); }
