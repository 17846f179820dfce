#include "backends/software/software_backend.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <shared_mutex>
#include <unordered_map>
#include <utility>

#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/eddsa.h"
#include "crypto/keys.h"
#include "crypto/signature.h"

namespace concierge::backends {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kUriPrefix = "software:";
constexpr std::string_view kKeystoreFile = "keystore.json";
constexpr std::string_view kKeysDir = "keys";
constexpr std::string_view kKeySuffix = ".key";
constexpr std::string_view kSourcePassphrase = "passphrase";
constexpr std::string_view kSourceKeyFile = "key-file";
constexpr int kFormatVersion = 1;
constexpr size_t kSaltSize = 16;
constexpr size_t kMaxNameLength = 64;
constexpr std::string_view kCheckPlaintext = "concierge software keystore check v1";
constexpr std::string_view kCheckAad = "concierge/software-keystore-check/v1";
// Bounds on Argon2 parameters read back from keystore.json: a tampered file must
// not be able to make start-up allocate unbounded memory or spin for hours.
constexpr uint32_t kMaxArgonTime = 64;
constexpr uint32_t kMaxArgonMemoryKib = 4u * 1024 * 1024;
constexpr uint32_t kMaxArgonLanes = 64;

// ---------------------------------------------------------------------------
// File helpers. POSIX calls rather than std::filesystem/fstream because we need
// exact modes, O_EXCL and fsync, none of which the standard library exposes.

std::string Errno(std::string_view what, const std::string& path) {
  return std::string(what) + " " + path + ": " + std::strerror(errno);
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // Closes explicitly so the caller sees close() errors (delayed write failures).
  bool Close() {
    int fd = std::exchange(fd_, -1);
    return fd < 0 || ::close(fd) == 0;
  }

 private:
  int fd_;
};

bool WriteAll(int fd, ByteView data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    off += static_cast<size_t>(n);
  }
  return true;
}

std::string DirName(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Makes a completed rename durable: without it a crash can lose the new entry.
Status FsyncDir(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0 || ::fsync(fd.get()) != 0) return InternalError(Errno("syncing directory", dir));
  return Status::Ok();
}

// temp + fsync + rename, so readers see the old file or the new one, never half.
Status WriteFileAtomic(const std::string& path, ByteView data) {
  std::string tmp = path + ".tmp-" + crypto::RandomHex(6);
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (fd.get() < 0) return InternalError(Errno("creating", tmp));
  // The umask can only narrow 0600, but set it exactly anyway.
  bool ok = ::fchmod(fd.get(), 0600) == 0 && WriteAll(fd.get(), data) && ::fsync(fd.get()) == 0;
  ok = fd.Close() && ok;
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    Status st = InternalError(Errno("writing", path));
    ::unlink(tmp.c_str());
    return st;
  }
  return FsyncDir(DirName(path));
}

enum class ReadResult { kOk, kMissing, kError };

ReadResult ReadWholeFile(const std::string& path, Bytes* out) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0) return errno == ENOENT ? ReadResult::kMissing : ReadResult::kError;
  out->clear();
  uint8_t buf[8192];
  while (true) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ReadResult::kError;
    }
    if (n == 0) break;
    out->insert(out->end(), buf, buf + n);
  }
  return ReadResult::kOk;
}

// Like ReadWholeFile but straight into SecretBytes, for master.key: no unwiped
// copy of the KEK is left on the heap.
ReadResult ReadSecretFile(const std::string& path, size_t expected, SecretBytes* out,
                          bool* wrong_size) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return errno == ENOENT ? ReadResult::kMissing : ReadResult::kError;
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ReadResult::kError;
  *wrong_size = static_cast<size_t>(st.st_size) != expected;
  if (*wrong_size) return ReadResult::kOk;
  SecretBytes secret(expected);
  auto buf = secret.RevealMutable(SecretAccess::Grant());
  size_t off = 0;
  while (off < expected) {
    ssize_t n = ::read(fd.get(), buf.data() + off, expected - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ReadResult::kError;
    if (n == 0) {
      *wrong_size = true;
      return ReadResult::kOk;
    }
    off += static_cast<size_t>(n);
  }
  *out = std::move(secret);
  return ReadResult::kOk;
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// Creates each missing component with 0700 (std::filesystem would use 0777 &
// ~umask, leaving the keystore listable by others).
Status MakeDirs(const std::string& path) {
  std::string partial;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t next = path.find('/', pos);
    if (next == std::string::npos) next = path.size();
    partial = path.substr(0, next);
    pos = next + 1;
    if (partial.empty()) continue;
    if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) {
      return InternalError(Errno("creating directory", partial));
    }
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return InternalError("keystore path " + path + " is not a directory");
  }
  return Status::Ok();
}

