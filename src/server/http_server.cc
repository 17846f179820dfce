// The only translation unit that includes Boost.Beast: it is slow to compile, so
// the rest of the server talks to HttpRequest / HttpResponse instead.
//
// Shape: N io threads, each running its own io_context (an IoLane: its own
// epoll set and handler queue); the acceptor (on lane 0) chains one accept at a
// time and hands connections to the lanes in turn. A session lives on one lane,
// so its handlers never run concurrently and need no strand. One io_context
// shared by N threads was measured to spend several microseconds per request
// contending on its scheduler lock (futex wait/wake on every handler), more
// than the strand bookkeeping and epoll wake-ups it balanced. A session reads
// exactly one request, hands it to the user handler and reads the next request
// only after the response has been written (this also makes pipelining safe).
// Responses given from other threads are queued and written in bursts by one
// drain handler per lane (see IoLane::deliveries).
//
// Lifetime: everything the io threads and the responders touch lives in a
// ServerCore held by shared_ptr. Sessions and in-flight responders keep the core
// (and with it the io_context their sockets belong to) alive, so a responder that
// is called after the HttpServer is gone is harmless: it sees `stopping` and
// drops the response.
#include "server/http_server.h"

#include <pthread.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <limits>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <unordered_map>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "concierge/thread_priority.h"

namespace concierge::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// After an error reply we stop sending but keep reading (and discarding) for a
// short while before closing. Closing a socket with unread input makes the
// kernel send RST, which can destroy our 413/400 reply before the client has
// read it (typical when a client is still uploading an oversized body).
constexpr std::chrono::seconds kLingerTimeout{2};
// Back-off after a failed accept (e.g. EMFILE) so we do not spin on the error.
constexpr std::chrono::milliseconds kAcceptBackoff{50};

std::string JsonEscape(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (char c : in) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out += kHex[(c >> 4) & 0xf];
          out += kHex[c & 0xf];
        } else {
          out += c;
        }
    }
  }
  return out;
}

// Same shape as the API's Status-derived error bodies so clients parse one format.
std::string ErrorJson(std::string_view error, std::string_view message, int code) {
  return "{\"error\":\"" + JsonEscape(error) + "\",\"message\":\"" + JsonEscape(message) +
         "\",\"code\":" + std::to_string(code) + ",\"details\":{}}";
}

HttpResponse InternalErrorResponse() {
  HttpResponse response;
  response.status = 500;
  // Deliberately no exception text: it may describe internals or key material.
  response.body = ErrorJson(StatusCodeName(StatusCode::kInternal), "internal error", 500);
  return response;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Rejects truncated or non-hex escapes and NUL bytes rather than guessing: a
// lenient decoder is how two components end up disagreeing about a path.
bool PercentDecode(std::string_view in, bool plus_is_space, std::string* out) {
  out->clear();
  out->reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = HexValue(in[i + 1]);
      int lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      c = ' ';
    }
    if (c == '\0') return false;
    out->push_back(c);
  }
  return true;
}

