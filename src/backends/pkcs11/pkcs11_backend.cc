#include "backends/pkcs11/pkcs11_backend.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <utility>

#include "backends/pkcs11/attestation.h"
#include "backends/pkcs11/pkcs11_api.h"
#include "backends/pkcs11/pkcs11_uri.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "crypto/openssl_util.h"
#include "crypto/signature.h"

namespace concierge::backends::pkcs11 {
namespace {

constexpr size_t kIdBytes = 16;
constexpr size_t kMaxLabelLength = 64;
constexpr size_t kMaxSignatureBytes = 1024;  // RSA-4096 needs 512

// DER OIDs for CKA_EC_PARAMS.
constexpr uint8_t kOidP256[] = {0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
constexpr uint8_t kOidP384[] = {0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22};
constexpr uint8_t kOidP521[] = {0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x23};
constexpr uint8_t kOidEd25519[] = {0x06, 0x03, 0x2B, 0x65, 0x70};

CK_BBOOL kTrue = CK_TRUE;
CK_BBOOL kFalse = CK_FALSE;

template <typename T>
CK_ATTRIBUTE Attr(CK_ATTRIBUTE_TYPE type, T* value) {
  return CK_ATTRIBUTE{type, value, sizeof(T)};
}
CK_ATTRIBUTE AttrBytes(CK_ATTRIBUTE_TYPE type, const void* data, size_t len) {
  return CK_ATTRIBUTE{type, const_cast<void*>(data), static_cast<CK_ULONG>(len)};
}

std::string Trim(const unsigned char* field, size_t n) {
  std::string s(reinterpret_cast<const char*>(field), n);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

std::string SanitizeLabel(std::string_view label) {
  std::string out;
  for (char c : label.substr(0, kMaxLabelLength)) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_' || c == '.' || c == '/';
    out.push_back(ok ? c : '_');
  }
  if (out.empty()) out = "key";
  return out;
}

// Reads a PIN file (pin-source). Accepts a path or a "file:" URI. A single
// trailing newline is not part of the PIN.
StatusOr<SecretBytes> ReadPinSource(const std::string& source) {
  std::string path = source;
  if (path.rfind("file://", 0) == 0) {
    path = path.substr(7);
  } else if (path.rfind("file:", 0) == 0) {
    path = path.substr(5);
  }
  if (path.empty() || path.front() != '/') {
    return InvalidArgumentError("pin-source must be an absolute file path or file: URI");
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) return FailedPreconditionError("cannot read PKCS#11 PIN file " + path);
  std::string content((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t len = content.size();
  while (len > 0 && (content[len - 1] == '\n' || content[len - 1] == '\r')) --len;
  SecretBytes pin(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(content.data()), len),
                  SecretAccess::Grant());
  std::fill(content.begin(), content.end(), '\0');
  if (pin.empty()) return FailedPreconditionError("PKCS#11 PIN file " + path + " is empty");
  return pin;
}

std::string TokenKey(const std::string& module, const Pkcs11Uri& u) {
  return module + "\n" + u.token + "\n" + u.manufacturer + "\n" + u.serial + "\n" + u.model + "\n" +
         (u.slot_id ? std::to_string(*u.slot_id) : "");
}

std::string Describe(const Pkcs11Uri& u) {
  std::string d;
  if (!u.token.empty()) d = "'" + u.token + "'";
  if (!u.serial.empty()) d += (d.empty() ? "" : " ") + std::string("serial ") + u.serial;
  if (!u.manufacturer.empty()) d += (d.empty() ? "" : " ") + std::string("manufacturer ") + u.manufacturer;
  if (!u.model.empty()) d += (d.empty() ? "" : " ") + std::string("model ") + u.model;
  if (u.slot_id) d += (d.empty() ? "" : " ") + std::string("slot-id ") + std::to_string(*u.slot_id);
  return d;
}

// ---------------------------------------------------------------------------
// Token: one logged-in token with its session pool.

struct Token;

// A pooled session; returned to the pool on destruction.
class Lease {
 public:
  Lease() = default;
  Lease(Token* t, CK_SESSION_HANDLE h, uint64_t epoch) : token_(t), handle_(h), epoch_(epoch) {}
  Lease(Lease&& o) noexcept
      : token_(std::exchange(o.token_, nullptr)), handle_(o.handle_), epoch_(o.epoch_), broken_(o.broken_) {}
  Lease& operator=(Lease&&) = delete;
  Lease(const Lease&) = delete;
  ~Lease();
  // Only on an empty lease (Token::Acquire).
  void Assign(Token* t, CK_SESSION_HANDLE h, uint64_t epoch) {
    token_ = t;
    handle_ = h;
    epoch_ = epoch;
  }
  CK_SESSION_HANDLE handle() const { return handle_; }
  uint64_t epoch() const { return epoch_; }
  void MarkBroken() { broken_ = true; }

 private:
  Token* token_ = nullptr;
  CK_SESSION_HANDLE handle_ = CK_INVALID_HANDLE;
  uint64_t epoch_ = 0;
  bool broken_ = false;
};

// Result of a Cryptoki step: the CK_RV plus which call produced it.
struct CkStep {
  CK_RV rv = CKR_OK;
  const char* op = "";
  bool ok() const { return rv == CKR_OK; }
};

struct Token {
  std::shared_ptr<Pkcs11Api> api;
  Pkcs11Uri selector;  // token attributes only
  std::string description;
  std::string label;  // from CK_TOKEN_INFO
  std::string serial;
  size_t capacity = 1;
  SecretBytes pin;
  bool login_required = true;
  // SoftHSM2's file object store re-reads a token object's file (open, fcntl
  // lock, read, close) on every attribute access, several times per
  // C_SignInit. An in-memory session copy of the key (C_CopyObject with
  // CKA_TOKEN=false: same key material, still sensitive and unextractable,
  // gone when the session that made it closes) signs without that I/O: ~35%
  // less CPU per signature measured (pkcs11_bench). Only for SoftHSM: other
  // modules may not support copies, or may recycle handles of closed sessions'
  // objects, which SoftHSM never does.
  bool sign_with_session_copy = false;

  // Session pool. Invariants (under mu): every session we believe alive is in
  // `idle` or `leased`; a lease from an earlier epoch is counted in `draining`.
  // Modules recycle session handle numbers, so no new session is handed out
  // while stale leases are still out (a stale holder must never share a handle
  // with a fresh session).
  std::mutex mu;
  std::condition_variable cv;
  CK_SLOT_ID slot = 0;
  std::vector<CK_SESSION_HANDLE> idle;
  std::vector<CK_SESSION_HANDLE> leased;  // current epoch, in use
  size_t open = 0;
  size_t draining = 0;
  uint64_t epoch = 1;
  bool logged_in = false;
  bool rediscover = false;
  bool paused = false;  // InvalidateForTest in progress

  std::atomic<bool> healthy{true};
  std::mutex err_mu;
  std::string last_error;

  void SetUnhealthy(const std::string& why) {
    healthy = false;
    std::lock_guard l(err_mu);
    last_error = why;
  }
  void SetHealthy() {
    if (!healthy.load(std::memory_order_relaxed)) healthy = true;
  }

  static bool Contains(const std::vector<CK_SESSION_HANDLE>& v, CK_SESSION_HANDLE h) {
    return std::find(v.begin(), v.end(), h) != v.end();
  }

  // Caller holds mu. Forgets the current sessions: idle ones are closed, leased
  // ones become stale (closed when returned).
  void ResetLocked(bool close_idle) {
    if (close_idle) {
      for (CK_SESSION_HANDLE h : idle) api->CloseSession(h);  // dead or alive: either way gone
    }
    idle.clear();
    draining += leased.size();
    leased.clear();
    open = 0;
    logged_in = false;
    rediscover = true;
    ++epoch;
    cv.notify_all();
  }

  // Takes an idle session or opens a new one (logging in on the first).
  CkStep Acquire(Lease* out) {
    std::unique_lock l(mu);
    cv.wait(l, [&] { return !paused && (!idle.empty() || (open < capacity && draining == 0)); });
    if (!idle.empty()) {
      CK_SESSION_HANDLE h = idle.back();
      idle.pop_back();
      leased.push_back(h);
      out->Assign(this, h, epoch);
      return {};
    }
    if (rediscover) {
      // After a reset the token may have come back in another slot.
      CK_SLOT_ID s;
      CkStep st = FindSlotLocked(&s);
      if (!st.ok()) return st;
      slot = s;
      rediscover = false;
    }
    CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
    CK_RV rv = api->OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, &h);
    if (rv != CKR_OK) return {rv, "C_OpenSession"};
    if (Contains(idle, h) || Contains(leased, h)) {
      // The module reissued a handle we thought alive: our sessions were closed
      // behind our back. Start a new epoch and wait for stale holders to finish.
      ResetLocked(/*close_idle=*/false);
      rediscover = false;
      ++open;  // h belongs to the new epoch
      leased.push_back(h);
      cv.wait(l, [&] { return draining == 0; });
    } else {
      ++open;
      leased.push_back(h);
    }
    if (!logged_in && login_required) {
      auto pin_bytes = pin.RevealMutable(SecretAccess::Grant());
      rv = api->Login(h, CKU_USER, pin_bytes.data(), pin_bytes.size());
      if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
        leased.erase(std::find(leased.begin(), leased.end(), h));
        --open;
        api->CloseSession(h);
        cv.notify_all();
        return {rv, "C_Login"};
      }
    }
    logged_in = true;
    out->Assign(this, h, epoch);
    return {};
  }

  void Release(CK_SESSION_HANDLE h, uint64_t lease_epoch, bool broken) {
    std::lock_guard l(mu);
    if (lease_epoch != epoch) {
      // Stale: close it unless the number now names one of our fresh sessions.
      if (!Contains(idle, h) && !Contains(leased, h)) api->CloseSession(h);
      --draining;
      cv.notify_all();
      return;
    }
    auto it = std::find(leased.begin(), leased.end(), h);
    if (it != leased.end()) leased.erase(it);
    if (broken) {
      api->CloseSession(h);
      --open;
    } else {
      idle.push_back(h);
    }
    cv.notify_all();
  }

  // Drops every session (and so the login) unless someone already did since
  // `seen_epoch`.
  void ResetIfEpoch(uint64_t seen_epoch) {
    std::lock_guard l(mu);
    if (seen_epoch != epoch) return;
    ResetLocked(/*close_idle=*/true);
  }

  // Simulates a device reset: all sessions closed behind the pool's back. Waits
  // until none is mid-call, since SoftHSM does not tolerate closing a session
  // another thread is using.
  void InvalidateForTest() {
    std::unique_lock l(mu);
    cv.wait(l, [&] { return !paused; });
    paused = true;
    cv.wait(l, [&] { return leased.empty() && draining == 0; });
    api->CloseAllSessions(slot);
    paused = false;
    cv.notify_all();
  }

  uint64_t CurrentEpoch() {
    std::lock_guard l(mu);
    return epoch;
  }

  CkStep FindSlotLocked(CK_SLOT_ID* out) {
    CK_ULONG n = 0;
    CK_RV rv = api->GetSlotList(CK_TRUE, nullptr, &n);
    if (rv != CKR_OK) return {rv, "C_GetSlotList"};
    std::vector<CK_SLOT_ID> slots(n);
    rv = api->GetSlotList(CK_TRUE, slots.data(), &n);
    if (rv != CKR_OK) return {rv, "C_GetSlotList"};
    slots.resize(n);
    for (CK_SLOT_ID s : slots) {
      CK_TOKEN_INFO info;
      if (api->GetTokenInfo(s, &info) != CKR_OK) continue;
      if (!(info.flags & CKF_TOKEN_INITIALIZED)) continue;
      if (Trim(info.label, 32) == label && Trim(info.serialNumber, 16) == serial) {
        *out = s;
        return {};
      }
    }
    return {CKR_TOKEN_NOT_PRESENT, "C_GetSlotList"};
  }
};

Lease::~Lease() {
  if (token_ != nullptr) token_->Release(handle_, epoch_, broken_);
}

// Cached location of a key: its token and, per session epoch, its handles.
struct KeyEntry {
  Token* token = nullptr;
  Bytes id;
  std::string label;
  CK_OBJECT_HANDLE priv = CK_INVALID_HANDLE;
  // What C_SignInit uses: `priv`, or its session copy (Token::sign_with_session_copy).
  CK_OBJECT_HANDLE sign = CK_INVALID_HANDLE;
  CK_KEY_TYPE key_type = CKK_EC;
  uint64_t epoch = 0;  // epoch `priv` and `sign` were found in; 0 = not yet
};

// Token and session objects (our session copies of keys), unless token_only.
CkStep FindObject(Pkcs11Api& api, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const KeyEntry& key,
                  std::vector<CK_OBJECT_HANDLE>* found, size_t max = 2, bool token_only = false) {
  std::vector<CK_ATTRIBUTE> tmpl = {Attr(CKA_CLASS, &cls)};
  if (token_only) tmpl.push_back(Attr(CKA_TOKEN, &kTrue));
  if (!key.id.empty()) tmpl.push_back(AttrBytes(CKA_ID, key.id.data(), key.id.size()));
  if (!key.label.empty()) tmpl.push_back(AttrBytes(CKA_LABEL, key.label.data(), key.label.size()));
  CK_RV rv = api.FindObjectsInit(s, tmpl.data(), tmpl.size());
  if (rv != CKR_OK) return {rv, "C_FindObjectsInit"};
  found->assign(max, CK_INVALID_HANDLE);
  CK_ULONG n = 0;
  rv = api.FindObjects(s, found->data(), max, &n);
  CK_RV rv_final = api.FindObjectsFinal(s);
  if (rv != CKR_OK) return {rv, "C_FindObjects"};
  if (rv_final != CKR_OK) return {rv_final, "C_FindObjectsFinal"};
  found->resize(n);
  return {};
}

CkStep GetAttr(Pkcs11Api& api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type, Bytes* out) {
  CK_ATTRIBUTE a = {type, nullptr, 0};
  CK_RV rv = api.GetAttributeValue(s, o, &a, 1);
  if (rv != CKR_OK) return {rv, "C_GetAttributeValue"};
  if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION) return {CKR_ATTRIBUTE_TYPE_INVALID, "C_GetAttributeValue"};
  out->resize(a.ulValueLen);
  a.pValue = out->data();
  rv = api.GetAttributeValue(s, o, &a, 1);
  if (rv != CKR_OK) return {rv, "C_GetAttributeValue"};
  out->resize(a.ulValueLen);
  return {};
}

// CKA_EC_POINT is a DER OCTET STRING per the spec; some modules return the raw point.
Bytes UnwrapEcPoint(const Bytes& v) {
  if (v.size() >= 2 && v[0] == 0x04) {
    size_t len = v[1];
    size_t hdr = 2;
    if (len == 0x81 && v.size() >= 3) {
      len = v[2];
      hdr = 3;
    } else if (len == 0x82 && v.size() >= 4) {
      len = (size_t{v[2]} << 8) | v[3];
      hdr = 4;
    } else if (len >= 0x80) {
      return v;
    }
    if (hdr + len == v.size()) return Bytes(v.begin() + hdr, v.end());
  }
  return v;
}

StatusOr<Bytes> EcSpki(const char* group, const Bytes& point) {
  crypto::EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, const_cast<char*>(group), 0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, const_cast<uint8_t*>(point.data()), point.size()),
      OSSL_PARAM_construct_end()};
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params) != 1) {
    return crypto::OpenSslError("building EC public key from token data");
  }
  crypto::EvpPkeyPtr key(raw);
  return crypto::PublicKeyToSpkiDer(key.get());
}

