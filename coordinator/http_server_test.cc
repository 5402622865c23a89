#include "coordinator/http_server.h"

#include <atomic>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/http_server_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedfm::coordinator {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing::Fetch;
using testing::Get;
using testing::ParseResponse;
using testing::RawConnection;

// Echoes what the server parsed, so tests can check the parse.
HttpResponse Echo(const HttpRequest& request) {
  HttpResponse response;
  response.body = absl::StrCat("method=", request.method, "\npath=", request.path, "\nquery=", request.query,
                               "\ntarget=", request.target, "\n");
  for (const auto& [name, value] : request.headers) absl::StrAppend(&response.body, name, "=", value, "\n");
  response.headers.emplace_back("X-Test", "yes");
  return response;
}

std::unique_ptr<HttpServer> StartOrDie(HttpServerOptions options, HttpHandler handler = Echo) {
  if (options.address == HttpServerOptions().address) options.address = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(options, std::move(handler));
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

TEST(HttpServerTest, BindsAnEphemeralPortAndReportsIt) {
  auto server = StartOrDie({});
  ASSERT_NE(server, nullptr);
  EXPECT_GT(server->port(), 0);
  EXPECT_EQ(server->address(), absl::StrCat("127.0.0.1:", server->port()));
}

TEST(HttpServerTest, HandlerSeesParsedRequest) {
  auto server = StartOrDie({});
  ASSERT_NE(server, nullptr);
  testing::ParsedResponse response =
      Fetch(server->port(), "GET", "/api/status?since=3&x=y", "X-Custom-Header:   padded value \t\r\n");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.Header("x-test"), "yes");
  EXPECT_EQ(response.Header("connection"), "close");
  EXPECT_EQ(response.Header("content-length"), absl::StrCat(response.body.size()));
  EXPECT_THAT(response.Header("date"), HasSubstr(" GMT"));
  EXPECT_THAT(response.body, HasSubstr("method=GET\n"));
  EXPECT_THAT(response.body, HasSubstr("path=/api/status\n"));
  EXPECT_THAT(response.body, HasSubstr("query=since=3&x=y\n"));
  EXPECT_THAT(response.body, HasSubstr("x-custom-header=padded value\n"));
  EXPECT_THAT(response.body, HasSubstr("host=127.0.0.1\n"));
}

TEST(HttpServerTest, AbsoluteFormTargetIsReducedToItsPath) {
  auto server = StartOrDie({});
  ASSERT_NE(server, nullptr);
  testing::ParsedResponse response = Get(server->port(), "http://example.org:8080/metrics?a=1");
  EXPECT_EQ(response.status, 200);
  EXPECT_THAT(response.body, HasSubstr("path=/metrics\n"));
  EXPECT_THAT(response.body, HasSubstr("query=a=1\n"));
}

TEST(HttpServerTest, HeadSendsHeadersOnly) {
  auto server = StartOrDie({}, [](const HttpRequest&) {
    HttpResponse response;
    response.body = "hello world";
    return response;
  });
  ASSERT_NE(server, nullptr);
  RawConnection connection(server->port());
  ASSERT_TRUE(connection.Send("HEAD /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"));
  std::string text = connection.ReadAll();
  testing::ParsedResponse response = ParseResponse(text);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.Header("content-length"), "11");  // of the body a GET gets
  EXPECT_EQ(response.body, "");
  EXPECT_TRUE(text.ends_with("\r\n\r\n"));
}

TEST(HttpServerTest, OtherMethodsAre405WithAllow) {
  auto server = StartOrDie({});
  ASSERT_NE(server, nullptr);
  for (const char* method : {"POST", "PUT", "DELETE", "OPTIONS", "PATCH"}) {
    testing::ParsedResponse response = Fetch(server->port(), method, "/api/status");
    EXPECT_EQ(response.status, 405) << method;
    EXPECT_EQ(response.Header("allow"), "GET, HEAD") << method;
    EXPECT_EQ(response.Header("connection"), "close") << method;
  }
}

