// Test support for the PKCS#11 backend: one SoftHSM2 token directory per test
// binary (SoftHSM reads SOFTHSM2_CONF once, at C_Initialize, and a module can be
// initialised only once per process), set up by a gtest Environment through the
// same EnsureSoftHsmDevToken path `keyctl serve` uses. Each test then creates
// fresh tokens with unique labels. Also a fault-injecting Pkcs11Api wrapper.
#ifndef CONCIERGE_BACKENDS_PKCS11_SOFTHSM_TEST_ENV_H_
#define CONCIERGE_BACKENDS_PKCS11_SOFTHSM_TEST_ENV_H_

#include <atomic>
#include <memory>
#include <string>

#include "backends/pkcs11/dev_token.h"
#include "backends/pkcs11/pkcs11_api.h"

namespace concierge::backends::pkcs11::testing {

struct TestToken {
  std::string label;
  std::string user_pin;
  std::string so_pin;
  std::string pin_file;  // contains user_pin, mode 0600
  // pkcs11:token=<label>?module-path=<softhsm>&pin-source=<pin_file>
  std::string uri;
};

// nullptr when SoftHSM2 is not installed (tests then GTEST_SKIP).
class SoftHsmEnv {
 public:
  static SoftHsmEnv* Get();
  const std::string& dir() const { return dir_; }
  const DevToken& dev_token() const { return dev_; }
  Pkcs11Api& api() { return *dev_.module; }
  std::shared_ptr<Pkcs11Api> module() { return dev_.module; }
  // A new initialised token with a unique label.
  TestToken NewToken(const std::string& prefix = "t");

  // Environment plumbing.
  static void SetUpOnce();
  static void TearDownOnce();

 private:
  std::string dir_;
  DevToken dev_;
  std::atomic<int> counter_{0};
};

#define SKIP_WITHOUT_SOFTHSM()                                                        \
  do {                                                                                \
    if (::concierge::backends::pkcs11::testing::SoftHsmEnv::Get() == nullptr) {       \
      GTEST_SKIP() << "SoftHSM2 not installed (" << ::concierge::backends::pkcs11::kSoftHsmModulePath << ")"; \
    }                                                                                 \
  } while (0)

// Wraps a real module; every method passes through unless a fault is armed.
class FaultyApi final : public Pkcs11Api {
 public:
  explicit FaultyApi(std::shared_ptr<Pkcs11Api> real) : real_(std::move(real)) {}

  // The next `n` C_Sign calls return `rv` (without reaching the module).
  void FailSign(int n, CK_RV rv) {
    sign_rv_ = rv;
    fail_sign_ = n;
  }
  // While set, every session-using call returns `rv` (a removed device).
  void FailEverything(CK_RV rv) { all_rv_ = rv; }
  void Heal() {
    all_rv_ = CKR_OK;
    fail_sign_ = 0;
  }
  // C_GetMechanismInfo reports `m` unsupported.
  void HideMechanism(CK_MECHANISM_TYPE m) { hidden_mech_ = m; }
  int sign_calls() const { return sign_calls_; }
  // The key handle of the latest C_SignInit.
  CK_OBJECT_HANDLE last_sign_key() const { return last_sign_key_; }

