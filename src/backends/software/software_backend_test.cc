#include "backends/software/software_backend.h"

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "crypto/signature.h"
#include "testing/test_util.h"

namespace concierge::backends {
namespace {

using ::concierge::testing::ReadFile;
using ::concierge::testing::TempDir;
using ::concierge::testing::WriteFile;

constexpr Algorithm kAllAlgorithms[] = {Algorithm::kES256,  Algorithm::kES384, Algorithm::kES512,
                                        Algorithm::kPS256,  Algorithm::kPS384, Algorithm::kPS512,
                                        Algorithm::kEd25519};

// Small Argon2 parameters keep passphrase tests fast; production defaults are
// exercised by the config layer.
constexpr crypto::Argon2Params kFastArgon2{.time_cost = 1, .memory_kib = 1024, .parallelism = 1};

SoftwareKeystoreOptions KeyFileOptions(const std::string& dir) {
  SoftwareKeystoreOptions o;
  o.dir = dir;
  return o;
}

SoftwareKeystoreOptions PassphraseOptions(const std::string& dir, std::string_view passphrase) {
  SoftwareKeystoreOptions o;
  o.dir = dir;
  o.passphrase = SecretBytes::FromString(passphrase, SecretAccess::Grant());
  o.argon2 = kFastArgon2;
  return o;
}

std::unique_ptr<SoftwareBackend> MustCreate(SoftwareKeystoreOptions o) {
  auto b = SoftwareBackend::Create(std::move(o));
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return b.ok() ? std::move(b).value() : nullptr;
}

std::string NameOf(const std::string& uri) { return uri.substr(std::string("software:").size()); }

std::string KeyFile(const std::string& dir, const std::string& uri) {
  return dir + "/keys/" + NameOf(uri) + ".key";
}

void ExpectSignsAndVerifies(KeyBackend& backend, const std::string& uri, Algorithm alg,
                            ByteView spki) {
  Bytes digest = crypto::DigestFor(alg, crypto::AsBytes("manifest for " + uri));
  auto sig = backend.SignDigest(uri, alg, digest);
  ASSERT_TRUE(sig.ok()) << sig.status().ToString();
  auto pub = crypto::PublicKeyFromSpkiDer(spki);
  ASSERT_TRUE(pub.ok());
  Status st = crypto::VerifyDigest(pub->get(), alg, digest, *sig);
  EXPECT_TRUE(st.ok()) << AlgorithmName(alg) << ": " << st.ToString();
}

std::vector<std::string> AllFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) out.push_back(e.path().string());
  }
  return out;
}

mode_t ModeOf(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

TEST(SoftwareBackendTest, GeneratesSignsAndVerifiesEveryAlgorithm) {
  TempDir tmp;
  auto backend = MustCreate(KeyFileOptions(tmp.File("ks")));
  ASSERT_NE(backend, nullptr);
  EXPECT_EQ(backend->provider(), "software");
  EXPECT_EQ(backend->kek_source(), "key-file");
  for (Algorithm alg : kAllAlgorithms) {
    auto key = backend->GenerateKey({.algorithm = alg, .label = "acme-news/v1"});
    ASSERT_TRUE(key.ok()) << key.status().ToString();
    EXPECT_EQ(key->uri.rfind("software:acme-news-v1-", 0), 0u) << key->uri;
    EXPECT_EQ(key->uri.size(), std::string("software:acme-news-v1-").size() + 8);
    EXPECT_TRUE(crypto::HexDecode(key->uri.substr(key->uri.size() - 8)).ok());
    EXPECT_TRUE(key->attestation.empty());
    EXPECT_EQ(*backend->PublicKeySpkiDer(key->uri), key->public_key_spki_der);
    ExpectSignsAndVerifies(*backend, key->uri, alg, key->public_key_spki_der);
  }
}

TEST(SoftwareBackendTest, ReopenedKeystoreSignsWithPersistedKeys) {
  TempDir tmp;
  std::string dir = tmp.File("ks");
  std::vector<std::pair<GeneratedKey, Algorithm>> keys;
  {
    auto backend = MustCreate(KeyFileOptions(dir));
    ASSERT_NE(backend, nullptr);
    for (Algorithm alg : {Algorithm::kES256, Algorithm::kPS256, Algorithm::kEd25519}) {
      auto key = backend->GenerateKey({.algorithm = alg, .label = "tenant"});
      ASSERT_TRUE(key.ok());
      keys.emplace_back(*key, alg);
    }
  }
  std::string master = ReadFile(dir + "/master.key");
  EXPECT_EQ(master.size(), 32u);

  auto reopened = MustCreate(KeyFileOptions(dir));
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->kek_source(), "key-file");
  for (const auto& [key, alg] : keys) {
    EXPECT_EQ(*reopened->PublicKeySpkiDer(key.uri), key.public_key_spki_der);
    ExpectSignsAndVerifies(*reopened, key.uri, alg, key.public_key_spki_der);
  }
  EXPECT_EQ(ReadFile(dir + "/master.key"), master);  // not regenerated
}

