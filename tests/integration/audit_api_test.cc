// The tamper-evident audit log over real HTTP, and `keyctl audit verify`
// (the real binary) against a database edited behind the service's back.
#include <sqlite3.h>

#include <regex>
#include <sstream>
#include <tuple>

#include "audit/checkpoint.h"
#include "audit/entry.h"
#include "audit/merkle.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "crypto/signature.h"
#include "integration/api_fixture.h"
#include "store/sqlite/sqlite_ledger.h"

namespace concierge {
namespace {

using testing::RunCommand;

audit::Hash HexHash(const json& j) {
  auto bytes = crypto::HexDecode(j.get<std::string>());
  EXPECT_TRUE(bytes.ok());
  auto h = audit::HashFromBytes(*bytes);
  EXPECT_TRUE(h.ok());
  return h.ok() ? *h : audit::Hash{};
}

std::vector<audit::Hash> HexHashes(const json& arr) {
  std::vector<audit::Hash> out;
  for (const json& h : arr) out.push_back(HexHash(h));
  return out;
}

// A raw connection to the service's database, as an attacker with file
// access (or a test injecting a failure) would have.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK);
    sqlite3_busy_timeout(db_, 5000);
  }
  ~RawDb() { sqlite3_close(db_); }
  void Exec(const std::string& sql) {
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << sql << ": " << (err ? err : "");
    sqlite3_free(err);
  }
  sqlite3* get() { return db_; }

 private:
  sqlite3* db_ = nullptr;
};

// Every stored record, through the read-only store (as keyctl reads them).
std::vector<AuditRecord> StoredRecords(const std::string& path) {
  auto ledger = store::SqliteLedger::Open(path, store::SqliteLedgerOptions{.read_only = true});
  EXPECT_TRUE(ledger.ok()) << ledger.status().ToString();
  auto page = (*ledger)->ListAudit(AuditQuery{.limit = 1000});
  EXPECT_TRUE(page.ok());
  return page->entries;
}

// What someone who understood the format would do after an edit: store the
// recomputed leaf hash so the row looks consistent on its own.
audit::Hash SetLeafHash(RawDb& db, const AuditRecord& r) {
  const audit::Hash leaf = audit::EntryLeafHash(r);
  db.Exec("UPDATE audit_entries SET leaf_hash = x'" + crypto::HexEncode(audit::AsByteView(leaf)) +
          "' WHERE idx = " + std::to_string(r.index));
  return leaf;
}

class AuditApiTest : public ApiTest {
 protected:
  std::string Db() { return dir_.File("data") + "/concierge.db"; }

  json Entries(const std::string& token, const std::string& query = "") {
    auto r = Call(token, "GET", "/api/v1/audit/entries?limit=1000" + query);
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body, nullptr, false)["entries"];
  }

  HttpResult Sign(const std::string& tenant, const std::string& request_id, const std::string& token = "") {
    std::string digest = crypto::HexEncode(crypto::Sha256(crypto::AsBytes(request_id)));
    return Call(token.empty() ? admin_token_ : token, "POST", "/api/v1/tenants/" + tenant + "/sign",
                json({{"digest", digest}, {"request_id", request_id}}).dump());
  }

  json Checkpoint() {
    auto r = Admin("POST", "/api/v1/audit/checkpoint");
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body);
  }

  std::string Keyctl(const std::string& args) {
    return testing::KeyctlBinary() + " --url " + app_->url() + " --token " + admin_token_ + " " + args;
  }
};