StatusOr<Bytes> RsaSpki(const Bytes& n, const Bytes& e) {
  BIGNUM* bn_n = BN_bin2bn(n.data(), static_cast<int>(n.size()), nullptr);
  BIGNUM* bn_e = BN_bin2bn(e.data(), static_cast<int>(e.size()), nullptr);
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM* params = nullptr;
  EVP_PKEY* raw = nullptr;
  crypto::EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  bool ok = bn_n && bn_e && bld && ctx && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) == 1 &&
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) == 1 &&
            (params = OSSL_PARAM_BLD_to_param(bld)) != nullptr && EVP_PKEY_fromdata_init(ctx.get()) == 1 &&
            EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params) == 1;
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  BN_free(bn_n);
  BN_free(bn_e);
  if (!ok) return crypto::OpenSslError("building RSA public key from token data");
  crypto::EvpPkeyPtr key(raw);
  return crypto::PublicKeyToSpkiDer(key.get());
}

const char* CurveForParams(const Bytes& params) {
  auto eq = [&](const auto& oid) { return params.size() == sizeof(oid) && std::equal(params.begin(), params.end(), oid); };
  if (eq(kOidP256)) return "P-256";
  if (eq(kOidP384)) return "P-384";
  if (eq(kOidP521)) return "P-521";
  return nullptr;
}

