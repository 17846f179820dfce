// Flat ustar archives in memory, through libarchive: the container of a
// Rotation Evidence Pack.
//
// Writing is deterministic: entries in the order given, every header with the
// same mtime, mode 0644, uid/gid 0 and owner "root", so equal inputs give
// equal bytes. Reading accepts only what the writer can produce: regular files
// with plain names (no directories, links, paths or duplicates), tar formats
// only (no compression filters, to keep the parser surface small), and caps
// sizes so a hostile archive cannot exhaust memory.
//
// Pure functions; thread-safe (each call owns its libarchive handle).
#ifndef CONCIERGE_EVIDENCE_ARCHIVE_H_
#define CONCIERGE_EVIDENCE_ARCHIVE_H_

#include <string>
#include <vector>

#include "concierge/clock.h"
#include "concierge/key_backend.h"
#include "concierge/status.h"

namespace concierge::evidence {

// One file of a pack. Names are plain file names ([a-z0-9._-], no '/').
struct PackFile {
  std::string name;
  Bytes contents;
};

// Limits enforced when reading untrusted archives.
inline constexpr size_t kMaxArchiveEntries = 64;
inline constexpr size_t kMaxArchiveBytes = 256u << 20;

// True for names the pack uses: 1-100 chars of [a-z0-9._-], not starting with
// '.' or '-' (so no hidden files, no option-looking names for shell tools).
bool IsValidPackFileName(std::string_view name);

// ustar bytes of `files` in the given order, every entry stamped with `mtime`
// (whole seconds). InvalidArgument for an invalid or duplicate name.
StatusOr<Bytes> WriteTar(const std::vector<PackFile>& files, TimePoint mtime);

// The entries of a tar archive in archive order. DataLoss "archive is damaged
// ..." when libarchive cannot parse it (e.g. a header checksum fails);
// InvalidArgument with details["entry"] = the entry's name for a non-regular
// file, a bad or duplicate name, or a size over the limits.
StatusOr<std::vector<PackFile>> ReadTar(ByteView archive);

// Reads a whole regular file of at most `max_size` bytes (NotFound when it
// is missing or not a regular file, InvalidArgument when larger, Unavailable
// on a read error) and writes one (temp file + rename, so readers never see
// half a pack).
StatusOr<Bytes> ReadFileBytes(const std::string& path, size_t max_size);
Status WriteFileBytes(const std::string& path, ByteView bytes);

}  // namespace concierge::evidence

#endif  // CONCIERGE_EVIDENCE_ARCHIVE_H_