TEST_F(AuditApiTest, SignaturesAndStateChangesAreRecordedInOrder) {
  json created = CreatePolicy("acme-news", "ES256");
  auto signed_r = Admin("POST", "/api/v1/tenants/acme-news/sign",
                        {{"digest", std::string(64, 'd')}, {"request_id", "r-1"}, {"asset_id", "asset-1"}});
  ASSERT_EQ(signed_r.status, 200) << signed_r.body;
  json sig = json::parse(signed_r.body);
  ASSERT_EQ(Admin("PUT", "/api/v1/tenants/acme-news/policy", {{"canary_count", 5}}).status, 200);
  ExpectError(Admin("PUT", "/api/v1/tenants/acme-news/policy", {{"rotate_every_days", 0}}), 400,
              "rotate_every_days");
  std::string token = NewToken("signer", "acme-news");
  std::string key_id = json::parse(Call(token, "GET", "/api/v1/whoami").body)["id"];
  ASSERT_EQ(Admin("DELETE", "/api/v1/api-keys/" + key_id).status, 200);
  ASSERT_EQ(Admin("POST", "/api/v1/ca", json::object()).status, 201);
  ASSERT_EQ(Admin("POST", "/api/v1/tenants/acme-news/certificate/issue").status, 201);
  ASSERT_EQ(Admin("POST", "/api/v1/tenants/acme-news/sign/batch", {{"digests", {std::string(64, 'a'), std::string(64, 'b')}}})
                .status,
            200);

  json entries = Entries(admin_token_);
  std::vector<std::pair<std::string, std::string>> got;
  for (const json& e : entries) got.emplace_back(e["action"], e["outcome"]);
  const std::vector<std::pair<std::string, std::string>> want = {
      {"api_key.create", "attempted"},     {"api_key.create", "success"},  // bootstrap admin
      {"policy.create", "attempted"},      {"policy.create", "success"},
      {"sign.digest", "success"},
      {"policy.update", "attempted"},      {"policy.update", "success"},
      {"policy.update", "attempted"},      {"policy.update", "failure"},
      {"api_key.create", "attempted"},     {"api_key.create", "success"},
      {"api_key.revoke", "attempted"},     {"api_key.revoke", "success"},
      {"ca.init", "attempted"},            {"ca.init", "success"},
      {"certificate.issue", "attempted"},  {"certificate.issue", "success"},
      {"sign.batch", "success"},           {"sign.batch", "success"}};
  ASSERT_EQ(got, want) << entries.dump(1);
  for (size_t i = 0; i < entries.size(); ++i) {
    EXPECT_EQ(entries[i]["index"], i);
    auto r = audit::RecordFromJson(entries[i]);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(crypto::HexEncode(audit::AsByteView(audit::EntryLeafHash(*r))), entries[i]["leaf_hash"]);
  }
  const std::string admin_id = json::parse(Admin("GET", "/api/v1/whoami").body)["id"];
  const json& s = entries[4];
  EXPECT_EQ(s["actor"], admin_id);
  EXPECT_EQ(s["tenant_id"], "acme-news");
  EXPECT_EQ(s["target"], created["key"]["key_id"]);
  EXPECT_EQ(s["request_id"], "r-1");
  EXPECT_EQ(s["client_address"], "127.0.0.1");
  EXPECT_EQ(s["policy_hash"], created["policy_hash"]);
  EXPECT_EQ(s["detail"]["ledger_seq"], sig["ledger_seq"]);
  EXPECT_EQ(s["detail"]["digest"], std::string(64, 'd'));
  EXPECT_EQ(s["detail"]["asset_id"], "asset-1");
  EXPECT_EQ(entries[6]["detail"]["attempt_index"], 5);
  EXPECT_EQ(entries[6]["policy_hash"], json::parse(Admin("GET", "/api/v1/tenants/acme-news/policy").body)["policy_hash"]);
  EXPECT_EQ(entries[8]["detail"]["error"], "invalid_argument");
  EXPECT_EQ(entries[9]["target"], key_id);
  EXPECT_EQ(entries[9]["tenant_id"], "acme-news");
  // Never a secret: the new key's token appears nowhere in the log.
  const std::string secret = token.substr(token.find('.') + 1);
  EXPECT_EQ(entries.dump().find(secret), std::string::npos);
  // Filters.
  EXPECT_EQ(Entries(admin_token_, "&action=sign.batch").size(), 2u);
  EXPECT_EQ(Entries(admin_token_, "&actor=system").size(), 2u);
  // After index 10: api_key.revoke (scoped key), certificate.issue, sign.batch.
  EXPECT_EQ(Entries(admin_token_, "&tenant=acme-news&after=10").size(), 6u);
}

