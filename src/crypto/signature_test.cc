#include "crypto/signature.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <thread>
#include <mutex>

#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "testing/test_util.h"

namespace concierge::crypto {
namespace {

using ::concierge::testing::RunCommand;
using ::concierge::testing::TempDir;
using ::concierge::testing::WriteFile;

// RSA-4096 generation takes seconds; generate each algorithm's key once.
EVP_PKEY* KeyFor(Algorithm alg) {
  static std::mutex mu;
  static std::map<Algorithm, EvpPkeyPtr>* keys = new std::map<Algorithm, EvpPkeyPtr>();
  std::lock_guard<std::mutex> lock(mu);
  auto it = keys->find(alg);
  if (it == keys->end()) {
    auto key = GenerateKeyPair(alg);
    if (!key.ok()) return nullptr;
    it = keys->emplace(alg, std::move(key).value()).first;
  }
  return it->second.get();
}

std::string Quote(const std::string& s) { return "'" + s + "'"; }

// Writes the key's public half as PEM and returns its path.
std::string WritePublicPem(const TempDir& dir, EVP_PKEY* key) {
  std::string path = dir.File("pub.pem");
  WriteFile(path, *SpkiDerToPem(*PublicKeyToSpkiDer(key)));
  return path;
}

// Independent check with the openssl CLI. ECDSA/PSS verify over the message
// (openssl hashes it); Ed25519 verifies the digest bytes as a raw message.
testing::CommandResult OpensslVerify(const TempDir& dir, Algorithm alg, const std::string& pub,
                                     const std::string& data, ByteView digest, ByteView sig) {
  std::string sig_path = dir.File("sig.bin");
  WriteFile(sig_path, AsString(sig));
  if (alg == Algorithm::kEd25519) {
    std::string digest_path = dir.File("digest.bin");
    WriteFile(digest_path, AsString(digest));
    return RunCommand("openssl pkeyutl -verify -pubin -inkey " + Quote(pub) + " -rawin -in " +
                      Quote(digest_path) + " -sigfile " + Quote(sig_path));
  }
  std::string data_path = dir.File("data.bin");
  WriteFile(data_path, data);
  std::string cmd = "openssl dgst -" + std::string(DigestName(alg)) + " -verify " + Quote(pub) +
                    " -signature " + Quote(sig_path);
  if (FamilyOf(alg) == KeyFamily::kRsaPss) {
    cmd +=
        " -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:" + std::to_string(DigestSize(alg)) +
        " -sigopt rsa_mgf1_md:" + std::string(DigestName(alg));
  }
  return RunCommand(cmd + " " + Quote(data_path));
}

class SignatureTest : public ::testing::TestWithParam<Algorithm> {};

TEST_P(SignatureTest, SignVerifyAndOpensslAgrees) {
  Algorithm alg = GetParam();
  EVP_PKEY* key = KeyFor(alg);
  ASSERT_NE(key, nullptr);
  const std::string data = "C2PA claim bytes for " + std::string(AlgorithmName(alg));
  Bytes digest = DigestFor(alg, AsBytes(data));

  auto sig = SignDigest(key, alg, digest);
  ASSERT_TRUE(sig.ok()) << sig.status().ToString();
  if (alg == Algorithm::kEd25519) {
    EXPECT_EQ(sig->size(), 64u);
  } else if (FamilyOf(alg) == KeyFamily::kRsaPss) {
    EXPECT_EQ(sig->size(), static_cast<size_t>(RsaBitsFor(alg) / 8));
  } else {
    EXPECT_EQ((*sig)[0], 0x30);  // DER SEQUENCE
  }

  // Verify with a public-only key, as a relying party would.
  auto pub = PublicKeyFromSpkiDer(*PublicKeyToSpkiDer(key));
  ASSERT_TRUE(pub.ok());
  EXPECT_TRUE(VerifyDigest(pub->get(), alg, digest, *sig).ok());

  TempDir dir;
  std::string pem = WritePublicPem(dir, key);
  auto ok = OpensslVerify(dir, alg, pem, data, digest, *sig);
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  // dgst prints "Verified OK", pkeyutl "Signature Verified Successfully".
  EXPECT_NE(ok.output.find("Verified"), std::string::npos) << ok.output;

  Bytes tampered = *sig;
  tampered[tampered.size() / 2] ^= 0x01;
  Status st = VerifyDigest(pub->get(), alg, digest, tampered);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "signature does not verify");
  auto bad = OpensslVerify(dir, alg, pem, data, digest, tampered);
  EXPECT_NE(bad.exit_code, 0) << bad.output;