bool IsEd25519Params(const Bytes& params) {
  static const uint8_t kPrintable[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r', 'd', 's', '2', '5', '5', '1', '9'};
  auto eq = [&](const auto& v) { return params.size() == sizeof(v) && std::equal(params.begin(), params.end(), v); };
  return eq(kOidEd25519) || eq(kPrintable);
}

}  // namespace

// ---------------------------------------------------------------------------

struct Pkcs11Backend::Impl {
  Pkcs11BackendOptions options;
  size_t sessions_per_token = 1;

  std::mutex tokens_mu;  // guards modules and tokens (opening is rare)
  std::map<std::string, std::shared_ptr<Pkcs11Api>> modules;
  std::map<std::string, std::unique_ptr<Token>> tokens;  // by module + label + serial
  std::map<std::string, Token*> token_aliases;            // by module + URI selector

  std::shared_mutex keys_mu;
  std::map<std::string, KeyEntry, std::less<>> keys;

  StatusOr<std::shared_ptr<Pkcs11Api>> ModuleLocked(const Pkcs11Uri& uri, std::string* path_out) {
    std::string path = uri.module_path.empty() ? options.module_path : uri.module_path;
    if (path.empty() && !uri.module_name.empty()) {
      for (const char* dir : {"/usr/lib/x86_64-linux-gnu/pkcs11/", "/usr/lib/pkcs11/", "/usr/lib/softhsm/",
                              "/usr/local/lib/"}) {
        for (const std::string& name : {uri.module_name + ".so", "lib" + uri.module_name + ".so"}) {
          std::string candidate = dir + name;
          if (std::ifstream(candidate).good()) {
            path = candidate;
            break;
          }
        }
        if (!path.empty()) break;
      }
      if (path.empty()) return NotFoundError("PKCS#11 module named '" + uri.module_name + "' not found");
    }
    if (path.empty()) {
      return FailedPreconditionError("no PKCS#11 module: set pkcs11_module or module-path in the key URI");
    }
    *path_out = path;
    auto it = modules.find(path);
    if (it != modules.end()) return it->second;
    ASSIGN_OR_RETURN(std::shared_ptr<Pkcs11Api> api, OpenPkcs11Module({path, options.allowed_modules}));
    if (options.api_decorator) api = options.api_decorator(std::move(api));
    modules[path] = api;
    return api;
  }

