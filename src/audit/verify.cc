#include "audit/verify.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include "crypto/encoding.h"

namespace concierge::audit {
namespace {

std::string Describe(const Checkpoint& cp, size_t position) {
  return "checkpoint #" + std::to_string(position) + " (size " + std::to_string(cp.tree_size) + ")";
}

}  // namespace

Status LogVerification::ToStatus() const {
  if (ok()) return Status::Ok();
  Status st = DataLossError("audit log verification failed: " + message);
  if (first_bad_index.has_value()) {
    st.WithDetail("first_bad_index", std::to_string(*first_bad_index));
    st.WithDetail("bad_range_end", std::to_string(bad_range_end));
  }
  if (failed_checkpoint.has_value()) {
    st.WithDetail("failed_checkpoint", std::to_string(*failed_checkpoint));
  }
  return st;
}

LogVerification VerifyLeafHashes(std::span<const Hash> leaf_hashes,
                                 std::span<const Checkpoint> checkpoints, std::string_view origin) {
  LogVerification result;
  result.entry_count = leaf_hashes.size();

  // Visit checkpoints by size so that the first mismatch is also the one
  // with the smallest suspect range; stable so that equal sizes report the
  // caller's earlier one first.
  std::vector<size_t> order(checkpoints.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return checkpoints[a].tree_size < checkpoints[b].tree_size;
  });

  // A checkpoint for another log would "fail" for reasons that say nothing
  // about this log's entries, so reject the input before hashing anything.
  for (size_t pos : order) {
    if (checkpoints[pos].origin != origin) {
      result.failed_checkpoint = pos;
      result.message = Describe(checkpoints[pos], pos) + " is for log '" + checkpoints[pos].origin +
                       "', not '" + std::string(origin) + "'";
      return result;
    }
  }

  // One pass over the leaves: the compact range yields the root at every
  // checkpoint size without rereading earlier leaves.
  CompactRange tree;
  for (size_t pos : order) {
    const Checkpoint& cp = checkpoints[pos];
    if (cp.tree_size > leaf_hashes.size()) {
      // Everything below verified_size is proven; which entries between it
      // and the end were removed (or altered) cannot be told from one root.
      result.failed_checkpoint = pos;
      result.first_bad_index = result.verified_size;
      result.bad_range_end = cp.tree_size;
      result.message = Describe(cp, pos) + " covers " + std::to_string(cp.tree_size) +
                       " entries but the log has only " + std::to_string(leaf_hashes.size()) +
                       "; entries removed at or after index " +
                       std::to_string(result.verified_size);
      return result;
    }
    while (tree.size() < cp.tree_size) tree.Append(leaf_hashes[tree.size()]);
    const Hash root = tree.Root();
    if (root != cp.root_hash) {
      result.failed_checkpoint = pos;
      result.first_bad_index = result.verified_size;
      result.bad_range_end = cp.tree_size;
      const std::string suspect = cp.tree_size - result.verified_size == 1
                                      ? "entry " + std::to_string(result.verified_size) +
                                            " was altered, inserted, removed or moved"
                                      : "first bad entry is in [" +
                                            std::to_string(result.verified_size) + ", " +
                                            std::to_string(cp.tree_size) + ")";
      result.message = Describe(cp, pos) + " root " + crypto::HexEncode(AsByteView(cp.root_hash)) +
                       " does not match the recomputed root " +
                       crypto::HexEncode(AsByteView(root)) + "; " + suspect;
      return result;
    }
    result.verified_size = cp.tree_size;
  }
  result.unanchored_entries = leaf_hashes.size() - result.verified_size;
  return result;
}

LogVerification VerifyLog(std::span<const std::string> entries,
                          std::span<const Checkpoint> checkpoints, std::string_view origin) {
  std::vector<Hash> leaf_hashes;
  leaf_hashes.reserve(entries.size());
  for (const std::string& entry : entries) leaf_hashes.push_back(LeafHash(crypto::AsBytes(entry)));
  return VerifyLeafHashes(leaf_hashes, checkpoints, origin);
}

}  // namespace concierge::audit
