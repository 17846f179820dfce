// Pkcs11Api: the Cryptoki calls the PKCS#11 backend uses, behind a small virtual
// interface so tests can wrap a real module and inject failures (Envoy-style
// seam). Pkcs11Module is the real implementation: it dlopens a module, checks
// it, calls C_Initialize once with CKF_OS_LOCKING_OK and C_Finalize when the
// last owner goes away. Modules are shared per path through OpenPkcs11Module,
// because a module may be initialised only once per process.
//
// Thread-safety: Pkcs11Api methods may be called from any thread (the module is
// initialised with OS locking); OpenPkcs11Module is thread-safe.
//
// This header includes the PKCS#11 C header: include it only from the pkcs11
// backend's own files.
#ifndef CONCIERGE_BACKENDS_PKCS11_PKCS11_API_H_
#define CONCIERGE_BACKENDS_PKCS11_PKCS11_API_H_

#include <p11-kit/pkcs11.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "concierge/status.h"

namespace concierge::backends::pkcs11 {

class Pkcs11Api {
 public:
  virtual ~Pkcs11Api() = default;

  virtual CK_RV GetInfo(CK_INFO* info) = 0;
  virtual CK_RV GetSlotList(CK_BBOOL token_present, CK_SLOT_ID* slots, CK_ULONG* count) = 0;
  virtual CK_RV GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO* info) = 0;
  virtual CK_RV GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO* info) = 0;
  virtual CK_RV InitToken(CK_SLOT_ID slot, CK_UTF8CHAR* so_pin, CK_ULONG so_pin_len, CK_UTF8CHAR* label) = 0;
  virtual CK_RV InitPIN(CK_SESSION_HANDLE session, CK_UTF8CHAR* pin, CK_ULONG pin_len) = 0;
  virtual CK_RV OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_SESSION_HANDLE* session) = 0;
  virtual CK_RV CloseSession(CK_SESSION_HANDLE session) = 0;
  virtual CK_RV CloseAllSessions(CK_SLOT_ID slot) = 0;
  virtual CK_RV GetSessionInfo(CK_SESSION_HANDLE session, CK_SESSION_INFO* info) = 0;
  virtual CK_RV Login(CK_SESSION_HANDLE session, CK_USER_TYPE user, CK_UTF8CHAR* pin, CK_ULONG pin_len) = 0;
  virtual CK_RV Logout(CK_SESSION_HANDLE session) = 0;
  virtual CK_RV GenerateKeyPair(CK_SESSION_HANDLE session, CK_MECHANISM* mechanism, CK_ATTRIBUTE* pub_template,
                                CK_ULONG pub_count, CK_ATTRIBUTE* priv_template, CK_ULONG priv_count,
                                CK_OBJECT_HANDLE* pub_key, CK_OBJECT_HANDLE* priv_key) = 0;
  virtual CK_RV GetAttributeValue(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE* attrs,
                                  CK_ULONG count) = 0;
  virtual CK_RV FindObjectsInit(CK_SESSION_HANDLE session, CK_ATTRIBUTE* attrs, CK_ULONG count) = 0;
  virtual CK_RV FindObjects(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE* objects, CK_ULONG max,
                            CK_ULONG* count) = 0;
  virtual CK_RV FindObjectsFinal(CK_SESSION_HANDLE session) = 0;
  virtual CK_RV DestroyObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object) = 0;
  virtual CK_RV CopyObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE* attrs, CK_ULONG count,
                           CK_OBJECT_HANDLE* copy) = 0;
  virtual CK_RV SignInit(CK_SESSION_HANDLE session, CK_MECHANISM* mechanism, CK_OBJECT_HANDLE key) = 0;
  virtual CK_RV Sign(CK_SESSION_HANDLE session, CK_BYTE* data, CK_ULONG data_len, CK_BYTE* signature,
                     CK_ULONG* signature_len) = 0;

  // Path the module was loaded from (for messages).
  virtual const std::string& module_path() const = 0;
};

struct ModuleLoadOptions {
  std::string path;
  // When non-empty, `path` must be one of these (compared after realpath()).
  std::vector<std::string> allowed_paths;
};

// Loads (or returns the already loaded) module at options.path. Errors:
// kPermissionDenied when not allow-listed; kNotFound naming the path when it
// does not exist; kFailedPrecondition when dlopen fails, C_GetFunctionList is
// missing, or the Cryptoki major version is not 2; C_Initialize failures mapped
// through Pkcs11Error.
StatusOr<std::shared_ptr<Pkcs11Api>> OpenPkcs11Module(const ModuleLoadOptions& options);

// Whether a module for this path is loaded (and initialised) in this process.
bool Pkcs11ModuleLoaded(const std::string& path);

// "CKR_PIN_INCORRECT", "CKM_ECDSA", "CKR_0x80000001" for unknown values.
std::string RvName(CK_RV rv);
std::string MechanismName(CK_MECHANISM_TYPE mechanism);

// The one CK_RV -> Status table. `operation` names the call ("C_Sign"); the
// message is "PKCS#11 <operation> failed: <CKR_NAME>" (login: "PKCS#11 login
// failed: CKR_PIN_INCORRECT"). Never includes PINs or key material.
Status Pkcs11Error(std::string_view operation, CK_RV rv);
// Like Pkcs11Error for CKR_MECHANISM_INVALID / _PARAM_INVALID, naming the mechanism.
Status Pkcs11MechanismError(std::string_view operation, CK_RV rv, CK_MECHANISM_TYPE mechanism);

// Return values after which the session (or the whole token connection) is
// gone: the backend re-opens and retries once.
bool IsSessionLoss(CK_RV rv);

}  // namespace concierge::backends::pkcs11

#endif  // CONCIERGE_BACKENDS_PKCS11_PKCS11_API_H_
