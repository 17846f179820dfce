#include "crypto/encoding.h"

#include <array>
#include <cstdint>

namespace concierge::crypto {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";
constexpr char kB64Std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kB64Url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Reverse table for the standard alphabet; -1 marks bytes that are not base64.
constexpr std::array<int8_t, 256> MakeB64Table() {
  std::array<int8_t, 256> t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 64; ++i) t[static_cast<uint8_t>(kB64Std[i])] = static_cast<int8_t>(i);
  return t;
}
constexpr std::array<int8_t, 256> kB64Table = MakeB64Table();

std::string Base64EncodeWith(ByteView bytes, const char* alphabet, bool pad) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  // Whole groups are written by index (see HexEncode); the tail appends.
  out.resize(bytes.size() / 3 * 4);
  char* p = out.data();
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = (uint32_t{bytes[i]} << 16) | (uint32_t{bytes[i + 1]} << 8) | bytes[i + 2];
    *p++ = alphabet[(v >> 18) & 63];
    *p++ = alphabet[(v >> 12) & 63];
    *p++ = alphabet[(v >> 6) & 63];
    *p++ = alphabet[v & 63];
  }
  size_t rest = bytes.size() - i;
  if (rest == 1) {
    uint32_t v = uint32_t{bytes[i]} << 16;
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    if (pad) out.append("==");
  } else if (rest == 2) {
    uint32_t v = (uint32_t{bytes[i]} << 16) | (uint32_t{bytes[i + 1]} << 8);
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(alphabet[(v >> 6) & 63]);
    if (pad) out.push_back('=');
  }
  return out;
}

}  // namespace

// Sized once and written by index: per-character push_back is an out-of-line
// call that showed up in the durable sign path's profile (digests, ids).
std::string HexEncode(ByteView bytes) {
  std::string out(bytes.size() * 2, '\0');
  char* p = out.data();
  for (uint8_t b : bytes) {
    *p++ = kHexDigits[b >> 4];
    *p++ = kHexDigits[b & 15];
  }
  return out;
}

StatusOr<Bytes> HexDecode(std::string_view hex) {
  if (hex.size() % 2 != 0) return InvalidArgumentError("hex string has odd length");
  Bytes out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = HexValue(hex[i]);
    int lo = HexValue(hex[i + 1]);
    // The position is safe to report; the offending character could be part of
    // a secret the caller mis-encoded, so it is not echoed.
    if (hi < 0 || lo < 0) {
      return InvalidArgumentError("invalid hex character at offset " +
                                  std::to_string(hi < 0 ? i : i + 1));
    }
    out.push_back(static_cast<uint8_t>((hi << 4) | lo));
  }
  return out;
}

std::string Base64Encode(ByteView bytes) { return Base64EncodeWith(bytes, kB64Std, true); }

std::string Base64UrlEncode(ByteView bytes) { return Base64EncodeWith(bytes, kB64Url, false); }

StatusOr<Bytes> Base64Decode(std::string_view b64) {
  size_t len = b64.size();
  size_t padding = 0;
  while (len > 0 && b64[len - 1] == '=' && padding < 2) {
    --len;
    ++padding;
  }
  // With padding the total must be a multiple of 4; without it, a remainder of
  // 1 can never be produced by an encoder.
  if (padding > 0 && b64.size() % 4 != 0) return InvalidArgumentError("invalid base64 padding");
  if (len % 4 == 1) return InvalidArgumentError("invalid base64 length");
  Bytes out;
  out.reserve(len * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < len; ++i) {
    int8_t v = kB64Table[static_cast<uint8_t>(b64[i])];
    if (v < 0)
      return InvalidArgumentError("invalid base64 character at offset " + std::to_string(i));
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>((acc >> bits) & 0xff));
    }
  }
  // Non-canonical encodings (stray low bits in the last symbol) are rejected so
  // one byte string has exactly one accepted spelling.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
    return InvalidArgumentError("non-canonical base64 encoding");
  }
  return out;
}

std::string HtmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace concierge::crypto
