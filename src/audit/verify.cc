#include "audit/verify.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include "audit/entry.h"
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

RecordVerifier::RecordVerifier(std::vector<Checkpoint> checkpoints, std::string origin)
    : origin_(std::move(origin)) {
  std::vector<size_t> order(checkpoints.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return checkpoints[a].tree_size < checkpoints[b].tree_size;
  });
  for (size_t pos : order) {
    checkpoints_.push_back(checkpoints[pos]);
    positions_.push_back(pos);
  }
  for (size_t i = 0; i < checkpoints_.size(); ++i) {
    const Checkpoint& cp = checkpoints_[i];
    if (cp.origin != origin_) {
      result_.failed_checkpoint = positions_[i];
      result_.message = Describe(cp, positions_[i]) + " is for log '" + cp.origin + "', not '" + origin_ + "'";
      decided_ = true;
      return;
    }
  }
  // Size-0 checkpoints commit to the empty root before any record arrives.
  while (next_checkpoint_ < checkpoints_.size() && checkpoints_[next_checkpoint_].tree_size == 0) {
    if (checkpoints_[next_checkpoint_].root_hash != EmptyRoot()) {
      result_.failed_checkpoint = positions_[next_checkpoint_];
      result_.message = Describe(checkpoints_[next_checkpoint_], positions_[next_checkpoint_]) +
                        " claims a non-empty root for an empty log";
      decided_ = true;
      return;
    }
    ++next_checkpoint_;
  }
}

void RecordVerifier::FailAt(uint64_t index, std::string message) {
  result_.first_bad_index = index;
  result_.bad_range_end = index + 1;
  result_.message = std::move(message);
  if (result_.verified_size < index) {
    result_.message += " (entries below " + std::to_string(result_.verified_size) +
                       " are proven by a checkpoint; " + std::to_string(result_.verified_size) + ".." +
                       std::to_string(index - 1) + " are not covered by a matching one)";
  }
  decided_ = true;
}

bool RecordVerifier::Add(const AuditRecord& record, bool check_stored_leaf) {
  if (decided_) return false;
  const uint64_t pos = tree_.size();
  ++result_.entry_count;
  if (record.index < 0 || static_cast<uint64_t>(record.index) != pos) {
    if (record.index >= 0 && static_cast<uint64_t>(record.index) > pos) {
      FailAt(pos, "entry " + std::to_string(pos) + " is missing (the next stored entry has index " +
                      std::to_string(record.index) + ")");
    } else {
      FailAt(pos, "entry at position " + std::to_string(pos) + " has index " + std::to_string(record.index) +
                      ": entries were duplicated or reordered");
    }
    return false;
  }
  const Hash leaf = EntryLeafHash(record);
  if (check_stored_leaf && leaf != record.leaf_hash) {
    FailAt(pos, "entry " + std::to_string(pos) +
                    " does not match its stored leaf hash: it was edited, moved or inserted");
    return false;
  }
  tree_.Append(leaf);
  while (next_checkpoint_ < checkpoints_.size() && checkpoints_[next_checkpoint_].tree_size == tree_.size()) {
    const Checkpoint& cp = checkpoints_[next_checkpoint_];
    const size_t position = positions_[next_checkpoint_];
    const Hash root = tree_.Root();
    if (root != cp.root_hash) {
      result_.failed_checkpoint = position;
      result_.first_bad_index = result_.verified_size;
      result_.bad_range_end = cp.tree_size;
      result_.message =
          Describe(cp, position) + " does not match the recomputed root " + crypto::HexEncode(AsByteView(root)) +
          "; " +
          (cp.tree_size - result_.verified_size == 1
               ? "entry " + std::to_string(result_.verified_size) + " was altered, inserted, removed or moved"
               : "the first bad entry is in [" + std::to_string(result_.verified_size) + ", " +
                     std::to_string(cp.tree_size) + ")");
      decided_ = true;
      return false;
    }
    result_.verified_size = cp.tree_size;
    ++next_checkpoint_;
  }
  return true;
}

void RecordVerifier::AddUnreadable(const std::string& why) {
  if (decided_) return;
  ++result_.entry_count;
  FailAt(tree_.size(), "entry " + std::to_string(tree_.size()) + " is unreadable: " + why);
}

LogVerification RecordVerifier::Finish() {
  if (!decided_ && next_checkpoint_ < checkpoints_.size()) {
    const Checkpoint& cp = checkpoints_[next_checkpoint_];
    const uint64_t count = tree_.size();
    result_.failed_checkpoint = positions_[next_checkpoint_];
    result_.first_bad_index = count;
    result_.bad_range_end = cp.tree_size;
    result_.message = Describe(cp, positions_[next_checkpoint_]) + " covers " + std::to_string(cp.tree_size) +
                      " entries but the log has only " + std::to_string(count) + ": entries " +
                      std::to_string(count) + ".." + std::to_string(cp.tree_size - 1) + " were removed";
    decided_ = true;
  }
  if (result_.ok()) result_.unanchored_entries = result_.entry_count - result_.verified_size;
  return result_;
}

}  // namespace concierge::audit
