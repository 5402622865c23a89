// The HTTP/1.1 server of coordinator/http_server.h on standalone Asio.
//
// One io_context run by `threads` threads. Each connection lives on its own
// strand (its socket and timer share the strand executor), so a connection's
// handlers never run concurrently while different connections proceed in
// parallel. A connection is one read -> handle -> write loop; a deadline timer
// closes it when a read or a write takes too long.
#include "coordinator/http_server.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <ctime>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>

#include <asio.hpp>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "protocols/check.h"
#include "protocols/status_macros.h"

namespace fedfm::coordinator {

const std::string* HttpRequest::FindHeader(const std::string& name) const {
  for (const auto& [key, value] : headers) {
    if (key == name) return &value;
  }
  return nullptr;
}

const char* HttpReasonPhrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

namespace {

using asio::ip::tcp;

constexpr std::size_t kReadChunk = 4096;
// After a response that closes the connection, unread request bytes (a body
// we refused) are drained for at most this long / this much before closing,
// so that the close does not turn into a reset that discards the response.
constexpr auto kDrainTimeout = std::chrono::milliseconds(1000);
constexpr std::size_t kMaxDrainBytes = 1 << 20;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool IsTokenChar(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool IsToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTokenChar);
}

// Whether a comma-separated header value lists `token` (case-insensitive).
bool HasToken(const std::string* value, std::string_view token) {
  if (value == nullptr) return false;
  std::string lower = Lower(*value);
  std::string_view rest = lower;
  while (!rest.empty()) {
    std::size_t comma = rest.find(',');
    if (Trim(rest.substr(0, comma)) == token) return true;
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return false;
}

std::string HttpDate() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday], tm.tm_mday,
                kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

HttpResponse ErrorResponse(int status, std::string_view detail) {
  HttpResponse response;
  response.status = status;
  response.body = absl::StrCat(status, " ", HttpReasonPhrase(status));
  if (!detail.empty()) absl::StrAppend(&response.body, ": ", std::string(detail));
  response.body += "\n";
  return response;
}

// The outcome of parsing one request head.
struct Parsed {
  HttpRequest request;
  bool http10 = false;
  std::optional<HttpResponse> error;  // set: answer this and close
};

// Parses the request line and headers in `head` (without the final blank
// line's CRLF pair). Method checks come after the version check.
Parsed ParseHead(std::string_view head) {
  Parsed parsed;
  auto fail = [&parsed](int status, std::string_view detail) {
    parsed.error = ErrorResponse(status, detail);
    return std::move(parsed);
  };
  std::size_t eol = head.find("\r\n");
  std::string_view line = head.substr(0, eol);
  std::string_view rest = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 2);

  std::size_t sp1 = line.find(' ');
  std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return fail(400, "malformed request line");
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!IsToken(method) || target.empty()) return fail(400, "malformed request line");
  if (version == "HTTP/1.0") {
    parsed.http10 = true;
  } else if (version != "HTTP/1.1") {
    if (version.substr(0, 5) == "HTTP/") return fail(505, "");
    return fail(400, "malformed request line");
  }
  // Absolute form ("http://host/path") is reduced to its path.
  if (target.substr(0, 7) == "http://" || target.substr(0, 8) == "https://") {
    std::size_t slash = target.find('/', target.find("//") + 2);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
  }
  if (target.front() != '/') return fail(400, "request target must be a path");

  HttpRequest& request = parsed.request;
  request.method = std::string(method);
  request.target = std::string(target);
  std::size_t question = target.find('?');
  request.path = std::string(target.substr(0, question));
  if (question != std::string_view::npos) request.query = std::string(target.substr(question + 1));

  while (!rest.empty()) {
    eol = rest.find("\r\n");
    std::string_view header = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 2);
    if (header.empty()) continue;
    if (header.front() == ' ' || header.front() == '\t') return fail(400, "folded header line");
    std::size_t colon = header.find(':');
    if (colon == std::string_view::npos || !IsToken(header.substr(0, colon))) {
      return fail(400, "malformed header line");
    }
    request.headers.emplace_back(Lower(header.substr(0, colon)), std::string(Trim(header.substr(colon + 1))));
  }

  if (request.method != "GET" && request.method != "HEAD") {
    HttpResponse response = ErrorResponse(405, absl::StrCat("method ", request.method, " not allowed"));
    response.headers.emplace_back("Allow", "GET, HEAD");
    parsed.error = std::move(response);
    return parsed;
  }
  const std::string* length = request.FindHeader("content-length");
  if (request.FindHeader("transfer-encoding") != nullptr || (length != nullptr && *length != "0")) {
    return fail(400, "requests must not carry a body");
  }
  return parsed;
}

