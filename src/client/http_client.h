// HttpClient: small blocking HTTP/1.1 client on libcurl, used by the CLI and by
// tests that drive the server over real loopback HTTP. Keeps one connection alive
// between calls. Not thread-safe: use one client per thread.
#ifndef CONCIERGE_CLIENT_HTTP_CLIENT_H_
#define CONCIERGE_CLIENT_HTTP_CLIENT_H_

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "concierge/status.h"

namespace concierge::client {

struct HttpResult {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // names lower-cased
};

class HttpClient {
 public:
  // base_url like "http://127.0.0.1:8443"; bearer token may be empty.
  HttpClient(std::string base_url, std::string bearer_token, int timeout_seconds = 30);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // kUnavailable "cannot reach <url>: <curl reason>" when no HTTP answer came back.
  // Any HTTP status (including 4xx/5xx) is a successful result.
  StatusOr<HttpResult> Request(const std::string& method, const std::string& path,
                               const std::string& body = "",
                               const std::map<std::string, std::string>& extra_headers = {});
  StatusOr<HttpResult> Get(const std::string& path) { return Request("GET", path); }
  StatusOr<HttpResult> Post(const std::string& path, const std::string& json) {
    return Request("POST", path, json);
  }

  const std::string& base_url() const { return base_url_; }

 private:
  std::string base_url_;
  std::string token_;
  int timeout_seconds_;
  void* curl_ = nullptr;  // CURL*, kept opaque so callers need no curl headers
};

// Percent-encodes a query parameter value (RFC 3986: everything but
// unreserved characters).
std::string QueryEscape(std::string_view value);

}  // namespace concierge::client

#endif  // CONCIERGE_CLIENT_HTTP_CLIENT_H_
