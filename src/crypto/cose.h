// COSE_Sign1 (RFC 9052) for C2PA claim signatures, with a minimal deterministic
// CBOR encoder (RFC 8949 §4.2.1: shortest-form heads, definite lengths) for
// exactly what COSE_Sign1 needs. Pure functions; thread-safe.
//
// Layout produced:
//   COSE_Sign1_Tagged = #6.18([ protected: bstr .cbor {1: alg, 33: x5chain},
//                               unprotected: {}, payload: bstr / nil, signature: bstr ])
// x5chain (RFC 9360) is a single bstr for one certificate, else an array of
// bstr, end-entity first. The signature is over
//   Sig_structure = ["Signature1", protected, external_aad, payload]
// ECDSA signatures are the fixed-width r||s form COSE requires.
#ifndef CONCIERGE_CRYPTO_COSE_H_
#define CONCIERGE_CRYPTO_COSE_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "concierge/algorithm.h"
#include "concierge/key_backend.h"

namespace concierge::crypto {

// Appends CBOR items to a buffer. Maps must be written with their keys already
// in deterministic order (the caller's job; COSE headers here are tiny).
class CborWriter {
 public:
  CborWriter& Uint(uint64_t v);
  CborWriter& Int(int64_t v);
  CborWriter& Bstr(ByteView b);
  CborWriter& Tstr(std::string_view s);
  CborWriter& Array(uint64_t n);  // header only; then n items
  CborWriter& Map(uint64_t pairs);  // header only; then 2*pairs items
  CborWriter& Tag(uint64_t tag);
  CborWriter& Null();
  const Bytes& bytes() const { return out_; }
  Bytes Take() { return std::move(out_); }

 private:
  void Head(uint8_t major, uint64_t value);
  Bytes out_;
};

// The serialized protected header map (wrap it in a bstr when embedding).
Bytes CoseProtectedHeader(Algorithm alg, const std::vector<Bytes>& x5chain_der);
// Sig_structure for COSE_Sign1 with empty external_aad. For a detached payload
// the payload is still the real bytes (RFC 9052 §4.4).
Bytes CoseSigStructure(ByteView protected_header, ByteView payload);
// COSE_Sign1_Tagged; `detached` writes nil instead of the payload.
Bytes CoseSign1Tagged(ByteView protected_header, ByteView payload, bool detached, ByteView signature);

}  // namespace concierge::crypto

#endif  // CONCIERGE_CRYPTO_COSE_H_
