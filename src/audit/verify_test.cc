#include "audit/verify.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

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

}  // namespace
}  // namespace concierge::audit
