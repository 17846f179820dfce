#include "audit/verify.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "audit/entry.h"
#include "crypto/encoding.h"
#include "crypto/keys.h"
#include "crypto/signature.h"

namespace concierge::audit {
namespace {

constexpr std::string_view kOrigin = "concierge.test/audit";

std::vector<std::string> MakeEntries(size_t n) {
  std::vector<std::string> entries;
  for (size_t i = 0; i < n; ++i) {
    entries.push_back(R"({"seq":)" + std::to_string(i) +
                      R"(,"actor":"ak_1","action":"sign","target":"k1"})");
  }
  return entries;
}

// Checkpoints over `entries` at each of `sizes`, as the log would have
// signed them before any tampering.
std::vector<Checkpoint> CheckpointsAt(const std::vector<std::string>& entries,
                                      const std::vector<uint64_t>& sizes) {
  std::vector<Checkpoint> out;
  CompactRange tree;
  for (uint64_t size : sizes) {
    while (tree.size() < size) tree.Append(LeafHash(crypto::AsBytes(entries[tree.size()])));
    Checkpoint cp;
    cp.origin = std::string(kOrigin);
    cp.tree_size = size;
    cp.root_hash = tree.Root();
    cp.timestamp = CheckpointTime(std::chrono::milliseconds(1700000000000 + size));
    out.push_back(cp);
  }
  return out;
}

// One checkpoint per entry: what a group-commit writer that publishes a tree
// head per batch produces when each batch holds a single entry.
std::vector<Checkpoint> DenseCheckpoints(const std::vector<std::string>& entries) {
  std::vector<uint64_t> sizes;
  for (uint64_t n = 1; n <= entries.size(); ++n) sizes.push_back(n);
  return CheckpointsAt(entries, sizes);
}

void ExpectExactBadIndex(const LogVerification& v, uint64_t index) {
  ASSERT_FALSE(v.ok());
  ASSERT_TRUE(v.first_bad_index.has_value()) << v.message;
  EXPECT_EQ(*v.first_bad_index, index) << v.message;
  EXPECT_EQ(v.bad_range_end, index + 1) << v.message;
  EXPECT_EQ(v.verified_size, index);
  // DenseCheckpoints puts the checkpoint of size k at position k-1.
  ASSERT_TRUE(v.failed_checkpoint.has_value());
  EXPECT_EQ(*v.failed_checkpoint, index);
  Status st = v.ToStatus();
  EXPECT_EQ(st.code(), StatusCode::kDataLoss);
  EXPECT_EQ(st.details().at("first_bad_index"), std::to_string(index));
  EXPECT_EQ(st.details().at("failed_checkpoint"), std::to_string(index));
}

TEST(VerifyLogTest, UntouchedLogVerifies) {
  const auto entries = MakeEntries(20);
  const auto checkpoints = DenseCheckpoints(entries);
  LogVerification v = VerifyLog(entries, checkpoints, kOrigin);
  EXPECT_TRUE(v.ok()) << v.message;
  EXPECT_TRUE(v.ToStatus().ok());
  EXPECT_EQ(v.entry_count, 20u);
  EXPECT_EQ(v.verified_size, 20u);
  EXPECT_EQ(v.unanchored_entries, 0u);
  EXPECT_FALSE(v.first_bad_index.has_value());
}

TEST(VerifyLogTest, EmptyLogAndNoCheckpoints) {
  EXPECT_TRUE(VerifyLog({}, {}, kOrigin).ok());
  Checkpoint empty;
  empty.origin = std::string(kOrigin);
  empty.root_hash = EmptyRoot();
  std::vector<Checkpoint> cps = {empty};
  EXPECT_TRUE(VerifyLog({}, cps, kOrigin).ok());
  const auto entries = MakeEntries(3);
  LogVerification v = VerifyLog(entries, cps, kOrigin);
  EXPECT_TRUE(v.ok());
  EXPECT_EQ(v.unanchored_entries, 3u);
}

TEST(VerifyLogTest, DetectsEditedEntry) {
  auto entries = MakeEntries(20);
  const auto checkpoints = DenseCheckpoints(entries);
  entries[7].replace(entries[7].find("sign"), 4, "SIGN");
  ExpectExactBadIndex(VerifyLog(entries, checkpoints, kOrigin), 7);
}

TEST(VerifyLogTest, DetectsSingleBitEditInFirstAndLastEntry) {
  const auto original = MakeEntries(20);
  const auto checkpoints = DenseCheckpoints(original);
  for (size_t index : {size_t{0}, size_t{19}}) {
    auto entries = original;
    entries[index][3] ^= 0x01;
    ExpectExactBadIndex(VerifyLog(entries, checkpoints, kOrigin), index);
  }
}

TEST(VerifyLogTest, DetectsDeletedEntry) {
  auto entries = MakeEntries(20);
  const auto checkpoints = DenseCheckpoints(entries);
  entries.erase(entries.begin() + 11);
  ExpectExactBadIndex(VerifyLog(entries, checkpoints, kOrigin), 11);
}

TEST(VerifyLogTest, DetectsReorderedEntries) {
  auto entries = MakeEntries(20);
  const auto checkpoints = DenseCheckpoints(entries);
  std::swap(entries[4], entries[15]);
  ExpectExactBadIndex(VerifyLog(entries, checkpoints, kOrigin), 4);
}

TEST(VerifyLogTest, DetectsAdjacentSwap) {
  auto entries = MakeEntries(20);
  const auto checkpoints = DenseCheckpoints(entries);
  std::swap(entries[9], entries[10]);
  ExpectExactBadIndex(VerifyLog(entries, checkpoints, kOrigin), 9);
}

TEST(VerifyLogTest, DetectsInsertedEntry) {
  auto entries = MakeEntries(20);
  const auto checkpoints = DenseCheckpoints(entries);
  entries.insert(entries.begin() + 13, R"({"seq":13,"actor":"mallory","action":"noop"})");
  ExpectExactBadIndex(VerifyLog(entries, checkpoints, kOrigin), 13);
}

TEST(VerifyLogTest, DetectsDuplicatedEntry) {
  auto entries = MakeEntries(20);
  const auto checkpoints = DenseCheckpoints(entries);
  entries.insert(entries.begin() + 6, entries[5]);
  ExpectExactBadIndex(VerifyLog(entries, checkpoints, kOrigin), 6);
}

TEST(VerifyLogTest, DetectsTruncatedTail) {
  auto entries = MakeEntries(20);
  const auto checkpoints = DenseCheckpoints(entries);
  entries.resize(17);
  LogVerification v = VerifyLog(entries, checkpoints, kOrigin);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.first_bad_index, 17u) << v.message;
  EXPECT_EQ(v.failed_checkpoint, 17u);  // the size-18 checkpoint
  EXPECT_NE(v.message.find("only 17"), std::string::npos) << v.message;
}

// Sparse checkpoints can only bound the damage: the prefix up to the last
// good checkpoint is proven, and the bad entry lies before the failed one.
TEST(VerifyLogTest, SparseCheckpointsReportTheSuspectRange) {
  auto entries = MakeEntries(20);
  const auto checkpoints = CheckpointsAt(entries, {5, 10, 15, 20});
  entries[7] += " ";
  LogVerification v = VerifyLog(entries, checkpoints, kOrigin);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.failed_checkpoint, 1u);
  EXPECT_EQ(v.first_bad_index, 5u);
  EXPECT_EQ(v.bad_range_end, 10u);
  EXPECT_EQ(v.verified_size, 5u);
  EXPECT_NE(v.message.find("[5, 10)"), std::string::npos) << v.message;
}

