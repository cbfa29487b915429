// An asynchronous HTTP/1.1 server (Boost.Beast over Asio) for the OpenAI-compatible API.
//
// One io_context runs on N threads; every connection lives on its own strand, so thousands of
// idle or streaming connections cost no thread each (DESIGN.md §4). Requests are read with size
// limits (header and body), keep-alive is honoured, and a response may be sent whole or
// streamed in chunks (Transfer-Encoding: chunked, e.g. server-sent events) from any thread,
// which is how engine callbacks answer. A client that goes away while its request is being
// answered (closed socket seen by a read-side watch, or a failed write) triggers the
// request's on_disconnect callback once, so the caller can cancel the work behind it.
//
// Boost headers stay in http_server.cpp; this header is plain C++.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"

namespace afd::http {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string path;    // the target without the query: "/v1/completions"
  std::string query;   // after '?', undecoded ("" when none)
  Headers headers;     // names lower-case, in arrival order
  std::string body;
  // The value of a header (case-insensitive name), or "" when absent.
  std::string header(const std::string& name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  Headers headers;  // extra headers (e.g. "Allow")
};

// Reason phrase of a status code ("OK", "Not Found", ...).
std::string status_reason(int status);

// How one request is answered; thread-safe, shared by the handler and whatever finishes the
// work later (an engine thread). Exactly one response: either respond(), or begin_stream()
// then any write()s then end_stream(). Calls after the response ended, or after the client
// went away, are ignored (they are not errors: the two race by nature).
class ResponseChannel {
 public:
  virtual ~ResponseChannel() = default;
  virtual void respond(Response r) = 0;
  // Sends the status line and headers of a chunked response.
  virtual void begin_stream(int status, std::string content_type, Headers headers = {}) = 0;
  virtual void write(std::string data) = 0;  // one chunk (empty data is skipped)
  // Ends the chunked response; with `close`, the connection closes after it (no keep-alive),
  // for streams that ended in an error.
  virtual void end_stream(bool close = false) = 0;
  // Runs `f` once, on a server thread, when the client disconnects before the response ended,
  // or the server shuts down under it. Runs at once if that already happened. Never runs once
  // the response was written completely.
  virtual void on_disconnect(std::function<void()> f) = 0;
  virtual bool disconnected() const = 0;
};

// Called on a server thread for every request read; must not block for long (submit work,
// answer later through the channel).
using Handler = std::function<void(Request, std::shared_ptr<ResponseChannel>)>;

// Errors the server itself answers (malformed request, body too large, unknown route...):
// status and a message -> the response body.
using ErrorFormatter = std::function<Response(int status, const std::string& message)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8000;  // 0: any free port (Server::port() tells which)
  int threads = 2;
  size_t max_header_bytes = 16 * 1024;
  size_t max_body_bytes = 8 * 1024 * 1024;  // larger bodies get 413
  // A connection that sends nothing for this long between requests (or takes this long to
  // send one request) is closed; a write that makes no progress for write_timeout fails.
  std::chrono::milliseconds idle_timeout{60000};
  std::chrono::milliseconds write_timeout{60000};
  size_t max_connections = 100000;  // beyond this, new connections get 503 and are closed
  ErrorFormatter error_formatter;   // default: {"error": {"message": ...}}
};

// Path routing with the OpenAI error shape left to the formatter: an unknown path is 404, a
// known path with another method is 405 (with an Allow header).
class Router {
 public:
  explicit Router(ErrorFormatter errors);
  void add(const std::string& method, const std::string& path, Handler h);
  // Paths that start with `prefix` (e.g. "/v1/models/"), tried after the exact paths.
  void add_prefix(const std::string& method, const std::string& prefix, Handler h);
  // The route a path belongs to, for metrics: the registered path or prefix, else "other".
  std::string route_of(const std::string& path) const;
  void operator()(Request req, std::shared_ptr<ResponseChannel> ch) const;

 private:
  ErrorFormatter errors_;
  std::map<std::string, std::map<std::string, Handler>> exact_;  // path -> method -> handler
  std::vector<std::pair<std::string, std::map<std::string, Handler>>> prefix_;
};

class Server {
 public:
  // Binds, listens and starts the threads; fails with a message naming host:port.
  static Result<std::unique_ptr<Server>> start(ServerOptions opt, Handler handler);
  ~Server();  // shutdown(0)
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  uint16_t port() const;
  const ServerOptions& options() const;
  size_t open_connections() const;

  // Stops accepting, closes idle connections, lets requests being answered finish for up to
  // `grace`, then disconnects the rest (their on_disconnect runs) and joins the threads.
  // Idempotent; safe from any thread but a server thread.
  void shutdown(std::chrono::milliseconds grace);

  struct Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Blocks until SIGINT or SIGTERM arrives (or `stop` becomes true, polled every 100 ms);
// returns the signal number, or 0 for `stop`. The signals are blocked in the calling thread
// for the wait only; call it from the main thread after starting the server.
int wait_for_termination_signal(const std::atomic<bool>* stop = nullptr);

}  // namespace afd::http
