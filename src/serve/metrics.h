// Serving metrics in the Prometheus text exposition format (version 0.0.4), for GET /metrics.
//
// The frontend observes what it sees itself (latencies from the moment a request was parsed,
// HTTP status counts, token counts); rank-side numbers (running/waiting requests, KV use, busy
// seconds, A<->F round trips) come from Engine::metrics() at scrape time. Every type here is
// thread-safe: engine callbacks, server threads and scrapes touch them concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "serve/engine.h"

namespace afd::metrics {

// A cumulative histogram with fixed upper bounds (the +Inf bucket is implicit).
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double v);
  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // [bounds.size()]: observations <= bounds[i]
    uint64_t count = 0;
    double sum = 0;
  };
  Snapshot snapshot() const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; [bounds.size() + 1]
  uint64_t count_ = 0;
  double sum_ = 0;
};

// Builds the exposition text, one metric family at a time.
class Writer {
 public:
  // "# HELP" and "# TYPE" lines; type is counter, gauge, histogram or summary.
  void family(const std::string& name, const std::string& type, const std::string& help);
  // One sample: name{labels} value. Labels are (name, raw value) pairs; values are escaped.
  void sample(const std::string& name,
              const std::vector<std::pair<std::string, std::string>>& labels, double value);
  void histogram(const std::string& name, const std::string& help, const Histogram::Snapshot& s);
  const std::string& text() const { return out_; }

 private:
  std::string out_;
};

// Label value escaping of the text format: backslash, double quote and newline.
std::string escape_label(const std::string& v);
// A sample value: integers without a fraction, +Inf/-Inf/NaN spelled as Prometheus does.
std::string format_value(double v);

// What the OpenAI frontend counts. Names are in docs/serving.md.
class ServingMetrics {
 public:
  ServingMetrics();

  Histogram ttft_s;                   // request parsed -> first generated token
  Histogram tpot_s;                   // mean time per output token after the first, per request
  Histogram e2e_s;                    // request parsed -> last token (or error / disconnect)
  std::atomic<int64_t> in_flight{0};  // submitted to the engine, not finished
  std::atomic<uint64_t> prompt_tokens{0};
  std::atomic<uint64_t> generation_tokens{0};

  // One HTTP response sent: route is the matched path ("/v1/completions"; "other" for 404).
  void count_response(const std::string& route, int status);
  // One generation ended: reason is "stop", "length", "abort" (client gone) or "error".
  void count_finished(const std::string& reason);

  // The whole exposition text; engine numbers are taken as given.
  std::string render(const EngineMetrics& engine, const std::vector<RankHealth>& health) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> responses_;
  std::map<std::string, uint64_t> finished_;
};

}  // namespace afd::metrics
