#include "crypto/cose.h"

#include <gtest/gtest.h>

#include "crypto/encoding.h"

namespace concierge::crypto {
namespace {

TEST(CborWriterTest, ShortestFormHeads) {
  // RFC 8949 Appendix A examples.
  EXPECT_EQ(HexEncode(CborWriter().Uint(0).bytes()), "00");
  EXPECT_EQ(HexEncode(CborWriter().Uint(23).bytes()), "17");
  EXPECT_EQ(HexEncode(CborWriter().Uint(24).bytes()), "1818");
  EXPECT_EQ(HexEncode(CborWriter().Uint(1000).bytes()), "1903e8");
  EXPECT_EQ(HexEncode(CborWriter().Uint(1000000).bytes()), "1a000f4240");
  EXPECT_EQ(HexEncode(CborWriter().Uint(1000000000000).bytes()), "1b000000e8d4a51000");
  EXPECT_EQ(HexEncode(CborWriter().Int(-1).bytes()), "20");
  EXPECT_EQ(HexEncode(CborWriter().Int(-100).bytes()), "3863");
  EXPECT_EQ(HexEncode(CborWriter().Int(INT64_MIN).bytes()), "3b7fffffffffffffff");
  EXPECT_EQ(HexEncode(CborWriter().Tstr("IETF").bytes()), "6449455446");
  EXPECT_EQ(HexEncode(CborWriter().Bstr(Bytes{1, 2, 3, 4}).bytes()), "4401020304");
  EXPECT_EQ(HexEncode(CborWriter().Array(3).Uint(1).Uint(2).Uint(3).bytes()), "83010203");
  EXPECT_EQ(HexEncode(CborWriter().Map(0).bytes()), "a0");
  EXPECT_EQ(HexEncode(CborWriter().Null().bytes()), "f6");
  EXPECT_EQ(HexEncode(CborWriter().Tag(18).bytes()), "d2");
}

TEST(CoseTest, HeadersAndStructure) {
  // {1: -7} with no chain.
  EXPECT_EQ(HexEncode(CoseProtectedHeader(Algorithm::kES256, {})), "a10126");
  // One certificate: a bstr, not an array.
  EXPECT_EQ(HexEncode(CoseProtectedHeader(Algorithm::kPS256, {Bytes{0xaa}})), "a20138241821" "41aa");
  EXPECT_EQ(HexEncode(CoseProtectedHeader(Algorithm::kEd25519, {Bytes{0xaa}, Bytes{0xbb}})),
            "a20127182182" "41aa" "41bb");
  Bytes prot = CoseProtectedHeader(Algorithm::kES256, {});
  EXPECT_EQ(HexEncode(CoseSigStructure(prot, AsBytes("hi"))),
            "84" "6a5369676e617475726531" "43a10126" "40" "426869");
  EXPECT_EQ(HexEncode(CoseSign1Tagged(prot, AsBytes("hi"), false, Bytes{1, 2})),
            "d284" "43a10126" "a0" "426869" "420102");
  EXPECT_EQ(HexEncode(CoseSign1Tagged(prot, AsBytes("hi"), true, Bytes{1, 2})), "d284" "43a10126" "a0" "f6" "420102");
}

}  // namespace
}  // namespace concierge::crypto
