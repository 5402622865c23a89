// A raw-socket HTTP client for the HTTP server and dashboard tests: it
// writes exactly the bytes a test gives it, so malformed and oversized
// requests can be sent, and reads the answer without any HTTP library.
#ifndef FEDFM_COORDINATOR_HTTP_SERVER_TEST_UTIL_H_
#define FEDFM_COORDINATOR_HTTP_SERVER_TEST_UTIL_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

namespace fedfm::coordinator::testing {

// A TCP connection to 127.0.0.1:port. Reads time out after 20 s so a broken
// server fails the test instead of hanging it.
class RawConnection {
 public:
  explicit RawConnection(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) return;
    timeval timeout{20, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~RawConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return fd_ >= 0; }

  // False if the peer reset the connection before all bytes were written.
  bool Send(const std::string& bytes) {
    std::size_t sent = 0;
    while (sent < bytes.size()) {
      ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<std::size_t>(n);
    }
    return true;
  }

  // Everything until the peer closes (or an error / the read timeout).
  std::string ReadAll() {
    std::string out;
    char buf[8192];
    while (true) {
      ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
  }

  // One response framed by Content-Length (the server always sends it);
  // bytes after it stay buffered for the next call. "" on EOF or error.
  std::string ReadResponse(bool head_request = false) {
    while (true) {
      std::size_t end = pending_.find("\r\n\r\n");
      if (end != std::string::npos) {
        std::size_t length = 0;
        std::string lower = pending_.substr(0, end);
        for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        std::size_t at = lower.find("\r\ncontent-length:");
        if (at != std::string::npos) length = std::strtoul(lower.c_str() + at + 17, nullptr, 10);
        if (head_request) length = 0;
        std::size_t total = end + 4 + length;
        if (pending_.size() >= total) {
          std::string response = pending_.substr(0, total);
          pending_.erase(0, total);
          return response;
        }
      }
      char buf[8192];
      ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) return "";
      pending_.append(buf, static_cast<std::size_t>(n));
    }
  }

  // True when the peer has closed: recv returns 0 or a reset (not a timeout).
  bool PeerClosed() {
    char c;
    ssize_t n = ::recv(fd_, &c, 1, 0);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  }

 private:
  int fd_ = -1;
  std::string pending_;
};

struct ParsedResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;

  std::string Header(const std::string& name) const {
    for (const auto& [key, value] : headers) {
      if (key == name) return value;
    }
    return "";
  }
};

// Parses "HTTP/1.1 200 OK\r\nName: value\r\n...\r\n\r\nbody"; status 0 when
// the text is not a response.
inline ParsedResponse ParseResponse(const std::string& text) {
  ParsedResponse parsed;
  std::size_t end = text.find("\r\n\r\n");
  if (text.rfind("HTTP/1.1 ", 0) != 0 || end == std::string::npos) return parsed;
  parsed.status = std::atoi(text.c_str() + 9);
  std::size_t pos = text.find("\r\n") + 2;
  while (pos < end) {
    std::size_t eol = text.find("\r\n", pos);
    std::string line = text.substr(pos, eol - pos);
    std::size_t colon = line.find(':');
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::size_t value = line.find_first_not_of(' ', colon + 1);
    parsed.headers.emplace_back(name, value == std::string::npos ? "" : line.substr(value));
    pos = eol + 2;
  }
  parsed.body = text.substr(end + 4);
  return parsed;
}

// One request on a fresh connection ("Connection: close"); the whole answer.
inline ParsedResponse Fetch(int port, const std::string& method, const std::string& target,
                            const std::string& extra_headers = "") {
  RawConnection connection(port);
  if (!connection.connected()) return {};
  connection.Send(method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" +
                  extra_headers + "\r\n");
  return ParseResponse(connection.ReadAll());
}

inline ParsedResponse Get(int port, const std::string& target) { return Fetch(port, "GET", target); }

}  // namespace fedfm::coordinator::testing

#endif  // FEDFM_COORDINATOR_HTTP_SERVER_TEST_UTIL_H_
