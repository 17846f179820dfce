// PKCS#11 signing throughput: raw multi-threaded C_Sign on one SoftHSM2 key
// (each thread with its own logged-in session, no locking, no conversion) versus
// Pkcs11Backend::SignDigest (session pool, key cache, retry logic, DER
// conversion) on the same key with the same thread count, measured back to back
// in the same run. Target (docs/PERFORMANCE.md): backend >= 0.7x raw. Also raw
// C_Sign on an in-memory session copy of the key, which is what the backend
// signs with on SoftHSM2, and process CPU per op for each.
//
// Usage: pkcs11_bench [--seconds S] [--threads 1,2] [--alg ES256|PS256|Ed25519]
//                     [--data-dir DIR]  use the dev token of a keyctl data dir (the
//                                       same token a running server signs with)
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "backends/pkcs11/dev_token.h"
#include "backends/pkcs11/pkcs11_api.h"
#include "backends/pkcs11/pkcs11_backend.h"
#include "backends/pkcs11/pkcs11_uri.h"
#include "crypto/hash.h"

namespace p11 = concierge::backends::pkcs11;
using concierge::Algorithm;
using concierge::Bytes;
using Clock = std::chrono::steady_clock;

namespace {

std::string ReadPin(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  char buf[128] = {0};
  size_t n = f ? std::fread(buf, 1, sizeof buf - 1, f) : 0;
  if (f) std::fclose(f);
  std::string s(buf, n);
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

double ProcessCpuSeconds() {
  rusage u;
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// Ops per second and process CPU microseconds per op. CPU per op is the figure
// to compare on a shared machine: it does not drop when another process takes
// a core, and it shows what contention inside the module costs each call.
struct Rate {
  double ops_per_s = 0;
  double cpu_us_per_op = 0;
};

// Runs `body(thread_index)` in `threads` threads for `seconds`.
template <typename Body>
Rate Measure(int threads, double seconds, Body body) {
  std::atomic<bool> stop{false};
  std::atomic<long> total{0};
  std::vector<std::thread> pool;
  auto start = Clock::now();
  double cpu_start = ProcessCpuSeconds();
  for (int i = 0; i < threads; ++i) {
    pool.emplace_back([&, i] {
      long n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        if (!body(i)) {
          std::fprintf(stderr, "sign failed\n");
          std::exit(1);
        }
        ++n;
      }
      total += n;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : pool) t.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  double ops = static_cast<double>(total.load());
  return {ops / elapsed, ops > 0 ? (ProcessCpuSeconds() - cpu_start) * 1e6 / ops : 0};
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 2.0;
  std::vector<int> thread_counts = {1, 2};
  Algorithm alg = Algorithm::kES256;
  std::string data_dir;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--seconds") {
      seconds = std::atof(value.c_str());
    } else if (flag == "--threads") {
      thread_counts.clear();
      for (size_t p = 0; p < value.size();) {
        size_t c = value.find(',', p);
        thread_counts.push_back(std::atoi(value.substr(p, c - p).c_str()));
        p = c == std::string::npos ? value.size() : c + 1;
      }
    } else if (flag == "--data-dir") {
      data_dir = value;
    } else if (flag == "--alg") {
      alg = value == "PS256" ? Algorithm::kPS256 : value == "Ed25519" ? Algorithm::kEd25519 : Algorithm::kES256;
    }
  }
  if (!p11::SoftHsmAvailable()) {
    std::printf("pkcs11_bench: SoftHSM2 not installed (%s); skipped\n", p11::kSoftHsmModulePath);
    return 0;
  }
  char tmpl[] = "/tmp/pkcs11-bench-XXXXXX";
  std::string dir = data_dir;
  if (dir.empty()) {
    if (::mkdtemp(tmpl) == nullptr) return 1;
    dir = tmpl;
  }
  int rc = 0;
  {
    auto dev = p11::EnsureSoftHsmDevToken(dir);
    if (!dev.ok()) {
      std::fprintf(stderr, "dev token: %s\n", dev.status().ToString().c_str());
      return 1;
    }
    int max_threads = *std::max_element(thread_counts.begin(), thread_counts.end());
    p11::Pkcs11BackendOptions o;
    o.module_path = dev->module_path;
    o.default_key_uri = dev->key_uri;
    o.sessions = max_threads;
    auto backend = p11::Pkcs11Backend::Create(std::move(o));
    if (!backend.ok()) {
      std::fprintf(stderr, "backend: %s\n", backend.status().ToString().c_str());
      return 1;
    }
    auto key = (*backend)->GenerateKey({alg, "bench/v1", ""});
    if (!key.ok()) {
      std::fprintf(stderr, "generate: %s\n", key.status().ToString().c_str());
      return 1;
    }
    Bytes digest = concierge::crypto::DigestFor(alg, concierge::crypto::RandomBytes(32));
    auto uri = p11::ParsePkcs11Uri(key->uri);
    Bytes id = *uri->id;

    // Raw side: one session per thread, opened and logged in up front.
    p11::Pkcs11Api& api = *dev->module;
    CK_ULONG nslots = 0;
    api.GetSlotList(CK_TRUE, nullptr, &nslots);
    std::vector<CK_SLOT_ID> slots(nslots);
    api.GetSlotList(CK_TRUE, slots.data(), &nslots);
    CK_SLOT_ID slot = 0;
    for (CK_SLOT_ID s : slots) {
      CK_TOKEN_INFO info;
      api.GetTokenInfo(s, &info);
      if (std::string(reinterpret_cast<char*>(info.label), 10) == "keyctl-dev") slot = s;
    }
    std::string pin = ReadPin(dev->user_pin_file);
    std::vector<CK_SESSION_HANDLE> sessions(max_threads);
    CK_OBJECT_HANDLE priv = CK_INVALID_HANDLE;
    for (int i = 0; i < max_threads; ++i) {
      api.OpenSession(slot, CKF_SERIAL_SESSION, &sessions[i]);
      api.Login(sessions[i], CKU_USER, reinterpret_cast<CK_UTF8CHAR*>(pin.data()), pin.size());
    }
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE find[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_ID, id.data(), id.size()}};
    CK_ULONG found = 0;
    api.FindObjectsInit(sessions[0], find, 2);
    api.FindObjects(sessions[0], &priv, 1, &found);
    api.FindObjectsFinal(sessions[0]);
    if (found != 1) {
      std::fprintf(stderr, "raw: key not found\n");
      return 1;
    }
    CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA256, CKG_MGF1_SHA256, 32};
    CK_MECHANISM mech = {CKM_ECDSA, nullptr, 0};
    if (alg == Algorithm::kPS256) mech = {CKM_RSA_PKCS_PSS, &pss, sizeof pss};
    if (alg == Algorithm::kEd25519) mech = {CKM_EDDSA, nullptr, 0};
    auto raw_sign = [&](int t) {
      CK_BYTE sig[1024];
      CK_ULONG len = sizeof sig;
      CK_MECHANISM m = mech;
      return api.SignInit(sessions[t], &m, priv) == CKR_OK &&
             api.Sign(sessions[t], digest.data(), digest.size(), sig, &len) == CKR_OK;
    };
    auto backend_sign = [&](int) { return (*backend)->SignDigest(key->uri, alg, digest).ok(); };
    // The backend signs on SoftHSM2 with an in-memory session copy of the key
    // (pkcs11_backend.h); raw C_Sign on such a copy shows what that saves.
    CK_OBJECT_HANDLE copy = CK_INVALID_HANDLE;
    CK_BBOOL session_only = CK_FALSE;
    CK_ATTRIBUTE copy_tmpl[] = {{CKA_TOKEN, &session_only, sizeof session_only}};
    if (api.CopyObject(sessions[0], priv, copy_tmpl, 1, &copy) != CKR_OK) copy = priv;
    auto raw_copy_sign = [&](int t) {
      CK_BYTE sig[1024];
      CK_ULONG len = sizeof sig;
      CK_MECHANISM m = mech;
      return api.SignInit(sessions[t], &m, copy) == CKR_OK &&
             api.Sign(sessions[t], digest.data(), digest.size(), sig, &len) == CKR_OK;
    };

    std::printf("PKCS#11 signing, SoftHSM2, %s, %.1fs per figure (raw C_Sign and backend back to back)\n",
                std::string(concierge::AlgorithmName(alg)).c_str(), seconds);
    std::printf("%-8s %14s %18s %8s %-14s %12s %12s %16s %12s\n", "threads", "raw C_Sign/s", "backend sign/s", "ratio",
                "target", "raw cpu/op", "backend cpu/op", "raw on copy/s", "copy cpu/op");
    for (int threads : thread_counts) {
      Measure(threads, 0.2, raw_sign);  // warm up
      Rate raw1 = Measure(threads, seconds / 2, raw_sign);
      Rate ours1 = Measure(threads, seconds / 2, backend_sign);
      Rate ours2 = Measure(threads, seconds / 2, backend_sign);
      Rate raw2 = Measure(threads, seconds / 2, raw_sign);
      double raw = (raw1.ops_per_s + raw2.ops_per_s) / 2, ours = (ours1.ops_per_s + ours2.ops_per_s) / 2;
      double raw_cpu = (raw1.cpu_us_per_op + raw2.cpu_us_per_op) / 2;
      double ours_cpu = (ours1.cpu_us_per_op + ours2.cpu_us_per_op) / 2;
      Rate copy1 = Measure(threads, seconds / 2, raw_copy_sign);
      double ratio = ours / raw;
      std::printf("%-8d %14.0f %18.0f %7.2fx %-14s %10.1fus %12.1fus %16.0f %10.1fus\n", threads, raw, ours, ratio,
                  ratio >= 0.7 ? ">=0.7x ok" : ">=0.7x MISSED", raw_cpu, ours_cpu, copy1.ops_per_s,
                  copy1.cpu_us_per_op);
      if (ratio < 0.7) rc = 2;
    }
    if (copy != priv) api.DestroyObject(sessions[0], copy);
    for (CK_SESSION_HANDLE s : sessions) api.CloseSession(s);
  }
  std::error_code ec;
  if (data_dir.empty()) std::filesystem::remove_all(dir, ec);
  return rc == 2 ? 0 : rc;  // a missed target is reported, not a crash
}
