// <utility> must come before the Asio headers under C++20 with Boost 1.74 (platform-notes.md).
#include "serve/bench_client.h"

#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <utility>

namespace afd::serve::bench {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

Status unavailable(std::string msg) { return Status(Code::kUnavailable, std::move(msg)); }

Clock::duration to_duration(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// A failure as the report shows it: what the client was doing and why it stopped.
std::string describe(std::string_view phase, const beast::error_code& ec, double timeout_s) {
  if (ec == beast::error::timeout)
    return fmt::format("{}: timed out ({} s per request)", phase, timeout_s);
  if (ec == http::error::end_of_stream || ec == asio::error::eof ||
      ec == http::error::partial_message)
    return fmt::format("{}: connection closed by the server", phase);
  return fmt::format("{}: {}", phase, ec.message());
}

// An error body on one line, short enough to print.
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  if (s.size() > 300) s = s.substr(0, 300) + "...";
  return s;
}

// Thousands of concurrent streams need as many sockets; the default soft limit is often 1024.
void raise_fd_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

}  // namespace

Result<Url> parse_url(std::string_view url) {
  const std::string original(url);
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, 8) == "https://")
    return InvalidArgument("--url {}: https is not supported (afd bench speaks plain http)",
                           original);
  if (url.substr(0, kScheme.size()) != kScheme)
    return InvalidArgument("--url {}: expected http://host[:port][/path]", original);
  url.remove_prefix(kScheme.size());
  const size_t slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : url.substr(slash);
  Url u;
  u.host_header = std::string(authority);
  std::string_view port;
  if (!authority.empty() && authority[0] == '[') {  // [IPv6]:port
    const size_t close = authority.find(']');
    if (close == std::string_view::npos)
      return InvalidArgument("--url {}: unbalanced '[' in the host", original);
    u.host = std::string(authority.substr(1, close - 1));
    std::string_view rest = authority.substr(close + 1);
    if (!rest.empty() && rest[0] != ':')
      return InvalidArgument("--url {}: expected ':' after ']'", original);
    if (!rest.empty()) port = rest.substr(1);
  } else {
    const size_t colon = authority.rfind(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (u.host.empty()) return InvalidArgument("--url {}: no host", original);
  if (port.empty()) {
    u.port = "80";
  } else {
    int p = 0;
    for (char c : port) {
      if (c < '0' || c > '9' || p > 65535)
        return InvalidArgument("--url {}: bad port '{}'", original, port);
      p = p * 10 + (c - '0');
    }
    if (p < 1 || p > 65535) return InvalidArgument("--url {}: bad port '{}'", original, port);
    u.port = std::string(port);
  }
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  u.base = std::string(path);
  return u;
}

Result<HttpResponse> http_get(const Url& url, const std::string& path, double timeout_s) {
  asio::io_context ioc;
  beast::error_code ec;
  tcp::resolver resolver(ioc);
  auto endpoints = resolver.resolve(url.host, url.port, ec);
  if (ec) return unavailable(fmt::format("cannot resolve {}: {}", url.host, ec.message()));
  const auto deadline = Clock::now() + to_duration(timeout_s);
  const std::string where = fmt::format("GET http://{}{}{}", url.host_header, url.base, path);
  beast::tcp_stream stream(ioc);
  http::request<http::empty_body> req{http::verb::get, url.base + path, 11};
  req.set(http::field::host, url.host_header);
  req.set(http::field::user_agent, "afd-bench");
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  std::string failure;
  stream.expires_at(deadline);
  stream.async_connect(endpoints, [&](const beast::error_code& e, const tcp::endpoint&) {
    if (e) {
      failure = describe("connect", e, timeout_s);
      return;
    }
    stream.expires_at(deadline);
    http::async_write(stream, req, [&](const beast::error_code& e, size_t) {
      if (e) {
        failure = describe("send", e, timeout_s);
        return;
      }
      stream.expires_at(deadline);
      http::async_read(stream, buf, res, [&](const beast::error_code& e, size_t) {
        if (e) failure = describe("receive", e, timeout_s);
      });
    });
  });
  ioc.run();
  if (!failure.empty()) return unavailable(fmt::format("{}: {}", where, failure));
  return HttpResponse{int(res.result_int()), std::move(res.body())};
}

namespace {

class Session;

// Owns the io_context and the schedule: releases requests at their arrival times, starts them
// while under the concurrency cap, and collects their results. Everything runs on the one thread
// that calls run(), so no state here needs a lock.
class LoadRunner {
 public:
  LoadRunner(const Url& url, const std::vector<std::string>& bodies, const LoadOptions& opts)
      : url_(url), bodies_(bodies), opts_(opts), target_(url.base + opts.path) {}

  Status resolve() {
    beast::error_code ec;
    tcp::resolver resolver(ioc_);
    endpoints_ = resolver.resolve(url_.host, url_.port, ec);
    if (ec) return unavailable(fmt::format("cannot resolve {}: {}", url_.host, ec.message()));
    return Status::OK();
  }

  LoadResult run() {
    results_.assign(bodies_.size(), RequestResult{});
    start_ = end_ = Clock::now();
    if (!bodies_.empty()) {
      release_due();
      arm_progress();
      ioc_.run();
    }
    if (opts_.on_progress) opts_.on_progress(snapshot());
    LoadResult out;
    out.results = std::move(results_);
    out.duration_s = seconds_between(start_, end_);
    out.max_in_flight = int64_t(max_in_flight_);
    return out;
  }

 private:
  friend class Session;

  double elapsed() const { return seconds_between(start_, Clock::now()); }

  Progress snapshot() const {
    return Progress{bodies_.size(), done_, failed_, in_flight_, elapsed()};
  }

  // Moves every request whose arrival time has come into the startable set.
  void release_due() {
    const size_t n = bodies_.size();
    if (opts_.arrivals_s.empty()) {
      released_ = n;
    } else {
      const double now = elapsed();
      while (released_ < n && opts_.arrivals_s[released_] <= now) ++released_;
    }
    dispatch();
    if (released_ < n) {
      arrival_timer_.expires_at(start_ + to_duration(opts_.arrivals_s[released_]));
      arrival_timer_.async_wait([this](const beast::error_code& ec) {
        if (!ec) release_due();
      });
    }
  }

  void arm_progress() {
    if (!opts_.on_progress) return;
    progress_timer_.expires_after(to_duration(opts_.progress_interval_s));
    progress_timer_.async_wait([this](const beast::error_code& ec) {
      if (ec || done_ == bodies_.size()) return;
      opts_.on_progress(snapshot());
      arm_progress();
    });
  }

  void dispatch();
  void finished(size_t index, RequestResult r, std::unique_ptr<beast::tcp_stream> keep_alive);

  const Url& url_;
  const std::vector<std::string>& bodies_;
  const LoadOptions& opts_;
  const std::string target_;
  asio::io_context ioc_{1};  // one thread: lets Asio skip its internal locking
  tcp::resolver::results_type endpoints_;
  asio::steady_timer arrival_timer_{ioc_};
  asio::steady_timer progress_timer_{ioc_};
  // Connections whose last response ended cleanly with keep-alive: reused before opening new
  // ones, which also keeps a long run from exhausting ephemeral ports with TIME_WAIT sockets.
  std::vector<std::unique_ptr<beast::tcp_stream>> idle_;
  std::vector<RequestResult> results_;
  Clock::time_point start_, end_;
  size_t released_ = 0;  // requests [0, released_) have arrived
  size_t next_ = 0;      // requests [0, next_) have been started
  size_t in_flight_ = 0, done_ = 0, failed_ = 0, max_in_flight_ = 0;
};

// One request: connect (or reuse an idle connection), send, read the streamed body, finish.
// Each step is one asynchronous operation whose handler starts the next, so exactly one
// operation is pending at a time and exactly one path ends in LoadRunner::finished. Every
// operation carries the request's deadline (beast::tcp_stream closes the socket when it passes).
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(LoadRunner& r, size_t index, std::unique_ptr<beast::tcp_stream> idle)
      : r_(r), index_(index), stream_(std::move(idle)) {
    const LoadOptions& o = r.opts_;
    known_len_ = index < o.known_prompt_lens.size() ? o.known_prompt_lens[index] : -1;
    req_.method(http::verb::post);
    req_.target(r.target_);
    req_.version(11);
    req_.set(http::field::host, r.url_.host_header);
    req_.set(http::field::user_agent, "afd-bench");
    req_.set(http::field::content_type, "application/json");
    req_.set(http::field::accept, "text/event-stream");
    if (!o.api_key.empty()) req_.set(http::field::authorization, "Bearer " + o.api_key);
    req_.body() = r.bodies_[index];
    req_.prepare_payload();
  }

  void start() {
    t0_ = Clock::now();
    deadline_ = t0_ + to_duration(r_.opts_.timeout_s);
    if (stream_) {
      reused_ = true;
      write();
    } else {
      connect();
    }
  }

 private:
  void connect() {
    stream_ = std::make_unique<beast::tcp_stream>(r_.ioc_);
    stream_->expires_at(deadline_);
    stream_->async_connect(
        r_.endpoints_, [self = shared_from_this()](const beast::error_code& ec,
                                                   const tcp::endpoint&) { self->on_connect(ec); });
  }

  void on_connect(const beast::error_code& ec) {
    if (ec) return fail(describe("connect", ec, r_.opts_.timeout_s));
    beast::error_code ignored;
    stream_->socket().set_option(tcp::no_delay(true), ignored);
    write();
  }

  void write() {
    stream_->expires_at(deadline_);
    http::async_write(
        *stream_, req_,
        [self = shared_from_this()](const beast::error_code& ec, size_t) { self->on_write(ec); });
  }

  void on_write(const beast::error_code& ec) {
    if (ec) {
      if (can_retry()) return retry();
      return fail(describe("send", ec, r_.opts_.timeout_s));
    }
    parser_.emplace();
    // A stream is as long as it is; the deadline bounds it. Not boost::none: Boost 1.74 compares
    // a Content-Length against an empty optional as "exceeded".
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    stream_->expires_at(deadline_);
    http::async_read_header(
        *stream_, buf_, *parser_,
        [self = shared_from_this()](const beast::error_code& ec, size_t) { self->on_header(ec); });
  }

  void on_header(const beast::error_code& ec) {
    if (ec) {
      if (can_retry() && !parser_->got_some()) return retry();
      return fail(describe("response", ec, r_.opts_.timeout_s));
    }
    status_ = parser_->get().result_int();
    read_body();
  }

  void read_body() {
    if (parser_->is_done()) return complete();
    auto& body = parser_->get().body();
    body.data = chunk_.data();
    body.size = chunk_.size();
    stream_->expires_at(deadline_);
    http::async_read_some(
        *stream_, buf_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_body(ec); });
  }

  void on_body(beast::error_code ec) {
    // need_buffer only says our chunk_ is full: not an error with buffer_body.
    if (ec == http::error::need_buffer) ec = {};
    if (ec) return fail(describe("stream", ec, r_.opts_.timeout_s));
    const size_t got = chunk_.size() - parser_->get().body().size;
    if (got > 0) {
      // One timestamp per network read: events that arrived together share it.
      const std::string_view bytes(chunk_.data(), got);
      if (status_ == 200)
        acc_.on_bytes(bytes, seconds_between(t0_, Clock::now()));
      else if (error_body_.size() < 1024)
        error_body_.append(bytes.substr(0, 1024 - error_body_.size()));
    }
    read_body();
  }

  void complete() {
    if (status_ != 200) return fail(fmt::format("HTTP {}: {}", status_, one_line(error_body_)));
    RequestResult res = acc_.finish(seconds_between(t0_, Clock::now()), known_len_);
    std::unique_ptr<beast::tcp_stream> keep;
    if (res.ok && parser_->keep_alive()) {
      stream_->expires_never();
      keep = std::move(stream_);
    } else {
      close();
    }
    r_.finished(index_, std::move(res), std::move(keep));
  }

  // A server may close an idle keep-alive connection just as we reuse it; that shows as a send
  // error or an empty response and deserves one more try on a fresh connection.
  bool can_retry() const { return reused_ && !retried_; }

  void retry() {
    retried_ = true;
    reused_ = false;
    close();
    stream_.reset();
    buf_.clear();
    connect();
  }

  void close() {
    if (!stream_) return;
    beast::error_code ignored;
    stream_->socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_->socket().close(ignored);
  }

  void fail(std::string message) {
    close();
    RequestResult res;
    res.error = std::move(message);
    res.e2e_s = seconds_between(t0_, Clock::now());
    r_.finished(index_, std::move(res), nullptr);
  }

  LoadRunner& r_;
  const size_t index_;
  int64_t known_len_ = -1;
  Clock::time_point t0_, deadline_;
  std::unique_ptr<beast::tcp_stream> stream_;
  bool reused_ = false, retried_ = false;
  http::request<http::string_body> req_;
  beast::flat_buffer buf_;
  std::optional<http::response_parser<http::buffer_body>> parser_;
  std::array<char, 4096> chunk_;  // body bytes land here, a read at a time
  int status_ = 0;
  std::string error_body_;  // the start of a non-200 body, for the error message
  StreamAccumulator acc_;
};

