// HttpServer: asynchronous HTTP/1.1 server (Boost.Beast/Asio) with keep-alive and
// N io threads. Beast is confined to http_server.cc; the rest of the server sees
// only HttpRequest / HttpResponse.
//
// The handler is called on an io thread for every complete request and must call
// `respond` exactly once, from any thread, possibly later (e.g. after a
// group commit). The server itself answers malformed HTTP with 400, bodies larger
// than max_body_bytes with 413 and unknown transfer problems by closing the
// connection; those replies are JSON {error, message, code, details}.
// Thread-safe: Start/Stop may be called from any thread.
#ifndef CONCIERGE_SERVER_HTTP_SERVER_H_
#define CONCIERGE_SERVER_HTTP_SERVER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "concierge/status.h"

namespace concierge::server {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // raw target: path + query
  std::string path;    // percent-decoded path without query
  std::map<std::string, std::string> query;    // decoded query parameters
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string remote_address;  // "127.0.0.1"

  // Header by lower-case name; empty when absent.
  std::string Header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
};

using Responder = std::function<void(HttpResponse)>;
using HttpHandler = std::function<void(HttpRequest&& request, Responder respond)>;

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8443;  // 0 = pick a free port (tests)
  int io_threads = 0;    // 0 = std::thread::hardware_concurrency()
  int io_thread_nice = 0;  // nice value each io thread sets for itself; 0 = unchanged
  size_t max_body_bytes = 1 << 20;
  size_t max_header_bytes = 16 << 10;
  int idle_timeout_seconds = 60;  // keep-alive connections idle longer are closed
};

class HttpServer {
 public:
  // Binds and listens immediately (so port() is known), but serves only after
  // Start(). Errors: kUnavailable when the address cannot be bound.
  static StatusOr<std::unique_ptr<HttpServer>> Create(const HttpServerOptions& options,
                                                      HttpHandler handler);
  ~HttpServer();  // stops and joins

  // Starts the io threads; returns immediately.
  void Start();
  // Stops accepting, closes connections, joins the io threads. Idempotent.
  void Stop();
  // The bound port (useful with port 0).
  uint16_t port() const;

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace concierge::server

#endif  // CONCIERGE_SERVER_HTTP_SERVER_H_
