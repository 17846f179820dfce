#include "server/webhook_transport.h"

#include "client/http_client.h"

namespace concierge::server {

StatusOr<int> CurlWebhookTransport::Post(const std::string& url, const std::string& body,
                                         const std::map<std::string, std::string>& headers) {
  // The whole URL is the base; the request path is empty.
  client::HttpClient http(url, /*bearer_token=*/"", timeout_seconds_);
  ASSIGN_OR_RETURN(client::HttpResult result, http.Request("POST", "", body, headers));
  return result.status;
}

}  // namespace concierge::server
