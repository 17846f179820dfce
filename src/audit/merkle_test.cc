#include "audit/merkle.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "crypto/encoding.h"

namespace concierge::audit {
namespace {

Hash H(std::string_view hex) {
  auto bytes = crypto::HexDecode(hex);
  EXPECT_TRUE(bytes.ok()) << hex;
  auto h = HashFromBytes(*bytes);
  EXPECT_TRUE(h.ok()) << hex;
  return h.ok() ? *h : Hash{};
}

std::vector<Hash> Hs(std::initializer_list<std::string_view> hexes) {
  std::vector<Hash> out;
  for (std::string_view h : hexes) out.push_back(H(h));
  return out;
}

// ---------------------------------------------------------------------------
// Published RFC 6962 test vectors. Source: the certificate-transparency Merkle
// tree tests, as carried in transparency-dev/merkle proof/verify_test.go
// (variables `leaves`, `roots`, `inclusionProofs`, `consistencyProofs`). Only
// the data is reproduced. Those tables number leaves from 1; the index below
// is the 0-based leaf index.
// ---------------------------------------------------------------------------

std::vector<Bytes> VectorLeaves() {
  std::vector<Bytes> out;
  for (std::string_view hex : {"", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                               "606162636465666768696a6b6c6d6e6f"}) {
    out.push_back(*crypto::HexDecode(hex));
  }
  return out;
}

std::vector<Hash> VectorLeafHashes() {
  std::vector<Hash> out;
  for (const Bytes& leaf : VectorLeaves()) out.push_back(LeafHash(leaf));
  return out;
}

// Root of the tree over the first i+1 vector leaves.
const std::vector<Hash>& VectorRoots() {
  static const std::vector<Hash> roots = Hs({
      "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
      "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
      "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
      "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
      "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
      "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
      "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
  });
  return roots;
}

struct InclusionVector {
  uint64_t index;
  uint64_t size;
  std::vector<Hash> proof;
};

std::vector<InclusionVector> InclusionVectors() {
  return {
      {0, 1, {}},
      {0, 8,
       Hs({"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
           "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
           "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"})},
      {5, 8,
       Hs({"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
           "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
           "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"})},
      {2, 3, Hs({"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"})},
      {1, 5,
       Hs({"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
           "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
           "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"})},
  };
}

struct ConsistencyVector {
  uint64_t old_size;
  uint64_t new_size;
  std::vector<Hash> proof;
};

std::vector<ConsistencyVector> ConsistencyVectors() {
  return {
      {1, 1, {}},
      {1, 8,
       Hs({"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
           "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
           "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"})},
      {6, 8,
       Hs({"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
           "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
           "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"})},
      {2, 5,
       Hs({"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
           "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"})},
      {6, 7,
       Hs({"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
           "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
           "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"})},
  };
}

TEST(MerkleVectorsTest, EmptyTreeRootIsSha256OfNothing) {
  EXPECT_EQ(EmptyRoot(), H("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
  EXPECT_EQ(RootFromLeafHashes({}), EmptyRoot());
}

TEST(MerkleVectorsTest, RootsForSizes1To8) {
  const std::vector<Hash> leaves = VectorLeafHashes();
  for (size_t n = 1; n <= leaves.size(); ++n) {
    EXPECT_EQ(RootFromLeafHashes(std::span(leaves).first(n)), VectorRoots()[n - 1]) << "n=" << n;
  }
}

TEST(MerkleVectorsTest, CompactRangeReproducesPublishedRoots) {
  CompactRange range;
  for (const Hash& leaf : VectorLeafHashes()) {
    range.Append(leaf);
    EXPECT_EQ(range.Root(), VectorRoots()[range.size() - 1]) << "n=" << range.size();
  }
}

TEST(MerkleVectorsTest, InclusionProofsMatchAndVerify) {
  const std::vector<Hash> leaves = VectorLeafHashes();
  for (const InclusionVector& v : InclusionVectors()) {
    SCOPED_TRACE("index=" + std::to_string(v.index) + " size=" + std::to_string(v.size));
    auto proof = InclusionProof(v.index, v.size, leaves);
    ASSERT_TRUE(proof.ok()) << proof.status().ToString();
    EXPECT_EQ(*proof, v.proof);
    const Hash& root = VectorRoots()[v.size - 1];
    EXPECT_TRUE(VerifyInclusion(leaves[v.index], v.index, v.size, v.proof, root).ok());
  }
}

// The same mutations the published suite applies to each good proof.
TEST(MerkleVectorsTest, CorruptedInclusionProofsFail) {
  const std::vector<Hash> leaves = VectorLeafHashes();
  const Hash some_hash = H("abacaba000000000000000000000000000000000000000000060061e00123456");
  for (const InclusionVector& v : InclusionVectors()) {
    SCOPED_TRACE("index=" + std::to_string(v.index) + " size=" + std::to_string(v.size));
    const Hash& root = VectorRoots()[v.size - 1];
    const Hash& leaf = leaves[v.index];
    EXPECT_FALSE(VerifyInclusion(leaf, v.index + 1, v.size, v.proof, root).ok());
    if (v.index > 0) {
      EXPECT_FALSE(VerifyInclusion(leaf, v.index - 1, v.size, v.proof, root).ok());
    }
    EXPECT_FALSE(VerifyInclusion(leaf, v.index ^ 2, v.size, v.proof, root).ok());
    EXPECT_FALSE(VerifyInclusion(leaf, v.index, v.size * 2, v.proof, root).ok());
    EXPECT_FALSE(VerifyInclusion(leaf, v.index, v.size / 2, v.proof, root).ok());
    EXPECT_FALSE(
        VerifyInclusion(LeafHash(crypto::AsBytes("WrongLeaf")), v.index, v.size, v.proof, root)
            .ok());
    EXPECT_FALSE(VerifyInclusion(leaf, v.index, v.size, v.proof, EmptyRoot()).ok());
    EXPECT_FALSE(VerifyInclusion(leaf, v.index, v.size, v.proof, some_hash).ok());

    std::vector<Hash> longer = v.proof;
    longer.push_back(root);
    EXPECT_FALSE(VerifyInclusion(leaf, v.index, v.size, longer, root).ok());
    std::vector<Hash> prefixed = v.proof;
    prefixed.insert(prefixed.begin(), root);
    EXPECT_FALSE(VerifyInclusion(leaf, v.index, v.size, prefixed, root).ok());
    for (size_t i = 0; i < v.proof.size(); ++i) {
      std::vector<Hash> flipped = v.proof;
      flipped[i][0] ^= 8;
      EXPECT_FALSE(VerifyInclusion(leaf, v.index, v.size, flipped, root).ok()) << "bit in " << i;
    }
    if (!v.proof.empty()) {
      std::vector<Hash> shorter(v.proof.begin(), v.proof.end() - 1);
      EXPECT_FALSE(VerifyInclusion(leaf, v.index, v.size, shorter, root).ok());
    }
    if (v.proof.size() > 1) {
      std::vector<Hash> inserted = v.proof;
      inserted.insert(inserted.begin() + 1, some_hash);
      EXPECT_FALSE(VerifyInclusion(leaf, v.index, v.size, inserted, root).ok());
    }
  }
}

TEST(MerkleVectorsTest, ConsistencyProofsMatchAndVerify) {
  const std::vector<Hash> leaves = VectorLeafHashes();
  for (const ConsistencyVector& v : ConsistencyVectors()) {
    SCOPED_TRACE("old=" + std::to_string(v.old_size) + " new=" + std::to_string(v.new_size));
    auto proof = ConsistencyProof(v.old_size, v.new_size, leaves);
    ASSERT_TRUE(proof.ok()) << proof.status().ToString();
    EXPECT_EQ(*proof, v.proof);
    const Hash& old_root = VectorRoots()[v.old_size - 1];
    const Hash& new_root = VectorRoots()[v.new_size - 1];
    Status st = VerifyConsistency(v.old_size, v.new_size, old_root, new_root, v.proof);
    EXPECT_TRUE(st.ok()) << st.ToString();
  }
}

TEST(MerkleVectorsTest, CorruptedConsistencyProofsFail) {
  for (const ConsistencyVector& v : ConsistencyVectors()) {
    if (v.proof.empty()) continue;  // trivial proofs have nothing to corrupt
    SCOPED_TRACE("old=" + std::to_string(v.old_size) + " new=" + std::to_string(v.new_size));
    const Hash& r1 = VectorRoots()[v.old_size - 1];
    const Hash& r2 = VectorRoots()[v.new_size - 1];
    const uint64_t m = v.old_size;
    const uint64_t n = v.new_size;
    EXPECT_FALSE(VerifyConsistency(m - 1, n, r1, r2, v.proof).ok());
    EXPECT_FALSE(VerifyConsistency(m + 1, n, r1, r2, v.proof).ok());
    EXPECT_FALSE(VerifyConsistency(m ^ 2, n, r1, r2, v.proof).ok());
    EXPECT_FALSE(VerifyConsistency(m, n * 2, r1, r2, v.proof).ok());
    EXPECT_FALSE(VerifyConsistency(m, n / 2, r1, r2, v.proof).ok());
    EXPECT_FALSE(VerifyConsistency(m, n, LeafHash(crypto::AsBytes("WrongRoot")), r2, v.proof).ok());
    EXPECT_FALSE(VerifyConsistency(m, n, r1, LeafHash(crypto::AsBytes("WrongRoot")), v.proof).ok());
    EXPECT_FALSE(VerifyConsistency(m, n, r2, r1, v.proof).ok());
    EXPECT_FALSE(VerifyConsistency(m, n, r1, r2, {}).ok());
    for (const Hash& extra : {r1, r2}) {
      std::vector<Hash> longer = v.proof;
      longer.push_back(extra);
      EXPECT_FALSE(VerifyConsistency(m, n, r1, r2, longer).ok());
      std::vector<Hash> prefixed = v.proof;
      prefixed.insert(prefixed.begin(), extra);
      EXPECT_FALSE(VerifyConsistency(m, n, r1, r2, prefixed).ok());
    }
    std::vector<Hash> doubled = v.proof;
    doubled.insert(doubled.begin(), v.proof[0]);
    EXPECT_FALSE(VerifyConsistency(m, n, r1, r2, doubled).ok());
    std::vector<Hash> shorter(v.proof.begin(), v.proof.end() - 1);
    EXPECT_FALSE(VerifyConsistency(m, n, r1, r2, shorter).ok());
    for (size_t i = 0; i < v.proof.size(); ++i) {
      std::vector<Hash> flipped = v.proof;
      flipped[i][0] ^= 16;
      EXPECT_FALSE(VerifyConsistency(m, n, r1, r2, flipped).ok()) << "bit in " << i;
    }
  }
}

TEST(MerkleTest, TrivialConsistencyCases) {
  const Hash a = LeafHash(crypto::AsBytes("a"));
  const Hash b = LeafHash(crypto::AsBytes("b"));
  EXPECT_TRUE(VerifyConsistency(0, 0, EmptyRoot(), EmptyRoot(), {}).ok());
  EXPECT_TRUE(VerifyConsistency(0, 5, EmptyRoot(), a, {}).ok());
  EXPECT_TRUE(VerifyConsistency(1, 1, a, a, {}).ok());
  EXPECT_FALSE(VerifyConsistency(1, 1, a, b, {}).ok());  // fork at equal size
  EXPECT_FALSE(VerifyConsistency(0, 5, a, b, {}).ok());  // size 0 must be empty root
  EXPECT_FALSE(VerifyConsistency(1, 1, a, a, std::vector<Hash>{EmptyRoot()}).ok());
  EXPECT_FALSE(VerifyConsistency(0, 1, EmptyRoot(), a, std::vector<Hash>{EmptyRoot()}).ok());
  EXPECT_FALSE(VerifyConsistency(2, 1, a, b, {}).ok());  // time travel
  EXPECT_FALSE(VerifyConsistency(1, 2, a, b, {}).ok());  // missing proof
}

TEST(MerkleTest, InclusionRejectsIndexOutsideTree) {
  const Hash a = LeafHash(crypto::AsBytes("a"));
  EXPECT_FALSE(VerifyInclusion(a, 0, 0, {}, EmptyRoot()).ok());
  EXPECT_FALSE(VerifyInclusion(a, 1, 1, {}, a).ok());
  EXPECT_TRUE(VerifyInclusion(a, 0, 1, {}, a).ok());  // single leaf: root is the leaf
  std::vector<Hash> leaves = {a};
  EXPECT_FALSE(InclusionProof(1, 1, leaves).ok());
  EXPECT_FALSE(InclusionProof(0, 2, leaves).ok());
  EXPECT_FALSE(ConsistencyProof(2, 1, leaves).ok());
  EXPECT_FALSE(ConsistencyProof(0, 2, leaves).ok());
}

TEST(MerkleTest, HashFromBytesChecksLength) {
  EXPECT_FALSE(HashFromBytes(crypto::AsBytes("short")).ok());
  EXPECT_TRUE(HashFromBytes(AsByteView(EmptyRoot())).ok());
}

std::vector<Hash> SyntheticLeaves(size_t n) {
  std::vector<Hash> out;
  for (size_t i = 0; i < n; ++i)
    out.push_back(LeafHash(crypto::AsBytes("entry-" + std::to_string(i))));
  return out;
}

// Roots for leaves "entry-0", "entry-1", ... computed by an independent
// Python 3 implementation of RFC 6962 MTH (hashlib, recursive split at the
// largest power of two below n), run when this test was written. They guard
// the larger, non-power-of-two sizes the 8-leaf published vectors cannot.
TEST(MerkleTest, IndependentPythonRootsForLargerTrees) {
  const std::vector<Hash> leaves = SyntheticLeaves(300);
  const std::vector<std::pair<size_t, std::string_view>> expected = {
      {0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {1, "40766b2033429026f53d54502679a839706b4741f8dcaf3a8bba5f41b5ffe075"},
      {3, "a64bf26e09128f6fe2fe6f8b2d8c801e166b57c047a7cd9b2b809e7a96a2f1cb"},
      {7, "9139601cc1ca8ab2a7a0c2c134c04845f2b1ba549a83d6c845cfcda439cc585d"},
      {100, "50e444b2aeb035c62271e446e201c586272d50988b64e6f862cafec8ef91c066"},
      {255, "45da9f374748e17a372f71c00422b12e2bf96842f1f61c5740fe494e4becff0f"},
      {256, "f85f4ead34080710b4d1e808301543aaab81aa04deb88599350dc26a4f2f58de"},
      {257, "918b1cec64f317c76e3cf55c0536841c039eff06772ebb8828ce7c176028b5ac"},
      {300, "aebb027d5c3dd08871ee52577a61fc83122d0d14352791943639bd4c12d36943"},
  };
  for (const auto& [n, hex] : expected) {
    EXPECT_EQ(RootFromLeafHashes(std::span(leaves).first(n)), H(hex)) << "n=" << n;
  }
}

TEST(CompactRangeTest, MatchesFullRecomputationUpTo300) {
  const std::vector<Hash> leaves = SyntheticLeaves(300);
  CompactRange range;
  EXPECT_EQ(range.Root(), RootFromLeafHashes({}));
  for (size_t n = 1; n <= leaves.size(); ++n) {
    range.Append(leaves[n - 1]);
    ASSERT_EQ(range.size(), n);
    ASSERT_EQ(range.nodes().size(), static_cast<size_t>(std::popcount(n)));
    ASSERT_EQ(range.Root(), RootFromLeafHashes(std::span(leaves).first(n))) << "n=" << n;
  }
}

TEST(CompactRangeTest, RestoresFromPersistedNodes) {
  const std::vector<Hash> leaves = SyntheticLeaves(45);
  CompactRange original;
  for (size_t i = 0; i < 37; ++i) original.Append(leaves[i]);
  auto restored = CompactRange::FromNodes(original.size(), original.nodes());
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  for (size_t i = 37; i < 45; ++i) restored->Append(leaves[i]);
  EXPECT_EQ(restored->Root(), RootFromLeafHashes(leaves));

  EXPECT_FALSE(CompactRange::FromNodes(37, {}).ok());
  EXPECT_FALSE(CompactRange::FromNodes(4, original.nodes()).ok());
}

// Every proof our generator makes, for every index and size pair up to 33,
// verifies, and fails against the neighbouring tree's root.
TEST(MerkleTest, AllProofsRoundTripForSmallTrees) {
  const std::vector<Hash> leaves = SyntheticLeaves(33);
  std::vector<Hash> roots;
  for (size_t n = 0; n <= leaves.size(); ++n)
    roots.push_back(RootFromLeafHashes(std::span(leaves).first(n)));
  for (uint64_t n = 1; n <= leaves.size(); ++n) {
    for (uint64_t i = 0; i < n; ++i) {
      auto proof = InclusionProof(i, n, leaves);
      ASSERT_TRUE(proof.ok());
      ASSERT_TRUE(VerifyInclusion(leaves[i], i, n, *proof, roots[n]).ok()) << i << "/" << n;
      if (n > 1) {
        ASSERT_FALSE(VerifyInclusion(leaves[i], i, n, *proof, roots[n - 1]).ok());
      }
    }
    for (uint64_t m = 0; m <= n; ++m) {
      auto proof = ConsistencyProof(m, n, leaves);
      ASSERT_TRUE(proof.ok());
      Status st = VerifyConsistency(m, n, roots[m], roots[n], *proof);
      ASSERT_TRUE(st.ok()) << m << "->" << n << ": " << st.ToString();
      if (m > 0 && m < n) {
        ASSERT_FALSE(VerifyConsistency(m, n, roots[m - 1], roots[n], *proof).ok());
        ASSERT_FALSE(VerifyConsistency(m, n, roots[m], roots[n - 1], *proof).ok());
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Proofs from stored nodes: a TreeReader that holds what the writer persists
// (leaves plus the interior nodes at multiples of kAuditNodeLevelStride,
// collected from CompactRange's NodeSink) must give exactly the span-based
// proofs, which are checked against the published vectors above.
// ---------------------------------------------------------------------------

class MemoryTreeReader : public TreeReader {
 public:
  void Append(const Hash& leaf) {
    levels_[0].push_back(leaf);
    tree_.Append(leaf, [&](int level, uint64_t index, const Hash& h) {
      if (level % kAuditNodeLevelStride != 0) return;
      auto& nodes = levels_[level];
      EXPECT_EQ(nodes.size(), index) << "nodes complete in order";
      nodes.push_back(h);
    });
  }
  StatusOr<std::vector<Hash>> ReadNodes(int level, uint64_t begin, uint64_t end) override {
    ++reads_;
    read_hashes_ += end - begin;
    EXPECT_TRUE(level == 0 || level % kAuditNodeLevelStride == 0) << level;
    const auto& nodes = levels_[level];
    if (end > nodes.size()) return DataLossError("missing nodes");
    return std::vector<Hash>(nodes.begin() + static_cast<ptrdiff_t>(begin),
                             nodes.begin() + static_cast<ptrdiff_t>(end));
  }
  const std::vector<Hash>& leaves() { return levels_[0]; }
  const CompactRange& tree() const { return tree_; }
  size_t reads_ = 0;
  size_t read_hashes_ = 0;

 private:
  std::map<int, std::vector<Hash>> levels_;
  CompactRange tree_;
};

Hash TestLeaf(uint64_t i) {
  const std::string s = "leaf-" + std::to_string(i);
  return LeafHash(crypto::AsBytes(s));
}

TEST(MerkleReaderTest, SinkReportsEveryCompletedNode) {
  CompactRange tree;
  std::vector<std::tuple<int, uint64_t>> seen;
  for (uint64_t i = 0; i < 8; ++i) {
    tree.Append(TestLeaf(i), [&](int level, uint64_t index, const Hash&) { seen.emplace_back(level, index); });
  }
  const std::vector<std::tuple<int, uint64_t>> want = {{1, 0}, {1, 1}, {2, 0}, {1, 2}, {1, 3}, {2, 1}, {3, 0}};
  EXPECT_EQ(seen, want);
}

TEST(MerkleReaderTest, ProofsFromStoredNodesEqualSpanProofs) {
  MemoryTreeReader reader;
  for (uint64_t n = 1; n <= 140; ++n) {
    reader.Append(TestLeaf(n - 1));
    const auto& leaves = reader.leaves();
    auto root = RootAt(reader, n);
    ASSERT_TRUE(root.ok()) << root.status().ToString();
    ASSERT_EQ(*root, RootFromLeafHashes(leaves)) << n;
    auto range = CompactRangeAt(reader, n);
    ASSERT_TRUE(range.ok());
    EXPECT_EQ(range->nodes(), reader.tree().nodes()) << n;
    for (uint64_t i = 0; i < n; ++i) {
      auto stored = InclusionProof(i, n, reader);
      ASSERT_TRUE(stored.ok()) << stored.status().ToString();
      ASSERT_EQ(*stored, *InclusionProof(i, n, leaves)) << i << "/" << n;
      auto old = ConsistencyProof(i + 1, n, reader);
      ASSERT_TRUE(old.ok()) << old.status().ToString();
      ASSERT_EQ(*old, *ConsistencyProof(i + 1, n, leaves)) << i + 1 << "->" << n;
    }
  }
  EXPECT_FALSE(InclusionProof(140, 140, reader).ok());
  EXPECT_FALSE(ConsistencyProof(5, 4, reader).ok());
}

// The point of stored nodes: a proof in a large tree reads a bounded number
// of hashes, not every leaf.
TEST(MerkleReaderTest, ProofReadsAreBoundedInLargeTrees) {
  MemoryTreeReader reader;
  constexpr uint64_t kSize = 100000;
  for (uint64_t i = 0; i < kSize; ++i) reader.Append(TestLeaf(i));
  const auto& leaves = reader.leaves();
  for (uint64_t index : {uint64_t{0}, uint64_t{1}, uint64_t{4095}, uint64_t{65537}, kSize - 1}) {
    reader.read_hashes_ = 0;
    auto proof = InclusionProof(index, kSize, reader);
    ASSERT_TRUE(proof.ok());
    ASSERT_TRUE(VerifyInclusion(leaves[index], index, kSize, *proof, RootFromLeafHashes(leaves)).ok());
    EXPECT_LT(reader.read_hashes_, 600u) << index;
  }
  for (uint64_t old_size : {uint64_t{1}, uint64_t{777}, uint64_t{65536}, kSize - 3}) {
    reader.read_hashes_ = 0;
    auto proof = ConsistencyProof(old_size, kSize, reader);
    ASSERT_TRUE(proof.ok());
    const std::span<const Hash> all(leaves);
    ASSERT_TRUE(VerifyConsistency(old_size, kSize, RootFromLeafHashes(all.first(old_size)),
                                  RootFromLeafHashes(leaves), *proof)
                    .ok());
    EXPECT_LT(reader.read_hashes_, 1200u) << old_size;
  }
}

TEST(MerkleReaderTest, MissingStoredNodeIsDataLoss) {
  class Truncated : public TreeReader {
   public:
    StatusOr<std::vector<Hash>> ReadNodes(int, uint64_t begin, uint64_t end) override {
      return std::vector<Hash>(end - begin > 1 ? end - begin - 1 : 0);
    }
  } reader;
  EXPECT_EQ(RootAt(reader, 5).status().code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace concierge::audit
