#include "crypto/cose.h"

namespace concierge::crypto {
namespace {

constexpr uint8_t kMajorUint = 0;
constexpr uint8_t kMajorNint = 1;
constexpr uint8_t kMajorBstr = 2;
constexpr uint8_t kMajorTstr = 3;
constexpr uint8_t kMajorArray = 4;
constexpr uint8_t kMajorMap = 5;
constexpr uint8_t kMajorTag = 6;

constexpr int64_t kHeaderAlg = 1;
constexpr int64_t kHeaderX5Chain = 33;  // RFC 9360
constexpr uint64_t kTagCoseSign1 = 18;

}  // namespace

void CborWriter::Head(uint8_t major, uint64_t value) {
  const uint8_t m = static_cast<uint8_t>(major << 5);
  // Shortest form is what makes the encoding deterministic.
  if (value < 24) {
    out_.push_back(static_cast<uint8_t>(m | value));
    return;
  }
  int bytes;
  uint8_t info;
  if (value <= 0xff) {
    bytes = 1, info = 24;
  } else if (value <= 0xffff) {
    bytes = 2, info = 25;
  } else if (value <= 0xffffffffULL) {
    bytes = 4, info = 26;
  } else {
    bytes = 8, info = 27;
  }
  out_.push_back(static_cast<uint8_t>(m | info));
  for (int i = bytes - 1; i >= 0; --i) out_.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

CborWriter& CborWriter::Uint(uint64_t v) {
  Head(kMajorUint, v);
  return *this;
}

CborWriter& CborWriter::Int(int64_t v) {
  if (v >= 0) {
    Head(kMajorUint, static_cast<uint64_t>(v));
  } else {
    // CBOR negative integers encode -1 - v; written this way it cannot overflow.
    Head(kMajorNint, static_cast<uint64_t>(-(v + 1)));
  }
  return *this;
}

CborWriter& CborWriter::Bstr(ByteView b) {
  Head(kMajorBstr, b.size());
  out_.insert(out_.end(), b.begin(), b.end());
  return *this;
}

CborWriter& CborWriter::Tstr(std::string_view s) {
  Head(kMajorTstr, s.size());
  out_.insert(out_.end(), s.begin(), s.end());
  return *this;
}

CborWriter& CborWriter::Array(uint64_t n) {
  Head(kMajorArray, n);
  return *this;
}

CborWriter& CborWriter::Map(uint64_t pairs) {
  Head(kMajorMap, pairs);
  return *this;
}

CborWriter& CborWriter::Tag(uint64_t tag) {
  Head(kMajorTag, tag);
  return *this;
}

CborWriter& CborWriter::Null() {
  out_.push_back(0xf6);
  return *this;
}

Bytes CoseProtectedHeader(Algorithm alg, const std::vector<Bytes>& x5chain_der) {
  CborWriter w;
  // Keys 1 and 33 encode as 0x01 and 0x18 0x21: already in deterministic order.
  w.Map(x5chain_der.empty() ? 1 : 2);
  w.Int(kHeaderAlg).Int(CoseAlgorithmId(alg));
  if (!x5chain_der.empty()) {
    w.Int(kHeaderX5Chain);
    if (x5chain_der.size() == 1) {
      w.Bstr(x5chain_der.front());
    } else {
      w.Array(x5chain_der.size());
      for (const Bytes& der : x5chain_der) w.Bstr(der);
    }
  }
  return w.Take();
}

Bytes CoseSigStructure(ByteView protected_header, ByteView payload) {
  CborWriter w;
  w.Array(4).Tstr("Signature1").Bstr(protected_header).Bstr(ByteView()).Bstr(payload);
  return w.Take();
}

Bytes CoseSign1Tagged(ByteView protected_header, ByteView payload, bool detached, ByteView signature) {
  CborWriter w;
  w.Tag(kTagCoseSign1).Array(4).Bstr(protected_header).Map(0);
  if (detached) {
    w.Null();
  } else {
    w.Bstr(payload);
  }
  w.Bstr(signature);
  return w.Take();
}

}  // namespace concierge::crypto