  // Finds (opening and logging in on first use) the token a URI names.
  StatusOr<Token*> ResolveToken(const Pkcs11Uri& uri) {
    if (!uri.HasTokenSelector()) {
      return InvalidArgumentError("PKCS#11 key URI must name a token (e.g. pkcs11:token=<label>)");
    }
    std::lock_guard l(tokens_mu);
    std::string module_path;
    ASSIGN_OR_RETURN(std::shared_ptr<Pkcs11Api> api, ModuleLocked(uri, &module_path));
    std::string alias = TokenKey(module_path, uri);
    auto it = token_aliases.find(alias);
    if (it != token_aliases.end()) return it->second;

    auto t = std::make_unique<Token>();
    t->api = api;
    t->capacity = sessions_per_token;
    t->description = Describe(uri);
    // Find the slot.
    CK_ULONG n = 0;
    CK_RV rv = api->GetSlotList(CK_TRUE, nullptr, &n);
    if (rv != CKR_OK) return Pkcs11Error("C_GetSlotList", rv);
    std::vector<CK_SLOT_ID> slots(n);
    rv = api->GetSlotList(CK_TRUE, slots.data(), &n);
    if (rv != CKR_OK) return Pkcs11Error("C_GetSlotList", rv);
    slots.resize(n);
    bool found = false;
    CK_TOKEN_INFO info = {};
    for (CK_SLOT_ID s : slots) {
      if (uri.slot_id && *uri.slot_id != s) continue;
      if (api->GetTokenInfo(s, &info) != CKR_OK) continue;
      if (!(info.flags & CKF_TOKEN_INITIALIZED)) continue;
      if (!uri.token.empty() && Trim(info.label, 32) != uri.token) continue;
      if (!uri.manufacturer.empty() && Trim(info.manufacturerID, 32) != uri.manufacturer) continue;
      if (!uri.serial.empty() && Trim(info.serialNumber, 16) != uri.serial) continue;
      if (!uri.model.empty() && Trim(info.model, 16) != uri.model) continue;
      t->slot = s;
      found = true;
      break;
    }
    if (!found) {
      return NotFoundError("PKCS#11 token " + t->description + " not found in module " + module_path + " (" +
                           std::to_string(slots.size()) + " slot(s) with a token present)");
    }
    t->label = Trim(info.label, 32);
    t->serial = Trim(info.serialNumber, 16);
    // Another URI form (e.g. with serial) may already have opened this token.
    std::string identity = module_path + "\n" + t->label + "\n" + t->serial;
    if (auto same = tokens.find(identity); same != tokens.end()) {
      token_aliases[alias] = same->second.get();
      return same->second.get();
    }
    t->login_required = (info.flags & CKF_LOGIN_REQUIRED) != 0;
    t->sign_with_session_copy = Trim(info.manufacturerID, 32) == "SoftHSM project";
    t->selector.token = t->label;
    t->selector.serial = t->serial;

    // PIN: pin-source > KEYCTL_PKCS11_PIN > pin-value.
    if (!uri.pin_source.empty()) {
      ASSIGN_OR_RETURN(t->pin, ReadPinSource(uri.pin_source));
    } else if (options.env_pin) {
      t->pin = options.env_pin->Clone();
    } else if (uri.pin_value) {
      t->pin = uri.pin_value->Clone();
    } else if (t->login_required) {
      return FailedPreconditionError("no PIN for PKCS#11 token " + t->description +
                                     ": set pin-source in the key URI or KEYCTL_PKCS11_PIN");
    }
    // Open the first session now: a wrong PIN fails here, clearly.
    {
      Lease lease;
      CkStep st = t->Acquire(&lease);
      if (!st.ok()) {
        Status s = Pkcs11Error(st.op, st.rv);
        return Status(s.code(), s.message() + " (token " + t->description + ")");
      }
    }
    Token* raw = t.get();
    tokens.emplace(identity, std::move(t));
    token_aliases[alias] = raw;
    return raw;
  }

