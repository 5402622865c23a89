// A small HTTP/1.1 server for read-only endpoints (the dashboard): GET and
// HEAD only, no request bodies, bounded memory per connection, on its own
// threads. Asio is used in http_server.cc only; nothing of it leaks here.
//
// What it enforces before a handler sees a request:
//   - request line and headers at most `max_header_bytes`; more is answered
//     431 and the connection closed;
//   - a malformed request line or header, or a request with a body
//     (Content-Length > 0 or Transfer-Encoding) is 400; an HTTP version
//     other than 1.0/1.1 is 505; each closes the connection;
//   - methods other than GET and HEAD are 405 with "Allow: GET, HEAD";
//   - a request must arrive whole within `request_timeout_ms` (counted from
//     the accept, or from the first byte of a later request on a kept-alive
//     connection); a kept-alive connection with no request begun for
//     `idle_timeout_ms` is closed; a response not written within
//     `request_timeout_ms` aborts the connection;
//   - at most `max_connections` open connections; further ones are closed on
//     accept.
// HTTP/1.1 connections are kept alive unless the client sends
// "Connection: close" (HTTP/1.0: only with "Connection: keep-alive");
// pipelined requests are answered in order.
#ifndef FEDFM_COORDINATOR_HTTP_SERVER_H_
#define FEDFM_COORDINATOR_HTTP_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace fedfm::coordinator {

struct HttpRequest {
  std::string method;  // "GET" or "HEAD" (others never reach a handler)
  std::string target;  // as sent: "/api/status?since=3"
  std::string path;    // target up to '?': "/api/status"
  std::string query;   // after '?', undecoded: "since=3"
  // In arrival order; names lower-cased, values trimmed.
  std::vector<std::pair<std::string, std::string>> headers;

  // The first header named `name` (lower case), or nullptr.
  const std::string* FindHeader(const std::string& name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  // Besides Content-Type, Content-Length, Connection and Date, which the
  // server writes.
  std::vector<std::pair<std::string, std::string>> headers;
};

// Called on a server thread for each GET or HEAD (for HEAD the server drops
// the body). Must be safe to call concurrently when `threads` > 1. Must not
// throw; an exception escaping it is answered 500.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  // "HOST:PORT": an IPv4 or IPv6 address ("[::1]:8080"), or a name resolved
  // once at start ("localhost:8080"). Port 0 picks a free port.
  std::string address = "127.0.0.1:8080";
  int threads = 2;  // >= 1
  int64_t max_header_bytes = 16 * 1024;
  int64_t request_timeout_ms = 10'000;
  int64_t idle_timeout_ms = 30'000;
  int max_connections = 256;
};

// The standard reason phrase of `status` ("Not Found"), "Unknown" otherwise.
const char* HttpReasonPhrase(int status);

class HttpServer {
 public:
  // Binds, listens and starts serving on `options.threads` threads.
  // InvalidArgument for an address that is not HOST:PORT or a port outside
  // 0..65535 (naming the address); NotFound when the host does not resolve;
  // Unavailable when the address cannot be bound (in use, not local,
  // permission), with the system's reason.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                           HttpHandler handler);

  virtual ~HttpServer() = default;

  // The bound port (the chosen one when the address asked for port 0).
  virtual int port() const = 0;
  // The bound address as "HOST:PORT" ("127.0.0.1:43117", "[::1]:8080").
  virtual std::string address() const = 0;

  // Stops accepting, closes every connection (responses in flight are cut)
  // and joins the server threads. Idempotent; thread-safe; must not be
  // called from a handler. Not async-signal-safe: from a signal handler,
  // wake a thread that calls it. The destructor calls it.
  virtual void Stop() = 0;
};

}  // namespace fedfm::coordinator

#endif  // FEDFM_COORDINATOR_HTTP_SERVER_H_
