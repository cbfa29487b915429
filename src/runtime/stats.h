// Per-rank statistics and Chrome-trace spans (open the JSON in Perfetto / chrome://tracing).
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace afd {

struct RankStats {
  std::string name;         // "attention 0", "ffn 1"
  double wall_s = 0;        // the rank's loop, start to end
  double compute_s = 0;     // attention or FFN compute
  double wait_s = 0;        // blocked on the other side (combine on A, receive on F)
  double comm_s = 0;        // encoding, decoding and sending
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  int64_t steps = 0;
  int64_t messages = 0;
  // Recent A->F->A round trips (dispatch to combine done), seconds; attention ranks only.
  std::vector<double> transfer_latency;
  void add_transfer_latency(double s) {
    if (transfer_latency.size() >= 1024) transfer_latency.erase(transfer_latency.begin(), transfer_latency.begin() + 512);
    transfer_latency.push_back(s);
  }
  double idle_fraction() const { return wall_s > 0 ? wait_s / wall_s : 0; }
};

// Spans of one process; thread-safe. Times are microseconds since a shared epoch.
class Trace {
 public:
  explicit Trace(bool enabled) : enabled_(enabled) {}
  bool enabled() const { return enabled_; }
  static double now_us();  // steady clock (shared by the processes of a host), microseconds
  void span(int track, const std::string& name, const char* cat, double start_us, double end_us);
  // Chrome trace "traceEvents" entries (JSON objects, comma-separated, no brackets).
  std::string events_json(double shift_us = 0) const;
  void name_track(int track, const std::string& name);

 private:
  struct Span {
    int track;
    std::string name;
    const char* cat;
    double start, end;
  };
  bool enabled_;
  mutable std::mutex mu_;
  std::vector<Span> spans_;
  std::vector<std::pair<int, std::string>> tracks_;
};

// Adds (end - start) seconds to *acc and, when the trace is on, a span.
class ScopedSpan {
 public:
  ScopedSpan(Trace* t, int track, std::string name, const char* cat, double* acc)
      : t_(t), track_(track), name_(std::move(name)), cat_(cat), acc_(acc), start_(Trace::now_us()) {}
  ~ScopedSpan() {
    double end = Trace::now_us();
    if (acc_) *acc_ += (end - start_) * 1e-6;
    if (t_ && t_->enabled()) t_->span(track_, name_, cat_, start_, end);
  }

 private:
  Trace* t_;
  int track_;
  std::string name_;
  const char* cat_;
  double* acc_;
  double start_;
};

}  // namespace afd