  // Runs `op` with a pooled session; on session/device loss resets the pool and
  // retries once; a second loss marks the token unhealthy.
  template <typename Op>
  Status WithSession(Token* t, std::string_view what, Op&& op) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      Lease lease;
      CkStep st = t->Acquire(&lease);
      if (st.ok()) st = op(lease);
      if (st.ok()) {
        t->SetHealthy();
        return Status::Ok();
      }
      if (!IsSessionLoss(st.rv) && st.rv != CKR_CRYPTOKI_NOT_INITIALIZED) {
        if (st.rv == CKR_MECHANISM_INVALID || st.rv == CKR_MECHANISM_PARAM_INVALID) {
          return Status(StatusCode::kFailedPrecondition,
                        "PKCS#11 " + std::string(st.op) + " failed: " + RvName(st.rv) + " (" + std::string(what) + ")")
              .WithDetail("ck_rv", RvName(st.rv));
        }
        return Pkcs11Error(st.op, st.rv).Annotate(what);
      }
      uint64_t seen = lease.handle() != CK_INVALID_HANDLE ? lease.epoch() : t->CurrentEpoch();
      // Reset first, then return the (now stale) lease: see Token::draining.
      t->ResetIfEpoch(seen);
      { Lease drop = std::move(lease); }
      if (attempt == 1) {
        std::string why = "PKCS#11 " + std::string(st.op) + " failed after re-opening sessions: " + RvName(st.rv);
        t->SetUnhealthy(why);
        return UnavailableError(why + " (token " + t->description + ")").WithDetail("ck_rv", RvName(st.rv));
      }
    }
    return InternalError("unreachable");
  }

  // Parses a key URI and returns (a copy of) its cache entry.
  StatusOr<KeyEntry> Key(std::string_view key_uri) {
    {
      std::shared_lock l(keys_mu);
      auto it = keys.find(key_uri);
      if (it != keys.end()) return it->second;
    }
    ASSIGN_OR_RETURN(Pkcs11Uri uri, ParsePkcs11Uri(key_uri));
    if (!uri.id && uri.object.empty()) {
      return InvalidArgumentError("PKCS#11 key URI must name the key by id or object");
    }
    if (!uri.type.empty() && uri.type != "private") {
      return InvalidArgumentError("PKCS#11 key URI must name a private key (type=private)");
    }
    ASSIGN_OR_RETURN(Token * t, ResolveToken(uri));
    KeyEntry e;
    e.token = t;
    if (uri.id) e.id = *uri.id;
    e.label = uri.object;
    std::unique_lock l(keys_mu);
    return keys.emplace(std::string(key_uri), e).first->second;
  }

  void StoreHandle(std::string_view key_uri, const KeyEntry& e) {
    std::unique_lock l(keys_mu);
    auto it = keys.find(key_uri);
    if (it != keys.end()) it->second = e;
  }

  // Ensures e.priv and e.sign are valid for the lease's epoch (re-finding
  // after a reset: session copies die with the sessions).
  CkStep LocatePrivate(Pkcs11Api& api, const Lease& lease, std::string_view key_uri, KeyEntry& e,
                       bool* not_found) {
    *not_found = false;
    if (e.epoch == lease.epoch() && e.sign != CK_INVALID_HANDLE) return {};
    if (e.epoch != lease.epoch() || e.priv == CK_INVALID_HANDLE) {
      CkStep found = FindPrivate(api, lease, e, not_found);
      if (!found.ok()) return found;
    }
    e.sign = e.priv;
    if (e.token->sign_with_session_copy) {
      CK_ATTRIBUTE tmpl[] = {Attr(CKA_TOKEN, &kFalse)};
      CK_OBJECT_HANDLE copy = CK_INVALID_HANDLE;
      // On failure (e.g. CKA_COPYABLE false) sign with the token object.
      if (api.CopyObject(lease.handle(), e.priv, tmpl, 1, &copy) == CKR_OK) e.sign = copy;
    }
    StoreHandle(key_uri, e);
    return {};
  }

  CkStep FindPrivate(Pkcs11Api& api, const Lease& lease, KeyEntry& e, bool* not_found) {
    std::vector<CK_OBJECT_HANDLE> found;
    CkStep st = FindObject(api, lease.handle(), CKO_PRIVATE_KEY, e, &found, 2, /*token_only=*/true);
    if (!st.ok()) return st;
    if (found.empty()) {
      *not_found = true;
      return {CKR_OBJECT_HANDLE_INVALID, "C_FindObjects"};
    }
    CK_KEY_TYPE kt = 0;
    CK_ATTRIBUTE a = Attr(CKA_KEY_TYPE, &kt);
    CK_RV rv = api.GetAttributeValue(lease.handle(), found[0], &a, 1);
    if (rv != CKR_OK) return {rv, "C_GetAttributeValue"};
    e.priv = found[0];
    e.key_type = kt;
    e.epoch = lease.epoch();
    return {};
  }

  StatusOr<Bytes> ReadPublicSpki(Pkcs11Api& api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE pub, CkStep* step) {
    CK_KEY_TYPE kt = 0;
    CK_ATTRIBUTE a = Attr(CKA_KEY_TYPE, &kt);
    CK_RV rv = api.GetAttributeValue(s, pub, &a, 1);
    if (rv != CKR_OK) {
      *step = {rv, "C_GetAttributeValue"};
      return Pkcs11Error("C_GetAttributeValue", rv);
    }
    auto get = [&](CK_ATTRIBUTE_TYPE type, Bytes* out) -> Status {
      CkStep st = GetAttr(api, s, pub, type, out);
      if (!st.ok()) {
        *step = st;
        return Pkcs11Error(st.op, st.rv);
      }
      return Status::Ok();
    };
    if (kt == CKK_RSA) {
      Bytes n, e;
      RETURN_IF_ERROR(get(CKA_MODULUS, &n));
      RETURN_IF_ERROR(get(CKA_PUBLIC_EXPONENT, &e));
      return RsaSpki(n, e);
    }
    Bytes params, point;
    RETURN_IF_ERROR(get(CKA_EC_PARAMS, &params));
    RETURN_IF_ERROR(get(CKA_EC_POINT, &point));
    point = UnwrapEcPoint(point);
    if (kt == CKK_EC) {
      const char* curve = CurveForParams(params);
      if (curve == nullptr) return FailedPreconditionError("PKCS#11 key uses an unsupported EC curve");
      return EcSpki(curve, point);
    }
    if (kt == CKK_EC_EDWARDS && IsEd25519Params(params) && point.size() == 32) {
      crypto::EvpPkeyPtr key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, point.data(), point.size()));
      if (!key) return crypto::OpenSslError("building Ed25519 public key from token data");
      return crypto::PublicKeyToSpkiDer(key.get());
    }
    return FailedPreconditionError("PKCS#11 public key has an unsupported key type " + std::to_string(kt));
  }

  // Best effort (YubiHSM2 profile): a certificate object sharing the key's
  // CKA_ID. Empty when the module offers none.
  std::string FetchAttestation(Pkcs11Api& api, CK_SESSION_HANDLE s, const KeyEntry& e, ByteView spki) {
    KeyEntry by_id;
    by_id.id = e.id;
    std::vector<CK_OBJECT_HANDLE> found;
    if (!FindObject(api, s, CKO_CERTIFICATE, by_id, &found, 4).ok()) return "";
    for (CK_OBJECT_HANDLE h : found) {
      Bytes der;
      if (!GetAttr(api, s, h, CKA_VALUE, &der).ok()) continue;
      auto pem = AttestationDerToPem(der);
      if (!pem.ok()) continue;
      auto covers = AttestationCoversKey(*pem, spki);
      if (covers.ok() && *covers) return *pem;
    }
    return "";
  }
};

