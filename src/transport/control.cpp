#include "transport/control.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

namespace afd {

namespace {

using Clock = std::chrono::steady_clock;

Status split_host_port(const std::string& hp, std::string* host, std::string* port) {
  size_t c = hp.rfind(':');
  if (c == std::string::npos) return InvalidArgument("\"{}\" is not HOST:PORT", hp);
  *host = hp.substr(0, c);
  *port = hp.substr(c + 1);
  if (port->empty()) return InvalidArgument("\"{}\" has no port", hp);
  return Status::OK();
}

int ms_left(Clock::time_point deadline) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return ms < 0 ? 0 : static_cast<int>(std::min<int64_t>(ms, 1 << 30));
}

}  // namespace

ControlChannel::~ControlChannel() { close(); }

void ControlChannel::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Result<std::unique_ptr<ControlChannel>> ControlChannel::connect(const std::string& hp,
                                                                std::chrono::milliseconds timeout) {
  std::string host, port;
  AFD_RETURN_IF_ERROR(split_host_port(hp, &host, &port));
  auto deadline = Clock::now() + timeout;
  std::string last = "timed out";
  while (true) {
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host.empty() ? "127.0.0.1" : host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0) return InvalidArgument("coordinator {}: {}", hp, gai_strerror(rc));
    for (addrinfo* a = res; a; a = a->ai_next) {
      int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
      if (fd < 0) continue;
      if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        freeaddrinfo(res);
        return std::unique_ptr<ControlChannel>(new ControlChannel(fd, hp));
      }
      last = std::strerror(errno);
      ::close(fd);
    }
    freeaddrinfo(res);
    if (Clock::now() >= deadline)
      return Status(Code::kUnavailable,
                    fmt::format("cannot reach the coordinator at {} within {} ms: {}", hp,
                                timeout.count(), last));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Status ControlChannel::send(const std::string& msg) {
  if (fd_ < 0) return Status(Code::kUnavailable, fmt::format("{}: connection closed", peer_));
  uint32_t n = static_cast<uint32_t>(msg.size());
  unsigned char hdr[4] = {static_cast<unsigned char>(n), static_cast<unsigned char>(n >> 8),
                          static_cast<unsigned char>(n >> 16), static_cast<unsigned char>(n >> 24)};
  std::string frame(reinterpret_cast<char*>(hdr), 4);
  frame += msg;
  size_t off = 0;
  while (off < frame.size()) {
    ssize_t w = ::send(fd_, frame.data() + off, frame.size() - off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status(Code::kUnavailable, fmt::format("{}: send failed: {}", peer_, std::strerror(errno)));
    }
    off += static_cast<size_t>(w);
  }
  return Status::OK();
}

Status ControlChannel::fill(Clock::time_point deadline) {
  if (eof_) return Status(Code::kUnavailable, fmt::format("{}: connection closed", peer_));
  pollfd p{fd_, POLLIN, 0};
  int r = ::poll(&p, 1, ms_left(deadline));
  if (r < 0 && errno != EINTR)
    return Status(Code::kUnavailable, fmt::format("{}: poll failed: {}", peer_, std::strerror(errno)));
  if (r <= 0) return Status(Code::kUnavailable, fmt::format("{}: no message in time", peer_));
  char tmp[65536];
  ssize_t got = ::recv(fd_, tmp, sizeof tmp, 0);
  if (got < 0 && errno == EINTR) return Status::OK();
  if (got <= 0) {
    eof_ = true;
    return Status(Code::kUnavailable, fmt::format("{}: connection closed", peer_));
  }
  buf_.append(tmp, static_cast<size_t>(got));
  return Status::OK();
}

static bool whole_message(const std::string& buf, uint32_t* n) {
  if (buf.size() < 4) return false;
  const auto* b = reinterpret_cast<const unsigned char*>(buf.data());
  *n = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  return buf.size() >= 4 + static_cast<size_t>(*n);
}

Status ControlChannel::recv(std::string* msg, std::chrono::milliseconds timeout) {
  if (fd_ < 0) return Status(Code::kUnavailable, fmt::format("{}: connection closed", peer_));
  auto deadline = Clock::now() + timeout;
  uint32_t n = 0;
  while (!whole_message(buf_, &n)) {
    Status s = fill(deadline);
    if (!s.ok()) return s;
  }
  *msg = buf_.substr(4, n);
  buf_.erase(0, 4 + static_cast<size_t>(n));
  return Status::OK();
}

bool ControlChannel::ready() {
  uint32_t n;
  if (whole_message(buf_, &n) || eof_ || fd_ < 0) return true;
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, 0) > 0) {
    (void)fill(Clock::now());
    return whole_message(buf_, &n) || eof_;
  }
  return false;
}

ControlServer::~ControlServer() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::unique_ptr<ControlServer>> ControlServer::listen(const std::string& hp) {
  std::string host, port;
  AFD_RETURN_IF_ERROR(split_host_port(hp, &host, &port));
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  int rc = getaddrinfo(host.empty() || host == "0.0.0.0" ? nullptr : host.c_str(), port.c_str(),
                       &hints, &res);
  if (rc != 0) return InvalidArgument("listen address {}: {}", hp, gai_strerror(rc));
  int fd = ::socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || ::bind(fd, res->ai_addr, res->ai_addrlen) != 0 || ::listen(fd, 512) != 0) {
    std::string err = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    freeaddrinfo(res);
    return Status(Code::kUnavailable, fmt::format("cannot listen on {}: {}", hp, err));
  }
  freeaddrinfo(res);
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  return std::unique_ptr<ControlServer>(new ControlServer(fd, ntohs(sa.sin_port)));
}

Result<std::unique_ptr<ControlChannel>> ControlServer::accept(std::chrono::milliseconds timeout) {
  pollfd p{fd_, POLLIN, 0};
  int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
  if (r <= 0) return Status(Code::kUnavailable, "no worker connected in time");
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  int fd = ::accept4(fd_, reinterpret_cast<sockaddr*>(&sa), &len, SOCK_CLOEXEC);
  if (fd < 0) return Status(Code::kUnavailable, fmt::format("accept failed: {}", std::strerror(errno)));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  char ip[64];
  inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
  return std::unique_ptr<ControlChannel>(
      new ControlChannel(fd, fmt::format("{}:{}", ip, ntohs(sa.sin_port))));
}

int wait_any(const std::vector<ControlChannel*>& chans, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (true) {
    for (size_t i = 0; i < chans.size(); ++i)
      if (chans[i] && chans[i]->ready()) return static_cast<int>(i);
    std::vector<pollfd> ps;
    for (auto* c : chans)
      if (c && c->fd() >= 0) ps.push_back({c->fd(), POLLIN, 0});
    int left = ms_left(deadline);
    if (left == 0) return -1;
    ::poll(ps.data(), ps.size(), std::min(left, 100));
  }
}

}  // namespace afd
