// The HTTP layer alone: routing, keep-alive, limits, chunked streams from other threads,
// disconnect detection and shutdown.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "serve/http_server.h"
#include "test_http_client.h"

namespace afd::http {
namespace {

using afd::testing::Client;

// Polls `pred` for up to 10 s: the server reacts on its own threads.
template <typename P>
bool eventually(P pred) {
  for (int i = 0; i < 1000; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

struct Fixture {
  std::atomic<int> disconnects{0};
  std::shared_ptr<ResponseChannel> parked;  // a request left unanswered on purpose
  std::mutex mu;
  std::unique_ptr<Server> server;

  explicit Fixture(ServerOptions opt = {}) {
    opt.port = 0;
    auto router = std::make_shared<Router>([](int s, const std::string& m) {
      return Response{s, "text/plain", "E" + std::to_string(s) + ": " + m, {}};
    });
    router->add("GET", "/hello", [](Request req, std::shared_ptr<ResponseChannel> ch) {
      ch->respond({200, "text/plain", "hello " + req.query, {}});
    });
    router->add("POST", "/echo", [](Request req, std::shared_ptr<ResponseChannel> ch) {
      ch->respond({200,
                   "application/octet-stream",
                   req.body,
                   {{"X-Len", std::to_string(req.body.size())}}});
    });
    // Streams 50 chunks from a thread that is not a server thread, as an engine would.
    router->add("GET", "/stream", [](Request, std::shared_ptr<ResponseChannel> ch) {
      std::thread([ch] {
        ch->begin_stream(200, "text/event-stream");
        for (int i = 0; i < 50; ++i) ch->write("data: " + std::to_string(i) + "\n\n");
        ch->end_stream();
      }).detach();
    });
    router->add("GET", "/park", [this](Request, std::shared_ptr<ResponseChannel> ch) {
      ch->on_disconnect([this] { disconnects++; });
      std::lock_guard<std::mutex> lk(mu);
      parked = ch;
    });
    router->add_prefix("GET", "/items/", [](Request req, std::shared_ptr<ResponseChannel> ch) {
      ch->respond({200, "text/plain", req.path.substr(7), {}});
    });
    router->add("GET", "/throw", [](Request, std::shared_ptr<ResponseChannel>) {
      throw std::runtime_error("boom");
    });
    auto s = Server::start(opt, [router](Request r, std::shared_ptr<ResponseChannel> ch) {
      (*router)(std::move(r), std::move(ch));
    });
    EXPECT_TRUE(s.ok()) << s.status().to_string();
    server = std::move(s.value());
  }
  uint16_t port() const { return server->port(); }
  std::shared_ptr<ResponseChannel> take_parked() {
    std::lock_guard<std::mutex> lk(mu);
    return parked;
  }
};

TEST(HttpServer, KeepAliveServesSeveralRequestsOnOneConnection) {
  Fixture f;
  Client c(f.port());
  auto a = c.call("GET", "/hello?x=1");
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.body, "hello x=1");
  EXPECT_TRUE(a.keep_alive);
  auto b = c.call("POST", "/echo", "{\"k\": 1}");
  EXPECT_EQ(b.status, 200);
  EXPECT_EQ(b.body, "{\"k\": 1}");
  EXPECT_EQ(b.headers["x-len"], "8");
  EXPECT_EQ(f.server->open_connections(), 1u);
}

TEST(HttpServer, ConnectionCloseIsHonoured) {
  Fixture f;
  Client c(f.port());
  auto a = c.call("GET", "/hello", "", {{"Connection", "close"}});
  EXPECT_EQ(a.status, 200);
  EXPECT_FALSE(a.keep_alive);
  EXPECT_TRUE(c.closed_by_peer());
}

TEST(HttpServer, RouterAnswers404And405WithAllow) {
  Fixture f;
  Client c(f.port());
  auto a = c.call("GET", "/nope");
  EXPECT_EQ(a.status, 404);
  EXPECT_EQ(a.body.rfind("E404: ", 0), 0u) << a.body;
  auto b = c.call("DELETE", "/hello");
  EXPECT_EQ(b.status, 405);
  EXPECT_EQ(b.headers["allow"], "GET");
  auto d = c.call("GET", "/items/abc");
  EXPECT_EQ(d.status, 200);
  EXPECT_EQ(d.body, "abc");
  // Still usable after errors.
  EXPECT_EQ(c.call("GET", "/hello").status, 200);
}

TEST(HttpServer, BodyOverTheLimitIs413AndHeaderOverTheLimitIs431) {
  ServerOptions o;
  o.max_body_bytes = 1000;
  o.max_header_bytes = 2048;
  Fixture f(o);
  {
    Client c(f.port());
    auto r = c.call("POST", "/echo", std::string(1001, 'x'));
    EXPECT_EQ(r.status, 413);
  }
  {
    Client c(f.port());
    EXPECT_EQ(c.call("POST", "/echo", std::string(1000, 'x')).status, 200);
  }
  {
    Client c(f.port());
    auto r = c.call("GET", "/hello", "", {{"X-Big", std::string(4000, 'y')}});
    EXPECT_EQ(r.status, 431);
  }
}

TEST(HttpServer, ChunkedBodyOverTheLimitIs413) {
  ServerOptions o;
  o.max_body_bytes = 100;
  Fixture f(o);
  Client c(f.port());
  std::string chunk(80, 'z');
  c.send_raw("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n50\r\n" + chunk +
             "\r\n50\r\n" + chunk + "\r\n0\r\n\r\n");
  auto r = c.read_reply();
  EXPECT_EQ(r.status, 413);
}

TEST(HttpServer, MalformedRequestIs400) {
  Fixture f;
  Client c(f.port());
  c.send_raw("THIS IS NOT HTTP\r\n\r\n");
  auto r = c.read_reply();
  EXPECT_EQ(r.status, 400);
}

TEST(HttpServer, ExpectContinueGetsA100BeforeTheBody) {
  Fixture f;
  Client c(f.port());
  c.send_raw("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  std::string got = c.read_until("\r\n\r\n");
  EXPECT_EQ(got.rfind("HTTP/1.1 100 Continue", 0), 0u) << got;
  c.send_raw("hello");
  auto r = c.read_reply();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hello");
}

TEST(HttpServer, StreamsChunksWrittenFromAnotherThreadInOrder) {
  Fixture f;
  Client c(f.port());
  for (int round = 0; round < 3; ++round) {  // and the connection is reusable after a stream
    auto r = c.call("GET", "/stream");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.headers["transfer-encoding"], "chunked");
    EXPECT_EQ(r.headers["content-type"], "text/event-stream");
    auto ev = afd::testing::sse_events(r.body);
    ASSERT_EQ(ev.size(), 50u);
    for (int i = 0; i < 50; ++i) EXPECT_EQ(ev[i], std::to_string(i));
  }
}

TEST(HttpServer, Http10ClientsGetAStreamWithoutChunkedEncoding) {
  Fixture f;
  Client c(f.port());
  c.send_raw("GET /stream HTTP/1.0\r\n\r\n");
  std::string got = c.read_until("no such text");  // everything until the server closes
  EXPECT_EQ(got.find("Transfer-Encoding"), std::string::npos) << got;
  EXPECT_NE(got.find("Connection: close"), std::string::npos) << got;
  std::string body = got.substr(got.find("\r\n\r\n") + 4);
  auto ev = afd::testing::sse_events(body);
  ASSERT_EQ(ev.size(), 50u);
  EXPECT_EQ(ev[49], "49");
}

TEST(HttpServer, HandlerExceptionIs500) {
  Fixture f;
  Client c(f.port());
  EXPECT_EQ(c.call("GET", "/throw").status, 500);
  EXPECT_EQ(c.call("GET", "/hello").status, 200);
}

TEST(HttpServer, ClientThatClosesWhileWaitingIsNoticedWithoutAWrite) {
  Fixture f;
  Client c(f.port());
  c.send_raw("GET /park HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(eventually([&] { return f.take_parked() != nullptr; }));
  EXPECT_FALSE(f.take_parked()->disconnected());
  c.close();
  EXPECT_TRUE(eventually([&] { return f.disconnects.load() == 1; }));
  EXPECT_TRUE(f.take_parked()->disconnected());
  // A late answer is ignored, not a crash.
  f.take_parked()->respond({200, "text/plain", "late", {}});
  EXPECT_TRUE(eventually([&] { return f.server->open_connections() == 0; }));
  EXPECT_EQ(f.disconnects.load(), 1);
}

TEST(HttpServer, ClientThatClosesMidStreamIsNoticedOnWrite) {
  Fixture f;
  Client c(f.port());
  c.send_raw("GET /park HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(eventually([&] { return f.take_parked() != nullptr; }));
  auto ch = f.take_parked();
  ch->begin_stream(200, "text/event-stream");
  ch->write("data: 1\n\n");
  c.read_until("data: 1");
  c.close();
  // Keep writing as an engine would; the failed write (or the read watch) reports it once.
  for (int i = 0; i < 200 && f.disconnects.load() == 0; ++i) {
    ch->write("data: more\n\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(eventually([&] { return f.disconnects.load() == 1; }));
  ch->end_stream();
  EXPECT_EQ(f.disconnects.load(), 1);
}

TEST(HttpServer, OnDisconnectNeverRunsAfterACompleteResponse) {
  Fixture f;
  Client c(f.port());
  c.send_raw("GET /park HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(eventually([&] { return f.take_parked() != nullptr; }));
  f.take_parked()->respond({200, "text/plain", "ok", {}});
  EXPECT_EQ(c.read_reply().body, "ok");
  c.close();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(f.disconnects.load(), 0);
}

TEST(HttpServer, ShutdownClosesIdleConnectionsAndDisconnectsPendingOnes) {
  Fixture f;
  Client idle(f.port());
  EXPECT_EQ(idle.call("GET", "/hello").status, 200);
  Client busy(f.port());
  busy.send_raw("GET /park HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(eventually([&] { return f.take_parked() != nullptr; }));
  auto t0 = std::chrono::steady_clock::now();
  f.server->shutdown(std::chrono::milliseconds(200));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_EQ(f.disconnects.load(), 1);
  EXPECT_TRUE(idle.closed_by_peer());
  EXPECT_TRUE(busy.closed_by_peer());
  f.server->shutdown(std::chrono::milliseconds(0));  // idempotent
}

TEST(HttpServer, ShutdownLetsARequestInFlightFinishWithinTheGrace) {
  Fixture f;
  Client c(f.port());
  c.send_raw("GET /park HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(eventually([&] { return f.take_parked() != nullptr; }));
  std::thread answer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    f.take_parked()->respond({200, "text/plain", "done", {}});
  });
  f.server->shutdown(std::chrono::milliseconds(5000));
  answer.join();
  auto r = c.read_reply();
  EXPECT_EQ(r.body, "done");
  EXPECT_FALSE(r.keep_alive);  // no keep-alive while shutting down
  EXPECT_EQ(f.disconnects.load(), 0);
}

TEST(HttpServer, ManyConcurrentConnections) {
  ServerOptions o;
  o.threads = 2;
  Fixture f(o);
  std::vector<std::unique_ptr<Client>> cs;
  for (int i = 0; i < 300; ++i) cs.push_back(std::make_unique<Client>(f.port()));
  for (auto& c : cs) c->send_raw("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
  for (auto& c : cs) {
    auto r = c->read_reply();
    EXPECT_EQ(afd::testing::sse_events(r.body).size(), 50u);
  }
}

TEST(HttpServer, BindFailureNamesTheAddress) {
  Fixture f;
  ServerOptions o;
  o.port = f.port();  // taken
  auto s = Server::start(o, [](Request, std::shared_ptr<ResponseChannel>) {});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("127.0.0.1:" + std::to_string(f.port())), std::string::npos)
      << s.status().message();
  ServerOptions bad_host;
  bad_host.host = "not-an-ip";
  auto bad = Server::start(bad_host, [](Request, std::shared_ptr<ResponseChannel>) {});
  EXPECT_FALSE(bad.ok());
}

}  // namespace
}  // namespace afd::http
