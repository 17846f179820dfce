// Hex and base64 encodings used by the API. Pure functions; thread-safe.
#ifndef CONCIERGE_CRYPTO_ENCODING_H_
#define CONCIERGE_CRYPTO_ENCODING_H_

#include <string>
#include <string_view>

#include "concierge/key_backend.h"  // Bytes, ByteView
#include "concierge/status.h"

namespace concierge::crypto {

std::string HexEncode(ByteView bytes);  // lowercase
// Accepts upper or lower case; InvalidArgument on odd length or a non-hex char.
StatusOr<Bytes> HexDecode(std::string_view hex);

std::string Base64Encode(ByteView bytes);  // standard alphabet, padded
// Accepts standard base64 with or without padding; rejects anything else.
StatusOr<Bytes> Base64Decode(std::string_view b64);
std::string Base64UrlEncode(ByteView bytes);  // no padding

inline ByteView AsBytes(std::string_view s) {
  return ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}
inline std::string AsString(ByteView b) { return std::string(b.begin(), b.end()); }

// &, <, >, " and ' replaced by entities: safe in HTML element text and in
// quoted attribute values (evidence statements, incident reports).
std::string HtmlEscape(std::string_view s);

}  // namespace concierge::crypto

#endif  // CONCIERGE_CRYPTO_ENCODING_H_