TEST(VerifyLogTest, CheckpointOrderDoesNotMatterAndPositionIsTheCallers) {
  auto entries = MakeEntries(12);
  auto checkpoints = DenseCheckpoints(entries);
  std::reverse(checkpoints.begin(), checkpoints.end());  // size 12 first, size 1 last
  entries[3] = "edited";
  LogVerification v = VerifyLog(entries, checkpoints, kOrigin);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.first_bad_index, 3u);
  EXPECT_EQ(v.failed_checkpoint, 8u);  // size 4 sits at position 12 - 4
}

TEST(VerifyLogTest, EntriesAfterTheLastCheckpointAreReportedUnanchored) {
  const auto entries = MakeEntries(20);
  const auto checkpoints = CheckpointsAt(entries, {8, 16});
  LogVerification v = VerifyLog(entries, checkpoints, kOrigin);
  EXPECT_TRUE(v.ok()) << v.message;
  EXPECT_EQ(v.verified_size, 16u);
  EXPECT_EQ(v.unanchored_entries, 4u);
}

TEST(VerifyLogTest, ForkedCheckpointIsCaught) {
  const auto entries = MakeEntries(10);
  auto checkpoints = CheckpointsAt(entries, {4, 10});
  auto forked = CheckpointsAt(MakeEntries(4), {4});
  forked[0].root_hash[0] ^= 1;  // another root for the same size
  checkpoints.push_back(forked[0]);
  LogVerification v = VerifyLog(entries, checkpoints, kOrigin);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.failed_checkpoint, 2u);
}