// Splits an origin-form (or absolute-form) target into a decoded path and
// decoded query parameters. For repeated keys the first occurrence wins.
bool ParseTarget(std::string_view target, std::string* path,
                 std::map<std::string, std::string>* query) {
  // RFC 9112 says servers must accept absolute-form; keep only path + query.
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.substr(0, scheme.size()) == scheme) {
      size_t slash = target.find('/', scheme.size());
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
      break;
    }
  }
  if (target.empty() || target.front() != '/') return false;
  if (size_t hash = target.find('#'); hash != std::string_view::npos) {
    target = target.substr(0, hash);
  }
  size_t qmark = target.find('?');
  if (!PercentDecode(target.substr(0, qmark), /*plus_is_space=*/false, path)) return false;
  if (qmark == std::string_view::npos) return true;
  std::string_view rest = target.substr(qmark + 1);
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    std::string key;
    std::string value;
    if (!PercentDecode(pair.substr(0, eq), true, &key)) return false;
    if (eq != std::string_view::npos && !PercentDecode(pair.substr(eq + 1), true, &value)) {
      return false;
    }
    query->emplace(std::move(key), std::move(value));
  }
  return true;
}

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Header values from handlers must not be able to split the response.
bool SafeHeaderText(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

class Session;

struct Delivery {
  std::shared_ptr<Session> session;
  HttpResponse response;
  bool keep_alive;
  unsigned version;
};

// One io thread's share of the server: its own io_context, run by exactly that
// thread (concurrency hint 1), and the responses other threads queued for its
// sessions.
struct IoLane {
  IoLane() : ioc(1) {}

  asio::io_context ioc;
  // Responses from threads other than this lane's (the ledger writer answers a
  // whole group commit in one burst) wait here for one drain handler: one post
  // and one wake-up per burst instead of per response. Each wake-up is a futex
  // call plus a context switch, several microseconds on a VM.
  std::mutex mu;  // guards the three fields below
  std::vector<Delivery> deliveries;
  bool drain_posted = false;
  bool closed = false;  // set by Stop() after the threads are joined: drop, don't queue
};

// The lane whose io_context the calling thread runs, if any.
thread_local const IoLane* tls_io_lane = nullptr;

std::vector<std::unique_ptr<IoLane>> MakeLanes(int n) {
  std::vector<std::unique_ptr<IoLane>> lanes;
  for (int i = 0; i < n; ++i) lanes.push_back(std::make_unique<IoLane>());
  return lanes;
}

// State shared by the server object, the io threads, every session and every
// outstanding responder. See the file comment for why it is reference counted.
struct ServerCore {
  ServerCore(const HttpServerOptions& opts, HttpHandler h, int threads)
      : options(opts), handler(std::move(h)), lanes(MakeLanes(threads)) {}

  const HttpServerOptions options;
  // Called only on io threads; cleared by Stop() once they are joined, so the
  // handler's captures are released even if a responder outlives the server.
  HttpHandler handler;

  std::atomic<bool> stopping{false};
  // Guards `sessions`.
  std::mutex mu;
  std::unordered_map<uint64_t, std::weak_ptr<Session>> sessions;
  uint64_t next_session_id = 0;

  // Declared after the fields above so they are destroyed first: destroying an
  // io_context destroys queued handlers, which may touch `mu`/`sessions`.
  std::vector<std::unique_ptr<IoLane>> lanes;
  size_t next_lane = 0;  // used only by the accept chain
  tcp::acceptor acceptor{lanes[0]->ioc};
  asio::steady_timer accept_backoff{lanes[0]->ioc};
};

// One TCP connection. All members are used only on its lane's thread, except
// Deliver() (any thread) and Close() (also from Stop() once io threads are joined).
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<ServerCore> core, IoLane* lane, tcp::socket socket)
      : core_(std::move(core)), lane_(lane), executor_(socket.get_executor()), stream_(std::move(socket)) {
    beast::error_code ec;
    tcp::endpoint remote = stream_.socket().remote_endpoint(ec);
    if (!ec) remote_address_ = remote.address().to_string();
  }

  ~Session() {
    std::lock_guard<std::mutex> lock(core_->mu);
    core_->sessions.erase(id_);
  }

  void Start() {
    {
      std::lock_guard<std::mutex> lock(core_->mu);
      id_ = core_->next_session_id++;
      core_->sessions.emplace(id_, weak_from_this());
    }
    asio::dispatch(executor_, [self = shared_from_this()] { self->DoRead(); });
  }

  // Any thread. Queues the response for the session's lane unless the server stops.
  void Deliver(HttpResponse response, bool keep_alive, unsigned version);

  // On the lane's thread (a drain handler, which runs on the session's own
  // io_context): writes now.
  void WriteOnLane(HttpResponse response, bool keep_alive, unsigned version) {
    Write(std::move(response), keep_alive, version);
  }

  void Close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();  // also cancels the stream's timeout timer
  }

 private:
  enum class AfterWrite { kReadNext, kClose, kLingerClose };

  void DoRead() {
    if (core_->stopping.load()) return Close();
    parser_.emplace();
    parser_->body_limit(static_cast<std::uint64_t>(core_->options.max_body_bytes));
    parser_->header_limit(static_cast<std::uint32_t>(std::min<size_t>(
        core_->options.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
    stream_.expires_after(std::chrono::seconds(core_->options.idle_timeout_seconds));
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->OnRead(ec);
                     });
  }

  void OnRead(beast::error_code ec) {
    if (core_->stopping.load()) return Close();
    if (ec == http::error::body_limit) {
      return WriteError(413, "payload_too_large",
                        "request body exceeds " +
                            std::to_string(core_->options.max_body_bytes) + " bytes");
    }
    if (ec == http::error::header_limit) {
      return WriteError(431, "header_too_large",
                        "request header exceeds " +
                            std::to_string(core_->options.max_header_bytes) + " bytes");
    }
    // Client went away (cleanly or mid-message), idle timeout, socket errors:
    // nobody to answer.
    if (ec == http::error::end_of_stream || ec == http::error::partial_message ||
        ec == http::error::short_read) {
      return Close();
    }
    if (ec && ec.category() == http::make_error_code(http::error::bad_method).category()) {
      return WriteError(400, "bad_request", "malformed HTTP request: " + ec.message());
    }
    if (ec) return Close();
    stream_.expires_never();  // the handler may take long; not the client's fault
    Dispatch(parser_->release());
  }

  void Dispatch(http::request<http::string_body>&& req) {
    HttpRequest request;
    request.method = std::string(req.method_string());
    request.target = std::string(req.target());
    if (!ParseTarget(request.target, &request.path, &request.query)) {
      return WriteError(400, "bad_request", "malformed request target");
    }
    for (const auto& field : req) {
      std::string name = ToLower(field.name_string());
      auto [it, inserted] = request.headers.emplace(name, std::string(field.value()));
      // RFC 9110 5.3: repeated fields are equivalent to one comma-joined field.
      if (!inserted) it->second.append(", ").append(field.value());
    }
    request.body = std::move(req.body());
    request.remote_address = remote_address_;

    struct ResponderState {
      std::shared_ptr<Session> session;  // pins the connection until answered
      bool keep_alive;
      unsigned version;
      std::atomic<bool> used{false};
    };
    auto state = std::make_shared<ResponderState>();
    state->session = shared_from_this();
    state->keep_alive = req.keep_alive();
    state->version = req.version();
    Responder respond = [state](HttpResponse response) {
      if (state->used.exchange(true)) return;  // a second call is ignored
      // Only the first caller gets here, so moving out is race-free; it also
      // stops stray responder copies from pinning the session.
      std::shared_ptr<Session> session = std::move(state->session);
      session->Deliver(std::move(response), state->keep_alive, state->version);
    };
    try {
      core_->handler(std::move(request), respond);
    } catch (...) {
      respond(InternalErrorResponse());  // no-op if the handler already answered
    }
  }

  void Write(HttpResponse response, bool keep_alive, unsigned version) {
    if (core_->stopping.load()) return Close();
    if (response.status < 100 || response.status > 999) response = InternalErrorResponse();
    if (BuildPlainResponse(response, keep_alive, version)) {
      return StartWrite(AfterWrite::kReadNext, /*plain=*/true);
    }
    try {
      BuildResponse(std::move(response), keep_alive, version);
    } catch (const std::exception&) {
      // Beast rejects e.g. oversized header fields by throwing; answer 500
      // rather than letting the exception escape into the io loop.
      BuildResponse(InternalErrorResponse(), keep_alive, version);
    }
    StartWrite(keep_alive ? AfterWrite::kReadNext : AfterWrite::kClose);
  }

  // The common reply (200, HTTP/1.1, keep-alive, ordinary headers) written by
  // hand into one buffer, with the bytes Beast writes for it: status line,
  // Server, Content-Type, the extra headers in order, Content-Length. Beast's
  // header container and serializer cost several allocations and buffer walks
  // per response on the durable sign path. Anything unusual returns false and
  // goes through Beast.
  bool BuildPlainResponse(const HttpResponse& response, bool keep_alive, unsigned version) {
    if (response.status != 200 || version != 11 || !keep_alive || !SafeHeaderText(response.content_type)) {
      return false;
    }
    auto ordinary = [](std::string_view text) {
      return !text.empty() && text.size() < 1024 && SafeHeaderText(text) && text.front() != ' ' &&
             text.front() != '\t' && text.back() != ' ' && text.back() != '\t';
    };
    for (const auto& [name, value] : response.headers) {
      if (!ordinary(name) || !ordinary(value) || name.find_first_of(": \t") != std::string::npos) return false;
      const std::string lower = ToLower(name);
      if (lower == "content-length" || lower == "transfer-encoding" || lower == "connection" ||
          lower == "server" || lower == "content-type") {
        return false;
      }
    }
    plain_.clear();
    plain_.reserve(160 + response.body.size());
    plain_ += "HTTP/1.1 200 OK\r\nServer: keyctl\r\n";
    if (!response.content_type.empty()) plain_.append("Content-Type: ").append(response.content_type).append("\r\n");
    for (const auto& [name, value] : response.headers) plain_.append(name).append(": ").append(value).append("\r\n");
    plain_.append("Content-Length: ").append(std::to_string(response.body.size())).append("\r\n\r\n");
    plain_ += response.body;
    return true;
  }

  void BuildResponse(HttpResponse response, bool keep_alive, unsigned version) {
    response_ = {};
    response_.version(version);
    response_.result(static_cast<unsigned>(response.status));
    response_.set(http::field::server, "keyctl");
    if (!response.content_type.empty() && SafeHeaderText(response.content_type)) {
      response_.set(http::field::content_type, response.content_type);
    }
    for (const auto& [name, value] : response.headers) {
      if (name.empty() || !SafeHeaderText(name) || !SafeHeaderText(value)) continue;
      response_.insert(name, value);
    }
    response_.body() = std::move(response.body);
    response_.keep_alive(keep_alive);
    response_.prepare_payload();
  }

  // Server-generated error reply; the connection's framing can no longer be
  // trusted, so it is always closed afterwards.
  void WriteError(unsigned status, std::string_view error, std::string_view message) {
    response_ = {};
    response_.version(11);
    response_.result(status);
    response_.set(http::field::server, "keyctl");
    response_.set(http::field::content_type, "application/json");
    response_.body() = ErrorJson(error, message, static_cast<int>(status));
    response_.keep_alive(false);
    response_.prepare_payload();
    StartWrite(AfterWrite::kLingerClose);
  }

  void StartWrite(AfterWrite after, bool plain = false) {
    // A client that stops reading must not hold the session forever.
    stream_.expires_after(std::chrono::seconds(core_->options.idle_timeout_seconds));
    if (plain) {
      asio::async_write(stream_, asio::buffer(plain_),
                        [self = shared_from_this(), after](beast::error_code ec, size_t) {
                          self->OnWrite(ec, after);
                        });
      return;
    }
    http::async_write(stream_, response_,
                      [self = shared_from_this(), after](beast::error_code ec, size_t) {
                        self->OnWrite(ec, after);
                      });
  }

  void OnWrite(beast::error_code ec, AfterWrite after) {
    if (ec || core_->stopping.load()) return Close();
    switch (after) {
      case AfterWrite::kReadNext:
        return DoRead();
      case AfterWrite::kClose:
        return Close();
      case AfterWrite::kLingerClose: {
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        stream_.expires_after(kLingerTimeout);
        return Drain();
      }
    }
  }

  void Drain() {
    stream_.async_read_some(asio::buffer(drain_buffer_),
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              if (ec || self->core_->stopping.load()) return self->Close();
                              self->Drain();
                            });
  }

  // core_ is declared first so it is destroyed last: stream_'s destructor needs
  // the io_context that core_ owns.
  std::shared_ptr<ServerCore> core_;
  IoLane* lane_;  // owned by core_
  uint64_t id_ = 0;
  asio::any_io_executor executor_;  // the lane's; copied so Deliver need not touch stream_
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> response_;  // must outlive async_write
  std::string plain_;  // BuildPlainResponse's bytes; must outlive async_write
  std::string remote_address_;
  std::array<char, 4096> drain_buffer_;
};