Pkcs11Backend::Pkcs11Backend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pkcs11Backend::~Pkcs11Backend() {
  if (!impl_) return;
  // Close our sessions before the module may be finalised.
  for (auto& [k, t] : impl_->tokens) {
    std::lock_guard l(t->mu);
    for (CK_SESSION_HANDLE h : t->idle) t->api->CloseSession(h);
    t->idle.clear();
  }
}

std::string_view Pkcs11Backend::provider() const { return impl_->options.provider; }

StatusOr<std::unique_ptr<Pkcs11Backend>> Pkcs11Backend::Create(Pkcs11BackendOptions options) {
  if (options.provider != "pkcs11" && options.provider != "yubihsm2") {
    return InvalidArgumentError("PKCS#11 backend provider must be pkcs11 or yubihsm2");
  }
  auto impl = std::make_unique<Impl>();
  int sessions = options.sessions > 0 ? options.sessions : static_cast<int>(std::thread::hardware_concurrency());
  impl->sessions_per_token = static_cast<size_t>(std::clamp(sessions, 1, 256));
  impl->options = std::move(options);
  if (!impl->options.module_path.empty()) {
    std::lock_guard l(impl->tokens_mu);
    std::string path;
    RETURN_IF_ERROR(impl->ModuleLocked(Pkcs11Uri{}, &path).status());
  }
  if (!impl->options.default_key_uri.empty()) {
    ASSIGN_OR_RETURN(Pkcs11Uri uri, ParsePkcs11Uri(impl->options.default_key_uri));
    RETURN_IF_ERROR(impl->ResolveToken(uri).status());
  }
  return std::unique_ptr<Pkcs11Backend>(new Pkcs11Backend(std::move(impl)));
}

