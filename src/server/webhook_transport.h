// CurlWebhookTransport: delivers webhook POSTs over libcurl (client::HttpClient),
// one connection per attempt, no redirects followed (a webhook URL that
// redirects is a misconfiguration, and following it would send signed events
// somewhere nobody registered). TLS peers are verified. Thread-safe: every
// call uses its own client.
#ifndef CONCIERGE_SERVER_WEBHOOK_TRANSPORT_H_
#define CONCIERGE_SERVER_WEBHOOK_TRANSPORT_H_

#include <map>
#include <string>

#include "core/webhook.h"

namespace concierge::server {

class CurlWebhookTransport : public core::WebhookTransport {
 public:
  explicit CurlWebhookTransport(int timeout_seconds) : timeout_seconds_(timeout_seconds) {}
  StatusOr<int> Post(const std::string& url, const std::string& body,
                     const std::map<std::string, std::string>& headers) override;

 private:
  int timeout_seconds_;
};

}  // namespace concierge::server

#endif  // CONCIERGE_SERVER_WEBHOOK_TRANSPORT_H_
