#include "audit/merkle.h"

#include <openssl/evp.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <utility>

#include "crypto/openssl_util.h"

namespace concierge::audit {
namespace {

constexpr uint8_t kLeafPrefix = 0x00;
constexpr uint8_t kNodePrefix = 0x01;

// Fetched once: implicit fetching through EVP_sha256() repeats a provider
// lookup on every call, which dominates the cost of hashing 65 bytes.
const EVP_MD* Sha256Md() {
  static const EVP_MD* md = [] {
    const EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (fetched == nullptr) std::abort();  // no default provider: nothing can work
    return fetched;
  }();
  return md;
}

// SHA-256 over the concatenation of `parts`. A failure here means OpenSSL is
// broken (out of memory, provider unloaded), which is a broken invariant, not
// a recoverable error: a log that silently produced a wrong hash would be
// worse than one that stops.
// The context is reused per thread: the group-commit writer hashes a leaf
// and about one node per signature, and a fresh context is an allocation.
Hash Sha256Concat(std::initializer_list<ByteView> parts) {
  thread_local crypto::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (ctx == nullptr || EVP_DigestInit_ex(ctx.get(), Sha256Md(), nullptr) != 1) std::abort();
  for (ByteView part : parts) {
    if (EVP_DigestUpdate(ctx.get(), part.data(), part.size()) != 1) std::abort();
  }
  Hash out;
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), out.data(), &len) != 1 || len != kHashSize) std::abort();
  return out;
}

// Largest power of two strictly less than n (RFC 6962's k); requires n >= 2.
uint64_t SplitPoint(uint64_t n) { return std::bit_floor(n - 1); }

Hash Mth(std::span<const Hash> leaves) {
  if (leaves.empty()) return EmptyRoot();
  if (leaves.size() == 1) return leaves[0];
  const uint64_t k = SplitPoint(leaves.size());
  return NodeHash(Mth(leaves.first(k)), Mth(leaves.subspan(k)));
}

// PATH(m, D[n]) of RFC 6962 §2.1.1, appended to `out` leaf-first.
void Path(uint64_t m, std::span<const Hash> leaves, std::vector<Hash>& out) {
  if (leaves.size() <= 1) return;
  const uint64_t k = SplitPoint(leaves.size());
  if (m < k) {
    Path(m, leaves.first(k), out);
    out.push_back(Mth(leaves.subspan(k)));
  } else {
    Path(m - k, leaves.subspan(k), out);
    out.push_back(Mth(leaves.first(k)));
  }
}

// SUBPROOF(m, D[n], b) of RFC 6962 §2.1.2.
void SubProof(uint64_t m, std::span<const Hash> leaves, bool complete, std::vector<Hash>& out) {
  const uint64_t n = leaves.size();
  if (m == n) {
    // The old tree is this whole subtree. If it was the whole old tree the
    // verifier already knows its root; otherwise it needs this hash.
    if (!complete) out.push_back(Mth(leaves));
    return;
  }
  const uint64_t k = SplitPoint(n);
  if (m <= k) {
    SubProof(m, leaves.first(k), complete, out);
    out.push_back(Mth(leaves.subspan(k)));
  } else {
    SubProof(m - k, leaves.subspan(k), false, out);
    out.push_back(Mth(leaves.first(k)));
  }
}

Status ProofMismatch(std::string what) { return InvalidArgumentError(std::move(what)); }

}  // namespace

Hash LeafHash(ByteView entry) {
  const uint8_t prefix = kLeafPrefix;
  return Sha256Concat({ByteView(&prefix, 1), entry});
}

Hash NodeHash(const Hash& left, const Hash& right) {
  const uint8_t prefix = kNodePrefix;
  return Sha256Concat({ByteView(&prefix, 1), AsByteView(left), AsByteView(right)});
}

Hash EmptyRoot() {
  static const Hash empty = Sha256Concat({});
  return empty;
}

StatusOr<Hash> HashFromBytes(ByteView bytes) {
  if (bytes.size() != kHashSize) {
    return InvalidArgumentError("hash must be " + std::to_string(kHashSize) + " bytes, got " +
                                std::to_string(bytes.size()));
  }
  Hash h;
  std::copy(bytes.begin(), bytes.end(), h.begin());
  return h;
}