// The checkpoint is checked by the openssl command line, not by our code;
// proofs are checked against signed roots.
TEST_F(AuditApiTest, CheckpointVerifiesWithOpensslAndProofsWithItsRoot) {
  CreatePolicy("acme-news", "ES256");
  for (int i = 0; i < 5; ++i) ASSERT_EQ(Sign("acme-news", "a-" + std::to_string(i)).status, 200);
  json cp1 = Checkpoint();
  testing::WriteFile(dir_.File("note.txt"), cp1["note"].get<std::string>());
  testing::WriteFile(dir_.File("sig.der"), crypto::AsString(*crypto::Base64Decode(cp1["signature"].get<std::string>())));
  testing::WriteFile(dir_.File("audit.pem"), cp1["key"]["public_key_pem"].get<std::string>());
  auto ok = RunCommand("openssl dgst -sha256 -verify " + dir_.File("audit.pem") + " -signature " +
                       dir_.File("sig.der") + " " + dir_.File("note.txt") + " 2>&1");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("Verified OK"), std::string::npos);
  std::string forged = cp1["note"];
  const std::string size_line = std::to_string(cp1["tree_size"].get<int64_t>());
  forged.replace(forged.find('\n') + 1, size_line.size(), std::to_string(cp1["tree_size"].get<int64_t>() + 1));
  testing::WriteFile(dir_.File("forged.txt"), forged);
  EXPECT_NE(RunCommand("openssl dgst -sha256 -verify " + dir_.File("audit.pem") + " -signature " +
                       dir_.File("sig.der") + " " + dir_.File("forged.txt") + " 2>&1")
                .exit_code,
            0);
  auto parsed = audit::ParseCheckpoint(cp1["note"].get<std::string>());
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->origin, "c2-concierge/audit");
  EXPECT_EQ(static_cast<int64_t>(parsed->tree_size), cp1["tree_size"].get<int64_t>());
  EXPECT_EQ(parsed->root_hash, HexHash(cp1["root_hash"]));

  // Unchanged tree: the same checkpoint, not a new row.
  EXPECT_EQ(Checkpoint()["id"], cp1["id"]);
  auto latest = Admin("GET", "/api/v1/audit/checkpoint");
  ASSERT_EQ(latest.status, 200);
  EXPECT_EQ(json::parse(latest.body)["note"], cp1["note"]);

  const int64_t size1 = cp1["tree_size"];
  json entries = Entries(admin_token_);
  for (int64_t index : {int64_t{0}, int64_t{3}, size1 - 1}) {
    auto r = Admin("GET", "/api/v1/audit/proof/inclusion?index=" + std::to_string(index) + "&size=" + std::to_string(size1));
    ASSERT_EQ(r.status, 200) << r.body;
    json p = json::parse(r.body);
    EXPECT_EQ(p["leaf_hash"], entries[index]["leaf_hash"]);
    EXPECT_TRUE(audit::VerifyInclusion(HexHash(p["leaf_hash"]), index, size1, HexHashes(p["proof"]),
                                       HexHash(cp1["root_hash"]))
                    .ok())
        << index;
  }
  for (int i = 0; i < 7; ++i) ASSERT_EQ(Sign("acme-news", "b-" + std::to_string(i)).status, 200);
  json cp2 = Checkpoint();
  const int64_t size2 = cp2["tree_size"];
  ASSERT_GT(size2, size1);
  auto c = Admin("GET", "/api/v1/audit/proof/consistency?from=" + std::to_string(size1) + "&to=" + std::to_string(size2));
  ASSERT_EQ(c.status, 200) << c.body;
  json cj = json::parse(c.body);
  EXPECT_TRUE(audit::VerifyConsistency(size1, size2, HexHash(cp1["root_hash"]), HexHash(cp2["root_hash"]),
                                       HexHashes(cj["proof"]))
                  .ok());
  auto cps = Admin("GET", "/api/v1/audit/checkpoints");
  ASSERT_EQ(cps.status, 200);
  EXPECT_EQ(json::parse(cps.body)["checkpoints"].size(), 2u);

  // Bad input names the parameter and changes nothing.
  ExpectError(Admin("GET", "/api/v1/audit/proof/inclusion?index=abc"), 400, "index");
  ExpectError(Admin("GET", "/api/v1/audit/proof/inclusion?size=3"), 400, "index");
  ExpectError(Admin("GET", "/api/v1/audit/proof/inclusion?index=0&size=100000"), 400, "size");
  ExpectError(Admin("GET", "/api/v1/audit/proof/inclusion?index=5&size=5"), 400, "index");
  ExpectError(Admin("GET", "/api/v1/audit/proof/consistency?from=5&to=4"), 400, "from");
  ExpectError(Admin("GET", "/api/v1/audit/proof/consistency?to=4"), 400, "from");
  ExpectError(Admin("GET", "/api/v1/audit/entries?limit=0"), 400, "limit");
  ExpectError(Admin("GET", "/api/v1/audit/entries?after=-2"), 400, "after");
  ExpectError(Admin("GET", "/api/v1/audit/entries?from=yesterday"), 400, "from");
  ExpectError(Admin("PUT", "/api/v1/audit/checkpoint"), 405);
  ExpectError(Admin("GET", "/api/v1/audit/nothing"), 404);
  ExpectError(Call("", "GET", "/api/v1/audit/entries"), 401);
}

