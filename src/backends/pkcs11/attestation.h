// Attestation certificates offered by HSM modules for a generated key (YubiHSM2
// profile). The device returns X.509 certificates in DER; we store them as PEM
// with the key. Pure functions; thread-safe.
#ifndef CONCIERGE_BACKENDS_PKCS11_ATTESTATION_H_
#define CONCIERGE_BACKENDS_PKCS11_ATTESTATION_H_

#include <string>

#include "concierge/key_backend.h"
#include "concierge/status.h"

namespace concierge::backends::pkcs11 {

// One or more concatenated DER X.509 certificates -> PEM chain (in order).
// InvalidArgument on empty input, trailing garbage or a non-certificate.
StatusOr<std::string> AttestationDerToPem(ByteView der);

// Whether the first certificate of `pem` certifies the public key `spki_der`
// (the attestation is about this key, not another).
StatusOr<bool> AttestationCoversKey(const std::string& pem, ByteView spki_der);

}  // namespace concierge::backends::pkcs11

#endif  // CONCIERGE_BACKENDS_PKCS11_ATTESTATION_H_
