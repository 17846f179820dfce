// The CK_RV -> Status table and module loading errors.
#include "backends/pkcs11/pkcs11_api.h"

#include <gtest/gtest.h>

#include "backends/pkcs11/dev_token.h"
#include "testing/test_util.h"

namespace concierge::backends::pkcs11 {
namespace {

TEST(Pkcs11ErrorTest, MapsReturnValuesWithNames) {
  Status pin = Pkcs11Error("C_Login", CKR_PIN_INCORRECT);
  EXPECT_EQ(pin.code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(pin.message(), "PKCS#11 login failed: CKR_PIN_INCORRECT");
  EXPECT_EQ(Pkcs11Error("C_Sign", CKR_SESSION_HANDLE_INVALID).code(), StatusCode::kUnavailable);
  EXPECT_EQ(Pkcs11Error("C_Sign", CKR_DEVICE_REMOVED).code(), StatusCode::kUnavailable);
  EXPECT_EQ(Pkcs11Error("C_Sign", CKR_TOKEN_NOT_PRESENT).code(), StatusCode::kUnavailable);
  EXPECT_EQ(Pkcs11Error("C_Sign", CKR_KEY_HANDLE_INVALID).code(), StatusCode::kNotFound);
  EXPECT_EQ(Pkcs11Error("C_Sign", CKR_DATA_LEN_RANGE).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Pkcs11Error("C_OpenSession", CKR_SESSION_COUNT).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(Pkcs11Error("C_Sign", CKR_GENERAL_ERROR).message(), "PKCS#11 C_Sign failed: CKR_GENERAL_ERROR");
  // CKR_OK-mapped values are still errors when reported as such.
  EXPECT_EQ(Pkcs11Error("C_Login", CKR_USER_ALREADY_LOGGED_IN).code(), StatusCode::kInternal);
  // Unknown and vendor values get a readable hex name.
  EXPECT_EQ(RvName(0x1234), "CKR_0x1234");
  EXPECT_EQ(RvName(CKR_VENDOR_DEFINED | 5), "CKR_VENDOR_DEFINED+0x5");
  EXPECT_EQ(Pkcs11Error("C_Sign", CKR_VENDOR_DEFINED | 5).code(), StatusCode::kInternal);
}

TEST(Pkcs11ErrorTest, MechanismErrorsNameTheMechanism) {
  Status s = Pkcs11MechanismError("C_GenerateKeyPair", CKR_MECHANISM_INVALID, CKM_EC_EDWARDS_KEY_PAIR_GEN);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("CKM_EC_EDWARDS_KEY_PAIR_GEN"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("CKR_MECHANISM_INVALID"), std::string::npos);
  EXPECT_EQ(MechanismName(0x80001234), "CKM_0x80001234");
}

TEST(Pkcs11ErrorTest, SessionLossSet) {
  for (CK_RV rv : {CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT,
                   CKR_USER_NOT_LOGGED_IN}) {
    EXPECT_TRUE(IsSessionLoss(rv)) << RvName(rv);
  }
  for (CK_RV rv : {CKR_OK, CKR_PIN_INCORRECT, CKR_MECHANISM_INVALID, CKR_GENERAL_ERROR}) {
    EXPECT_FALSE(IsSessionLoss(rv)) << RvName(rv);
  }
}

TEST(Pkcs11ModuleTest, LoadErrorsNameTheProblem) {
  auto missing = OpenPkcs11Module({"/no/such/module.so", {}});
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/no/such/module.so"), std::string::npos);

  EXPECT_EQ(OpenPkcs11Module({"relative/module.so", {}}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(OpenPkcs11Module({"", {}}).status().code(), StatusCode::kInvalidArgument);

  ::concierge::testing::TempDir dir;
  ::concierge::testing::WriteFile(dir.File("not-a-library.so"), "hello");
  auto garbage = OpenPkcs11Module({dir.File("not-a-library.so"), {}});
  EXPECT_EQ(garbage.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(garbage.status().message().find("cannot load PKCS#11 module"), std::string::npos);

  // A real shared library that is not a PKCS#11 module.
  for (const char* lib : {"/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1"}) {
    if (::access(lib, R_OK) != 0) continue;
    auto not_p11 = OpenPkcs11Module({lib, {}});
    EXPECT_EQ(not_p11.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(not_p11.status().message().find("C_GetFunctionList"), std::string::npos) << not_p11.status().message();
    break;
  }

  if (SoftHsmAvailable()) {
    auto refused = OpenPkcs11Module({kSoftHsmModulePath, {"/opt/other/lib.so"}});
    EXPECT_EQ(refused.status().code(), StatusCode::kPermissionDenied);
    EXPECT_NE(refused.status().message().find("pkcs11_allowed_modules"), std::string::npos);
  }
}

TEST(Pkcs11ModuleTest, OneOwnerPerModulePath) {
  if (!SoftHsmAvailable()) GTEST_SKIP() << "SoftHSM2 not installed";
  // The test environment holds the module; opening again shares it.
  auto a = OpenPkcs11Module({kSoftHsmModulePath, {kSoftHsmModulePath}});
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  auto b = OpenPkcs11Module({kSoftHsmModulePath, {}});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->get(), b->get());
  EXPECT_TRUE(Pkcs11ModuleLoaded(kSoftHsmModulePath));
  CK_INFO info;
  ASSERT_EQ((*a)->GetInfo(&info), CKR_OK);
  EXPECT_EQ(info.cryptokiVersion.major, 2);
}

}  // namespace
}  // namespace concierge::backends::pkcs11
