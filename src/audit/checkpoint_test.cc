#include "audit/checkpoint.h"

#include <gtest/gtest.h>

#include <string>

#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "crypto/signature.h"
#include "testing/test_util.h"

namespace concierge::audit {
namespace {

using ::concierge::testing::RunCommand;
using ::concierge::testing::TempDir;
using ::concierge::testing::WriteFile;

Checkpoint Sample() {
  Checkpoint cp;
  cp.origin = "concierge.example/audit/v1";
  cp.tree_size = 8;
  // Root of the 8-leaf RFC 6962 vector tree.
  cp.root_hash = *HashFromBytes(
      *crypto::HexDecode("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"));
  cp.timestamp = CheckpointTime(std::chrono::milliseconds(1732362000123));
  return cp;
}

// Signs through the callback interface exactly as a KeyBackend would.
DigestSigner SignerFor(EVP_PKEY* key, Algorithm alg) {
  return [key, alg](ByteView digest) { return crypto::SignDigest(key, alg, digest); };
}

class CheckpointSigningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto key = crypto::GenerateKeyPair(Algorithm::kES256);
    ASSERT_TRUE(key.ok()) << key.status().ToString();
    key_ = std::move(key).value();
  }
  crypto::EvpPkeyPtr key_;
};

TEST(CheckpointTest, SerializesToTheDocumentedNote) {
  auto note = SerializeCheckpoint(Sample());
  ASSERT_TRUE(note.ok()) << note.status().ToString();
  EXPECT_EQ(*note,
            "concierge.example/audit/v1\n"
            "8\n"
            "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n"
            "timestamp-ms 1732362000123\n");
  auto parsed = ParseCheckpoint(*note);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(*parsed, Sample());
}

TEST(CheckpointTest, EmptyTreeRoundTrips) {
  Checkpoint cp = Sample();
  cp.tree_size = 0;
  cp.root_hash = EmptyRoot();
  cp.timestamp = CheckpointTime{};
  auto note = SerializeCheckpoint(cp);
  ASSERT_TRUE(note.ok());
  auto parsed = ParseCheckpoint(*note);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(*parsed, cp);
}

TEST(CheckpointTest, RejectsBadOrigins) {
  for (std::string origin :
       {std::string(""), std::string("a\nb"), std::string(" lead"), std::string("trail "),
        std::string("tab\there"), std::string("caf\xc3\xa9"), std::string(256, 'x')}) {
    Checkpoint cp = Sample();
    cp.origin = origin;
    EXPECT_FALSE(SerializeCheckpoint(cp).ok()) << origin;
  }
  Checkpoint cp = Sample();
  cp.timestamp = CheckpointTime(std::chrono::milliseconds(-1));
  EXPECT_FALSE(SerializeCheckpoint(cp).ok());
}

TEST(CheckpointTest, ParseAcceptsOnlyCanonicalForm) {
  const std::string good = *SerializeCheckpoint(Sample());
  const std::string root_line = "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=";
  const std::string origin = "concierge.example/audit/v1\n";
  const std::string ts = "timestamp-ms 1732362000123\n";
  for (const std::string& bad : {
           good.substr(0, good.size() - 1),                             // no final newline
           good + "extra\n",                                            // fifth line
           good + "\n",                                                 // trailing blank line
           origin + "08\n" + root_line + "\n" + ts,                     // leading zero
           origin + "+8\n" + root_line + "\n" + ts,                     // sign
           origin + "-8\n" + root_line + "\n" + ts,                     // sign
           origin + "8 \n" + root_line + "\n" + ts,                     // trailing space
           origin + "99999999999999999999\n" + root_line + "\n" + ts,   // overflow
           origin + "8\n" + root_line.substr(0, 43) + "\n" + ts,        // unpadded base64
           origin + "8\n" + "XcnaeacG\n" + ts,                          // wrong hash length
           origin + "8\n" + root_line + "\ntimestamp 1732362000123\n",  // wrong label
           origin + "8\n" + root_line + "\ntimestamp-ms 01\n",
           origin + "8\n" + root_line + "\ntimestamp-ms \n",
           "\n8\n" + root_line + "\n" + ts,  // empty origin
       }) {
    EXPECT_FALSE(ParseCheckpoint(bad).ok()) << bad;
  }
}

TEST_F(CheckpointSigningTest, SignsAndVerifiesWithEs256) {
  auto signed_cp =
      SignCheckpoint(Sample(), Algorithm::kES256, SignerFor(key_.get(), Algorithm::kES256));
  ASSERT_TRUE(signed_cp.ok()) << signed_cp.status().ToString();
  EXPECT_EQ(signed_cp->note, *SerializeCheckpoint(Sample()));
  auto verified = VerifyCheckpoint(*signed_cp, key_.get(), Algorithm::kES256);
  ASSERT_TRUE(verified.ok()) << verified.status().ToString();
  EXPECT_EQ(*verified, Sample());
}

