#include "client/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>

namespace concierge::client {
namespace {

// A loopback port that is bound but not listening: connecting to it is refused
// immediately and deterministically (unlike a closed port, nobody can take it).
class RefusingPort {
 public:
  RefusingPort() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return;
    socklen_t len = sizeof(addr);
    if (getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) port_ = ntohs(addr.sin_port);
  }
  ~RefusingPort() {
    if (fd_ >= 0) close(fd_);
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST(HttpClientTest, UnreachablePortIsUnavailable) {
  RefusingPort refusing;
  ASSERT_NE(refusing.port(), 0);
  const std::string base = "http://127.0.0.1:" + std::to_string(refusing.port());
  HttpClient client(base, "secret-token", 5);
  auto result = client.Get("/v1/health");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(result.status().message().rfind("cannot reach " + base + "/v1/health: ", 0), 0u)
      << result.status().message();
  // The bearer token is a credential: it must never leak into error text.
  EXPECT_EQ(result.status().message().find("secret-token"), std::string::npos);
}

TEST(HttpClientTest, HandleStaysUsableAfterFailure) {
  RefusingPort refusing;
  HttpClient client("http://127.0.0.1:" + std::to_string(refusing.port()), "", 5);
  EXPECT_FALSE(client.Post("/x", "{}").ok());
  EXPECT_FALSE(client.Request("DELETE", "/x").ok());
}

TEST(HttpClientTest, QueryEscapeKeepsOnlyUnreserved) {
  EXPECT_EQ(QueryEscape("aZ09-_.~"), "aZ09-_.~");
  EXPECT_EQ(QueryEscape("2026-01-01T00:00:00+01:00"), "2026-01-01T00%3A00%3A00%2B01%3A00");
  EXPECT_EQ(QueryEscape("a b&c=d/\xc3\xa9"), "a%20b%26c%3Dd%2F%C3%A9");
}

}  // namespace
}  // namespace concierge::client