class ServerImpl;

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, const HttpServerOptions& options, const HttpHandler& handler)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        options_(options),
        handler_(handler) {}

  void Start() {
    asio::dispatch(socket_.get_executor(), [self = shared_from_this()] {
      self->ArmTimer(std::chrono::milliseconds(self->options_.request_timeout_ms));
      self->ProcessBuffer();
    });
  }

  // Only when no server thread runs (after the io_context stopped).
  void CloseNow() {
    asio::error_code ignored;
    timer_.cancel();
    socket_.close(ignored);
  }

 private:
  void ArmTimer(std::chrono::milliseconds timeout) {
    ++timer_generation_;
    timer_.expires_after(timeout);
    timer_.async_wait([self = shared_from_this(), generation = timer_generation_](asio::error_code ec) {
      if (ec || generation != self->timer_generation_) return;
      asio::error_code ignored;
      self->socket_.close(ignored);  // the pending read or write fails and ends the loop
    });
  }

  // Answers every complete request head in the buffer, one at a time (the
  // next after the previous response is written); reads more otherwise.
  void ProcessBuffer() {
    std::size_t end = buffer_.find("\r\n\r\n");
    if (end == std::string::npos) {
      if (buffer_.size() >= static_cast<std::size_t>(options_.max_header_bytes)) {
        return Respond(ErrorResponse(431, absl::StrCat("request head exceeds ", options_.max_header_bytes,
                                                       " bytes")),
                       /*keep_alive=*/false, /*head_only=*/false);
      }
      return Read();
    }
    if (end + 4 > static_cast<std::size_t>(options_.max_header_bytes)) {
      return Respond(
          ErrorResponse(431, absl::StrCat("request head exceeds ", options_.max_header_bytes, " bytes")),
          /*keep_alive=*/false, /*head_only=*/false);
    }
    Parsed parsed = ParseHead(std::string_view(buffer_).substr(0, end));
    buffer_.erase(0, end + 4);
    if (parsed.error.has_value()) {
      return Respond(std::move(*parsed.error), /*keep_alive=*/false, /*head_only=*/false);
    }
    const HttpRequest& request = parsed.request;
    const std::string* connection = request.FindHeader("connection");
    bool keep_alive = parsed.http10 ? HasToken(connection, "keep-alive") : !HasToken(connection, "close");
    HttpResponse response;
    try {
      response = handler_(request);
    } catch (const std::exception& e) {
      response = ErrorResponse(500, e.what());
    } catch (...) {
      response = ErrorResponse(500, "");
    }
    Respond(std::move(response), keep_alive, request.method == "HEAD");
  }

  void Read() {
    std::size_t old_size = buffer_.size();
    std::size_t room = static_cast<std::size_t>(options_.max_header_bytes) - old_size;
    buffer_.resize(old_size + std::min(kReadChunk, room));
    socket_.async_read_some(
        asio::buffer(buffer_.data() + old_size, buffer_.size() - old_size),
        [self = shared_from_this(), old_size](asio::error_code ec, std::size_t n) {
          self->buffer_.resize(old_size + (ec ? 0 : n));
          if (ec) return self->Close();
          if (self->idle_ && n > 0) {
            // The next request has begun: it gets the request timeout.
            self->idle_ = false;
            self->ArmTimer(std::chrono::milliseconds(self->options_.request_timeout_ms));
          }
          self->ProcessBuffer();
        });
  }

  void Respond(HttpResponse response, bool keep_alive, bool head_only) {
    keep_alive_ = keep_alive;
    out_.clear();
    absl::StrAppend(&out_, "HTTP/1.1 ", response.status, " ", HttpReasonPhrase(response.status), "\r\n",
                    "Content-Type: ", response.content_type, "\r\n", "Content-Length: ", response.body.size(),
                    "\r\n", "Date: ", HttpDate(), "\r\n", "Connection: ", keep_alive ? "keep-alive" : "close",
                    "\r\n");
    for (const auto& [name, value] : response.headers) absl::StrAppend(&out_, name, ": ", value, "\r\n");
    out_ += "\r\n";
    if (!head_only) out_ += response.body;
    ArmTimer(std::chrono::milliseconds(options_.request_timeout_ms));
    asio::async_write(socket_, asio::buffer(out_), [self = shared_from_this()](asio::error_code ec, std::size_t) {
      if (ec) return self->Close();
      if (!self->keep_alive_) return self->Drain();
      self->idle_ = self->buffer_.empty();
      self->ArmTimer(std::chrono::milliseconds(self->idle_ ? self->options_.idle_timeout_ms
                                                           : self->options_.request_timeout_ms));
      self->ProcessBuffer();
    });
  }

  // Half-closes, then reads and discards what the peer still sends until it
  // closes or kDrainTimeout passes.
  void Drain() {
    asio::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    ArmTimer(std::chrono::duration_cast<std::chrono::milliseconds>(kDrainTimeout));
    DrainSome();
  }

  void DrainSome() {
    socket_.async_read_some(asio::buffer(drain_), [self = shared_from_this()](asio::error_code ec, std::size_t n) {
      self->drained_ += n;
      if (ec || self->drained_ > kMaxDrainBytes) return self->Close();
      self->DrainSome();
    });
  }

  void Close() {
    asio::error_code ignored;
    ++timer_generation_;
    timer_.cancel();
    socket_.close(ignored);
  }

  tcp::socket socket_;
  asio::steady_timer timer_;
  const HttpServerOptions& options_;  // owned by the server, which outlives every connection
  const HttpHandler& handler_;
  uint64_t timer_generation_ = 0;
  std::string buffer_;  // received, not yet answered
  std::string out_;     // the response being written
  bool keep_alive_ = true;
  bool idle_ = false;  // between keep-alive requests, nothing of the next one received
  std::array<char, kReadChunk> drain_{};
  std::size_t drained_ = 0;
};

