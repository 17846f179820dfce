// EngineEmergencyRotator: the key_compromise playbook's emergency rotation
// (core::EmergencyRotator) carried out by the rotation engine, so an emergency
// rotation goes through exactly the same persisted phases as a scheduled one:
// new key in the policy's backend, certificate, canary, atomic cutover,
// validation, and a Rotation Evidence Pack.
//
// RotateNow reuses the tenant's open rotation when there is one (a calendar
// rotation waiting, or a rotation this playbook started before a crash), else
// schedules a manual one for now, then runs it to a resting state on the
// calling thread. The policy's approval_required is honoured: an emergency
// rotation of such a tenant waits for a second principal's approval, and the
// playbook stops at its rotate step with a message naming the rotation (run
// `keyctl rotation approve ID`, then `keyctl incident respond` again).
// Thread-safe (the engine serialises runs).
#ifndef CONCIERGE_CORE_EMERGENCY_ROTATOR_H_
#define CONCIERGE_CORE_EMERGENCY_ROTATOR_H_

#include <string>

#include "core/incident_playbook.h"
#include "core/rotation_engine.h"
#include "core/rotation_evidence.h"

namespace concierge::core {

class EngineEmergencyRotator : public EmergencyRotator {
 public:
  // `evidence` may be null (no packs).
  EngineEmergencyRotator(RotationEngine& engine, RotationEvidenceRecorder* evidence)
      : engine_(engine), evidence_(evidence) {}

  StatusOr<std::string> RotateNow(const std::string& tenant_id, const std::string& reason) override;

 private:
  RotationEngine& engine_;
  RotationEvidenceRecorder* evidence_;
};

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_EMERGENCY_ROTATOR_H_
