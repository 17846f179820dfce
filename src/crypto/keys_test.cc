#include "crypto/keys.h"

#include <gtest/gtest.h>

#include "crypto/encoding.h"
#include "testing/test_util.h"

namespace concierge::crypto {
namespace {

using ::concierge::testing::RunCommand;
using ::concierge::testing::TempDir;
using ::concierge::testing::WriteFile;

// RSA 3072/4096 generation is slow, so the key-format tests use one key per
// family; signature_test covers every algorithm.
class KeysTest : public ::testing::TestWithParam<Algorithm> {};

TEST_P(KeysTest, Pkcs8AndSpkiRoundTrip) {
  Algorithm alg = GetParam();
  auto key = GenerateKeyPair(alg);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_TRUE(CheckKeyMatchesAlgorithm(key->get(), alg).ok());

  auto spki = PublicKeyToSpkiDer(key->get());
  ASSERT_TRUE(spki.ok());
  auto der = PrivateKeyToPkcs8Der(key->get());
  ASSERT_TRUE(der.ok());
  auto reloaded = PrivateKeyFromPkcs8Der(*der);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status().ToString();
  EXPECT_EQ(*PublicKeyToSpkiDer(reloaded->get()), *spki);

  auto pub = PublicKeyFromSpkiDer(*spki);
  ASSERT_TRUE(pub.ok());
  EXPECT_TRUE(CheckKeyMatchesAlgorithm(pub->get(), alg).ok());

  auto pem = SpkiDerToPem(*spki);
  ASSERT_TRUE(pem.ok());
  EXPECT_EQ(pem->rfind("-----BEGIN PUBLIC KEY-----", 0), 0u);
  auto from_pem = PublicKeyFromPem(*pem);
  ASSERT_TRUE(from_pem.ok());
  EXPECT_EQ(*PublicKeyToSpkiDer(from_pem->get()), *spki);

  std::string fp = SpkiFingerprint(*spki);
  EXPECT_EQ(fp.size(), 64u);
  EXPECT_TRUE(HexDecode(fp).ok());

  // The openssl CLI must read our SPKI as the same key (independent parser).
  TempDir dir;
  WriteFile(dir.File("pub.pem"), *pem);
  auto r = RunCommand("openssl pkey -pubin -in '" + dir.File("pub.pem") + "' -outform DER -out '" +
                      dir.File("pub.der") + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(concierge::testing::ReadFile(dir.File("pub.der")), AsString(*spki));
}

INSTANTIATE_TEST_SUITE_P(Families, KeysTest,
                         ::testing::Values(Algorithm::kES256, Algorithm::kES512, Algorithm::kPS256,
                                           Algorithm::kEd25519),
                         [](const auto& info) { return std::string(AlgorithmName(info.param)); });

TEST(KeysTest, GeneratesRequestedShapes) {
  EXPECT_EQ(RsaBitsFor(Algorithm::kPS256), 2048);
  EXPECT_EQ(RsaBitsFor(Algorithm::kPS384), 3072);
  EXPECT_EQ(RsaBitsFor(Algorithm::kPS512), 4096);
  EXPECT_EQ(RsaBitsFor(Algorithm::kES256), 0);
  auto ec = GenerateKeyPair(Algorithm::kES384);
  ASSERT_TRUE(ec.ok());
  EXPECT_EQ(EVP_PKEY_get_bits(ec->get()), 384);
  auto rsa = GenerateKeyPair(Algorithm::kPS256);
  ASSERT_TRUE(rsa.ok());
  EXPECT_EQ(EVP_PKEY_get_bits(rsa->get()), 2048);
}

TEST(KeysTest, MismatchedAlgorithmIsRejected) {
  auto p256 = GenerateKeyPair(Algorithm::kES256);
  auto ed = GenerateKeyPair(Algorithm::kEd25519);
  ASSERT_TRUE(p256.ok() && ed.ok());
  EXPECT_EQ(CheckKeyMatchesAlgorithm(p256->get(), Algorithm::kES384).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckKeyMatchesAlgorithm(p256->get(), Algorithm::kPS256).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckKeyMatchesAlgorithm(ed->get(), Algorithm::kES256).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckKeyMatchesAlgorithm(nullptr, Algorithm::kES256).code(),
            StatusCode::kInvalidArgument);
}

TEST(KeysTest, MalformedInputsAreInvalidArgument) {
  SecretBytes junk = SecretBytes::FromString("not a key", SecretAccess::Grant());
  EXPECT_EQ(PrivateKeyFromPkcs8Der(junk).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(PublicKeyFromSpkiDer(AsBytes("junk")).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(PublicKeyFromPem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .status()
                .code(),
            StatusCode::kInvalidArgument);

  auto key = GenerateKeyPair(Algorithm::kES256);
  ASSERT_TRUE(key.ok());
  Bytes spki = *PublicKeyToSpkiDer(key->get());
  spki.push_back(0);  // trailing garbage must not be silently ignored
  EXPECT_EQ(PublicKeyFromSpkiDer(spki).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace concierge::crypto