bool DirHasEntries(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) return false;
  bool any = false;
  while (struct dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
      any = true;
      break;
    }
  }
  ::closedir(d);
  return any;
}

// Overwrites a file's contents in place before unlinking it. On journaling or
// copy-on-write filesystems and SSDs old blocks may survive, so this is defence
// in depth; the real protection is that the wrapped DEK in the file is gone.
Status OverwriteAndUnlink(const std::string& path) {
  {
    Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
    if (fd.get() < 0) return InternalError(Errno("opening", path));
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return InternalError(Errno("stat", path));
    Bytes noise = crypto::RandomBytes(static_cast<size_t>(st.st_size));
    if (!WriteAll(fd.get(), noise) || ::fsync(fd.get()) != 0) {
      return InternalError(Errno("overwriting", path));
    }
  }
  if (::unlink(path.c_str()) != 0) return InternalError(Errno("removing", path));
  return FsyncDir(DirName(path));
}

// ---------------------------------------------------------------------------
// Naming.

// "acme-news/v1" -> "acme-news-v1": only [a-z0-9._-], no leading/trailing '-' or
// '.', so the name is safe as a file name and can never be "." or "..".
std::string SanitiseLabel(std::string_view label) {
  std::string out;
  for (char c : label) {
    unsigned char u = static_cast<unsigned char>(c);
    char mapped;
    if (u >= 'A' && u <= 'Z') {
      mapped = static_cast<char>(u - 'A' + 'a');
    } else if ((u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') || c == '.' || c == '_') {
      mapped = c;
    } else {
      mapped = '-';
    }
    if (mapped == '-' && (out.empty() || out.back() == '-')) continue;
    out.push_back(mapped);
  }
  while (!out.empty() && (out.back() == '-' || out.back() == '.')) out.pop_back();
  size_t start = out.find_first_not_of("-.");
  out = start == std::string::npos ? std::string() : out.substr(start);
  if (out.size() > kMaxNameLength) {
    out.resize(kMaxNameLength);
    while (!out.empty() && (out.back() == '-' || out.back() == '.')) out.pop_back();
  }
  return out.empty() ? "key" : out;
}

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength + 9 || name[0] == '.' || name[0] == '-') {
    return false;
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// Everything about a key that must not be swapped or edited on disk goes into
// the AAD: the URI (so files cannot be renamed onto another key), the algorithm
// and the public key.
std::string KeyAad(std::string_view uri, Algorithm alg, ByteView spki, std::string_view part) {
  std::string aad = "concierge/software-key/v1\n";
  aad += uri;
  aad += '\n';
  aad += AlgorithmName(alg);
  aad += '\n';
  aad += crypto::Sha256Hex(spki);
  aad += '\n';
  aad += part;
  return aad;
}

std::optional<std::string> GetString(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

std::optional<uint64_t> GetUint(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_unsigned()) return std::nullopt;
  return it->get<uint64_t>();
}

std::optional<Bytes> GetBase64(const Json& j, const char* key) {
  auto s = GetString(j, key);
  if (!s) return std::nullopt;
  auto b = crypto::Base64Decode(*s);
  if (!b.ok()) return std::nullopt;
  return std::move(b).value();
}

ByteView StrBytes(const std::string& s) { return crypto::AsBytes(s); }

}  // namespace

