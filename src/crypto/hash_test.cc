#include "crypto/hash.h"

#include <gtest/gtest.h>

#include "crypto/encoding.h"

namespace concierge::crypto {
namespace {

// FIPS 180-2 appendix examples for the message "abc".
TEST(HashTest, ShaKnownAnswers) {
  EXPECT_EQ(HexEncode(Sha256(AsBytes("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(HexEncode(Sha384(AsBytes("abc"))),
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded163"
            "1a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7");
  EXPECT_EQ(HexEncode(Sha512(AsBytes("abc"))),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
            "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
  EXPECT_EQ(Sha256Hex(AsBytes("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(HashTest, DigestForMatchesAlgorithm) {
  for (Algorithm alg : {Algorithm::kES256, Algorithm::kES384, Algorithm::kES512, Algorithm::kPS256,
                        Algorithm::kPS384, Algorithm::kPS512, Algorithm::kEd25519}) {
    EXPECT_EQ(DigestFor(alg, AsBytes("x")).size(), DigestSize(alg)) << AlgorithmName(alg);
  }
  EXPECT_EQ(DigestFor(Algorithm::kEd25519, AsBytes("abc")), Sha512(AsBytes("abc")));
}

// RFC 4231 test case 2.
TEST(HashTest, HmacSha256KnownAnswer) {
  SecretBytes key = SecretBytes::FromString("Jefe", SecretAccess::Grant());
  EXPECT_EQ(HexEncode(HmacSha256(key, AsBytes("what do ya want for nothing?"))),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(HashTest, HmacWithEmptyKeyWorks) {
  EXPECT_EQ(HmacSha256(SecretBytes(), AsBytes("x")).size(), 32u);
}

TEST(RandomTest, ProducesRequestedLengthsAndDiffers) {
  EXPECT_EQ(RandomBytes(0).size(), 0u);
  EXPECT_EQ(RandomBytes(33).size(), 33u);
  EXPECT_NE(RandomBytes(16), RandomBytes(16));
  EXPECT_EQ(RandomSecret(32).size(), 32u);
  std::string hex = RandomHex(4);
  EXPECT_EQ(hex.size(), 8u);
  EXPECT_TRUE(HexDecode(hex).ok());
}

}  // namespace
}  // namespace concierge::crypto
