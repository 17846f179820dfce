// RFC 6962 / RFC 9162 Merkle tree hashing for the tamper-evident audit log.
//
// The tree over entries d[0..n) is the Merkle Tree Hash (MTH) of RFC 6962
// §2.1: leaves are hashed as SHA-256(0x00 || entry) and interior nodes as
// SHA-256(0x01 || left || right), with the left subtree always the largest
// power of two strictly below n. The domain-separation prefixes stop a leaf
// from being passed off as an interior node (second-preimage attacks).
//
// Free functions here are pure and thread-safe. They work on leaf hashes, not
// entries, so callers can keep leaf hashes in storage and never rehash
// history. The span-based proof generators read every leaf hash they are
// given (O(n) per proof); the TreeReader-based ones read stored interior
// nodes (every kAuditNodeLevelStride-th level) and stay O(log^2 n) row reads,
// which is what the server uses. The append path uses CompactRange, which is
// O(log n) per leaf and reports the interior nodes it completes.
#ifndef CONCIERGE_AUDIT_MERKLE_H_
#define CONCIERGE_AUDIT_MERKLE_H_

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <utility>
#include <vector>

#include "concierge/audit.h"        // AuditHash, kAuditNodeLevelStride
#include "concierge/key_backend.h"  // Bytes, ByteView
#include "concierge/status.h"

namespace concierge::audit {

inline constexpr size_t kHashSize = kAuditHashSize;  // SHA-256
using Hash = AuditHash;

// SHA-256(0x00 || entry).
Hash LeafHash(ByteView entry);
// SHA-256(0x01 || left || right).
Hash NodeHash(const Hash& left, const Hash& right);
// MTH({}) = SHA-256(""), the root of the empty log.
Hash EmptyRoot();

// InvalidArgument unless `bytes` is exactly kHashSize long. For hashes that
// arrive from outside (API, export files, checkpoints).
StatusOr<Hash> HashFromBytes(ByteView bytes);
inline ByteView AsByteView(const Hash& h) { return ByteView(h.data(), h.size()); }

// MTH over all of `leaf_hashes` (any count, including 0).
Hash RootFromLeafHashes(std::span<const Hash> leaf_hashes);

// Audit path PATH(index, D[tree_size]) of RFC 6962 §2.1.1, ordered from the
// leaf's sibling up to the root's child. Uses leaf_hashes[0, tree_size).
// InvalidArgument if index >= tree_size or tree_size > leaf_hashes.size().
StatusOr<std::vector<Hash>> InclusionProof(uint64_t index, uint64_t tree_size,
                                           std::span<const Hash> leaf_hashes);

// Recomputes the root implied by an audit path (RFC 9162 §2.1.3.2).
// InvalidArgument if index >= tree_size or the path has the wrong length.
StatusOr<Hash> RootFromInclusionProof(const Hash& leaf_hash, uint64_t index, uint64_t tree_size,
                                      std::span<const Hash> proof);
// OK if `proof` shows that `leaf_hash` is leaf `index` of the tree of size
// `tree_size` with root `root`; InvalidArgument otherwise.
Status VerifyInclusion(const Hash& leaf_hash, uint64_t index, uint64_t tree_size,
                       std::span<const Hash> proof, const Hash& root);

// Consistency proof PROOF(old_size, D[new_size]) of RFC 6962 §2.1.2. Empty
// when old_size is 0 or equals new_size. InvalidArgument if old_size >
// new_size or new_size > leaf_hashes.size().
StatusOr<std::vector<Hash>> ConsistencyProof(uint64_t old_size, uint64_t new_size,
                                             std::span<const Hash> leaf_hashes);

// OK if `proof` shows the tree (old_size, old_root) is a prefix of
// (new_size, new_root) (RFC 9162 §2.1.4.2); InvalidArgument otherwise.
// Stricter than some verifiers on the trivial cases: a size-0 tree must
// carry EmptyRoot() (a checkpoint claiming otherwise is malformed), and equal
// sizes need equal roots and an empty proof.
Status VerifyConsistency(uint64_t old_size, uint64_t new_size, const Hash& old_root,
                         const Hash& new_root, std::span<const Hash> proof);

// The right edge of an append-only tree: one perfect-subtree root per set bit
// of size(), largest (leftmost) first. This is all an appender needs to
// compute the next root, so the log never rereads old leaves on the hot path:
// Append is amortised O(1) hashes (worst case O(log n)), Root is O(log n).
//
// Thread-compatible: a single writer (the group-commit thread) owns it;
// concurrent readers need external synchronisation. Copyable, so a writer can
// snapshot it before a batch and roll back if the batch fails to commit.
class CompactRange {
 public:
  // Receives each interior node that an Append completes: the root of the
  // perfect subtree of 2^level leaves (level >= 1) starting at leaf
  // index << level. The writer persists some of them for proofs.
  using NodeSink = std::function<void(int level, uint64_t index, const Hash& hash)>;

  CompactRange() = default;  // the empty tree

  // Rebuilds from persisted state (size() and nodes()). InvalidArgument if
  // the node count does not equal the number of set bits in `size`.
  static StatusOr<CompactRange> FromNodes(uint64_t size, std::vector<Hash> nodes);

  void Append(const Hash& leaf_hash, const NodeSink& on_node = nullptr);
  // MTH of the leaves appended so far.
  Hash Root() const;

  uint64_t size() const { return size_; }
  const std::vector<Hash>& nodes() const { return nodes_; }

 private:
  CompactRange(uint64_t size, std::vector<Hash> nodes) : size_(size), nodes_(std::move(nodes)) {}

  uint64_t size_ = 0;
  std::vector<Hash> nodes_;
};

// Read access to a stored tree: leaf hashes (level 0) and the interior nodes
// at the stored levels (multiples of kAuditNodeLevelStride), as persisted
// from CompactRange's NodeSink. Implementations need not be thread-safe
// beyond what their caller arranges.
class TreeReader {
 public:
  virtual ~TreeReader() = default;
  // Hashes of nodes [begin, end) at `level`, which is 0 or a multiple of
  // kAuditNodeLevelStride. Every requested node must exist.
  virtual StatusOr<std::vector<Hash>> ReadNodes(int level, uint64_t begin, uint64_t end) = 0;
};

// Root of the perfect subtree (level, index): one ReadNodes call of at most
// 2^(kAuditNodeLevelStride - 1) hashes.
StatusOr<Hash> SubtreeHash(TreeReader& reader, int level, uint64_t index);
// MTH(D[0:tree_size]).
StatusOr<Hash> RootAt(TreeReader& reader, uint64_t tree_size);
// The compact range of the first tree_size leaves (what an appender restarts
// from), one SubtreeHash per set bit of tree_size.
StatusOr<CompactRange> CompactRangeAt(TreeReader& reader, uint64_t tree_size);
// The same proofs as the span-based functions above, from stored nodes.
// The caller guarantees that tree_size leaves are stored.
StatusOr<std::vector<Hash>> InclusionProof(uint64_t index, uint64_t tree_size, TreeReader& reader);
StatusOr<std::vector<Hash>> ConsistencyProof(uint64_t old_size, uint64_t new_size, TreeReader& reader);

}  // namespace concierge::audit

#endif  // CONCIERGE_AUDIT_MERKLE_H_
