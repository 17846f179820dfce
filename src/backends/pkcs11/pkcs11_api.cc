#include "backends/pkcs11/pkcs11_api.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstdio>
#include <map>
#include <mutex>

namespace concierge::backends::pkcs11 {
namespace {

struct RvEntry {
  CK_RV rv;
  const char* name;
  StatusCode code;
};

// The one CK_RV -> Status table. Codes follow what a caller can do about it:
// session/device loss is transient (kUnavailable), bad PIN is a permission
// problem, an unsupported mechanism or key type is a precondition of the token.
constexpr RvEntry kRvTable[] = {
    {CKR_OK, "CKR_OK", StatusCode::kOk},
    {CKR_CANCEL, "CKR_CANCEL", StatusCode::kCancelled},
    {CKR_HOST_MEMORY, "CKR_HOST_MEMORY", StatusCode::kResourceExhausted},
    {CKR_SLOT_ID_INVALID, "CKR_SLOT_ID_INVALID", StatusCode::kNotFound},
    {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR", StatusCode::kInternal},
    {CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED", StatusCode::kInternal},
    {CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD", StatusCode::kInternal},
    {CKR_CANT_LOCK, "CKR_CANT_LOCK", StatusCode::kFailedPrecondition},
    {CKR_ATTRIBUTE_READ_ONLY, "CKR_ATTRIBUTE_READ_ONLY", StatusCode::kFailedPrecondition},
    {CKR_ATTRIBUTE_SENSITIVE, "CKR_ATTRIBUTE_SENSITIVE", StatusCode::kPermissionDenied},
    {CKR_ATTRIBUTE_TYPE_INVALID, "CKR_ATTRIBUTE_TYPE_INVALID", StatusCode::kFailedPrecondition},
    {CKR_ATTRIBUTE_VALUE_INVALID, "CKR_ATTRIBUTE_VALUE_INVALID", StatusCode::kFailedPrecondition},
    {CKR_DATA_INVALID, "CKR_DATA_INVALID", StatusCode::kInvalidArgument},
    {CKR_DATA_LEN_RANGE, "CKR_DATA_LEN_RANGE", StatusCode::kInvalidArgument},
    {CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR", StatusCode::kUnavailable},
    {CKR_DEVICE_MEMORY, "CKR_DEVICE_MEMORY", StatusCode::kResourceExhausted},
    {CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED", StatusCode::kUnavailable},
    {CKR_FUNCTION_CANCELED, "CKR_FUNCTION_CANCELED", StatusCode::kCancelled},
    {CKR_FUNCTION_NOT_SUPPORTED, "CKR_FUNCTION_NOT_SUPPORTED", StatusCode::kFailedPrecondition},
    {CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID", StatusCode::kNotFound},
    {CKR_KEY_SIZE_RANGE, "CKR_KEY_SIZE_RANGE", StatusCode::kFailedPrecondition},
    {CKR_KEY_TYPE_INCONSISTENT, "CKR_KEY_TYPE_INCONSISTENT", StatusCode::kFailedPrecondition},
    {CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED", StatusCode::kPermissionDenied},
    {CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID", StatusCode::kFailedPrecondition},
    {CKR_MECHANISM_PARAM_INVALID, "CKR_MECHANISM_PARAM_INVALID", StatusCode::kFailedPrecondition},
    {CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID", StatusCode::kNotFound},
    {CKR_OPERATION_ACTIVE, "CKR_OPERATION_ACTIVE", StatusCode::kInternal},
    {CKR_OPERATION_NOT_INITIALIZED, "CKR_OPERATION_NOT_INITIALIZED", StatusCode::kInternal},
    {CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT", StatusCode::kPermissionDenied},
    {CKR_PIN_INVALID, "CKR_PIN_INVALID", StatusCode::kPermissionDenied},
    {CKR_PIN_LEN_RANGE, "CKR_PIN_LEN_RANGE", StatusCode::kPermissionDenied},
    {CKR_PIN_EXPIRED, "CKR_PIN_EXPIRED", StatusCode::kPermissionDenied},
    {CKR_PIN_LOCKED, "CKR_PIN_LOCKED", StatusCode::kPermissionDenied},
    {CKR_SESSION_CLOSED, "CKR_SESSION_CLOSED", StatusCode::kUnavailable},
    {CKR_SESSION_COUNT, "CKR_SESSION_COUNT", StatusCode::kResourceExhausted},
    {CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID", StatusCode::kUnavailable},
    {CKR_SESSION_READ_ONLY, "CKR_SESSION_READ_ONLY", StatusCode::kFailedPrecondition},
    {CKR_SESSION_EXISTS, "CKR_SESSION_EXISTS", StatusCode::kFailedPrecondition},
    {CKR_SIGNATURE_INVALID, "CKR_SIGNATURE_INVALID", StatusCode::kInvalidArgument},
    {CKR_SIGNATURE_LEN_RANGE, "CKR_SIGNATURE_LEN_RANGE", StatusCode::kInvalidArgument},
    {CKR_TEMPLATE_INCOMPLETE, "CKR_TEMPLATE_INCOMPLETE", StatusCode::kFailedPrecondition},
    {CKR_TEMPLATE_INCONSISTENT, "CKR_TEMPLATE_INCONSISTENT", StatusCode::kFailedPrecondition},
    {CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT", StatusCode::kUnavailable},
    {CKR_TOKEN_NOT_RECOGNIZED, "CKR_TOKEN_NOT_RECOGNIZED", StatusCode::kFailedPrecondition},
    {CKR_TOKEN_WRITE_PROTECTED, "CKR_TOKEN_WRITE_PROTECTED", StatusCode::kFailedPrecondition},
    {CKR_USER_ALREADY_LOGGED_IN, "CKR_USER_ALREADY_LOGGED_IN", StatusCode::kOk},
    {CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN", StatusCode::kUnavailable},
    {CKR_USER_PIN_NOT_INITIALIZED, "CKR_USER_PIN_NOT_INITIALIZED", StatusCode::kFailedPrecondition},
    {CKR_USER_TYPE_INVALID, "CKR_USER_TYPE_INVALID", StatusCode::kInternal},
    {CKR_USER_ANOTHER_ALREADY_LOGGED_IN, "CKR_USER_ANOTHER_ALREADY_LOGGED_IN", StatusCode::kFailedPrecondition},
    {CKR_USER_TOO_MANY_TYPES, "CKR_USER_TOO_MANY_TYPES", StatusCode::kResourceExhausted},
    {CKR_DOMAIN_PARAMS_INVALID, "CKR_DOMAIN_PARAMS_INVALID", StatusCode::kFailedPrecondition},
    {CKR_CURVE_NOT_SUPPORTED, "CKR_CURVE_NOT_SUPPORTED", StatusCode::kFailedPrecondition},
    {CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL", StatusCode::kInternal},
    {CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED", StatusCode::kUnavailable},
    {CKR_CRYPTOKI_ALREADY_INITIALIZED, "CKR_CRYPTOKI_ALREADY_INITIALIZED", StatusCode::kFailedPrecondition},
    {CKR_FUNCTION_REJECTED, "CKR_FUNCTION_REJECTED", StatusCode::kPermissionDenied},
};

const RvEntry* FindRv(CK_RV rv) {
  for (const auto& e : kRvTable) {
    if (e.rv == rv) return &e;
  }
  return nullptr;
}

std::string Hex(unsigned long v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%lX", v);
  return buf;
}

// ---------------------------------------------------------------------------

class Pkcs11Module final : public Pkcs11Api {
 public:
  Pkcs11Module(std::string path, void* handle, CK_FUNCTION_LIST* fl)
      : path_(std::move(path)), handle_(handle), fl_(fl) {}
  ~Pkcs11Module() override {
    if (initialized_) fl_->C_Finalize(nullptr);
    if (handle_ != nullptr) dlclose(handle_);
  }
  Pkcs11Module(const Pkcs11Module&) = delete;
  Pkcs11Module& operator=(const Pkcs11Module&) = delete;

  Status Initialize() {
    CK_C_INITIALIZE_ARGS args = {};
    args.flags = CKF_OS_LOCKING_OK;
    CK_RV rv = fl_->C_Initialize(&args);
    if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
      return FailedPreconditionError("PKCS#11 module " + path_ +
                                     " was already initialised by other code in this process");
    }
    if (rv != CKR_OK) return Pkcs11Error("C_Initialize of " + path_, rv);
    initialized_ = true;
    CK_INFO info = {};
    rv = fl_->C_GetInfo(&info);
    if (rv != CKR_OK) return Pkcs11Error("C_GetInfo of " + path_, rv);
    if (info.cryptokiVersion.major != 2) {
      return FailedPreconditionError("PKCS#11 module " + path_ + " implements Cryptoki " +
                                     std::to_string(info.cryptokiVersion.major) + "." +
                                     std::to_string(info.cryptokiVersion.minor) + "; version 2.x is required");
    }
    return Status::Ok();
  }

  CK_RV GetInfo(CK_INFO* info) override { return fl_->C_GetInfo(info); }
  CK_RV GetSlotList(CK_BBOOL present, CK_SLOT_ID* slots, CK_ULONG* count) override {
    return fl_->C_GetSlotList(present, slots, count);
  }
  CK_RV GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO* info) override { return fl_->C_GetTokenInfo(slot, info); }
  CK_RV GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO* info) override {
    return fl_->C_GetMechanismInfo(slot, type, info);
  }
  CK_RV InitToken(CK_SLOT_ID slot, CK_UTF8CHAR* so_pin, CK_ULONG len, CK_UTF8CHAR* label) override {
    return fl_->C_InitToken(slot, so_pin, len, label);
  }
  CK_RV InitPIN(CK_SESSION_HANDLE s, CK_UTF8CHAR* pin, CK_ULONG len) override { return fl_->C_InitPIN(s, pin, len); }
  CK_RV OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_SESSION_HANDLE* s) override {
    return fl_->C_OpenSession(slot, flags, nullptr, nullptr, s);
  }
  CK_RV CloseSession(CK_SESSION_HANDLE s) override { return fl_->C_CloseSession(s); }
  CK_RV CloseAllSessions(CK_SLOT_ID slot) override { return fl_->C_CloseAllSessions(slot); }
  CK_RV GetSessionInfo(CK_SESSION_HANDLE s, CK_SESSION_INFO* info) override {
    return fl_->C_GetSessionInfo(s, info);
  }
  CK_RV Login(CK_SESSION_HANDLE s, CK_USER_TYPE user, CK_UTF8CHAR* pin, CK_ULONG len) override {
    return fl_->C_Login(s, user, pin, len);
  }
  CK_RV Logout(CK_SESSION_HANDLE s) override { return fl_->C_Logout(s); }
  CK_RV GenerateKeyPair(CK_SESSION_HANDLE s, CK_MECHANISM* m, CK_ATTRIBUTE* pub, CK_ULONG pub_count,
                        CK_ATTRIBUTE* priv, CK_ULONG priv_count, CK_OBJECT_HANDLE* pub_key,
                        CK_OBJECT_HANDLE* priv_key) override {
    return fl_->C_GenerateKeyPair(s, m, pub, pub_count, priv, priv_count, pub_key, priv_key);
  }
  CK_RV GetAttributeValue(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE* a, CK_ULONG n) override {
    return fl_->C_GetAttributeValue(s, o, a, n);
  }
  CK_RV FindObjectsInit(CK_SESSION_HANDLE s, CK_ATTRIBUTE* a, CK_ULONG n) override {
    return fl_->C_FindObjectsInit(s, a, n);
  }
  CK_RV FindObjects(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE* o, CK_ULONG max, CK_ULONG* n) override {
    return fl_->C_FindObjects(s, o, max, n);
  }
  CK_RV FindObjectsFinal(CK_SESSION_HANDLE s) override { return fl_->C_FindObjectsFinal(s); }
  CK_RV DestroyObject(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o) override { return fl_->C_DestroyObject(s, o); }
  CK_RV CopyObject(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE* a, CK_ULONG n,
                   CK_OBJECT_HANDLE* copy) override {
    return fl_->C_CopyObject(s, o, a, n, copy);
  }
  CK_RV SignInit(CK_SESSION_HANDLE s, CK_MECHANISM* m, CK_OBJECT_HANDLE k) override {
    return fl_->C_SignInit(s, m, k);
  }
  CK_RV Sign(CK_SESSION_HANDLE s, CK_BYTE* d, CK_ULONG dl, CK_BYTE* sig, CK_ULONG* sl) override {
    return fl_->C_Sign(s, d, dl, sig, sl);
  }
  const std::string& module_path() const override { return path_; }

 private:
  std::string path_;
  void* handle_;
  CK_FUNCTION_LIST* fl_;
  bool initialized_ = false;
};

// One module object per real path. The deleter takes the registry lock so a
// module being finalised cannot race with a fresh load of the same path.
std::mutex& RegistryMutex() {
  static std::mutex mu;
  return mu;
}
std::map<std::string, std::weak_ptr<Pkcs11Module>>& Registry() {
  static auto* registry = new std::map<std::string, std::weak_ptr<Pkcs11Module>>();
  return *registry;
}

std::string RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) return "";
  return buf;
}

}  // namespace

std::string RvName(CK_RV rv) {
  if (const RvEntry* e = FindRv(rv)) return e->name;
  if (rv & CKR_VENDOR_DEFINED) return "CKR_VENDOR_DEFINED+" + Hex(rv & ~CKR_VENDOR_DEFINED);
  return "CKR_" + Hex(rv);
}

std::string MechanismName(CK_MECHANISM_TYPE m) {
  switch (m) {
    case CKM_RSA_PKCS_KEY_PAIR_GEN: return "CKM_RSA_PKCS_KEY_PAIR_GEN";
    case CKM_RSA_PKCS_PSS: return "CKM_RSA_PKCS_PSS";
    case CKM_EC_KEY_PAIR_GEN: return "CKM_EC_KEY_PAIR_GEN";
    case CKM_ECDSA: return "CKM_ECDSA";
    case CKM_EC_EDWARDS_KEY_PAIR_GEN: return "CKM_EC_EDWARDS_KEY_PAIR_GEN";
    case CKM_EDDSA: return "CKM_EDDSA";
    case CKM_SHA256: return "CKM_SHA256";
    case CKM_SHA384: return "CKM_SHA384";
    case CKM_SHA512: return "CKM_SHA512";
    default: return "CKM_" + Hex(m);
  }
}

Status Pkcs11Error(std::string_view operation, CK_RV rv) {
  const RvEntry* e = FindRv(rv);
  StatusCode code = e != nullptr ? e->code : StatusCode::kInternal;
  if (code == StatusCode::kOk) code = StatusCode::kInternal;  // caller asked for an error
  std::string op(operation);
  if (op == "C_Login") op = "login";
  return Status(code, "PKCS#11 " + op + " failed: " + RvName(rv)).WithDetail("ck_rv", RvName(rv));
}

Status Pkcs11MechanismError(std::string_view operation, CK_RV rv, CK_MECHANISM_TYPE mechanism) {
  if (rv == CKR_MECHANISM_INVALID || rv == CKR_MECHANISM_PARAM_INVALID || rv == CKR_FUNCTION_NOT_SUPPORTED) {
    return FailedPreconditionError("PKCS#11 " + std::string(operation) + " failed: " + RvName(rv) +
                                   ": the token does not support " + MechanismName(mechanism))
        .WithDetail("ck_rv", RvName(rv));
  }
  return Pkcs11Error(operation, rv);
}

bool IsSessionLoss(CK_RV rv) {
  return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED || rv == CKR_DEVICE_REMOVED ||
         rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_USER_NOT_LOGGED_IN || rv == CKR_DEVICE_ERROR;
}

bool Pkcs11ModuleLoaded(const std::string& path) {
  std::string real = RealPath(path);
  std::lock_guard lock(RegistryMutex());
  auto it = Registry().find(real.empty() ? path : real);
  return it != Registry().end() && !it->second.expired();
}

StatusOr<std::shared_ptr<Pkcs11Api>> OpenPkcs11Module(const ModuleLoadOptions& options) {
  const std::string& path = options.path;
  if (path.empty()) return InvalidArgumentError("no PKCS#11 module path configured");
  if (path.front() != '/') {
    return InvalidArgumentError("PKCS#11 module path must be absolute: " + path);
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return NotFoundError("PKCS#11 module not found: " + path);
  std::string real = RealPath(path);
  if (real.empty()) return NotFoundError("PKCS#11 module not found: " + path);
  if (!options.allowed_paths.empty()) {
    bool allowed = false;
    for (const auto& a : options.allowed_paths) {
      if (a == path || (!a.empty() && RealPath(a) == real)) allowed = true;
    }
    if (!allowed) {
      return PermissionDeniedError("PKCS#11 module " + path + " is not in pkcs11_allowed_modules");
    }
  }

  // Declared before the lock so a module that failed to initialise is destroyed
  // (its deleter takes the registry lock) only after the lock is released.
  std::shared_ptr<Pkcs11Module> failed;
  std::lock_guard lock(RegistryMutex());
  auto& slot = Registry()[real];
  if (auto existing = slot.lock()) return std::shared_ptr<Pkcs11Api>(existing);

  void* handle = ::dlopen(real.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* err = ::dlerror();
    return FailedPreconditionError("cannot load PKCS#11 module " + path + ": " + (err ? err : "dlopen failed"));
  }
  auto get_list = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(handle, "C_GetFunctionList"));
  if (get_list == nullptr) {
    ::dlclose(handle);
    return FailedPreconditionError("PKCS#11 module " + path + " does not export C_GetFunctionList");
  }
  CK_FUNCTION_LIST* fl = nullptr;
  CK_RV rv = get_list(&fl);
  if (rv != CKR_OK || fl == nullptr) {
    ::dlclose(handle);
    return FailedPreconditionError("C_GetFunctionList of PKCS#11 module " + path + " failed: " + RvName(rv));
  }
  if (fl->version.major != 2) {
    ::dlclose(handle);
    return FailedPreconditionError("PKCS#11 module " + path + " has a version " +
                                   std::to_string(fl->version.major) + " function list; 2.x is required");
  }
  // The deleter runs C_Finalize under the registry lock (see RegistryMutex).
  std::shared_ptr<Pkcs11Module> module(new Pkcs11Module(path, handle, fl), [](Pkcs11Module* m) {
    std::lock_guard guard(RegistryMutex());
    delete m;
  });
  Status init = module->Initialize();
  if (!init.ok()) {
    failed = std::move(module);
    return init;
  }
  slot = module;
  return std::shared_ptr<Pkcs11Api>(module);
}

}  // namespace concierge::backends::pkcs11
