// clang-format off
#include <utility>  // before Asio: Boost 1.74 needs it under C++20 (platform-notes.md)
// clang-format on
#include "serve/http_server.h"

#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

#include "core/log.h"

namespace afd::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;

std::string Request::header(const std::string& name) const {
  for (const auto& [k, v] : headers) {
    if (k.size() != name.size()) continue;
    bool eq = true;
    for (size_t i = 0; i < k.size() && eq; ++i)
      eq = std::tolower(static_cast<unsigned char>(k[i])) ==
           std::tolower(static_cast<unsigned char>(name[i]));
    if (eq) return v;
  }
  return "";
}

std::string status_reason(int status) {
  auto r = bhttp::obsolete_reason(static_cast<bhttp::status>(status));
  return std::string(r.data(), r.size());
}

namespace {

Response default_error(int status, const std::string& message) {
  std::string m;
  for (char c : message) {  // a minimal JSON string escape; the API layer formats its own
    if (c == '"' || c == '\\') m += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) m += c;
  }
  return {status, "application/json", "{\"error\": {\"message\": \"" + m + "\"}}", {}};
}

// "HTTP/1.1 <status> <reason>\r\n" + headers + blank line; the body follows.
std::string head(int status, const std::string& content_type, const Headers& extra, bool keep_alive,
                 const std::string& length_or_chunked) {
  std::string h = "HTTP/1.1 " + std::to_string(status) + " " + status_reason(status) + "\r\n";
  h += "Server: afd\r\nContent-Type: " + content_type + "\r\n";
  for (const auto& [k, v] : extra) h += k + ": " + v + "\r\n";
  h += length_or_chunked;
  h += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  return h;
}

std::string chunk(const std::string& data) {
  char len[24];
  std::snprintf(len, sizeof(len), "%zx\r\n", data.size());
  return len + data + "\r\n";
}

}  // namespace

// ---- shared state of a server: options, handler, the live connections ----------------------

class Session;

struct Core {
  ServerOptions opt;
  Handler handler;
  std::mutex mu;
  std::unordered_map<uint64_t, std::weak_ptr<Session>> sessions;
  uint64_t next_id = 0;
  std::atomic<size_t> open{0};
  std::atomic<size_t> busy{0};  // connections answering a request
  std::atomic<bool> closing{false};
  // Channels may outlive the server (an engine callback holds one until the engine stops);
  // they post to a strand only while `alive`, under a shared lock, so nothing touches the
  // io_context once the server has started to destroy it.
  std::shared_mutex life_mu;
  bool alive = true;
};

class Exchange;

// One connection. Every member is touched on the connection's strand only.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket s, std::shared_ptr<Core> core)
      : stream_(std::move(s)), core_(std::move(core)) {}
  ~Session() {
    close_socket();
    std::lock_guard<std::mutex> lk(core_->mu);
    core_->sessions.erase(id_);
  }

  void start(uint64_t id) {
    id_ = id;
    net::post(stream_.get_executor(), [self = shared_from_this()] { self->read_header(); });
  }

  // Entry points for Exchange and Server; each posts onto the strand.
  template <typename F>
  void run(F f) {
    net::post(stream_.get_executor(),
              [self = shared_from_this(), f = std::move(f)]() mutable { f(*self); });
  }

  void respond(uint64_t ex, Response r);
  void begin_stream(uint64_t ex, int status, const std::string& ct, const Headers& h);
  void write_chunk(uint64_t ex, std::string data);
  void end_stream(uint64_t ex, bool close);
  // Server shutdown: soft closes idle connections and ends keep-alive; hard also drops
  // connections that are still answering.
  void close_soft();
  void close_hard();
  // Answers immediately (before or instead of a handler) and closes the connection.
  void reject(int status, const std::string& message);

 private:
  void read_header();
  void on_header(beast::error_code ec);
  void on_body(beast::error_code ec);
  void dispatch();
  void watch_disconnect();
  void queue(std::string bytes);
  void pump();
  void finish_exchange();
  void drop();  // client gone (or hard shutdown): abort the exchange, close the socket
  // Closes once. `open` counts sockets, not objects: a handler still queued may hold this one.
  void close_socket() {
    if (closed_) return;
    closed_ = true;
    out_.clear();
    stream_.close();
    core_->open.fetch_sub(1);
  }
  bool current(uint64_t ex) const { return ex_ && ex == ex_id_ && !closed_; }

  beast::tcp_stream stream_;
  std::shared_ptr<Core> core_;
  uint64_t id_ = 0;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::shared_ptr<Exchange> ex_;   // the request being answered (null between requests)
  std::shared_ptr<Session> self_;  // set while ex_ is: the exchange holds only a weak_ptr
  uint64_t ex_id_ = 0;
  bool keep_alive_ = true;
  bool streaming_ = false;
  bool http10_ = false;  // the request was HTTP/1.0
  bool ending_ = false;  // the last bytes of the response are queued
  bool closed_ = false;
  bool watching_ = false;  // a read-side wait for a disconnect is pending
  bool writing_ = false;
  std::deque<std::string> out_;
  std::string writing_buf_;
};

