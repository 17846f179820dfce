#include "core/emergency_rotator.h"

#include <optional>

namespace concierge::core {

StatusOr<std::string> EngineEmergencyRotator::RotateNow(const std::string& tenant_id, const std::string& reason) {
  const Principal actor{"system:incident-playbook", Role::kAdmin, ""};
  ASSIGN_OR_RETURN(std::vector<RotationView> rotations, engine_.List(tenant_id));
  std::optional<RotationRecord> open;
  for (const RotationView& v : rotations) {
    if (RotationIsOpen(v.record.state)) open = v.record;
  }
  if (!open) {
    ScheduleRequest request;
    request.owner = "incident-playbook@keyctl.invalid";  // no person to name; the incident records the actor
    ASSIGN_OR_RETURN(RotationRecord scheduled, engine_.Schedule(tenant_id, request, actor));
    open = std::move(scheduled);
  }
  if (open->state == "scheduled") {
    // Approval is checked here: a policy that requires it stops the playbook.
    auto requested = engine_.RequestExecution(open->rotation_id, actor);
    if (!requested.ok()) {
      return Status(requested.status().code(), "emergency rotation " + open->rotation_id + " (" + reason +
                                                   ") cannot run yet: " + requested.status().message());
    }
  }
  ASSIGN_OR_RETURN(RotationRecord done, engine_.Run(open->rotation_id));
  if (evidence_ != nullptr && done.state != "awaiting_certificate") {
    (void)evidence_->Ensure(done.rotation_id);  // the scheduler retries packs it could not build
  }
  if (done.state == "completed") return done.new_key_id;
  if (done.state == "awaiting_certificate") {
    return FailedPreconditionError("emergency rotation " + done.rotation_id +
                                   " waits for a certificate from the external CA: import it with "
                                   "`keyctl cert import`, then respond to the incident again");
  }
  return FailedPreconditionError("emergency rotation " + done.rotation_id + " ended " + done.state +
                                 (done.error.empty() ? std::string() : ": " + done.error));
}

}  // namespace concierge::core
