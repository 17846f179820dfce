// Signed checkpoints: the log's commitment to "the first tree_size entries
// have root root_hash", signed by the service's audit key.
//
// The signed bytes are a text note modelled on the transparency-dev / C2SP
// checkpoint body, so auditors can read and check it with ordinary tools:
//
//   <origin>\n                 log name, printable ASCII, no spaces at ends
//   <tree_size>\n              decimal, no sign or leading zeros
//   <base64(root_hash)>\n      standard alphabet, padded (44 chars)
//   timestamp-ms <millis>\n    Unix time in milliseconds (RFC 6962 STH unit)
//
// Parsing accepts only that canonical form (one byte string per checkpoint),
// so a signature cannot be replayed over a differently formatted twin.
//
// Signing goes through a DigestSigner callback rather than an EVP_PKEY so the
// audit key can live in any KeyBackend (software, PKCS#11, cloud KMS). The
// signer receives DigestFor(alg, note) and returns a signature in the
// KeyBackend conventions (DER for ECDSA), which is what `openssl dgst -verify`
// accepts.
//
// All functions are thread-safe; the callback must be too if shared.
#ifndef CONCIERGE_AUDIT_CHECKPOINT_H_
#define CONCIERGE_AUDIT_CHECKPOINT_H_

#include <openssl/evp.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "audit/merkle.h"
#include "concierge/algorithm.h"
#include "concierge/key_backend.h"
#include "concierge/status.h"

namespace concierge::audit {

using CheckpointTime = std::chrono::sys_time<std::chrono::milliseconds>;

struct Checkpoint {
  std::string origin;
  uint64_t tree_size = 0;
  Hash root_hash{};
  CheckpointTime timestamp{};

  friend bool operator==(const Checkpoint&, const Checkpoint&) = default;
};

// The canonical note text. InvalidArgument if the origin is empty, longer
// than 255 bytes, has a non-printable byte or surrounding spaces, or the
// timestamp is before 1970.
StatusOr<std::string> SerializeCheckpoint(const Checkpoint& checkpoint);
// Inverse of SerializeCheckpoint; InvalidArgument on anything non-canonical.
StatusOr<Checkpoint> ParseCheckpoint(std::string_view note);

// Signs a digest of the bytes it is given; see the header comment.
using DigestSigner = std::function<StatusOr<Bytes>(ByteView digest)>;

// A note and the signature over it, kept as bytes: the note, not the struct,
// is what was signed.
struct SignedCheckpoint {
  std::string note;
  Bytes signature;
};

StatusOr<SignedCheckpoint> SignCheckpoint(const Checkpoint& checkpoint, Algorithm alg,
                                          const DigestSigner& signer);

// Verifies the signature over the exact note bytes with `public_key` (not
// owned), then parses the note. InvalidArgument "signature does not verify"
// on a bad signature; a parse error for a well-signed but malformed note.
StatusOr<Checkpoint> VerifyCheckpoint(const SignedCheckpoint& signed_checkpoint,
                                      EVP_PKEY* public_key, Algorithm alg);

}  // namespace concierge::audit

#endif  // CONCIERGE_AUDIT_CHECKPOINT_H_