TEST_F(AuditApiTest, AuditorReadsAuditOnlyAndScopedKeysSeeTheirTenant) {
  CreatePolicy("acme-news", "ES256");
  CreatePolicy("other-co", "ES256");
  ASSERT_EQ(Sign("acme-news", "acme-1").status, 200);
  ASSERT_EQ(Sign("other-co", "other-1").status, 200);
  Checkpoint();
  const std::string auditor = NewToken("auditor");
  const std::string signer = NewToken("signer", "acme-news");
  const std::string scoped_auditor = NewToken("auditor", "other-co");
  const std::string operator_token = NewToken("operator");

  // The auditor: every audit route, nothing else.
  const size_t total = Entries(admin_token_).size();
  EXPECT_EQ(Entries(auditor).size(), total);
  EXPECT_EQ(Call(auditor, "GET", "/api/v1/audit/checkpoint").status, 200);
  EXPECT_EQ(Call(auditor, "POST", "/api/v1/audit/checkpoint").status, 200);
  EXPECT_EQ(Call(auditor, "GET", "/api/v1/audit/proof/inclusion?index=0").status, 200);
  for (const auto& [method, path] : std::vector<std::pair<std::string, std::string>>{
           {"GET", "/api/v1/tenants"},
           {"GET", "/api/v1/policies"},
           {"GET", "/api/v1/tenants/acme-news/policy"},
           {"GET", "/api/v1/tenants/acme-news/keys"},
           {"GET", "/api/v1/tenants/acme-news/ledger"},
           {"GET", "/api/v1/tenants/acme-news/public-key"},
           {"POST", "/api/v1/tenants/acme-news/sign"},
           {"POST", "/api/v1/tenants/acme-news/verify"},
           {"PUT", "/api/v1/tenants/acme-news/policy"},
           {"GET", "/api/v1/api-keys"}}) {
    const std::string body =
        method == "GET" ? "" : R"({"digest":")" + std::string(64, 'a') + R"(","signature":"AAAA"})";
    auto r = Call(auditor, method, path, body);
    EXPECT_EQ(r.status, 403) << method << " " << path << ": " << r.body;
  }

  // A tenant-scoped signer sees its tenant's records only.
  json mine = Entries(signer);
  ASSERT_FALSE(mine.empty());
  for (const json& e : mine) EXPECT_EQ(e["tenant_id"], "acme-news") << e.dump();
  ExpectError(Call(signer, "GET", "/api/v1/audit/entries?tenant=other-co"), 403);
  EXPECT_EQ(Entries(signer, "&tenant=acme-news").size(), mine.size());
  int64_t other_index = -1, own_index = -1;
  for (const json& e : Entries(admin_token_)) {
    if (e["request_id"] == "other-1") other_index = e["index"];
    if (e["request_id"] == "acme-1") own_index = e["index"];
  }
  ASSERT_GE(other_index, 0);
  ExpectError(Call(signer, "GET", "/api/v1/audit/proof/inclusion?index=" + std::to_string(other_index)), 403);
  EXPECT_EQ(Call(signer, "GET", "/api/v1/audit/proof/inclusion?index=" + std::to_string(own_index)).status, 200);
  // Checkpoints and consistency proofs are hashes of the whole log: readable.
  EXPECT_EQ(Call(signer, "GET", "/api/v1/audit/checkpoint").status, 200);
  EXPECT_EQ(Call(signer, "GET", "/api/v1/audit/proof/consistency?from=1&to=2").status, 200);
  ExpectError(Call(signer, "POST", "/api/v1/audit/checkpoint"), 403);
  // Scoped auditors likewise, for their tenant.
  for (const json& e : Entries(scoped_auditor)) EXPECT_EQ(e["tenant_id"], "other-co");
  ExpectError(Call(operator_token, "POST", "/api/v1/audit/checkpoint"), 403);
  // Online verification needs the whole log: refused clearly for scoped keys.
  auto scoped_verify = RunCommand(testing::KeyctlBinary() + " --url " + app_->url() + " --token " + signer +
                                  " audit verify 2>&1");
  EXPECT_NE(scoped_verify.exit_code, 0);
  EXPECT_NE(scoped_verify.output.find("scoped to tenant"), std::string::npos) << scoped_verify.output;
  auto verify = RunCommand(testing::KeyctlBinary() + " --url " + app_->url() + " --token " + auditor +
                           " audit verify 2>&1");
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
}

