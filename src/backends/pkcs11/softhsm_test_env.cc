#include "backends/pkcs11/softhsm_test_env.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "concierge/secret.h"
#include "crypto/hash.h"
#include "testing/test_util.h"

namespace concierge::backends::pkcs11::testing {
namespace {

SoftHsmEnv* g_env = nullptr;
::concierge::testing::TempDir* g_dir = nullptr;

class Environment : public ::testing::Environment {
 public:
  void SetUp() override { SoftHsmEnv::SetUpOnce(); }
  void TearDown() override { SoftHsmEnv::TearDownOnce(); }
};

[[maybe_unused]] ::testing::Environment* const kEnv = ::testing::AddGlobalTestEnvironment(new Environment);

}  // namespace

SoftHsmEnv* SoftHsmEnv::Get() { return g_env; }

void SoftHsmEnv::SetUpOnce() {
  if (!SoftHsmAvailable()) return;
  g_dir = new ::concierge::testing::TempDir();
  auto env = std::make_unique<SoftHsmEnv>();
  env->dir_ = g_dir->path();
  auto dev = EnsureSoftHsmDevToken(env->dir_);
  ASSERT_TRUE(dev.ok()) << dev.status().ToString();
  env->dev_ = *std::move(dev);
  g_env = env.release();
}

void SoftHsmEnv::TearDownOnce() {
  delete g_env;  // releases the module: C_Finalize
  g_env = nullptr;
  delete g_dir;
  g_dir = nullptr;
}

TestToken SoftHsmEnv::NewToken(const std::string& prefix) {
  TestToken t;
  t.label = prefix + "-" + std::to_string(++counter_) + "-" + crypto::RandomHex(3);
  t.user_pin = "user-" + crypto::RandomHex(4);
  t.so_pin = "so-" + crypto::RandomHex(4);
  t.pin_file = dir_ + "/" + t.label + ".pin";
  ::concierge::testing::WriteFile(t.pin_file, t.user_pin + "\n");
  std::filesystem::permissions(t.pin_file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  Status st = InitSoftHsmToken(api(), t.label, SecretBytes::FromString(t.so_pin, SecretAccess::Grant()),
                               SecretBytes::FromString(t.user_pin, SecretAccess::Grant()));
  EXPECT_TRUE(st.ok()) << st.ToString();
  t.uri = "pkcs11:token=" + t.label + "?module-path=" + std::string(kSoftHsmModulePath) + "&pin-source=" + t.pin_file;
  return t;
}

}  // namespace concierge::backends::pkcs11::testing
