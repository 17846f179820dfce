#include "core/webhook.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>

#include "crypto/aead.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"

namespace concierge::core {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxErrorChars = 200;

int64_t UnixSeconds(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

std::string HmacHex(const SecretBytes& secret, int64_t unix_seconds, std::string_view body) {
  std::string signed_text = std::to_string(unix_seconds);
  signed_text.push_back('.');
  signed_text.append(body);
  return crypto::HexEncode(crypto::HmacSha256(secret, crypto::AsBytes(signed_text)));
}

}  // namespace

const std::vector<std::string>& WebhookEventTypes() {
  static const std::vector<std::string> kTypes = {
      "incident.opened",   "incident.detected_again", "incident.state_changed", "incident.action",
      "incident.resolved", "job.completed",           "job.failed",             "job.cancelled"};
  return kTypes;
}

WebhookEventRecord NewWebhookEvent(std::string type, std::string tenant_id, const json& data, TimePoint now) {
  WebhookEventRecord e;
  e.event_id = "evt_" + crypto::RandomHex(8);
  e.tenant_id = std::move(tenant_id);
  e.type = std::move(type);
  e.payload_json = data.dump(-1, ' ', false, json::error_handler_t::replace);
  e.created_at = now;
  return e;
}

std::string WebhookBody(const WebhookEventRecord& event) {
  json data = json::parse(event.payload_json, nullptr, /*allow_exceptions=*/false);
  if (data.is_discarded()) data = json::object();
  json body = {{"id", event.event_id},
               {"type", event.type},
               {"tenant_id", event.tenant_id.empty() ? json(nullptr) : json(event.tenant_id)},
               {"created_at", FormatRfc3339(event.created_at)},
               {"data", std::move(data)}};
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string WebhookSignature(const SecretBytes& secret, int64_t unix_seconds, std::string_view body) {
  return "t=" + std::to_string(unix_seconds) + ",v1=" + HmacHex(secret, unix_seconds, body);
}

Status VerifyWebhookSignature(const SecretBytes& secret, std::string_view header, std::string_view body,
                              TimePoint now, std::chrono::seconds tolerance) {
  std::optional<int64_t> t;
  std::vector<std::string_view> macs;
  while (!header.empty()) {
    size_t comma = header.find(',');
    std::string_view part = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    if (part.substr(0, 2) == "t=") {
      int64_t v = 0;
      auto digits = part.substr(2);
      auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
      if (ec == std::errc() && ptr == digits.data() + digits.size()) t = v;
    } else if (part.substr(0, 3) == "v1=") {
      macs.push_back(part.substr(3));
    }
  }
  if (!t || macs.empty()) return InvalidArgumentError("malformed webhook signature header");
  if (std::llabs(UnixSeconds(now) - *t) > tolerance.count()) {
    return PermissionDeniedError("webhook signature timestamp is outside the tolerance");
  }
  const std::string expected = HmacHex(secret, *t, body);
  for (std::string_view mac : macs) {
    if (ConstantTimeEquals(mac, std::string_view(expected))) return Status::Ok();
  }
  return PermissionDeniedError("webhook signature does not match");
}

StatusOr<WebhookSecretBox> WebhookSecretBox::Create(SecretBytes key) {
  if (key.size() != kKeySize) {
    return InvalidArgumentError("webhook sealing key must be " + std::to_string(kKeySize) + " bytes");
  }
  return WebhookSecretBox(std::move(key));
}

StatusOr<std::string> WebhookSecretBox::Seal(const SecretBytes& secret, const std::string& webhook_id) const {
  ASSIGN_OR_RETURN(Bytes sealed,
                   crypto::Aes256GcmSeal(key_, secret.Reveal(SecretAccess::Grant()), crypto::AsBytes(webhook_id)));
  return crypto::Base64Encode(sealed);
}

StatusOr<SecretBytes> WebhookSecretBox::Open(const std::string& sealed, const std::string& webhook_id) const {
  auto bytes = crypto::Base64Decode(sealed);
  if (!bytes.ok()) return DataLossError("stored webhook secret of " + webhook_id + " is not base64");
  auto opened = crypto::Aes256GcmOpen(key_, *bytes, crypto::AsBytes(webhook_id));
  if (!opened.ok()) {
    return DataLossError("cannot unseal the secret of webhook " + webhook_id +
                         " (wrong webhook-secrets.key or altered row)");
  }
  return opened;
}

std::chrono::seconds WebhookBackoff(int64_t attempts, const WebhookOptions& options) {
  std::chrono::seconds delay = options.initial_backoff;
  for (int64_t i = 1; i < attempts && delay < options.max_backoff; ++i) delay *= 2;
  return std::min(delay, options.max_backoff);
}

Status ValidateWebhookUrl(const std::string& url, bool allow_http) {
  auto bad = [](const std::string& why) { return FieldError("url", "webhook url " + why); };
  if (url.size() > 2048) return bad("is longer than 2048 characters");
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return bad("contains spaces or control characters");
  }
  std::string_view rest;
  if (url.rfind("https://", 0) == 0) {
    rest = std::string_view(url).substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    if (!allow_http) return bad("must use https:// (plain http is disabled: webhook_allow_http)");
    rest = std::string_view(url).substr(7);
  } else {
    return bad("must start with https://");
  }
  if (url.find('#') != std::string::npos) return bad("must not contain a fragment");
  std::string_view authority = rest.substr(0, rest.find_first_of("/?"));
  if (authority.find('@') != std::string_view::npos) return bad("must not contain credentials");
  std::string_view host = authority;
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    if (close == std::string_view::npos) return bad("has an unterminated IPv6 address");
    host = host.substr(0, close + 1);
    authority.remove_prefix(close + 1);
  } else {
    size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    authority = colon == std::string_view::npos ? std::string_view() : authority.substr(colon);
  }
  if (host.empty()) return bad("has no host");
  if (!authority.empty()) {
    if (authority.front() != ':' || authority.size() < 2) return bad("has a malformed port");
    int port = 0;
    auto digits = authority.substr(1);
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (ec != std::errc() || ptr != digits.data() + digits.size() || port < 1 || port > 65535) {
      return bad("has a port outside 1..65535");
    }
  }
  return Status::Ok();
}

