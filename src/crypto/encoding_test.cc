#include "crypto/encoding.h"

#include <gtest/gtest.h>

namespace concierge::crypto {
namespace {

TEST(HexTest, RoundTripsAndAcceptsUpperCase) {
  Bytes data = {0x00, 0x01, 0xab, 0xff};
  EXPECT_EQ(HexEncode(data), "0001abff");
  EXPECT_EQ(*HexDecode("0001abff"), data);
  EXPECT_EQ(*HexDecode("0001ABFF"), data);
  EXPECT_TRUE(HexDecode("")->empty());
}

TEST(HexTest, RejectsOddLengthAndNonHex) {
  EXPECT_EQ(HexDecode("abc").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(HexDecode("zz").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(HexDecode("0g").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(HexDecode(" 00").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(HexDecode("0x00").status().code(), StatusCode::kInvalidArgument);
}

// RFC 4648 section 10 test vectors.
TEST(Base64Test, Rfc4648Vectors) {
  const std::pair<const char*, const char*> kVectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, encoded] : kVectors) {
    EXPECT_EQ(Base64Encode(AsBytes(plain)), encoded);
    auto decoded = Base64Decode(encoded);
    ASSERT_TRUE(decoded.ok()) << encoded;
    EXPECT_EQ(AsString(*decoded), plain);
  }
}

TEST(Base64Test, AcceptsMissingPadding) {
  EXPECT_EQ(AsString(*Base64Decode("Zg")), "f");
  EXPECT_EQ(AsString(*Base64Decode("Zm8")), "fo");
  EXPECT_EQ(AsString(*Base64Decode("Zm9vYmE")), "fooba");
}

TEST(Base64Test, RejectsMalformedInput) {
  for (const char* bad : {"Zm9v!", "Z", "Zg=", "Zg===", "Z===", "=", "Zm9v\n", "Zm 9v", "Zm9v-_",
                          "Zh==", "Zm9=", "Zg==Zg==", "Zm=v"}) {
    EXPECT_EQ(Base64Decode(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(Base64UrlTest, UsesUrlAlphabetWithoutPadding) {
  Bytes data = {0xfb, 0xff};
  EXPECT_EQ(Base64Encode(data), "+/8=");
  EXPECT_EQ(Base64UrlEncode(data), "-_8");
  EXPECT_EQ(Base64UrlEncode(AsBytes("f")), "Zg");
}

TEST(Base64Test, RoundTripsAllByteValues) {
  Bytes all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<uint8_t>(i));
  for (size_t n = 0; n < all.size(); n += 7) {
    Bytes slice(all.begin(), all.begin() + n);
    EXPECT_EQ(*Base64Decode(Base64Encode(slice)), slice);
  }
}

}  // namespace
}  // namespace concierge::crypto