void DrainDeliveries(IoLane* lane) {
  std::vector<Delivery> batch;
  {
    std::lock_guard<std::mutex> lock(lane->mu);
    batch.swap(lane->deliveries);
    lane->drain_posted = false;
  }
  for (Delivery& d : batch) d.session->WriteOnLane(std::move(d.response), d.keep_alive, d.version);
}

void Session::Deliver(HttpResponse response, bool keep_alive, unsigned version) {
  if (core_->stopping.load()) return;
  if (tls_io_lane == lane_) {
    // Answered on the lane's own thread (refusals, reads): nothing to batch.
    // Posted, not dispatched, so the write never runs inside the handler
    // call. Stop() joins this thread before it polls, so the post is run.
    asio::post(executor_, [self = shared_from_this(), response = std::move(response), keep_alive,
                           version]() mutable {
      self->Write(std::move(response), keep_alive, version);
    });
    return;
  }
  std::lock_guard<std::mutex> lock(lane_->mu);
  if (lane_->closed) return;
  lane_->deliveries.push_back(Delivery{shared_from_this(), std::move(response), keep_alive, version});
  if (lane_->drain_posted) return;
  lane_->drain_posted = true;
  // Raw pointer: the handler runs on the lane's io_context, which the lane
  // owns; a shared_ptr here would be a cycle through the queue.
  asio::post(lane_->ioc, [lane = lane_] { DrainDeliveries(lane); });
}

