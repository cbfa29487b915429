// A blocking HTTP/1.1 client for the server tests (Boost.Beast, loopback only).
#pragma once

// clang-format off
#include <utility>  // before Asio: Boost 1.74 needs it under C++20 (platform-notes.md)
// clang-format on
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace afd::testing {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;

struct Reply {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  bool keep_alive = false;
};

// One connection; requests go one after another (keep-alive).
class Client {
 public:
  explicit Client(uint16_t port) : sock_(ioc_) {
    sock_.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  }
  Reply call(const std::string& method, const std::string& target, const std::string& body = "",
             const std::map<std::string, std::string>& headers = {}) {
    bhttp::request<bhttp::string_body> req{bhttp::string_to_verb(method), target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    for (const auto& [k, v] : headers) req.set(k, v);
    if (!body.empty()) req.set(bhttp::field::content_type, "application/json");
    req.body() = body;
    req.prepare_payload();
    bhttp::write(sock_, req);
    return read_reply();
  }
  Reply read_reply() {
    bhttp::response_parser<bhttp::string_body> p;
    p.body_limit(1 << 30);
    bhttp::read(sock_, buf_, p);
    Reply r;
    r.status = static_cast<int>(p.get().result_int());
    r.body = p.get().body();
    r.keep_alive = p.get().keep_alive();
    for (const auto& f : p.get()) {
      std::string n(f.name_string());
      for (auto& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      r.headers[n] = std::string(f.value());
    }
    return r;
  }
  // Sends raw bytes (for malformed requests).
  void send_raw(const std::string& bytes) { net::write(sock_, net::buffer(bytes)); }
  // Reads raw bytes until `needle` shows up (or the peer closes); returns all read.
  std::string read_until(const std::string& needle) {
    std::string got;
    char b[4096];
    for (;;) {
      beast::error_code ec;
      size_t n = sock_.read_some(net::buffer(b), ec);
      got.append(b, n);
      if (ec || got.find(needle) != std::string::npos) return got;
    }
  }
  // True when the server closed the connection (a read returns EOF).
  bool closed_by_peer() {
    char b[256];
    beast::error_code ec;
    for (;;) {
      sock_.read_some(net::buffer(b), ec);
      if (ec) return ec == net::error::eof || ec == net::error::connection_reset;
    }
  }
  void close() {
    beast::error_code ec;
    sock_.shutdown(tcp::socket::shutdown_both, ec);
    sock_.close(ec);
  }

 private:
  net::io_context ioc_;
  tcp::socket sock_;
  beast::flat_buffer buf_;
};

// "data: ..." payloads of an SSE body, in order.
inline std::vector<std::string> sse_events(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    size_t end = body.find("\n\n", pos);
    out.push_back(body.substr(pos + 6, end - pos - 6));
    pos = end == std::string::npos ? body.size() : end + 2;
  }
  return out;
}

}  // namespace afd::testing
