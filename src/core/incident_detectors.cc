#include "core/incident_detectors.h"

#include <algorithm>
#include <cmath>

#include "core/fault_point.h"

namespace concierge::core {
namespace {

using json = nlohmann::json;

// Bounds memory against sprayed source addresses.
constexpr size_t kMaxTrackedKeys = 10000;

int64_t UnixMinute(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::minutes>(t.time_since_epoch()).count();
}

NewIncident Detection(std::string detector, std::string tenant, std::string type, std::string severity,
                      std::string dedup_key, std::string title) {
  NewIncident n;
  n.detector = detector;
  n.actor = "detector:" + detector;
  n.tenant_id = std::move(tenant);
  n.type = std::move(type);
  n.severity = std::move(severity);
  n.dedup_key = std::move(dedup_key);
  n.title = std::move(title);
  return n;
}

}  // namespace

void IncidentDetectors::Report(NewIncident incident) {
  if (!options_.enabled) return;
  const std::string key = incident.tenant_id + "|" + incident.type + "|" + incident.dedup_key;
  TimePoint now = clock_.Now();
  int64_t repeats = 0;
  {
    std::lock_guard lock(mu_);
    if (pending_.size() > kMaxTrackedKeys && !pending_.count(key)) pending_.clear();
    Pending& p = pending_[key];
    if (p.ever && now - p.last_reported < options_.fold_interval) {
      ++p.unreported;
      p.incident = std::move(incident);
      return;
    }
    p.ever = true;
    p.last_reported = now;
    repeats = p.unreported;
    p.unreported = 0;
    p.incident = incident;
  }
  if (repeats > 0) incident.details["repeats_since_last_report"] = repeats;
  // A detector must never break the request path: failures are dropped here
  // and the next repeat reports again.
  incidents_.Open(incident).status().IgnoreError();
}

void IncidentDetectors::FlushRepeats() {
  std::vector<NewIncident> due;
  TimePoint now = clock_.Now();
  {
    std::lock_guard lock(mu_);
    for (auto& [key, p] : pending_) {
      if (p.unreported > 0 && now - p.last_reported >= options_.fold_interval) {
        NewIncident n = p.incident;
        n.details["repeats_since_last_report"] = p.unreported;
        p.unreported = 0;
        p.last_reported = now;
        due.push_back(std::move(n));
      }
    }
  }
  for (const auto& n : due) incidents_.Open(n).status().IgnoreError();
}

void IncidentDetectors::OnIssuanceCapRefused(const std::string& tenant_id, const std::string& message) {
  NewIncident n = Detection("issuance_cap", tenant_id, "policy_violation", "high", "issuance-cap:" + tenant_id,
                            "tenant " + tenant_id + " reached its 24h issuance cap");
  n.details = {{"message", message}};
  Report(std::move(n));
}

void IncidentDetectors::OnCanaryFailure(const RotationRecord& rotation, const std::string& error) {
  NewIncident n = Detection("canary", rotation.tenant_id, "security_alert", "high", "canary:" + rotation.rotation_id,
                            "canary failed in rotation " + rotation.rotation_id + " of tenant " + rotation.tenant_id);
  n.key_id = rotation.new_key_id;
  n.details = {{"rotation_id", rotation.rotation_id}, {"new_key_id", rotation.new_key_id},
               {"old_key_id", rotation.old_key_id}, {"error", error}};
  Report(std::move(n));
}

void IncidentDetectors::OnAuthFailure(const std::string& source_address) {
  if (!options_.enabled) return;
  TimePoint now = clock_.Now();
  size_t count;
  {
    std::lock_guard lock(mu_);
    if (auth_failures_.size() > kMaxTrackedKeys && !auth_failures_.count(source_address)) auth_failures_.clear();
    auto& q = auth_failures_[source_address];
    q.push_back(now);
    while (!q.empty() && now - q.front() > options_.auth_failure_window) q.pop_front();
    count = q.size();
  }
  if (count < static_cast<size_t>(options_.auth_failure_burst)) return;
  NewIncident n = Detection("auth_failures", "", "security_alert", "medium", "auth-failures:" + source_address,
                            std::to_string(count) + " failed authentications from " + source_address + " within " +
                                std::to_string(options_.auth_failure_window.count()) + "s");
  n.details = {{"source_address", source_address}, {"failures_in_window", count}};
  Report(std::move(n));
}

void IncidentDetectors::OnBackendErrors(const std::string& provider, int64_t errors, int64_t calls) {
  if (calls < options_.backend_min_samples) return;
  if (static_cast<double>(errors) < options_.backend_error_rate * static_cast<double>(calls)) return;
  NewIncident n = Detection("backend_errors", "", "backend_outage", "high", "backend-errors:" + provider,
                            "backend " + provider + " failed " + std::to_string(errors) + " of " +
                                std::to_string(calls) + " signing calls");
  n.details = {{"provider", provider}, {"errors", errors}, {"calls", calls},
               {"window_seconds", options_.backend_window.count()}};
  Report(std::move(n));
}

void IncidentDetectors::CheckSigningRates(TimePoint now) {
  const int64_t current = UnixMinute(now);
  int64_t first;
  {
    std::lock_guard lock(mu_);
    if (last_rate_minute_ == 0) last_rate_minute_ = current - 2;  // start with the last complete minute
    first = std::max(last_rate_minute_ + 1, current - 3);
  }
  if (first > current - 1) return;
  auto counts = ledger_.CountByMinuteSince(TimePoint(std::chrono::minutes(first)));
  if (!counts.ok()) return;
  std::vector<NewIncident> anomalies;
  {
    std::lock_guard lock(mu_);
    for (int64_t minute = first; minute <= current - 1; ++minute) {
      std::map<std::string, int64_t> per_tenant;
      for (const auto& [tenant, baseline] : rate_baseline_) per_tenant[tenant] = 0;
      for (const auto& c : *counts) {
        if (c.minute == minute) per_tenant[c.tenant_id] = c.count;
      }
      for (const auto& [tenant, count] : per_tenant) {
        double& baseline = rate_baseline_[tenant];
        int& minutes = rate_minutes_[tenant];
        const double limit = std::max(static_cast<double>(options_.rate_min_per_minute),
                                      options_.rate_factor * baseline);
        const double c = static_cast<double>(count);
        if (minutes >= options_.rate_warmup_minutes && c > limit) {
          NewIncident n = Detection("signing_rate", tenant, "security_alert", "high", "signing-rate:" + tenant,
                                    "signing rate anomaly for tenant " + tenant + ": " + std::to_string(count) +
                                        " signatures in one minute (baseline " +
                                        std::to_string(static_cast<int64_t>(std::lround(baseline))) + "/min)");
          n.details = {{"minute_start", FormatRfc3339(TimePoint(std::chrono::minutes(minute)))},
                       {"count", count},
                       {"baseline_per_minute", baseline},
                       {"factor", options_.rate_factor}};
          anomalies.push_back(std::move(n));
        }
        // An anomaly must not teach the baseline that it is normal.
        const double learned = minutes >= options_.rate_warmup_minutes ? std::min(c, limit) : c;
        baseline = minutes == 0 ? learned
                                : options_.rate_ewma_alpha * learned + (1 - options_.rate_ewma_alpha) * baseline;
        ++minutes;
      }
    }
    last_rate_minute_ = current - 1;
  }
  for (auto& n : anomalies) Report(std::move(n));
}

void IncidentDetectors::CheckCertificates(TimePoint now) {
  {
    std::lock_guard lock(mu_);
    if (last_cert_check_ != TimePoint{} && now - last_cert_check_ < options_.cert_check_interval) return;
    last_cert_check_ = now;
  }
  auto tenants = store_.ListTenants(false);
  if (!tenants.ok()) return;
  for (const auto& t : *tenants) {
    // The keys that sign or may sign at any moment: the active key and the
    // standby keys (core/failover.h), whose certificates expire on their own.
    auto keys = store_.ListKeys(t.tenant_id);
    if (!keys.ok()) continue;
    for (const KeyRecord& k : *keys) {
      if (k.state == "active" || k.state == "standby") CheckCertificate(t.tenant_id, k, now);
    }
  }
}

void IncidentDetectors::CheckCertificate(const std::string& tenant_id, const KeyRecord& key, TimePoint now) {
  auto cert = store_.GetActiveCertificate(key.key_id);
  if (!cert.ok()) return;
  const auto left = cert->not_after - now;
  const int64_t days = std::chrono::duration_cast<std::chrono::hours>(left).count() / 24;
  const bool critical = left <= std::chrono::hours(24) * options_.cert_expiry_critical_days;
  if (!critical && left > std::chrono::hours(24) * options_.cert_expiry_warn_days) return;
  NewIncident n = Detection("cert_expiry", tenant_id, "compliance_failure", critical ? "high" : "medium",
                            std::string(critical ? "cert-expiry-critical:" : "cert-expiry-warn:") + cert->serial,
                            "certificate " + cert->serial + " of " + (key.state == "standby" ? "standby " : "") +
                                "key " + key.key_id +
                                (left.count() <= 0 ? " has expired" : " expires in " + std::to_string(days) + " days"));
  n.key_id = key.key_id;
  n.details = {{"serial", cert->serial}, {"not_after", FormatRfc3339(cert->not_after)}, {"days_left", days}};
  Report(std::move(n));
}

void IncidentDetectors::CheckBackendLatency() {
  if (options_.backend_latency_p99.count() <= 0) return;
  for (const std::string& provider : health_.Providers()) {
    const LatencyStats stats = health_.ProviderLatency(provider);
    if (stats.samples < options_.backend_latency_min_samples || stats.p99 < options_.backend_latency_p99) continue;
    const auto p99_ms = std::chrono::duration_cast<std::chrono::milliseconds>(stats.p99).count();
    NewIncident n = Detection("backend_latency", "", "backend_outage", options_.backend_latency_severity,
                              "backend-latency:" + provider,
                              "backend " + provider + " is slow: p99 signing latency " + std::to_string(p99_ms) +
                                  " ms over the last " + std::to_string(options_.backend_latency_window.count()) +
                                  "s (threshold " + std::to_string(options_.backend_latency_p99.count()) + " ms)");
    n.details = {{"provider", provider},
                 {"p99_ms", p99_ms},
                 {"max_ms", std::chrono::duration_cast<std::chrono::milliseconds>(stats.max).count()},
                 {"samples", stats.samples},
                 {"threshold_ms", options_.backend_latency_p99.count()},
                 {"window_seconds", options_.backend_latency_window.count()}};
    Report(std::move(n));
  }
}

void IncidentDetectors::Tick() {
  if (!options_.enabled) return;
  TimePoint now = clock_.Now();
  CheckSigningRates(now);
  CheckCertificates(now);
  CheckBackendLatency();
  FlushRepeats();
}

void ObservedBackend::Note(std::string_view key_uri, const Status& st, TimePoint started) {
  const auto latency = std::chrono::duration_cast<std::chrono::microseconds>(detectors_.clock().Now() - started);
  detectors_.health().Record(inner_->provider(), key_uri, st, std::max(latency, std::chrono::microseconds(0)));
  const auto slice_len = std::max<int64_t>(1, detectors_.options().backend_window.count() / kSlices);
  const int64_t now_s =
      std::chrono::duration_cast<std::chrono::seconds>(detectors_.clock().Now().time_since_epoch()).count();
  const int64_t epoch = now_s / slice_len;
  Slice& s = slices_[static_cast<size_t>(epoch % kSlices)];
  int64_t seen = s.epoch.load(std::memory_order_relaxed);
  if (seen != epoch && s.epoch.compare_exchange_strong(seen, epoch)) {
    // Approximate under races (a concurrent increment may be lost): fine for a rate.
    s.calls.store(0, std::memory_order_relaxed);
    s.errors.store(0, std::memory_order_relaxed);
  }
  s.calls.fetch_add(1, std::memory_order_relaxed);
  if (st.ok() || !IsBackendFault(st.code())) return;
  s.errors.fetch_add(1, std::memory_order_relaxed);
  int64_t calls = 0, errors = 0;
  for (const Slice& x : slices_) {
    if (x.epoch.load(std::memory_order_relaxed) > epoch - kSlices) {
      calls += x.calls.load(std::memory_order_relaxed);
      errors += x.errors.load(std::memory_order_relaxed);
    }
  }
  detectors_.OnBackendErrors(std::string(inner_->provider()), errors, calls);
}

StatusOr<Bytes> ObservedBackend::SignDigest(std::string_view key_uri, Algorithm alg, ByteView digest) {
  const TimePoint started = detectors_.clock().Now();
  Status fault = BackendSignFault(inner_->provider(), key_uri);
  StatusOr<Bytes> r = fault.ok() ? inner_->SignDigest(key_uri, alg, digest) : StatusOr<Bytes>(fault);
  Note(key_uri, r.status(), started);
  return r;
}

StatusOr<Bytes> ObservedBackend::SignMessage(std::string_view key_uri, Algorithm alg, ByteView message) {
  const TimePoint started = detectors_.clock().Now();
  Status fault = BackendSignFault(inner_->provider(), key_uri);
  StatusOr<Bytes> r = fault.ok() ? inner_->SignMessage(key_uri, alg, message) : StatusOr<Bytes>(fault);
  Note(key_uri, r.status(), started);
  return r;
}

}  // namespace concierge::core
