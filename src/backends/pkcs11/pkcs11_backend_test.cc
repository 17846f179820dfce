// Pkcs11Backend against a real SoftHSM2 token (and a fault-injecting wrapper
// around it). Signatures are checked with our verifier and the openssl CLI.
#include "backends/pkcs11/pkcs11_backend.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <thread>
#include <vector>

#include "backends/pkcs11/pkcs11_api.h"
#include "backends/pkcs11/pkcs11_uri.h"
#include "backends/pkcs11/softhsm_test_env.h"
#include "crypto/eddsa.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "crypto/signature.h"
#include "testing/test_util.h"

namespace concierge::backends::pkcs11 {
namespace {

using ::concierge::backends::pkcs11::testing::FaultyApi;
using ::concierge::backends::pkcs11::testing::SoftHsmEnv;
using ::concierge::backends::pkcs11::testing::TestToken;

std::unique_ptr<Pkcs11Backend> MustCreate(Pkcs11BackendOptions o) {
  auto b = Pkcs11Backend::Create(std::move(o));
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return b.ok() ? *std::move(b) : nullptr;
}

Pkcs11BackendOptions OptionsFor(const TestToken& t, int sessions = 2) {
  Pkcs11BackendOptions o;
  o.module_path = kSoftHsmModulePath;
  o.sessions = sessions;
  o.default_key_uri = t.uri;
  return o;
}

// Options whose module is wrapped in a FaultyApi; *fake receives the wrapper.
Pkcs11BackendOptions FaultyOptionsFor(const TestToken& t, std::shared_ptr<FaultyApi>* fake) {
  Pkcs11BackendOptions o = OptionsFor(t);
  o.api_decorator = [fake](std::shared_ptr<Pkcs11Api> real) {
    *fake = std::make_shared<FaultyApi>(std::move(real));
    return std::shared_ptr<Pkcs11Api>(*fake);
  };
  return o;
}

void ExpectVerifies(KeyBackend& b, const GeneratedKey& key, Algorithm alg, const std::string& dir) {
  const std::string data = "claim bytes " + std::string(AlgorithmName(alg));
  Bytes digest = crypto::DigestFor(alg, crypto::AsBytes(data));
  auto sig = b.SignDigest(key.uri, alg, digest);
  ASSERT_TRUE(sig.ok()) << sig.status().ToString();
  auto pub = crypto::PublicKeyFromSpkiDer(key.public_key_spki_der);
  ASSERT_TRUE(pub.ok()) << pub.status().ToString();
  EXPECT_TRUE(crypto::CheckKeyMatchesAlgorithm(pub->get(), alg).ok());
  Status v = crypto::VerifyDigest(pub->get(), alg, digest, *sig);
  EXPECT_TRUE(v.ok()) << v.ToString();

  // Independent check with the openssl CLI on the exported SPKI PEM.
  auto pem = crypto::SpkiDerToPem(key.public_key_spki_der);
  ASSERT_TRUE(pem.ok());
  ::concierge::testing::WriteFile(dir + "/pub.pem", *pem);
  ::concierge::testing::WriteFile(dir + "/data.bin", data);
  ::concierge::testing::WriteFile(dir + "/digest.bin", crypto::AsString(digest));
  ::concierge::testing::WriteFile(dir + "/sig.bin", crypto::AsString(*sig));
  std::string cmd;
  switch (FamilyOf(alg)) {
    case KeyFamily::kEcdsa:
      cmd = "openssl dgst -" + std::string(DigestName(alg)) + " -verify " + dir + "/pub.pem -signature " + dir +
            "/sig.bin " + dir + "/data.bin";
      break;
    case KeyFamily::kRsaPss:
      cmd = "openssl dgst -" + std::string(DigestName(alg)) + " -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:" +
            std::to_string(DigestSize(alg)) + " -verify " + dir + "/pub.pem -signature " + dir + "/sig.bin " + dir +
            "/data.bin";
      break;
    case KeyFamily::kEdDsa:
      cmd = "openssl pkeyutl -verify -pubin -inkey " + dir + "/pub.pem -rawin -in " + dir + "/digest.bin -sigfile " +
            dir + "/sig.bin";
      break;
  }
  auto r = ::concierge::testing::RunCommand(cmd);
  EXPECT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
  EXPECT_NE(r.output.find("Verified"), std::string::npos) << r.output;
}

// A fresh logged-in session on the test token (CK_INVALID_HANDLE if missing).
CK_SESSION_HANDLE OpenUserSession(const TestToken& t) {
  Pkcs11Api& api = SoftHsmEnv::Get()->api();
  CK_ULONG n = 16;
  CK_SLOT_ID slots[16];
  EXPECT_EQ(api.GetSlotList(CK_TRUE, slots, &n), CKR_OK);
  for (CK_ULONG i = 0; i < n; ++i) {
    CK_TOKEN_INFO info;
    api.GetTokenInfo(slots[i], &info);
    std::string label(reinterpret_cast<char*>(info.label), 32);
    if (label.substr(0, t.label.size()) != t.label || label.find_first_not_of(' ', t.label.size()) != std::string::npos) {
      continue;
    }
    CK_SESSION_HANDLE s;
    EXPECT_EQ(api.OpenSession(slots[i], CKF_SERIAL_SESSION, &s), CKR_OK);
    CK_RV login = api.Login(s, CKU_USER, reinterpret_cast<CK_UTF8CHAR*>(const_cast<char*>(t.user_pin.data())),
                            t.user_pin.size());
    EXPECT_TRUE(login == CKR_OK || login == CKR_USER_ALREADY_LOGGED_IN) << RvName(login);
    return s;
  }
  ADD_FAILURE() << "token " << t.label << " not found";
  return CK_INVALID_HANDLE;
}

// Private key objects with the CKA_ID of `uri`: token objects, or all (token
// and this process's session objects).
std::vector<CK_OBJECT_HANDLE> PrivateKeyObjects(Pkcs11Api& api, CK_SESSION_HANDLE s, const std::string& uri,
                                                bool token_only) {
  auto parsed = ParsePkcs11Uri(uri);
  EXPECT_TRUE(parsed.ok() && parsed->id);
  CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
  CK_BBOOL yes = CK_TRUE;
  CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls},
                         {CKA_ID, parsed->id->data(), parsed->id->size()},
                         {CKA_TOKEN, &yes, sizeof yes}};
  EXPECT_EQ(api.FindObjectsInit(s, tmpl, token_only ? 3 : 2), CKR_OK);
  std::vector<CK_OBJECT_HANDLE> found(64);
  CK_ULONG n = 0;
  api.FindObjects(s, found.data(), found.size(), &n);
  api.FindObjectsFinal(s);
  found.resize(n);
  return found;
}