void StartSession(const std::shared_ptr<ServerCore>& core, IoLane* lane, tcp::socket socket) {
  beast::error_code ignored;
  // Without this, small responses wait on delayed ACKs (~40 ms stalls).
  socket.set_option(tcp::no_delay(true), ignored);
  std::make_shared<Session>(core, lane, std::move(socket))->Start();
}

// At most this many connections are taken from the backlog per wake-up, so a
// flood of connects cannot hold lane 0 away from its requests for long.
constexpr int kAcceptBurst = 256;

void DoAccept(const std::shared_ptr<ServerCore>& core) {
  // Connections go to the lanes in turn; the acceptor itself only ever has one
  // operation outstanding.
  IoLane* lane = core->lanes[core->next_lane++ % core->lanes.size()].get();
  core->acceptor.async_accept(
      lane->ioc, [core, lane](beast::error_code ec, tcp::socket socket) {
        if (core->stopping.load() || ec == asio::error::operation_aborted) return;
        if (ec) {
          core->accept_backoff.expires_after(kAcceptBackoff);
          core->accept_backoff.async_wait([core](beast::error_code wait_ec) {
            if (!wait_ec && !core->stopping.load()) DoAccept(core);
          });
          return;
        }
        StartSession(core, lane, std::move(socket));
        // One accept per reactor round is far too slow when lane 0 is busy
        // signing: 1000 clients connecting at once waited seconds in the
        // backlog and timed out. Take what is already queued, then wait again.
        for (int i = 0; i < kAcceptBurst; ++i) {
          IoLane* next = core->lanes[core->next_lane % core->lanes.size()].get();
          beast::error_code accept_ec;
          tcp::socket more = core->acceptor.accept(next->ioc, accept_ec);
          if (accept_ec) break;  // would_block: the backlog is empty (other errors: the async path reports them)
          ++core->next_lane;
          StartSession(core, next, std::move(more));
        }
        DoAccept(core);
      });
}

}  // namespace