void LoadRunner::dispatch() {
  const size_t cap = opts_.max_concurrency;
  while (next_ < released_ && (cap == 0 || in_flight_ < cap)) {
    const size_t i = next_++;
    ++in_flight_;
    max_in_flight_ = std::max(max_in_flight_, in_flight_);
    std::unique_ptr<beast::tcp_stream> idle;
    if (!idle_.empty()) {
      idle = std::move(idle_.back());
      idle_.pop_back();
    }
    std::make_shared<Session>(*this, i, std::move(idle))->start();
  }
}

void LoadRunner::finished(size_t index, RequestResult r,
                          std::unique_ptr<beast::tcp_stream> keep_alive) {
  --in_flight_;
  ++done_;
  if (!r.ok) {
    ++failed_;
    if (opts_.on_failure) opts_.on_failure(index, r.error);
  }
  results_[index] = std::move(r);
  if (keep_alive) idle_.push_back(std::move(keep_alive));
  if (done_ == bodies_.size()) {
    end_ = Clock::now();
    // Nothing else may keep ioc_.run() going once the last request is in.
    arrival_timer_.cancel();
    progress_timer_.cancel();
    idle_.clear();
    return;
  }
  dispatch();
}

}  // namespace

Result<LoadResult> run_load(const Url& url, const std::vector<std::string>& bodies,
                            const LoadOptions& opts) {
  if (!opts.arrivals_s.empty() && opts.arrivals_s.size() != bodies.size())
    return InvalidArgument("{} arrival times for {} requests", opts.arrivals_s.size(),
                           bodies.size());
  raise_fd_limit();
  LoadRunner runner(url, bodies, opts);
  AFD_RETURN_IF_ERROR(runner.resolve());
  return runner.run();
}

}  // namespace afd::serve::bench