// Fail-closed: when the audit log cannot be written, no signature is
// released and no change is made, while reads keep working.
TEST_F(AuditApiTest, AuditFailureStopsSigningAndChangesButNotReads) {
  CreatePolicy("acme-news", "ES256");
  ASSERT_EQ(Sign("acme-news", "before").status, 200);
  RawDb raw(Db());
  raw.Exec("CREATE TRIGGER audit_down BEFORE INSERT ON audit_entries BEGIN SELECT RAISE(ABORT, 'disk on fire'); END");

  auto refused = Sign("acme-news", "lost-1");
  ExpectError(refused, 503);
  EXPECT_EQ(json::parse(refused.body).count("signature"), 0u);
  ExpectError(Admin("POST", "/api/v1/tenants/acme-news/sign/batch", {{"digests", {std::string(64, 'e')}}}), 503);
  auto update = Admin("PUT", "/api/v1/tenants/acme-news/policy", {{"canary_count", 7}});
  ExpectError(update, 503);
  EXPECT_NE(update.body.find("nothing was changed"), std::string::npos) << update.body;
  ExpectError(Admin("POST", "/api/v1/api-keys", {{"role", "signer"}}), 503);
  ExpectError(Admin("DELETE", "/api/v1/tenants/acme-news/policy"), 503);

  // Reads go on, and show that nothing changed.
  auto policy = Admin("GET", "/api/v1/tenants/acme-news/policy");
  ASSERT_EQ(policy.status, 200);
  EXPECT_EQ(json::parse(policy.body)["version"], 1);
  auto keys = Admin("GET", "/api/v1/api-keys");
  ASSERT_EQ(keys.status, 200);
  EXPECT_EQ(json::parse(keys.body)["api_keys"].size(), 1u);
  auto ledger = Admin("GET", "/api/v1/tenants/acme-news/ledger");
  ASSERT_EQ(ledger.status, 200);
  ASSERT_EQ(json::parse(ledger.body)["entries"].size(), 1u);
  EXPECT_EQ(json::parse(ledger.body)["entries"][0]["request_id"], "before");
  EXPECT_EQ(Admin("GET", "/api/v1/audit/entries").status, 200);

  raw.Exec("DROP TRIGGER audit_down");
  ASSERT_EQ(Sign("acme-news", "after").status, 200);
  Checkpoint();
  auto verify = RunCommand(Keyctl("audit verify 2>&1"));
  EXPECT_EQ(verify.exit_code, 0) << verify.output;
}

