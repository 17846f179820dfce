#include "audit/entry.h"

#include <chrono>
#include <cstdio>

#include "audit/merkle.h"
#include "crypto/encoding.h"

namespace concierge::audit {
namespace {

using json = nlohmann::json;

int64_t Millis(TimePoint t) {
  return std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
TimePoint FromMillis(int64_t ms) {
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(std::chrono::milliseconds(ms)));
}

// Length of the valid UTF-8 sequence starting at s[i], or 0 if invalid
// (overlong forms, surrogates and code points above U+10FFFF are invalid).
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t len = 0;
  uint32_t cp = 0;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
    cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((b(i + k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3f);
  }
  if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) {
    return 0;
  }
  return len;
}

Status CheckNoFloats(const json& j, const std::string& where) {
  if (j.is_number_float()) return FieldError("detail", "detail." + where + " is a floating-point number");
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) RETURN_IF_ERROR(CheckNoFloats(v, where.empty() ? k : where + "." + k));
  } else if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i) RETURN_IF_ERROR(CheckNoFloats(j[i], where + "[" + std::to_string(i) + "]"));
  }
  return Status::Ok();
}

StatusOr<std::string> RequiredString(const json& j, const char* field) {
  auto it = j.find(field);
  if (it == j.end() || !it->is_string()) return FieldError(field, std::string("'") + field + "' must be a string");
  return it->get<std::string>();
}

StatusOr<int64_t> RequiredInt(const json& j, const char* field) {
  auto it = j.find(field);
  if (it == j.end() || !it->is_number_integer()) {
    return FieldError(field, std::string("'") + field + "' must be an integer");
  }
  return it->get<int64_t>();
}

StatusOr<AuditHash> HexHashField(const json& j, const char* field) {
  ASSIGN_OR_RETURN(std::string hex, RequiredString(j, field));
  auto bytes = crypto::HexDecode(hex);
  if (!bytes.ok() || bytes->size() != kAuditHashSize) {
    return FieldError(field, std::string("'") + field + "' must be 64 hex characters");
  }
  AuditHash h;
  std::copy(bytes->begin(), bytes->end(), h.begin());
  return h;
}

}  // namespace

void AppendJsonString(std::string& out, std::string_view value) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  // Runs of bytes that need no escape are appended whole: this serialises
  // every audit record on the ledger writer thread, and a push_back per byte
  // was the largest single symbol of our own code in its profile.
  size_t run = 0;
  for (size_t i = 0; i < value.size(); ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(value.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        out += "\\u00";
        out.push_back(kHex[c >> 4]);
        out.push_back(kHex[c & 0xf]);
    }
  }
  out.append(value.data() + run, value.size() - run);
  out.push_back('"');
}

std::string SerializeEntry(const AuditRecord& r) {
  std::string out;
  out.reserve(256 + r.detail_json.size() + r.policy_hash.size() + r.target.size());
  auto text = [&out](std::string_view key, std::string_view value) {
    out.append(key);
    AppendJsonString(out, value);
  };
  // Keys in byte order; see the header.
  text("{\"action\":", r.action);
  text(",\"actor\":", r.actor);
  text(",\"client\":", r.client_address);
  out += ",\"detail\":";
  out += r.detail_json.empty() ? "{}" : r.detail_json;
  out += ",\"index\":" + std::to_string(r.index);
  text(",\"outcome\":", r.outcome);
  text(",\"policy_hash\":", r.policy_hash);
  text(",\"request_id\":", r.request_id);
  text(",\"target\":", r.target);
  text(",\"tenant\":", r.tenant_id);
  out += ",\"time_ms\":" + std::to_string(Millis(r.time));
  out += ",\"v\":" + std::to_string(kEntryFormatVersion) + "}";
  return out;
}

AuditHash EntryLeafHash(const AuditRecord& record) {
  return LeafHash(crypto::AsBytes(SerializeEntry(record)));
}

