#include "backends/pkcs11/pkcs11_uri.h"

#include <charconv>
#include <set>
#include <utility>
#include <vector>

namespace concierge::backends::pkcs11 {
namespace {

constexpr std::string_view kScheme = "pkcs11:";
constexpr size_t kMaxUriLength = 4096;

bool IsUnreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

// pk11-res-avail: sub-delimiters RFC 7512 allows unescaped in both parts.
bool IsResAvail(unsigned char c) {
  return std::string_view(":[]@!$'()*+,=").find(static_cast<char>(c)) != std::string_view::npos;
}

bool AllowedRaw(unsigned char c, bool in_query) {
  if (IsUnreserved(c) || IsResAvail(c)) return true;
  if (in_query) return c == '/' || c == '?' || c == '|' || c == ';';
  return c == '&';
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes one attribute value. Errors name the attribute only.
StatusOr<std::string> Decode(std::string_view name, std::string_view raw, bool in_query) {
  std::string out;
  out.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(raw[i]);
    if (c == '%') {
      int hi = i + 2 < raw.size() ? HexValue(raw[i + 1]) : -1;
      int lo = i + 2 < raw.size() ? HexValue(raw[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return InvalidArgumentError("PKCS#11 URI attribute '" + std::string(name) +
                                    "' has a malformed percent-encoding");
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
      continue;
    }
    if (!AllowedRaw(c, in_query)) {
      return InvalidArgumentError("PKCS#11 URI attribute '" + std::string(name) +
                                  "' contains a character that must be percent-encoded");
    }
    out.push_back(static_cast<char>(c));
  }
  return out;
}

std::string Encode(std::string_view value, bool in_query) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : value) {
    // Keep '/' readable in module paths; escape the rest of the delimiters.
    bool raw = IsUnreserved(c) || c == ':' || c == '@' || c == '!' || c == '$' || c == '\'' || c == '(' ||
               c == ')' || c == '*' || c == '+' || c == ',' || (in_query && c == '/');
    if (raw) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    parts.push_back(s.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return parts;
}

bool IsIgnoredPathAttribute(std::string_view name) {
  // Library and slot descriptors: valid RFC 7512 attributes we do not select on.
  return name == "library-manufacturer" || name == "library-description" || name == "library-version" ||
         name == "slot-manufacturer" || name == "slot-description";
}

}  // namespace

Pkcs11Uri Pkcs11Uri::Clone() const {
  Pkcs11Uri c;
  static_cast<Pkcs11UriAttributes&>(c) = *this;
  if (pin_value) c.pin_value = pin_value->Clone();
  return c;
}

bool Pkcs11Uri::HasTokenSelector() const {
  return !token.empty() || !manufacturer.empty() || !serial.empty() || !model.empty() || slot_id.has_value();
}

StatusOr<Pkcs11Uri> ParsePkcs11Uri(std::string_view uri) {
  if (uri.size() > kMaxUriLength) return InvalidArgumentError("PKCS#11 URI is longer than 4096 characters");
  if (uri.size() < kScheme.size()) return InvalidArgumentError("not a PKCS#11 URI: it must start with 'pkcs11:'");
  for (size_t i = 0; i < kScheme.size(); ++i) {
    char c = uri[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kScheme[i]) return InvalidArgumentError("not a PKCS#11 URI: it must start with 'pkcs11:'");
  }
  std::string_view rest = uri.substr(kScheme.size());
  size_t q = rest.find('?');
  std::string_view path = rest.substr(0, q);
  std::string_view query = q == std::string_view::npos ? std::string_view() : rest.substr(q + 1);
  if (rest.find('#') != std::string_view::npos) {
    return InvalidArgumentError("PKCS#11 URI must not contain a fragment ('#')");
  }

  Pkcs11Uri out;
  std::set<std::string, std::less<>> seen;
  auto take = [&](std::string_view part, bool in_query) -> Status {
    size_t eq = part.find('=');
    if (part.empty()) return InvalidArgumentError("PKCS#11 URI has an empty attribute");
    if (eq == std::string_view::npos || eq == 0) {
      // Not echoed: a mistyped URI may have a PIN where a name should be.
      return InvalidArgumentError("PKCS#11 URI has an attribute that is not of the form name=value");
    }
    std::string_view name = part.substr(0, eq);
    for (char ch : name) {
      if (!IsUnreserved(static_cast<unsigned char>(ch))) {
        return InvalidArgumentError("PKCS#11 URI has a malformed attribute name");
      }
    }
    std::string_view raw = part.substr(eq + 1);
    if (!seen.emplace(name).second) {
      return InvalidArgumentError("PKCS#11 URI attribute '" + std::string(name) + "' appears more than once");
    }
    if (name.starts_with("x-")) return Status::Ok();  // vendor extension: ignored
    auto decoded = Decode(name, raw, in_query);
    if (!decoded.ok()) return decoded.status();
    std::string value = std::move(decoded).value();
    auto nonempty = [&]() -> Status {
      if (value.empty()) return InvalidArgumentError("PKCS#11 URI attribute '" + std::string(name) + "' is empty");
      return Status::Ok();
    };
    if (!in_query) {
      if (name == "token") {
        out.token = std::move(value);
      } else if (name == "manufacturer") {
        out.manufacturer = std::move(value);
      } else if (name == "serial") {
        out.serial = std::move(value);
      } else if (name == "model") {
        out.model = std::move(value);
      } else if (name == "object") {
        out.object = std::move(value);
      } else if (name == "id") {
        RETURN_IF_ERROR(nonempty());
        out.id = Bytes(value.begin(), value.end());
      } else if (name == "type") {
        if (value != "private" && value != "public" && value != "cert" && value != "secret-key" && value != "data") {
          return InvalidArgumentError(
              "PKCS#11 URI attribute 'type' must be private, public, cert, secret-key or data");
        }
        out.type = std::move(value);
      } else if (name == "slot-id") {
        uint64_t v = 0;
        auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
        if (value.empty() || ec != std::errc() || ptr != value.data() + value.size()) {
          return InvalidArgumentError("PKCS#11 URI attribute 'slot-id' must be a decimal number");
        }
        out.slot_id = v;
      } else if (!IsIgnoredPathAttribute(name)) {
        return InvalidArgumentError("PKCS#11 URI has an unknown path attribute '" + std::string(name) + "'");
      }
    } else {
      if (name == "module-path") {
        RETURN_IF_ERROR(nonempty());
        out.module_path = std::move(value);
      } else if (name == "module-name") {
        RETURN_IF_ERROR(nonempty());
        out.module_name = std::move(value);
      } else if (name == "pin-source") {
        RETURN_IF_ERROR(nonempty());
        out.pin_source = std::move(value);
      } else if (name == "pin-value") {
        out.pin_value = SecretBytes::FromString(value, SecretAccess::Grant());
        std::fill(value.begin(), value.end(), '\0');
      } else {
        return InvalidArgumentError("PKCS#11 URI has an unknown query attribute '" + std::string(name) + "'");
      }
    }
    return Status::Ok();
  };

  if (!path.empty()) {
    for (std::string_view part : Split(path, ';')) RETURN_IF_ERROR(take(part, false));
  }
  if (q != std::string_view::npos) {
    if (query.empty()) return InvalidArgumentError("PKCS#11 URI has an empty query after '?'");
    for (std::string_view part : Split(query, '&')) RETURN_IF_ERROR(take(part, true));
  }
  if (!out.pin_source.empty() && out.pin_value) {
    return InvalidArgumentError("PKCS#11 URI must not set both pin-source and pin-value");
  }
  return out;
}

std::string FormatPkcs11Uri(const Pkcs11Uri& uri) {
  std::vector<std::string> path;
  if (!uri.token.empty()) path.push_back("token=" + Encode(uri.token, false));
  if (!uri.manufacturer.empty()) path.push_back("manufacturer=" + Encode(uri.manufacturer, false));
  if (!uri.serial.empty()) path.push_back("serial=" + Encode(uri.serial, false));
  if (!uri.model.empty()) path.push_back("model=" + Encode(uri.model, false));
  if (uri.slot_id) path.push_back("slot-id=" + std::to_string(*uri.slot_id));
  if (!uri.object.empty()) path.push_back("object=" + Encode(uri.object, false));
  if (uri.id) path.push_back("id=" + Pkcs11PercentEncodeAll(*uri.id));
  if (!uri.type.empty()) path.push_back("type=" + uri.type);
  std::vector<std::string> query;
  if (!uri.module_path.empty()) query.push_back("module-path=" + Encode(uri.module_path, true));
  if (!uri.module_name.empty()) query.push_back("module-name=" + Encode(uri.module_name, true));
  if (!uri.pin_source.empty()) query.push_back("pin-source=" + Encode(uri.pin_source, true));
  // pin-value deliberately never written.
  std::string out(kScheme);
  for (size_t i = 0; i < path.size(); ++i) out += (i ? ";" : "") + path[i];
  for (size_t i = 0; i < query.size(); ++i) out += (i ? "&" : "?") + query[i];
  return out;
}

std::string Pkcs11PercentEncode(std::string_view value) { return Encode(value, false); }

std::string Pkcs11PercentEncodeAll(ByteView value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(value.size() * 3);
  for (uint8_t c : value) {
    out.push_back('%');
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  }
  return out;
}

}  // namespace concierge::backends::pkcs11
