#include "concierge/key_backend.h"

namespace concierge {

Status BackendRegistry::Register(std::unique_ptr<KeyBackend> backend) {
  std::string name(backend->provider());
  if (backends_.count(name)) return AlreadyExistsError("backend '" + name + "' registered twice");
  backends_.emplace(std::move(name), std::move(backend));
  return Status::Ok();
}

KeyBackend* BackendRegistry::Find(std::string_view provider) const {
  auto it = backends_.find(provider);
  return it == backends_.end() ? nullptr : it->second.get();
}

std::vector<KeyBackend*> BackendRegistry::All() const {
  std::vector<KeyBackend*> out;
  for (const auto& [name, b] : backends_) out.push_back(b.get());
  return out;
}

}  // namespace concierge