TEST(SoftwareBackendTest, PassphraseMode) {
  TempDir tmp;
  std::string dir = tmp.File("ks");
  GeneratedKey key;
  {
    auto backend = MustCreate(PassphraseOptions(dir, "correct horse battery staple"));
    ASSERT_NE(backend, nullptr);
    EXPECT_EQ(backend->kek_source(), "passphrase");
    auto k = backend->GenerateKey({.algorithm = Algorithm::kES384, .label = "pp"});
    ASSERT_TRUE(k.ok());
    key = *k;
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/master.key"));

  auto right = MustCreate(PassphraseOptions(dir, "correct horse battery staple"));
  ASSERT_NE(right, nullptr);
  EXPECT_EQ(right->kek_source(), "passphrase");
  ExpectSignsAndVerifies(*right, key.uri, Algorithm::kES384, key.public_key_spki_der);

  auto wrong = SoftwareBackend::Create(PassphraseOptions(dir, "correct horse battery stapler"));
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(wrong.status().message(), "wrong master passphrase for keystore");

  auto missing = SoftwareBackend::Create(KeyFileOptions(dir));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kFailedPrecondition);

  // Argon2 parameters come from keystore.json, not from the caller, once the
  // keystore exists.
  SoftwareKeystoreOptions other_params = PassphraseOptions(dir, "correct horse battery staple");
  other_params.argon2 = {.time_cost = 2, .memory_kib = 2048, .parallelism = 1};
  EXPECT_NE(MustCreate(std::move(other_params)), nullptr);
}

TEST(SoftwareBackendTest, PassphraseForKeyFileKeystoreIsRefused) {
  TempDir tmp;
  std::string dir = tmp.File("ks");
  ASSERT_NE(MustCreate(KeyFileOptions(dir)), nullptr);
  auto b = SoftwareBackend::Create(PassphraseOptions(dir, "unexpected"));
  EXPECT_EQ(b.status().code(), StatusCode::kFailedPrecondition);
}