TEST(VerifyLogTest, RejectsCheckpointsForAnotherLog) {
  const auto entries = MakeEntries(5);
  auto checkpoints = CheckpointsAt(entries, {5});
  checkpoints[0].origin = "someone.else/log";
  LogVerification v = VerifyLog(entries, checkpoints, kOrigin);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.failed_checkpoint, 0u);
  EXPECT_FALSE(v.first_bad_index.has_value());
  EXPECT_EQ(v.ToStatus().code(), StatusCode::kDataLoss);
}

// The whole path an auditor takes: signed notes -> VerifyCheckpoint -> VerifyLog.
TEST(VerifyLogTest, EndToEndWithSignedCheckpoints) {
  auto key = crypto::GenerateKeyPair(Algorithm::kES256);
  ASSERT_TRUE(key.ok());
  DigestSigner signer = [&](ByteView digest) {
    return crypto::SignDigest(key->get(), Algorithm::kES256, digest);
  };
  auto entries = MakeEntries(9);
  std::vector<SignedCheckpoint> published;
  for (const Checkpoint& cp : DenseCheckpoints(entries)) {
    auto signed_cp = SignCheckpoint(cp, Algorithm::kES256, signer);
    ASSERT_TRUE(signed_cp.ok()) << signed_cp.status().ToString();
    published.push_back(*signed_cp);
  }
  std::vector<Checkpoint> trusted;
  for (const SignedCheckpoint& s : published) {
    auto cp = VerifyCheckpoint(s, key->get(), Algorithm::kES256);
    ASSERT_TRUE(cp.ok()) << cp.status().ToString();
    trusted.push_back(*cp);
  }
  EXPECT_TRUE(VerifyLog(entries, trusted, kOrigin).ok());
  entries.erase(entries.begin() + 2);
  ExpectExactBadIndex(VerifyLog(entries, trusted, kOrigin), 2);
}

// --- RecordVerifier: stored records with their stored leaf hashes ---

std::vector<AuditRecord> MakeRecords(int64_t n) {
  std::vector<AuditRecord> out;
  for (int64_t i = 0; i < n; ++i) {
    AuditRecord r;
    r.index = i;
    r.time = TimePoint(std::chrono::milliseconds(1732362000000 + i));
    r.actor = "ak-" + std::to_string(i % 3);
    r.tenant_id = i % 2 ? "acme-news" : "globex";
    r.action = "sign.digest";
    r.target = "key-1";
    r.outcome = "success";
    r.request_id = "req-" + std::to_string(i);
    r.client_address = "192.0.2.1";
    r.policy_hash = std::string(64, 'p');
    r.detail_json = R"({"digest":"ab","ledger_seq":)" + std::to_string(i + 1) + "}";
    r.leaf_hash = EntryLeafHash(r);
    out.push_back(r);
  }
  return out;
}

std::vector<Checkpoint> RecordCheckpoints(const std::vector<AuditRecord>& records, std::vector<uint64_t> sizes) {
  std::vector<Checkpoint> out;
  CompactRange tree;
  for (uint64_t size : sizes) {
    while (tree.size() < size) tree.Append(records[tree.size()].leaf_hash);
    out.push_back(Checkpoint{std::string(kOrigin), size, tree.Root(), CheckpointTime(std::chrono::milliseconds(size))});
  }
  return out;
}

