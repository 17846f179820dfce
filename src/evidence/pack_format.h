// Rules of the evidence pack format that the builder and the verifier must
// apply identically: the digests.txt layout, key fingerprints, and the
// certificate-to-key consistency checks. Internal to src/evidence.
// Pure functions; thread-safe.
#ifndef CONCIERGE_EVIDENCE_PACK_FORMAT_H_
#define CONCIERGE_EVIDENCE_PACK_FORMAT_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "concierge/clock.h"
#include "concierge/status.h"

namespace concierge::evidence::internal {

// sha256sum's text format: "<64 hex>  <name>\n" per (name, hex digest), in
// the order given.
std::string DigestLines(const std::vector<std::pair<std::string, std::string>>& name_and_digest);

// Hex SHA-256 of the DER SubjectPublicKeyInfo in a PEM public key ("PUBLIC
// KEY" block). Does not check that the DER is a usable key.
StatusOr<std::string> PemKeyFingerprint(std::string_view spki_pem);

// A file whose contents disagree with the key they should carry.
struct Mismatch {
  std::string file;
  std::string message;
};

// Checks that the CSR and certificate (each when non-empty) carry the key
// with `new_key_fingerprint`, and that chain.pem starts with the certificate
// and chains up to its self-signed last certificate at `at`. Unparseable
// PEM is a mismatch too.
std::vector<Mismatch> CertificateMismatches(std::string_view new_key_fingerprint, std::string_view csr_pem,
                                            std::string_view certificate_pem, std::string_view chain_pem,
                                            TimePoint at);

}  // namespace concierge::evidence::internal

#endif  // CONCIERGE_EVIDENCE_PACK_FORMAT_H_