class Exchange : public ResponseChannel {
 public:
  Exchange(std::weak_ptr<Session> s, uint64_t id, std::shared_ptr<Core> core)
      : session_(std::move(s)), id_(id), core_(std::move(core)) {}

  void respond(Response r) override {
    if (claim_end())
      post([id = id_, r = std::move(r)](Session& s) mutable { s.respond(id, std::move(r)); });
  }
  void begin_stream(int status, std::string ct, Headers h) override {
    if (ended_.load()) return;
    post([id = id_, status, ct = std::move(ct), h = std::move(h)](Session& s) {
      s.begin_stream(id, status, ct, h);
    });
  }
  void write(std::string data) override {
    if (data.empty() || ended_.load()) return;
    post([id = id_, d = std::move(data)](Session& s) mutable { s.write_chunk(id, std::move(d)); });
  }
  void end_stream(bool close) override {
    if (claim_end()) post([id = id_, close](Session& s) { s.end_stream(id, close); });
  }
  void on_disconnect(std::function<void()> f) override {
    std::unique_lock<std::mutex> lk(mu_);
    if (gone_) {
      lk.unlock();
      f();
      return;
    }
    on_gone_ = std::move(f);
  }
  bool disconnected() const override {
    std::lock_guard<std::mutex> lk(mu_);
    return gone_;
  }

  // From the session's strand.
  void fire_disconnect() {
    std::function<void()> f;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (gone_ || completed_) return;
      gone_ = true;
      f = std::move(on_gone_);
    }
    ended_.store(true);
    if (f) f();
  }
  void mark_completed() {
    std::lock_guard<std::mutex> lk(mu_);
    completed_ = true;
    on_gone_ = nullptr;  // it may hold the caller's state; nothing will call it now
  }

 private:
  bool claim_end() { return !ended_.exchange(true); }
  template <typename F>
  void post(F f);

  // Weak: a channel held after its connection closed must not keep asio objects alive (the
  // session keeps itself alive while it answers).
  std::weak_ptr<Session> session_;
  uint64_t id_;
  std::shared_ptr<Core> core_;
  std::atomic<bool> ended_{false};  // a final respond/end_stream was issued
  mutable std::mutex mu_;
  bool gone_ = false, completed_ = false;
  std::function<void()> on_gone_;
};

template <typename F>
void Exchange::post(F f) {
  std::shared_lock<std::shared_mutex> lk(core_->life_mu);
  if (!core_->alive) return;
  if (auto s = session_.lock()) s->run(std::move(f));
}

void Session::read_header() {
  if (closed_) return;
  if (core_->closing.load()) return close_soft();
  parser_.emplace();
  parser_->header_limit(static_cast<uint32_t>(core_->opt.max_header_bytes));
  parser_->body_limit(core_->opt.max_body_bytes);
  stream_.expires_after(core_->opt.idle_timeout);
  bhttp::async_read_header(
      stream_, buffer_, *parser_,
      [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
}

void Session::on_header(beast::error_code ec) {
  if (closed_) return;
  if (ec == bhttp::error::header_limit) return reject(431, "request header too large");
  if (ec == bhttp::error::body_limit)  // Content-Length alone was already too large
    return reject(
        413, "request body is larger than " + std::to_string(core_->opt.max_body_bytes) + " bytes");
  if (ec) {
    // EOF, reset, timeout, or garbage. Garbage gets a 400 so a confused client learns why.
    static const auto& http_errors = bhttp::make_error_code(bhttp::error::bad_method).category();
    if (ec.category() == http_errors && ec != bhttp::error::end_of_stream &&
        ec != bhttp::error::partial_message)
      return reject(400, "malformed HTTP request: " + ec.message());
    return drop();
  }
  auto& req = parser_->get();
  if (auto len = parser_->content_length(); len && *len > core_->opt.max_body_bytes)
    return reject(413, "request body of " + std::to_string(*len) + " bytes is larger than " +
                           std::to_string(core_->opt.max_body_bytes));
  auto read_body = [this] {
    bhttp::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_body(ec); });
  };
  auto expect = req[bhttp::field::expect];
  if (beast::iequals(expect, "100-continue") && !parser_->is_done()) {
    // curl waits a second for this before sending a body over 1 KiB.
    auto buf = std::make_shared<std::string>("HTTP/1.1 100 Continue\r\n\r\n");
    net::async_write(stream_, net::buffer(*buf),
                     [self = shared_from_this(), buf, read_body](beast::error_code ec, size_t) {
                       if (ec || self->closed_) return self->drop();
                       read_body();
                     });
    return;
  }
  if (parser_->is_done()) return dispatch();
  read_body();
}

