// Helpers for the fabric tests: in-process worlds (Local or UCX, one rank per thread) and
// multi-process UCX worlds (fork, addresses exchanged over pipes, as a control plane would).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/status.h"
#include "transport/fabric.h"

namespace afd::testing {

enum class FabricKind { kLocal, kUcx };

inline std::vector<std::string> rank_names(int world) {
  std::vector<std::string> names;
  for (int r = 0; r < world; ++r)
    names.push_back(r == 0 ? "attention 0" : "ffn " + std::to_string(r - 1));
  return names;
}

// `world` fabrics in this process, rank r at index r. For UCX every rank has its own context
// and worker, exactly as separate processes would.
inline std::vector<std::unique_ptr<Fabric>> make_world(FabricKind kind, int world) {
  std::vector<std::unique_ptr<Fabric>> fabrics;
  if (kind == FabricKind::kLocal) {
    auto hub = make_local_hub(world, rank_names(world));
    for (int r = 0; r < world; ++r) fabrics.push_back(make_local_fabric(hub, r));
    return fabrics;
  }
  std::vector<std::unique_ptr<UcxEndpoint>> eps;
  std::vector<std::string> addrs;
  for (int r = 0; r < world; ++r) {
    eps.push_back(UcxEndpoint::create(r, world, rank_names(world)).value());
    addrs.push_back(eps.back()->address());
  }
  for (int r = 0; r < world; ++r)
    fabrics.push_back(UcxEndpoint::connect(std::move(eps[r]), addrs).value());
  return fabrics;
}

// A deterministic payload that names its sender, receiver and tag, so a message delivered to
// the wrong (peer, tag) cannot pass for the right one.
inline std::vector<uint8_t> payload(int src, int dst, uint64_t tag, size_t n) {
  std::vector<uint8_t> v(n);
  uint64_t x = (uint64_t(src) * 1000003u) ^ (uint64_t(dst) * 7919u) ^ (tag * 0x9E3779B97F4A7C15ull);
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    v[i] = static_cast<uint8_t>(x);
  }
  return v;
}

// Sets an environment variable for the life of the object (restores the old value after).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_.c_str(), old_->c_str(), 1);
    else
      ::unsetenv(name_.c_str());
  }

 private:
  std::string name_;
  std::optional<std::string> old_;
};

// ---- multi-process UCX worlds ----------------------------------------------------------------