StatusOr<GeneratedKey> Pkcs11Backend::GenerateKey(const KeySpec& spec) {
  const std::string& hint = spec.location_hint.empty() ? impl_->options.default_key_uri : spec.location_hint;
  if (hint.empty()) {
    return FailedPreconditionError("no PKCS#11 token to generate in: set the policy's key_uri (pkcs11:token=...)");
  }
  ASSIGN_OR_RETURN(Pkcs11Uri uri, ParsePkcs11Uri(hint));
  ASSIGN_OR_RETURN(Token * t, impl_->ResolveToken(uri));

  KeyEntry e;
  e.token = t;
  e.id = crypto::RandomBytes(kIdBytes);
  e.label = SanitizeLabel(spec.label);

  CK_MECHANISM_TYPE gen_mech;
  CK_MECHANISM_TYPE sign_mech;
  const uint8_t* ec_params = nullptr;
  size_t ec_params_len = 0;
  CK_ULONG bits = 0;
  static const uint8_t kExponent[] = {0x01, 0x00, 0x01};
  switch (spec.algorithm) {
    case Algorithm::kES256: ec_params = kOidP256; ec_params_len = sizeof kOidP256; break;
    case Algorithm::kES384: ec_params = kOidP384; ec_params_len = sizeof kOidP384; break;
    case Algorithm::kES512: ec_params = kOidP521; ec_params_len = sizeof kOidP521; break;
    case Algorithm::kEd25519: ec_params = kOidEd25519; ec_params_len = sizeof kOidEd25519; break;
    default: bits = static_cast<CK_ULONG>(crypto::RsaBitsFor(spec.algorithm)); break;
  }
  switch (FamilyOf(spec.algorithm)) {
    case KeyFamily::kEcdsa: gen_mech = CKM_EC_KEY_PAIR_GEN; sign_mech = CKM_ECDSA; break;
    case KeyFamily::kRsaPss: gen_mech = CKM_RSA_PKCS_KEY_PAIR_GEN; sign_mech = CKM_RSA_PKCS_PSS; break;
    default: gen_mech = CKM_EC_EDWARDS_KEY_PAIR_GEN; sign_mech = CKM_EDDSA; break;
  }
  for (CK_MECHANISM_TYPE m : {gen_mech, sign_mech}) {
    CK_MECHANISM_INFO mi;
    CK_RV rv = t->api->GetMechanismInfo(t->slot, m, &mi);
    if (rv == CKR_MECHANISM_INVALID) {
      return FailedPreconditionError("PKCS#11 token " + t->description + " does not support " + MechanismName(m) +
                                     ", needed for " + std::string(AlgorithmName(spec.algorithm)));
    }
  }

  std::vector<CK_ATTRIBUTE> pub = {
      Attr(CKA_TOKEN, &kTrue), Attr(CKA_PRIVATE, &kFalse), Attr(CKA_VERIFY, &kTrue),
      AttrBytes(CKA_LABEL, e.label.data(), e.label.size()), AttrBytes(CKA_ID, e.id.data(), e.id.size())};
  if (ec_params != nullptr) {
    pub.push_back(AttrBytes(CKA_EC_PARAMS, ec_params, ec_params_len));
  } else {
    pub.push_back(Attr(CKA_MODULUS_BITS, &bits));
    pub.push_back(AttrBytes(CKA_PUBLIC_EXPONENT, kExponent, sizeof kExponent));
  }
  std::vector<CK_ATTRIBUTE> priv = {
      Attr(CKA_TOKEN, &kTrue),        Attr(CKA_PRIVATE, &kTrue), Attr(CKA_SENSITIVE, &kTrue),
      Attr(CKA_EXTRACTABLE, &kFalse), Attr(CKA_SIGN, &kTrue),
      AttrBytes(CKA_LABEL, e.label.data(), e.label.size()), AttrBytes(CKA_ID, e.id.data(), e.id.size())};
  CK_MECHANISM mech = {gen_mech, nullptr, 0};

  Bytes spki;
  std::string attestation;
  Status spki_status;
  Status st = impl_->WithSession(t, "generating key", [&](const Lease& lease) -> CkStep {
    CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE;
    CK_RV rv = t->api->GenerateKeyPair(lease.handle(), &mech, pub.data(), pub.size(), priv.data(), priv.size(),
                                       &hpub, &hpriv);
    if (rv != CKR_OK) return {rv, "C_GenerateKeyPair"};
    CkStep read;
    auto der = impl_->ReadPublicSpki(*t->api, lease.handle(), hpub, &read);
    if (!der.ok()) {
      spki_status = der.status();
      t->api->DestroyObject(lease.handle(), hpriv);
      t->api->DestroyObject(lease.handle(), hpub);
      return read;  // CKR_OK when the failure was ours, not the token's
    }
    spki = *std::move(der);
    e.priv = hpriv;
    e.epoch = lease.epoch();
    e.key_type = ec_params == nullptr ? CKK_RSA : (gen_mech == CKM_EC_KEY_PAIR_GEN ? CKK_EC : CKK_EC_EDWARDS);
    if (impl_->options.provider == "yubihsm2") attestation = impl_->FetchAttestation(*t->api, lease.handle(), e, spki);
    return {};
  });
  if (st.ok() && !spki_status.ok()) st = spki_status;
  if (!st.ok()) {
    if (st.details().count("ck_rv") && st.details().at("ck_rv") == "CKR_MECHANISM_INVALID") {
      return FailedPreconditionError("PKCS#11 token " + t->description + " does not support " +
                                     MechanismName(gen_mech) + " for " + std::string(AlgorithmName(spec.algorithm)));
    }
    return st;
  }
  if (spki.empty()) return spki_status.ok() ? InternalError("public key read-back failed") : spki_status;

  Pkcs11Uri out;
  out.token = t->label;
  out.serial = t->serial;
  out.object = e.label;
  out.id = e.id;
  out.type = "private";
  out.module_path = uri.module_path;
  out.pin_source = uri.pin_source;  // never pin-value
  GeneratedKey g;
  g.uri = FormatPkcs11Uri(out);
  g.public_key_spki_der = std::move(spki);
  g.attestation = std::move(attestation);
  {
    std::unique_lock l(impl_->keys_mu);
    impl_->keys[g.uri] = e;
  }
  return g;
}

StatusOr<Bytes> Pkcs11Backend::SignDigest(std::string_view key_uri, Algorithm alg, ByteView digest) {
  if (!DigestSizeAccepted(alg, digest.size())) {
    return FieldError("digest", "digest length " + std::to_string(digest.size()) + " does not fit " +
                                    std::string(AlgorithmName(alg)));
  }
  return SignBytes(key_uri, alg, digest);
}

StatusOr<Bytes> Pkcs11Backend::SignMessage(std::string_view key_uri, Algorithm alg, ByteView message) {
  if (FamilyOf(alg) != KeyFamily::kEdDsa) {
    return UnimplementedError("whole-message signing is for Ed25519; hash and use SignDigest for " +
                              std::string(AlgorithmName(alg)));
  }
  // CKM_EDDSA without parameters is PureEdDSA: the token signs the message itself.
  return SignBytes(key_uri, alg, message);
}

