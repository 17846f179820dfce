// Pkcs11Uri: an RFC 7512 "pkcs11:" URI naming a token, a key object and how to
// reach them (module path, PIN source).
//
// Path attributes select the token (token, manufacturer, serial, model, slot-id)
// and the object (object = CKA_LABEL, id = CKA_ID bytes, type). Query attributes
// name the module (module-path, module-name) and the PIN (pin-source, pin-value).
// Values are stored percent-decoded. pin-value is held only in SecretBytes and is
// never written by FormatPkcs11Uri, so a formatted URI is safe to store and show.
// Parse errors name the attribute, never echo the input (it may carry a PIN).
// Plain value type; thread-compatible.
#ifndef CONCIERGE_BACKENDS_PKCS11_PKCS11_URI_H_
#define CONCIERGE_BACKENDS_PKCS11_PKCS11_URI_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "concierge/key_backend.h"
#include "concierge/secret.h"
#include "concierge/status.h"

namespace concierge::backends::pkcs11 {

// The attributes that may be copied freely; pin-value is kept apart in
// Pkcs11Uri so Clone() never has to list fields.
struct Pkcs11UriAttributes {
  // Token selection (empty = any).
  std::string token;         // CK_TOKEN_INFO.label
  std::string manufacturer;  // CK_TOKEN_INFO.manufacturerID
  std::string serial;        // CK_TOKEN_INFO.serialNumber
  std::string model;         // CK_TOKEN_INFO.model
  std::optional<uint64_t> slot_id;
  // Object selection.
  std::string object;        // CKA_LABEL
  std::optional<Bytes> id;   // CKA_ID
  std::string type;          // "", "private", "public", "cert", "secret-key", "data"
  // Query attributes.
  std::string module_path;
  std::string module_name;
  std::string pin_source;    // file path or "file:" URI
};

struct Pkcs11Uri : Pkcs11UriAttributes {
  std::optional<SecretBytes> pin_value;

  Pkcs11Uri Clone() const;
  // True when any token-selecting attribute is set.
  bool HasTokenSelector() const;
};

// InvalidArgument on anything that is not a well-formed pkcs11: URI: wrong
// scheme, bad percent-encoding, unknown or repeated attribute, empty name, bad
// type or slot-id. Vendor attributes ("x-...") are accepted and ignored.
StatusOr<Pkcs11Uri> ParsePkcs11Uri(std::string_view uri);

// Canonical form (fixed attribute order, minimal percent-encoding). Never
// includes pin-value.
std::string FormatPkcs11Uri(const Pkcs11Uri& uri);

// Percent-encodes everything outside RFC 3986 unreserved characters and the
// few sub-delimiters RFC 7512 allows unescaped in both path and query.
std::string Pkcs11PercentEncode(std::string_view value);
// Always %XX-encodes every byte (the conventional form for "id").
std::string Pkcs11PercentEncodeAll(ByteView value);

}  // namespace concierge::backends::pkcs11

#endif  // CONCIERGE_BACKENDS_PKCS11_PKCS11_URI_H_