LogVerification RunRecords(const std::vector<AuditRecord>& records, const std::vector<Checkpoint>& checkpoints,
                           bool check_leaf = true) {
  RecordVerifier v(checkpoints, std::string(kOrigin));
  for (const AuditRecord& r : records) {
    if (!v.Add(r, check_leaf)) break;
  }
  return v.Finish();
}

void ExpectBadAt(const LogVerification& v, uint64_t index) {
  ASSERT_FALSE(v.ok());
  ASSERT_TRUE(v.first_bad_index.has_value()) << v.message;
  EXPECT_EQ(*v.first_bad_index, index) << v.message;
}

TEST(RecordVerifierTest, IntactLogVerifiesAndCountsUnanchored) {
  auto records = MakeRecords(20);
  LogVerification v = RunRecords(records, RecordCheckpoints(records, {0, 5, 16}));
  EXPECT_TRUE(v.ok()) << v.message;
  EXPECT_EQ(v.entry_count, 20u);
  EXPECT_EQ(v.verified_size, 16u);
  EXPECT_EQ(v.unanchored_entries, 4u);
}

TEST(RecordVerifierTest, NamesEditedDeletedReorderedAndInsertedRows) {
  const auto records = MakeRecords(20);
  const auto checkpoints = RecordCheckpoints(records, {4, 20});

  auto edited = records;
  edited[9].actor = "mallory";
  ExpectBadAt(RunRecords(edited, checkpoints), 9);

  auto deleted = records;
  deleted.erase(deleted.begin() + 7);  // a gap in the indexes
  ExpectBadAt(RunRecords(deleted, checkpoints), 7);

  auto reordered = records;  // rows keep their index column, contents swapped
  std::swap(reordered[11].request_id, reordered[12].request_id);
  std::swap(reordered[11].leaf_hash, reordered[12].leaf_hash);
  ExpectBadAt(RunRecords(reordered, checkpoints), 11);

  auto inserted = records;  // a forged row at 6, later rows renumbered
  AuditRecord forged = records[6];
  forged.actor = "mallory";
  inserted.insert(inserted.begin() + 6, forged);
  for (size_t i = 7; i < inserted.size(); ++i) inserted[i].index = static_cast<int64_t>(i);
  ExpectBadAt(RunRecords(inserted, checkpoints), 6);

  auto truncated = records;
  truncated.resize(15);
  LogVerification v = RunRecords(truncated, checkpoints);
  ExpectBadAt(v, 15);
  EXPECT_EQ(v.bad_range_end, 20u);
  EXPECT_EQ(v.failed_checkpoint, 1u);
}

// Someone who recomputes the stored leaf hashes too is caught by the first
// checkpoint covering the change, and the report is that checkpoint's range.
TEST(RecordVerifierTest, RecomputedLeafHashesAreCaughtByTheCheckpoint) {
  const auto records = MakeRecords(20);
  const auto checkpoints = RecordCheckpoints(records, {4, 10, 20});
  auto forged = records;
  forged[12].outcome = "failure";
  forged[12].leaf_hash = EntryLeafHash(forged[12]);
  LogVerification v = RunRecords(forged, checkpoints);
  ExpectBadAt(v, 10);
  EXPECT_EQ(v.bad_range_end, 20u);
  EXPECT_EQ(v.verified_size, 10u);
  EXPECT_EQ(v.failed_checkpoint, 2u);
  // Without stored hashes (a source that carries none) the same holds.
  ExpectBadAt(RunRecords(forged, checkpoints, /*check_leaf=*/false), 10);
}

TEST(RecordVerifierTest, WrongOriginAndBadEmptyCheckpoint) {
  const auto records = MakeRecords(3);
  auto checkpoints = RecordCheckpoints(records, {3});
  checkpoints[0].origin = "other/log";
  EXPECT_FALSE(RunRecords(records, checkpoints).ok());
  auto empty = RecordCheckpoints(records, {0});
  empty[0].root_hash[0] ^= 1;
  EXPECT_FALSE(RunRecords(records, empty).ok());
}

}  // namespace
}  // namespace concierge::audit
