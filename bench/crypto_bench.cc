// Micro-benchmarks of the signing hot path: the raw crypto::SignDigest per
// algorithm, and SoftwareBackend::SignDigest (URI lookup + cache + sign) for
// ES256. bench/run.sh compares them with `openssl speed` on the same machine.
// Rates are per CPU second (Google Benchmark's default), matching `openssl
// speed`, which divides by user CPU time unless given -elapsed; on a shared
// machine that also keeps other processes' load out of the numbers.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "backends/software/software_backend.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "crypto/signature.h"

namespace concierge {
namespace {

void BM_CryptoSignDigest(benchmark::State& state, Algorithm alg) {
  auto key = crypto::GenerateKeyPair(alg);
  if (!key.ok()) {
    state.SkipWithError(key.status().ToString().c_str());
    return;
  }
  Bytes digest = crypto::DigestFor(alg, crypto::RandomBytes(64));
  for (auto _ : state) {
    auto sig = crypto::SignDigest(key->get(), alg, digest);
    if (!sig.ok()) {
      state.SkipWithError(sig.status().ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(sig->data());
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK_CAPTURE(BM_CryptoSignDigest, ES256, Algorithm::kES256);
BENCHMARK_CAPTURE(BM_CryptoSignDigest, ES384, Algorithm::kES384);
BENCHMARK_CAPTURE(BM_CryptoSignDigest, PS256, Algorithm::kPS256);
BENCHMARK_CAPTURE(BM_CryptoSignDigest, Ed25519, Algorithm::kEd25519);

// Removes the benchmark's keystore directory however the benchmark exits.
class ScratchDir {
 public:
  ScratchDir() {
    path_ = (std::filesystem::temp_directory_path() / "concierge-bench-XXXXXX").string();
    if (mkdtemp(path_.data()) == nullptr) path_.clear();
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void BM_SoftwareBackendSignDigest(benchmark::State& state, Algorithm alg) {
  ScratchDir scratch;
  if (scratch.path().empty()) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  backends::SoftwareKeystoreOptions options;
  options.dir = scratch.path() + "/ks";
  auto backend = backends::SoftwareBackend::Create(std::move(options));
  if (!backend.ok()) {
    state.SkipWithError(backend.status().ToString().c_str());
    return;
  }
  auto key = (*backend)->GenerateKey({.algorithm = alg, .label = "bench"});
  if (!key.ok()) {
    state.SkipWithError(key.status().ToString().c_str());
    return;
  }
  Bytes digest = crypto::DigestFor(alg, crypto::RandomBytes(64));
  for (auto _ : state) {
    auto sig = (*backend)->SignDigest(key->uri, alg, digest);
    if (!sig.ok()) {
      state.SkipWithError(sig.status().ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(sig->data());
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK_CAPTURE(BM_SoftwareBackendSignDigest, ES256, Algorithm::kES256);

}  // namespace
}  // namespace concierge

BENCHMARK_MAIN();