TEST(SoftwareBackendTest, EmptyPassphraseIsRejected) {
  TempDir tmp;
  EXPECT_EQ(SoftwareBackend::Create(PassphraseOptions(tmp.File("ks"), "")).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(SoftwareBackendTest, EveryFlippedByteInAKeyFileIsDataLoss) {
  TempDir tmp;
  std::string dir = tmp.File("ks");
  GeneratedKey key;
  {
    auto backend = MustCreate(KeyFileOptions(dir));
    ASSERT_NE(backend, nullptr);
    auto k = backend->GenerateKey({.algorithm = Algorithm::kES256, .label = "victim"});
    ASSERT_TRUE(k.ok());
    key = *k;
  }
  std::string path = KeyFile(dir, key.uri);
  const std::string original = ReadFile(path);
  Bytes digest(32, 0x42);
  for (size_t i = 0; i < original.size(); ++i) {
    std::string tampered = original;
    tampered[i] = static_cast<char>(tampered[i] ^ 0x01);
    WriteFile(path, tampered);
    // A fresh instance each time: the flip must be caught on load, not masked by
    // the in-memory cache.
    auto backend = MustCreate(KeyFileOptions(dir));
    ASSERT_NE(backend, nullptr);
    auto sig = backend->SignDigest(key.uri, Algorithm::kES256, digest);
    ASSERT_FALSE(sig.ok()) << "flip at offset " << i << " went unnoticed";
    EXPECT_EQ(sig.status().code(), StatusCode::kDataLoss) << i << ": " << sig.status().ToString();
    EXPECT_NE(sig.status().message().find(key.uri), std::string::npos);
    EXPECT_EQ(backend->PublicKeySpkiDer(key.uri).status().code(), StatusCode::kDataLoss);
  }
  WriteFile(path, original);
  auto backend = MustCreate(KeyFileOptions(dir));
  ASSERT_NE(backend, nullptr);
  ExpectSignsAndVerifies(*backend, key.uri, Algorithm::kES256, key.public_key_spki_der);
}

TEST(SoftwareBackendTest, KeyFileCopiedOntoAnotherKeyIsDataLoss) {
  TempDir tmp;
  std::string dir = tmp.File("ks");
  auto backend = MustCreate(KeyFileOptions(dir));
  ASSERT_NE(backend, nullptr);
  auto a = backend->GenerateKey({.algorithm = Algorithm::kEd25519, .label = "a"});
  auto b = backend->GenerateKey({.algorithm = Algorithm::kEd25519, .label = "b"});
  ASSERT_TRUE(a.ok() && b.ok());
  WriteFile(KeyFile(dir, b->uri), ReadFile(KeyFile(dir, a->uri)));
  auto fresh = MustCreate(KeyFileOptions(dir));
  ASSERT_NE(fresh, nullptr);
  EXPECT_EQ(fresh->SignDigest(b->uri, Algorithm::kEd25519, Bytes(64, 1)).status().code(),
            StatusCode::kDataLoss);
}

// Opens a key file with nothing but the documented layout and the master key,
// independently of the backend, to recover the PKCS#8 DER it protects.
SecretBytes RecoverPkcs8(const std::string& dir, const std::string& uri) {
  SecretBytes kek = SecretBytes::FromString(ReadFile(dir + "/master.key"), SecretAccess::Grant());
  auto j = nlohmann::json::parse(ReadFile(KeyFile(dir, uri)));
  std::string alg = j.at("algorithm").get<std::string>();
  Bytes spki = *crypto::Base64Decode(j.at("public_key_spki").get<std::string>());
  std::string aad =
      "concierge/software-key/v1\n" + uri + "\n" + alg + "\n" + crypto::Sha256Hex(spki) + "\n";
  auto dek =
      crypto::Aes256GcmOpen(kek, *crypto::Base64Decode(j.at("wrapped_dek").get<std::string>()),
                            crypto::AsBytes(aad + "dek"));
  EXPECT_TRUE(dek.ok());
  if (!dek.ok()) return SecretBytes();
  auto pkcs8 = crypto::Aes256GcmOpen(
      *dek, *crypto::Base64Decode(j.at("sealed_private_key").get<std::string>()),
      crypto::AsBytes(aad + "pkcs8"));
  EXPECT_TRUE(pkcs8.ok());
  return pkcs8.ok() ? std::move(pkcs8).value() : SecretBytes();
}

// The raw private scalar / seed, so a leak in a format other than PKCS#8 would
// be caught too.
Bytes RawPrivate(EVP_PKEY* key) {
  if (EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519) {
    Bytes raw(32);
    size_t len = raw.size();
    EXPECT_EQ(EVP_PKEY_get_raw_private_key(key, raw.data(), &len), 1);
    return raw;
  }
  const char* param =
      EVP_PKEY_get_base_id(key) == EVP_PKEY_EC ? OSSL_PKEY_PARAM_PRIV_KEY : OSSL_PKEY_PARAM_RSA_D;
  BIGNUM* bn = nullptr;
  EXPECT_EQ(EVP_PKEY_get_bn_param(key, param, &bn), 1);
  Bytes raw(static_cast<size_t>(BN_num_bytes(bn)));
  BN_bn2bin(bn, raw.data());
  BN_clear_free(bn);
  return raw;
}

bool Contains(const std::string& haystack, ByteView needle) {
  return haystack.find(crypto::AsString(needle)) != std::string::npos;
}

TEST(SoftwareBackendTest, NoPlaintextPrivateKeyOnDisk) {
  TempDir tmp;
  std::string dir = tmp.File("ks");
  auto backend = MustCreate(KeyFileOptions(dir));
  ASSERT_NE(backend, nullptr);
  for (Algorithm alg : {Algorithm::kES256, Algorithm::kPS256, Algorithm::kEd25519}) {
    auto key = backend->GenerateKey({.algorithm = alg, .label = "secret"});
    ASSERT_TRUE(key.ok());
    ASSERT_TRUE(backend->SignDigest(key->uri, alg, Bytes(DigestSize(alg), 7)).ok());

    SecretBytes pkcs8 = RecoverPkcs8(dir, key->uri);
    ASSERT_FALSE(pkcs8.empty());
    auto pkey = crypto::PrivateKeyFromPkcs8Der(pkcs8);
    ASSERT_TRUE(pkey.ok());
    // Proves the recovered bytes really are this key's private half.
    ASSERT_EQ(*crypto::PublicKeyToSpkiDer(pkey->get()), key->public_key_spki_der);
    Bytes raw = RawPrivate(pkey->get());
    ASSERT_GE(raw.size(), 32u);

    for (const std::string& file : AllFiles(dir)) {
      std::string bytes = ReadFile(file);
      EXPECT_FALSE(Contains(bytes, pkcs8.Reveal(SecretAccess::Grant())))
          << AlgorithmName(alg) << " PKCS#8 found in " << file;
      EXPECT_FALSE(Contains(bytes, raw)) << AlgorithmName(alg) << " raw key found in " << file;
      // Nor in the encodings a careless writer would use.
      EXPECT_FALSE(Contains(
          bytes, crypto::AsBytes(crypto::Base64Encode(pkcs8.Reveal(SecretAccess::Grant())))));
      EXPECT_FALSE(Contains(bytes, crypto::AsBytes(crypto::HexEncode(raw))));
    }
  }
}

TEST(SoftwareBackendTest, PassphraseNeverWrittenToDisk) {
  TempDir tmp;
  std::string dir = tmp.File("ks");
  const std::string passphrase = "a-very-distinctive-passphrase-1234";
  auto backend = MustCreate(PassphraseOptions(dir, passphrase));
  ASSERT_NE(backend, nullptr);
  ASSERT_TRUE(backend->GenerateKey({.algorithm = Algorithm::kEd25519, .label = "x"}).ok());
  for (const std::string& file : AllFiles(dir)) {
    EXPECT_EQ(ReadFile(file).find(passphrase), std::string::npos) << file;
  }
}

TEST(SoftwareBackendTest, FilesAre0600AndDirectories0700) {
  TempDir tmp;
  std::string dir = tmp.File("nested/ks");
  // With a permissive umask the backend must still set the modes itself.
  mode_t old = ::umask(0);
  auto backend = MustCreate(KeyFileOptions(dir));
  ASSERT_NE(backend, nullptr);
  auto key = backend->GenerateKey({.algorithm = Algorithm::kES256, .label = "modes"});
  ::umask(old);
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(ModeOf(dir), 0700u);
  EXPECT_EQ(ModeOf(dir + "/keys"), 0700u);
  std::vector<std::string> files = AllFiles(dir);
  EXPECT_EQ(files.size(), 3u);  // keystore.json, master.key, one key; no temp leftovers
  for (const std::string& file : files) EXPECT_EQ(ModeOf(file), 0600u) << file;
}

TEST(SoftwareBackendTest, UnknownAndMalformedUris) {
  TempDir tmp;
  auto backend = MustCreate(KeyFileOptions(tmp.File("ks")));
  ASSERT_NE(backend, nullptr);
  Bytes digest(32, 1);
  EXPECT_EQ(
      backend->SignDigest("software:nope-0011aabb", Algorithm::kES256, digest).status().code(),
      StatusCode::kNotFound);
  EXPECT_EQ(backend->PublicKeySpkiDer("software:nope-0011aabb").status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(backend->DestroyKey("software:nope-0011aabb").code(), StatusCode::kNotFound);
  for (const char* bad : {"pkcs11:token=x", "software:", "software:../keystore", "software:a/b",
                          "software:.hidden", "software:UPPER"}) {
    EXPECT_EQ(backend->SignDigest(bad, Algorithm::kES256, digest).status().code(),
              StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(SoftwareBackendTest, WrongAlgorithmOrDigestIsInvalidArgument) {
  TempDir tmp;
  auto backend = MustCreate(KeyFileOptions(tmp.File("ks")));
  ASSERT_NE(backend, nullptr);
  auto key = backend->GenerateKey({.algorithm = Algorithm::kES256, .label = "k"});
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(backend->SignDigest(key->uri, Algorithm::kES384, Bytes(48, 1)).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(backend->SignDigest(key->uri, Algorithm::kES256, Bytes(31, 1)).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(SoftwareBackendTest, LabelsAreSanitised) {
  TempDir tmp;
  auto backend = MustCreate(KeyFileOptions(tmp.File("ks")));
  ASSERT_NE(backend, nullptr);
  auto name_for = [&](const std::string& label) {
    auto key = backend->GenerateKey({.algorithm = Algorithm::kEd25519, .label = label});
    EXPECT_TRUE(key.ok());
    std::string name = NameOf(key->uri);
    return name.substr(0, name.size() - 9);  // drop "-<8 hex>"
  };
  EXPECT_EQ(name_for("acme-news/v1"), "acme-news-v1");
  EXPECT_EQ(name_for("../../etc/passwd"), "etc-passwd");
  EXPECT_EQ(name_for("Acme News  2026!"), "acme-news-2026");
  EXPECT_EQ(name_for(""), "key");
  EXPECT_EQ(name_for("///"), "key");
  EXPECT_EQ(name_for(std::string(200, 'x')), std::string(64, 'x'));
  // Two keys with the same label never share a name.
  auto a = backend->GenerateKey({.algorithm = Algorithm::kEd25519, .label = "same"});
  auto b = backend->GenerateKey({.algorithm = Algorithm::kEd25519, .label = "same"});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->uri, b->uri);
}

TEST(SoftwareBackendTest, DestroyKeyRemovesItEverywhere) {
  TempDir tmp;
  std::string dir = tmp.File("ks");
  auto backend = MustCreate(KeyFileOptions(dir));
  ASSERT_NE(backend, nullptr);
  auto key = backend->GenerateKey({.algorithm = Algorithm::kES256, .label = "doomed"});
  auto keep = backend->GenerateKey({.algorithm = Algorithm::kES256, .label = "keep"});
  ASSERT_TRUE(key.ok() && keep.ok());
  ASSERT_TRUE(backend->DestroyKey(key->uri).ok());
  EXPECT_FALSE(std::filesystem::exists(KeyFile(dir, key->uri)));
  EXPECT_EQ(backend->SignDigest(key->uri, Algorithm::kES256, Bytes(32, 1)).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(backend->DestroyKey(key->uri).code(), StatusCode::kNotFound);
  auto reopened = MustCreate(KeyFileOptions(dir));
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->PublicKeySpkiDer(key->uri).status().code(), StatusCode::kNotFound);
  ExpectSignsAndVerifies(*reopened, keep->uri, Algorithm::kES256, keep->public_key_spki_der);
}

TEST(SoftwareBackendTest, ConcurrentSigningFromFourThreads) {
  TempDir tmp;
  std::string dir = tmp.File("ks");
  std::vector<std::pair<GeneratedKey, Algorithm>> keys;
  {
    auto backend = MustCreate(KeyFileOptions(dir));
    ASSERT_NE(backend, nullptr);
    for (Algorithm alg : {Algorithm::kES256, Algorithm::kEd25519, Algorithm::kPS256}) {
      auto key = backend->GenerateKey({.algorithm = alg, .label = "hot"});
      ASSERT_TRUE(key.ok());
      keys.emplace_back(*key, alg);
    }
  }
  // A fresh instance, so the threads also race on the cold-cache load path.
  auto backend = MustCreate(KeyFileOptions(dir));
  ASSERT_NE(backend, nullptr);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 60; ++i) {
        const auto& [key, alg] = keys[static_cast<size_t>(i + t) % keys.size()];
        Bytes digest =
            crypto::DigestFor(alg, crypto::AsBytes(std::to_string(t) + "/" + std::to_string(i)));
        auto sig = backend->SignDigest(key.uri, alg, digest);
        auto pub = crypto::PublicKeyFromSpkiDer(key.public_key_spki_der);
        if (!sig.ok() || !pub.ok() || !crypto::VerifyDigest(pub->get(), alg, digest, *sig).ok()) {
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(SoftwareBackendTest, CorruptKeystoreMetadataIsDataLoss) {
  TempDir tmp;
  std::string dir = tmp.File("ks");
  ASSERT_NE(MustCreate(KeyFileOptions(dir)), nullptr);
  std::string meta = ReadFile(dir + "/keystore.json");

  WriteFile(dir + "/keystore.json", "{not json");
  EXPECT_EQ(SoftwareBackend::Create(KeyFileOptions(dir)).status().code(), StatusCode::kDataLoss);
  WriteFile(dir + "/keystore.json", meta);

  std::string master = ReadFile(dir + "/master.key");
  WriteFile(dir + "/master.key", master.substr(0, 31));
  EXPECT_EQ(SoftwareBackend::Create(KeyFileOptions(dir)).status().code(), StatusCode::kDataLoss);
  WriteFile(dir + "/master.key", std::string(32, 'k'));  // right size, wrong key
  EXPECT_EQ(SoftwareBackend::Create(KeyFileOptions(dir)).status().code(), StatusCode::kDataLoss);
  std::filesystem::remove(dir + "/master.key");
  EXPECT_EQ(SoftwareBackend::Create(KeyFileOptions(dir)).status().code(),
            StatusCode::kFailedPrecondition);
  WriteFile(dir + "/master.key", master);
  EXPECT_NE(MustCreate(KeyFileOptions(dir)), nullptr);
}

TEST(SoftwareBackendTest, MissingMetadataWithKeysPresentIsDataLoss) {
  TempDir tmp;
  std::string dir = tmp.File("ks");
  {
    auto backend = MustCreate(KeyFileOptions(dir));
    ASSERT_NE(backend, nullptr);
    ASSERT_TRUE(backend->GenerateKey({.algorithm = Algorithm::kEd25519, .label = "x"}).ok());
  }
  std::filesystem::remove(dir + "/keystore.json");
  EXPECT_EQ(SoftwareBackend::Create(KeyFileOptions(dir)).status().code(), StatusCode::kDataLoss);
}

TEST(SoftwareBackendTest, CustomMasterKeyFileLocation) {
  TempDir tmp;
  SoftwareKeystoreOptions o = KeyFileOptions(tmp.File("ks"));
  o.master_key_file = tmp.File("secrets/kek.bin");
  auto backend = MustCreate(std::move(o));
  ASSERT_NE(backend, nullptr);
  EXPECT_EQ(ReadFile(tmp.File("secrets/kek.bin")).size(), 32u);
  EXPECT_FALSE(std::filesystem::exists(tmp.File("ks/master.key")));
}

TEST(SoftwareBackendTest, HealthReflectsWritability) {
  TempDir tmp;
  std::string dir = tmp.File("ks");
  auto backend = MustCreate(KeyFileOptions(dir));
  ASSERT_NE(backend, nullptr);
  BackendHealth h = backend->Health();
  EXPECT_TRUE(h.healthy) << h.detail;
  EXPECT_EQ(AllFiles(dir).size(), 2u);  // the probe file is cleaned up
  // Tests may run as root, where permission bits do not stop writes; removing
  // the directory does.
  std::filesystem::remove_all(dir);
  h = backend->Health();
  EXPECT_FALSE(h.healthy);
  EXPECT_FALSE(h.detail.empty());
}

}  // namespace
}  // namespace concierge::backends