CK_BBOOL BoolAttribute(Pkcs11Api& api, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type) {
  CK_BBOOL value = CK_FALSE;
  CK_ATTRIBUTE a = {type, &value, sizeof value};
  EXPECT_EQ(api.GetAttributeValue(s, h, &a, 1), CKR_OK);
  return value;
}

// Reads a boolean attribute of the private key named by `uri` with a fresh session.
CK_BBOOL ReadBool(const TestToken& t, const std::string& uri, CK_ATTRIBUTE_TYPE type) {
  Pkcs11Api& api = SoftHsmEnv::Get()->api();
  CK_SESSION_HANDLE s = OpenUserSession(t);
  if (s == CK_INVALID_HANDLE) return CK_FALSE;
  auto found = PrivateKeyObjects(api, s, uri, /*token_only=*/true);
  EXPECT_EQ(found.size(), 1u);
  CK_BBOOL value = found.empty() ? CK_FALSE : BoolAttribute(api, s, found[0], type);
  api.CloseSession(s);
  return value;
}

class Pkcs11BackendTest : public ::testing::Test {
 protected:
  void SetUp() override { SKIP_WITHOUT_SOFTHSM(); }
  ::concierge::testing::TempDir dir_;
};

TEST_F(Pkcs11BackendTest, GenerateSignVerifyEveryFamily) {
  TestToken t = SoftHsmEnv::Get()->NewToken();
  auto b = MustCreate(OptionsFor(t));
  ASSERT_TRUE(b);
  EXPECT_EQ(b->provider(), "pkcs11");
  for (Algorithm alg : {Algorithm::kES256, Algorithm::kES384, Algorithm::kES512, Algorithm::kPS256}) {
    SCOPED_TRACE(std::string(AlgorithmName(alg)));
    auto key = b->GenerateKey({alg, "acme-news/v1", ""});
    ASSERT_TRUE(key.ok()) << key.status().ToString();
    EXPECT_TRUE(key->uri.starts_with("pkcs11:token=" + t.label)) << key->uri;
    EXPECT_EQ(key->uri.find("pin-value"), std::string::npos);
    ExpectVerifies(*b, *key, alg, dir_.path());
    auto spki = b->PublicKeySpkiDer(key->uri);
    ASSERT_TRUE(spki.ok()) << spki.status().ToString();
    EXPECT_EQ(*spki, key->public_key_spki_der);
  }
}