Hash RootFromLeafHashes(std::span<const Hash> leaf_hashes) { return Mth(leaf_hashes); }

StatusOr<std::vector<Hash>> InclusionProof(uint64_t index, uint64_t tree_size,
                                           std::span<const Hash> leaf_hashes) {
  if (tree_size > leaf_hashes.size()) {
    return InvalidArgumentError("tree size " + std::to_string(tree_size) + " exceeds the " +
                                std::to_string(leaf_hashes.size()) + " leaves available");
  }
  if (index >= tree_size) {
    return InvalidArgumentError("leaf index " + std::to_string(index) +
                                " is outside a tree of size " + std::to_string(tree_size));
  }
  std::vector<Hash> proof;
  Path(index, leaf_hashes.first(tree_size), proof);
  return proof;
}

StatusOr<Hash> RootFromInclusionProof(const Hash& leaf_hash, uint64_t index, uint64_t tree_size,
                                      std::span<const Hash> proof) {
  if (index >= tree_size) {
    return InvalidArgumentError("leaf index " + std::to_string(index) +
                                " is outside a tree of size " + std::to_string(tree_size));
  }
  // fn walks the leaf's position up the tree, sn the last leaf's; when they
  // meet, the node has no right sibling and the level is skipped.
  uint64_t fn = index;
  uint64_t sn = tree_size - 1;
  Hash r = leaf_hash;
  for (const Hash& p : proof) {
    if (sn == 0) return ProofMismatch("inclusion proof is too long");
    if ((fn & 1) == 1 || fn == sn) {
      r = NodeHash(p, r);
      if ((fn & 1) == 0) {
        while ((fn & 1) == 0 && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = NodeHash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return ProofMismatch("inclusion proof is too short");
  return r;
}

Status VerifyInclusion(const Hash& leaf_hash, uint64_t index, uint64_t tree_size,
                       std::span<const Hash> proof, const Hash& root) {
  ASSIGN_OR_RETURN(Hash computed, RootFromInclusionProof(leaf_hash, index, tree_size, proof));
  if (computed != root) return ProofMismatch("inclusion proof does not lead to the root");
  return Status::Ok();
}

StatusOr<std::vector<Hash>> ConsistencyProof(uint64_t old_size, uint64_t new_size,
                                             std::span<const Hash> leaf_hashes) {
  if (old_size > new_size) {
    return InvalidArgumentError("old size " + std::to_string(old_size) + " exceeds new size " +
                                std::to_string(new_size));
  }
  if (new_size > leaf_hashes.size()) {
    return InvalidArgumentError("tree size " + std::to_string(new_size) + " exceeds the " +
                                std::to_string(leaf_hashes.size()) + " leaves available");
  }
  std::vector<Hash> proof;
  if (old_size == 0 || old_size == new_size) return proof;
  SubProof(old_size, leaf_hashes.first(new_size), /*complete=*/true, proof);
  return proof;
}

Status VerifyConsistency(uint64_t old_size, uint64_t new_size, const Hash& old_root,
                         const Hash& new_root, std::span<const Hash> proof) {
  if (old_size > new_size) return ProofMismatch("old tree is larger than new tree");
  if (old_size == 0) {
    if (old_root != EmptyRoot()) return ProofMismatch("size-0 tree with a non-empty root");
    if (!proof.empty()) return ProofMismatch("consistency proof from an empty tree must be empty");
    if (new_size == 0 && new_root != EmptyRoot()) {
      return ProofMismatch("size-0 tree with a non-empty root");
    }
    return Status::Ok();
  }
  if (old_size == new_size) {
    if (!proof.empty()) return ProofMismatch("consistency proof between equal sizes must be empty");
    if (old_root != new_root) return ProofMismatch("different roots for the same tree size");
    return Status::Ok();
  }
  if (proof.empty()) return ProofMismatch("consistency proof is empty");

  // When the old tree is a perfect subtree, its root is the proof's implicit
  // first element (RFC 9162 §2.1.4.2 step 1).
  std::span<const Hash> rest = proof;
  Hash seed;
  if (std::has_single_bit(old_size)) {
    seed = old_root;
  } else {
    seed = proof[0];
    rest = proof.subspan(1);
  }
  uint64_t fn = old_size - 1;
  uint64_t sn = new_size - 1;
  while ((fn & 1) == 1) {
    fn >>= 1;
    sn >>= 1;
  }
  Hash fr = seed;
  Hash sr = seed;
  for (const Hash& c : rest) {
    if (sn == 0) return ProofMismatch("consistency proof is too long");
    if ((fn & 1) == 1 || fn == sn) {
      fr = NodeHash(c, fr);
      sr = NodeHash(c, sr);
      if ((fn & 1) == 0) {
        while ((fn & 1) == 0 && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      sr = NodeHash(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return ProofMismatch("consistency proof is too short");
  if (fr != old_root) return ProofMismatch("consistency proof does not lead to the old root");
  if (sr != new_root) return ProofMismatch("consistency proof does not lead to the new root");
  return Status::Ok();
}

StatusOr<CompactRange> CompactRange::FromNodes(uint64_t size, std::vector<Hash> nodes) {
  if (nodes.size() != static_cast<size_t>(std::popcount(size))) {
    return InvalidArgumentError("compact range for size " + std::to_string(size) + " needs " +
                                std::to_string(std::popcount(size)) + " nodes, got " +
                                std::to_string(nodes.size()));
  }
  return CompactRange(size, std::move(nodes));
}

void CompactRange::Append(const Hash& leaf_hash, const NodeSink& on_node) {
  // Each trailing 1 bit of the old size is a perfect subtree of the same
  // height as the carry being built, so the two merge (binary increment).
  Hash carry = leaf_hash;
  const uint64_t new_size = size_ + 1;
  int level = 0;
  for (uint64_t s = size_; (s & 1) == 1; s >>= 1) {
    carry = NodeHash(nodes_.back(), carry);
    nodes_.pop_back();
    ++level;
    if (on_node) on_node(level, (new_size >> level) - 1, carry);
  }
  nodes_.push_back(carry);
  ++size_;
}

Hash CompactRange::Root() const {
  if (nodes_.empty()) return EmptyRoot();
  // MTH's left subtrees are the largest powers of two, so folding the
  // subtree roots from the smallest (rightmost) up reproduces it exactly.
  Hash root = nodes_.back();
  for (auto it = nodes_.rbegin() + 1; it != nodes_.rend(); ++it) root = NodeHash(*it, root);
  return root;
}

// --- proofs from stored nodes ---

namespace {

// MTH(D[begin:end)) for a range that occurs in the MTH recursion: begin is a
// multiple of bit_ceil(end - begin), so the range splits into the perfect
// subtrees of the binary digits of its length, largest first, each aligned.
StatusOr<Hash> RangeHash(TreeReader& reader, uint64_t begin, uint64_t end) {
  if (end <= begin) return InternalError("empty subtree range");
  const uint64_t n = end - begin;
  if (begin % std::bit_ceil(n) != 0) return InternalError("unaligned subtree range");
  std::vector<Hash> pieces;
  uint64_t pos = begin;
  for (int bit = 63; bit >= 0; --bit) {
    const uint64_t width = uint64_t{1} << bit;
    if ((n & width) == 0) continue;
    ASSIGN_OR_RETURN(Hash h, SubtreeHash(reader, bit, pos >> bit));
    pieces.push_back(h);
    pos += width;
  }
  Hash root = pieces.back();
  for (auto it = pieces.rbegin() + 1; it != pieces.rend(); ++it) root = NodeHash(*it, root);
  return root;
}

// PATH(m, D[begin:end)), as Path() above.
Status PathFrom(TreeReader& reader, uint64_t m, uint64_t begin, uint64_t end, std::vector<Hash>& out) {
  const uint64_t n = end - begin;
  if (n <= 1) return Status::Ok();
  const uint64_t k = SplitPoint(n);
  if (m < k) {
    RETURN_IF_ERROR(PathFrom(reader, m, begin, begin + k, out));
    ASSIGN_OR_RETURN(Hash h, RangeHash(reader, begin + k, end));
    out.push_back(h);
  } else {
    RETURN_IF_ERROR(PathFrom(reader, m - k, begin + k, end, out));
    ASSIGN_OR_RETURN(Hash h, RangeHash(reader, begin, begin + k));
    out.push_back(h);
  }
  return Status::Ok();
}

// SUBPROOF(m, D[begin:end), complete), as SubProof() above.
Status SubProofFrom(TreeReader& reader, uint64_t m, uint64_t begin, uint64_t end, bool complete,
                    std::vector<Hash>& out) {
  const uint64_t n = end - begin;
  if (m == n) {
    if (!complete) {
      ASSIGN_OR_RETURN(Hash h, RangeHash(reader, begin, end));
      out.push_back(h);
    }
    return Status::Ok();
  }
  const uint64_t k = SplitPoint(n);
  if (m <= k) {
    RETURN_IF_ERROR(SubProofFrom(reader, m, begin, begin + k, complete, out));
    ASSIGN_OR_RETURN(Hash h, RangeHash(reader, begin + k, end));
    out.push_back(h);
  } else {
    RETURN_IF_ERROR(SubProofFrom(reader, m - k, begin + k, end, false, out));
    ASSIGN_OR_RETURN(Hash h, RangeHash(reader, begin, begin + k));
    out.push_back(h);
  }
  return Status::Ok();
}

}  // namespace

StatusOr<Hash> SubtreeHash(TreeReader& reader, int level, uint64_t index) {
  if (level < 0 || level >= 63) return InvalidArgumentError("subtree level out of range");
  const int up = level % kAuditNodeLevelStride;
  const int stored = level - up;
  const uint64_t count = uint64_t{1} << up;
  const uint64_t first = index << up;
  ASSIGN_OR_RETURN(std::vector<Hash> nodes, reader.ReadNodes(stored, first, first + count));
  if (nodes.size() != count) {
    return DataLossError("audit tree: expected " + std::to_string(count) + " nodes at level " +
                         std::to_string(stored) + " from " + std::to_string(first) + ", found " +
                         std::to_string(nodes.size()));
  }
  for (size_t width = nodes.size(); width > 1; width /= 2) {
    for (size_t i = 0; i < width / 2; ++i) nodes[i] = NodeHash(nodes[2 * i], nodes[2 * i + 1]);
  }
  return nodes[0];
}

StatusOr<Hash> RootAt(TreeReader& reader, uint64_t tree_size) {
  if (tree_size == 0) return EmptyRoot();
  return RangeHash(reader, 0, tree_size);
}

StatusOr<CompactRange> CompactRangeAt(TreeReader& reader, uint64_t tree_size) {
  std::vector<Hash> nodes;
  uint64_t pos = 0;
  for (int bit = 63; bit >= 0; --bit) {
    const uint64_t width = uint64_t{1} << bit;
    if ((tree_size & width) == 0) continue;
    ASSIGN_OR_RETURN(Hash h, SubtreeHash(reader, bit, pos >> bit));
    nodes.push_back(h);
    pos += width;
  }
  return CompactRange::FromNodes(tree_size, std::move(nodes));
}

StatusOr<std::vector<Hash>> InclusionProof(uint64_t index, uint64_t tree_size, TreeReader& reader) {
  if (index >= tree_size) {
    return InvalidArgumentError("leaf index " + std::to_string(index) + " is outside a tree of size " +
                                std::to_string(tree_size));
  }
  std::vector<Hash> proof;
  RETURN_IF_ERROR(PathFrom(reader, index, 0, tree_size, proof));
  return proof;
}

StatusOr<std::vector<Hash>> ConsistencyProof(uint64_t old_size, uint64_t new_size, TreeReader& reader) {
  if (old_size > new_size) {
    return InvalidArgumentError("old size " + std::to_string(old_size) + " exceeds new size " +
                                std::to_string(new_size));
  }
  std::vector<Hash> proof;
  if (old_size == 0 || old_size == new_size) return proof;
  RETURN_IF_ERROR(SubProofFrom(reader, old_size, 0, new_size, /*complete=*/true, proof));
  return proof;
}

}  // namespace concierge::audit
