// Offline verification of an audit log against the checkpoints it signed.
//
// The verifier recomputes the Merkle tree from the entries, in the order
// given, and compares its root with every checkpoint's root at that
// checkpoint's size. Checkpoints are the only trusted input (the caller
// verifies their signatures first with VerifyCheckpoint); entries and their
// order come from storage or an export and are what is being checked.
//
// Localisation: a checkpoint root commits to all entries below its size but
// says nothing about which one differs, so the verifier can prove only that
// the prefix up to the last matching checkpoint is intact and that some
// entry in [first_bad_index, bad_range_end) is not what was signed. The
// result is exact (a range of one) when checkpoints are at least as dense as
// the suspect region, e.g. one tree head per group-commit batch. Edits,
// deletions, insertions and reorderings all change the recomputed root of
// every later tree, so each is caught at the first checkpoint after it.
//
// Pure functions; thread-safe.
#ifndef CONCIERGE_AUDIT_VERIFY_H_
#define CONCIERGE_AUDIT_VERIFY_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "audit/checkpoint.h"
#include "audit/merkle.h"
#include "concierge/status.h"

namespace concierge::audit {

struct LogVerification {
  uint64_t entry_count = 0;
  // Entries [0, verified_size) are proven to be exactly what was signed.
  uint64_t verified_size = 0;
  // Entries at or beyond the largest checkpoint: not yet covered by any
  // signature. Not an error, but an auditor should know.
  uint64_t unanchored_entries = 0;

  // Set when verification failed. failed_checkpoint is the position in the
  // caller's list (not the size) of the first checkpoint, by size, that does
  // not match; unset when the failure is not about one checkpoint.
  std::optional<size_t> failed_checkpoint;
  // The first entry index that is not what was signed, or, if the checkpoints
  // are sparse, the lowest index that may be; bad_range_end is one past the
  // highest.
  std::optional<uint64_t> first_bad_index;
  uint64_t bad_range_end = 0;
  std::string message;  // human-readable summary, never entry contents

  bool ok() const { return message.empty(); }
  // OK, or DataLoss with the message and details "first_bad_index",
  // "failed_checkpoint", "bad_range_end" where known.
  Status ToStatus() const;
};

// Verifies serialized entries (leaf i is LeafHash(entries[i])) against
// `checkpoints`, which may be in any order. Every checkpoint must name
// `origin`. A checkpoint larger than the log means entries were removed.
LogVerification VerifyLog(std::span<const std::string> entries,
                          std::span<const Checkpoint> checkpoints, std::string_view origin);

// Same, for callers that already hold the leaf hashes.
LogVerification VerifyLeafHashes(std::span<const Hash> leaf_hashes,
                                 std::span<const Checkpoint> checkpoints, std::string_view origin);

}  // namespace concierge::audit

#endif  // CONCIERGE_AUDIT_VERIFY_H_