TEST_F(Pkcs11BackendTest, Ed25519WhenTheModuleSupportsIt) {
  TestToken t = SoftHsmEnv::Get()->NewToken();
  auto b = MustCreate(OptionsFor(t));
  ASSERT_TRUE(b);
  auto key = b->GenerateKey({Algorithm::kEd25519, "ed/v1", ""});
  if (!key.ok() && key.status().code() == StatusCode::kFailedPrecondition) {
    GTEST_SKIP() << "this SoftHSM2 build has no Ed25519: " << key.status().message();
  }
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  ExpectVerifies(*b, *key, Algorithm::kEd25519, dir_.path());
  // PureEdDSA over a whole message of any length (X.509 TBS, COSE Sig_structure).
  std::string message(1000, 'm');
  auto sig = b->SignMessage(key->uri, Algorithm::kEd25519, crypto::AsBytes(message));
  ASSERT_TRUE(sig.ok()) << sig.status().ToString();
  auto pub = crypto::PublicKeyFromSpkiDer(key->public_key_spki_der);
  ASSERT_TRUE(pub.ok());
  EXPECT_TRUE(crypto::Ed25519VerifyMessage(pub->get(), crypto::AsBytes(message), *sig).ok());
  EXPECT_EQ(b->SignMessage(key->uri, Algorithm::kES256, crypto::AsBytes(message)).status().code(),
            StatusCode::kUnimplemented);
}

TEST_F(Pkcs11BackendTest, PrivateKeyIsSensitiveAndNeverExtractable) {
  TestToken t = SoftHsmEnv::Get()->NewToken();
  auto b = MustCreate(OptionsFor(t));
  ASSERT_TRUE(b);
  auto key = b->GenerateKey({Algorithm::kES256, "attrs/v1", ""});
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(ReadBool(t, key->uri, CKA_SENSITIVE), CK_TRUE);
  EXPECT_EQ(ReadBool(t, key->uri, CKA_EXTRACTABLE), CK_FALSE);
  EXPECT_EQ(ReadBool(t, key->uri, CKA_NEVER_EXTRACTABLE), CK_TRUE);
  EXPECT_EQ(ReadBool(t, key->uri, CKA_ALWAYS_SENSITIVE), CK_TRUE);
  EXPECT_EQ(ReadBool(t, key->uri, CKA_TOKEN), CK_TRUE);
  EXPECT_EQ(ReadBool(t, key->uri, CKA_PRIVATE), CK_TRUE);
}

