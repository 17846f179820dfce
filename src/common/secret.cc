#include "concierge/secret.h"

#include <openssl/crypto.h>

#include <cstring>

namespace concierge {

SecretBytes::SecretBytes(size_t size) : bytes_(size, 0) {}

SecretBytes::SecretBytes(std::span<const uint8_t> bytes, SecretAccess)
    : bytes_(bytes.begin(), bytes.end()) {}

SecretBytes SecretBytes::FromString(std::string_view s, SecretAccess access) {
  return SecretBytes(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()),
                     access);
}

SecretBytes::~SecretBytes() { Wipe(); }

SecretBytes::SecretBytes(SecretBytes&& other) noexcept : bytes_(std::move(other.bytes_)) {
  other.Wipe();
}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    Wipe();
    bytes_ = std::move(other.bytes_);
    other.Wipe();
  }
  return *this;
}

SecretBytes SecretBytes::Clone() const { return SecretBytes(bytes_, SecretAccess::Grant()); }

bool SecretBytes::ConstantTimeEquals(const SecretBytes& other) const {
  return concierge::ConstantTimeEquals(std::span<const uint8_t>(bytes_),
                                       std::span<const uint8_t>(other.bytes_));
}

void SecretBytes::Wipe() {
  if (!bytes_.empty()) OPENSSL_cleanse(bytes_.data(), bytes_.size());
  bytes_.clear();
  bytes_.shrink_to_fit();
}

bool ConstantTimeEquals(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  return ConstantTimeEquals(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(a.data()), a.size()),
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(b.data()), b.size()));
}

}  // namespace concierge
