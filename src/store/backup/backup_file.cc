#include "store/backup/backup_file.h"

#include <openssl/evp.h>

#include <nlohmann/json.hpp>

#include "crypto/encoding.h"

namespace concierge::store {
namespace {

using json = nlohmann::json;

constexpr char kFormat[] = "c2-concierge-backup";
constexpr int kFormatVersion = 1;

// SHA-256 over everything written or read before the trailer.
class Sha256Stream {
 public:
  Sha256Stream() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr); }
  void Update(std::string_view data) { EVP_DigestUpdate(ctx_.get(), data.data(), data.size()); }
  std::string HexDigest() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_.get(), md, &len);
    return crypto::HexEncode(ByteView(md, len));
  }

 private:
  struct Free {
    void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx_;
};

// Strict UTF-8 (no overlong forms, surrogates or values past U+10FFFF): what
// JSON text may hold.
bool ValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t extra = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the first continuation byte
    if (c < 0x80) {
      extra = 0;
    } else if (c >= 0xC2 && c <= 0xDF) {
      extra = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      extra = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      extra = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (extra > s.size() - i - 1) return false;
    for (size_t k = 1; k <= extra; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (k == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) return false;
    }
    i += extra + 1;
  }
  return true;
}

json ValueJson(const SqlValue& v) {
  switch (v.kind) {
    case SqlValue::Kind::kNull: return nullptr;
    case SqlValue::Kind::kInt: return v.i;
    case SqlValue::Kind::kText:
      // JSON text must be UTF-8; anything else travels as bytes, marked as text.
      if (ValidUtf8(v.s)) return v.s;
      return json{{"b64", crypto::Base64Encode(crypto::AsBytes(v.s))}, {"text", true}};
    case SqlValue::Kind::kBytes: return json{{"b64", crypto::Base64Encode(crypto::AsBytes(v.s))}};
  }
  return nullptr;
}

StatusOr<SqlValue> ValueFrom(const json& j) {
  if (j.is_null()) return SqlValue::Null();
  if (j.is_number_integer()) return SqlValue::Int(j.get<int64_t>());
  if (j.is_string()) return SqlValue::Text(j.get<std::string>());
  if (j.is_object() && j.contains("b64") && j["b64"].is_string()) {
    ASSIGN_OR_RETURN(Bytes bytes, crypto::Base64Decode(j["b64"].get<std::string>()));
    std::string s = crypto::AsString(bytes);
    return j.value("text", false) ? SqlValue::Text(std::move(s)) : SqlValue::Bytes(std::move(s));
  }
  return DataLossError("unexpected value " + j.dump().substr(0, 40));
}

class LineWriter {
 public:
  explicit LineWriter(std::ostream& out) : out_(out) {}
  void Write(const json& j, bool hashed = true) {
    const std::string line = j.dump() + "\n";
    if (hashed) sha_.Update(line);
    out_ << line;
  }
  std::string Digest() { return sha_.HexDigest(); }

 private:
  std::ostream& out_;
  Sha256Stream sha_;
};

// What a reader does with each part; unset handlers are skipped (verify).
struct Handlers {
  std::function<Status(const BackupSummary& header)> header;
  std::function<Status(const std::string& table, const std::vector<std::string>& columns, const SqlRow& row)> row;
  std::function<Status(BackupFile file)> file;
  std::function<Status()> end;
};

StatusOr<BackupSummary> ReadBackup(std::istream& in, int latest_schema_version, const Handlers& h) {
  BackupSummary summary;
  Sha256Stream sha;
  std::string line;
  int64_t n = 0;
  std::string table;
  std::vector<std::string> columns;
  std::map<std::string, int64_t> rows;
  int64_t files = 0;
  auto bad = [&](const std::string& why) {
    return DataLossError("backup line " + std::to_string(n) + ": " + why);
  };
  while (std::getline(in, line)) {
    ++n;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return bad("not a JSON object (damaged file?)");
    if (n == 1) {
      if (j.value("format", "") != kFormat) return bad("not a C2-Concierge backup");
      if (j.value("version", 0) != kFormatVersion) {
        return bad("backup format version " + j.value("version", json()).dump() + " is not supported");
      }
      summary.engine = j.value("engine", "");
      summary.schema_version = j.value("schema_version", 0);
      if (summary.schema_version < 1) return bad("no schema version");
      if (summary.schema_version > latest_schema_version) {
        return FailedPreconditionError("the backup has schema version " + std::to_string(summary.schema_version) +
                                       ", newer than this build supports (" + std::to_string(latest_schema_version) +
                                       "); restore it with a newer keyctl");
      }
      if (h.header) RETURN_IF_ERROR(h.header(summary));
    } else if (j.contains("end")) {
      const json& end = j["end"];
      if (!end.is_object() || end.value("sha256", "") != sha.HexDigest()) {
        return bad("checksum mismatch: the file is damaged");
      }
      if (end.value("files", int64_t{-1}) != files || end.value("rows", json::object()) != json(rows)) {
        return bad("row or file counts do not match the trailer");
      }
      if (std::getline(in, line)) return DataLossError("backup has data after its end line");
      summary.rows = rows;
      summary.files = files;
      if (h.end) RETURN_IF_ERROR(h.end());
      return summary;
    } else if (j.contains("table")) {
      if (!j["table"].is_string() || !j.contains("columns") || !j["columns"].is_array()) return bad("bad table line");
      table = j["table"].get<std::string>();
      columns.clear();
      for (const json& c : j["columns"]) {
        if (!c.is_string()) return bad("bad column name");
        columns.push_back(c.get<std::string>());
      }
      rows[table] += 0;
    } else if (j.contains("row")) {
      if (table.empty() || !j["row"].is_array() || j["row"].size() != columns.size()) return bad("bad row");
      SqlRow values;
      values.reserve(columns.size());
      for (const json& v : j["row"]) {
        StatusOr<SqlValue> value = ValueFrom(v);
        if (!value.ok()) return bad(value.status().message());
        values.push_back(*std::move(value));
      }
      ++rows[table];
      if (h.row) RETURN_IF_ERROR(h.row(table, columns, values));
    } else if (j.contains("file")) {
      if (!j["file"].is_string() || !SafeBackupPath(j["file"].get<std::string>()) || !j.contains("b64")) {
        return bad("bad file entry");
      }
      StatusOr<Bytes> content = crypto::Base64Decode(j.value("b64", ""));
      if (!content.ok()) return bad("bad file content");
      ++files;
      if (h.file) RETURN_IF_ERROR(h.file(BackupFile{j["file"].get<std::string>(), crypto::AsString(*content)}));
    } else {
      return bad("unknown entry");
    }
    sha.Update(line);
    sha.Update("\n");
  }
  return DataLossError(n == 0 ? "the backup file is empty" : "the backup ends early (no end line): truncated?");
}

}  // namespace