StatusOr<std::string> CanonicalDetail(const json& detail) {
  if (!detail.is_object()) return FieldError("detail", "detail must be a JSON object");
  RETURN_IF_ERROR(CheckNoFloats(detail, ""));
  // nlohmann keeps object keys sorted (std::map) and escapes like
  // AppendJsonString; dump(-1) is compact.
  return detail.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string SanitizeField(std::string_view value, size_t max_bytes) {
  std::string out;
  out.reserve(std::min(value.size(), max_bytes));
  size_t i = 0;
  while (i < value.size()) {
    size_t len = Utf8SequenceLength(value, i);
    if (len == 0) {
      if (out.size() + 1 > max_bytes) break;
      out.push_back('?');
      ++i;
      continue;
    }
    if (out.size() + len > max_bytes) break;
    out.append(value.substr(i, len));
    i += len;
  }
  return out;
}

json RecordToJson(const AuditRecord& r) {
  json detail = json::parse(r.detail_json.empty() ? "{}" : r.detail_json, nullptr, false);
  if (detail.is_discarded()) detail = r.detail_json;  // stored text was altered: show it as is
  return {{"index", r.index},
          {"time", FormatRfc3339(r.time)},
          {"time_ms", Millis(r.time)},
          {"actor", r.actor},
          {"tenant_id", r.tenant_id},
          {"action", r.action},
          {"target", r.target},
          {"outcome", r.outcome},
          {"request_id", r.request_id},
          {"client_address", r.client_address},
          {"policy_hash", r.policy_hash},
          {"detail", detail},
          {"leaf_hash", crypto::HexEncode(AsByteView(r.leaf_hash))}};
}

StatusOr<AuditRecord> RecordFromJson(const json& j) {
  if (!j.is_object()) return InvalidArgumentError("audit entry must be a JSON object");
  AuditRecord r;
  ASSIGN_OR_RETURN(r.index, RequiredInt(j, "index"));
  ASSIGN_OR_RETURN(int64_t ms, RequiredInt(j, "time_ms"));
  r.time = FromMillis(ms);
  ASSIGN_OR_RETURN(r.actor, RequiredString(j, "actor"));
  ASSIGN_OR_RETURN(r.tenant_id, RequiredString(j, "tenant_id"));
  ASSIGN_OR_RETURN(r.action, RequiredString(j, "action"));
  ASSIGN_OR_RETURN(r.target, RequiredString(j, "target"));
  ASSIGN_OR_RETURN(r.outcome, RequiredString(j, "outcome"));
  ASSIGN_OR_RETURN(r.request_id, RequiredString(j, "request_id"));
  ASSIGN_OR_RETURN(r.client_address, RequiredString(j, "client_address"));
  ASSIGN_OR_RETURN(r.policy_hash, RequiredString(j, "policy_hash"));
  auto detail = j.find("detail");
  if (detail == j.end()) return FieldError("detail", "'detail' is missing");
  if (detail->is_object()) {
    r.detail_json = detail->dump(-1, ' ', false, json::error_handler_t::replace);
  } else if (detail->is_string()) {
    r.detail_json = detail->get<std::string>();  // not an object: kept so its hash is recomputed faithfully
  } else {
    return FieldError("detail", "'detail' must be an object");
  }
  if (j.contains("leaf_hash")) {
    ASSIGN_OR_RETURN(r.leaf_hash, HexHashField(j, "leaf_hash"));
  }
  return r;
}

json CheckpointToJson(const AuditCheckpointRecord& c) {
  return {{"id", c.id},
          {"tree_size", c.tree_size},
          {"root_hash", crypto::HexEncode(AsByteView(c.root_hash))},
          {"timestamp", FormatRfc3339(c.timestamp)},
          {"timestamp_ms", Millis(c.timestamp)},
          {"key_id", c.key_id},
          {"note", c.note},
          {"signature", crypto::Base64Encode(c.signature)}};
}

StatusOr<AuditCheckpointRecord> CheckpointFromJson(const json& j) {
  if (!j.is_object()) return InvalidArgumentError("checkpoint must be a JSON object");
  AuditCheckpointRecord c;
  ASSIGN_OR_RETURN(c.id, RequiredInt(j, "id"));
  ASSIGN_OR_RETURN(c.tree_size, RequiredInt(j, "tree_size"));
  ASSIGN_OR_RETURN(c.root_hash, HexHashField(j, "root_hash"));
  ASSIGN_OR_RETURN(int64_t ms, RequiredInt(j, "timestamp_ms"));
  c.timestamp = FromMillis(ms);
  ASSIGN_OR_RETURN(c.key_id, RequiredString(j, "key_id"));
  ASSIGN_OR_RETURN(c.note, RequiredString(j, "note"));
  ASSIGN_OR_RETURN(std::string sig, RequiredString(j, "signature"));
  auto bytes = crypto::Base64Decode(sig);
  if (!bytes.ok() || bytes->empty()) return FieldError("signature", "'signature' must be non-empty base64");
  c.signature = *std::move(bytes);
  return c;
}

json AuditKeyToJson(const AuditKeyRecord& k) {
  return {{"key_id", k.key_id},
          {"origin", k.origin},
          {"algorithm", k.algorithm},
          {"public_key_pem", k.public_key_pem},
          {"created_at", FormatRfc3339(k.created_at)}};
}

StatusOr<AuditKeyRecord> AuditKeyFromJson(const json& j) {
  if (!j.is_object()) return InvalidArgumentError("audit key must be a JSON object");
  AuditKeyRecord k;
  ASSIGN_OR_RETURN(k.key_id, RequiredString(j, "key_id"));
  ASSIGN_OR_RETURN(k.origin, RequiredString(j, "origin"));
  ASSIGN_OR_RETURN(k.algorithm, RequiredString(j, "algorithm"));
  ASSIGN_OR_RETURN(k.public_key_pem, RequiredString(j, "public_key_pem"));
  if (auto it = j.find("created_at"); it != j.end() && it->is_string()) ParseRfc3339(*it, &k.created_at);
  return k;
}

}  // namespace concierge::audit