struct HttpServer::Impl {
  std::shared_ptr<ServerCore> core;
  uint16_t port = 0;
  int thread_count = 1;

  std::mutex mu;  // guards the fields below; never held while joining
  bool started = false;
  bool stop_requested = false;
  std::vector<std::thread> threads;
  std::vector<std::thread::id> thread_ids;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work;  // one per lane

  // Serialises the blocking part of Stop() so a second caller waits for the first.
  std::mutex join_mu;
  bool cleaned_up = false;  // guarded by join_mu
};

StatusOr<std::unique_ptr<HttpServer>> HttpServer::Create(const HttpServerOptions& options,
                                                         HttpHandler handler) {
  if (!handler) return InvalidArgumentError("http server needs a handler");
  int threads = options.io_threads > 0 ? options.io_threads
                                       : static_cast<int>(std::thread::hardware_concurrency());
  if (threads <= 0) threads = 1;
  auto impl = std::make_unique<Impl>();
  impl->thread_count = threads;
  impl->core = std::make_shared<ServerCore>(options, std::move(handler), threads);
  ServerCore& core = *impl->core;

  auto fail = [&](const beast::error_code& ec) {
    return UnavailableError("cannot listen on " + options.host + ":" +
                            std::to_string(options.port) + ": " + ec.message());
  };
  beast::error_code ec;
  tcp::resolver resolver(core.lanes[0]->ioc);
  auto results = resolver.resolve(options.host, std::to_string(options.port),
                                  tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec) return fail(ec);
  if (results.empty()) return fail(asio::error::host_not_found);
  tcp::endpoint endpoint = results.begin()->endpoint();
  core.acceptor.open(endpoint.protocol(), ec);
  if (ec) return fail(ec);
  core.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) return fail(ec);
  core.acceptor.bind(endpoint, ec);
  if (ec) return fail(ec);
  core.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail(ec);
  // DoAccept drains the backlog with synchronous accepts that must return
  // would_block instead of waiting when it is empty.
  core.acceptor.non_blocking(true, ec);
  if (ec) return fail(ec);
  impl->port = core.acceptor.local_endpoint(ec).port();
  if (ec) return fail(ec);
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() {
  Stop();
  // Only when the server is destroyed from one of its own io threads can
  // threads remain; they hold the core alive and exit on their own.
  std::lock_guard<std::mutex> lock(impl_->mu);
  for (std::thread& t : impl_->threads) {
    if (t.joinable()) t.detach();
  }
}

