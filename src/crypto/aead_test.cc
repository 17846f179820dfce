#include "crypto/aead.h"

#include <gtest/gtest.h>

#include "crypto/encoding.h"
#include "crypto/hash.h"

namespace concierge::crypto {
namespace {

SecretBytes KeyFromHex(std::string_view hex) {
  return SecretBytes(*HexDecode(hex), SecretAccess::Grant());
}

Bytes ToBytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

std::string Revealed(const SecretBytes& s) {
  return std::string(s.RevealString(SecretAccess::Grant()));
}

TEST(AesGcmTest, SealOpenRoundTrip) {
  SecretBytes key = RandomSecret(kAes256KeySize);
  Bytes aad = ToBytes("software:acme-news-v1|ES256");
  auto sealed = Aes256GcmSeal(key, AsBytes("private key bytes"), aad);
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(sealed->size(), kGcmNonceSize + 17 + kGcmTagSize);
  auto opened = Aes256GcmOpen(key, *sealed, aad);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(Revealed(*opened), "private key bytes");

  // A fresh nonce each time: sealing twice never repeats the ciphertext.
  EXPECT_NE(*Aes256GcmSeal(key, AsBytes("x"), aad), *Aes256GcmSeal(key, AsBytes("x"), aad));
}

TEST(AesGcmTest, EmptyPlaintextAndAad) {
  SecretBytes key = RandomSecret(kAes256KeySize);
  auto sealed = Aes256GcmSeal(key, {}, {});
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(sealed->size(), kGcmNonceSize + kGcmTagSize);
  auto opened = Aes256GcmOpen(key, *sealed, {});
  ASSERT_TRUE(opened.ok());
  EXPECT_TRUE(opened->empty());
}

// "The Galois/Counter Mode of Operation" (McGrew & Viega), test case 14.
TEST(AesGcmTest, GcmSpecTestCase14) {
  SecretBytes key(32);
  Bytes sealed(12, 0);
  Bytes ct_tag = *HexDecode("cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919");
  sealed.insert(sealed.end(), ct_tag.begin(), ct_tag.end());
  auto opened = Aes256GcmOpen(key, sealed, {});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(Revealed(*opened), std::string(16, '\0'));
}

// Same source, test case 16 (with AAD and a 60-byte plaintext).
TEST(AesGcmTest, GcmSpecTestCase16) {
  SecretBytes key = KeyFromHex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
  Bytes sealed = *HexDecode(
      "cafebabefacedbaddecaf888"
      "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
      "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
      "76fc6ece0f4e1768cddf8853bb2d551b");
  Bytes aad = *HexDecode("feedfacedeadbeeffeedfacedeadbeefabaddad2");
  auto opened = Aes256GcmOpen(key, sealed, aad);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(HexEncode(opened->Reveal(SecretAccess::Grant())),
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
            "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39");
}

TEST(AesGcmTest, AnyAlterationIsDataLoss) {
  SecretBytes key = RandomSecret(kAes256KeySize);
  Bytes aad = {1, 2, 3};
  Bytes sealed = *Aes256GcmSeal(key, AsBytes("sixteen byte msg"), aad);

  auto expect_data_loss = [&](const SecretBytes& k, const Bytes& s, const Bytes& a,
                              const char* what) {
    auto r = Aes256GcmOpen(k, s, a);
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << what;
    EXPECT_EQ(r.status().message(), "authentication failed") << what;
  };
  for (size_t pos : {size_t{0}, kGcmNonceSize, kGcmNonceSize + 5, sealed.size() - kGcmTagSize,
                     sealed.size() - 1}) {
    Bytes flipped = sealed;
    flipped[pos] ^= 0x01;
    expect_data_loss(key, flipped, aad, "flipped bit");
  }
  Bytes other_aad = {1, 2, 4};
  expect_data_loss(key, sealed, other_aad, "aad");
  expect_data_loss(key, sealed, {}, "missing aad");
  expect_data_loss(RandomSecret(kAes256KeySize), sealed, aad, "wrong key");
}

TEST(AesGcmTest, RejectsBadSizes) {
  SecretBytes key = RandomSecret(kAes256KeySize);
  EXPECT_EQ(Aes256GcmOpen(key, Bytes(27, 0), {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Aes256GcmSeal(RandomSecret(16), AsBytes("x"), {}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Aes256GcmOpen(RandomSecret(31), Bytes(40, 0), {}).status().code(),
            StatusCode::kInvalidArgument);
}

constexpr Argon2Params kFastArgon2{.time_cost = 1, .memory_kib = 1024, .parallelism = 1};

TEST(Argon2idTest, DeterministicForSameInputs) {
  Bytes salt = ToBytes("0123456789abcdef");
  auto pass = SecretBytes::FromString("correct horse", SecretAccess::Grant());
  auto a = DeriveKeyArgon2id(pass, salt, kFastArgon2, 32);
  auto b = DeriveKeyArgon2id(pass, salt, kFastArgon2, 32);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), 32u);
  EXPECT_TRUE(a->ConstantTimeEquals(*b));
}

// Cross-implementation answer: computed with pyca/cryptography's Argon2id (not
// libargon2) for the same password, salt and parameters.
TEST(Argon2idTest, MatchesIndependentImplementation) {
  auto key = DeriveKeyArgon2id(SecretBytes::FromString("correct horse", SecretAccess::Grant()),
                               AsBytes("0123456789abcdef"), kFastArgon2, 32);
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(HexEncode(key->Reveal(SecretAccess::Grant())),
            "5037a78320e0207ac4a6cc26f86789bc1769e55f07ea9fdb2d9a0ba876c7abb6");
}

TEST(Argon2idTest, DiffersForDifferentPassphraseOrSalt) {
  Bytes salt(16, 0x5a);
  auto a = DeriveKeyArgon2id(SecretBytes::FromString("one", SecretAccess::Grant()), salt,
                             kFastArgon2, 32);
  auto b = DeriveKeyArgon2id(SecretBytes::FromString("two", SecretAccess::Grant()), salt,
                             kFastArgon2, 32);
  Bytes salt2(16, 0x5b);
  auto c = DeriveKeyArgon2id(SecretBytes::FromString("one", SecretAccess::Grant()), salt2,
                             kFastArgon2, 32);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_FALSE(a->ConstantTimeEquals(*b));
  EXPECT_FALSE(a->ConstantTimeEquals(*c));
}

TEST(Argon2idTest, RejectsShortSaltAndBadParams) {
  auto pass = SecretBytes::FromString("pw", SecretAccess::Grant());
  EXPECT_EQ(DeriveKeyArgon2id(pass, Bytes(15, 1), kFastArgon2, 32).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(DeriveKeyArgon2id(pass, Bytes(16, 1), {.time_cost = 0}, 32).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(DeriveKeyArgon2id(pass, Bytes(16, 1), kFastArgon2, 0).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace concierge::crypto
