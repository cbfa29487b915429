// UCX between processes, as production runs it: ranks are forked children, addresses travel
// over pipes (the control plane's job), and peers may die by SIGKILL.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "fabric_test_util.h"

namespace afd {
namespace {

using namespace std::chrono_literals;
using testing::payload;
using testing::ProcessWorld;
using testing::ScopedEnv;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kStop = 0xFFFF;  // tag: "echo loop, stop"

// Child: echoes every message from rank 0 (tags 0, 1, 2, ...) until it gets kStop. Its short
// waits also check that a wait timing out mid-transfer loses nothing (TCP, large messages).
int echo_child(Fabric& f) {
  std::vector<uint8_t> got;  // reused, as the runtime does
  for (uint64_t tag = 0;; ++tag) {
    // Either the next message or kStop; poll both cheaply.
    while (true) {
      Status s = f.recv(0, tag, &got, 20ms);
      if (s.ok()) break;
      if (f.recv(0, kStop, &got, 0ms).ok()) return f.flush(5s).ok() ? 0 : 3;
      if (s.message().find("within") == std::string::npos) {
        std::fprintf(stderr, "echo child: %s\n", s.to_string().c_str());
        return 2;
      }
    }
    CHILD_EXPECT_OK(f.send(0, tag, got.data(), got.size()), 4);
  }
}

struct Rtt {
  double p50_us, p90_us, min_us;
};

// Ping-pongs `bytes` with rank 1 (an echo child) `iters` times after a warm-up.
Rtt ping_pong(Fabric& f, uint64_t* next_tag, size_t bytes, int iters) {
  auto msg = payload(0, 1, bytes, bytes);
  std::vector<double> us;
  std::vector<uint8_t> got;  // reused, as the runtime does
  for (int i = 0; i < iters + 10; ++i) {
    uint64_t tag = (*next_tag)++;
    auto t0 = Clock::now();
    Status s = f.send(1, tag, msg.data(), msg.size());
    EXPECT_TRUE(s.ok()) << s.to_string();
    s = f.recv(1, tag, &got, 10s);
    auto t1 = Clock::now();
    EXPECT_TRUE(s.ok()) << s.to_string();
    if (!s.ok()) break;
    if (i == 0 || i == iters + 9) {
      EXPECT_EQ(got, msg);
    }
    if (i >= 10) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  if (us.empty()) return {0, 0, 0};
  std::sort(us.begin(), us.end());
  return {us[us.size() / 2], us[us.size() * 9 / 10], us[0]};
}

void round_trips(const char* tls) {
  ScopedEnv env("UCX_TLS", tls);
  ProcessWorld w(2, echo_child);
  Fabric& f = w.fabric();
  uint64_t tag = 0;
  for (size_t bytes : {size_t(64), size_t(896) << 10, size_t(1792) << 10}) {
    Rtt r = ping_pong(f, &tag, bytes, 100);
    std::printf("[ucx rtt] UCX_TLS=%-12s %8zu B: p50 %7.1f us  p90 %7.1f us  min %7.1f us\n",
                tls ? tls : "(default)", bytes, r.p50_us, r.p90_us, r.min_us);
  }
  ASSERT_TRUE(f.send(1, kStop, nullptr, 0).ok());
  EXPECT_TRUE(f.flush(5s).ok());
  EXPECT_EQ(w.wait(1), 0);
  EXPECT_GT(f.bytes_sent(), 0u);
  EXPECT_EQ(f.bytes_sent(), f.bytes_received());  // everything came back
}

TEST(UcxProcessTest, RoundTripDefaultTransports) { round_trips(nullptr); }
TEST(UcxProcessTest, RoundTripSharedMemoryOnly) { round_trips("sm,self"); }
TEST(UcxProcessTest, RoundTripTcpOnly) { round_trips("tcp"); }

TEST(UcxProcessTest, FourProcessesAllToAll) {
  constexpr int kWorld = 4;
  const uint64_t tags[3] = {7, 8, 9};
  auto size_of = [](int src, int dst, uint64_t tag) {
    return size_t(50000 * (src + 1) + 1000 * dst + tag);  // up to ~200 KB, all different
  };
  auto body = [&](Fabric& f) -> Status {
    int me = f.rank();
    for (uint64_t tag : tags)
      for (int dst = 0; dst < kWorld; ++dst) {
        auto p = payload(me, dst, tag, size_of(me, dst, tag));
        AFD_RETURN_IF_ERROR(f.send(dst, tag, p.data(), p.size()));
      }
    for (int i = 2; i >= 0; --i)
      for (int src = kWorld - 1; src >= 0; --src) {
        std::vector<uint8_t> got;
        AFD_RETURN_IF_ERROR(f.recv(src, tags[i], &got, 20s));
        if (got != payload(src, me, tags[i], size_of(src, me, tags[i])))
          return Status(Code::kInternal, fmt::format("rank {}: wrong bytes from {}", me, src));
      }
    // Nobody leaves before everyone has received everything (a last all-to-all of empties).
    for (int dst = 0; dst < kWorld; ++dst) AFD_RETURN_IF_ERROR(f.send(dst, 99, nullptr, 0));
    for (int src = 0; src < kWorld; ++src) {
      std::vector<uint8_t> got;
      AFD_RETURN_IF_ERROR(f.recv(src, 99, &got, 20s));
    }
    return f.flush(20s);
  };
  ProcessWorld w(kWorld, [&](Fabric& f) {
    Status s = body(f);
    if (!s.ok()) std::fprintf(stderr, "rank %d: %s\n", f.rank(), s.to_string().c_str());
    return s.ok() ? 0 : 1;
  });
  Status s = body(w.fabric());
  EXPECT_TRUE(s.ok()) << s.to_string();
  for (int r = 1; r < kWorld; ++r) EXPECT_EQ(w.wait(r), 0) << "rank " << r;
}

// Child: answers a few messages, then streams large messages to rank 0 until killed.
int streaming_child(Fabric& f) {
  for (uint64_t tag = 0; tag < 3; ++tag) {
    std::vector<uint8_t> got;
    CHILD_EXPECT_OK(f.recv(0, tag, &got, 20s), 2);
    CHILD_EXPECT_OK(f.send(0, tag, got.data(), got.size()), 3);
  }
  auto big = payload(1, 0, 0, 2u << 20);
  for (uint64_t tag = 1000;; ++tag) {
    CHILD_EXPECT_OK(f.send(0, tag, big.data(), big.size()), 4);
    std::this_thread::sleep_for(1ms);
  }
}

TEST(UcxProcessTest, KilledPeerMidExchangeFailsWithinTimeout) {
  ProcessWorld w(2, streaming_child);
  Fabric& f = w.fabric();
  for (uint64_t tag = 0; tag < 3; ++tag) {
    auto p = payload(0, 1, tag, 100000);
    ASSERT_TRUE(f.send(1, tag, p.data(), p.size()).ok());
    std::vector<uint8_t> got;
    Status s = f.recv(1, tag, &got, 20s);
    ASSERT_TRUE(s.ok()) << s.to_string();
    EXPECT_EQ(got, p);
  }
  // Take one streamed message (so the stream is under way), then kill the child while it
  // has rendezvous messages announced but not yet read.
  std::vector<uint8_t> got;
  Status s = f.recv(1, 1000, &got, 20s);
  ASSERT_TRUE(s.ok()) << s.to_string();
  std::this_thread::sleep_for(50ms);
  w.kill(1);

  // Messages announced before the kill may or may not be readable; what matters is that
  // every wait ends within its timeout with an error naming the peer, and nothing crashes.
  int read_after_kill = 0;
  for (uint64_t tag = 1001; tag < 1100; ++tag) {
    auto t0 = Clock::now();
    s = f.recv(1, tag, &got, 1000ms);
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    EXPECT_LT(ms, 5000) << "tag " << tag;
    if (s.ok()) {
      ++read_after_kill;
      continue;
    }
    EXPECT_EQ(s.code(), Code::kUnavailable);
    EXPECT_NE(s.message().find("ffn 0"), std::string::npos) << s.message();
    std::printf("[ucx kill] after %d more messages: %s (%.0f ms)\n", read_after_kill,
                s.to_string().c_str(), ms);
    break;
  }
  EXPECT_FALSE(s.ok()) << "the stream must end once the child is dead";
  // The fabric still works for what is left, and shuts down bounded (ProcessWorld's dtor).
  EXPECT_EQ(f.send(0, 5, "me", 2).code(), Code::kOk);
  ASSERT_TRUE(f.recv(0, 5, &got, 5s).ok());
  auto t0 = Clock::now();
  w.close_fabric();
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 20);
}

TEST(UcxProcessTest, KilledPeerMarkedDeadWakesBlockedRecv) {
  // The control plane's path: it sees the death (here: waitpid) and calls mark_dead.
  ProcessWorld w(2, [](Fabric& f) {
    std::vector<uint8_t> got;
    f.recv(0, 1, &got, 60s).ok();  // waits until killed
    return 0;
  });
  Fabric& f = w.fabric();
  Status s;
  auto t0 = Clock::now();
  std::thread waiter([&] {
    std::vector<uint8_t> got;
    s = f.recv(1, 77, &got, 60s);
  });
  std::this_thread::sleep_for(100ms);
  w.kill(1);
  f.mark_dead(1, "process exited (SIGKILL)");
  waiter.join();
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 30);
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_NE(s.message().find("ffn 0"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("SIGKILL"), std::string::npos) << s.message();
  EXPECT_EQ(f.send(1, 1, "x", 1).code(), Code::kUnavailable);
}

TEST(UcxProcessTest, NothingOnStdout) {
  // UCX logs to stdout by default; the fabric must send its lines to stderr. A child whose
  // peer vanished (tcp: connection reset) is the likeliest to log.
  ScopedEnv env("UCX_TLS", "tcp");
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  std::fflush(stdout);
  int saved = ::dup(1);
  ::dup2(out[1], 1);
  {
    ProcessWorld w(2, [](Fabric& f) {
      auto p = payload(1, 0, 0, 1u << 20);
      f.send(0, 0, p.data(), p.size()).ok();
      std::vector<uint8_t> got;
      f.recv(0, 1, &got, 500ms).ok();  // rank 0 is gone by then
      return 0;
    });
    std::vector<uint8_t> got;
    EXPECT_TRUE(w.fabric().recv(1, 0, &got, 20s).ok());
    w.close_fabric();
    EXPECT_EQ(w.wait(1), 0);
  }
  std::fflush(stdout);
  ::dup2(saved, 1);
  ::close(saved);
  ::close(out[1]);
  std::string captured;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(out[0], buf, sizeof buf)) > 0) captured.append(buf, size_t(n));
  ::close(out[0]);
  EXPECT_EQ(captured, "");
}

}  // namespace
}  // namespace afd
