// Signature algorithms (C2PA / COSE names) and their fixed properties.
// Plain value types; thread-safe.
#ifndef CONCIERGE_ALGORITHM_H_
#define CONCIERGE_ALGORITHM_H_

#include <cstddef>
#include <optional>
#include <string_view>

namespace concierge {

enum class Algorithm { kES256, kES384, kES512, kPS256, kPS384, kPS512, kEd25519 };

enum class KeyFamily { kEcdsa, kRsaPss, kEdDsa };

// "ES256", "PS384", "Ed25519", ...
std::string_view AlgorithmName(Algorithm alg);
// Accepts the canonical names case-insensitively ("es256", "ED25519").
std::optional<Algorithm> ParseAlgorithm(std::string_view name);

KeyFamily FamilyOf(Algorithm alg);

// Size in bytes of the digest a client sends for this algorithm: SHA-256/384/512.
// Ed25519 signs the digest bytes as its message and accepts a SHA-256 or SHA-512
// digest; DigestSize returns 64 (SHA-512) as its canonical size.
size_t DigestSize(Algorithm alg);
// Whether `size` is an accepted digest length for `alg`.
bool DigestSizeAccepted(Algorithm alg, size_t size);
// "sha256", "sha384", "sha512" (for openssl dgst); Ed25519 -> "sha512".
std::string_view DigestName(Algorithm alg);

// ECDSA field size in bytes (32, 48, 66); 0 for non-ECDSA algorithms.
size_t EcdsaFieldBytes(Algorithm alg);

// COSE algorithm identifier (RFC 9053 / RFC 8230): ES256=-7, ES384=-35, ES512=-36,
// PS256=-37, PS384=-38, PS512=-39, EdDSA=-8.
int CoseAlgorithmId(Algorithm alg);

}  // namespace concierge

#endif  // CONCIERGE_ALGORITHM_H_
