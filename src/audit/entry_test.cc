#include "audit/entry.h"

#include <gtest/gtest.h>

#include "audit/merkle.h"
#include "crypto/encoding.h"
#include "testing/test_util.h"

namespace concierge::audit {
namespace {

using json = nlohmann::json;

AuditRecord Sample() {
  AuditRecord r;
  r.index = 17;
  r.time = TimePoint(std::chrono::milliseconds(1732362000123));
  r.actor = "3f2a9c";
  r.tenant_id = "acme-news";
  r.action = "policy.update";
  r.target = "acme-news";
  r.outcome = "success";
  r.request_id = "req_1";
  r.client_address = "127.0.0.1:50412";
  r.policy_hash = "ab12";
  r.detail_json = R"({"version":2})";
  return r;
}

TEST(AuditEntryTest, CanonicalFormIsSortedCompactJson) {
  EXPECT_EQ(SerializeEntry(Sample()),
            R"({"action":"policy.update","actor":"3f2a9c","client":"127.0.0.1:50412","detail":{"version":2},)"
            R"("index":17,"outcome":"success","policy_hash":"ab12","request_id":"req_1","target":"acme-news",)"
            R"("tenant":"acme-news","time_ms":1732362000123,"v":1})");
  // The same text as a generic JSON library's sorted, compact dump.
  json parsed = json::parse(SerializeEntry(Sample()));
  EXPECT_EQ(parsed.dump(), SerializeEntry(Sample()));
}

TEST(AuditEntryTest, EscapingMatchesJsonLibraries) {
  AuditRecord r = Sample();
  r.target = std::string("q\"b\\n\n\t\x01\x7f caf\xc3\xa9", 15);
  std::string canonical = SerializeEntry(r);
  EXPECT_NE(canonical.find(R"("target":"q\"b\\n\n\t\u0001)"), std::string::npos) << canonical;
  json parsed = json::parse(canonical);
  EXPECT_EQ(parsed["target"], r.target);
  EXPECT_EQ(parsed.dump(), canonical);
}

TEST(AuditEntryTest, SubMillisecondTimeIsDroppedAsStored) {
  AuditRecord a = Sample();
  AuditRecord b = Sample();
  b.time += std::chrono::microseconds(999);
  EXPECT_EQ(EntryLeafHash(a), EntryLeafHash(b));
}

// Independent check of the leaf hash: openssl over 0x00 || canonical bytes.
TEST(AuditEntryTest, LeafHashMatchesOpensslCli) {
  testing::TempDir dir;
  std::string path = dir.File("leaf.bin");
  testing::WriteFile(path, std::string(1, '\0') + SerializeEntry(Sample()));
  auto r = testing::RunCommand("openssl dgst -sha256 -r " + path);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.substr(0, 64), crypto::HexEncode(AsByteView(EntryLeafHash(Sample()))));
}

TEST(AuditEntryTest, CanonicalDetailSortsAndRejectsFloats) {
  auto d = CanonicalDetail(json{{"z", 1}, {"a", "x"}, {"m", {{"b", 2}, {"a", 1}}}});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, R"({"a":"x","m":{"a":1,"b":2},"z":1})");
  EXPECT_EQ(CanonicalDetail(json{{"f", 1.5}}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CanonicalDetail(json::array()).status().code(), StatusCode::kInvalidArgument);
}

TEST(AuditEntryTest, SanitizeFieldKeepsValidUtf8AndCuts) {
  EXPECT_EQ(SanitizeField("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(SanitizeField("a\xff" "b\xc3"), "a?b?");
  EXPECT_EQ(SanitizeField("\xed\xa0\x80"), "???");  // a UTF-16 surrogate is not UTF-8
  EXPECT_EQ(SanitizeField("abc\xc3\xa9", 4), "abc");  // never half a character
  EXPECT_EQ(SanitizeField(std::string(300, 'x')).size(), 256u);
}

TEST(AuditEntryTest, JsonRoundTripKeepsTheLeaf) {
  AuditRecord r = Sample();
  r.leaf_hash = EntryLeafHash(r);
  auto back = RecordFromJson(RecordToJson(r));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(SerializeEntry(*back), SerializeEntry(r));
  EXPECT_EQ(back->leaf_hash, r.leaf_hash);
  json bad = RecordToJson(r);
  bad.erase("actor");
  auto missing = RecordFromJson(bad);
  EXPECT_EQ(missing.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(missing.status().details().at("field"), "actor");

  AuditCheckpointRecord cp;
  cp.id = 3;
  cp.tree_size = 9;
  cp.root_hash[0] = 7;
  cp.timestamp = TimePoint(std::chrono::milliseconds(1732362000999));
  cp.key_id = "audit-1";
  cp.note = "o\n9\nx\ntimestamp-ms 1\n";
  cp.signature = {1, 2, 3};
  auto cp_back = CheckpointFromJson(CheckpointToJson(cp));
  ASSERT_TRUE(cp_back.ok()) << cp_back.status().ToString();
  EXPECT_EQ(cp_back->root_hash, cp.root_hash);
  EXPECT_EQ(cp_back->timestamp, cp.timestamp);
  EXPECT_EQ(cp_back->signature, cp.signature);
  EXPECT_EQ(cp_back->note, cp.note);
}

}  // namespace
}  // namespace concierge::audit
