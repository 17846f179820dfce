// SecretBytes: move-only byte buffer for key material, passphrases and tokens.
//
// The buffer is wiped (OPENSSL_cleanse) when destroyed or moved from. It cannot
// be printed, compared with ==, or copied implicitly; its bytes are reachable only
// through Reveal(SecretAccess), so every place that touches a secret is greppable
// ("SecretAccess::Grant"). Not thread-safe; owns its storage.
#ifndef CONCIERGE_SECRET_H_
#define CONCIERGE_SECRET_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace concierge {

// A token proving the caller meant to read a secret.
class SecretAccess {
 public:
  static SecretAccess Grant() { return SecretAccess(); }

 private:
  SecretAccess() = default;
};

class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(size_t size);  // zero-filled
  SecretBytes(std::span<const uint8_t> bytes, SecretAccess);
  static SecretBytes FromString(std::string_view s, SecretAccess);
  ~SecretBytes();

  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  SecretBytes Clone() const;

  size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }

  std::span<const uint8_t> Reveal(SecretAccess) const { return bytes_; }
  std::span<uint8_t> RevealMutable(SecretAccess) { return bytes_; }
  std::string_view RevealString(SecretAccess) const {
    return std::string_view(reinterpret_cast<const char*>(bytes_.data()), bytes_.size());
  }

  // Constant-time comparison.
  bool ConstantTimeEquals(const SecretBytes& other) const;

 private:
  void Wipe();
  std::vector<uint8_t> bytes_;
};

// Constant-time equality for equal-length buffers; false when lengths differ
// (length is not secret for our tokens and MACs).
bool ConstantTimeEquals(std::span<const uint8_t> a, std::span<const uint8_t> b);
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace concierge

#endif  // CONCIERGE_SECRET_H_