struct ParsedAddress {
  std::string host;
  std::string port;
};

absl::StatusOr<ParsedAddress> SplitAddress(const std::string& address) {
  auto bad = [&address](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("HTTP address \"", address, "\": ", std::string(why),
                                                   " (expected HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080)"));
  };
  ParsedAddress parsed;
  std::size_t colon;
  if (!address.empty() && address.front() == '[') {
    std::size_t close = address.find(']');
    if (close == std::string::npos) return bad("unterminated '['");
    parsed.host = address.substr(1, close - 1);
    if (close + 1 >= address.size() || address[close + 1] != ':') return bad("no port");
    colon = close + 1;
  } else {
    colon = address.rfind(':');
    if (colon == std::string::npos) return bad("no port");
    parsed.host = address.substr(0, colon);
    if (parsed.host.find(':') != std::string::npos) return bad("IPv6 addresses must be in brackets");
  }
  if (parsed.host.empty()) return bad("no host");
  parsed.port = address.substr(colon + 1);
  if (parsed.port.empty() || parsed.port.size() > 5 ||
      !std::all_of(parsed.port.begin(), parsed.port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      std::stoi(parsed.port) > 65535) {
    return bad(absl::StrCat("port must be a number in 0..65535, got \"", parsed.port, "\""));
  }
  return parsed;
}

std::string FormatEndpoint(const tcp::endpoint& endpoint) {
  asio::ip::address address = endpoint.address();
  if (address.is_v6()) return absl::StrCat("[", address.to_string(), "]:", endpoint.port());
  return absl::StrCat(address.to_string(), ":", endpoint.port());
}

class ServerImpl final : public HttpServer {
 public:
  ServerImpl(const HttpServerOptions& options, HttpHandler handler)
      : options_(options),
        handler_(std::move(handler)),
        acceptor_(io_),
        accept_retry_(io_),
        work_(io_.get_executor()) {}

  ~ServerImpl() override { Stop(); }