// ---------------------------------------------------------------------------

struct SoftwareBackend::Impl {
  struct LoadedKey {
    Algorithm alg;
    crypto::EvpPkeyPtr pkey;
    Bytes spki;
    std::unique_ptr<crypto::PreparedSigner> signer;  // pooled contexts for the hot path
  };

  std::string dir;
  std::string keys_dir;
  std::string kek_source;
  SecretBytes kek;  // immutable after Create, so readable without locking

  // Guards `cache`. Signing takes it shared; loads, generation and destruction
  // take it exclusively only for the map update, except DestroyKey (see there).
  std::shared_mutex mu;
  std::unordered_map<std::string, std::shared_ptr<LoadedKey>> cache;

  std::string KeyPath(const std::string& name) const {
    return keys_dir + "/" + name + std::string(kKeySuffix);
  }

  static StatusOr<std::string> NameFromUri(std::string_view uri) {
    if (uri.substr(0, kUriPrefix.size()) != kUriPrefix) {
      return InvalidArgumentError("key uri is not a software: uri");
    }
    std::string_view name = uri.substr(kUriPrefix.size());
    if (!ValidName(name)) return InvalidArgumentError("malformed software key uri");
    return std::string(name);
  }

  StatusOr<std::shared_ptr<LoadedKey>> Get(std::string_view uri);
  StatusOr<std::shared_ptr<LoadedKey>> LoadFromDisk(const std::string& name,
                                                    const std::string& uri) const;
};

StatusOr<std::shared_ptr<SoftwareBackend::Impl::LoadedKey>> SoftwareBackend::Impl::Get(
    std::string_view uri) {
  ASSIGN_OR_RETURN(std::string name, NameFromUri(uri));
  {
    std::shared_lock lock(mu);
    auto it = cache.find(name);
    if (it != cache.end()) return it->second;
  }
  // Read and decrypt outside the lock so a cold load never stalls signers of
  // other keys. Two threads may both load the same key on a cold cache; the
  // second result is simply dropped.
  ASSIGN_OR_RETURN(std::shared_ptr<LoadedKey> loaded, LoadFromDisk(name, std::string(uri)));
  std::unique_lock lock(mu);
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  // DestroyKey unlinks under this same lock; re-checking here means a key
  // destroyed while we were decrypting it is not resurrected in the cache.
  if (!PathExists(KeyPath(name))) return NotFoundError("unknown key " + std::string(uri));
  cache.emplace(name, loaded);
  return loaded;
}