StatusOr<Bytes> Pkcs11Backend::SignBytes(std::string_view key_uri, Algorithm alg, ByteView digest) {
  ASSIGN_OR_RETURN(KeyEntry e, impl_->Key(key_uri));
  Token* t = e.token;
  KeyFamily family = FamilyOf(alg);
  CK_KEY_TYPE want = family == KeyFamily::kEcdsa ? CKK_EC : family == KeyFamily::kRsaPss ? CKK_RSA : CKK_EC_EDWARDS;

  CK_RSA_PKCS_PSS_PARAMS pss = {};
  CK_MECHANISM mech = {CKM_ECDSA, nullptr, 0};
  if (family == KeyFamily::kRsaPss) {
    switch (digest.size()) {
      case 32: pss = {CKM_SHA256, CKG_MGF1_SHA256, 32}; break;
      case 48: pss = {CKM_SHA384, CKG_MGF1_SHA384, 48}; break;
      default: pss = {CKM_SHA512, CKG_MGF1_SHA512, 64}; break;
    }
    mech = {CKM_RSA_PKCS_PSS, &pss, sizeof pss};
  } else if (family == KeyFamily::kEdDsa) {
    mech = {CKM_EDDSA, nullptr, 0};
  }

  uint8_t sig[kMaxSignatureBytes];
  CK_ULONG sig_len = 0;
  bool not_found = false;
  bool wrong_type = false;
  Status st = impl_->WithSession(t, "signing", [&](const Lease& lease) -> CkStep {
    CkStep loc = impl_->LocatePrivate(*t->api, lease, key_uri, e, &not_found);
    if (!loc.ok()) return loc;
    if (e.key_type != want) {
      wrong_type = true;
      return {CKR_KEY_TYPE_INCONSISTENT, "C_SignInit"};
    }
    CK_RV rv = t->api->SignInit(lease.handle(), &mech, e.sign);
    if (rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID) {
      // Stale cached handle (key re-created, token restored, or the session
      // that made the copy closed): find again.
      e.epoch = 0;
      loc = impl_->LocatePrivate(*t->api, lease, key_uri, e, &not_found);
      if (!loc.ok()) return loc;
      rv = t->api->SignInit(lease.handle(), &mech, e.sign);
    }
    if (rv != CKR_OK) return {rv, "C_SignInit"};
    sig_len = sizeof sig;
    rv = t->api->Sign(lease.handle(), const_cast<uint8_t*>(digest.data()), digest.size(), sig, &sig_len);
    if (rv != CKR_OK) return {rv, "C_Sign"};
    return {};
  });
  if (!st.ok()) {
    if (not_found) return NotFoundError("PKCS#11 key not found on token " + t->description);
    if (wrong_type) {
      return FailedPreconditionError("PKCS#11 key type does not match algorithm " + std::string(AlgorithmName(alg)));
    }
    if (st.details().count("ck_rv") && st.details().at("ck_rv") == "CKR_MECHANISM_INVALID") {
      return FailedPreconditionError("PKCS#11 token " + t->description + " does not support " +
                                     MechanismName(mech.mechanism));
    }
    return st;
  }
  if (family == KeyFamily::kEcdsa) return crypto::EcdsaP1363ToDer(ByteView(sig, sig_len));
  return Bytes(sig, sig + sig_len);
}

StatusOr<Bytes> Pkcs11Backend::PublicKeySpkiDer(std::string_view key_uri) {
  ASSIGN_OR_RETURN(KeyEntry e, impl_->Key(key_uri));
  Token* t = e.token;
  StatusOr<Bytes> result = NotFoundError("PKCS#11 public key not found on token " + t->description);
  Status st = impl_->WithSession(t, "reading public key", [&](const Lease& lease) -> CkStep {
    std::vector<CK_OBJECT_HANDLE> found;
    CkStep fs = FindObject(*t->api, lease.handle(), CKO_PUBLIC_KEY, e, &found);
    if (!fs.ok()) return fs;
    if (found.empty()) return {};
    CkStep read;
    result = impl_->ReadPublicSpki(*t->api, lease.handle(), found[0], &read);
    return read;
  });
  if (!st.ok()) return st;
  return result;
}

Status Pkcs11Backend::DestroyKey(std::string_view key_uri) {
  ASSIGN_OR_RETURN(KeyEntry e, impl_->Key(key_uri));
  Token* t = e.token;
  size_t destroyed = 0;
  Status st = impl_->WithSession(t, "destroying key", [&](const Lease& lease) -> CkStep {
    for (CK_OBJECT_CLASS cls : {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY}) {
      std::vector<CK_OBJECT_HANDLE> found;
      CkStep fs = FindObject(*t->api, lease.handle(), cls, e, &found, 8);
      if (!fs.ok()) return fs;
      for (CK_OBJECT_HANDLE h : found) {
        CK_RV rv = t->api->DestroyObject(lease.handle(), h);
        if (rv != CKR_OK) return {rv, "C_DestroyObject"};
        ++destroyed;
      }
    }
    return {};
  });
  RETURN_IF_ERROR(st);
  {
    std::unique_lock l(impl_->keys_mu);
    impl_->keys.erase(std::string(key_uri));
  }
  if (destroyed == 0) return NotFoundError("PKCS#11 key not found on token " + t->description);
  return Status::Ok();
}

BackendHealth Pkcs11Backend::Health() {
  std::vector<Token*> tokens;
  {
    std::lock_guard l(impl_->tokens_mu);
    for (auto& [k, t] : impl_->tokens) tokens.push_back(t.get());
  }
  BackendHealth h;
  if (tokens.empty()) {
    h.healthy = true;
    h.detail = "no PKCS#11 token opened yet (probe: none)";
    return h;
  }
  h.healthy = true;
  std::string detail;
  for (Token* t : tokens) {
    Status st = impl_->WithSession(t, "health probe", [&](const Lease& lease) -> CkStep {
      CK_SESSION_INFO info;
      CK_RV rv = t->api->GetSessionInfo(lease.handle(), &info);
      if (rv != CKR_OK) return {rv, "C_GetSessionInfo"};
      return {};
    });
    if (!detail.empty()) detail += "; ";
    if (st.ok()) {
      detail += "token " + t->description + " ok";
    } else {
      h.healthy = false;
      detail += "token " + t->description + " unhealthy: " + st.message();
    }
  }
  h.detail = detail + " (probe: C_GetSessionInfo on a pooled session)";
  return h;
}

void Pkcs11Backend::InvalidateSessionsForTest() {
  std::lock_guard l(impl_->tokens_mu);
  for (auto& [k, t] : impl_->tokens) t->InvalidateForTest();
}

}  // namespace concierge::backends::pkcs11
