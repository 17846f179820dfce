#include "backends/pkcs11/server_setup.h"

#include <thread>

#include "backends/pkcs11/dev_token.h"
#include "backends/pkcs11/pkcs11_backend.h"

namespace concierge::backends::pkcs11 {
namespace {

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    std::string item = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (!item.empty()) out.push_back(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace

StatusOr<Pkcs11Setup> CreatePkcs11Backends(const Pkcs11ServerSettings& s) {
  Pkcs11Setup setup;
  auto base = [&](std::string provider, std::string module) {
    Pkcs11BackendOptions o;
    o.provider = std::move(provider);
    o.module_path = std::move(module);
    o.allowed_modules = SplitList(s.allowed_modules);
    o.sessions = s.sessions > 0 ? s.sessions
                                : (s.io_threads > 0 ? s.io_threads
                                                    : static_cast<int>(std::thread::hardware_concurrency()));
    if (s.pin != nullptr && s.pin->has_value()) o.env_pin = (*s.pin)->Clone();
    return o;
  };

  if (s.module == "none") {
    setup.notes.push_back({false, "pkcs11 provider disabled (pkcs11_module = none)"});
  } else if (!s.module.empty()) {
    auto b = Pkcs11Backend::Create(base("pkcs11", s.module));
    if (!b.ok()) return b.status().Annotate("opening PKCS#11 module " + s.module);
    setup.notes.push_back({false, "pkcs11 provider on module " + s.module});
    setup.backends.push_back(*std::move(b));
  } else if (SoftHsmAvailable()) {
    auto dev = EnsureSoftHsmDevToken(s.data_dir);
    if (!dev.ok()) {
      setup.notes.push_back({true, "SoftHSM2 development token unavailable, pkcs11 provider off: " +
                                       dev.status().message()});
    } else {
      Pkcs11BackendOptions o = base("pkcs11", dev->module_path);
      o.default_key_uri = dev->key_uri;
      auto b = Pkcs11Backend::Create(std::move(o));
      if (!b.ok()) {
        setup.notes.push_back({true, "SoftHSM2 development token unusable, pkcs11 provider off: " +
                                         b.status().message()});
      } else {
        setup.notes.push_back({false, std::string(dev->created ? "created" : "opened") +
                                          " SoftHSM2 development token '" + dev->token_label + "' in " +
                                          s.data_dir + "/softhsm (user PIN in " + dev->user_pin_file + ")"});
        setup.backends.push_back(*std::move(b));
      }
    }
  }

  if (!s.yubihsm2_module.empty()) {
    auto b = Pkcs11Backend::Create(base("yubihsm2", s.yubihsm2_module));
    if (!b.ok()) return b.status().Annotate("opening YubiHSM2 module " + s.yubihsm2_module);
    setup.notes.push_back({false, "yubihsm2 provider on module " + s.yubihsm2_module});
    setup.backends.push_back(*std::move(b));
  }
  return setup;
}

}  // namespace concierge::backends::pkcs11