void Session::on_body(beast::error_code ec) {
  if (closed_) return;
  if (ec == bhttp::error::body_limit)
    return reject(
        413, "request body is larger than " + std::to_string(core_->opt.max_body_bytes) + " bytes");
  if (ec) return drop();
  dispatch();
}

void Session::dispatch() {
  stream_.expires_never();
  auto& m = parser_->get();
  Request req;
  req.method = std::string(m.method_string());
  std::string target(m.target());
  auto q = target.find('?');
  req.path = target.substr(0, q);
  if (q != std::string::npos) req.query = target.substr(q + 1);
  for (const auto& f : m) {
    std::string name(f.name_string());
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    req.headers.emplace_back(std::move(name), std::string(f.value()));
  }
  req.body = std::move(m.body());
  keep_alive_ = parser_->keep_alive() && !core_->closing.load();
  http10_ = m.version() < 11;
  parser_.reset();
  streaming_ = ending_ = false;
  ex_id_++;
  ex_ = std::make_shared<Exchange>(weak_from_this(), ex_id_, core_);
  self_ = shared_from_this();
  core_->busy.fetch_add(1);
  watch_disconnect();
  auto ex = ex_;
  try {
    core_->handler(std::move(req), ex);
  } catch (const std::exception& e) {
    log_warn("http handler failed: {}", e.what());
    ex->respond(core_->opt.error_formatter(500, std::string("internal error: ") + e.what()));
  }
}

// A closed client is otherwise only noticed on the next write, which may be far away (a queued
// request). The socket turning readable with nothing to read (EOF) means the peer closed.
void Session::watch_disconnect() {
  if (watching_ || closed_) return;
  watching_ = true;
  stream_.socket().async_wait(
      tcp::socket::wait_read, [self = shared_from_this()](beast::error_code ec) {
        self->watching_ = false;
        if (ec || self->closed_ || !self->ex_) return;
        char c;
        ssize_t n = ::recv(self->stream_.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
          // With the last bytes already queued, the write decides: a client that read the
          // whole response and then closed did not abandon it.
          if (self->ending_) return;
          return self->drop();
        }
        if (n < 0) return self->watch_disconnect();  // spurious wake-up
        // n > 0: the client pipelined its next request. Waiting again would wake at once forever;
        // a disconnect will show as a failed write instead.
      });
}

void Session::respond(uint64_t ex, Response r) {
  if (!current(ex) || streaming_) return;
  queue(head(r.status, r.content_type, r.headers, keep_alive_,
             "Content-Length: " + std::to_string(r.body.size()) + "\r\n") +
        r.body);
  ending_ = true;
  pump();
}

void Session::begin_stream(uint64_t ex, int status, const std::string& ct, const Headers& h) {
  if (!current(ex) || streaming_ || ending_) return;
  streaming_ = true;
  Headers all = h;
  all.emplace_back("Cache-Control", "no-cache");
  // HTTP/1.0 has no chunked encoding: the body runs until the connection closes.
  if (http10_) keep_alive_ = false;
  queue(head(status, ct, all, keep_alive_, http10_ ? "" : "Transfer-Encoding: chunked\r\n"));
  pump();
}

void Session::write_chunk(uint64_t ex, std::string data) {
  if (!current(ex) || !streaming_ || ending_) return;
  queue(http10_ ? std::move(data) : chunk(data));
  pump();
}

void Session::end_stream(uint64_t ex, bool close) {
  if (!current(ex)) return;
  if (!streaming_) {  // ended before it began: an empty 200 stream
    begin_stream(ex, 200, "text/event-stream", {});
  }
  if (close) keep_alive_ = false;
  if (!http10_) queue("0\r\n\r\n");
  ending_ = true;
  pump();
}

void Session::queue(std::string bytes) { out_.push_back(std::move(bytes)); }

