// The canonical byte form of an audit record: what its Merkle leaf hashes.
//
// An entry serialises to one line of JSON with the keys in byte order, no
// spaces, integers only, UTF-8 kept as is (not \u-escaped):
//
//   {"action":"sign.digest","actor":"3f2a...","client":"127.0.0.1:50412",
//    "detail":{...},"index":17,"outcome":"success","policy_hash":"ab12...",
//    "request_id":"req_...","target":"acme-news-v1-...","tenant":"acme-news",
//    "time_ms":1732362000123,"v":1}
//
// which is exactly Python's json.dumps(obj, sort_keys=True,
// separators=(",", ":"), ensure_ascii=False), so an auditor can recompute any
// leaf without our code (docs/audit.md). `detail` is embedded verbatim from
// AuditRecord::detail_json, which the writer always produces in that same
// canonical form. The index is part of the entry, so moving an entry to
// another position changes its leaf even if the tree were rebuilt.
//
// The JSON helpers convert records, checkpoints and keys to and from the
// shapes used by the REST API and export files. Pure functions; thread-safe.
#ifndef CONCIERGE_AUDIT_ENTRY_H_
#define CONCIERGE_AUDIT_ENTRY_H_

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

#include "concierge/audit.h"
#include "concierge/status.h"

namespace concierge::audit {

inline constexpr int kEntryFormatVersion = 1;

// Canonical entry bytes (see above).
std::string SerializeEntry(const AuditRecord& record);
// LeafHash(SerializeEntry(record)).
AuditHash EntryLeafHash(const AuditRecord& record);

// Appends `value` as a JSON string literal in the canonical escaping:
// \" \\ \b \f \n \r \t, other control characters as \u00xx, everything else
// raw. `value` must be valid UTF-8 (see SanitizeField).
void AppendJsonString(std::string& out, std::string_view value);
// Canonical text of a JSON object (sorted keys, compact, invalid UTF-8
// replaced by U+FFFD). InvalidArgument for non-objects and for floating-point
// numbers anywhere inside (their text form differs between implementations).
StatusOr<std::string> CanonicalDetail(const nlohmann::json& detail);

// Valid UTF-8 (each invalid byte becomes '?'), cut to at most `max_bytes`
// without splitting a character. Fields come partly from requests (paths,
// ids), and what is stored must be exactly what was hashed.
std::string SanitizeField(std::string_view value, size_t max_bytes = 256);

// REST / export shape of a record:
// {"index","time","time_ms","actor","tenant_id","action","target","outcome",
//  "request_id","client_address","policy_hash","detail":{...},"leaf_hash":hex}
nlohmann::json RecordToJson(const AuditRecord& record);
// Inverse; InvalidArgument naming the field on anything missing or mistyped.
// leaf_hash is optional (left zero when absent).
StatusOr<AuditRecord> RecordFromJson(const nlohmann::json& j);

// {"id","tree_size","root_hash":hex,"timestamp","timestamp_ms","key_id",
//  "note","signature":base64}
nlohmann::json CheckpointToJson(const AuditCheckpointRecord& checkpoint);
StatusOr<AuditCheckpointRecord> CheckpointFromJson(const nlohmann::json& j);

// {"key_id","origin","algorithm","public_key_pem","created_at"}; never the URI.
nlohmann::json AuditKeyToJson(const AuditKeyRecord& key);
StatusOr<AuditKeyRecord> AuditKeyFromJson(const nlohmann::json& j);

}  // namespace concierge::audit

#endif  // CONCIERGE_AUDIT_ENTRY_H_
