// afd bench, the report: per-request results folded into throughput, latency percentiles and
// goodput, printed as text (for people) or JSON (for machines; keys in docs/bench.md). The names
// and definitions follow `vllm bench serve` so results can be compared side by side.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "serve/bench_client_sse.h"

namespace afd::serve::bench {

// The p-th percentile (0 <= p <= 100) of ascending `sorted` by linear interpolation between
// closest ranks: numpy.percentile's default, which vLLM uses. `sorted` must not be empty.
double percentile(const std::vector<double>& sorted, double p);

// Summary of one latency metric, in milliseconds. count == 0 means no samples (all other fields
// are then meaningless and print as null / n/a).
struct Summary {
  size_t count = 0;
  double mean = 0, median = 0, std = 0, p90 = 0, p99 = 0;
};

// Summarises values given in seconds; the result is in milliseconds. std is the population
// standard deviation (numpy's default ddof=0).
Summary summarize_ms(std::vector<double> seconds);

// What was asked for; echoed in the report so a saved JSON says how it was produced.
struct BenchConfig {
  std::string url;
  std::string endpoint;
  std::string model;  // empty: no model field was sent
  int64_t num_prompts = 0;
  double request_rate = 0;      // requests/s; +inf: all at once
  int64_t max_concurrency = 0;  // 0: unlimited
  int64_t warmup = 0;
  uint64_t seed = 0;
  std::optional<double> tpot_slo_ms;
};

struct BenchReport {
  BenchConfig config;
  int64_t completed = 0;  // successful requests
  int64_t failed = 0;
  double duration_s = 0;              // first request started -> last one ended
  int64_t total_input_tokens = 0;     // over successful requests
  int64_t total_output_tokens = 0;    // over successful requests
  double request_throughput = 0;      // completed / duration
  double output_throughput = 0;       // output tokens / duration
  double total_token_throughput = 0;  // (input + output tokens) / duration
  // Successful requests whose TPOT <= tpot_slo_ms, per second; requests with fewer than two
  // output tokens have no TPOT and count as meeting it (as in vLLM). Unset without an SLO.
  std::optional<double> request_goodput;
  int64_t good_requests = 0;
  int64_t max_in_flight = 0;  // most requests open at once, as the client saw it
  Summary ttft, tpot, itl, e2el;
  std::vector<std::string> errors;  // the first few failure messages, in order of failure
};

// How many failure messages a report keeps.
inline constexpr size_t kKeptErrors = 10;

BenchReport make_report(const BenchConfig& config, const std::vector<RequestResult>& results,
                        double duration_s, int64_t max_in_flight);

nlohmann::json report_json(const BenchReport& r);
std::string report_text(const BenchReport& r);

}  // namespace afd::serve::bench
