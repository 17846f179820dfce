// Webhooks: per-tenant (or global) HTTP endpoints notified of incident and job
// events, delivered at least once from the persistent outbox in the Store.
//
// Wire format of one delivery (POST, Content-Type: application/json):
//   body    {"id":"evt_...","type":"incident.opened","tenant_id":"acme"|null,
//            "created_at":"RFC 3339","data":{...}}
//   headers X-Concierge-Event-Id: evt_...        (stable across retries: dedupe on it)
//           X-Concierge-Event-Type: incident.opened
//           X-Concierge-Delivery-Attempt: 1, 2, ...
//           X-Concierge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
// The timestamp is part of the MAC so a captured delivery cannot be replayed
// later as a fresh one; receivers should refuse a t older than a few minutes.
//
// Secrets: generated here (or given by the operator), returned once at
// creation, stored only sealed with AES-256-GCM under a key file outside the
// database (WebhookSecretBox), bound to the webhook id as AAD.
//
// Retries: a non-2xx answer or no answer schedules the next attempt after an
// exponential backoff (initial * 2^(attempt-1), capped), computed from the
// injected Clock; after max_attempts the delivery is "failed" (kept, listed).
// A dispatcher claims due deliveries with a lease, so a crash mid-attempt only
// delays that delivery until the lease ends: nothing is lost, and a delivery
// may arrive twice (hence the stable event id).
//
// Thread-safety: WebhookSecretBox is immutable after creation; WebhookService
// and WebhookDispatcher are thread-safe.
#ifndef CONCIERGE_CORE_WEBHOOK_H_
#define CONCIERGE_CORE_WEBHOOK_H_

#include <nlohmann/json_fwd.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "concierge/clock.h"
#include "concierge/secret.h"
#include "concierge/status.h"
#include "concierge/store.h"
#include "core/background_loop.h"

namespace concierge::core {

inline constexpr char kWebhookSignatureHeader[] = "X-Concierge-Signature";
inline constexpr char kWebhookEventIdHeader[] = "X-Concierge-Event-Id";
inline constexpr char kWebhookEventTypeHeader[] = "X-Concierge-Event-Type";
inline constexpr char kWebhookAttemptHeader[] = "X-Concierge-Delivery-Attempt";

// Event types the service emits (also the values a webhook filter may list).
const std::vector<std::string>& WebhookEventTypes();

// A new event with a fresh id ("evt_" + 16 hex) and `data` as its payload.
WebhookEventRecord NewWebhookEvent(std::string type, std::string tenant_id, const nlohmann::json& data, TimePoint now);
// The JSON body delivered for `event`.
std::string WebhookBody(const WebhookEventRecord& event);

// "t=<unix_seconds>,v1=<hex>" with v1 = HMAC-SHA256(secret, "<unix_seconds>.<body>").
std::string WebhookSignature(const SecretBytes& secret, int64_t unix_seconds, std::string_view body);
// Checks a signature header (constant-time) and that its timestamp is within
// `tolerance` of `now`. For receivers and tests.
Status VerifyWebhookSignature(const SecretBytes& secret, std::string_view header, std::string_view body,
                              TimePoint now, std::chrono::seconds tolerance);

// Seals webhook secrets for storage. The 32-byte key lives in a file (0600)
// beside the database, never in it; the server reads or creates that file.
class WebhookSecretBox {
 public:
  static constexpr size_t kKeySize = 32;
  // kInvalidArgument unless `key` is kKeySize bytes.
  static StatusOr<WebhookSecretBox> Create(SecretBytes key);

  // base64(nonce || ciphertext || tag), bound to `webhook_id`.
  StatusOr<std::string> Seal(const SecretBytes& secret, const std::string& webhook_id) const;
  StatusOr<SecretBytes> Open(const std::string& sealed, const std::string& webhook_id) const;

 private:
  explicit WebhookSecretBox(SecretBytes key) : key_(std::move(key)) {}
  SecretBytes key_;
};

// Sends one delivery. Implemented over libcurl in the server
// (server/webhook_transport.h); tests may use the same or a fake.
class WebhookTransport {
 public:
  virtual ~WebhookTransport() = default;
  // The HTTP status of the answer, or kUnavailable when none came back.
  virtual StatusOr<int> Post(const std::string& url, const std::string& body,
                             const std::map<std::string, std::string>& headers) = 0;
};

struct WebhookOptions {
  std::chrono::seconds initial_backoff{5};
  std::chrono::seconds max_backoff{3600};
  int max_attempts = 20;
  // How long a claimed delivery is reserved for the dispatcher attempting it.
  std::chrono::seconds lease{120};
  int claim_batch = 32;
  // Real-time pause between dispatcher passes when nothing is due.
  std::chrono::milliseconds poll_interval{500};
  // Plain http:// URLs are refused unless allowed (tests, private networks).
  bool allow_http = false;
};

// Delay before attempt number `attempts + 1`, given `attempts` made so far (>= 1).
std::chrono::seconds WebhookBackoff(int64_t attempts, const WebhookOptions& options);

// http(s)://host[:port][/path], no credentials or fragment; http only when allowed.
Status ValidateWebhookUrl(const std::string& url, bool allow_http);

struct NewWebhook {
  std::string tenant_id;  // "" = global
  std::string url;
  std::vector<std::string> event_types;  // empty = all
  std::optional<SecretBytes> secret;     // generated when absent
  std::string actor;
};

struct CreatedWebhook {
  WebhookRecord record;
  SecretBytes secret;  // the only time it is available in clear
};

class WebhookService {
 public:
  WebhookService(Store& store, const WebhookSecretBox& box, Clock& clock, WebhookOptions options)
      : store_(store), box_(box), clock_(clock), options_(options) {}

  StatusOr<CreatedWebhook> Create(NewWebhook request);
  StatusOr<WebhookRecord> Get(const std::string& webhook_id) { return store_.GetWebhook(webhook_id); }
  StatusOr<std::vector<WebhookRecord>> List(const std::optional<std::string>& tenant_id) {
    return store_.ListWebhooks(tenant_id);
  }
  Status Disable(const std::string& webhook_id);

 private:
  Store& store_;
  const WebhookSecretBox& box_;
  Clock& clock_;
  WebhookOptions options_;
};

struct WebhookDispatcherStats {
  uint64_t attempts = 0;
  uint64_t delivered = 0;
  uint64_t failed = 0;  // gave up after max_attempts
};

class WebhookDispatcher {
 public:
  WebhookDispatcher(Store& store, WebhookTransport& transport, const WebhookSecretBox& box, Clock& clock,
                    WebhookOptions options)
      : store_(store), transport_(transport), box_(box), clock_(clock), options_(options) {}
  ~WebhookDispatcher() { Stop(); }
  WebhookDispatcher(const WebhookDispatcher&) = delete;
  WebhookDispatcher& operator=(const WebhookDispatcher&) = delete;

  // One pass: claims the deliveries due now and attempts each once. Returns
  // how many were attempted. Tests call this directly with a FakeClock.
  StatusOr<int> RunOnce();

  // Background thread: passes until nothing is due, then waits for Wake() or
  // the poll interval.
  void Start();
  void Stop();
  void Wake();
  WebhookDispatcherStats stats() const;

 private:
  void Attempt(const DueWebhookDelivery& due);

  Store& store_;
  WebhookTransport& transport_;
  const WebhookSecretBox& box_;
  Clock& clock_;
  const WebhookOptions options_;

  mutable std::mutex mu_;
  WebhookDispatcherStats stats_;  // guarded by mu_
  BackgroundLoop loop_;
};

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_WEBHOOK_H_