  Bytes other_digest = DigestFor(alg, AsBytes(data + "!"));
  EXPECT_EQ(VerifyDigest(pub->get(), alg, other_digest, *sig).code(), StatusCode::kInvalidArgument);
}

// The reverse direction: the openssl CLI signs with our key, we verify.
TEST_P(SignatureTest, VerifiesOpensslSignatures) {
  Algorithm alg = GetParam();
  EVP_PKEY* key = KeyFor(alg);
  ASSERT_NE(key, nullptr);
  TempDir dir;
  // The test writes the private key to a temp file only because the CLI needs it.
  auto der = PrivateKeyToPkcs8Der(key);
  ASSERT_TRUE(der.ok());
  WriteFile(dir.File("key.der"), std::string(der->RevealString(SecretAccess::Grant())));
  const std::string data = "signed by the openssl CLI";
  Bytes digest = DigestFor(alg, AsBytes(data));
  std::string cmd;
  if (alg == Algorithm::kEd25519) {
    WriteFile(dir.File("digest.bin"), AsString(digest));
    cmd = "openssl pkeyutl -sign -keyform DER -inkey " + Quote(dir.File("key.der")) +
          " -rawin -in " + Quote(dir.File("digest.bin")) + " -out " + Quote(dir.File("sig.bin"));
  } else {
    WriteFile(dir.File("data.bin"), data);
    cmd = "openssl dgst -" + std::string(DigestName(alg)) + " -keyform DER -sign " +
          Quote(dir.File("key.der")) + " -out " + Quote(dir.File("sig.bin"));
    if (FamilyOf(alg) == KeyFamily::kRsaPss) {
      cmd += " -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:" +
             std::to_string(DigestSize(alg));
    }
    cmd += " " + Quote(dir.File("data.bin"));
  }
  auto r = RunCommand(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string sig = concierge::testing::ReadFile(dir.File("sig.bin"));
  EXPECT_TRUE(VerifyDigest(key, alg, digest, AsBytes(sig)).ok());
}

TEST_P(SignatureTest, RejectsWrongDigestLength) {
  Algorithm alg = GetParam();
  EVP_PKEY* key = KeyFor(alg);
  ASSERT_NE(key, nullptr);
  Bytes digest(DigestSize(alg) + 1, 0x11);
  auto sig = SignDigest(key, alg, digest);
  EXPECT_EQ(sig.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(sig.status().details().at("field"), "digest");
  EXPECT_EQ(SignDigest(key, alg, Bytes{}).status().code(), StatusCode::kInvalidArgument);
}

TEST_P(SignatureTest, EmptyAndGarbageSignaturesDoNotVerify) {
  Algorithm alg = GetParam();
  EVP_PKEY* key = KeyFor(alg);
  ASSERT_NE(key, nullptr);
  Bytes digest(DigestSize(alg), 0x22);
  EXPECT_EQ(VerifyDigest(key, alg, digest, Bytes{}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(VerifyDigest(key, alg, digest, Bytes(7, 0x30)).code(), StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(AllAlgorithms, SignatureTest,
                         ::testing::Values(Algorithm::kES256, Algorithm::kES384, Algorithm::kES512,
                                           Algorithm::kPS256, Algorithm::kPS384, Algorithm::kPS512,
                                           Algorithm::kEd25519),
                         [](const auto& info) { return std::string(AlgorithmName(info.param)); });

TEST(SignatureTest, Ed25519AcceptsSha256DigestAndOpensslAgrees) {
  EVP_PKEY* key = KeyFor(Algorithm::kEd25519);
  ASSERT_NE(key, nullptr);
  Bytes digest = Sha256(AsBytes("short digest"));
  auto sig = SignDigest(key, Algorithm::kEd25519, digest);
  ASSERT_TRUE(sig.ok());
  EXPECT_TRUE(VerifyDigest(key, Algorithm::kEd25519, digest, *sig).ok());
  TempDir dir;
  auto r = OpensslVerify(dir, Algorithm::kEd25519, WritePublicPem(dir, key), "", digest, *sig);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(SignatureTest, KeyOfWrongTypeIsRejected) {
  Bytes digest(32, 0x33);
  EXPECT_EQ(SignDigest(KeyFor(Algorithm::kEd25519), Algorithm::kES256, digest).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(SignDigest(KeyFor(Algorithm::kES256), Algorithm::kPS256, digest).status().code(),
            StatusCode::kInvalidArgument);
}

class P1363Test : public ::testing::TestWithParam<Algorithm> {};

TEST_P(P1363Test, RoundTripsAndStillVerifies) {
  Algorithm alg = GetParam();
  EVP_PKEY* key = KeyFor(alg);
  ASSERT_NE(key, nullptr);
  size_t field = EcdsaFieldBytes(alg);
  // Several signatures so that short r or s values (leading zero bytes) are
  // likely exercised at least sometimes; the padding logic must handle them.
  for (int i = 0; i < 16; ++i) {
    Bytes digest = DigestFor(alg, AsBytes("message " + std::to_string(i)));
    Bytes der = *SignDigest(key, alg, digest);
    auto raw = EcdsaDerToP1363(der, field);
    ASSERT_TRUE(raw.ok()) << raw.status().ToString();
    EXPECT_EQ(raw->size(), 2 * field);
    auto back = EcdsaP1363ToDer(*raw);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, der);
    EXPECT_TRUE(VerifyDigest(key, alg, digest, *back).ok());
  }
}

INSTANTIATE_TEST_SUITE_P(Curves, P1363Test,
                         ::testing::Values(Algorithm::kES256, Algorithm::kES384, Algorithm::kES512),
                         [](const auto& info) { return std::string(AlgorithmName(info.param)); });

TEST(P1363Test, KnownEncoding) {
  // r = 1, s = 0x80 (needs a leading zero in DER to stay positive).
  Bytes raw(64, 0);
  raw[31] = 0x01;
  raw[63] = 0x80;
  auto der = EcdsaP1363ToDer(raw);
  ASSERT_TRUE(der.ok());
  EXPECT_EQ(HexEncode(*der),
            "3007020101020200"
            "80");
  EXPECT_EQ(*EcdsaDerToP1363(*der, 32), raw);
}

TEST(P1363Test, RejectsMalformedInput) {
  EXPECT_EQ(EcdsaP1363ToDer(Bytes{}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(EcdsaP1363ToDer(Bytes(63, 1)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(EcdsaDerToP1363(Bytes{}, 32).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(EcdsaDerToP1363(AsBytes("garbage"), 32).status().code(), StatusCode::kInvalidArgument);

  Bytes der = *EcdsaP1363ToDer(Bytes(64, 0xff));
  // Values wider than the field.
  EXPECT_EQ(EcdsaDerToP1363(der, 31).status().code(), StatusCode::kInvalidArgument);
  // Trailing bytes after the SEQUENCE.
  der.push_back(0);
  EXPECT_EQ(EcdsaDerToP1363(der, 32).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace concierge::crypto

namespace concierge::crypto {
namespace {

// The pooled contexts must give valid, independent signatures when reused and
// when shared by threads.
TEST(PreparedSignerTest, ReusedContextsSignCorrectlyAcrossThreads) {
  for (Algorithm alg : {Algorithm::kES256, Algorithm::kES384, Algorithm::kPS256, Algorithm::kEd25519}) {
    auto key = GenerateKeyPair(alg);
    ASSERT_TRUE(key.ok());
    auto signer = PreparedSigner::Create(key->get(), alg);
    ASSERT_TRUE(signer.ok()) << signer.status().ToString();
    std::atomic<int> good{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 25; ++i) {
          Bytes digest = DigestFor(alg, AsBytes("msg " + std::to_string(t * 100 + i)));
          auto sig = (*signer)->Sign(digest);
          if (sig.ok() && VerifyDigest(key->get(), alg, digest, *sig).ok()) ++good;
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(good.load(), 100) << AlgorithmName(alg);
  }
}

TEST(PreparedSignerTest, RejectsMismatchedKeyAndBadDigest) {
  auto key = GenerateKeyPair(Algorithm::kES256);
  ASSERT_TRUE(key.ok());
  EXPECT_FALSE(PreparedSigner::Create(key->get(), Algorithm::kES384).ok());
  auto signer = PreparedSigner::Create(key->get(), Algorithm::kES256);
  ASSERT_TRUE(signer.ok());
  EXPECT_EQ((*signer)->Sign(Bytes(20, 1)).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace concierge::crypto