  CK_RV GetInfo(CK_INFO* i) override { return real_->GetInfo(i); }
  CK_RV GetSlotList(CK_BBOOL p, CK_SLOT_ID* s, CK_ULONG* c) override { return real_->GetSlotList(p, s, c); }
  CK_RV GetTokenInfo(CK_SLOT_ID s, CK_TOKEN_INFO* i) override { return real_->GetTokenInfo(s, i); }
  CK_RV GetMechanismInfo(CK_SLOT_ID s, CK_MECHANISM_TYPE t, CK_MECHANISM_INFO* i) override {
    if (t == hidden_mech_) return CKR_MECHANISM_INVALID;
    return real_->GetMechanismInfo(s, t, i);
  }
  CK_RV InitToken(CK_SLOT_ID s, CK_UTF8CHAR* p, CK_ULONG l, CK_UTF8CHAR* lb) override {
    return real_->InitToken(s, p, l, lb);
  }
  CK_RV InitPIN(CK_SESSION_HANDLE s, CK_UTF8CHAR* p, CK_ULONG l) override { return real_->InitPIN(s, p, l); }
  CK_RV OpenSession(CK_SLOT_ID s, CK_FLAGS f, CK_SESSION_HANDLE* h) override {
    if (all_rv_ != CKR_OK) return all_rv_;
    return real_->OpenSession(s, f, h);
  }
  CK_RV CloseSession(CK_SESSION_HANDLE s) override { return real_->CloseSession(s); }
  CK_RV CloseAllSessions(CK_SLOT_ID s) override { return real_->CloseAllSessions(s); }
  CK_RV GetSessionInfo(CK_SESSION_HANDLE s, CK_SESSION_INFO* i) override {
    if (all_rv_ != CKR_OK) return all_rv_;
    return real_->GetSessionInfo(s, i);
  }
  CK_RV Login(CK_SESSION_HANDLE s, CK_USER_TYPE u, CK_UTF8CHAR* p, CK_ULONG l) override {
    if (all_rv_ != CKR_OK) return all_rv_;
    return real_->Login(s, u, p, l);
  }
  CK_RV Logout(CK_SESSION_HANDLE s) override { return real_->Logout(s); }
  CK_RV GenerateKeyPair(CK_SESSION_HANDLE s, CK_MECHANISM* m, CK_ATTRIBUTE* pt, CK_ULONG pc, CK_ATTRIBUTE* kt,
                        CK_ULONG kc, CK_OBJECT_HANDLE* ph, CK_OBJECT_HANDLE* kh) override {
    if (all_rv_ != CKR_OK) return all_rv_;
    return real_->GenerateKeyPair(s, m, pt, pc, kt, kc, ph, kh);
  }
  CK_RV GetAttributeValue(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE* a, CK_ULONG n) override {
    if (all_rv_ != CKR_OK) return all_rv_;
    return real_->GetAttributeValue(s, o, a, n);
  }
  CK_RV FindObjectsInit(CK_SESSION_HANDLE s, CK_ATTRIBUTE* a, CK_ULONG n) override {
    if (all_rv_ != CKR_OK) return all_rv_;
    return real_->FindObjectsInit(s, a, n);
  }
  CK_RV FindObjects(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE* o, CK_ULONG m, CK_ULONG* n) override {
    return real_->FindObjects(s, o, m, n);
  }
  CK_RV FindObjectsFinal(CK_SESSION_HANDLE s) override { return real_->FindObjectsFinal(s); }
  CK_RV DestroyObject(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o) override { return real_->DestroyObject(s, o); }
  CK_RV CopyObject(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE* a, CK_ULONG n,
                   CK_OBJECT_HANDLE* copy) override {
    if (all_rv_ != CKR_OK) return all_rv_;
    return real_->CopyObject(s, o, a, n, copy);
  }
  CK_RV SignInit(CK_SESSION_HANDLE s, CK_MECHANISM* m, CK_OBJECT_HANDLE k) override {
    last_sign_key_ = k;
    if (all_rv_ != CKR_OK) return all_rv_;
    return real_->SignInit(s, m, k);
  }
  CK_RV Sign(CK_SESSION_HANDLE s, CK_BYTE* d, CK_ULONG dl, CK_BYTE* sig, CK_ULONG* sl) override {
    ++sign_calls_;
    if (all_rv_ != CKR_OK) return all_rv_;
    if (fail_sign_ > 0) {
      --fail_sign_;
      // A failed C_Sign ends the operation; finish the real one so the session stays usable.
      CK_BYTE scratch[1024];
      CK_ULONG n = sizeof scratch;
      real_->Sign(s, d, dl, scratch, &n);
      return sign_rv_;
    }
    return real_->Sign(s, d, dl, sig, sl);
  }
  const std::string& module_path() const override { return real_->module_path(); }

 private:
  std::shared_ptr<Pkcs11Api> real_;
  std::atomic<int> fail_sign_{0};
  std::atomic<CK_RV> sign_rv_{CKR_OK};
  std::atomic<CK_RV> all_rv_{CKR_OK};
  std::atomic<CK_MECHANISM_TYPE> hidden_mech_{~CK_MECHANISM_TYPE{0}};
  std::atomic<int> sign_calls_{0};
  std::atomic<CK_OBJECT_HANDLE> last_sign_key_{CK_INVALID_HANDLE};
};

}  // namespace concierge::backends::pkcs11::testing

#endif  // CONCIERGE_BACKENDS_PKCS11_SOFTHSM_TEST_ENV_H_
