// Detectors inside `keyctl serve`: each turns a signal into an incident (or a
// fold into the open one for the same detection key) and so a webhook event.
//
//   issuance_cap     a tenant's request refused by its max_issuance_per_24h
//                    cap (the 429s of IssuanceLimiter)  -> policy_violation, high
//   auth_failures    >= auth_failure_burst failed authentications from one
//                    address within auth_failure_window -> security_alert, medium
//   backend_errors   a backend's error rate >= backend_error_rate over at
//                    least backend_min_samples calls in backend_window
//                                                        -> backend_outage, high (global)
//   backend_latency  the p99 of a backend's signing latency over
//                    backend_latency_window reaches backend_latency_p99 with at
//                    least backend_latency_min_samples calls
//                                                        -> backend_outage, backend_latency_severity (global)
//   cert_expiry      an active (or standby) key's certificate expires within
//                    cert_expiry_warn_days (medium) / cert_expiry_critical_days
//                    (high)                              -> compliance_failure
//   signing_rate     a tenant's signatures in the last complete minute exceed
//                    max(rate_min_per_minute, rate_factor x its EWMA baseline),
//                    after rate_warmup_minutes of baseline -> security_alert, high
//
// Time comes from the injected Clock; Tick() does the periodic checks (the
// server calls it every few seconds; tests call it after moving a FakeClock).
// Request-path hooks only touch in-memory counters; an incident write happens
// at most once per detection key per fold_interval (repeats in between are
// counted and reported with the next fold), so a flood of 429s or 401s cannot
// turn into a flood of database writes. Thread-safe.
#ifndef CONCIERGE_CORE_INCIDENT_DETECTORS_H_
#define CONCIERGE_CORE_INCIDENT_DETECTORS_H_

#include <array>
#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "concierge/clock.h"
#include "concierge/key_backend.h"
#include "concierge/ledger.h"
#include "concierge/store.h"
#include "core/backend_health.h"
#include "core/incident.h"

namespace concierge::core {

struct DetectorOptions {
  bool enabled = true;
  std::chrono::seconds fold_interval{60};
  int auth_failure_burst = 20;
  std::chrono::seconds auth_failure_window{60};
  double backend_error_rate = 0.5;
  int backend_min_samples = 20;
  std::chrono::seconds backend_window{60};
  std::chrono::milliseconds backend_latency_p99{0};  // 0 = the latency detector is off
  int backend_latency_min_samples = 20;
  std::chrono::seconds backend_latency_window{60};
  std::string backend_latency_severity = "high";
  int cert_expiry_warn_days = 30;
  int cert_expiry_critical_days = 7;
  std::chrono::seconds cert_check_interval{600};
  double rate_factor = 5.0;
  int64_t rate_min_per_minute = 100;
  double rate_ewma_alpha = 0.3;
  int rate_warmup_minutes = 10;
};

class IncidentDetectors {
 public:
  IncidentDetectors(IncidentService& incidents, Store& store, LedgerStore& ledger, Clock& clock,
                    DetectorOptions options)
      : incidents_(incidents),
        store_(store),
        ledger_(ledger),
        clock_(clock),
        options_(options),
        health_(clock, options.backend_latency_window) {}

  // Request-path hooks (cheap).
  void OnIssuanceCapRefused(const std::string& tenant_id, const std::string& message);
  void OnAuthFailure(const std::string& source_address);
  // From ObservedBackend after a failed call: the backend's error count and
  // call count over the last backend_window.
  void OnBackendErrors(const std::string& provider, int64_t errors, int64_t calls);
  // From the rotation engine when a rotation's canary signatures did not all
  // verify against the new certificate (the rotation then aborts; the old key
  // keeps signing). One incident per rotation: a re-run canary folds into it.
  void OnCanaryFailure(const RotationRecord& rotation, const std::string& error);

  // Periodic checks: signing-rate anomaly (per completed minute), certificate
  // expiry (every cert_check_interval), backend latency, and flushing counted
  // repeats.
  void Tick();

  const DetectorOptions& options() const { return options_; }
  // Per-backend and per-key outcomes and latencies, fed by ObservedBackend.
  BackendHealthTracker& health() { return health_; }
  Clock& clock() { return clock_; }

 private:
  struct Pending {
    NewIncident incident;
    TimePoint last_reported{};
    int64_t unreported = 0;  // repeats since the last write
    bool ever = false;
  };
  // Opens or folds now, or counts the repeat for the next fold. Requires !mu_.
  void Report(NewIncident incident);
  void FlushRepeats();
  void CheckSigningRates(TimePoint now);
  void CheckCertificates(TimePoint now);
  void CheckCertificate(const std::string& tenant_id, const KeyRecord& key, TimePoint now);
  void CheckBackendLatency();

  IncidentService& incidents_;
  Store& store_;
  LedgerStore& ledger_;
  Clock& clock_;
  const DetectorOptions options_;
  BackendHealthTracker health_;

  std::mutex mu_;
  std::map<std::string, Pending> pending_;                           // by tenant|type|dedup_key
  std::map<std::string, std::deque<TimePoint>> auth_failures_;       // by address
  std::map<std::string, double> rate_baseline_;                      // by tenant
  std::map<std::string, int> rate_minutes_;                          // minutes folded into the baseline
  int64_t last_rate_minute_ = 0;
  TimePoint last_cert_check_{};
};

// A KeyBackend that forwards every call to `inner` and reports the outcome and
// latency of signing calls to the detectors (backend error rate) and their
// BackendHealthTracker (latency, consecutive failures per key). Also where
// the test-only "backend.sign" fault (core/fault_point.h) bites. Owns `inner`.
class ObservedBackend : public KeyBackend {
 public:
  ObservedBackend(std::unique_ptr<KeyBackend> inner, IncidentDetectors& detectors)
      : inner_(std::move(inner)), detectors_(detectors) {}

  std::string_view provider() const override { return inner_->provider(); }
  StatusOr<GeneratedKey> GenerateKey(const KeySpec& spec) override { return inner_->GenerateKey(spec); }
  StatusOr<Bytes> SignDigest(std::string_view key_uri, Algorithm alg, ByteView digest) override;
  StatusOr<Bytes> SignMessage(std::string_view key_uri, Algorithm alg, ByteView message) override;
  StatusOr<Bytes> PublicKeySpkiDer(std::string_view key_uri) override { return inner_->PublicKeySpkiDer(key_uri); }
  Status DestroyKey(std::string_view key_uri) override { return inner_->DestroyKey(key_uri); }
  BackendHealth Health() override { return inner_->Health(); }

 private:
  // Calls and errors per time slice of backend_window / kSlices, updated with
  // atomics only: this sits on the signing path of every request.
  static constexpr int kSlices = 6;
  struct Slice {
    std::atomic<int64_t> epoch{-1};
    std::atomic<int64_t> calls{0};
    std::atomic<int64_t> errors{0};
  };
  void Note(std::string_view key_uri, const Status& st, TimePoint started);

  std::unique_ptr<KeyBackend> inner_;
  IncidentDetectors& detectors_;
  std::array<Slice, kSlices> slices_;
};

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_INCIDENT_DETECTORS_H_
