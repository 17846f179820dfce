// Asymmetric key generation, (de)serialisation and fingerprints via OpenSSL 3.
// Thread-safe (no shared state).
#ifndef CONCIERGE_CRYPTO_KEYS_H_
#define CONCIERGE_CRYPTO_KEYS_H_

#include <string>

#include "concierge/algorithm.h"
#include "concierge/key_backend.h"
#include "concierge/secret.h"
#include "crypto/openssl_util.h"

namespace concierge::crypto {

// ES256/384/512 -> P-256/P-384/P-521; PS256/384/512 -> RSA 2048/3072/4096 (e=65537);
// Ed25519 -> Ed25519.
StatusOr<EvpPkeyPtr> GenerateKeyPair(Algorithm alg);
// RSA key size for PS* algorithms (2048, 3072, 4096); 0 otherwise.
int RsaBitsFor(Algorithm alg);

// Private key as unencrypted PKCS#8 DER, only ever held in SecretBytes.
StatusOr<SecretBytes> PrivateKeyToPkcs8Der(const EVP_PKEY* key);
StatusOr<EvpPkeyPtr> PrivateKeyFromPkcs8Der(const SecretBytes& der);

StatusOr<Bytes> PublicKeyToSpkiDer(const EVP_PKEY* key);
StatusOr<std::string> SpkiDerToPem(ByteView spki_der);
StatusOr<EvpPkeyPtr> PublicKeyFromSpkiDer(ByteView spki_der);
StatusOr<EvpPkeyPtr> PublicKeyFromPem(std::string_view pem);

// Checks that `key` has the type/curve/size that `alg` requires.
Status CheckKeyMatchesAlgorithm(const EVP_PKEY* key, Algorithm alg);

// Hex SHA-256 of the SPKI DER.
std::string SpkiFingerprint(ByteView spki_der);

}  // namespace concierge::crypto

#endif  // CONCIERGE_CRYPTO_KEYS_H_