TEST(HttpServerTest, PostWithBodyStillGets405) {
  auto server = StartOrDie({});
  ASSERT_NE(server, nullptr);
  RawConnection connection(server->port());
  std::string body(100'000, 'b');
  ASSERT_TRUE(connection.Send(absl::StrCat("POST /api/status HTTP/1.1\r\nHost: h\r\nContent-Length: ",
                                           body.size(), "\r\n\r\n")));
  connection.Send(body);  // may be cut short once the server has answered
  EXPECT_EQ(ParseResponse(connection.ReadAll()).status, 405);
}

TEST(HttpServerTest, OversizedHeadIs431) {
  HttpServerOptions options;
  ASSERT_EQ(options.max_header_bytes, 16 * 1024);
  auto server = StartOrDie(options);
  ASSERT_NE(server, nullptr);
  // Fits: the whole head, blank line included, is exactly 16 KiB.
  std::string prefix = "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\nX-Pad: ";
  std::string fits = prefix + std::string(16 * 1024 - prefix.size() - 4, 'a') + "\r\n\r\n";
  ASSERT_EQ(fits.size(), 16u * 1024);
  {
    RawConnection connection(server->port());
    ASSERT_TRUE(connection.Send(fits));
    EXPECT_EQ(ParseResponse(connection.ReadAll()).status, 200);
  }
  // One byte more.
  std::string over = prefix + std::string(16 * 1024 - prefix.size() - 3, 'a') + "\r\n\r\n";
  {
    RawConnection connection(server->port());
    ASSERT_TRUE(connection.Send(over));
    testing::ParsedResponse response = ParseResponse(connection.ReadAll());
    EXPECT_EQ(response.status, 431);
    EXPECT_EQ(response.Header("connection"), "close");
  }
  // A head that never ends: answered once the limit is reached.
  {
    RawConnection connection(server->port());
    connection.Send("GET / HTTP/1.1\r\nX-Pad: " + std::string(64 * 1024, 'a'));
    EXPECT_EQ(ParseResponse(connection.ReadAll()).status, 431);
  }
}

TEST(HttpServerTest, MalformedRequestsAre400And505) {
  auto server = StartOrDie({});
  ASSERT_NE(server, nullptr);
  struct Case {
    const char* request;
    int status;
  };
  for (const Case& c : std::vector<Case>{
           {"GARBAGE\r\n\r\n", 400},
           {"GET /\r\n\r\n", 400},
           {"GET / HTTP/1.1 extra\r\n\r\n", 400},
           {"GET nopath HTTP/1.1\r\n\r\n", 400},
           {"GET / HTTP/2.0\r\n\r\n", 505},
           {"GET / FTP/1.1\r\n\r\n", 400},
           {"GET / HTTP/1.1\r\nNo colon here\r\n\r\n", 400},
           {"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400},
           {"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400},
           {"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 400},
           {"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
       }) {
    RawConnection connection(server->port());
    ASSERT_TRUE(connection.Send(c.request));
    testing::ParsedResponse response = ParseResponse(connection.ReadAll());
    EXPECT_EQ(response.status, c.status) << c.request;
    EXPECT_EQ(response.Header("connection"), "close") << c.request;
  }
  // "Content-Length: 0" is no body.
  RawConnection connection(server->port());
  ASSERT_TRUE(connection.Send("GET / HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"));
  EXPECT_EQ(ParseResponse(connection.ReadAll()).status, 200);
}

TEST(HttpServerTest, KeepAliveAndPipelining) {
  std::atomic<int> calls{0};
  auto server = StartOrDie({}, [&calls](const HttpRequest& request) {
    HttpResponse response;
    response.body = absl::StrCat(request.path, " #", ++calls);
    return response;
  });
  ASSERT_NE(server, nullptr);
  RawConnection connection(server->port());
  ASSERT_TRUE(connection.Send("GET /a HTTP/1.1\r\nHost: h\r\n\r\n"));
  testing::ParsedResponse first = ParseResponse(connection.ReadResponse());
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(first.Header("connection"), "keep-alive");
  EXPECT_EQ(first.body, "/a #1");
  // Three pipelined requests in one write, the last closing.
  ASSERT_TRUE(connection.Send(
      "GET /b HTTP/1.1\r\nHost: h\r\n\r\nHEAD /c HTTP/1.1\r\nHost: h\r\n\r\n"
      "GET /d HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"));
  EXPECT_EQ(ParseResponse(connection.ReadResponse()).body, "/b #2");
  testing::ParsedResponse head = ParseResponse(connection.ReadResponse(/*head_request=*/true));
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.Header("content-length"), "5");
  testing::ParsedResponse last = ParseResponse(connection.ReadResponse());
  EXPECT_EQ(last.body, "/d #4");
  EXPECT_EQ(last.Header("connection"), "close");
  EXPECT_TRUE(connection.PeerClosed());
}

TEST(HttpServerTest, Http10ClosesUnlessKeepAlive) {
  auto server = StartOrDie({});
  ASSERT_NE(server, nullptr);
  {
    RawConnection connection(server->port());
    ASSERT_TRUE(connection.Send("GET / HTTP/1.0\r\n\r\n"));
    testing::ParsedResponse response = ParseResponse(connection.ReadAll());
    EXPECT_EQ(response.status, 200);
    EXPECT_EQ(response.Header("connection"), "close");
  }
  {
    RawConnection connection(server->port());
    ASSERT_TRUE(connection.Send("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    testing::ParsedResponse response = ParseResponse(connection.ReadResponse());
    EXPECT_EQ(response.Header("connection"), "keep-alive");
    ASSERT_TRUE(connection.Send("GET /again HTTP/1.0\r\n\r\n"));
    EXPECT_THAT(connection.ReadResponse(), HasSubstr("path=/again"));
  }
}

// Each PeerClosed() below would block for 20 s (and fail) if the server kept
// the connection open.
TEST(HttpServerTest, SlowRequestsAreClosedAfterTheRequestTimeout) {
  HttpServerOptions options;
  options.request_timeout_ms = 100;
  options.idle_timeout_ms = 600'000;
  auto server = StartOrDie(options);
  ASSERT_NE(server, nullptr);
  RawConnection silent(server->port());
  RawConnection partial(server->port());
  ASSERT_TRUE(partial.Send("GET / HTTP/1.1\r\nHost: h\r\n"));
  // A kept-alive connection whose second request starts but never ends.
  RawConnection second(server->port());
  ASSERT_TRUE(second.Send("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
  EXPECT_EQ(ParseResponse(second.ReadResponse()).status, 200);
  ASSERT_TRUE(second.Send("GET /more HTTP/1.1\r\n"));
  EXPECT_TRUE(silent.PeerClosed());
  EXPECT_TRUE(partial.PeerClosed());
  EXPECT_TRUE(second.PeerClosed());
}

TEST(HttpServerTest, IdleKeepAliveConnectionsAreClosedAfterTheIdleTimeout) {
  HttpServerOptions options;
  options.request_timeout_ms = 600'000;
  options.idle_timeout_ms = 100;
  auto server = StartOrDie(options);
  ASSERT_NE(server, nullptr);
  RawConnection idle(server->port());
  ASSERT_TRUE(idle.Send("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
  EXPECT_EQ(ParseResponse(idle.ReadResponse()).status, 200);
  EXPECT_TRUE(idle.PeerClosed());
}

TEST(HttpServerTest, HandlerExceptionIs500) {
  auto server = StartOrDie({}, [](const HttpRequest&) -> HttpResponse { throw std::runtime_error("boom"); });
  ASSERT_NE(server, nullptr);
  testing::ParsedResponse response = Get(server->port(), "/");
  EXPECT_EQ(response.status, 500);
  EXPECT_THAT(response.body, HasSubstr("boom"));
}

TEST(HttpServerTest, ConcurrentRequestsFromManyThreads) {
  std::atomic<int> calls{0};
  HttpServerOptions options;
  options.threads = 3;
  auto server = StartOrDie(options, [&calls](const HttpRequest& request) {
    ++calls;
    HttpResponse response;
    response.body = request.query + std::string(2000, 'x');
    return response;
  });
  ASSERT_NE(server, nullptr);
  constexpr int kThreads = 8;
  constexpr int kRequestsPerThread = 25;
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(1234 + t);
      // Half the requests on one keep-alive connection, half on fresh ones.
      RawConnection keep_alive(server->port());
      for (int i = 0; i < kRequestsPerThread; ++i) {
        std::string query = absl::StrCat("t=", t, "&i=", i, "&r=", rng());
        std::string expected = query + std::string(2000, 'x');
        testing::ParsedResponse response;
        if (i % 2 == 0) {
          keep_alive.Send("GET /?" + query + " HTTP/1.1\r\nHost: h\r\n\r\n");
          response = ParseResponse(keep_alive.ReadResponse());
        } else {
          response = Get(server->port(), "/?" + query);
        }
        if (response.status == 200 && response.body == expected) ++good;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(good.load(), kThreads * kRequestsPerThread);
  EXPECT_EQ(calls.load(), kThreads * kRequestsPerThread);
}

TEST(HttpServerTest, ConnectionsBeyondTheLimitAreClosed) {
  HttpServerOptions options;
  options.max_connections = 2;
  auto server = StartOrDie(options);
  ASSERT_NE(server, nullptr);
  RawConnection a(server->port());
  RawConnection b(server->port());
  for (RawConnection* c : {&a, &b}) {
    ASSERT_TRUE(c->Send("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
    EXPECT_EQ(ParseResponse(c->ReadResponse()).status, 200);
  }
  RawConnection third(server->port());
  EXPECT_TRUE(third.PeerClosed());
  // The first two still work.
  ASSERT_TRUE(a.Send("GET /still HTTP/1.1\r\nHost: h\r\n\r\n"));
  EXPECT_THAT(a.ReadResponse(), HasSubstr("path=/still"));
}

TEST(HttpServerTest, StopClosesConnectionsAndIsIdempotent) {
  auto server = StartOrDie({});
  ASSERT_NE(server, nullptr);
  int port = server->port();
  RawConnection connection(port);
  ASSERT_TRUE(connection.Send("GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
  EXPECT_EQ(ParseResponse(connection.ReadResponse()).status, 200);
  server->Stop();
  EXPECT_TRUE(connection.PeerClosed());
  server->Stop();
  RawConnection after(port);
  EXPECT_FALSE(after.connected() && after.Send("GET / HTTP/1.1\r\n\r\n") && !after.PeerClosed());
  server.reset();
}

TEST(HttpServerTest, BadAddressesAreClearErrors) {
  struct Case {
    std::string address;
    absl::StatusCode code;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {"nonsense", absl::StatusCode::kInvalidArgument, "no port"},
           {"", absl::StatusCode::kInvalidArgument, "no port"},
           {":8080", absl::StatusCode::kInvalidArgument, "no host"},
           {"127.0.0.1:", absl::StatusCode::kInvalidArgument, "port must be a number in 0..65535"},
           {"127.0.0.1:99999", absl::StatusCode::kInvalidArgument, "got \"99999\""},
           {"127.0.0.1:http", absl::StatusCode::kInvalidArgument, "port must be a number"},
           {"[::1:80", absl::StatusCode::kInvalidArgument, "unterminated"},
           {"::1:80", absl::StatusCode::kInvalidArgument, "brackets"},
           {"no-such-host.invalid:80", absl::StatusCode::kNotFound, "cannot resolve host"},
           {"192.0.2.1:0", absl::StatusCode::kUnavailable, "cannot listen"},
       }) {
    HttpServerOptions options;
    options.address = c.address;
    absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(options, Echo);
    ASSERT_FALSE(server.ok()) << c.address;
    EXPECT_EQ(server.status().code(), c.code) << c.address << ": " << server.status();
    EXPECT_THAT(std::string(server.status().message()), HasSubstr(c.message)) << server.status();
    EXPECT_THAT(std::string(server.status().message()), HasSubstr("\"" + c.address + "\"")) << server.status();
  }
}

TEST(HttpServerTest, PortInUseIsUnavailable) {
  auto first = StartOrDie({});
  ASSERT_NE(first, nullptr);
  HttpServerOptions options;
  options.address = first->address();
  absl::StatusOr<std::unique_ptr<HttpServer>> second = HttpServer::Start(options, Echo);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("in use"));
}

TEST(HttpServerTest, BadOptionsAreInvalidArgument) {
  HttpServerOptions options;
  options.address = "127.0.0.1:0";
  options.threads = 0;
  EXPECT_EQ(HttpServer::Start(options, Echo).status().code(), absl::StatusCode::kInvalidArgument);
  options.threads = 1;
  options.max_header_bytes = 10;
  EXPECT_EQ(HttpServer::Start(options, Echo).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(HttpServerTest, Ipv6Loopback) {
  HttpServerOptions options;
  options.address = "[::1]:0";
  absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(options, Echo);
  if (!server.ok()) GTEST_SKIP() << "no IPv6 loopback here: " << server.status();
  EXPECT_THAT((*server)->address(), StartsWith("[::1]:"));
}

TEST(HttpServerTest, ReasonPhrases) {
  EXPECT_STREQ(HttpReasonPhrase(404), "Not Found");
  EXPECT_STREQ(HttpReasonPhrase(431), "Request Header Fields Too Large");
  EXPECT_STREQ(HttpReasonPhrase(799), "Unknown");
}

}  // namespace
}  // namespace fedfm::coordinator
