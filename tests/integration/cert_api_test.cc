// Certificates over the REST API: built-in CA, automatic issuance, chain and
// CRL endpoints, CSR from the backend key, import of external chains and
// revocation, each checked with the openssl command line.
#include <chrono>
#include <map>

#include "crypto/encoding.h"
#include "crypto/hash.h"

#include "integration/api_fixture.h"

namespace concierge {
namespace {

using testing::RunCommand;
using testing::WriteFile;

class CertApiTest : public ApiTest {
 protected:
  CertApiTest() : fake_(std::chrono::system_clock::now()) { clock_ = &fake_; }

  std::string Openssl(const std::string& args) {
    auto r = RunCommand("openssl " + args + " 2>&1");
    EXPECT_EQ(r.exit_code, 0) << "openssl " << args << "\n" << r.output;
    return r.output;
  }

  std::string Get(const std::string& path) {
    auto r = Admin("GET", path);
    EXPECT_EQ(r.status, 200) << path << ": " << r.body;
    return r.body;
  }

  // An external CA made with the openssl CLI: ext-ca.key / ext-ca.pem.
  void MakeExternalCa() {
    Openssl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + dir_.File("ext-ca.key") +
            " -out " + dir_.File("ext-ca.pem") + " -days 30 -subj /CN=External-CA" +
            " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign");
    WriteFile(dir_.File("leaf.ext"),
              "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
              "extendedKeyUsage=emailProtection\n");
  }

  // Certifies `csr_path` with the external CA for `days`.
  std::string SignWithExternalCa(const std::string& csr_path, const std::string& out, int days) {
    Openssl("x509 -req -in " + csr_path + " -CA " + dir_.File("ext-ca.pem") + " -CAkey " + dir_.File("ext-ca.key") +
            " -CAcreateserial -days " + std::to_string(days) + " -extfile " + dir_.File("leaf.ext") + " -out " +
            dir_.File(out));
    return testing::ReadFile(dir_.File(out));
  }

