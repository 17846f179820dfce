#include "backends/pkcs11/dev_token.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <vector>

#include "backends/pkcs11/pkcs11_api.h"
#include "backends/pkcs11/pkcs11_uri.h"
#include "crypto/hash.h"

namespace concierge::backends::pkcs11 {
namespace {

std::string Trim(const unsigned char* field, size_t n) {
  std::string s(reinterpret_cast<const char*>(field), n);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

Status WriteFile0600(const std::string& path, std::string_view content) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return UnavailableError("cannot write " + path + ": " + std::strerror(errno));
  bool ok = ::fchmod(fd, 0600) == 0;
  size_t off = 0;
  while (ok && off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ok = false;
    else off += static_cast<size_t>(n);
  }
  ok = ::fsync(fd) == 0 && ok;
  ok = ::close(fd) == 0 && ok;
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return UnavailableError("cannot write " + path + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

StatusOr<SecretBytes> ReadSecret(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NotFoundError("cannot read " + path);
  SecretBytes buf(256);
  auto b = buf.RevealMutable(SecretAccess::Grant());
  ssize_t n = ::read(fd, b.data(), b.size());
  ::close(fd);
  if (n <= 0) return DataLossError("PIN file " + path + " is empty or unreadable");
  size_t len = static_cast<size_t>(n);
  while (len > 0 && (b[len - 1] == '\n' || b[len - 1] == '\r')) --len;
  return SecretBytes(std::span<const uint8_t>(b.data(), len), SecretAccess::Grant());
}

Status EnsurePrivateDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return UnavailableError("cannot create directory " + dir + ": " + ec.message());
  if (::chmod(dir.c_str(), 0700) != 0) return UnavailableError("cannot restrict permissions of " + dir);
  return Status::Ok();
}

StatusOr<std::vector<CK_SLOT_ID>> Slots(Pkcs11Api& api) {
  CK_ULONG n = 0;
  CK_RV rv = api.GetSlotList(CK_FALSE, nullptr, &n);
  if (rv != CKR_OK) return Pkcs11Error("C_GetSlotList", rv);
  std::vector<CK_SLOT_ID> slots(n);
  rv = api.GetSlotList(CK_FALSE, slots.data(), &n);
  if (rv != CKR_OK) return Pkcs11Error("C_GetSlotList", rv);
  slots.resize(n);
  return slots;
}

// Slot of the initialised token labelled `label`, if any.
StatusOr<std::optional<CK_SLOT_ID>> FindTokenSlot(Pkcs11Api& api, std::string_view label) {
  ASSIGN_OR_RETURN(auto slots, Slots(api));
  for (CK_SLOT_ID s : slots) {
    CK_TOKEN_INFO info;
    if (api.GetTokenInfo(s, &info) != CKR_OK) continue;
    if ((info.flags & CKF_TOKEN_INITIALIZED) && Trim(info.label, 32) == label) return std::optional(s);
  }
  return std::optional<CK_SLOT_ID>();
}

}  // namespace

bool SoftHsmAvailable(const std::string& module_path) { return ::access(module_path.c_str(), R_OK) == 0; }

Status WriteSoftHsmConfig(const std::string& conf_path, const std::string& token_dir) {
  std::string conf = "# Written by keyctl for the SoftHSM2 development token.\n"
                     "directories.tokendir = " + token_dir + "\n"
                     "objectstore.backend = file\n"
                     "log.level = ERROR\n"
                     "slots.removable = false\n";
  return WriteFile0600(conf_path, conf);
}

Status InitSoftHsmToken(Pkcs11Api& api, std::string_view label, const SecretBytes& so_pin,
                        const SecretBytes& user_pin) {
  if (label.empty() || label.size() > 32) return InvalidArgumentError("token label must be 1..32 characters");
  ASSIGN_OR_RETURN(auto existing, FindTokenSlot(api, label));
  if (existing) return AlreadyExistsError("PKCS#11 token '" + std::string(label) + "' already exists");
  ASSIGN_OR_RETURN(auto slots, Slots(api));
  std::optional<CK_SLOT_ID> free_slot;
  for (CK_SLOT_ID s : slots) {
    CK_TOKEN_INFO info;
    if (api.GetTokenInfo(s, &info) == CKR_OK && !(info.flags & CKF_TOKEN_INITIALIZED)) {
      free_slot = s;
      break;
    }
  }
  if (!free_slot) return ResourceExhaustedError("no free PKCS#11 slot to initialise a token in");
  unsigned char padded[32];
  std::memset(padded, ' ', sizeof padded);
  std::memcpy(padded, label.data(), label.size());
  auto so = so_pin.Reveal(SecretAccess::Grant());
  CK_RV rv = api.InitToken(*free_slot, const_cast<uint8_t*>(so.data()), so.size(), padded);
  if (rv != CKR_OK) return Pkcs11Error("C_InitToken", rv);
  // SoftHSM renumbers the slot once the token is initialised: look it up again.
  ASSIGN_OR_RETURN(auto slot, FindTokenSlot(api, label));
  if (!slot) return InternalError("initialised PKCS#11 token '" + std::string(label) + "' not found afterwards");
  CK_SESSION_HANDLE s;
  rv = api.OpenSession(*slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, &s);
  if (rv != CKR_OK) return Pkcs11Error("C_OpenSession", rv);
  rv = api.Login(s, CKU_SO, const_cast<uint8_t*>(so.data()), so.size());
  if (rv == CKR_OK) {
    auto user = user_pin.Reveal(SecretAccess::Grant());
    rv = api.InitPIN(s, const_cast<uint8_t*>(user.data()), user.size());
    api.Logout(s);
    api.CloseSession(s);
    if (rv != CKR_OK) return Pkcs11Error("C_InitPIN", rv);
    return Status::Ok();
  }
  api.CloseSession(s);
  return Pkcs11Error("C_Login", rv);
}

StatusOr<DevToken> EnsureSoftHsmDevToken(const std::string& data_dir, const std::string& module_path) {
  if (!SoftHsmAvailable(module_path)) return NotFoundError("SoftHSM2 module not found: " + module_path);
  std::error_code ec;
  std::string abs_dir = std::filesystem::absolute(data_dir, ec).lexically_normal().string();
  if (ec) return InvalidArgumentError("bad data dir " + data_dir);
  while (abs_dir.size() > 1 && abs_dir.back() == '/') abs_dir.pop_back();
  DevToken t;
  t.module_path = module_path;
  t.conf_path = abs_dir + "/softhsm2.conf";
  t.token_label = kDevTokenLabel;
  std::string softhsm_dir = abs_dir + "/softhsm";
  t.user_pin_file = softhsm_dir + "/user-pin";
  t.so_pin_file = softhsm_dir + "/so-pin";
  RETURN_IF_ERROR(EnsurePrivateDir(softhsm_dir + "/tokens"));
  RETURN_IF_ERROR(WriteSoftHsmConfig(t.conf_path, softhsm_dir + "/tokens"));

  if (Pkcs11ModuleLoaded(module_path)) {
    const char* current = std::getenv("SOFTHSM2_CONF");
    if (current == nullptr || t.conf_path != current) {
      return FailedPreconditionError("SoftHSM2 is already loaded in this process with another configuration; "
                                     "cannot set up the development token in " + abs_dir);
    }
  } else {
    ::setenv("SOFTHSM2_CONF", t.conf_path.c_str(), 1);
  }
  ASSIGN_OR_RETURN(t.module, OpenPkcs11Module({module_path, {}}));

  ASSIGN_OR_RETURN(auto slot, FindTokenSlot(*t.module, t.token_label));
  bool have_pins = ::access(t.user_pin_file.c_str(), F_OK) == 0 && ::access(t.so_pin_file.c_str(), F_OK) == 0;
  if (slot && !have_pins) {
    return FailedPreconditionError("the SoftHSM2 development token exists but its PIN file " + t.user_pin_file +
                                   " is missing; remove " + softhsm_dir + " to start over");
  }
  if (!slot) {
    if (!have_pins) {
      // PIN files first: a crash before C_InitToken leaves files, not a token nobody can open.
      std::string so = crypto::RandomHex(16), user = crypto::RandomHex(16);
      Status w = WriteFile0600(t.so_pin_file, so + "\n");
      if (w.ok()) w = WriteFile0600(t.user_pin_file, user + "\n");
      std::fill(so.begin(), so.end(), '\0');
      std::fill(user.begin(), user.end(), '\0');
      RETURN_IF_ERROR(w);
    }
    ASSIGN_OR_RETURN(SecretBytes so_pin, ReadSecret(t.so_pin_file));
    ASSIGN_OR_RETURN(SecretBytes user_pin, ReadSecret(t.user_pin_file));
    RETURN_IF_ERROR(InitSoftHsmToken(*t.module, t.token_label, so_pin, user_pin)
                        .Annotate("initialising the SoftHSM2 development token"));
    t.created = true;
  }
  Pkcs11Uri uri;
  uri.token = t.token_label;
  uri.module_path = module_path;
  uri.pin_source = t.user_pin_file;
  t.key_uri = FormatPkcs11Uri(uri);
  return t;
}

}  // namespace concierge::backends::pkcs11