// SoftHSM2 re-reads a token object's file on every attribute access; the
// backend signs with an in-memory session copy instead. The copy must stay
// sensitive, unextractable and out of the token, and go with DestroyKey.
TEST_F(Pkcs11BackendTest, SoftHsmSignsWithASessionCopyThatNeverReachesTheToken) {
  TestToken t = SoftHsmEnv::Get()->NewToken();
  std::shared_ptr<FaultyApi> fake;
  auto b = MustCreate(FaultyOptionsFor(t, &fake));
  ASSERT_TRUE(b);
  auto key = b->GenerateKey({Algorithm::kES256, "copy/v1", ""});
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  ExpectVerifies(*b, *key, Algorithm::kES256, dir_.path());
  ExpectVerifies(*b, *key, Algorithm::kES256, dir_.path());

  Pkcs11Api& api = SoftHsmEnv::Get()->api();
  CK_SESSION_HANDLE s = OpenUserSession(t);
  ASSERT_NE(s, CK_INVALID_HANDLE);
  auto token_objects = PrivateKeyObjects(api, s, key->uri, /*token_only=*/true);
  ASSERT_EQ(token_objects.size(), 1u);  // signing stored nothing on the token
  CK_OBJECT_HANDLE used = fake->last_sign_key();
  EXPECT_NE(used, token_objects[0]);
  EXPECT_EQ(BoolAttribute(api, s, used, CKA_TOKEN), CK_FALSE);
  EXPECT_EQ(BoolAttribute(api, s, used, CKA_SENSITIVE), CK_TRUE);
  EXPECT_EQ(BoolAttribute(api, s, used, CKA_EXTRACTABLE), CK_FALSE);
  EXPECT_EQ(PrivateKeyObjects(api, s, key->uri, /*token_only=*/false).size(), 2u);  // the key and one copy

  ASSERT_TRUE(b->DestroyKey(key->uri).ok());
  EXPECT_TRUE(PrivateKeyObjects(api, s, key->uri, /*token_only=*/false).empty());  // copy included
  api.CloseSession(s);
  auto gone = b->SignDigest(key->uri, Algorithm::kES256, crypto::Sha256(crypto::AsBytes("x")));
  EXPECT_EQ(gone.status().code(), StatusCode::kNotFound) << gone.status().ToString();
}

