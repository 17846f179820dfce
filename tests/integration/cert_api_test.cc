// Certificates over the REST API: built-in CA, automatic issuance, chain and
// CRL endpoints, CSR from the backend key, import of external chains and
// revocation, each checked with the openssl command line.
#include <chrono>

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
  auto import = [&](const std::string& chain) {
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
  fake_.Advance(std::chrono::hours(24 * 3));
  auto expired = import(leaf + root);
  ExpectError(expired, 400, "chain_pem");
  EXPECT_NE(expired.body.find("expired"), std::string::npos) << expired.body;
  expect_unchanged();
  fake_.Set(std::chrono::system_clock::now());

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

}  // namespace
}  // namespace concierge