// The tamper test of issue 7: rows edited, deleted, reordered and inserted
// directly in the database; `keyctl audit verify --db` names the index.
TEST_F(AuditApiTest, KeyctlVerifyNamesTamperedEntriesInTheDatabase) {
  CreatePolicy("acme-news", "ES256");
  for (int i = 0; i < 40; ++i) {
    ASSERT_EQ(Sign("acme-news", "s-" + std::to_string(i)).status, 200);
    if (i % 10 == 9) Checkpoint();
  }
  ASSERT_EQ(Admin("PUT", "/api/v1/tenants/acme-news/policy", {{"canary_count", 5}}).status, 200);
  auto key = RunCommand(Keyctl("audit checkpoint --key-out " + dir_.File("audit.pem")));
  ASSERT_EQ(key.exit_code, 0) << key.output;
  auto exported = RunCommand(Keyctl("audit export --out " + dir_.File("log.jsonl")));
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  app_->Stop();
  app_.reset();

  int copies = 0;
  auto copy = [&](const std::vector<std::string>& sql) {
    std::string path = dir_.File("copy" + std::to_string(copies++) + ".db");
    {
      RawDb src(Db());
      src.Exec("VACUUM INTO '" + path + "'");
    }
    RawDb dst(path);
    for (const auto& s : sql) dst.Exec(s);
    return path;
  };
  auto verify = [&](const std::string& args) { return RunCommand(testing::KeyctlBinary() + " audit verify " + args + " 2>&1"); };
  auto expect_bad_at = [&](const std::string& what, const std::string& args, int64_t index) {
    auto r = verify(args);
    EXPECT_EQ(r.exit_code, 1) << what << "\n" << r.output;
    EXPECT_TRUE(std::regex_search(r.output, std::regex("first bad entry: " + std::to_string(index) + "[\n ]")))
        << what << "\n" << r.output;
  };

  auto intact = verify("--db " + copy({}) + " --public-key " + dir_.File("audit.pem"));
  EXPECT_EQ(intact.exit_code, 0) << intact.output;
  EXPECT_NE(intact.output.find("audit log OK"), std::string::npos) << intact.output;

  const std::string k = "17";
  expect_bad_at("edited", "--db " + copy({"UPDATE audit_entries SET actor = 'mallory' WHERE idx = " + k}), 17);
  expect_bad_at("deleted", "--db " + copy({"DELETE FROM audit_entries WHERE idx = " + k}), 17);
  expect_bad_at("reordered", "--db " + copy({"UPDATE audit_entries SET idx = -1 WHERE idx = 17",
                                            "UPDATE audit_entries SET idx = 17 WHERE idx = 18",
                                            "UPDATE audit_entries SET idx = 18 WHERE idx = -1"}),
                17);
  expect_bad_at("inserted",
                "--db " + copy({"UPDATE audit_entries SET idx = -idx - 1 WHERE idx >= 17",
                                "UPDATE audit_entries SET idx = -idx WHERE idx < 0",
                                "INSERT INTO audit_entries SELECT 17, time_ms, 'mallory', tenant_id, action, target, "
                                "outcome, 'forged', client_address, policy_hash, detail, leaf_hash FROM audit_entries "
                                "WHERE idx = 18"}),
                17);
  expect_bad_at("truncated", "--db " + copy({"DELETE FROM audit_entries WHERE idx >= 30"}), 30);

  // Someone who also recomputes the stored leaf hash is caught by the
  // signed checkpoint covering the entry; the report is its range.
  {
    std::string path = copy({"UPDATE audit_entries SET outcome = 'failure' WHERE idx = 17"});
    RawDb db(path);
    SetLeafHash(db, StoredRecords(path).at(17));
    auto out = verify("--db " + path);
    EXPECT_EQ(out.exit_code, 1) << out.output;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(out.output, m, std::regex(R"(first bad entry: (\d+) \(somewhere in \[(\d+), (\d+)\)\))")))
        << out.output;
    EXPECT_LE(std::stoll(m[2]), 17);
    EXPECT_GT(std::stoll(m[3]), 17);
  }

  // A forged checkpoint, and a replaced audit key with re-signed checkpoints:
  // the latter passes only for whoever trusts the database's own key.
  auto forged = verify("--db " + copy({"UPDATE audit_checkpoints SET root_hash = zeroblob(32) WHERE id = 2"}));
  EXPECT_EQ(forged.exit_code, 1);
  EXPECT_NE(forged.output.find("checkpoint 2"), std::string::npos) << forged.output;
  {
    std::string path = copy({"UPDATE audit_entries SET actor = 'mallory' WHERE idx = 17"});
    auto attacker = crypto::GenerateKeyPair(Algorithm::kES256);
    ASSERT_TRUE(attacker.ok());
    auto spki = crypto::PublicKeyToSpkiDer(attacker->get());
    std::string pem = *crypto::SpkiDerToPem(*spki);
    RawDb db(path);
    db.Exec("UPDATE audit_keys SET public_key_pem = '" + pem + "'");
    // Recompute every leaf hash and re-sign every checkpoint over the forged log.
    std::vector<audit::Hash> leaves;
    for (const AuditRecord& r : StoredRecords(path)) leaves.push_back(SetLeafHash(db, r));
    sqlite3_stmt* s = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db.get(), "SELECT id, tree_size, timestamp_ms FROM audit_checkpoints", -1, &s, nullptr),
              SQLITE_OK);
    std::vector<std::tuple<int64_t, int64_t, int64_t>> cps;
    while (sqlite3_step(s) == SQLITE_ROW) {
      cps.emplace_back(sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1), sqlite3_column_int64(s, 2));
    }
    sqlite3_finalize(s);
    for (auto [id, size, ms] : cps) {
      audit::Checkpoint cp{"c2-concierge/audit", static_cast<uint64_t>(size),
                           audit::RootFromLeafHashes(std::span<const audit::Hash>(leaves).first(size)),
                           audit::CheckpointTime(std::chrono::milliseconds(ms))};
      auto signed_cp = audit::SignCheckpoint(cp, Algorithm::kES256, [&](ByteView digest) {
        return crypto::SignDigest(attacker->get(), Algorithm::kES256, digest);
      });
      ASSERT_TRUE(signed_cp.ok());
      db.Exec("UPDATE audit_checkpoints SET root_hash = x'" + crypto::HexEncode(audit::AsByteView(cp.root_hash)) +
              "', note = '" + signed_cp->note + "', signature = x'" + crypto::HexEncode(signed_cp->signature) +
              "' WHERE id = " + std::to_string(id));
    }
    auto trusting = verify("--db " + path);
    EXPECT_EQ(trusting.exit_code, 0) << "self-consistent forgery, judged by its own key\n" << trusting.output;
    EXPECT_NE(trusting.output.find("pass --public-key"), std::string::npos);
    auto checked = verify("--db " + path + " --public-key " + dir_.File("audit.pem"));
    EXPECT_EQ(checked.exit_code, 1) << checked.output;
    EXPECT_NE(checked.output.find("does not verify"), std::string::npos) << checked.output;
  }

  // The export verifies offline, and an edited line is named too.
  auto export_ok = verify("--export " + dir_.File("log.jsonl") + " --public-key " + dir_.File("audit.pem"));
  EXPECT_EQ(export_ok.exit_code, 0) << export_ok.output;
  std::string text = testing::ReadFile(dir_.File("log.jsonl"));
  size_t pos = text.find("\"request_id\":\"s-3\"");
  ASSERT_NE(pos, std::string::npos);
  const std::string needle = "\"request_id\":\"s-3\"";
  text.replace(pos, needle.size(), "\"request_id\":\"s-X\"");
  testing::WriteFile(dir_.File("edited.jsonl"), text);
  int64_t s3_index = -1;
  {
    std::istringstream in(testing::ReadFile(dir_.File("log.jsonl")));
    std::string line;
    while (std::getline(in, line)) {
      json j = json::parse(line);
      if (j["type"] == "entry" && j["request_id"] == "s-3") s3_index = j["index"];
    }
  }
  ASSERT_GE(s3_index, 0);
  expect_bad_at("export edited", "--export " + dir_.File("edited.jsonl"), s3_index);

  // An independent recomputation (Python's json and hashlib, no code of
  // ours) agrees on the same export, when Python is there.
  if (RunCommand("python3 --version").exit_code == 0) {
    const std::string script = testing::SourceDir() + "/scripts/audit_recompute.py ";
    auto good = RunCommand("python3 " + script + dir_.File("log.jsonl"));
    EXPECT_EQ(good.exit_code, 0) << good.output;
    EXPECT_NE(good.output.find("OK: "), std::string::npos) << good.output;
    auto bad = RunCommand("python3 " + script + dir_.File("edited.jsonl"));
    EXPECT_EQ(bad.exit_code, 1) << bad.output;
    EXPECT_NE(bad.output.find("entry " + std::to_string(s3_index) + " "), std::string::npos) << bad.output;
  }
}

}  // namespace
}  // namespace concierge