  FakeClock fake_;
};

TEST_F(CertApiTest, WithoutCaEndpointsSayWhatToDo) {
  CreatePolicy("acme-news", "ES256");
  auto chain = Admin("GET", "/api/v1/tenants/acme-news/certificate-chain");
  ExpectError(chain, 409);
  EXPECT_NE(chain.body.find("run keyctl ca init or import one"), std::string::npos) << chain.body;
  ExpectError(Call("", "GET", "/api/v1/ca/certificate"), 409);
  ExpectError(Call("", "GET", "/api/v1/ca/crl"), 409);
}

TEST_F(CertApiTest, BuiltinCaIssuesVerifiableChainAndCrl) {
  ExpectError(Call(NewToken("operator"), "POST", "/api/v1/ca", "{}"), 403);
  auto init = Admin("POST", "/api/v1/ca", {{"algorithm", "ES384"}, {"subject", "CN=Test Issuing CA,O=Test"}});
  ASSERT_EQ(init.status, 201) << init.body;
  ExpectError(Admin("POST", "/api/v1/ca", json::object()), 409);

  // Public, no token needed.
  auto ca = Call("", "GET", "/api/v1/ca/certificate");
  ASSERT_EQ(ca.status, 200) << ca.body;
  WriteFile(dir_.File("ca.pem"), ca.body);
  std::string ca_text = Openssl("x509 -noout -text -in " + dir_.File("ca.pem"));
  EXPECT_NE(ca_text.find("CA:TRUE"), std::string::npos) << ca_text;

  for (const char* alg : {"ES256", "PS256", "Ed25519"}) {
    std::string tenant = std::string("tenant-") + (alg[0] == 'E' && alg[1] == 'd' ? "ed" : alg);
    for (auto& c : tenant) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    json created = CreatePolicy(tenant, alg);
    ASSERT_TRUE(created.contains("certificate")) << created.dump();
    std::string chain = Get("/api/v1/tenants/" + tenant + "/certificate-chain");
    WriteFile(dir_.File(tenant + "-chain.pem"), chain);
    // The first certificate is the leaf; openssl reads only the first.
    std::string verify = Openssl("verify -CAfile " + dir_.File("ca.pem") + " " + dir_.File(tenant + "-chain.pem"));
    EXPECT_NE(verify.find("OK"), std::string::npos) << verify;
    std::string text = Openssl("x509 -noout -text -in " + dir_.File(tenant + "-chain.pem"));
    EXPECT_NE(text.find("E-mail Protection"), std::string::npos) << text;
    EXPECT_NE(text.find("1.3.6.1.4.1.62558.2.1"), std::string::npos) << text;
    EXPECT_NE(text.find("Digital Signature"), std::string::npos) << text;
    EXPECT_NE(text.find("CN = " + tenant + " C2PA signing"), std::string::npos) << text;
    // Key match: the certificate's key is the tenant's public key.
    std::string cert_pub = Openssl("x509 -noout -pubkey -in " + dir_.File(tenant + "-chain.pem"));
    EXPECT_EQ(cert_pub, Get("/api/v1/tenants/" + tenant + "/public-key"));
  }

  // Revocation by a security officer puts the serial on the CRL.
  ExpectError(Call(NewToken("operator"), "POST", "/api/v1/tenants/tenant-es256/certificate/revoke", ""), 403);
  auto revoked = Call(NewToken("security-officer"), "POST", "/api/v1/tenants/tenant-es256/certificate/revoke", "");
  ASSERT_EQ(revoked.status, 200) << revoked.body;
  std::string serial = json::parse(revoked.body)["serial"];
  auto crl = Call("", "GET", "/api/v1/ca/crl");
  ASSERT_EQ(crl.status, 200) << crl.body;
  WriteFile(dir_.File("ca.crl"), crl.body);
  std::string crl_text = Openssl("crl -noout -text -CAfile " + dir_.File("ca.pem") + " -in " + dir_.File("ca.crl"));
  EXPECT_NE(crl_text.find("verify OK"), std::string::npos) << crl_text;
  std::string upper = serial;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_NE(crl_text.find(upper), std::string::npos) << serial << "\n" << crl_text;
  auto der = Call("", "GET", "/api/v1/ca/crl?format=der");
  ASSERT_EQ(der.status, 200);
  WriteFile(dir_.File("ca.crl.der"), der.body);
  Openssl("crl -inform DER -noout -in " + dir_.File("ca.crl.der"));
  // The revoked certificate no longer serves; re-issuing restores a chain.
  auto after = Admin("GET", "/api/v1/tenants/tenant-es256/certificate-chain");
  ExpectError(after, 409);
  EXPECT_NE(after.body.find("revoked"), std::string::npos) << after.body;
  EXPECT_EQ(Admin("POST", "/api/v1/tenants/tenant-es256/certificate/issue").status, 201);
  EXPECT_EQ(Admin("GET", "/api/v1/tenants/tenant-es256/certificate-chain").status, 200);
}

TEST_F(CertApiTest, CsrFromBackendKeyVerifies) {
  for (const char* alg : {"ES384", "PS256"}) {
    std::string tenant = std::string("csr-") + (alg[0] == 'E' ? "ec" : "rsa");
    CreatePolicy(tenant, alg);
    auto r = Admin("GET", "/api/v1/tenants/" + tenant + "/csr");
    ASSERT_EQ(r.status, 200) << r.body;
    WriteFile(dir_.File(tenant + ".csr"), r.body);
    std::string out = Openssl("req -verify -noout -in " + dir_.File(tenant + ".csr"));
    EXPECT_NE(out.find("verify OK"), std::string::npos) << out;
  }
}

TEST_F(CertApiTest, ImportChecksKeyChainEkuAndValidity) {
  CreatePolicy("imported", "ES256");
  MakeExternalCa();
  auto csr = Admin("GET", "/api/v1/tenants/imported/csr");
  ASSERT_EQ(csr.status, 200);
  WriteFile(dir_.File("imported.csr"), csr.body);
  std::string root = testing::ReadFile(dir_.File("ext-ca.pem"));
  // The server's clock follows real time (openssl stamps notBefore with it),
  // shifted by `ahead` to simulate importing later.
  auto import = [&](const std::string& chain, std::chrono::hours ahead = std::chrono::hours(0)) {
    fake_.Set(std::chrono::system_clock::now() + ahead);
    return Admin("POST", "/api/v1/tenants/imported/certificate", {{"chain_pem", chain}});
  };
  auto expect_unchanged = [&] { ExpectError(Admin("GET", "/api/v1/tenants/imported/certificate-chain"), 409); };

  // A certificate for some other key.
  Openssl("req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + dir_.File("other.key") +
          " -out " + dir_.File("other.csr") + " -subj /CN=other");
  auto mismatch = import(SignWithExternalCa(dir_.File("other.csr"), "other.pem", 10) + root);
  ExpectError(mismatch, 400, "chain_pem");
  EXPECT_NE(mismatch.body.find("does not match the active key"), std::string::npos) << mismatch.body;
  expect_unchanged();

  std::string leaf = SignWithExternalCa(dir_.File("imported.csr"), "imported.pem", 2);
  // Without the root the chain cannot be built.
  auto no_root = import(leaf);
  ExpectError(no_root, 400, "chain_pem");
  EXPECT_NE(no_root.body.find("root CA"), std::string::npos) << no_root.body;
  expect_unchanged();
  // Garbage.
  ExpectError(import("not a certificate"), 400, "chain_pem");

  // Expired by the time it is imported.
  auto expired = import(leaf + root, std::chrono::hours(24 * 3));
  ExpectError(expired, 400, "chain_pem");
  EXPECT_NE(expired.body.find("expired"), std::string::npos) << expired.body;
  expect_unchanged();

  auto ok = import(leaf + root);
  ASSERT_EQ(ok.status, 201) << ok.body;
  EXPECT_EQ(json::parse(ok.body)["source"], "imported");
  std::string chain = Get("/api/v1/tenants/imported/certificate-chain");
  auto first_end = chain.find("-----END CERTIFICATE-----");
  ASSERT_NE(first_end, std::string::npos);
  WriteFile(dir_.File("got-leaf.pem"), chain.substr(0, first_end + 26));
  Openssl("verify -CAfile " + dir_.File("ext-ca.pem") + " " + dir_.File("got-leaf.pem"));
  EXPECT_NE(chain.find(root.substr(30, 60)), std::string::npos);
}

// --- COSE_Sign1, decoded and verified without the production encoder ---------

// A minimal CBOR reader for what COSE_Sign1 contains, written independently of
// crypto/cose.cc so the test does not trust the code it checks.
struct Cbor {
  enum Type { kUint, kNint, kBytes, kText, kArray, kMap, kTag, kNull } type = kNull;
  uint64_t num = 0;  // uint value, -1-n for nint, tag number, or length
  std::string bytes;  // bstr / tstr content
  std::vector<Cbor> items;  // array items, map k,v,k,v..., or the tagged item
  int64_t Int() const { return type == kUint ? static_cast<int64_t>(num) : -1 - static_cast<int64_t>(num); }
};

bool ReadCbor(const std::string& in, size_t* pos, Cbor* out) {
  if (*pos >= in.size()) return false;
  uint8_t b = static_cast<uint8_t>(in[(*pos)++]);
  uint8_t major = b >> 5, info = b & 0x1f;
  if (b == 0xf6) {
    out->type = Cbor::kNull;
    return true;
  }
  uint64_t v = info;
  if (info >= 24) {
    if (info > 27) return false;
    size_t n = size_t{1} << (info - 24);
    if (*pos + n > in.size()) return false;
    v = 0;
    for (size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<uint8_t>(in[(*pos)++]);
  }
  out->num = v;
  switch (major) {
    case 0: out->type = Cbor::kUint; return true;
    case 1: out->type = Cbor::kNint; return true;
    case 2:
    case 3:
      if (*pos + v > in.size()) return false;
      out->type = major == 2 ? Cbor::kBytes : Cbor::kText;
      out->bytes = in.substr(*pos, v);
      *pos += v;
      return true;
    case 4:
    case 5: {
      out->type = major == 4 ? Cbor::kArray : Cbor::kMap;
      uint64_t count = major == 4 ? v : 2 * v;
      for (uint64_t i = 0; i < count; ++i) {
        Cbor item;
        if (!ReadCbor(in, pos, &item)) return false;
        out->items.push_back(std::move(item));
      }
      return true;
    }
    case 6: {
      out->type = Cbor::kTag;
      Cbor item;
      if (!ReadCbor(in, pos, &item)) return false;
      out->items.push_back(std::move(item));
      return true;
    }
  }
  return false;
}

Cbor ParseCbor(const std::string& in) {
  size_t pos = 0;
  Cbor out;
  EXPECT_TRUE(ReadCbor(in, &pos, &out));
  EXPECT_EQ(pos, in.size()) << "trailing bytes";
  return out;
}

// Independent encoders for the Sig_structure and for a DER ECDSA signature.
std::string CborHead(uint8_t major, uint64_t v) {
  std::string out;
  if (v < 24) return std::string(1, static_cast<char>((major << 5) | v));
  int n = v <= 0xff ? 1 : v <= 0xffff ? 2 : 4;
  out.push_back(static_cast<char>((major << 5) | (n == 1 ? 24 : n == 2 ? 25 : 26)));
  for (int i = n - 1; i >= 0; --i) out.push_back(static_cast<char>(v >> (8 * i)));
  return out;
}
std::string CborBstr(const std::string& b) { return CborHead(2, b.size()) + b; }

std::string DerInt(std::string mag) {
  while (mag.size() > 1 && mag[0] == 0) mag.erase(0, 1);
  if (static_cast<uint8_t>(mag[0]) & 0x80) mag.insert(0, 1, '\0');
  return std::string(1, '\x02') + static_cast<char>(mag.size()) + mag;
}
std::string P1363ToDer(const std::string& raw) {
  std::string body = DerInt(raw.substr(0, raw.size() / 2)) + DerInt(raw.substr(raw.size() / 2));
  std::string len = body.size() < 128 ? std::string(1, static_cast<char>(body.size()))
                                      : std::string("\x81") + static_cast<char>(body.size());
  return std::string(1, '\x30') + len + body;
}

class CoseApiTest : public CertApiTest {
 protected:
  // Verifies `sig` (COSE form) over `tbs` with the tenant's public key via the CLI.
  void VerifyWithOpenssl(const std::string& tenant, const std::string& alg, const std::string& tbs,
                         const std::string& sig) {
    WriteFile(dir_.File("pub.pem"), Get("/api/v1/tenants/" + tenant + "/public-key"));
    WriteFile(dir_.File("tbs.bin"), tbs);
    std::string pub = dir_.File("pub.pem"), in = dir_.File("tbs.bin"), sigfile = dir_.File("sig.bin");
    if (alg == "Ed25519") {
      EXPECT_EQ(sig.size(), 64u);
      WriteFile(sigfile, sig);
      Openssl("pkeyutl -verify -pubin -inkey " + pub + " -rawin -in " + in + " -sigfile " + sigfile);
    } else if (alg[0] == 'E') {
      size_t field = alg == "ES256" ? 32 : alg == "ES384" ? 48 : 66;
      EXPECT_EQ(sig.size(), 2 * field) << "ECDSA must be P1363 r||s";
      WriteFile(sigfile, P1363ToDer(sig));
      std::string md = alg == "ES256" ? "-sha256" : alg == "ES384" ? "-sha384" : "-sha512";
      std::string out = Openssl("dgst " + md + " -verify " + pub + " -signature " + sigfile + " " + in);
      EXPECT_NE(out.find("Verified OK"), std::string::npos) << out;
    } else {
      WriteFile(sigfile, sig);
      std::string out = Openssl("dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 -verify " +
                                pub + " -signature " + sigfile + " " + in);
      EXPECT_NE(out.find("Verified OK"), std::string::npos) << out;
    }
  }
};

TEST_F(CoseApiTest, CoseSign1VerifiesIndependently) {
  ASSERT_EQ(Admin("POST", "/api/v1/ca", json::object()).status, 201);
  const std::map<std::string, int> kCoseAlg = {{"ES256", -7}, {"ES384", -35}, {"PS256", -37}, {"Ed25519", -8}};
  for (const auto& [alg, cose_alg] : kCoseAlg) {
    std::string tenant = "cose-" + std::string(alg == "Ed25519" ? "ed" : alg == "PS256" ? "ps" : alg == "ES256" ? "p256" : "p384");
    CreatePolicy(tenant, alg);
    WriteFile(dir_.File("chain.pem"), Get("/api/v1/tenants/" + tenant + "/certificate-chain"));
    auto leaf_der = RunCommand("openssl x509 -outform DER -in " + dir_.File("chain.pem"));
    ASSERT_EQ(leaf_der.exit_code, 0);
    for (bool detached : {false, true}) {
      std::string payload = "c2pa claim bytes for " + tenant + (detached ? " (detached)" : "");
      auto r = Admin("POST", "/api/v1/tenants/" + tenant + "/sign/cose",
                     {{"payload", crypto::Base64Encode(crypto::AsBytes(payload))}, {"detached", detached}});
      ASSERT_EQ(r.status, 200) << r.body;
      json j = json::parse(r.body);
      auto cose_bytes = crypto::Base64Decode(j["cose_sign1"].get<std::string>());
      ASSERT_TRUE(cose_bytes.ok());
      Cbor msg = ParseCbor(crypto::AsString(*cose_bytes));
      ASSERT_EQ(msg.type, Cbor::kTag);
      EXPECT_EQ(msg.num, 18u);
      const Cbor& arr = msg.items[0];
      ASSERT_EQ(arr.type, Cbor::kArray);
      ASSERT_EQ(arr.items.size(), 4u);
      ASSERT_EQ(arr.items[0].type, Cbor::kBytes);
      EXPECT_EQ(arr.items[1].type, Cbor::kMap);
      EXPECT_TRUE(arr.items[1].items.empty());
      if (detached) {
        EXPECT_EQ(arr.items[2].type, Cbor::kNull);
      } else {
        ASSERT_EQ(arr.items[2].type, Cbor::kBytes);
        EXPECT_EQ(arr.items[2].bytes, payload);
      }
      // Protected header: {1: alg, 33: leaf DER} (the root stays out of x5chain).
      Cbor prot = ParseCbor(arr.items[0].bytes);
      ASSERT_EQ(prot.type, Cbor::kMap);
      ASSERT_EQ(prot.items.size(), 4u);
      EXPECT_EQ(prot.items[0].Int(), 1);
      EXPECT_EQ(prot.items[1].Int(), cose_alg) << alg;
      EXPECT_EQ(prot.items[2].Int(), 33);
      ASSERT_EQ(prot.items[3].type, Cbor::kBytes);
      EXPECT_EQ(prot.items[3].bytes, leaf_der.output);
      // Sig_structure rebuilt here, then verified by openssl.
      std::string tbs = CborHead(4, 4) + CborHead(3, 10) + "Signature1" + CborBstr(arr.items[0].bytes) +
                        CborBstr("") + CborBstr(payload);
      ASSERT_EQ(arr.items[3].type, Cbor::kBytes);
      VerifyWithOpenssl(tenant, alg, tbs, arr.items[3].bytes);
      // Ledger: kind cose, digest = SHA-256 of the payload, the certificate serial.
      json ledger = json::parse(Get("/api/v1/tenants/" + tenant + "/ledger?limit=1000"));
      const json& last = ledger["entries"].back();
      EXPECT_EQ(last["kind"], "cose");
      EXPECT_EQ(last["digest"], crypto::Sha256Hex(crypto::AsBytes(payload)));
      EXPECT_EQ(last["cert_serial"], j["cert_serial"]);
      EXPECT_EQ(last["seq"], j["ledger_seq"]);
    }
  }
}

TEST_F(CoseApiTest, CoseWithoutCertificateIsRefused) {
  CreatePolicy("no-cert", "ES256");
  auto r = Admin("POST", "/api/v1/tenants/no-cert/sign/cose", {{"payload", "aGk="}});
  ExpectError(r, 409);
  EXPECT_NE(r.body.find("run keyctl ca init or import one"), std::string::npos) << r.body;
  ExpectError(Admin("POST", "/api/v1/tenants/no-cert/sign/cose", {{"payload", "***"}}), 400, "payload");
}

TEST_F(CoseApiTest, RawSigningForC2patoolRemoteSigner) {
  ASSERT_EQ(Admin("POST", "/api/v1/ca", json::object()).status, 201);
  CreatePolicy("remote", "ES256");
  json info = json::parse(Get("/api/v1/tenants/remote/c2pa-signer-info"));
  EXPECT_EQ(info["alg"], "es256");
  EXPECT_NE(info["sign_cert"].get<std::string>().find("BEGIN CERTIFICATE"), std::string::npos);
  EXPECT_GT(info["reserve_size"].get<int>(), 1000);
  std::string tbs = "bytes c2patool wants signed";
  auto r = Call(NewToken("signer", "remote"), "POST", "/api/v1/tenants/remote/sign/raw", tbs,
                {{"Content-Type", "application/octet-stream"}});
  ASSERT_EQ(r.status, 200) << r.body;
  VerifyWithOpenssl("remote", "ES256", tbs, r.body);
  json ledger = json::parse(Get("/api/v1/tenants/remote/ledger"));
  EXPECT_EQ(ledger["entries"].back()["kind"], "raw");
}

TEST_F(CoseApiTest, KeyctlCommandsAndC2patoolSignerProtocol) {
  const std::string admin = testing::KeyctlBinary() + " --url " + app_->url() + " --token " + admin_token_ + " ";
  auto init = RunCommand(admin + "ca init --algorithm ES256 --out " + dir_.File("ca.pem"));
  ASSERT_EQ(init.exit_code, 0) << init.output;
  CreatePolicy("cli-signer", "ES384");
  auto get = RunCommand(admin + "cert get --tenant-id cli-signer --out " + dir_.File("chain.pem"));
  ASSERT_EQ(get.exit_code, 0) << get.output;
  Openssl("verify -CAfile " + dir_.File("ca.pem") + " " + dir_.File("chain.pem"));

  const std::string signer = testing::KeyctlBinary() + " --url " + app_->url() + " --token " +
                             NewToken("signer", "cli-signer") + " c2pa-signer --tenant-id cli-signer";
  auto info = RunCommand(signer + " --signer-info --tsa-url http://tsa.example 2>/dev/null");
  ASSERT_EQ(info.exit_code, 0) << info.output;
  json j = json::parse(info.output, nullptr, false);
  ASSERT_TRUE(j.is_object()) << info.output;
  EXPECT_EQ(j["alg"], "es384");
  EXPECT_EQ(j["tsa_url"], "http://tsa.example");
  EXPECT_NE(j["sign_cert"].get<std::string>().find("BEGIN CERTIFICATE"), std::string::npos);
  EXPECT_TRUE(j["reserve_size"].is_number_integer());

  std::string tbs = std::string("claim\0bytes\xff", 12);
  auto sign = RunCommand(signer + " > " + dir_.File("sig.out"), tbs);
  ASSERT_EQ(sign.exit_code, 0) << sign.output;
  VerifyWithOpenssl("cli-signer", "ES384", tbs, testing::ReadFile(dir_.File("sig.out")));
  // Failures exit non-zero with a message on stderr.
  auto bad = RunCommand(testing::KeyctlBinary() + " --url " + app_->url() + " --token " + admin_token_ +
                            " c2pa-signer --tenant-id no-such-tenant",
                        "x");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("error:"), std::string::npos) << bad.output;
  auto wrong_alg = RunCommand(signer + " --alg es256", "x");
  EXPECT_NE(wrong_alg.exit_code, 0);

  auto crl = RunCommand(admin + "ca crl --out " + dir_.File("ca.crl"));
  ASSERT_EQ(crl.exit_code, 0) << crl.output;
  Openssl("crl -noout -CAfile " + dir_.File("ca.pem") + " -in " + dir_.File("ca.crl"));
  // An import that does not fit is refused by the CLI with the server's reason.
  auto import = RunCommand(admin + "cert import --tenant-id cli-signer --chain " + dir_.File("ca.pem"));
  EXPECT_NE(import.exit_code, 0);
  EXPECT_NE(import.output.find("does not match"), std::string::npos) << import.output;
}

}  // namespace
}  // namespace concierge