TEST_F(Pkcs11BackendTest, KeysSurviveANewBackendAndDestroyWorks) {
  TestToken t = SoftHsmEnv::Get()->NewToken();
  GeneratedKey key;
  {
    auto b = MustCreate(OptionsFor(t));
    ASSERT_TRUE(b);
    auto k = b->GenerateKey({Algorithm::kES256, "tenant with spaces & / ;?/v2", ""});
    ASSERT_TRUE(k.ok()) << k.status().ToString();
    key = *k;
  }
  // The stored URI alone (with pin-source, no default token) is enough.
  Pkcs11BackendOptions o;
  o.module_path = kSoftHsmModulePath;
  auto b = MustCreate(std::move(o));
  ASSERT_TRUE(b);
  ExpectVerifies(*b, key, Algorithm::kES256, dir_.path());
  // Algorithm that does not fit the key type.
  auto wrong = b->SignDigest(key.uri, Algorithm::kPS256, crypto::Sha256(crypto::AsBytes("x")));
  EXPECT_EQ(wrong.status().code(), StatusCode::kFailedPrecondition) << wrong.status().ToString();
  auto bad_digest = b->SignDigest(key.uri, Algorithm::kES256, Bytes(31, 1));
  EXPECT_EQ(bad_digest.status().code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(b->DestroyKey(key.uri).ok());
  auto gone = b->SignDigest(key.uri, Algorithm::kES256, crypto::Sha256(crypto::AsBytes("x")));
  EXPECT_EQ(gone.status().code(), StatusCode::kNotFound) << gone.status().ToString();
  EXPECT_EQ(b->DestroyKey(key.uri).code(), StatusCode::kNotFound);
}

TEST_F(Pkcs11BackendTest, PinValueIsUsedInMemoryButNeverStored) {
  TestToken t = SoftHsmEnv::Get()->NewToken();
  std::string hint = "pkcs11:token=" + t.label + "?pin-value=" + t.user_pin;
  Pkcs11BackendOptions o;
  o.module_path = kSoftHsmModulePath;
  auto b = MustCreate(std::move(o));
  ASSERT_TRUE(b);
  auto key = b->GenerateKey({Algorithm::kES256, "pinned/v1", hint});
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(key->uri.find("pin-value"), std::string::npos) << key->uri;
  EXPECT_EQ(key->uri.find(t.user_pin), std::string::npos) << key->uri;
  ExpectVerifies(*b, *key, Algorithm::kES256, dir_.path());  // same process: PIN cached per token

  // After a "restart" without pin-source or KEYCTL_PKCS11_PIN: a clear error.
  Pkcs11BackendOptions o2;
  o2.module_path = kSoftHsmModulePath;
  auto restarted = MustCreate(std::move(o2));
  auto sig = restarted->SignDigest(key->uri, Algorithm::kES256, crypto::Sha256(crypto::AsBytes("x")));
  EXPECT_EQ(sig.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(sig.status().message().find("KEYCTL_PKCS11_PIN"), std::string::npos) << sig.status().message();
  // ... and with the environment PIN it works.
  Pkcs11BackendOptions o3;
  o3.module_path = kSoftHsmModulePath;
  o3.env_pin = SecretBytes::FromString(t.user_pin, SecretAccess::Grant());
  auto with_env = MustCreate(std::move(o3));
  EXPECT_TRUE(with_env->SignDigest(key->uri, Algorithm::kES256, crypto::Sha256(crypto::AsBytes("x"))).ok());
}

TEST_F(Pkcs11BackendTest, InvalidatedSessionsLoseNoRequest) {
  TestToken t = SoftHsmEnv::Get()->NewToken();
  auto b = MustCreate(OptionsFor(t));
  ASSERT_TRUE(b);
  auto key = b->GenerateKey({Algorithm::kES256, "reset/v1", ""});
  ASSERT_TRUE(key.ok());
  Bytes digest = crypto::Sha256(crypto::AsBytes("x"));
  ASSERT_TRUE(b->SignDigest(key->uri, Algorithm::kES256, digest).ok());
  for (int i = 0; i < 3; ++i) {
    b->InvalidateSessionsForTest();
    auto sig = b->SignDigest(key->uri, Algorithm::kES256, digest);
    EXPECT_TRUE(sig.ok()) << sig.status().ToString();
    EXPECT_TRUE(b->Health().healthy);
  }
  // Also a probe right after the kill recovers by itself.
  b->InvalidateSessionsForTest();
  BackendHealth h = b->Health();
  EXPECT_TRUE(h.healthy) << h.detail;
  EXPECT_NE(h.detail.find("C_GetSessionInfo"), std::string::npos) << h.detail;
}

TEST_F(Pkcs11BackendTest, SessionInvalidOnceIsRetriedTransparently) {
  TestToken t = SoftHsmEnv::Get()->NewToken();
  std::shared_ptr<FaultyApi> fake;
  auto b = MustCreate(FaultyOptionsFor(t, &fake));
  ASSERT_TRUE(b && fake);
  auto key = b->GenerateKey({Algorithm::kES256, "retry/v1", ""});
  ASSERT_TRUE(key.ok());
  fake->FailSign(1, CKR_SESSION_HANDLE_INVALID);
  auto sig = b->SignDigest(key->uri, Algorithm::kES256, crypto::Sha256(crypto::AsBytes("x")));
  EXPECT_TRUE(sig.ok()) << sig.status().ToString();
  EXPECT_EQ(fake->sign_calls(), 2);
}

TEST_F(Pkcs11BackendTest, DeviceRemovedTwiceIsUnavailableThenRecovers) {
  TestToken t = SoftHsmEnv::Get()->NewToken();
  std::shared_ptr<FaultyApi> fake;
  auto b = MustCreate(FaultyOptionsFor(t, &fake));
  ASSERT_TRUE(b && fake);
  auto key = b->GenerateKey({Algorithm::kPS256, "removed/v1", ""});
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  Bytes digest = crypto::Sha256(crypto::AsBytes("x"));

  fake->FailSign(2, CKR_DEVICE_REMOVED);
  auto sig = b->SignDigest(key->uri, Algorithm::kPS256, digest);
  EXPECT_EQ(sig.status().code(), StatusCode::kUnavailable) << sig.status().ToString();
  EXPECT_NE(sig.status().message().find("CKR_DEVICE_REMOVED"), std::string::npos);

  // The device stays away: the probe fails too and says why.
  fake->FailEverything(CKR_DEVICE_REMOVED);
  BackendHealth h = b->Health();
  EXPECT_FALSE(h.healthy);
  EXPECT_NE(h.detail.find("CKR_DEVICE_REMOVED"), std::string::npos) << h.detail;
  EXPECT_EQ(b->SignDigest(key->uri, Algorithm::kPS256, digest).status().code(), StatusCode::kUnavailable);

  // Device back: recovery without a restart.
  fake->Heal();
  auto again = b->SignDigest(key->uri, Algorithm::kPS256, digest);
  EXPECT_TRUE(again.ok()) << again.status().ToString();
  h = b->Health();
  EXPECT_TRUE(h.healthy) << h.detail;
}

TEST_F(Pkcs11BackendTest, UnsupportedMechanismIsAClearError) {
  TestToken t = SoftHsmEnv::Get()->NewToken();
  std::shared_ptr<FaultyApi> fake;
  auto b = MustCreate(FaultyOptionsFor(t, &fake));
  ASSERT_TRUE(b && fake);
  fake->HideMechanism(CKM_EC_EDWARDS_KEY_PAIR_GEN);
  auto key = b->GenerateKey({Algorithm::kEd25519, "ed/v1", ""});
  EXPECT_EQ(key.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(key.status().message().find("CKM_EC_EDWARDS_KEY_PAIR_GEN"), std::string::npos)
      << key.status().message();
}

TEST_F(Pkcs11BackendTest, WrongPinIsPermissionDeniedWithoutThePin) {
  TestToken t = SoftHsmEnv::Get()->NewToken("wrongpin");
  const std::string wrong = "not-the-pin-4711";
  Pkcs11BackendOptions o;
  o.module_path = kSoftHsmModulePath;
  o.default_key_uri = "pkcs11:token=" + t.label + "?pin-value=" + wrong;
  auto b = Pkcs11Backend::Create(std::move(o));
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), StatusCode::kPermissionDenied) << b.status().ToString();
  EXPECT_NE(b.status().message().find("PKCS#11 login failed: CKR_PIN_INCORRECT"), std::string::npos)
      << b.status().message();
  EXPECT_EQ(b.status().ToString().find(wrong), std::string::npos);
  EXPECT_EQ(b.status().ToString().find(t.user_pin), std::string::npos);
}

TEST_F(Pkcs11BackendTest, MissingModuleNamesThePath) {
  Pkcs11BackendOptions o;
  o.module_path = "/nonexistent/libvendor-pkcs11.so";
  auto b = Pkcs11Backend::Create(std::move(o));
  EXPECT_EQ(b.status().code(), StatusCode::kNotFound);
  EXPECT_NE(b.status().message().find("/nonexistent/libvendor-pkcs11.so"), std::string::npos);
}

TEST_F(Pkcs11BackendTest, ModuleOutsideAllowListIsRefused) {
  Pkcs11BackendOptions o;
  o.module_path = kSoftHsmModulePath;
  o.allowed_modules = {"/usr/lib/x86_64-linux-gnu/pkcs11/yubihsm_pkcs11.so"};
  auto b = Pkcs11Backend::Create(std::move(o));
  EXPECT_EQ(b.status().code(), StatusCode::kPermissionDenied) << b.status().ToString();
  EXPECT_NE(b.status().message().find(kSoftHsmModulePath), std::string::npos);
  // A key URI naming a module outside the list is refused as well.
  Pkcs11BackendOptions o2;
  o2.allowed_modules = {"/opt/cloudhsm/lib/libcloudhsm_pkcs11.so"};
  auto b2 = MustCreate(std::move(o2));
  auto k = b2->GenerateKey({Algorithm::kES256, "x/v1", "pkcs11:token=x?module-path=" + std::string(kSoftHsmModulePath)});
  EXPECT_EQ(k.status().code(), StatusCode::kPermissionDenied) << k.status().ToString();
}

TEST_F(Pkcs11BackendTest, MissingTokenIsNotFoundNamingTheToken) {
  Pkcs11BackendOptions o;
  o.module_path = kSoftHsmModulePath;
  o.default_key_uri = "pkcs11:token=no-such-token?pin-value=1234";
  auto b = Pkcs11Backend::Create(std::move(o));
  EXPECT_EQ(b.status().code(), StatusCode::kNotFound);
  EXPECT_NE(b.status().message().find("'no-such-token'"), std::string::npos) << b.status().message();
  EXPECT_EQ(b.status().message().find("1234"), std::string::npos);
}

TEST_F(Pkcs11BackendTest, ConcurrentSigning) {
  TestToken t = SoftHsmEnv::Get()->NewToken();
  auto b = MustCreate(OptionsFor(t, 4));
  ASSERT_TRUE(b);
  auto key = b->GenerateKey({Algorithm::kES256, "busy/v1", ""});
  ASSERT_TRUE(key.ok());
  auto pub = crypto::PublicKeyFromSpkiDer(key->public_key_spki_der);
  ASSERT_TRUE(pub.ok());
  std::atomic<int> ok{0}, bad{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      for (int j = 0; j < 200; ++j) {
        Bytes digest = crypto::Sha256(crypto::AsBytes("msg " + std::to_string(i) + "/" + std::to_string(j)));
        auto sig = b->SignDigest(key->uri, Algorithm::kES256, digest);
        if (sig.ok() && crypto::VerifyDigest(pub->get(), Algorithm::kES256, digest, *sig).ok()) {
          ++ok;
        } else {
          if (bad++ == 0) ADD_FAILURE() << sig.status().ToString();
        }
        if (i == 0 && j == 100) b->InvalidateSessionsForTest();  // a reset mid-flight loses nothing
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 800);
  EXPECT_EQ(bad.load(), 0);
}

TEST_F(Pkcs11BackendTest, YubiHsm2ProfileWithoutAttestationLeavesItEmpty) {
  TestToken t = SoftHsmEnv::Get()->NewToken();
  Pkcs11BackendOptions o = OptionsFor(t);
  o.provider = "yubihsm2";
  auto b = MustCreate(std::move(o));
  ASSERT_TRUE(b);
  EXPECT_EQ(b->provider(), "yubihsm2");
  auto key = b->GenerateKey({Algorithm::kES256, "yk/v1", ""});
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_TRUE(key->attestation.empty());  // SoftHSM offers none
}

TEST_F(Pkcs11BackendTest, DevTokenIsIdempotent) {
  const DevToken& first = SoftHsmEnv::Get()->dev_token();
  auto again = EnsureSoftHsmDevToken(SoftHsmEnv::Get()->dir());
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->key_uri, first.key_uri);
  EXPECT_EQ(again->key_uri.find("pin-value"), std::string::npos);
  struct stat st;
  ASSERT_EQ(::stat(first.user_pin_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(first.so_pin_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // The dev token works as a default.
  Pkcs11BackendOptions o;
  o.module_path = kSoftHsmModulePath;
  o.default_key_uri = first.key_uri;
  auto b = MustCreate(std::move(o));
  auto key = b->GenerateKey({Algorithm::kES256, "dev/v1", ""});
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_NE(key->uri.find("token=keyctl-dev"), std::string::npos);
  // Another data dir while SoftHSM is loaded with this one: refused, clearly.
  ::concierge::testing::TempDir other;
  auto clash = EnsureSoftHsmDevToken(other.path());
  EXPECT_EQ(clash.status().code(), StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace concierge::backends::pkcs11
