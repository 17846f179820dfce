#include "client/http_client.h"

#include <curl/curl.h>

#include <cctype>
#include <cstdlib>
#include <mutex>
#include <string_view>
#include <utility>

namespace concierge::client {
namespace {

// curl_global_init is not thread-safe and must run before any other curl call.
void GlobalInitOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) std::abort();  // no usable libcurl
  });
}

CURL* Handle(void* p) { return static_cast<CURL*>(p); }

// Owns a curl_slist for the duration of one request.
class HeaderList {
 public:
  HeaderList() = default;
  ~HeaderList() { curl_slist_free_all(list_); }
  HeaderList(const HeaderList&) = delete;
  HeaderList& operator=(const HeaderList&) = delete;

  bool Append(const std::string& line) {
    curl_slist* next = curl_slist_append(list_, line.c_str());
    if (next == nullptr) return false;
    list_ = next;
    return true;
  }
  curl_slist* get() const { return list_; }

 private:
  curl_slist* list_ = nullptr;
};

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' ||
                        s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

// Callbacks handed to C code must not throw (architecture rule); on allocation
// failure we return a short count, which makes curl abort the transfer.
size_t WriteBody(char* data, size_t size, size_t count, void* user) {
  try {
    static_cast<std::string*>(user)->append(data, size * count);
    return size * count;
  } catch (...) {
    return 0;
  }
}

size_t WriteHeader(char* data, size_t size, size_t count, void* user) {
  try {
    auto* headers = static_cast<std::map<std::string, std::string>*>(user);
    std::string_view line(data, size * count);
    // A new status line (after 100 Continue or a redirect) starts a new header block.
    if (line.substr(0, 5) == "HTTP/") {
      headers->clear();
      return size * count;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return size * count;  // blank line ending the block
    std::string name = ToLower(Trim(line.substr(0, colon)));
    std::string value(Trim(line.substr(colon + 1)));
    auto [it, inserted] = headers->emplace(name, value);
    if (!inserted) it->second.append(", ").append(value);
    return size * count;
  } catch (...) {
    return 0;
  }
}

bool HasHeader(const std::map<std::string, std::string>& headers, std::string_view lower_name) {
  for (const auto& [name, value] : headers) {
    if (ToLower(name) == lower_name) return true;
  }
  return false;
}

}  // namespace

HttpClient::HttpClient(std::string base_url, std::string bearer_token, int timeout_seconds)
    : base_url_(std::move(base_url)), token_(std::move(bearer_token)),
      timeout_seconds_(timeout_seconds) {
  GlobalInitOnce();
  curl_ = curl_easy_init();
  // Only fails on out-of-memory; treat as a broken invariant like new would.
  if (curl_ == nullptr) std::abort();
}

HttpClient::~HttpClient() { curl_easy_cleanup(Handle(curl_)); }

StatusOr<HttpResult> HttpClient::Request(const std::string& method, const std::string& path,
                                         const std::string& body,
                                         const std::map<std::string, std::string>& extra_headers) {
  CURL* curl = Handle(curl_);
  // Reset clears options from the previous request (e.g. a POST body) but keeps
  // the connection cache, so keep-alive still works across calls.
  curl_easy_reset(curl);
  const std::string url = base_url_ + path;
  HttpResult result;
  char error_buffer[CURL_ERROR_SIZE] = {0};

  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);  // signals + threads do not mix
  curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, static_cast<long>(timeout_seconds_));
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &WriteBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &result.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &WriteHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &result.headers);

  if (method == "GET") {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  } else if (method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  }
  // POST/PUT/PATCH always carry a body (possibly empty, so Content-Length: 0).
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
  }

  HeaderList headers;
  bool ok = true;
  if (!token_.empty()) ok &= headers.Append("Authorization: Bearer " + token_);
  if (!body.empty() && !HasHeader(extra_headers, "content-type")) {
    ok &= headers.Append("Content-Type: application/json");
  }
  // Our server never sends "100 Continue"; without this curl waits ~1 s before
  // uploading larger bodies.
  ok &= headers.Append("Expect:");
  for (const auto& [name, value] : extra_headers) ok &= headers.Append(name + ": " + value);
  if (!ok) return InternalError("out of memory building request headers");
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers.get());

  CURLcode code = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  std::string reason = error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(code);
  // Drop the pointers to this frame's locals (error buffer, header list, result)
  // from the reused handle; connections stay cached.
  curl_easy_reset(curl);
  if (code != CURLE_OK) return UnavailableError("cannot reach " + url + ": " + reason);
  result.status = static_cast<int>(status);
  return result;
}

std::string QueryEscape(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : value) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

}  // namespace concierge::client
