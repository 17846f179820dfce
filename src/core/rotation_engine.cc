#include "core/rotation_engine.h"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "core/fault_point.h"
#include "core/key_state.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/keys.h"
#include "crypto/signature.h"
#include "crypto/x509.h"

namespace concierge::core {

using json = nlohmann::json;

namespace {

constexpr auto kDay = std::chrono::hours(24);
// A scheduled time this far in the past is a mistake, not "now".
constexpr auto kPastTolerance = std::chrono::minutes(1);

std::string Days(int n) { return std::to_string(n) + (n == 1 ? " day" : " days"); }

bool ValidEmail(const std::string& s) {
  if (s.size() < 3 || s.size() > 254) return false;
  auto at = s.find('@');
  if (at == std::string::npos || at == 0 || at + 1 == s.size() || s.find('@', at + 1) != std::string::npos) {
    return false;
  }
  for (char c : s) {
    if (c <= ' ' || c == 0x7f || c == '<' || c == '>' || c == ',' || c == ';') return false;
  }
  return true;
}

Status NoPolicy(const std::string& tenant_id) {
  return NotFoundError("tenant '" + tenant_id + "' not found or has no policy");
}

// The public key a certificate certifies, checked against the key record.
StatusOr<crypto::EvpPkeyPtr> CertifiedPublicKey(const CertificateRecord& cert, const KeyRecord& key) {
  ASSIGN_OR_RETURN(crypto::X509Ptr x509, crypto::CertificateFromPem(cert.pem));
  ASSIGN_OR_RETURN(Bytes cert_spki, crypto::CertificateSpkiDer(x509.get()));
  ASSIGN_OR_RETURN(crypto::EvpPkeyPtr key_pub, crypto::PublicKeyFromPem(key.public_key_pem));
  ASSIGN_OR_RETURN(Bytes key_spki, crypto::PublicKeyToSpkiDer(key_pub.get()));
  if (cert_spki != key_spki) {
    return FailedPreconditionError("certificate " + cert.serial + " does not certify key '" + key.key_id + "'");
  }
  return crypto::PublicKeyFromSpkiDer(cert_spki);
}

}  // namespace

int RotationPhaseNumber(std::string_view phase) {
  for (size_t i = 0; i < kRotationPhases.size(); ++i) {
    if (kRotationPhases[i] == phase) return static_cast<int>(i) + 1;
  }
  return 0;
}

bool RotationIsOpen(std::string_view state) {
  return state == "scheduled" || state == "running" || state == "awaiting_certificate";
}

// --- bookkeeping -----------------------------------------------------------------

RotationEvent RotationEngine::Event(const RotationRecord& r, std::string event, std::string detail,
                                    std::string actor) {
  RotationEvent e;
  e.rotation_id = r.rotation_id;
  e.at = clock_.Now();
  e.phase = r.phase;
  e.event = std::move(event);
  e.detail = std::move(detail);
  e.actor = std::move(actor);
  return e;
}

Status RotationEngine::Persist(RotationRecord& r, std::vector<RotationEvent> events) {
  r.updated_at = clock_.Now();
  RETURN_IF_ERROR(store_.UpdateRotation(r, events));
  ++r.version;
  return Status::Ok();
}

RotationView RotationEngine::ToView(RotationRecord record, std::vector<RotationEvent> events, TimePoint now) {
  RotationView v;
  v.phase_number = RotationPhaseNumber(record.phase);
  const bool waiting = record.state == "scheduled" || record.state == "awaiting_certificate";
  v.approval_pending = record.state == "scheduled" && record.approval_required && record.approved_by.empty();
  v.warning = record.state == "scheduled" && now < record.scheduled_at &&
              now >= record.scheduled_at - options_.advance_warning;
  v.overdue = waiting && now > record.scheduled_at;
  if (record.state == "completed" && record.grace_until && now <= *record.grace_until &&
      !record.old_key_id.empty()) {
    auto old_key = store_.GetKey(record.old_key_id);
    v.rollback_allowed = old_key.ok() && old_key->state == "retiring";
  }
  v.record = std::move(record);
  v.events = std::move(events);
  return v;
}

// --- operator requests ----------------------------------------------------------------

StatusOr<RotationRecord> RotationEngine::Schedule(const std::string& tenant_id, const ScheduleRequest& request,
                                                  const Principal& actor) {
  auto policy = tenants_.GetPolicy(tenant_id, std::nullopt);
  if (!policy.ok()) return policy.status().code() == StatusCode::kNotFound ? NoPolicy(tenant_id) : policy.status();
  if (request.owner.empty()) {
    return FieldError("owner", "owner is required: the email of the person accountable for this rotation");
  }
  if (!ValidEmail(request.owner)) return FieldError("owner", "owner must be an email address");
  const TimePoint now = clock_.Now();
  const TimePoint at = request.scheduled_at.value_or(now);
  if (at < now - kPastTolerance) {
    return FieldError("scheduled_time", "scheduled_time " + FormatRfc3339(at) + " is in the past (now " +
                                            FormatRfc3339(now) + ")");
  }
  if (!request.cert_source.empty() && request.cert_source != "builtin-ca" && request.cert_source != "external") {
    return FieldError("certificate", "certificate must be 'builtin-ca' or 'external'");
  }
  if (request.cert_source == "builtin-ca" && !certs_.CaInitialised()) {
    return FieldError("certificate", "the built-in CA is not initialised: run keyctl ca init, or use 'external'");
  }

  std::lock_guard lock(run_mu_);
  ASSIGN_OR_RETURN(std::vector<RotationRecord> existing, store_.ListRotations(tenant_id));
  for (RotationRecord& open : existing) {
    if (!RotationIsOpen(open.state)) continue;
    if (open.trigger == "calendar" && open.state == "scheduled") {
      continue;  // replaced below, once the new one is known to be valid
    }
    return AlreadyExistsError("tenant '" + tenant_id + "' already has an open rotation " + open.rotation_id +
                              " (" + open.state + "); cancel it or wait for it to finish");
  }
  RotationRecord r;
  r.rotation_id = "rot-" + crypto::RandomHex(8);
  r.tenant_id = tenant_id;
  r.state = "scheduled";
  r.trigger = "manual";
  r.scheduled_at = at;
  r.owner = request.owner;
  r.approval_required = request.approval_required || policy->policy.approval_required;
  r.created_by = actor.id;
  r.cert_source = request.cert_source;
  r.created_at = now;
  r.updated_at = now;
  for (RotationRecord& open : existing) {
    if (!RotationIsOpen(open.state)) continue;
    open.state = "cancelled";
    open.finished_at = now;
    open.error = "replaced by manual rotation " + r.rotation_id;
    RETURN_IF_ERROR(Persist(open, {Event(open, "cancelled", open.error, actor.id)}));
  }
  std::string detail = "scheduled for " + FormatRfc3339(at) + " by " + actor.id + ", owner " + r.owner +
                       (r.approval_required ? ", approval required" : "");
  RETURN_IF_ERROR(store_.InsertRotation(r, Event(r, "scheduled", detail, actor.id)));
  return r;
}

StatusOr<RotationRecord> RotationEngine::Approve(const std::string& rotation_id, const Principal& actor) {
  std::lock_guard lock(run_mu_);
  ASSIGN_OR_RETURN(RotationRecord r, store_.GetRotation(rotation_id));
  if (r.state != "scheduled") {
    return FailedPreconditionError("rotation " + rotation_id + " is " + r.state + "; only a scheduled rotation can be approved");
  }
  if (!r.approval_required) return FailedPreconditionError("rotation " + rotation_id + " does not require approval");
  if (!r.approved_by.empty()) {
    return FailedPreconditionError("rotation " + rotation_id + " was already approved by " + r.approved_by);
  }
  if (actor.id == r.created_by) {
    return PermissionDeniedError("rotation " + rotation_id + " was scheduled by " + actor.id +
                                 "; it must be approved by a different principal");
  }
  r.approved_by = actor.id;
  r.approved_at = clock_.Now();
  RETURN_IF_ERROR(Persist(r, {Event(r, "approved", "approved by " + actor.id, actor.id)}));
  return r;
}

StatusOr<RotationRecord> RotationEngine::Cancel(const std::string& rotation_id, const Principal& actor) {
  std::lock_guard lock(run_mu_);
  ASSIGN_OR_RETURN(RotationRecord r, store_.GetRotation(rotation_id));
  if (r.state != "scheduled" && r.state != "awaiting_certificate") {
    return FailedPreconditionError("rotation " + rotation_id + " is " + r.state +
                                   "; only a scheduled or awaiting_certificate rotation can be cancelled");
  }
  return Abort(std::move(r), "cancelled", "cancelled by " + actor.id, actor.id);
}

Status RotationEngine::StartLocked(RotationRecord& rec, const std::string& actor, const std::string& detail) {
  rec.state = "running";
  rec.phase.clear();
  return Persist(rec, {Event(rec, "started", detail, actor)});
}

StatusOr<RotationRecord> RotationEngine::RequestExecution(const std::string& rotation_id, const Principal& actor) {
  std::lock_guard lock(run_mu_);
  ASSIGN_OR_RETURN(RotationRecord r, store_.GetRotation(rotation_id));
  if (r.state == "running" || r.state == "awaiting_certificate") return r;  // Run() picks it up
  if (r.state != "scheduled") {
    return FailedPreconditionError("rotation " + rotation_id + " is " + r.state + " and cannot run again; schedule a new one");
  }
  if (r.approval_required && r.approved_by.empty()) {
    return FailedPreconditionError("rotation " + rotation_id + " needs approval by a second principal before it can run "
                                   "(keyctl rotation approve " + rotation_id + ")");
  }
  RETURN_IF_ERROR(StartLocked(r, actor.id, "execution requested by " + actor.id));
  return r;
}

StatusOr<RotationRecord> RotationEngine::Run(const std::string& rotation_id) {
  std::lock_guard lock(run_mu_);
  ASSIGN_OR_RETURN(RotationRecord r, store_.GetRotation(rotation_id));
  return RunLocked(std::move(r));
}

StatusOr<RotationRecord> RotationEngine::Rollback(const std::string& rotation_id, const Principal& actor,
                                                  const std::string& reason) {
  std::lock_guard lock(run_mu_);
  ASSIGN_OR_RETURN(RotationRecord r, store_.GetRotation(rotation_id));
  if (r.state != "completed") {
    return FailedPreconditionError("rotation " + rotation_id + " is " + r.state +
                                   "; only a completed rotation can be rolled back");
  }
  const TimePoint now = clock_.Now();
  if (!r.grace_until || now > *r.grace_until) {
    return FailedPreconditionError(
        "rotation " + rotation_id + " can no longer be rolled back: its grace window ended at " +
        (r.grace_until ? FormatRfc3339(*r.grace_until) : std::string("the cutover")) + " and the previous key '" +
        r.old_key_id + "' is retired; schedule a new rotation instead");
  }
  if (r.old_key_id.empty()) {
    return FailedPreconditionError("rotation " + rotation_id + " had no previous key to restore");
  }
  ASSIGN_OR_RETURN(KeyRecord old_key, store_.GetKey(r.old_key_id));
  if (old_key.state != "retiring") {
    return FailedPreconditionError("the previous key '" + old_key.key_id + "' of rotation " + rotation_id + " is " +
                                   old_key.state + " and cannot be restored");
  }
  std::string why = "rolled back by " + actor.id + (reason.empty() ? "" : ": " + reason);
  return RollbackLocked(std::move(r), why, actor.id);
}

// --- reads -----------------------------------------------------------------------------

StatusOr<RotationView> RotationEngine::Get(const std::string& rotation_id) {
  ASSIGN_OR_RETURN(RotationRecord r, store_.GetRotation(rotation_id));
  ASSIGN_OR_RETURN(std::vector<RotationEvent> events, store_.ListRotationEvents(rotation_id));
  return ToView(std::move(r), std::move(events), clock_.Now());
}

StatusOr<std::vector<RotationView>> RotationEngine::List(const std::string& tenant_id) {
  ASSIGN_OR_RETURN(std::vector<RotationRecord> records, store_.ListRotations(tenant_id));
  std::vector<RotationView> out;
  const TimePoint now = clock_.Now();
  for (RotationRecord& r : records) out.push_back(ToView(std::move(r), {}, now));
  return out;
}

StatusOr<TimePoint> RotationEngine::CalendarDue(const std::string& tenant_id, const PolicyVersion& policy) {
  const TimePoint now = clock_.Now();
  auto active = store_.GetActiveKey(tenant_id);
  if (!active.ok() && active.status().code() != StatusCode::kNotFound) return active.status();
  if (!active.ok()) return now;  // no active key: rotate as soon as possible
  TimePoint since = active->activated_at.value_or(active->created_at);
  TimePoint due = since + kDay * policy.policy.rotate_every_days;
  // A rotation that just failed or was rolled back must not be retried at once.
  ASSIGN_OR_RETURN(std::vector<RotationRecord> history, store_.ListRotations(tenant_id));
  for (const RotationRecord& r : history) {
    if (r.state == "completed" || RotationIsOpen(r.state) || !r.finished_at || *r.finished_at < since) continue;
    due = std::max(due, *r.finished_at + options_.retry_after_failure);
  }
  return due;
}

StatusOr<TenantCalendar> RotationEngine::Calendar(const std::string& tenant_id) {
  ASSIGN_OR_RETURN(PolicyVersion policy, tenants_.GetPolicy(tenant_id, std::nullopt));
  TenantCalendar c;
  c.tenant_id = tenant_id;
  c.rotate_every_days = policy.policy.rotate_every_days;
  c.rotation_grace_days = policy.policy.rotation_grace_days;
  auto active = store_.GetActiveKey(tenant_id);
  if (active.ok()) {
    c.active_key_id = active->key_id;
    c.active_since = active->activated_at.value_or(active->created_at);
  } else if (active.status().code() != StatusCode::kNotFound) {
    return active.status();
  }
  ASSIGN_OR_RETURN(TimePoint due, CalendarDue(tenant_id, policy));
  const TimePoint now = clock_.Now();
  c.next_due = due;
  c.overdue = now > due;
  c.warning = !c.overdue && now >= due - options_.advance_warning;
  return c;
}

// --- running -----------------------------------------------------------------------------

StatusOr<RotationRecord> RotationEngine::RunLocked(RotationRecord rec) {
  std::string resumed_detail;
  if (rec.state == "awaiting_certificate") {
    auto cert = store_.GetActiveCertificate(rec.new_key_id);
    if (!cert.ok()) {
      if (cert.status().code() == StatusCode::kNotFound) return rec;  // still waiting
      return cert.status();
    }
    rec.state = "running";
    resumed_detail = "certificate " + cert->serial + " received";
  } else if (rec.state != "running") {
    return rec;
  } else if (!rec.phase.empty()) {
    resumed_detail = "resumed";  // interrupted earlier (crash, restart)
  }
  size_t i = rec.phase.empty() ? 0 : static_cast<size_t>(std::max(RotationPhaseNumber(rec.phase), 1) - 1);
  for (; i < kRotationPhases.size(); ++i) {
    const std::string_view phase = kRotationPhases[i];
    rec.phase = std::string(phase);
    if (!rec.started_at) rec.started_at = clock_.Now();
    // Persisted before the phase runs: a crash from here on resumes this phase.
    RETURN_IF_ERROR(Persist(rec, {Event(rec, "phase_started", resumed_detail, kEngineActor)}));
    resumed_detail.clear();
    FaultPoint("rotation." + std::string(phase) + ".before");
    StatusOr<PhaseOutcome> outcome = RunPhase(rec, phase);
    if (!outcome.ok()) return Fail(std::move(rec), phase, outcome.status());
    if (*outcome == PhaseOutcome::kWait) return rec;
    FaultPoint("rotation." + std::string(phase) + ".after");
  }
  return rec;
}

StatusOr<RotationEngine::PhaseOutcome> RotationEngine::RunPhase(RotationRecord& rec, std::string_view phase) {
  Status st;
  if (phase == "prepare") st = Prepare(rec);
  else if (phase == "generate_key") st = GenerateKey(rec);
  else if (phase == "certificate") return Certify(rec);
  else if (phase == "canary") st = Canary(rec);
  else if (phase == "cutover") st = Cutover(rec);
  else if (phase == "validate") st = Validate(rec);
  else if (phase == "complete") st = Complete(rec);
  else st = InternalError("unknown rotation phase '" + std::string(phase) + "'");
  if (!st.ok()) return st;
  return PhaseOutcome::kDone;
}

Status RotationEngine::Prepare(RotationRecord& rec) {
  auto policy = tenants_.GetPolicy(rec.tenant_id, std::nullopt);
  if (!policy.ok()) return policy.status().code() == StatusCode::kNotFound ? NoPolicy(rec.tenant_id) : policy.status();
  if (tenants_.backends().Find(policy->policy.provider) == nullptr) {
    return FailedPreconditionError("provider '" + policy->policy.provider + "' is not configured on this server");
  }
  rec.policy_version = policy->version;
  rec.policy_hash = policy->hash;
  if (rec.old_key_id.empty()) {
    auto active = store_.GetActiveKey(rec.tenant_id);
    if (active.ok()) {
      rec.old_key_id = active->key_id;
    } else if (active.status().code() != StatusCode::kNotFound) {
      return active.status();
    }
  }
  if (rec.cert_source.empty()) rec.cert_source = certs_.CaInitialised() ? "builtin-ca" : "external";
  std::string detail = "policy v" + std::to_string(rec.policy_version) + " (" + rec.policy_hash.substr(0, 16) +
                       "), " + (rec.old_key_id.empty() ? "no active key" : "replacing " + rec.old_key_id) +
                       ", certificate from " + rec.cert_source;
  return Persist(rec, {Event(rec, "phase_completed", detail, kEngineActor)});
}

Status RotationEngine::GenerateKey(RotationRecord& rec) {
  ASSIGN_OR_RETURN(PolicyVersion policy, tenants_.GetPolicy(rec.tenant_id, std::nullopt));
  KeyBackend* backend = tenants_.backends().Find(policy.policy.provider);
  if (backend == nullptr) {
    return FailedPreconditionError("provider '" + policy.policy.provider + "' is not configured on this server");
  }
  ASSIGN_OR_RETURN(int64_t version, store_.NextKeyVersion(rec.tenant_id));
  if (rec.new_key_id.empty()) {
    // The id is persisted before the key exists, so a resumed run finds the
    // key it made instead of making a second one.
    rec.new_key_id = rec.tenant_id + "-v" + std::to_string(version) + "-" + crypto::RandomHex(3);
    RETURN_IF_ERROR(Persist(rec, {Event(rec, "key_allocated", "new key id " + rec.new_key_id, kEngineActor)}));
  }
  auto existing = store_.GetKey(rec.new_key_id);
  if (existing.ok()) {
    if (existing->state != "pending") {
      return FailedPreconditionError("new key '" + rec.new_key_id + "' is " + existing->state + ", not pending");
    }
    return Persist(rec, {Event(rec, "phase_completed", "key " + rec.new_key_id + " already generated", kEngineActor)});
  }
  if (existing.status().code() != StatusCode::kNotFound) return existing.status();
  KeySpec spec{policy.policy.algorithm, rec.tenant_id + "/v" + std::to_string(version), policy.policy.key_uri};
  auto generated = backend->GenerateKey(spec);
  if (!generated.ok()) return generated.status().Annotate("generating key in backend '" + policy.policy.provider + "'");
  ASSIGN_OR_RETURN(KeyRecord key, GeneratedKeyRecord(*generated, rec.new_key_id, rec.tenant_id, version,
                                                     policy.policy.algorithm, policy.policy.provider, "pending",
                                                     clock_.Now()));
  if (Status st = store_.InsertKey(key); !st.ok()) {
    backend->DestroyKey(key.key_uri).IgnoreError();  // referenced by nothing
    return st;
  }
  return Persist(rec, {Event(rec, "phase_completed",
                             "generated " + key.algorithm + " key " + key.key_id + " (v" + std::to_string(version) +
                                 ") in " + key.provider + ", fingerprint " + key.fingerprint,
                             kEngineActor)});
}

StatusOr<RotationEngine::PhaseOutcome> RotationEngine::Certify(RotationRecord& rec) {
  ASSIGN_OR_RETURN(PolicyVersion policy, tenants_.GetPolicy(rec.tenant_id, std::nullopt));
  ASSIGN_OR_RETURN(KeyRecord key, store_.GetKey(rec.new_key_id));
  if (key.state != "pending") {
    return FailedPreconditionError("new key '" + key.key_id + "' is " + key.state + ", not pending");
  }
  if (rec.csr_pem.empty()) {
    KeyBackend* backend = tenants_.backends().Find(key.provider);
    auto alg = ParseAlgorithm(key.algorithm);
    if (backend == nullptr || !alg) return FailedPreconditionError("backend of key '" + key.key_id + "' is unavailable");
    ASSIGN_OR_RETURN(crypto::X509ReqPtr csr, crypto::CreateCsr(CertificateSubjectFor(policy.policy),
                                                               crypto::BackendKey{backend, key.key_uri, *alg}));
    ASSIGN_OR_RETURN(rec.csr_pem, crypto::CsrToPem(csr.get()));
    RETURN_IF_ERROR(Persist(rec, {Event(rec, "csr_created", "CSR signed by the new key in its backend", kEngineActor)}));
  }
  auto cert = store_.GetActiveCertificate(key.key_id);
  if (!cert.ok() && cert.status().code() != StatusCode::kNotFound) return cert.status();
  if (!cert.ok()) {
    if (rec.cert_source == "builtin-ca") {
      cert = certs_.IssueForKey(key, policy.policy);
      if (!cert.ok()) return cert.status().Annotate("issuing the new key's certificate");
    } else {
      rec.state = "awaiting_certificate";
      RETURN_IF_ERROR(Persist(rec, {Event(rec, "awaiting_certificate",
                                          "have the CSR certified by your CA, then: keyctl cert import --tenant-id " +
                                              rec.tenant_id + " --chain CHAIN.pem (CSR: keyctl rotation status " +
                                              rec.rotation_id + " --csr-out FILE)",
                                          kEngineActor)}));
      return PhaseOutcome::kWait;
    }
  }
  // Chain and profile were checked when it was issued or imported; the key
  // match is re-checked here because the canary relies on it.
  RETURN_IF_ERROR(CertifiedPublicKey(*cert, key).status());
  rec.cert_serial = cert->serial;
  RETURN_IF_ERROR(Persist(rec, {Event(rec, "phase_completed",
                                      "certificate " + cert->serial + " (" + cert->source + ", issuer " + cert->issuer +
                                          ", valid until " + FormatRfc3339(cert->not_after) + ")",
                                      kEngineActor)}));
  return PhaseOutcome::kDone;
}

Status RotationEngine::Canary(RotationRecord& rec) {
  ASSIGN_OR_RETURN(PolicyVersion policy, tenants_.GetPolicy(rec.tenant_id, std::nullopt));
  ASSIGN_OR_RETURN(KeyRecord key, store_.GetKey(rec.new_key_id));
  ASSIGN_OR_RETURN(CertificateRecord cert, store_.GetActiveCertificate(key.key_id));
  ASSIGN_OR_RETURN(crypto::EvpPkeyPtr certified, CertifiedPublicKey(cert, key));
  auto alg = ParseAlgorithm(key.algorithm);
  KeyBackend* backend = tenants_.backends().Find(key.provider);
  if (backend == nullptr || !alg) return FailedPreconditionError("backend of key '" + key.key_id + "' is unavailable");

  // What gets signed: canary_count fresh random digests ("test"), then the
  // digests of a sample of the tenant's recent ledger entries ("resample":
  // what real clients sign).
  struct Probe {
    std::string kind;
    int64_t ledger_seq = 0;
    Bytes digest;
  };
  std::vector<Probe> probes;
  for (int i = 0; i < policy.policy.canary_count; ++i) {
    probes.push_back({"test", 0, crypto::RandomBytes(DigestSize(*alg))});
  }
  if (options_.ledger_sample > 0) {
    // The ledger pages oldest-first; look at short windows first so the
    // sample is recent even for a busy tenant.
    const TimePoint now = clock_.Now();
    for (std::chrono::minutes window : {std::chrono::minutes(10), std::chrono::minutes(24 * 60), std::chrono::minutes(0)}) {
      LedgerQuery q;
      q.tenant_id = rec.tenant_id;
      if (window.count() > 0) q.from = now - window;
      q.limit = 1000;
      ASSIGN_OR_RETURN(LedgerPage page, ledger_.ListLedger(q));
      if (page.entries.empty()) continue;
      const size_t n = page.entries.size();
      const size_t take = std::min(n, static_cast<size_t>(options_.ledger_sample));
      for (size_t k = 0; k < take; ++k) {
        const LedgerEntry& e = page.entries[n - 1 - k * n / take];  // spread over the page, newest first
        auto digest = crypto::HexDecode(e.digest_hex);
        if (!digest.ok() || digest->empty()) continue;
        // Rows of COSE/raw signatures hold a SHA-256 of the payload, which may
        // not be this algorithm's digest size: re-hash it to one.
        Bytes d = DigestSizeAccepted(*alg, digest->size()) ? *std::move(digest) : crypto::DigestFor(*alg, *digest);
        probes.push_back({"resample", e.seq, std::move(d)});
      }
      break;
    }
  }
  json results = json::array();
  int failures = 0;
  std::string first_error;
  for (size_t i = 0; i < probes.size(); ++i) {
    const Probe& p = probes[i];
    auto start = std::chrono::steady_clock::now();
    auto signature = backend->SignDigest(key.key_uri, *alg, p.digest);
    Status verified = signature.ok() ? crypto::VerifyDigest(certified.get(), *alg, p.digest, *signature)
                                     : signature.status();
    auto micros = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
    json r = {{"n", i + 1},
              {"kind", p.kind},
              {"digest", crypto::HexEncode(p.digest)},
              {"signature", signature.ok() ? crypto::HexEncode(*signature) : std::string()},
              {"ok", verified.ok()},
              {"latency_us", micros.count()},
              {"error", verified.ok() ? "" : verified.message()}};
    if (p.kind == "resample") r["ledger_seq"] = p.ledger_seq;
    results.push_back(std::move(r));
    if (!verified.ok()) {
      ++failures;
      if (first_error.empty()) first_error = verified.message();
    }
  }
  rec.canary_results = results.dump();
  const size_t ledger_count = static_cast<size_t>(
      std::count_if(probes.begin(), probes.end(), [](const Probe& p) { return p.kind == "resample"; }));
  if (failures > 0) {
    RETURN_IF_ERROR(Persist(rec, {}));  // keep the results for the operator and the evidence
    Status failed = FailedPreconditionError("canary failed: " + std::to_string(failures) + " of " +
                                            std::to_string(probes.size()) +
                                            " signatures did not verify against the new certificate (" +
                                            first_error + ")");
    if (canary_failed_) canary_failed_(rec, failed.message());
    return failed;
  }
  return Persist(rec, {Event(rec, "phase_completed",
                             std::to_string(probes.size() - ledger_count) + " test signatures and " +
                                 std::to_string(ledger_count) +
                                 " re-signed ledger digests verified against certificate " + cert.serial,
                             kEngineActor)});
}

Status RotationEngine::Cutover(RotationRecord& rec) {
  ASSIGN_OR_RETURN(PolicyVersion policy, tenants_.GetPolicy(rec.tenant_id, std::nullopt));
  auto active = store_.GetActiveKey(rec.tenant_id);
  if (!active.ok() && active.status().code() != StatusCode::kNotFound) return active.status();
  if (active.ok() && active->key_id == rec.new_key_id) {
    // Resumed after the swap committed: it happened, only the cache may be stale.
    RETURN_IF_ERROR(tenants_.Reload(rec.tenant_id));
    return Status::Ok();
  }
  ASSIGN_OR_RETURN(KeyRecord new_key, store_.GetKey(rec.new_key_id));
  RETURN_IF_ERROR(CheckKeyTransition(new_key.key_id, new_key.state, "active"));
  KeySwap swap;
  swap.tenant_id = rec.tenant_id;
  swap.to_key_id = new_key.key_id;
  swap.to_expected_state = "pending";
  swap.at = clock_.Now();
  std::string detail;
  if (active.ok()) {
    RETURN_IF_ERROR(CheckKeyTransition(active->key_id, "active", "retiring"));
    swap.from_key_id = active->key_id;
    swap.from_new_state = "retiring";
    detail = active->key_id + " -> retiring (verify-only), ";
    if (active->key_id != rec.old_key_id) {
      detail += "(the active key changed since prepare: was " + rec.old_key_id + ") ";
      rec.old_key_id = active->key_id;
    }
  }
  rec.cutover_at = swap.at;
  rec.grace_until = swap.at + kDay * policy.policy.rotation_grace_days;
  detail += new_key.key_id + " -> active; grace window " + Days(policy.policy.rotation_grace_days) + " until " +
            FormatRfc3339(*rec.grace_until);
  rec.updated_at = swap.at;
  RETURN_IF_ERROR(store_.SwapActiveKey(swap, rec, {Event(rec, "cutover", detail, kEngineActor)}));
  ++rec.version;
  // The swap is durable; now every new request sees the new key. Requests
  // holding the old snapshot finish on the old key, which still verifies.
  RETURN_IF_ERROR(tenants_.Reload(rec.tenant_id));
  return Status::Ok();
}

Status RotationEngine::Validate(RotationRecord& rec) {
  ASSIGN_OR_RETURN(std::shared_ptr<const TenantState> state, tenants_.Active(rec.tenant_id));
  if (state->active_key.key_id != rec.new_key_id) {
    return FailedPreconditionError("after cutover the tenant signs with '" + state->active_key.key_id +
                                   "', not the new key '" + rec.new_key_id + "'");
  }
  auto stored = store_.GetActiveKey(rec.tenant_id);
  if (!stored.ok() || stored->key_id != rec.new_key_id) {
    return FailedPreconditionError("the store's active key is not the new key '" + rec.new_key_id + "'");
  }
  ASSIGN_OR_RETURN(std::shared_ptr<const CertChain> chain, certs_.ChainFor(state->active_key));
  if (chain->key_id != rec.new_key_id) {
    return FailedPreconditionError("the served certificate chain belongs to '" + chain->key_id + "'");
  }
  ASSIGN_OR_RETURN(CertificateRecord cert, store_.GetActiveCertificate(rec.new_key_id));
  ASSIGN_OR_RETURN(crypto::EvpPkeyPtr certified, CertifiedPublicKey(cert, state->active_key));
  auto alg = ParseAlgorithm(state->active_key.algorithm);
  KeyBackend* backend = tenants_.backends().Find(state->active_key.provider);
  if (backend == nullptr || !alg) return FailedPreconditionError("backend of the new key is unavailable");
  Bytes digest = crypto::RandomBytes(DigestSize(*alg));
  ASSIGN_OR_RETURN(Bytes signature, backend->SignDigest(state->active_key.key_uri, *alg, digest));
  RETURN_IF_ERROR(crypto::VerifyDigest(certified.get(), *alg, digest, signature).Annotate("post-cutover signature"));
  return Persist(rec, {Event(rec, "phase_completed",
                             "live key, served chain (" + chain->serial + ") and a live signature check out",
                             kEngineActor)});
}

Status RotationEngine::Complete(RotationRecord& rec) {
  rec.state = "completed";
  rec.finished_at = clock_.Now();
  rec.error.clear();
  return Persist(rec, {Event(rec, "completed",
                             "rotation completed; previous key " + (rec.old_key_id.empty() ? "-" : rec.old_key_id) +
                                 " verifies until " + (rec.grace_until ? FormatRfc3339(*rec.grace_until) : "-"),
                             kEngineActor)});
}

// --- failure paths ----------------------------------------------------------------------

StatusOr<RotationRecord> RotationEngine::Fail(RotationRecord rec, std::string_view phase, const Status& cause) {
  const std::string reason = std::string(phase) + " failed: " + cause.message();
  bool swapped = false;
  if (RotationPhaseNumber(phase) >= RotationPhaseNumber("cutover")) {
    auto active = store_.GetActiveKey(rec.tenant_id);
    swapped = active.ok() && active->key_id == rec.new_key_id;
  }
  if (!swapped) return Abort(std::move(rec), "failed", reason, kEngineActor);
  const TimePoint now = clock_.Now();
  if (rec.grace_until && now <= *rec.grace_until && !rec.old_key_id.empty()) {
    auto old_key = store_.GetKey(rec.old_key_id);
    if (old_key.ok() && old_key->state == "retiring") {
      return RollbackLocked(std::move(rec), reason + "; rolled back automatically", kEngineActor);
    }
  }
  // Outside the window (or nothing to go back to): keep the new key, say so.
  rec.state = "failed";
  rec.error = reason + "; not rolled back (grace window closed or no previous key), the new key stays active";
  rec.finished_at = now;
  RETURN_IF_ERROR(Persist(rec, {Event(rec, "failed", rec.error, kEngineActor)}));
  return rec;
}

StatusOr<RotationRecord> RotationEngine::Abort(RotationRecord rec, const std::string& final_state,
                                               const std::string& reason, const std::string& actor) {
  std::string detail = reason;
  if (!rec.new_key_id.empty()) {
    auto key = store_.GetKey(rec.new_key_id);
    if (key.ok() && key->state == "pending") {
      // The key never signed for a client: it is removed, not kept verifiable.
      RETURN_IF_ERROR(CheckKeyTransition(key->key_id, key->state, "destroyed"));
      RETURN_IF_ERROR(store_.SupersedeActiveCertificate(key->key_id));
      RETURN_IF_ERROR(store_.UpdateKeyState(key->key_id, "pending", "destroyed", clock_.Now()));
      if (KeyBackend* backend = tenants_.backends().Find(key->provider); backend != nullptr) {
        Status destroyed = backend->DestroyKey(key->key_uri);
        if (!destroyed.ok()) detail += "; removing the key from its backend failed: " + destroyed.message();
      }
      detail += "; pending key " + key->key_id + " destroyed";
    }
  }
  rec.state = final_state;
  rec.error = reason;
  rec.finished_at = clock_.Now();
  RETURN_IF_ERROR(Persist(rec, {Event(rec, final_state, detail, actor)}));
  return rec;
}

StatusOr<RotationRecord> RotationEngine::RollbackLocked(RotationRecord rec, const std::string& reason,
                                                        const std::string& actor) {
  RETURN_IF_ERROR(CheckKeyTransition(rec.new_key_id, "active", "retired"));
  RETURN_IF_ERROR(CheckKeyTransition(rec.old_key_id, "retiring", "active"));
  KeySwap swap{rec.tenant_id, rec.new_key_id, "retired", rec.old_key_id, "retiring", clock_.Now()};
  rec.state = "rolled_back";
  rec.error = reason;
  rec.finished_at = swap.at;
  rec.updated_at = swap.at;
  RETURN_IF_ERROR(store_.SwapActiveKey(
      swap, rec,
      {Event(rec, "rolled_back", reason + "; " + rec.old_key_id + " active again, " + rec.new_key_id + " retired",
             actor)}));
  ++rec.version;
  RETURN_IF_ERROR(tenants_.Reload(rec.tenant_id));
  return rec;
}

// --- scheduler duties -----------------------------------------------------------------------

StatusOr<bool> RotationEngine::EnsureCalendar(const std::string& tenant_id, const std::vector<RotationRecord>& open) {
  auto policy = tenants_.GetPolicy(tenant_id, std::nullopt);
  if (!policy.ok()) return policy.status().code() == StatusCode::kNotFound ? StatusOr<bool>(false) : policy.status();
  ASSIGN_OR_RETURN(TimePoint due, CalendarDue(tenant_id, *policy));
  for (const RotationRecord& r : open) {
    if (r.tenant_id != tenant_id) continue;
    // The calendar rotation follows policy changes until it starts.
    if (r.trigger != "calendar" || r.state != "scheduled") return false;
    bool changed = false;
    RotationRecord updated = r;
    if (updated.scheduled_at != due) {
      updated.scheduled_at = due;
      changed = true;
    }
    if (updated.approval_required != policy->policy.approval_required && updated.approved_by.empty()) {
      updated.approval_required = policy->policy.approval_required;
      changed = true;
    }
    if (!changed) return false;
    RETURN_IF_ERROR(Persist(updated, {Event(updated, "rescheduled",
                                            "calendar: due " + FormatRfc3339(due) + " (rotate_every_days=" +
                                                std::to_string(policy->policy.rotate_every_days) + ")",
                                            kSchedulerActor)}));
    return true;
  }
  const TimePoint now = clock_.Now();
  RotationRecord r;
  r.rotation_id = "rot-" + crypto::RandomHex(8);
  r.tenant_id = tenant_id;
  r.state = "scheduled";
  r.trigger = "calendar";
  r.scheduled_at = due;
  r.approval_required = policy->policy.approval_required;
  r.created_by = kSchedulerActor;
  r.created_at = now;
  r.updated_at = now;
  Status st = store_.InsertRotation(
      r, Event(r, "scheduled",
               "calendar: due " + FormatRfc3339(due) + " (rotate_every_days=" +
                   std::to_string(policy->policy.rotate_every_days) + ")",
               kSchedulerActor));
  if (st.code() == StatusCode::kAlreadyExists) return false;  // someone else scheduled one meanwhile
  RETURN_IF_ERROR(st);
  return true;
}

StatusOr<int> RotationEngine::RetireExpired(const std::string& tenant_id) {
  ASSIGN_OR_RETURN(std::vector<RotationRecord> rotations, store_.ListRotations(tenant_id));
  const TimePoint now = clock_.Now();
  int retired = 0;
  for (RotationRecord& r : rotations) {
    if (r.state != "completed" || !r.grace_until || now <= *r.grace_until || r.old_key_id.empty()) continue;
    auto key = store_.GetKey(r.old_key_id);
    if (!key.ok() || key->state != "retiring") continue;
    RETURN_IF_ERROR(CheckKeyTransition(key->key_id, "retiring", "retired"));
    RETURN_IF_ERROR(store_.UpdateKeyState(key->key_id, "retiring", "retired", now));
    RETURN_IF_ERROR(Persist(r, {Event(r, "old_key_retired",
                                      key->key_id + " retired: grace window ended " + FormatRfc3339(*r.grace_until) +
                                          "; it still verifies old signatures",
                                      kSchedulerActor)}));
    ++retired;
  }
  return retired;
}

TickReport RotationEngine::Tick() {
  TickReport report;
  auto note = [&](const std::string& what, const Status& st) {
    if (!st.ok()) report.errors.push_back(what + ": " + st.message());
  };
  auto tenants = store_.ListTenants(/*include_deleted=*/false);
  if (!tenants.ok()) {
    note("listing tenants", tenants.status());
    return report;
  }
  std::set<std::string> live;
  {
    std::lock_guard lock(run_mu_);
    auto open = store_.ListOpenRotations();
    if (!open.ok()) {
      note("listing rotations", open.status());
      return report;
    }
    for (const TenantRecord& t : *tenants) {
      live.insert(t.tenant_id);
      auto changed = EnsureCalendar(t.tenant_id, *open);
      if (changed.ok() && *changed) ++report.calendar_scheduled;
      note("calendar of " + t.tenant_id, changed.status());
      auto retired = RetireExpired(t.tenant_id);
      if (retired.ok()) report.keys_retired += *retired;
      note("retiring keys of " + t.tenant_id, retired.status());
    }
  }
  auto open = store_.ListOpenRotations();
  if (!open.ok()) {
    note("listing rotations", open.status());
    return report;
  }
  const TimePoint now = clock_.Now();
  for (const RotationRecord& listed : *open) {
    std::lock_guard lock(run_mu_);
    // Re-read under the lock: an API call may have moved it since the listing.
    auto current = store_.GetRotation(listed.rotation_id);
    if (!current.ok()) {
      note("reading " + listed.rotation_id, current.status());
      continue;
    }
    RotationRecord r = *std::move(current);
    if (!RotationIsOpen(r.state)) continue;
    if (!live.count(r.tenant_id)) {
      auto cancelled = Abort(std::move(r), "cancelled", "tenant deleted", kSchedulerActor);
      if (cancelled.ok()) ++report.cancelled;
      note("cancelling " + listed.rotation_id, cancelled.status());
      continue;
    }
    if (r.state == "scheduled") {
      if (r.scheduled_at > now || (r.approval_required && r.approved_by.empty())) continue;
      Status started = StartLocked(r, kSchedulerActor, "due " + FormatRfc3339(r.scheduled_at) + "; started by the scheduler");
      if (!started.ok()) {
        note("starting " + r.rotation_id, started);
        continue;
      }
      ++report.started;
    }
    const std::string before = r.state;
    auto ran = RunLocked(std::move(r));
    note("running " + listed.rotation_id, ran.status());
    // A rotation still waiting for its certificate is not news on every tick.
    if (before != "scheduled" && ran.ok() && !(before == "awaiting_certificate" && ran->state == before)) {
      ++report.resumed;
    }
  }
  return report;
}

TickReport RotationEngine::Recover() {
  TickReport report;
  auto open = store_.ListOpenRotations();
  if (!open.ok()) {
    report.errors.push_back("listing rotations: " + open.status().message());
    return report;
  }
  for (const RotationRecord& r : *open) {
    if (r.state != "running") continue;
    ++report.resumed;
    auto done = Run(r.rotation_id);
    if (!done.ok()) report.errors.push_back("resuming " + r.rotation_id + ": " + done.status().message());
  }
  return report;
}

}  // namespace concierge::core