void Session::pump() {
  if (writing_ || closed_) return;
  if (out_.empty()) {
    if (ending_) finish_exchange();
    return;
  }
  // Coalesce whatever is queued into one write: many small SSE events become one syscall.
  writing_buf_.clear();
  while (!out_.empty()) {
    writing_buf_ += out_.front();
    out_.pop_front();
  }
  writing_ = true;
  stream_.expires_after(core_->opt.write_timeout);
  net::async_write(stream_, net::buffer(writing_buf_),
                   [self = shared_from_this()](beast::error_code ec, size_t) {
                     self->writing_ = false;
                     if (self->closed_) return;
                     if (ec) return self->drop();
                     self->stream_.expires_never();
                     self->pump();
                   });
}

void Session::finish_exchange() {
  auto keep = std::move(self_);  // released when this returns
  if (ex_) {
    ex_->mark_completed();
    ex_.reset();
    core_->busy.fetch_sub(1);
  }
  streaming_ = ending_ = false;
  if (!keep_alive_ || core_->closing.load()) {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    close_socket();
    return;
  }
  read_header();
}

void Session::drop() {
  if (closed_) return;
  auto keep = std::move(self_);  // released when this returns
  close_socket();
  if (ex_) {
    auto ex = std::move(ex_);
    core_->busy.fetch_sub(1);
    ex->fire_disconnect();
  }
}

void Session::reject(int status, const std::string& message) {
  if (closed_) return;
  if (ex_) return drop();  // mid-exchange: nothing sensible can be written any more
  Response r = core_->opt.error_formatter(status, message);
  keep_alive_ = false;
  ex_id_++;
  ex_ = std::make_shared<Exchange>(weak_from_this(), ex_id_, core_);
  self_ = shared_from_this();
  core_->busy.fetch_add(1);
  respond(ex_id_, std::move(r));
}

void Session::close_soft() {
  keep_alive_ = false;
  if (!ex_) close_socket();
}

void Session::close_hard() { drop(); }

// ---- Router ----------------------------------------------------------------------------------

Router::Router(ErrorFormatter errors) : errors_(std::move(errors)) {}

void Router::add(const std::string& method, const std::string& path, Handler h) {
  exact_[path][method] = std::move(h);
}

void Router::add_prefix(const std::string& method, const std::string& prefix, Handler h) {
  for (auto& [p, m] : prefix_)
    if (p == prefix) {
      m[method] = std::move(h);
      return;
    }
  prefix_.push_back({prefix, {{method, std::move(h)}}});
}

std::string Router::route_of(const std::string& path) const {
  if (exact_.count(path)) return path;
  for (const auto& [p, m] : prefix_)
    if (path.rfind(p, 0) == 0) return p + "*";
  return "other";
}

void Router::operator()(Request req, std::shared_ptr<ResponseChannel> ch) const {
  const std::map<std::string, Handler>* methods = nullptr;
  if (auto it = exact_.find(req.path); it != exact_.end()) methods = &it->second;
  for (size_t i = 0; !methods && i < prefix_.size(); ++i)
    if (req.path.rfind(prefix_[i].first, 0) == 0) methods = &prefix_[i].second;
  if (!methods) return ch->respond(errors_(404, "no route for " + req.method + " " + req.path));
  auto h = methods->find(req.method);
  if (h == methods->end()) {
    std::string allow;
    for (const auto& [m, _] : *methods) allow += (allow.empty() ? "" : ", ") + m;
    Response r = errors_(405, "method " + req.method + " is not allowed for " + req.path +
                                  " (allowed: " + allow + ")");
    r.headers.emplace_back("Allow", allow);
    return ch->respond(std::move(r));
  }
  h->second(std::move(req), std::move(ch));
}

// ---- Server ------------------------------------------------------------------------------------

struct Server::Impl {
  std::shared_ptr<Core> core;
  net::io_context ioc;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  tcp::acceptor acceptor{net::make_strand(ioc)};
  net::steady_timer retry_timer{acceptor.get_executor()};
  std::vector<std::thread> threads;
  uint16_t port = 0;
  std::mutex stop_mu;
  bool stopped = false;

