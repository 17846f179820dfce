#include "concierge/algorithm.h"

#include <cctype>
#include <string>

namespace concierge {

std::string_view AlgorithmName(Algorithm alg) {
  switch (alg) {
    case Algorithm::kES256: return "ES256";
    case Algorithm::kES384: return "ES384";
    case Algorithm::kES512: return "ES512";
    case Algorithm::kPS256: return "PS256";
    case Algorithm::kPS384: return "PS384";
    case Algorithm::kPS512: return "PS512";
    case Algorithm::kEd25519: return "Ed25519";
  }
  return "unknown";
}

std::optional<Algorithm> ParseAlgorithm(std::string_view name) {
  std::string lower;
  for (char c : name) lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  for (Algorithm a : {Algorithm::kES256, Algorithm::kES384, Algorithm::kES512, Algorithm::kPS256,
                      Algorithm::kPS384, Algorithm::kPS512, Algorithm::kEd25519}) {
    std::string canon;
    for (char c : AlgorithmName(a)) canon.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    if (canon == lower) return a;
  }
  return std::nullopt;
}

KeyFamily FamilyOf(Algorithm alg) {
  switch (alg) {
    case Algorithm::kES256:
    case Algorithm::kES384:
    case Algorithm::kES512: return KeyFamily::kEcdsa;
    case Algorithm::kPS256:
    case Algorithm::kPS384:
    case Algorithm::kPS512: return KeyFamily::kRsaPss;
    case Algorithm::kEd25519: return KeyFamily::kEdDsa;
  }
  return KeyFamily::kEcdsa;
}

size_t DigestSize(Algorithm alg) {
  switch (alg) {
    case Algorithm::kES256:
    case Algorithm::kPS256: return 32;
    case Algorithm::kES384:
    case Algorithm::kPS384: return 48;
    case Algorithm::kES512:
    case Algorithm::kPS512:
    case Algorithm::kEd25519: return 64;
  }
  return 0;
}

bool DigestSizeAccepted(Algorithm alg, size_t size) {
  if (alg == Algorithm::kEd25519) return size == 32 || size == 64;
  return size == DigestSize(alg);
}

std::string_view DigestName(Algorithm alg) {
  switch (DigestSize(alg)) {
    case 32: return "sha256";
    case 48: return "sha384";
    default: return "sha512";
  }
}

size_t EcdsaFieldBytes(Algorithm alg) {
  switch (alg) {
    case Algorithm::kES256: return 32;
    case Algorithm::kES384: return 48;
    case Algorithm::kES512: return 66;
    default: return 0;
  }
}

int CoseAlgorithmId(Algorithm alg) {
  switch (alg) {
    case Algorithm::kES256: return -7;
    case Algorithm::kES384: return -35;
    case Algorithm::kES512: return -36;
    case Algorithm::kPS256: return -37;
    case Algorithm::kPS384: return -38;
    case Algorithm::kPS512: return -39;
    case Algorithm::kEd25519: return -8;
  }
  return 0;
}

}  // namespace concierge