TEST_F(CheckpointSigningTest, AnyByteChangeInTheNoteFailsVerification) {
  auto signed_cp =
      SignCheckpoint(Sample(), Algorithm::kES256, SignerFor(key_.get(), Algorithm::kES256));
  ASSERT_TRUE(signed_cp.ok());
  for (size_t i = 0; i < signed_cp->note.size(); ++i) {
    for (uint8_t mask : {0x01, 0x80}) {
      SignedCheckpoint tampered = *signed_cp;
      tampered.note[i] = static_cast<char>(tampered.note[i] ^ mask);
      auto verified = VerifyCheckpoint(tampered, key_.get(), Algorithm::kES256);
      EXPECT_FALSE(verified.ok()) << "byte " << i << " mask " << int{mask};
    }
  }
  SignedCheckpoint appended = *signed_cp;
  appended.note += "\n";
  EXPECT_FALSE(VerifyCheckpoint(appended, key_.get(), Algorithm::kES256).ok());
  SignedCheckpoint truncated = *signed_cp;
  truncated.note.pop_back();
  EXPECT_FALSE(VerifyCheckpoint(truncated, key_.get(), Algorithm::kES256).ok());
}

TEST_F(CheckpointSigningTest, TamperedSignatureOrOtherKeyFails) {
  auto signed_cp =
      SignCheckpoint(Sample(), Algorithm::kES256, SignerFor(key_.get(), Algorithm::kES256));
  ASSERT_TRUE(signed_cp.ok());
  SignedCheckpoint bad_sig = *signed_cp;
  bad_sig.signature[bad_sig.signature.size() / 2] ^= 0x01;
  EXPECT_FALSE(VerifyCheckpoint(bad_sig, key_.get(), Algorithm::kES256).ok());

  auto other = crypto::GenerateKeyPair(Algorithm::kES256);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(VerifyCheckpoint(*signed_cp, other->get(), Algorithm::kES256).ok());
  EXPECT_FALSE(VerifyCheckpoint(*signed_cp, nullptr, Algorithm::kES256).ok());
}

TEST(CheckpointTest, SignerErrorsPropagate) {
  DigestSigner failing = [](ByteView) -> StatusOr<Bytes> {
    return UnavailableError("hsm offline");
  };
  auto signed_cp = SignCheckpoint(Sample(), Algorithm::kES256, failing);
  ASSERT_FALSE(signed_cp.ok());
  EXPECT_EQ(signed_cp.status().code(), StatusCode::kUnavailable);

  EXPECT_FALSE(SignCheckpoint(Sample(), Algorithm::kES256, DigestSigner()).ok());
  DigestSigner empty = [](ByteView) -> StatusOr<Bytes> { return Bytes(); };
  EXPECT_FALSE(SignCheckpoint(Sample(), Algorithm::kES256, empty).ok());
}

TEST_F(CheckpointSigningTest, SignerSeesSha256OfTheNote) {
  Bytes seen;
  DigestSigner spy = [&](ByteView digest) {
    seen.assign(digest.begin(), digest.end());
    return crypto::SignDigest(key_.get(), Algorithm::kES256, digest);
  };
  auto signed_cp = SignCheckpoint(Sample(), Algorithm::kES256, spy);
  ASSERT_TRUE(signed_cp.ok());
  EXPECT_EQ(crypto::HexEncode(seen), crypto::Sha256Hex(crypto::AsBytes(signed_cp->note)));
}

// Independent check: the openssl CLI accepts our note + DER signature, and
// rejects the note with one digit changed.
TEST_F(CheckpointSigningTest, OpensslCliVerifiesTheNoteSignature) {
  auto signed_cp =
      SignCheckpoint(Sample(), Algorithm::kES256, SignerFor(key_.get(), Algorithm::kES256));
  ASSERT_TRUE(signed_cp.ok());
  TempDir dir;
  auto spki = crypto::PublicKeyToSpkiDer(key_.get());
  ASSERT_TRUE(spki.ok());
  WriteFile(dir.File("pub.pem"), *crypto::SpkiDerToPem(*spki));
  WriteFile(dir.File("sig.der"), crypto::AsString(signed_cp->signature));
  WriteFile(dir.File("note.txt"), signed_cp->note);
  const std::string cmd = "openssl dgst -sha256 -verify '" + dir.File("pub.pem") +
                          "' -signature '" + dir.File("sig.der") + "' '" + dir.File("note.txt") +
                          "'";
  auto good = RunCommand(cmd);
  EXPECT_EQ(good.exit_code, 0) << good.output;
  EXPECT_NE(good.output.find("Verified OK"), std::string::npos) << good.output;

  std::string tampered = signed_cp->note;
  tampered[tampered.find('\n') + 1] = '9';  // tree size 8 -> 9
  WriteFile(dir.File("note.txt"), tampered);
  auto bad = RunCommand(cmd);
  EXPECT_NE(bad.exit_code, 0) << bad.output;
}

}  // namespace
}  // namespace concierge::audit