  absl::Status Bind() {
    FEDFM_ASSIGN_OR_RETURN(ParsedAddress parsed, SplitAddress(options_.address));
    asio::error_code ec;
    tcp::endpoint endpoint;
    asio::ip::address ip = asio::ip::make_address(parsed.host, ec);
    if (!ec) {
      endpoint = tcp::endpoint(ip, static_cast<unsigned short>(std::stoi(parsed.port)));
    } else {
      tcp::resolver resolver(io_);
      auto results = resolver.resolve(parsed.host, parsed.port, tcp::resolver::passive, ec);
      if (ec || results.empty()) {
        return absl::NotFoundError(absl::StrCat("HTTP address \"", options_.address, "\": cannot resolve host \"",
                                                parsed.host, "\": ", ec ? ec.message() : "no address"));
      }
      endpoint = results.begin()->endpoint();
    }
    auto fail = [&](const char* step) {
      return absl::UnavailableError(absl::StrCat("cannot listen on HTTP address \"", options_.address,
                                                 "\" (", step, "): ", ec.message()));
    };
    acceptor_.open(endpoint.protocol(), ec);
    if (ec) return fail("open");
    acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (ec) return fail("SO_REUSEADDR");
    acceptor_.bind(endpoint, ec);
    if (ec) return fail("bind");
    acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return fail("listen");
    tcp::endpoint local = acceptor_.local_endpoint(ec);
    if (ec) return fail("local address");
    port_ = local.port();
    bound_address_ = FormatEndpoint(local);
    return absl::OkStatus();
  }

  void Run() {
    Accept();
    threads_.reserve(options_.threads);
    for (int i = 0; i < options_.threads; ++i) {
      threads_.emplace_back([this] { io_.run(); });
    }
  }

  int port() const override { return port_; }
  std::string address() const override { return bound_address_; }

  void Stop() override {
    std::lock_guard<std::mutex> stop_lock(stop_mu_);
    if (stopped_) return;
    stopped_ = true;
    for (const std::thread& thread : threads_) {
      FEDFM_CHECK_MSG(thread.get_id() != std::this_thread::get_id(),
                      "HttpServer::Stop called from a request handler");
    }
    work_.reset();
    io_.stop();
    for (std::thread& thread : threads_) thread.join();
    threads_.clear();
    // No server thread runs now: the sockets can be closed from here. The
    // aborted handlers (and the connections they hold) go with io_.
    asio::error_code ignored;
    acceptor_.close(ignored);
    std::lock_guard<std::mutex> lock(connections_mu_);
    for (auto& [raw, weak] : connections_) {
      if (std::shared_ptr<Connection> connection = weak.lock()) connection->CloseNow();
    }
    connections_.clear();
  }

 private:
  void Accept() {
    acceptor_.async_accept(asio::make_strand(io_), [this](asio::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
      if (ec) {
        // Out of file descriptors or similar: retry shortly, not in a spin.
        accept_retry_.expires_after(std::chrono::milliseconds(100));
        accept_retry_.async_wait([this](asio::error_code wait_ec) {
          if (!wait_ec) Accept();
        });
        return;
      }
      std::shared_ptr<Connection> connection;
      {
        std::lock_guard<std::mutex> lock(connections_mu_);
        for (auto it = connections_.begin(); it != connections_.end();) {
          it = it->second.expired() ? connections_.erase(it) : std::next(it);
        }
        if (connections_.size() < static_cast<std::size_t>(options_.max_connections)) {
          connection = std::make_shared<Connection>(std::move(socket), options_, handler_);
          connections_.emplace(connection.get(), connection);
        }
      }
      if (connection) {
        connection->Start();
      } else {
        asio::error_code ignored;
        socket.close(ignored);
      }
      Accept();
    });
  }

  const HttpServerOptions options_;
  const HttpHandler handler_;
  std::mutex connections_mu_;
  std::map<Connection*, std::weak_ptr<Connection>> connections_;  // pruned on accept
  // Destroyed before the members above: the handlers it destroys release
  // connections that refer to options_ and handler_.
  asio::io_context io_;
  tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
  std::mutex stop_mu_;
  bool stopped_ = false;
  int port_ = 0;
  std::string bound_address_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                             HttpHandler handler) {
  if (options.threads < 1) {
    return absl::InvalidArgumentError(absl::StrCat("HTTP server threads must be >= 1, got ", options.threads));
  }
  if (options.max_header_bytes < 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("HTTP server max_header_bytes must be >= 64, got ", options.max_header_bytes));
  }
  if (options.request_timeout_ms <= 0 || options.idle_timeout_ms <= 0) {
    return absl::InvalidArgumentError("HTTP server timeouts must be > 0 ms");
  }
  if (options.max_connections < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("HTTP server max_connections must be >= 1, got ", options.max_connections));
  }
  FEDFM_CHECK_MSG(handler != nullptr, "HttpServer::Start needs a handler");
  auto server = std::make_unique<ServerImpl>(options, std::move(handler));
  absl::Status bound = server->Bind();
  if (!bound.ok()) return bound;
  server->Run();
  return server;
}

}  // namespace fedfm::coordinator
