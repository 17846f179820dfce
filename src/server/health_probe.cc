#include "server/health_probe.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "crypto/signature.h"

namespace concierge::server {

using json = nlohmann::json;

HealthProber::HealthProber(BackendRegistry& backends, std::string state_file)
    : backends_(backends), state_file_(std::move(state_file)) {
  std::ifstream f(state_file_);
  if (!f) return;
  std::stringstream ss;
  ss << f.rdbuf();
  json j = json::parse(ss.str(), nullptr, false);
  if (!j.is_object()) return;  // unreadable state: probe keys are simply re-created
  for (auto& [provider, v] : j.items()) {
    if (!v.is_object() || !v.contains("uri") || !v.contains("spki")) continue;
    auto spki = crypto::Base64Decode(v["spki"].get<std::string>());
    if (spki.ok()) keys_[provider] = ProbeKey{v["uri"].get<std::string>(), *spki};
  }
}

void HealthProber::Save() {
  json j = json::object();
  for (const auto& [provider, k] : keys_) j[provider] = {{"uri", k.uri}, {"spki", crypto::Base64Encode(k.spki)}};
  std::string tmp = state_file_ + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << j.dump(2) << "\n";
    if (!f) return;  // best effort: a lost file only means a new probe key next start
  }
  std::rename(tmp.c_str(), state_file_.c_str());
}

StatusOr<HealthProber::ProbeKey> HealthProber::KeyFor(KeyBackend& backend) {
  std::string provider(backend.provider());
  auto it = keys_.find(provider);
  if (it != keys_.end()) return it->second;
  auto generated = backend.GenerateKey(KeySpec{Algorithm::kES256, "keyctl/health-probe", ""});
  if (!generated.ok()) return generated.status().Annotate("creating probe key");
  ProbeKey key{generated->uri, generated->public_key_spki_der};
  keys_[provider] = key;
  Save();
  return key;
}

std::vector<ComponentHealth> HealthProber::Probe() {
  std::vector<ComponentHealth> out;
  static const Bytes kProbeDigest = crypto::Sha256(crypto::AsBytes("keyctl health probe"));
  std::lock_guard lock(mu_);
  for (KeyBackend* b : backends_.All()) {
    ComponentHealth c;
    c.name = "backend:" + std::string(b->provider());
    BackendHealth h = b->Health();
    c.detail = h.detail;
    if (!h.healthy) {
      out.push_back(std::move(c));
      continue;
    }
    auto key = KeyFor(*b);
    if (!key.ok()) {
      c.detail += "; probe signature unavailable: " + key.status().message();
      out.push_back(std::move(c));
      continue;
    }
    auto sig = b->SignDigest(key->uri, Algorithm::kES256, kProbeDigest);
    if (!sig.ok() && sig.status().code() == StatusCode::kNotFound) {
      keys_.erase(std::string(b->provider()));  // probe key vanished (token re-initialised): make a new one
      key = KeyFor(*b);
      if (key.ok()) sig = b->SignDigest(key->uri, Algorithm::kES256, kProbeDigest);
    }
    if (!sig.ok()) {
      c.detail += "; probe signature failed: " + sig.status().message();
      out.push_back(std::move(c));
      continue;
    }
    auto pub = crypto::PublicKeyFromSpkiDer(key->spki);
    if (!pub.ok() || !crypto::VerifyDigest(pub->get(), Algorithm::kES256, kProbeDigest, *sig).ok()) {
      c.detail += "; probe signature did not verify";
      out.push_back(std::move(c));
      continue;
    }
    c.ok = true;
    c.detail += "; probe signature verified";
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace concierge::server