// --- WebhookService -------------------------------------------------------------

StatusOr<CreatedWebhook> WebhookService::Create(NewWebhook request) {
  RETURN_IF_ERROR(ValidateWebhookUrl(request.url, options_.allow_http));
  const auto& known = WebhookEventTypes();
  std::vector<std::string> types;
  for (const auto& t : request.event_types) {
    if (std::find(known.begin(), known.end(), t) == known.end()) {
      return FieldError("events", "unknown event type '" + t.substr(0, 64) + "'");
    }
    if (std::find(types.begin(), types.end(), t) == types.end()) types.push_back(t);
  }
  std::string filter;
  for (const auto& t : types) filter += (filter.empty() ? "" : ",") + t;
  SecretBytes secret;
  if (request.secret) {
    if (request.secret->size() < 16 || request.secret->size() > 256) {
      return FieldError("secret", "secret must be 16 to 256 bytes");
    }
    secret = std::move(*request.secret);
  } else {
    // Text form so receivers can paste it into configuration as-is.
    std::string text = "whsec_" + crypto::HexEncode(crypto::RandomSecret(32).Reveal(SecretAccess::Grant()));
    secret = SecretBytes::FromString(text, SecretAccess::Grant());
    std::fill(text.begin(), text.end(), '\0');
  }
  WebhookRecord rec;
  rec.webhook_id = "wh_" + crypto::RandomHex(8);
  rec.tenant_id = request.tenant_id;
  rec.url = request.url;
  ASSIGN_OR_RETURN(rec.secret_sealed, box_.Seal(secret, rec.webhook_id));
  rec.event_types = filter;
  rec.created_by = request.actor;
  rec.created_at = clock_.Now();
  RETURN_IF_ERROR(store_.InsertWebhook(rec));
  return CreatedWebhook{std::move(rec), std::move(secret)};
}

Status WebhookService::Disable(const std::string& webhook_id) {
  return store_.DisableWebhook(webhook_id, clock_.Now());
}

// --- WebhookDispatcher -----------------------------------------------------------

void WebhookDispatcher::Attempt(const DueWebhookDelivery& due) {
  WebhookDeliveryRecord result = due.delivery;
  result.attempts += 1;
  const std::string body = WebhookBody(due.event);
  TimePoint now = clock_.Now();
  std::optional<int> http_status;
  std::string error;
  auto secret = box_.Open(due.webhook.secret_sealed, due.webhook.webhook_id);
  if (!secret.ok()) {
    error = secret.status().message();
  } else {
    std::map<std::string, std::string> headers = {
        {"Content-Type", "application/json"},
        {kWebhookEventIdHeader, due.event.event_id},
        {kWebhookEventTypeHeader, due.event.type},
        {kWebhookAttemptHeader, std::to_string(result.attempts)},
        {kWebhookSignatureHeader, WebhookSignature(*secret, UnixSeconds(now), body)},
        {"User-Agent", "c2-concierge-webhooks/1"},
    };
    auto answer = transport_.Post(due.webhook.url, body, headers);
    if (answer.ok()) {
      http_status = *answer;
      if (*answer < 200 || *answer > 299) error = "receiver answered HTTP " + std::to_string(*answer);
    } else {
      error = answer.status().message();
    }
  }
  result.last_status = http_status.value_or(0);
  result.last_error = error.substr(0, kMaxErrorChars);
  bool delivered = error.empty();
  now = clock_.Now();
  if (delivered) {
    result.state = "delivered";
    result.delivered_at = now;
  } else if (result.attempts >= options_.max_attempts) {
    result.state = "failed";
  } else {
    result.state = "pending";
    result.next_attempt_at = now + WebhookBackoff(result.attempts, options_);
  }
  // If this write fails the lease still expires, and the delivery is retried:
  // at-least-once, never lost.
  store_.RecordWebhookAttempt(result).IgnoreError();
  std::lock_guard lock(mu_);
  ++stats_.attempts;
  if (delivered) ++stats_.delivered;
  if (result.state == "failed") ++stats_.failed;
}

StatusOr<int> WebhookDispatcher::RunOnce() {
  TimePoint now = clock_.Now();
  ASSIGN_OR_RETURN(std::vector<DueWebhookDelivery> due,
                   store_.ClaimWebhookDeliveries(now, now + options_.lease, options_.claim_batch));
  for (const auto& d : due) Attempt(d);
  return static_cast<int>(due.size());
}

void WebhookDispatcher::Start() {
  loop_.Start(
      [this] {
        // A full batch means more may be due right away.
        auto n = RunOnce();
        return n.ok() && *n >= options_.claim_batch;
      },
      options_.poll_interval);
}

void WebhookDispatcher::Stop() { loop_.Stop(); }

void WebhookDispatcher::Wake() { loop_.Wake(); }

WebhookDispatcherStats WebhookDispatcher::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace concierge::core