bool SafeBackupPath(std::string_view path) {
  if (path.empty() || path.front() == '/') return false;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t slash = path.find('/', start);
    const std::string_view part = path.substr(start, slash == std::string_view::npos ? path.npos : slash - start);
    if (part.empty() || part == "." || part == ".." || part.find('\0') != std::string_view::npos) return false;
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return true;
}

StatusOr<BackupSummary> WriteBackup(SqlSnapshot& snapshot, std::string_view engine,
                                    const std::vector<BackupFile>& files, TimePoint created_at,
                                    std::ostream& out) {
  BackupSummary summary;
  summary.engine = std::string(engine);
  summary.schema_version = snapshot.schema_version();
  LineWriter w(out);
  w.Write({{"format", kFormat},
           {"version", kFormatVersion},
           {"engine", summary.engine},
           {"schema_version", summary.schema_version},
           {"created_at", FormatRfc3339(created_at)}});
  ASSIGN_OR_RETURN(std::vector<std::string> tables, snapshot.Tables());
  for (const std::string& table : tables) {
    std::vector<std::string> columns;
    int64_t& count = summary.rows[table];
    bool header_written = false;
    RETURN_IF_ERROR(snapshot.Scan(table, &columns, [&](const SqlRow& row) {
      if (!header_written) {
        w.Write({{"table", table}, {"columns", columns}});
        header_written = true;
      }
      json values = json::array();
      for (const SqlValue& v : row) values.push_back(ValueJson(v));
      w.Write({{"row", std::move(values)}});
      ++count;
      return out.good() ? Status::Ok() : UnavailableError("cannot write the backup file");
    }));
    if (!header_written) w.Write({{"table", table}, {"columns", columns}});
  }
  for (const BackupFile& f : files) {
    if (!SafeBackupPath(f.path)) return InternalError("refusing to back up file path " + f.path);
    w.Write({{"file", f.path}, {"b64", crypto::Base64Encode(crypto::AsBytes(f.content))}});
    ++summary.files;
  }
  w.Write({{"end", {{"rows", summary.rows}, {"files", summary.files}, {"sha256", w.Digest()}}}}, false);
  out.flush();
  if (!out.good()) return UnavailableError("cannot write the backup file");
  return summary;
}

StatusOr<BackupSummary> VerifyBackup(std::istream& in, int latest_schema_version) {
  return ReadBackup(in, latest_schema_version, Handlers{});
}

StatusOr<BackupSummary> RestoreBackup(
    std::istream& in, const std::function<StatusOr<std::unique_ptr<SqlLoader>>(int schema_version)>& open_loader,
    const std::function<Status(const std::vector<BackupFile>&)>& file_sink) {
  std::unique_ptr<SqlLoader> loader;
  std::vector<BackupFile> files;
  Handlers h;
  h.header = [&](const BackupSummary& header) -> Status {
    ASSIGN_OR_RETURN(loader, open_loader(header.schema_version));
    return Status::Ok();
  };
  h.row = [&](const std::string& table, const std::vector<std::string>& columns, const SqlRow& row) {
    return loader->Insert(table, columns, row);
  };
  h.file = [&](BackupFile f) {
    files.push_back(std::move(f));
    return Status::Ok();
  };
  // Only once the trailer checked out: commit, then the files.
  h.end = [&]() -> Status {
    RETURN_IF_ERROR(loader->Commit());
    return file_sink(files);
  };
  return ReadBackup(in, /*latest_schema_version=*/1 << 30, h);
}

}  // namespace concierge::store
