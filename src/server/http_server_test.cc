#include "server/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "client/http_client.h"

namespace concierge::server {
namespace {

using client::HttpClient;
using client::HttpResult;

// A blocking loopback TCP connection for checks HttpClient cannot express
// (several responses on one connection, garbage bytes). Reads time out after
// 10 s so a server bug fails the test instead of hanging it.
class RawConnection {
 public:
  explicit RawConnection(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~RawConnection() {
    if (fd_ >= 0) close(fd_);
  }
  bool connected() const { return connected_; }

  bool Send(const std::string& data) {
    size_t sent = 0;
    while (sent < data.size()) {
      ssize_t n = send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }

  // Reads one response framed by Content-Length; returns "" on EOF/error.
  std::string ReadResponse() {
    size_t header_end;
    while ((header_end = pending_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) return "";
    }
    header_end += 4;
    size_t length = 0;
    std::string head = pending_.substr(0, header_end);
    for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (size_t pos = head.find("content-length:"); pos != std::string::npos) {
      length = std::stoul(head.substr(pos + 15));
    }
    while (pending_.size() < header_end + length) {
      if (!Fill()) return "";
    }
    std::string response = pending_.substr(0, header_end + length);
    pending_.erase(0, header_end + length);
    return response;
  }

  // Everything until the peer closes (or the read timeout).
  std::string ReadToEof() {
    while (Fill()) {
    }
    std::string all;
    all.swap(pending_);
    return all;
  }

  // True when the peer has closed the connection (EOF or reset).
  bool PeerClosed() {
    char c;
    ssize_t n = recv(fd_, &c, 1, 0);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  }

 private:
  bool Fill() {
    char buf[4096];
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    pending_.append(buf, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string pending_;
};

HttpResponse Text(std::string body, int status = 200) {
  HttpResponse response;
  response.status = status;
  response.content_type = "text/plain";
  response.body = std::move(body);
  return response;
}

std::unique_ptr<HttpServer> StartServer(HttpHandler handler, HttpServerOptions options = {}) {
  options.port = 0;
  if (options.io_threads == 0) options.io_threads = 2;
  auto server = HttpServer::Create(options, std::move(handler));
  if (!server.ok()) {
    ADD_FAILURE() << server.status().ToString();
    return nullptr;
  }
  (*server)->Start();
  return std::move(server).value();
}

std::string BaseUrl(const HttpServer& server) {
  return "http://127.0.0.1:" + std::to_string(server.port());
}

// Handler that remembers the last request and echoes its body back.
class Recorder {
 public:
  HttpHandler Handler() {
    return [this](HttpRequest&& request, Responder respond) {
      HttpResponse response = Text(request.method + " " + request.path + " " + request.body);
      response.headers.emplace_back("X-Echo", "yes");
      {
        std::lock_guard<std::mutex> lock(mu_);
        last_ = std::move(request);
      }
      respond(std::move(response));
    };
  }
  HttpRequest last() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_;
  }

 private:
  std::mutex mu_;
  HttpRequest last_;
};

TEST(HttpServerTest, GetAndPostRoundTrip) {
  Recorder recorder;
  auto server = StartServer(recorder.Handler());
  ASSERT_NE(server, nullptr);
  HttpClient client(BaseUrl(*server), "tok123");

  auto get = client.Get("/v1/health");
  ASSERT_TRUE(get.ok()) << get.status().ToString();
  EXPECT_EQ(get->status, 200);
  EXPECT_EQ(get->body, "GET /v1/health ");
  EXPECT_EQ(get->headers["server"], "keyctl");
  EXPECT_EQ(get->headers["content-type"], "text/plain");
  EXPECT_EQ(get->headers["x-echo"], "yes");
  EXPECT_EQ(recorder.last().Header("authorization"), "Bearer tok123");
  EXPECT_EQ(recorder.last().remote_address, "127.0.0.1");

  auto post = client.Post("/v1/sign", R"({"digest":"abc"})");
  ASSERT_TRUE(post.ok()) << post.status().ToString();
  EXPECT_EQ(post->status, 200);
  EXPECT_EQ(post->body, R"(POST /v1/sign {"digest":"abc"})");
  EXPECT_EQ(recorder.last().Header("content-type"), "application/json");
  EXPECT_EQ(recorder.last().body, R"({"digest":"abc"})");
}

TEST(HttpServerTest, HeaderNamesAreLowerCased) {
  Recorder recorder;
  auto server = StartServer(recorder.Handler());
  ASSERT_NE(server, nullptr);
  HttpClient client(BaseUrl(*server), "");
  auto result = client.Request("GET", "/h", "", {{"X-Custom-Header", "Mixed Value"}});
  ASSERT_TRUE(result.ok());
  HttpRequest seen = recorder.last();
  EXPECT_EQ(seen.Header("x-custom-header"), "Mixed Value");
  EXPECT_EQ(seen.headers.count("X-Custom-Header"), 0u);
  EXPECT_EQ(seen.Header("authorization"), "");  // empty token sends none
}

TEST(HttpServerTest, PathAndQueryAreDecoded) {
  Recorder recorder;
  auto server = StartServer(recorder.Handler());
  ASSERT_NE(server, nullptr);
  HttpClient client(BaseUrl(*server), "");
  auto result = client.Get("/a%20b?x=1&y=%2F&z=a+b");
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->status, 200);
  HttpRequest seen = recorder.last();
  EXPECT_EQ(seen.target, "/a%20b?x=1&y=%2F&z=a+b");
  EXPECT_EQ(seen.path, "/a b");
  EXPECT_EQ(seen.query.at("x"), "1");
  EXPECT_EQ(seen.query.at("y"), "/");
  EXPECT_EQ(seen.query.at("z"), "a b");
  EXPECT_EQ(seen.query.size(), 3u);
}

TEST(HttpServerTest, BadPercentEncodingIs400) {
  Recorder recorder;
  auto server = StartServer(recorder.Handler());
  ASSERT_NE(server, nullptr);
  HttpClient client(BaseUrl(*server), "");
  auto result = client.Get("/a%zz");
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->status, 400);
  EXPECT_NE(result->body.find("\"error\":\"bad_request\""), std::string::npos);
}

TEST(HttpServerTest, KeepAliveServesSequentialAndPipelinedRequestsOnOneConnection) {
  Recorder recorder;
  auto server = StartServer(recorder.Handler());
  ASSERT_NE(server, nullptr);
  RawConnection conn(server->port());
  ASSERT_TRUE(conn.connected());

  ASSERT_TRUE(conn.Send("GET /one HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string first = conn.ReadResponse();
  EXPECT_EQ(first.rfind("HTTP/1.1 200", 0), 0u) << first;
  EXPECT_NE(first.find("GET /one "), std::string::npos);
  ASSERT_TRUE(conn.Send("POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"));
  std::string second = conn.ReadResponse();
  EXPECT_EQ(second.rfind("HTTP/1.1 200", 0), 0u) << second;
  EXPECT_NE(second.find("POST /two abc"), std::string::npos);

  // Pipelined: both requests in one write; responses must come back in order.
  ASSERT_TRUE(conn.Send("GET /three HTTP/1.1\r\nHost: x\r\n\r\nGET /four HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_NE(conn.ReadResponse().find("GET /three "), std::string::npos);
  EXPECT_NE(conn.ReadResponse().find("GET /four "), std::string::npos);

  // Connection: close is honoured.
  ASSERT_TRUE(conn.Send("GET /five HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  std::string last = conn.ReadResponse();
  EXPECT_NE(last.find("GET /five "), std::string::npos);
  EXPECT_TRUE(conn.PeerClosed());
}

TEST(HttpServerTest, ResponderMayBeCalledLaterFromAnotherThread) {
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  std::promise<void> received;
  std::mutex mu;
  std::vector<std::thread> workers;
  std::atomic<int> calls{0};
  auto server = StartServer([&](HttpRequest&& request, Responder respond) {
    if (request.path != "/slow") return respond(Text("fast"));
    std::lock_guard<std::mutex> lock(mu);
    workers.emplace_back([gate, respond] {
      gate.wait();
      respond(Text("late"));
      respond(Text("second call must be ignored", 500));
    });
    if (calls++ == 0) received.set_value();
  });
  ASSERT_NE(server, nullptr);
  HttpClient client(BaseUrl(*server), "");
  auto pending = std::async(std::launch::async, [&client] { return client.Get("/slow"); });

  received.get_future().wait();
  EXPECT_EQ(pending.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);
  release.set_value();
  StatusOr<HttpResult> result = pending.get();
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->body, "late");

  // The ignored second call did not corrupt the connection.
  auto next = client.Get("/quick");
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->status, 200);
  EXPECT_EQ(next->body, "fast");
  std::lock_guard<std::mutex> lock(mu);
  for (auto& t : workers) t.join();
}

TEST(HttpServerTest, OversizedBodyIs413Json) {
  Recorder recorder;
  HttpServerOptions options;
  options.max_body_bytes = 1024;
  auto server = StartServer(recorder.Handler(), options);
  ASSERT_NE(server, nullptr);
  HttpClient client(BaseUrl(*server), "");

  auto at_limit = client.Post("/p", std::string(1024, 'x'));
  ASSERT_TRUE(at_limit.ok());
  EXPECT_EQ(at_limit->status, 200);

  auto too_big = client.Post("/p", std::string(64 * 1024, 'x'));
  ASSERT_TRUE(too_big.ok()) << too_big.status().ToString();
  EXPECT_EQ(too_big->status, 413);
  EXPECT_EQ(too_big->headers["content-type"], "application/json");
  EXPECT_EQ(too_big->body,
            R"({"error":"payload_too_large","message":"request body exceeds 1024 bytes",)"
            R"("code":413,"details":{}})");

  auto after = client.Get("/still-up");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->status, 200);
}

TEST(HttpServerTest, OversizedHeaderIs431) {
  Recorder recorder;
  HttpServerOptions options;
  options.max_header_bytes = 1024;
  auto server = StartServer(recorder.Handler(), options);
  ASSERT_NE(server, nullptr);
  HttpClient client(BaseUrl(*server), "");
  auto result = client.Request("GET", "/", "", {{"X-Big", std::string(4096, 'y')}});
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->status, 431);
}

TEST(HttpServerTest, GarbageIs400AndServerKeepsServing) {
  Recorder recorder;
  auto server = StartServer(recorder.Handler());
  ASSERT_NE(server, nullptr);
  {
    RawConnection conn(server->port());
    ASSERT_TRUE(conn.connected());
    ASSERT_TRUE(conn.Send("NOT HTTP\r\n\r\n"));
    std::string reply = conn.ReadToEof();
    EXPECT_EQ(reply.rfind("HTTP/1.1 400", 0), 0u) << reply;
    EXPECT_NE(reply.find("Content-Type: application/json"), std::string::npos);
    EXPECT_NE(reply.find(R"({"error":"bad_request","message":")"), std::string::npos);
    EXPECT_NE(reply.find(R"("code":400,"details":{}})"), std::string::npos);
  }
  HttpClient client(BaseUrl(*server), "");
  auto result = client.Get("/ok");
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->status, 200);
}

TEST(HttpServerTest, ThrowingHandlerIs500WithoutDetails) {
  auto server = StartServer([](HttpRequest&&, Responder) {
    throw std::runtime_error("secret internal detail");
  });
  ASSERT_NE(server, nullptr);
  HttpClient client(BaseUrl(*server), "");
  for (int i = 0; i < 2; ++i) {  // the connection survives
    auto result = client.Get("/boom");
    ASSERT_TRUE(result.ok());
    EXPECT_EQ(result->status, 500);
    EXPECT_EQ(result->body,
              R"({"error":"internal","message":"internal error","code":500,"details":{}})");
  }
}

TEST(HttpServerTest, ManyConcurrentClients) {
  auto server = StartServer([](HttpRequest&& request, Responder respond) {
    respond(Text(request.body));
  });
  ASSERT_NE(server, nullptr);
  constexpr int kClients = 50;
  constexpr int kRequests = 20;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      HttpClient client(BaseUrl(*server), "");
      for (int r = 0; r < kRequests; ++r) {
        std::string body = "{\"c\":" + std::to_string(c) + ",\"r\":" + std::to_string(r) + "}";
        auto result = client.Post("/echo", body);
        if (result.ok() && result->status == 200 && result->body == body) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kClients * kRequests);
}

// The acceptor lives on lane 0. Connections that queue in the backlog while
// that lane is busy are taken in one burst when it wakes (DoAccept), dealt to
// both lanes in turn, and every one is served.
TEST(HttpServerTest, BacklogQueuedWhileLaneZeroIsBusyIsAllServedOnBothLanes) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::mutex mu;
  std::set<std::thread::id> serving_threads;
  auto server = StartServer([&](HttpRequest&& request, Responder respond) {
    if (request.path == "/block") released.wait();  // holds lane 0, and with it the acceptor
    {
      std::lock_guard<std::mutex> lock(mu);
      if (request.path != "/block") serving_threads.insert(std::this_thread::get_id());
    }
    respond(Text("ok"));
  });
  ASSERT_NE(server, nullptr);
  RawConnection blocker(server->port());  // the first connection goes to lane 0
  ASSERT_TRUE(blocker.connected());
  ASSERT_TRUE(blocker.Send("GET /block HTTP/1.1\r\nHost: x\r\n\r\n"));
  constexpr int kQueued = 200;
  std::vector<std::unique_ptr<RawConnection>> queued;
  for (int i = 0; i < kQueued; ++i) {
    queued.push_back(std::make_unique<RawConnection>(server->port()));
    ASSERT_TRUE(queued.back()->connected()) << i;  // completed by the kernel, into the backlog
    ASSERT_TRUE(queued.back()->Send("GET /q HTTP/1.1\r\nHost: x\r\n\r\n")) << i;
  }
  release.set_value();
  EXPECT_NE(blocker.ReadResponse().find("200 OK"), std::string::npos);
  int answered = 0;
  for (auto& c : queued) answered += c->ReadResponse().find("200 OK") != std::string::npos;
  EXPECT_EQ(answered, kQueued);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(serving_threads.size(), 2u);
}

TEST(HttpServerTest, StopWithOpenIdleConnectionReturnsPromptly) {
  Recorder recorder;
  HttpServerOptions options;
  options.idle_timeout_seconds = 60;
  auto server = StartServer(recorder.Handler(), options);
  ASSERT_NE(server, nullptr);
  RawConnection conn(server->port());
  ASSERT_TRUE(conn.Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_NE(conn.ReadResponse(), "");  // now idle in keep-alive

  auto start = std::chrono::steady_clock::now();
  server->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_TRUE(conn.PeerClosed());
  server->Stop();  // idempotent
  server->Start();  // no restart after Stop
}

TEST(HttpServerTest, ResponderOutlivingServerIsHarmless) {
  std::promise<Responder> stash;
  bool stashed = false;
  auto server = StartServer([&](HttpRequest&&, Responder respond) {
    if (!stashed) {
      stashed = true;
      stash.set_value(std::move(respond));
    }
  });
  ASSERT_NE(server, nullptr);
  HttpClient client(BaseUrl(*server), "", 10);
  auto pending = std::async(std::launch::async, [&client] { return client.Get("/never"); });
  Responder respond = stash.get_future().get();
  server.reset();  // stops while the request is still unanswered
  EXPECT_FALSE(pending.get().ok());  // connection closed without an HTTP answer
  respond(Text("too late"));          // must not crash or touch freed memory
}

TEST(HttpServerTest, IdleKeepAliveConnectionIsClosedAfterTimeout) {
  Recorder recorder;
  HttpServerOptions options;
  options.idle_timeout_seconds = 1;
  auto server = StartServer(recorder.Handler(), options);
  ASSERT_NE(server, nullptr);
  RawConnection conn(server->port());
  ASSERT_TRUE(conn.Send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_NE(conn.ReadResponse(), "");
  // Blocks until the server gives up on the idle connection (read timeout 10 s).
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(conn.ReadToEof(), "");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(HttpServerTest, InvalidResponseHeaderBecomes500) {
  auto server = StartServer([](HttpRequest&&, Responder respond) {
    HttpResponse response = Text("x");
    response.headers.emplace_back("X-Huge", std::string(70000, 'h'));  // beast limit is 64 KiB
    respond(std::move(response));
  });
  ASSERT_NE(server, nullptr);
  HttpClient client(BaseUrl(*server), "");
  auto result = client.Get("/");
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->status, 500);
}

TEST(HttpServerTest, HandlerMayCallStop) {
  std::unique_ptr<HttpServer> server;
  server = StartServer([&server](HttpRequest&&, Responder respond) {
    server->Stop();  // must neither deadlock nor throw on an io thread
    respond(Text("bye"));
  });
  ASSERT_NE(server, nullptr);
  HttpClient client(BaseUrl(*server), "", 10);
  auto result = client.Get("/shutdown");
  EXPECT_FALSE(result.ok());  // stopped before the answer could be written
  server->Stop();             // completes the join from a non-io thread
  server.reset();
}

TEST(HttpServerTest, StopWithoutStartAndDestroy) {
  auto server = HttpServer::Create({.host = "127.0.0.1", .port = 0}, [](HttpRequest&&, Responder) {});
  ASSERT_TRUE(server.ok());
  EXPECT_NE((*server)->port(), 0);
  (*server)->Stop();
}

TEST(HttpServerTest, PortInUseIsUnavailable) {
  Recorder recorder;
  auto first = StartServer(recorder.Handler());
  ASSERT_NE(first, nullptr);
  HttpServerOptions options;
  options.port = first->port();
  auto second = HttpServer::Create(options, recorder.Handler());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
  const std::string prefix = "cannot listen on 127.0.0.1:" + std::to_string(first->port()) + ": ";
  EXPECT_EQ(second.status().message().rfind(prefix, 0), 0u) << second.status().message();
}

}  // namespace
}  // namespace concierge::server
