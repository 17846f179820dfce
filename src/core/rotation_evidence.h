// RotationEvidenceRecorder: the Rotation Evidence Pack of every closed
// rotation (docs/evidence.md, docs/rotation.md). It gathers the pack's inputs
// from the store - the policy version the rotation ran under, the old and new
// key records, the CSR, the new certificate and chain, the attestation, the
// canary results and the phase timeline - has the evidence library render and
// sign it with the service's evidence key, and stores the archive, so the pack
// handed out later is byte for byte the one signed when the rotation closed.
//
// Outcomes: completed -> "completed", rolled_back -> "rolled_back", failed ->
// "aborted". A completed rotation rolled back later gets a second pack.
// Scheduled, running, awaiting_certificate and cancelled rotations have none.
//
// The evidence key is generated on first use in the configured backend (the
// key never leaves it) and recorded in the store; its public key is what
// verifiers pin with `keyctl evidence verify --trusted-key`.
//
// Thread-safe (one mutex serialises key creation and pack builds).
#ifndef CONCIERGE_CORE_ROTATION_EVIDENCE_H_
#define CONCIERGE_CORE_ROTATION_EVIDENCE_H_

#include <mutex>
#include <string>
#include <vector>

#include "concierge/clock.h"
#include "concierge/key_backend.h"
#include "concierge/store.h"
#include "evidence/evidence.h"

namespace concierge::core {

// The pack outcome of a rotation state; "" when it gets no pack.
std::string EvidenceOutcome(const RotationRecord& rotation);

class RotationEvidenceRecorder {
 public:
  RotationEvidenceRecorder(Store& store, BackendRegistry& backends, Clock& clock,
                           std::string key_provider = "software", Algorithm key_algorithm = Algorithm::kES256)
      : store_(store), backends_(backends), clock_(clock), provider_(std::move(key_provider)),
        algorithm_(key_algorithm) {}

  // The stored pack for the rotation's current outcome, built and stored on
  // the first call. FailedPrecondition (saying why) for a rotation that has
  // no evidence; kNotFound for an unknown rotation.
  StatusOr<RotationEvidenceRecord> Ensure(const std::string& rotation_id);
  // Builds every missing pack (all tenants). Returns how many were built;
  // appends one line per failure to `errors`.
  int EnsureAll(std::vector<std::string>* errors);
  // The evidence key, created on first use.
  StatusOr<EvidenceKeyRecord> Key();

  // The pack's inputs as read from the store (the seam between the rotation
  // records and the evidence library).
  StatusOr<evidence::RotationEvidence> Gather(const RotationRecord& rotation);

 private:
  StatusOr<RotationEvidenceRecord> EnsureLocked(const RotationRecord& rotation);
  StatusOr<EvidenceKeyRecord> KeyLocked();

  Store& store_;
  BackendRegistry& backends_;
  Clock& clock_;
  const std::string provider_;
  const Algorithm algorithm_;
  std::mutex mu_;
};

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_ROTATION_EVIDENCE_H_
