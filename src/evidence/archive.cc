#include "evidence/archive.h"

#include <archive.h>
#include <archive_entry.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>

namespace concierge::evidence {
namespace {

struct ArchiveReadDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};
struct ArchiveWriteDeleter {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct EntryDeleter {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};

std::string ArchiveErrorText(archive* a) {
  const char* s = archive_error_string(a);
  return s ? s : "unknown libarchive error";
}

// libarchive writes into a caller-owned buffer through callbacks, so the
// output can grow without a size guess.
la_ssize_t AppendCallback(archive*, void* client, const void* buffer, size_t length) {
  auto* out = static_cast<Bytes*>(client);
  const auto* p = static_cast<const uint8_t*>(buffer);
  out->insert(out->end(), p, p + length);
  return static_cast<la_ssize_t>(length);
}

Status BadEntry(const std::string& name, const std::string& what) {
  return InvalidArgumentError("archive entry '" + name + "' " + what).WithDetail("entry", name);
}

}  // namespace

bool IsValidPackFileName(std::string_view name) {
  if (name.empty() || name.size() > 100 || name[0] == '.' || name[0] == '-') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

StatusOr<Bytes> WriteTar(const std::vector<PackFile>& files, TimePoint mtime) {
  std::set<std::string_view> seen;
  for (const PackFile& f : files) {
    if (!IsValidPackFileName(f.name)) return InvalidArgumentError("invalid pack file name '" + f.name + "'");
    if (!seen.insert(f.name).second) return InvalidArgumentError("duplicate pack file name '" + f.name + "'");
  }
  const auto seconds = std::chrono::floor<std::chrono::seconds>(mtime).time_since_epoch().count();

  Bytes out;
  std::unique_ptr<archive, ArchiveWriteDeleter> a(archive_write_new());
  if (!a) return InternalError("libarchive: cannot allocate a writer");
  if (archive_write_set_format_ustar(a.get()) != ARCHIVE_OK ||
      archive_write_add_filter_none(a.get()) != ARCHIVE_OK ||
      archive_write_open(a.get(), &out, nullptr, AppendCallback, nullptr) != ARCHIVE_OK) {
    return InternalError("libarchive: " + ArchiveErrorText(a.get()));
  }
  for (const PackFile& f : files) {
    std::unique_ptr<archive_entry, EntryDeleter> e(archive_entry_new());
    archive_entry_set_pathname(e.get(), f.name.c_str());
    archive_entry_set_filetype(e.get(), AE_IFREG);
    archive_entry_set_perm(e.get(), 0644);
    archive_entry_set_size(e.get(), static_cast<la_int64_t>(f.contents.size()));
    archive_entry_set_mtime(e.get(), static_cast<time_t>(seconds), 0);
    archive_entry_set_uid(e.get(), 0);
    archive_entry_set_gid(e.get(), 0);
    archive_entry_set_uname(e.get(), "root");
    archive_entry_set_gname(e.get(), "root");
    if (archive_write_header(a.get(), e.get()) != ARCHIVE_OK) {
      return InternalError("libarchive: writing header of " + f.name + ": " + ArchiveErrorText(a.get()));
    }
    if (!f.contents.empty() &&
        archive_write_data(a.get(), f.contents.data(), f.contents.size()) !=
            static_cast<la_ssize_t>(f.contents.size())) {
      return InternalError("libarchive: writing " + f.name + ": " + ArchiveErrorText(a.get()));
    }
  }
  if (archive_write_close(a.get()) != ARCHIVE_OK) {
    return InternalError("libarchive: closing archive: " + ArchiveErrorText(a.get()));
  }
  return out;
}

StatusOr<std::vector<PackFile>> ReadTar(ByteView bytes) {
  std::unique_ptr<archive, ArchiveReadDeleter> a(archive_read_new());
  if (!a) return InternalError("libarchive: cannot allocate a reader");
  if (archive_read_support_format_tar(a.get()) != ARCHIVE_OK ||
      archive_read_open_memory(a.get(), bytes.data(), bytes.size()) != ARCHIVE_OK) {
    return DataLossError("archive is damaged or not a tar archive: " + ArchiveErrorText(a.get()));
  }
  std::vector<PackFile> files;
  std::set<std::string> seen;
  size_t total = 0;
  while (true) {
    archive_entry* e = nullptr;
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    // Anything short of OK (a warning about an odd header included) means the
    // bytes are not what a pack writer produced; say where it happened.
    if (r != ARCHIVE_OK) {
      std::string where = files.empty() ? "at the first entry" : "after " + files.back().name;
      return DataLossError("archive is damaged " + where + ": " + ArchiveErrorText(a.get()));
    }
    const char* path = archive_entry_pathname(e);
    std::string name = path ? path : "";
    if (archive_entry_filetype(e) != AE_IFREG) return BadEntry(name, "is not a regular file");
    if (!IsValidPackFileName(name)) return BadEntry(name, "is not a pack file name");
    if (!seen.insert(name).second) return BadEntry(name, "appears twice");
    if (files.size() >= kMaxArchiveEntries) return BadEntry(name, "is one entry too many");
    la_int64_t size = archive_entry_size(e);
    if (size < 0 || static_cast<uint64_t>(size) > kMaxArchiveBytes - total) return BadEntry(name, "is too large");
    total += static_cast<size_t>(size);
    PackFile f{name, Bytes(static_cast<size_t>(size))};
    size_t off = 0;
    while (off < f.contents.size()) {
      la_ssize_t n = archive_read_data(a.get(), f.contents.data() + off, f.contents.size() - off);
      if (n <= 0) return DataLossError("archive is truncated or damaged in " + name + ": " + ArchiveErrorText(a.get()));
      off += static_cast<size_t>(n);
    }
    files.push_back(std::move(f));
  }
  return files;
}

StatusOr<Bytes> ReadFileBytes(const std::string& path, size_t max_size) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return NotFoundError("cannot open " + path + ": not a readable file");
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return UnavailableError("cannot read " + path);
  if (size > max_size) return InvalidArgumentError(path + " is larger than " + std::to_string(max_size) + " bytes");
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFoundError("cannot open " + path);
  Bytes out((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) return UnavailableError("cannot read " + path);
  return out;
}

Status WriteFileBytes(const std::string& path, ByteView bytes) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    f.flush();
    if (!f) {
      std::remove(tmp.c_str());
      return UnavailableError("cannot write " + path);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return UnavailableError("cannot write " + path);
  }
  return Status::Ok();
}

}  // namespace concierge::evidence
