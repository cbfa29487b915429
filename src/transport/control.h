// Control plane: length-prefixed text messages (the runtime sends JSON) over TCP between the
// coordinator (`afd launch`) and every worker. It carries the bootstrap (fabric addresses,
// config fingerprints), the workload, results and statistics, and liveness: a worker that dies
// closes its socket, which the coordinator sees at once and broadcasts.
//
// Frame: 4-byte little-endian length, then that many bytes. Waits are bounded; EOF is
// kUnavailable ("connection closed"), so a dead peer is never a hang.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace afd {

class ControlChannel {
 public:
  ~ControlChannel();
  ControlChannel(const ControlChannel&) = delete;
  ControlChannel& operator=(const ControlChannel&) = delete;

  // Connects to "host:port", retrying until `timeout` (the server may not be up yet).
  static Result<std::unique_ptr<ControlChannel>> connect(const std::string& host_port,
                                                         std::chrono::milliseconds timeout);
  Status send(const std::string& msg);
  // Waits up to `timeout` for the next whole message.
  Status recv(std::string* msg, std::chrono::milliseconds timeout);
  // True when a whole message is buffered or the peer closed (recv will not block).
  bool ready();
  int fd() const { return fd_; }
  const std::string& peer() const { return peer_; }
  void close();

 private:
  friend class ControlServer;
  ControlChannel(int fd, std::string peer) : fd_(fd), peer_(std::move(peer)) {}
  Status fill(std::chrono::steady_clock::time_point deadline);  // reads more bytes into buf_
  int fd_ = -1;
  std::string peer_;
  std::string buf_;
  bool eof_ = false;
};

class ControlServer {
 public:
  ~ControlServer();
  // Listens on "host:port" (port 0 picks a free one; host "" or "0.0.0.0" = every interface).
  static Result<std::unique_ptr<ControlServer>> listen(const std::string& host_port);
  int port() const { return port_; }
  Result<std::unique_ptr<ControlChannel>> accept(std::chrono::milliseconds timeout);

 private:
  ControlServer(int fd, int port) : fd_(fd), port_(port) {}
  int fd_ = -1;
  int port_ = 0;
};

// Waits until one of `chans` is ready() (a message or EOF); returns its index, or -1 on
// timeout.
int wait_any(const std::vector<ControlChannel*>& chans, std::chrono::milliseconds timeout);

}  // namespace afd