void HttpServer::Start() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (impl_->started || impl_->stop_requested) return;
  impl_->started = true;
  std::shared_ptr<ServerCore> core = impl_->core;
  for (auto& lane : core->lanes) impl_->work.emplace_back(lane->ioc.get_executor());
  DoAccept(core);
  for (int i = 0; i < impl_->thread_count; ++i) {
    impl_->threads.emplace_back([core, lane = core->lanes[i].get(), i] {
      tls_io_lane = lane;
      // Named for top -H, perf and gdb (15 characters at most).
      pthread_setname_np(pthread_self(), ("http-io-" + std::to_string(i)).substr(0, 15).c_str());
      // Lowering one's own priority needs no privilege; a refusal just
      // leaves the default.
      if (core->options.io_thread_nice != 0) (void)SetThisThreadNice(core->options.io_thread_nice);
      // Backstop only: handler exceptions are caught per request. Anything that
      // still escapes must not take the process down with std::terminate.
      for (;;) {
        try {
          lane->ioc.run();
          return;
        } catch (const std::exception& e) {
          std::fprintf(stderr, "http server: exception escaped the io loop: %s\n", e.what());
        } catch (...) {
          std::fprintf(stderr, "http server: unknown exception escaped the io loop\n");
        }
      }
    });
    impl_->thread_ids.push_back(impl_->threads.back().get_id());
  }
}

void HttpServer::Stop() {
  std::shared_ptr<ServerCore> core = impl_->core;
  std::vector<std::thread> to_join;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop_requested = true;
    {
      std::lock_guard<std::mutex> core_lock(core->mu);
      core->stopping.store(true);
    }
    impl_->work.clear();
    for (auto& lane : core->lanes) lane->ioc.stop();
    // A handler calling Stop() cannot join its own thread; the io threads stop
    // anyway and a later Stop() (or the destructor) finishes the cleanup.
    auto self = std::this_thread::get_id();
    if (std::find(impl_->thread_ids.begin(), impl_->thread_ids.end(), self) !=
        impl_->thread_ids.end()) {
      return;
    }
  }
  std::lock_guard<std::mutex> join_lock(impl_->join_mu);
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    to_join.swap(impl_->threads);
  }
  for (std::thread& t : to_join) t.join();
  if (impl_->cleaned_up) return;
  impl_->cleaned_up = true;

  // No io thread runs now, so touching the acceptor and sockets from here is
  // race-free. Closing them completes every pending operation with an error;
  // polling runs those completions (which see `stopping` and start nothing new)
  // so the sessions they hold are released now rather than leaked.
  beast::error_code ignored;
  core->acceptor.close(ignored);
  core->accept_backoff.cancel();
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard<std::mutex> lock(core->mu);
    for (auto& [id, weak] : core->sessions) {
      if (auto session = weak.lock()) live.push_back(std::move(session));
    }
  }
  for (auto& session : live) session->Close();
  live.clear();  // may run Session destructors, which take core->mu
  for (auto& lane : core->lanes) {
    lane->ioc.restart();
    lane->ioc.poll();
    // From here Deliver() drops responses. Queued ones are released now: they
    // pin their sessions, and with them the core, until written.
    std::vector<Delivery> left;
    {
      std::lock_guard<std::mutex> lock(lane->mu);
      lane->closed = true;
      left.swap(lane->deliveries);
    }
  }
  core->handler = nullptr;
}

uint16_t HttpServer::port() const { return impl_->port; }

}  // namespace concierge::server
