#include "core/incident_playbook.h"

#include <nlohmann/json.hpp>

namespace concierge::core {
namespace {

using json = nlohmann::json;

constexpr char kKeyCompromise[] = "key_compromise";

bool IsBackendIncident(const std::string& type) { return type == "backend_outage" || type == "hsm_failure"; }

json ParsePlaybook(const IncidentRecord& r) {
  if (r.playbook_json.empty()) return json(nullptr);
  json pb = json::parse(r.playbook_json, nullptr, /*allow_exceptions=*/false);
  return pb.is_object() ? pb : json(nullptr);
}

std::string Str(const json& pb, const char* field) {
  auto it = pb.find(field);
  return it != pb.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

StatusOr<IncidentRecord> PlaybookRunner::Respond(const std::string& incident_id, const std::string& actor,
                                                 std::optional<TimePoint> since) {
  ASSIGN_OR_RETURN(IncidentRecord inc, incidents_.Get(incident_id));
  if (IsBackendIncident(inc.type) && failover_.load() != nullptr) {
    if (!IsOpenIncidentState(inc.state)) {
      return FailedPreconditionError("incident " + incident_id + " is " + inc.state);
    }
    ASSIGN_OR_RETURN(std::vector<std::string> tenants,
                     failover_.load()->RespondToIncident(inc, actor, /*auto_only=*/false));
    RETURN_IF_ERROR(RecordFailoverPlaybook(inc, actor, tenants));
    return incidents_.Get(incident_id);
  }
  if (inc.type != kKeyCompromise) {
    return UnimplementedError("there is no automatic playbook for " + inc.type +
                              " incidents yet; work the incident by hand and resolve it");
  }
  if (!IsOpenIncidentState(inc.state)) {
    return FailedPreconditionError("incident " + incident_id + " is " + inc.state);
  }
  if (inc.tenant_id.empty()) {
    return FailedPreconditionError("a key_compromise incident must name a tenant");
  }
  json pb = ParsePlaybook(inc);
  std::string detail;
  if (pb.is_object()) {
    const std::string status = Str(pb, "status");
    if (status != "failed") {
      return FailedPreconditionError("the playbook of incident " + incident_id + " is " + status + " (step " +
                                     Str(pb, "step") + ")");
    }
    pb["status"] = "running";
    pb.erase("error");
    pb["actor"] = actor;
    detail = "playbook resumed at step " + Str(pb, "step") + " by " + actor;
  } else {
    std::string old_key = inc.key_id;
    if (old_key.empty()) {
      auto active = incidents_.store().GetActiveKey(inc.tenant_id);
      if (!active.ok()) return active.status().Annotate("finding the compromised key");
      old_key = active->key_id;
    }
    pb = {{"name", kKeyCompromise},
          {"status", "running"},
          {"step", "pause"},
          {"actor", actor},
          {"old_key_id", old_key},
          {"started_at", FormatRfc3339(clock_.Now())}};
    if (since) pb["since"] = FormatRfc3339(*since);
    detail = "playbook key_compromise started by " + actor + " for key " + old_key;
  }
  IncidentEvent e{incident_id, 0, clock_.Now(), actor, "playbook", "", "", detail};
  RETURN_IF_ERROR(incidents_.store().UpdateIncidentPlaybook(incident_id, pb.dump(), e));
  Wake();
  return incidents_.Get(incident_id);
}

Status PlaybookRunner::RecordFailoverPlaybook(const IncidentRecord& inc, const std::string& actor,
                                              const std::vector<std::string>& tenants) {
  // One step, already done: what `incident respond --wait` and the report read.
  json pb = {{"name", "failover"},   {"status", "done"},  {"step", "done"},
             {"actor", actor},       {"tenants", tenants}, {"finished_at", FormatRfc3339(clock_.Now())}};
  std::string list;
  for (const auto& t : tenants) list += (list.empty() ? "" : ", ") + t;
  IncidentEvent e{inc.incident_id, 0, clock_.Now(), actor, "playbook", "", "",
                  "playbook failover: " + (list.empty() ? std::string("nothing to fail over") : "failed over " + list)};
  return incidents_.store().UpdateIncidentPlaybook(inc.incident_id, pb.dump(), e);
}

void PlaybookRunner::OnIncidentOpened(const IncidentRecord& inc) {
  if (inc.severity != "high" && inc.severity != "critical") return;
  if (IsBackendIncident(inc.type)) {
    FailoverService* failover = failover_.load();
    if (failover == nullptr) return;
    auto done = failover->RespondToIncident(inc, "system:auto-respond", /*auto_only=*/true);
    if (done.ok() && !done->empty()) {
      RecordFailoverPlaybook(inc, "system:auto-respond", *done).IgnoreError();
    } else if (!done.ok()) {
      incidents_
          .RecordAction(inc.incident_id, "system:auto-respond", "playbook_failed",
                        "automatic failover did not happen: " + done.status().message(), true)
          .IgnoreError();
    }
    return;
  }
  if (inc.type != kKeyCompromise || inc.tenant_id.empty()) return;
  auto policy = tenants_.GetPolicy(inc.tenant_id, std::nullopt);
  if (!policy.ok() || !policy->policy.incident_auto_respond) return;
  auto started = Respond(inc.incident_id, "system:auto-respond", std::nullopt);
  if (!started.ok()) {
    incidents_
        .RecordAction(inc.incident_id, "system:auto-respond", "playbook_failed",
                      "automatic response did not start: " + started.status().message(), true)
        .IgnoreError();
  }
}

bool PlaybookRunner::Advance(const IncidentRecord& start) {
  json pb = ParsePlaybook(start);
  if (!pb.is_object()) return false;
  const std::string status = Str(pb, "status");
  if (status != "running" && status != "waiting") return false;
  Store& store = incidents_.store();
  const std::string id = start.incident_id;
  const std::string tenant = start.tenant_id;
  const std::string actor = Str(pb, "actor");
  const Principal principal{actor, Role::kSecurityOfficer, tenant};
  bool progressed = false;

  auto save = [&](const std::string& detail) {
    IncidentEvent e{id, 0, clock_.Now(), actor, "playbook", "", "", detail};
    Status st = store.UpdateIncidentPlaybook(id, pb.dump(), e);
    progressed = progressed || st.ok();
    return st;
  };
  auto fail = [&](const Status& st) {
    const std::string step = Str(pb, "step");
    pb["status"] = "failed";
    pb["error"] = st.message();
    save("playbook failed at step " + step + ": " + st.message()).IgnoreError();
    incidents_.RecordAction(id, actor, "playbook_failed", "step " + step + ": " + st.message(), true).IgnoreError();
    return true;
  };
  auto set_sign_enabled = [&](bool enabled) -> Status {
    ASSIGN_OR_RETURN(PolicyVersion policy, tenants_.GetPolicy(tenant, std::nullopt));
    if (policy.policy.sign_enabled == enabled) return Status::Ok();
    return tenants_.UpdatePolicy(tenant, json{{"sign_enabled", enabled}}, principal, std::nullopt).status();
  };

  for (int guard = 0; guard < 12; ++guard) {
    const std::string step = Str(pb, "step");
    if (step == "pause") {
      if (!pb.contains("sign_was_enabled")) {
        auto policy = tenants_.GetPolicy(tenant, std::nullopt);
        if (!policy.ok()) return fail(policy.status());
        pb["sign_was_enabled"] = policy->policy.sign_enabled;
      }
      if (Status st = set_sign_enabled(false); !st.ok()) return fail(st);
      if (auto st = incidents_.AdvanceTo(id, "contained", actor, "signing paused by the playbook"); !st.ok()) {
        return fail(st.status());
      }
      pb["step"] = "rotate";
      if (!save("pause: signing paused for tenant " + tenant + " (sign_enabled=false)").ok()) return progressed;
    } else if (step == "rotate") {
      if (auto st = incidents_.AdvanceTo(id, "rotating", actor, "emergency rotation"); !st.ok()) {
        return fail(st.status());
      }
      const std::string old_key = Str(pb, "old_key_id");
      auto active = store.GetActiveKey(tenant);
      if (!active.ok()) return fail(active.status().Annotate("reading the active key"));
      if (active->key_id == old_key) {
        EmergencyRotator* rotator = rotator_.load();
        if (rotator == nullptr) {
          return fail(FailedPreconditionError(
              "no emergency rotator is connected to this server; rotate the tenant's key by other means and "
              "run the playbook again (it adopts the new active key)"));
        }
        auto rotated = rotator->RotateNow(tenant, "incident " + id + ": key compromise of " + old_key);
        if (!rotated.ok()) return fail(rotated.status().Annotate("emergency rotation"));
        active = store.GetActiveKey(tenant);
        if (!active.ok()) return fail(active.status().Annotate("reading the new active key"));
        if (active->key_id == old_key) {
          return fail(InternalError("the emergency rotation reported key '" + *rotated +
                                    "' but the old key is still active"));
        }
      }
      pb["new_key_id"] = active->key_id;
      pb["step"] = "compromise";
      if (!save("rotate: new active key " + active->key_id + " (version " + std::to_string(active->version) + ")")
               .ok()) {
        return progressed;
      }
    } else if (step == "compromise") {
      const std::string old_id = Str(pb, "old_key_id");
      auto old = store.GetKey(old_id);
      if (!old.ok()) return fail(old.status());
      if (old->state != "compromised") {
        Status st = store.UpdateKeyState(old_id, old->state, "compromised", clock_.Now());
        if (!st.ok()) return fail(st.Annotate("marking key " + old_id + " compromised"));
      }
      std::string revocation = "no certificate service";
      if (certs_ != nullptr && !pb.contains("revoked_serial")) {
        auto revoked = certs_->RevokeKeyCertificate(*old);
        if (revoked.ok()) {
          pb["revoked_serial"] = revoked->serial;
          pb["revoked_on_crl"] = revoked->source == "builtin-ca";
          revocation = "certificate " + revoked->serial + " revoked" +
                       (revoked->source == "builtin-ca" ? " (on the built-in CA's CRL)"
                                                         : " (imported: tell the issuing CA)");
        } else if (revoked.status().code() == StatusCode::kFailedPrecondition) {
          pb["revoked_serial"] = nullptr;
          revocation = revoked.status().message();
        } else {
          return fail(revoked.status().Annotate("revoking the certificate of " + old_id));
        }
      }
      pb["step"] = "resign";
      if (!save("compromise: key " + old_id + " marked compromised; " + revocation).ok()) return progressed;
    } else if (step == "resign") {
      if (auto st = incidents_.AdvanceTo(id, "resigning", actor, "mass re-sign"); !st.ok()) return fail(st.status());
      if (!pb.contains("job_id")) {
        NewResignJob req{tenant, Str(pb, "old_key_id"), Str(pb, "new_key_id"), std::nullopt, id, actor};
        if (pb.contains("since")) {
          TimePoint since;
          if (ParseRfc3339(Str(pb, "since"), &since)) req.since = since;
        }
        auto job = jobs_.Create(req);
        std::string job_id;
        if (job.ok()) {
          job_id = job->job_id;
        } else if (job.status().code() == StatusCode::kAlreadyExists) {
          // Created before a crash, not yet recorded here: adopt it.
          auto unfinished = store.ListResignJobs(tenant, {"queued", "running", "paused"});
          if (!unfinished.ok()) return fail(unfinished.status());
          for (const auto& j : *unfinished) {
            if (j.compromised_key_id == req.compromised_key_id && j.new_key_id == req.new_key_id) job_id = j.job_id;
          }
          if (job_id.empty()) return fail(job.status());
        } else {
          return fail(job.status());
        }
        pb["job_id"] = job_id;
        pb["status"] = "waiting";
        if (!save("resign: job " + job_id + " re-signs everything key " + req.compromised_key_id + " signed").ok()) {
          return progressed;
        }
      }
      auto job = store.GetResignJob(Str(pb, "job_id"));
      if (!job.ok()) return fail(job.status());
      if (job->state == "failed" || job->state == "cancelled") {
        return fail(AbortedError("re-sign job " + job->job_id + " " + job->state +
                                 (job->error.empty() ? "" : ": " + job->error)));
      }
      if (job->state != "completed") {
        pb["status"] = "waiting";
        return progressed;
      }
      pb["resign"] = {{"job_id", job->job_id},
                      {"total", job->processed},
                      {"resigned", job->resigned},
                      {"needs_client", job->needs_client},
                      {"already_resigned", job->already_resigned}};
      pb["status"] = "running";
      pb["step"] = "resume";
      if (!save("resign: job " + job->job_id + " completed: " + std::to_string(job->resigned) + " re-signed, " +
                std::to_string(job->needs_client) + " need the client, " + std::to_string(job->already_resigned) +
                " already re-signed")
               .ok()) {
        return progressed;
      }
    } else if (step == "resume") {
      const bool was_enabled = pb.value("sign_was_enabled", true);
      if (was_enabled) {
        if (Status st = set_sign_enabled(true); !st.ok()) return fail(st);
      }
      pb["step"] = "report";
      if (!save(was_enabled ? "resume: signing resumed for tenant " + tenant + " with the new key"
                            : "resume: signing stays paused (it was paused before the incident)")
               .ok()) {
        return progressed;
      }
    } else if (step == "report") {
      const json& rs = pb.contains("resign") ? pb["resign"] : json::object();
      std::string summary = "key compromise handled: key " + Str(pb, "old_key_id") + " replaced by " +
                            Str(pb, "new_key_id") + "; " + std::to_string(rs.value("resigned", 0)) +
                            " entries re-signed, " + std::to_string(rs.value("needs_client", 0)) +
                            " need the client";
      if (auto st = incidents_.AdvanceTo(id, "resolved", actor, summary); !st.ok()) return fail(st.status());
      pb["status"] = "done";
      pb["step"] = "done";
      pb["finished_at"] = FormatRfc3339(clock_.Now());
      save("report: " + summary).IgnoreError();
      return true;
    } else {
      return fail(InternalError("unknown playbook step '" + step + "'"));
    }
  }
  return progressed;
}

bool PlaybookRunner::RunOnce() {
  std::lock_guard lock(advance_mu_);
  IncidentQuery q;
  q.open_only = true;
  q.limit = 1000;
  auto open = incidents_.List(q);
  if (!open.ok()) return false;
  bool progressed = false;
  for (const auto& inc : *open) {
    if (inc.playbook_json.empty()) continue;
    progressed = Advance(inc) || progressed;
  }
  return progressed;
}

void PlaybookRunner::Start() {
  // Waiting playbooks are woken by their job finishing; the idle wait picks up
  // playbooks started by another process sharing the database.
  loop_.Start([this] { return RunOnce(); }, std::chrono::seconds(1));
}

void PlaybookRunner::Stop() { loop_.Stop(); }

void PlaybookRunner::Wake() { loop_.Wake(); }

}  // namespace concierge::core
