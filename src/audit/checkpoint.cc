#include "audit/checkpoint.h"

#include <charconv>
#include <limits>
#include <string>
#include <vector>

#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/signature.h"

namespace concierge::audit {
namespace {

constexpr size_t kMaxOriginLength = 255;
constexpr std::string_view kTimestampPrefix = "timestamp-ms ";

Status CheckOrigin(std::string_view origin) {
  if (origin.empty()) return FieldError("origin", "checkpoint origin is empty");
  if (origin.size() > kMaxOriginLength) {
    return FieldError("origin", "checkpoint origin is longer than 255 bytes");
  }
  for (char c : origin) {
    // Printable ASCII only: a newline would forge extra note lines, and
    // non-ASCII would let visually equal origins differ byte-wise.
    if (c < 0x20 || c > 0x7e) {
      return FieldError("origin", "checkpoint origin has a non-printable character");
    }
  }
  if (origin.front() == ' ' || origin.back() == ' ') {
    return FieldError("origin", "checkpoint origin has leading or trailing spaces");
  }
  return Status::Ok();
}

// Canonical unsigned decimal: digits only, no leading zeros except "0".
StatusOr<uint64_t> ParseCanonicalDecimal(std::string_view text, std::string_view what) {
  const std::string field(what);
  if (text.empty()) return FieldError(field, field + " is empty");
  if (text.size() > 1 && text.front() == '0') {
    return FieldError(field, field + " has leading zeros");
  }
  for (char c : text) {
    if (c < '0' || c > '9') return FieldError(field, field + " is not a decimal number");
  }
  uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size()) {
    return FieldError(field, field + " is out of range");
  }
  return value;
}

// Splits into lines that each end in '\n'; InvalidArgument on a missing final
// newline (a truncated note must not parse).
StatusOr<std::vector<std::string_view>> SplitLines(std::string_view note) {
  std::vector<std::string_view> lines;
  while (!note.empty()) {
    size_t end = note.find('\n');
    if (end == std::string_view::npos) {
      return InvalidArgumentError("checkpoint note does not end with a newline");
    }
    lines.push_back(note.substr(0, end));
    note.remove_prefix(end + 1);
  }
  return lines;
}

}  // namespace

StatusOr<std::string> SerializeCheckpoint(const Checkpoint& checkpoint) {
  RETURN_IF_ERROR(CheckOrigin(checkpoint.origin));
  const int64_t millis = checkpoint.timestamp.time_since_epoch().count();
  if (millis < 0) return FieldError("timestamp", "checkpoint timestamp is before 1970");
  std::string note;
  note.reserve(checkpoint.origin.size() + 96);
  note += checkpoint.origin;
  note += '\n';
  note += std::to_string(checkpoint.tree_size);
  note += '\n';
  note += crypto::Base64Encode(AsByteView(checkpoint.root_hash));
  note += '\n';
  note += kTimestampPrefix;
  note += std::to_string(millis);
  note += '\n';
  return note;
}

StatusOr<Checkpoint> ParseCheckpoint(std::string_view note) {
  ASSIGN_OR_RETURN(std::vector<std::string_view> lines, SplitLines(note));
  if (lines.size() != 4) {
    return InvalidArgumentError("checkpoint note must have 4 lines, has " +
                                std::to_string(lines.size()));
  }
  Checkpoint cp;
  RETURN_IF_ERROR(CheckOrigin(lines[0]));
  cp.origin = std::string(lines[0]);
  ASSIGN_OR_RETURN(cp.tree_size, ParseCanonicalDecimal(lines[1], "tree_size"));

  ASSIGN_OR_RETURN(Bytes root, crypto::Base64Decode(lines[2]));
  ASSIGN_OR_RETURN(cp.root_hash, HashFromBytes(root));
  // Base64Decode is lenient (padding optional); require the exact encoding
  // SerializeCheckpoint writes so each checkpoint has one byte form.
  if (crypto::Base64Encode(root) != lines[2]) {
    return FieldError("root_hash", "root hash is not canonical padded base64");
  }

  std::string_view ts = lines[3];
  if (!ts.starts_with(kTimestampPrefix)) {
    return FieldError("timestamp", "fourth line must be 'timestamp-ms <millis>'");
  }
  ts.remove_prefix(kTimestampPrefix.size());
  ASSIGN_OR_RETURN(uint64_t millis, ParseCanonicalDecimal(ts, "timestamp"));
  if (millis > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return FieldError("timestamp", "timestamp is out of range");
  }
  cp.timestamp = CheckpointTime(std::chrono::milliseconds(static_cast<int64_t>(millis)));
  return cp;
}

StatusOr<SignedCheckpoint> SignCheckpoint(const Checkpoint& checkpoint, Algorithm alg,
                                          const DigestSigner& signer) {
  if (!signer) return InvalidArgumentError("no checkpoint signer configured");
  SignedCheckpoint out;
  ASSIGN_OR_RETURN(out.note, SerializeCheckpoint(checkpoint));
  const Bytes digest = crypto::DigestFor(alg, crypto::AsBytes(out.note));
  StatusOr<Bytes> signature = signer(digest);
  if (!signature.ok()) return signature.status().Annotate("signing audit checkpoint");
  if (signature->empty()) return InternalError("checkpoint signer returned an empty signature");
  out.signature = std::move(signature).value();
  return out;
}

StatusOr<Checkpoint> VerifyCheckpoint(const SignedCheckpoint& signed_checkpoint,
                                      EVP_PKEY* public_key, Algorithm alg) {
  if (public_key == nullptr) return InvalidArgumentError("no checkpoint public key");
  // Signature first: nothing from an unauthenticated note should be trusted,
  // not even enough to produce a detailed parse error.
  const Bytes digest = crypto::DigestFor(alg, crypto::AsBytes(signed_checkpoint.note));
  RETURN_IF_ERROR(crypto::VerifyDigest(public_key, alg, digest, signed_checkpoint.signature));
  return ParseCheckpoint(signed_checkpoint.note);
}

}  // namespace concierge::audit