  void accept() {
    acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket s) {
      if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
      if (ec) {
        // Out of file descriptors (EMFILE) and the like: back off instead of spinning.
        log_warn("accept failed: {}", ec.message());
        retry_timer.expires_after(std::chrono::milliseconds(50));
        retry_timer.async_wait([this](beast::error_code e) {
          if (!e) accept();
        });
        return;
      }
      start_session(std::move(s));
      accept();
    });
  }

  void start_session(tcp::socket s) {
    beast::error_code ec;
    s.set_option(tcp::no_delay(true), ec);  // SSE events are small and latency matters
    core->open.fetch_add(1);
    auto session = std::make_shared<Session>(std::move(s), core);
    uint64_t id;
    {
      std::lock_guard<std::mutex> lk(core->mu);
      id = core->next_id++;
      core->sessions[id] = session;
    }
    if (core->open.load() > core->opt.max_connections) {
      session->run([](Session& x) { x.reject(503, "too many connections"); });
      return;
    }
    session->start(id);
  }

  std::vector<std::shared_ptr<Session>> live() {
    std::vector<std::shared_ptr<Session>> v;
    std::lock_guard<std::mutex> lk(core->mu);
    for (auto& [_, w] : core->sessions)
      if (auto s = w.lock()) v.push_back(std::move(s));
    return v;
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  shutdown(std::chrono::milliseconds(0));
  std::unique_lock<std::shared_mutex> lk(impl_->core->life_mu);
  impl_->core->alive = false;
}

uint16_t Server::port() const { return impl_->port; }
const ServerOptions& Server::options() const { return impl_->core->opt; }
size_t Server::open_connections() const { return impl_->core->open.load(); }

Result<std::unique_ptr<Server>> Server::start(ServerOptions opt, Handler handler) {
  if (opt.threads < 1) return InvalidArgument("--threads must be >= 1, got {}", opt.threads);
  if (!opt.error_formatter) opt.error_formatter = default_error;
  auto impl = std::make_unique<Impl>();
  impl->core = std::make_shared<Core>();
  impl->core->opt = opt;
  impl->core->handler = std::move(handler);
  beast::error_code ec;
  auto addr = net::ip::make_address(opt.host, ec);
  if (ec) return InvalidArgument("--host {}: not an IP address ({})", opt.host, ec.message());
  tcp::endpoint ep(addr, opt.port);
  auto& acc = impl->acceptor;
  acc.open(ep.protocol(), ec);
  if (!ec) acc.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acc.bind(ep, ec);
  if (!ec) acc.listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    return Status(Code::kIOError,
                  fmt::format("cannot listen on {}:{}: {}", opt.host, opt.port, ec.message()));
  impl->port = acc.local_endpoint().port();
  impl->work.emplace(impl->ioc.get_executor());
  Impl* p = impl.get();
  net::post(acc.get_executor(), [p] { p->accept(); });
  for (int i = 0; i < opt.threads; ++i)
    impl->threads.emplace_back([p] {
      for (;;) {
        try {
          p->ioc.run();
          return;
        } catch (const std::exception& e) {  // a bug in a handler must not end the server
          log_warn("http server thread: {}", e.what());
        }
      }
    });
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

void Server::shutdown(std::chrono::milliseconds grace) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lk(m.stop_mu);
  if (m.stopped) return;
  m.stopped = true;
  m.core->closing.store(true);
  {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    net::post(m.acceptor.get_executor(), [&] {
      beast::error_code ec;
      m.acceptor.close(ec);
      m.retry_timer.cancel();
      std::lock_guard<std::mutex> l(mu);
      done = true;
      cv.notify_all();
    });
    std::unique_lock<std::mutex> l(mu);
    cv.wait_for(l, std::chrono::seconds(5), [&] { return done; });
  }
  for (auto& s : m.live()) s->run([](Session& x) { x.close_soft(); });
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (m.core->busy.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  for (auto& s : m.live()) s->run([](Session& x) { x.close_hard(); });
  // Closing completes every pending operation; wait briefly for the sessions to unwind.
  auto unwind = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (m.core->open.load() > 0 && std::chrono::steady_clock::now() < unwind)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  m.work.reset();
  m.ioc.stop();
  for (auto& t : m.threads) t.join();
  m.threads.clear();
  // Run what is still queued (late close_hard, aborted operations) on this thread, so that
  // sessions release themselves before the io_context goes.
  m.ioc.restart();
  m.ioc.poll();
}

int wait_for_termination_signal(const std::atomic<bool>* stop) {
  net::io_context ioc;
  net::signal_set signals(ioc, SIGINT, SIGTERM);
  net::steady_timer poll(ioc);
  int got = 0;
  signals.async_wait([&](beast::error_code ec, int sig) {
    if (!ec) got = sig;
    poll.cancel();
  });
  std::function<void()> arm = [&] {
    poll.expires_after(std::chrono::milliseconds(100));
    poll.async_wait([&](beast::error_code ec) {
      if (ec) return;
      if (stop && stop->load()) {
        signals.cancel();
        return;
      }
      arm();
    });
  };
  arm();
  ioc.run();
  return got;
}

}  // namespace afd::http
