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
#include <vector>

#include "audit/checkpoint.h"
#include "audit/merkle.h"
#include "concierge/audit.h"
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

// Streaming verification of stored records (database, export, REST), in
// O(log n) memory. Besides recomputing the tree against the checkpoints, it
// uses what storage holds about each record to name the exact index of
// naive tampering, before the next checkpoint would only give a range:
//  - record i must carry index i: a missing, duplicated or out-of-order row
//    is reported at the first position where the index is not the expected
//    one;
//  - the recomputed leaf hash must equal the stored one: a row whose content
//    was edited (or moved or inserted without recomputing its hash) is
//    reported at its own index.
// Someone who also recomputes stored hashes is still caught by the first
// checkpoint covering the change; the report is then the suspect range.
// Checkpoints are the only trusted input (verify their signatures first).
class RecordVerifier {
 public:
  RecordVerifier(std::vector<Checkpoint> checkpoints, std::string origin);

  // Feeds the next record in storage order; `check_stored_leaf` compares its
  // leaf_hash field (false for sources that carry none). Returns false once
  // the result is decided, after which further records are ignored.
  bool Add(const AuditRecord& record, bool check_stored_leaf = true);
  // The next stored record could not be read or parsed (e.g. an export line
  // that is not an entry): reported as bad at the next position.
  void AddUnreadable(const std::string& why);
  // Entries after the last matching checkpoint and checkpoints past the end
  // of the log are judged here.
  LogVerification Finish();

 private:
  void FailAt(uint64_t index, std::string message);

  std::vector<Checkpoint> checkpoints_;  // sorted by tree size
  std::vector<size_t> positions_;        // caller's position of each
  size_t next_checkpoint_ = 0;
  std::string origin_;
  CompactRange tree_;
  LogVerification result_;
  bool decided_ = false;
};

}  // namespace concierge::audit

#endif  // CONCIERGE_AUDIT_VERIFY_H_