StatusOr<std::shared_ptr<SoftwareBackend::Impl::LoadedKey>> SoftwareBackend::Impl::LoadFromDisk(
    const std::string& name, const std::string& uri) const {
  std::string path = KeyPath(name);
  Bytes raw;
  switch (ReadWholeFile(path, &raw)) {
    case ReadResult::kMissing:
      return NotFoundError("unknown key " + uri);
    case ReadResult::kError:
      return UnavailableError(Errno("reading key file for", uri));
    case ReadResult::kOk:
      break;
  }
  // Messages name the URI only: never file contents, which could include key bytes.
  auto corrupt = [&uri](std::string_view why) {
    return DataLossError("key file for " + uri + " is corrupt or was tampered with (" +
                         std::string(why) + ")");
  };
  Json j = Json::parse(raw.begin(), raw.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return corrupt("not valid JSON");
  auto version = GetUint(j, "version");
  if (!version || *version != kFormatVersion) return corrupt("unsupported format version");
  auto file_uri = GetString(j, "uri");
  if (!file_uri || *file_uri != uri) return corrupt("uri mismatch");
  auto alg_name = GetString(j, "algorithm");
  std::optional<Algorithm> alg = alg_name ? ParseAlgorithm(*alg_name) : std::nullopt;
  if (!alg || AlgorithmName(*alg) != *alg_name) return corrupt("unknown algorithm");
  auto spki = GetBase64(j, "public_key_spki");
  auto wrapped_dek = GetBase64(j, "wrapped_dek");
  auto sealed_key = GetBase64(j, "sealed_private_key");
  if (!spki || !wrapped_dek || !sealed_key) return corrupt("missing or malformed field");

  auto dek = crypto::Aes256GcmOpen(kek, *wrapped_dek, StrBytes(KeyAad(uri, *alg, *spki, "dek")));
  if (!dek.ok()) return corrupt("data key does not authenticate");
  auto pkcs8 =
      crypto::Aes256GcmOpen(*dek, *sealed_key, StrBytes(KeyAad(uri, *alg, *spki, "pkcs8")));
  if (!pkcs8.ok()) return corrupt("private key does not authenticate");
  auto pkey = crypto::PrivateKeyFromPkcs8Der(*pkcs8);
  if (!pkey.ok()) return corrupt("private key does not parse");
  if (!crypto::CheckKeyMatchesAlgorithm(pkey->get(), *alg).ok()) {
    return corrupt("key does not match its algorithm");
  }
  auto derived_spki = crypto::PublicKeyToSpkiDer(pkey->get());
  if (!derived_spki.ok() || *derived_spki != *spki) return corrupt("public key mismatch");

  auto loaded = std::make_shared<LoadedKey>();
  loaded->alg = *alg;
  loaded->pkey = std::move(pkey).value();
  loaded->spki = std::move(spki).value();
  auto signer = crypto::PreparedSigner::Create(loaded->pkey.get(), loaded->alg);
  if (!signer.ok()) return corrupt("key does not fit its algorithm");
  loaded->signer = *std::move(signer);
  return loaded;
}

// ---------------------------------------------------------------------------

namespace {

struct KeystoreMeta {
  std::string kek_source;
  crypto::Argon2Params argon2;
  Bytes salt;
  Bytes check;
};

StatusOr<KeystoreMeta> ParseKeystoreJson(const Bytes& raw) {
  auto corrupt = [](std::string_view why) {
    return DataLossError("keystore.json is corrupt (" + std::string(why) + ")");
  };
  Json j = Json::parse(raw.begin(), raw.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return corrupt("not valid JSON");
  auto version = GetUint(j, "version");
  if (!version || *version != kFormatVersion) return corrupt("unsupported format version");
  KeystoreMeta meta;
  auto source = GetString(j, "kek_source");
  if (!source || (*source != kSourcePassphrase && *source != kSourceKeyFile)) {
    return corrupt("unknown kek_source");
  }
  meta.kek_source = *source;
  auto check = GetBase64(j, "check");
  if (!check) return corrupt("missing check value");
  meta.check = std::move(*check);
  if (meta.kek_source == kSourcePassphrase) {
    auto it = j.find("argon2id");
    if (it == j.end() || !it->is_object()) return corrupt("missing argon2id parameters");
    auto t = GetUint(*it, "time_cost");
    auto m = GetUint(*it, "memory_kib");
    auto p = GetUint(*it, "parallelism");
    auto salt = GetBase64(*it, "salt");
    if (!t || !m || !p || !salt) return corrupt("malformed argon2id parameters");
    if (*t < 1 || *t > kMaxArgonTime || *p < 1 || *p > kMaxArgonLanes || *m < 8 * *p ||
        *m > kMaxArgonMemoryKib || salt->size() < kSaltSize) {
      return corrupt("argon2id parameters out of range");
    }
    meta.argon2 = {static_cast<uint32_t>(*t), static_cast<uint32_t>(*m), static_cast<uint32_t>(*p)};
    meta.salt = std::move(*salt);
  }
  return meta;
}

Bytes KeystoreJson(const KeystoreMeta& meta) {
  Json j = {{"version", kFormatVersion},
            {"kek_source", meta.kek_source},
            {"check", crypto::Base64Encode(meta.check)}};
  if (meta.kek_source == kSourcePassphrase) {
    j["argon2id"] = {{"time_cost", meta.argon2.time_cost},
                     {"memory_kib", meta.argon2.memory_kib},
                     {"parallelism", meta.argon2.parallelism},
                     {"salt", crypto::Base64Encode(meta.salt)}};
  }
  std::string s = j.dump(2) + "\n";
  return Bytes(s.begin(), s.end());
}

StatusOr<SecretBytes> DeriveKek(const SecretBytes& passphrase, const KeystoreMeta& meta) {
  auto kek = crypto::DeriveKeyArgon2id(passphrase, meta.salt, meta.argon2, crypto::kAes256KeySize);
  if (!kek.ok()) return kek.status().Annotate("deriving keystore key");
  return kek;
}

// Reads master.key, or creates it when `create` is set and it does not exist
// (an operator may pre-provision it, e.g. from a secret store).
StatusOr<SecretBytes> LoadMasterKey(const std::string& path, bool create) {
  SecretBytes key;
  bool wrong_size = false;
  switch (ReadSecretFile(path, crypto::kAes256KeySize, &key, &wrong_size)) {
    case ReadResult::kError:
      return UnavailableError(Errno("reading master key file", path));
    case ReadResult::kOk:
      if (wrong_size) return DataLossError("master key file " + path + " is not 32 bytes");
      return key;
    case ReadResult::kMissing:
      break;
  }
  if (!create) {
    return FailedPreconditionError("master key file " + path +
                                   " not found; the keystore "
                                   "cannot be opened without it");
  }
  RETURN_IF_ERROR(MakeDirs(DirName(path)));
  SecretBytes fresh = crypto::RandomSecret(crypto::kAes256KeySize);
  RETURN_IF_ERROR(WriteFileAtomic(path, fresh.Reveal(SecretAccess::Grant())));
  return fresh;
}

}  // namespace

StatusOr<std::unique_ptr<SoftwareBackend>> SoftwareBackend::Create(
    SoftwareKeystoreOptions options) {
  if (options.dir.empty()) return InvalidArgumentError("software keystore dir is empty");
  while (options.dir.size() > 1 && options.dir.back() == '/') options.dir.pop_back();
  if (options.master_key_file.empty()) options.master_key_file = options.dir + "/master.key";
  if (options.passphrase && options.passphrase->empty()) {
    return InvalidArgumentError("master passphrase is empty");
  }

  auto impl = std::make_unique<Impl>();
  impl->dir = options.dir;
  impl->keys_dir = options.dir + "/" + std::string(kKeysDir);
  std::string meta_path = options.dir + "/" + std::string(kKeystoreFile);

  Bytes raw;
  ReadResult rr = ReadWholeFile(meta_path, &raw);
  if (rr == ReadResult::kError) return UnavailableError(Errno("reading", meta_path));

  if (rr == ReadResult::kMissing) {
    // Refuse to silently start a fresh keystore over orphaned key files: with a
    // new KEK they would be unreadable, and the operator should know.
    if (DirHasEntries(impl->keys_dir)) {
      return DataLossError("keystore.json is missing but " + impl->keys_dir + " holds keys");
    }
    RETURN_IF_ERROR(MakeDirs(impl->dir));
    RETURN_IF_ERROR(MakeDirs(impl->keys_dir));
    KeystoreMeta meta;
    if (options.passphrase) {
      meta.kek_source = kSourcePassphrase;
      meta.argon2 = options.argon2;
      meta.salt = crypto::RandomBytes(kSaltSize);
      ASSIGN_OR_RETURN(impl->kek, DeriveKek(*options.passphrase, meta));
    } else {
      meta.kek_source = kSourceKeyFile;
      ASSIGN_OR_RETURN(impl->kek, LoadMasterKey(options.master_key_file, /*create=*/true));
    }
    ASSIGN_OR_RETURN(meta.check, crypto::Aes256GcmSeal(impl->kek, crypto::AsBytes(kCheckPlaintext),
                                                       crypto::AsBytes(kCheckAad)));
    RETURN_IF_ERROR(WriteFileAtomic(meta_path, KeystoreJson(meta)));
    impl->kek_source = meta.kek_source;
  } else {
    ASSIGN_OR_RETURN(KeystoreMeta meta, ParseKeystoreJson(raw));
    if (meta.kek_source == kSourcePassphrase) {
      if (!options.passphrase) {
        return FailedPreconditionError(
            "keystore is passphrase-protected; a master passphrase is required");
      }
      ASSIGN_OR_RETURN(impl->kek, DeriveKek(*options.passphrase, meta));
    } else {
      // A passphrase the keystore does not use would give a false sense of
      // protection; say so instead of ignoring it.
      if (options.passphrase) {
        return FailedPreconditionError(
            "keystore uses a master key file, but a master passphrase was supplied");
      }
      ASSIGN_OR_RETURN(impl->kek, LoadMasterKey(options.master_key_file, /*create=*/false));
    }
    auto check = crypto::Aes256GcmOpen(impl->kek, meta.check, crypto::AsBytes(kCheckAad));
    if (!check.ok() || check->RevealString(SecretAccess::Grant()) != kCheckPlaintext) {
      if (meta.kek_source == kSourcePassphrase) {
        return PermissionDeniedError("wrong master passphrase for keystore");
      }
      return DataLossError("master key file does not match keystore " + impl->dir);
    }
    RETURN_IF_ERROR(MakeDirs(impl->keys_dir));
    impl->kek_source = meta.kek_source;
  }
  // The constructor is private (Create is the only way in), which rules out
  // make_unique; ownership is taken on the same line.
  return std::unique_ptr<SoftwareBackend>(new SoftwareBackend(std::move(impl)));
}

SoftwareBackend::SoftwareBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SoftwareBackend::~SoftwareBackend() = default;

std::string_view SoftwareBackend::kek_source() const { return impl_->kek_source; }

StatusOr<GeneratedKey> SoftwareBackend::GenerateKey(const KeySpec& spec) {
  ASSIGN_OR_RETURN(crypto::EvpPkeyPtr pkey, crypto::GenerateKeyPair(spec.algorithm));
  ASSIGN_OR_RETURN(Bytes spki, crypto::PublicKeyToSpkiDer(pkey.get()));

  std::string base = SanitiseLabel(spec.label);
  std::string name;
  for (int attempt = 0; attempt < 8; ++attempt) {
    std::string candidate = base + "-" + crypto::RandomHex(4);
    if (!PathExists(impl_->KeyPath(candidate))) {
      name = std::move(candidate);
      break;
    }
  }
  if (name.empty()) return InternalError("could not pick an unused key name");
  std::string uri = std::string(kUriPrefix) + name;

  // Envelope: a fresh DEK per key, so re-wrapping under a new KEK later touches
  // only 60 bytes per key and never the private key itself.
  SecretBytes dek = crypto::RandomSecret(crypto::kAes256KeySize);
  Bytes wrapped_dek;
  Bytes sealed_key;
  {
    ASSIGN_OR_RETURN(SecretBytes pkcs8, crypto::PrivateKeyToPkcs8Der(pkey.get()));
    ASSIGN_OR_RETURN(sealed_key,
                     crypto::Aes256GcmSeal(dek, pkcs8.Reveal(SecretAccess::Grant()),
                                           StrBytes(KeyAad(uri, spec.algorithm, spki, "pkcs8"))));
  }
  ASSIGN_OR_RETURN(wrapped_dek,
                   crypto::Aes256GcmSeal(impl_->kek, dek.Reveal(SecretAccess::Grant()),
                                         StrBytes(KeyAad(uri, spec.algorithm, spki, "dek"))));
  Json j = {{"version", kFormatVersion},
            {"uri", uri},
            {"algorithm", std::string(AlgorithmName(spec.algorithm))},
            {"public_key_spki", crypto::Base64Encode(spki)},
            {"wrapped_dek", crypto::Base64Encode(wrapped_dek)},
            {"sealed_private_key", crypto::Base64Encode(sealed_key)}};
  // Compact, with no trailing newline: every byte is then meaningful, so any
  // single-byte change is caught (by the parser, a field check or GCM) rather
  // than silently accepted as a whitespace edit.
  std::string text = j.dump();
  RETURN_IF_ERROR(WriteFileAtomic(impl_->KeyPath(name), crypto::AsBytes(text)));

  auto loaded = std::make_shared<Impl::LoadedKey>();
  loaded->alg = spec.algorithm;
  loaded->pkey = std::move(pkey);
  loaded->spki = spki;
  ASSIGN_OR_RETURN(loaded->signer, crypto::PreparedSigner::Create(loaded->pkey.get(), loaded->alg));
  {
    std::unique_lock lock(impl_->mu);
    impl_->cache.emplace(name, std::move(loaded));
  }
  GeneratedKey out;
  out.uri = std::move(uri);
  out.public_key_spki_der = std::move(spki);
  return out;
}

StatusOr<Bytes> SoftwareBackend::SignDigest(std::string_view key_uri, Algorithm alg,
                                            ByteView digest) {
  ASSIGN_OR_RETURN(std::shared_ptr<Impl::LoadedKey> key, impl_->Get(key_uri));
  if (key->alg != alg) {
    return FieldError("algorithm", "key " + std::string(key_uri) + " is " +
                                       std::string(AlgorithmName(key->alg)) + ", not " +
                                       std::string(AlgorithmName(alg)));
  }
  // OpenSSL 3 allows concurrent signing with one EVP_PKEY; the shared_ptr keeps
  // it alive even if DestroyKey evicts it mid-call.
  return key->signer->Sign(digest);
}

StatusOr<Bytes> SoftwareBackend::SignMessage(std::string_view key_uri, Algorithm alg,
                                             ByteView message) {
  if (FamilyOf(alg) != KeyFamily::kEdDsa) {
    return UnimplementedError("whole-message signing is for Ed25519; hash and use SignDigest for " +
                              std::string(AlgorithmName(alg)));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Impl::LoadedKey> key, impl_->Get(key_uri));
  if (key->alg != alg) {
    return FieldError("algorithm", "key " + std::string(key_uri) + " is " +
                                       std::string(AlgorithmName(key->alg)) + ", not " +
                                       std::string(AlgorithmName(alg)));
  }
  return crypto::Ed25519SignMessage(key->pkey.get(), message);
}

StatusOr<Bytes> SoftwareBackend::PublicKeySpkiDer(std::string_view key_uri) {
  ASSIGN_OR_RETURN(std::shared_ptr<Impl::LoadedKey> key, impl_->Get(key_uri));
  return key->spki;
}

Status SoftwareBackend::DestroyKey(std::string_view key_uri) {
  ASSIGN_OR_RETURN(std::string name, Impl::NameFromUri(key_uri));
  std::string path = impl_->KeyPath(name);
  // Held across the file work so a concurrent cold load cannot re-insert the key
  // between the unlink and the eviction (see Impl::Get). Destruction is rare.
  std::unique_lock lock(impl_->mu);
  if (!PathExists(path)) return NotFoundError("unknown key " + std::string(key_uri));
  impl_->cache.erase(name);
  return OverwriteAndUnlink(path).Annotate("destroying " + std::string(key_uri));
}

BackendHealth SoftwareBackend::Health() {
  BackendHealth h;
  std::string probe = impl_->dir + "/.health-" + crypto::RandomHex(6);
  Fd fd(::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (fd.get() < 0) {
    h.detail = "keystore directory " + impl_->dir + " is not writable: " + std::strerror(errno);
    return h;
  }
  bool ok = WriteAll(fd.get(), crypto::AsBytes("ok")) && ::fsync(fd.get()) == 0;
  ok = fd.Close() && ok;
  ::unlink(probe.c_str());
  if (!ok) {
    h.detail = "keystore directory " + impl_->dir + " rejected a write";
    return h;
  }
  size_t cached;
  {
    std::shared_lock lock(impl_->mu);
    cached = impl_->cache.size();
  }
  h.healthy = true;
  h.detail = "keystore " + impl_->dir + " writable (" + impl_->kek_source + ", " +
             std::to_string(cached) + " keys loaded)";
  return h;
}

}  // namespace concierge::backends