namespace detail {
inline bool write_all(int fd, const void* p, size_t n) {
  auto* c = static_cast<const char*>(p);
  while (n) {
    ssize_t k = ::write(fd, c, n);
    if (k <= 0) return false;
    c += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}
inline bool read_all(int fd, void* p, size_t n) {
  auto* c = static_cast<char*>(p);
  while (n) {
    ssize_t k = ::read(fd, c, n);
    if (k <= 0) return false;
    c += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}
inline bool write_str(int fd, const std::string& s) {
  uint32_t n = static_cast<uint32_t>(s.size());
  return write_all(fd, &n, 4) && write_all(fd, s.data(), n);
}
inline bool read_str(int fd, std::string* s) {
  uint32_t n = 0;
  if (!read_all(fd, &n, 4)) return false;
  s->resize(n);
  return read_all(fd, s->data(), n);
}
}  // namespace detail

// Rank 0 runs in this (the test) process; ranks 1..world-1 are forked children that run
// `child_body(fabric)` and _exit() with its return value (never returning into GoogleTest).
// Children are forked before this process creates any UCX object, and die on their own after
// `child_limit_s` seconds (alarm) should the test go wrong.
class ProcessWorld {
 public:
  using ChildBody = std::function<int(Fabric&)>;

  ProcessWorld(int world, ChildBody child_body, unsigned child_limit_s = 60) : pids_(world, -1) {
    std::vector<int> up(world, -1), down(world, -1);
    std::fflush(stdout);
    std::fflush(stderr);
    for (int r = 1; r < world; ++r) {
      int u[2], d[2];
      if (::pipe2(u, O_CLOEXEC) != 0 || ::pipe2(d, O_CLOEXEC) != 0)
        throw std::runtime_error("pipe");
      pid_t pid = ::fork();
      if (pid == 0) {
        ::close(u[0]);
        ::close(d[1]);
        ::alarm(child_limit_s);
        _exit(run_child(r, world, u[1], d[0], child_body));
      }
      ::close(u[1]);
      ::close(d[0]);
      pids_[r] = pid;
      up[r] = u[0];
      down[r] = d[1];
    }
    try {
      auto ep = UcxEndpoint::create(0, world, rank_names(world)).value();
      std::vector<std::string> addrs(world);
      addrs[0] = ep->address();
      for (int r = 1; r < world; ++r)
        if (!detail::read_str(up[r], &addrs[r])) throw std::runtime_error("no child address");
      for (int r = 1; r < world; ++r)
        for (const auto& a : addrs) detail::write_str(down[r], a);
      close_all(&up);
      close_all(&down);
      fabric_ = UcxEndpoint::connect(std::move(ep), addrs).value();
    } catch (...) {
      // The destructor does not run for a constructor that throws: reap the children here.
      close_all(&up);
      close_all(&down);
      kill_all();
      throw;
    }
  }

  ~ProcessWorld() {
    fabric_.reset();
    kill_all();
  }

  Fabric& fabric() { return *fabric_; }
  // Destroys rank 0's fabric early (e.g. to test orderly shutdown).
  void close_fabric() { fabric_.reset(); }
  pid_t pid(int rank) const { return pids_[rank]; }

  // Waits for child `rank` to exit (up to `timeout`); its exit code, or -1 (killed, or still
  // running: then it is killed).
  int wait(int rank, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      int st = 0;
      pid_t r = ::waitpid(pids_[rank], &st, WNOHANG);
      if (r == pids_[rank]) {
        pids_[rank] = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        ::kill(pids_[rank], SIGKILL);
        ::waitpid(pids_[rank], nullptr, 0);
        pids_[rank] = -1;
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  // SIGKILLs child `rank` and reaps it.
  void kill(int rank) {
    ::kill(pids_[rank], SIGKILL);
    ::waitpid(pids_[rank], nullptr, 0);
    pids_[rank] = -1;
  }

 private:
  static int run_child(int rank, int world, int up, int down, const ChildBody& body) {
    auto ep = UcxEndpoint::create(rank, world, rank_names(world));
    if (!ep.ok()) {
      std::fprintf(stderr, "child %d: %s\n", rank, ep.status().to_string().c_str());
      return 90;
    }
    if (!detail::write_str(up, (*ep)->address())) return 91;
    std::vector<std::string> addrs(world);
    for (auto& a : addrs)
      if (!detail::read_str(down, &a)) return 92;
    auto fabric = UcxEndpoint::connect(std::move(*ep), addrs);
    if (!fabric.ok()) {
      std::fprintf(stderr, "child %d: %s\n", rank, fabric.status().to_string().c_str());
      return 93;
    }
    int rc = 0;
    try {
      rc = body(**fabric);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child %d: %s\n", rank, e.what());
      rc = 94;
    }
    fabric->reset();  // orderly shutdown: bounded even when a peer is gone
    return rc;
  }

  static void close_all(std::vector<int>* fds) {
    for (int& fd : *fds)
      if (fd >= 0) ::close(std::exchange(fd, -1));
  }
  void kill_all() {
    for (pid_t p : pids_)
      if (p > 0) ::kill(p, SIGKILL);
    for (pid_t& p : pids_)
      if (p > 0) ::waitpid(std::exchange(p, -1), nullptr, 0);
  }

  std::vector<pid_t> pids_;  // [world] child pids; pids_[0] (this process) unused
  std::unique_ptr<Fabric> fabric_;
};

// In a child: prints why and returns from the body with a non-zero code.
#define CHILD_EXPECT_OK(expr, code)                                                  \
  do {                                                                               \
    ::afd::Status _s = (expr);                                                       \
    if (!_s.ok()) {                                                                  \
      std::fprintf(stderr, "child: %s failed: %s\n", #expr, _s.to_string().c_str()); \
      return code;                                                                   \
    }                                                                                \
  } while (0)

}  // namespace afd::testing
