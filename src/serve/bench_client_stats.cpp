#include "serve/bench_client_stats.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/status.h"

namespace afd::serve::bench {

double percentile(const std::vector<double>& sorted, double p) {
  AFD_CHECK(!sorted.empty(), "percentile of no samples");
  AFD_CHECK(p >= 0 && p <= 100, "percentile {} outside [0, 100]", p);
  const double rank = p / 100.0 * double(sorted.size() - 1);
  const size_t lo = size_t(std::floor(rank));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = rank - double(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

Summary summarize_ms(std::vector<double> seconds) {
  Summary s;
  s.count = seconds.size();
  if (seconds.empty()) return s;
  for (double& v : seconds) v *= 1e3;
  std::sort(seconds.begin(), seconds.end());
  double sum = 0;
  for (double v : seconds) sum += v;
  s.mean = sum / double(seconds.size());
  double var = 0;
  for (double v : seconds) var += (v - s.mean) * (v - s.mean);
  s.std = std::sqrt(var / double(seconds.size()));
  s.median = percentile(seconds, 50);
  s.p90 = percentile(seconds, 90);
  s.p99 = percentile(seconds, 99);
  return s;
}

BenchReport make_report(const BenchConfig& config, const std::vector<RequestResult>& results,
                        double duration_s, int64_t max_in_flight) {
  BenchReport r;
  r.config = config;
  r.duration_s = duration_s;
  r.max_in_flight = max_in_flight;
  std::vector<double> ttft, tpot, itl, e2el;
  for (const RequestResult& q : results) {
    if (!q.ok) {
      ++r.failed;
      if (r.errors.size() < kKeptErrors) r.errors.push_back(q.error);
      continue;
    }
    ++r.completed;
    r.total_input_tokens += std::max<int64_t>(q.prompt_tokens, 0);
    r.total_output_tokens += q.output_tokens;
    if (q.ttft_s >= 0) ttft.push_back(q.ttft_s);
    const double t = tpot_s(q);
    if (t >= 0) tpot.push_back(t);
    itl.insert(itl.end(), q.itl_s.begin(), q.itl_s.end());
    e2el.push_back(q.e2e_s);
    if (config.tpot_slo_ms && (t < 0 || t * 1e3 <= *config.tpot_slo_ms)) ++r.good_requests;
  }
  if (duration_s > 0) {
    r.request_throughput = double(r.completed) / duration_s;
    r.output_throughput = double(r.total_output_tokens) / duration_s;
    r.total_token_throughput = double(r.total_input_tokens + r.total_output_tokens) / duration_s;
  }
  if (config.tpot_slo_ms)
    r.request_goodput = duration_s > 0 ? double(r.good_requests) / duration_s : 0.0;
  r.ttft = summarize_ms(std::move(ttft));
  r.tpot = summarize_ms(std::move(tpot));
  r.itl = summarize_ms(std::move(itl));
  r.e2el = summarize_ms(std::move(e2el));
  return r;
}

namespace {

nlohmann::json number_or_null(bool present, double v) {
  return present ? nlohmann::json(v) : nlohmann::json(nullptr);
}

void put_summary(nlohmann::json& j, const char* name, const Summary& s) {
  const bool any = s.count > 0;
  j[fmt::format("mean_{}_ms", name)] = number_or_null(any, s.mean);
  j[fmt::format("median_{}_ms", name)] = number_or_null(any, s.median);
  j[fmt::format("std_{}_ms", name)] = number_or_null(any, s.std);
  j[fmt::format("p90_{}_ms", name)] = number_or_null(any, s.p90);
  j[fmt::format("p99_{}_ms", name)] = number_or_null(any, s.p99);
  j[fmt::format("{}_samples", name)] = s.count;
}

// One "label: value" row of the text report, value right-aligned like vLLM's.
void row(std::string& out, std::string_view label, std::string_view value) {
  out += fmt::format("{:<40}{:>10}\n", label, value);
}

std::string num(double v, int digits = 2) { return fmt::format("{:.{}f}", v, digits); }

void section(std::string& out, std::string_view title) { out += fmt::format("{:-^50}\n", title); }

void summary_rows(std::string& out, std::string_view title, std::string_view abbrev,
                  const Summary& s) {
  section(out, title);
  auto value = [&](double v) { return s.count ? num(v) : std::string("n/a"); };
  row(out, fmt::format("Mean {} (ms):", abbrev), value(s.mean));
  row(out, fmt::format("Median {} (ms):", abbrev), value(s.median));
  row(out, fmt::format("P90 {} (ms):", abbrev), value(s.p90));
  row(out, fmt::format("P99 {} (ms):", abbrev), value(s.p99));
}

}  // namespace

nlohmann::json report_json(const BenchReport& r) {
  nlohmann::json j;
  const BenchConfig& c = r.config;
  j["url"] = c.url;
  j["endpoint"] = c.endpoint;
  j["model"] = c.model.empty() ? nlohmann::json(nullptr) : nlohmann::json(c.model);
  j["num_prompts"] = c.num_prompts;
  // JSON has no infinity; vLLM writes the string "inf" here too.
  j["request_rate"] =
      std::isinf(c.request_rate) ? nlohmann::json("inf") : nlohmann::json(c.request_rate);
  j["max_concurrency"] =
      c.max_concurrency > 0 ? nlohmann::json(c.max_concurrency) : nlohmann::json(nullptr);
  j["warmup"] = c.warmup;
  j["seed"] = c.seed;
  j["tpot_slo_ms"] = c.tpot_slo_ms ? nlohmann::json(*c.tpot_slo_ms) : nlohmann::json(nullptr);
  j["duration"] = r.duration_s;
  j["completed"] = r.completed;
  j["failed"] = r.failed;
  j["total_input_tokens"] = r.total_input_tokens;
  j["total_output_tokens"] = r.total_output_tokens;
  j["request_throughput"] = r.request_throughput;
  j["request_goodput"] =
      r.request_goodput ? nlohmann::json(*r.request_goodput) : nlohmann::json(nullptr);
  j["good_requests"] = c.tpot_slo_ms ? nlohmann::json(r.good_requests) : nlohmann::json(nullptr);
  j["output_throughput"] = r.output_throughput;
  j["total_token_throughput"] = r.total_token_throughput;
  j["max_in_flight"] = r.max_in_flight;
  put_summary(j, "ttft", r.ttft);
  put_summary(j, "tpot", r.tpot);
  put_summary(j, "itl", r.itl);
  put_summary(j, "e2el", r.e2el);
  j["errors"] = r.errors;
  return j;
}

std::string report_text(const BenchReport& r) {
  std::string out;
  out += fmt::format("{:=^50}\n", " Serving Benchmark Result ");
  row(out, "Successful requests:", fmt::format("{}", r.completed));
  row(out, "Failed requests:", fmt::format("{}", r.failed));
  if (r.config.max_concurrency > 0)
    row(out, "Maximum request concurrency:", fmt::format("{}", r.config.max_concurrency));
  row(out, "Request rate (req/s):",
      std::isinf(r.config.request_rate) ? "inf" : num(r.config.request_rate));
  row(out, "Benchmark duration (s):", num(r.duration_s));
  row(out, "Total input tokens:", fmt::format("{}", r.total_input_tokens));
  row(out, "Total generated tokens:", fmt::format("{}", r.total_output_tokens));
  row(out, "Request throughput (req/s):", num(r.request_throughput));
  if (r.request_goodput)
    row(out, fmt::format("Request goodput, TPOT <= {} ms (req/s):", *r.config.tpot_slo_ms),
        num(*r.request_goodput));
  row(out, "Output token throughput (tok/s):", num(r.output_throughput));
  row(out, "Total token throughput (tok/s):", num(r.total_token_throughput));
  summary_rows(out, "Time to First Token", "TTFT", r.ttft);
  summary_rows(out, "Time per Output Token (excl. 1st token)", "TPOT", r.tpot);
  summary_rows(out, "Inter-token Latency", "ITL", r.itl);
  summary_rows(out, "End-to-end Latency", "E2EL", r.e2el);
  if (!r.errors.empty()) {
    section(out, "First errors");
    for (const std::string& e : r.errors) out += fmt::format("  {:.200}\n", e);
  }
  out += std::string(50, '=') + "\n";
  return out;
}

}  // namespace afd::serve::bench
