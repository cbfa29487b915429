#include "serve/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace afd::metrics {

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)) {
  std::sort(bounds_.begin(), bounds_.end());
  counts_.assign(bounds_.size() + 1, 0);
}

void Histogram::observe(double v) {
  // First bucket whose bound is >= v ("le" semantics); past the last bound: +Inf.
  size_t b = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  std::lock_guard<std::mutex> lk(mu_);
  ++counts_[b];
  ++count_;
  sum_ += v;
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.bounds = bounds_;
  std::lock_guard<std::mutex> lk(mu_);
  uint64_t acc = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) s.cumulative.push_back(acc += counts_[i]);
  s.count = count_;
  s.sum = sum_;
  return s;
}

std::string escape_label(const std::string& v) {
  std::string o;
  o.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      o += "\\\\";
    else if (c == '"')
      o += "\\\"";
    else if (c == '\n')
      o += "\\n";
    else
      o += c;
  }
  return o;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);  // shortest round-trip form
}

void Writer::family(const std::string& name, const std::string& type, const std::string& help) {
  out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void Writer::sample(const std::string& name,
                    const std::vector<std::pair<std::string, std::string>>& labels, double value) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      if (i) out_ += ',';
      out_ += labels[i].first + "=\"" + escape_label(labels[i].second) + '"';
    }
    out_ += '}';
  }
  out_ += ' ' + format_value(value) + '\n';
}

void Writer::histogram(const std::string& name, const std::string& help,
                       const Histogram::Snapshot& s) {
  family(name, "histogram", help);
  for (size_t i = 0; i < s.bounds.size(); ++i)
    sample(name + "_bucket", {{"le", format_value(s.bounds[i])}},
           static_cast<double>(s.cumulative[i]));
  sample(name + "_bucket", {{"le", "+Inf"}}, static_cast<double>(s.count));
  sample(name + "_sum", {}, s.sum);
  sample(name + "_count", {}, static_cast<double>(s.count));
}

// Bucket bounds follow vLLM's, so dashboards built for it read these the same way.
ServingMetrics::ServingMetrics()
    : ttft_s({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
              1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0}),
      tpot_s({0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
              10.0, 20.0, 40.0, 80.0}),
      e2e_s({0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
             30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0}) {}

void ServingMetrics::count_response(const std::string& route, int status) {
  std::lock_guard<std::mutex> lk(mu_);
  ++responses_[{route, status}];
}

void ServingMetrics::count_finished(const std::string& reason) {
  std::lock_guard<std::mutex> lk(mu_);
  ++finished_[reason];
}

std::string ServingMetrics::render(const EngineMetrics& engine,
                                   const std::vector<RankHealth>& health) const {
  Writer w;
  w.histogram("afd_time_to_first_token_seconds",
              "Time from request arrival to the first generated token.", ttft_s.snapshot());
  w.histogram("afd_time_per_output_token_seconds",
              "Mean time per generated token after the first, one observation per request.",
              tpot_s.snapshot());
  w.histogram("afd_e2e_request_latency_seconds",
              "Time from request arrival to its last token, error or disconnect.",
              e2e_s.snapshot());

  w.family("afd_requests_running", "gauge", "Requests being decoded, per attention rank.");
  for (const auto& a : engine.attention)
    w.sample("afd_requests_running", {{"rank", a.name}}, static_cast<double>(a.running));
  w.family("afd_requests_waiting", "gauge", "Requests queued for admission, per attention rank.");
  for (const auto& a : engine.attention)
    w.sample("afd_requests_waiting", {{"rank", a.name}}, static_cast<double>(a.waiting));
  w.family("afd_kv_cache_usage_ratio", "gauge",
           "KV cache blocks in use over all blocks, per attention rank (0..1).");
  for (const auto& a : engine.attention)
    w.sample("afd_kv_cache_usage_ratio", {{"rank", a.name}}, a.kv_used_fraction);

  w.family("afd_rank_busy_seconds_total", "counter",
           "Seconds each rank spent per stage: compute, wait (blocked on the other side), comm.");
  for (const auto& s : engine.stages) {
    w.sample("afd_rank_busy_seconds_total", {{"rank", s.rank}, {"stage", "compute"}}, s.compute_s);
    w.sample("afd_rank_busy_seconds_total", {{"rank", s.rank}, {"stage", "wait"}}, s.wait_s);
    w.sample("afd_rank_busy_seconds_total", {{"rank", s.rank}, {"stage", "comm"}}, s.comm_s);
  }

  // The engine keeps a window of recent samples, not cumulative counts, so this is a summary
  // over that window (its _count and _sum are of the window too).
  std::vector<double> lat = engine.transfer_latency_samples;
  std::sort(lat.begin(), lat.end());
  w.family("afd_transfer_latency_seconds", "summary",
           "A->F->A round trip (dispatch to combine) over the engine's recent window.");
  double lat_sum = 0;
  for (double x : lat) lat_sum += x;
  for (double q : {0.5, 0.9, 0.99}) {
    double v = std::nan("");
    if (!lat.empty()) {
      size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(lat.size()))) - 1;
      v = lat[std::min(i, lat.size() - 1)];
    }
    w.sample("afd_transfer_latency_seconds", {{"quantile", format_value(q)}}, v);
  }
  w.sample("afd_transfer_latency_seconds_sum", {}, lat_sum);
  w.sample("afd_transfer_latency_seconds_count", {}, static_cast<double>(lat.size()));

  w.family("afd_rank_up", "gauge", "1 when the rank is up, 0 when it is down.");
  for (const auto& h : health) w.sample("afd_rank_up", {{"rank", h.name}}, h.up ? 1 : 0);

  w.family("afd_frontend_requests_in_flight", "gauge",
           "Requests the frontend has submitted to the engine and not yet finished.");
  w.sample("afd_frontend_requests_in_flight", {}, static_cast<double>(in_flight.load()));
  w.family("afd_prompt_tokens_total", "counter", "Prompt tokens of submitted requests.");
  w.sample("afd_prompt_tokens_total", {}, static_cast<double>(prompt_tokens.load()));
  w.family("afd_generation_tokens_total", "counter", "Generated tokens.");
  w.sample("afd_generation_tokens_total", {}, static_cast<double>(generation_tokens.load()));

  std::lock_guard<std::mutex> lk(mu_);
  w.family("afd_http_responses_total", "counter", "HTTP responses by route and status code.");
  for (const auto& [k, n] : responses_)
    w.sample("afd_http_responses_total", {{"route", k.first}, {"status", std::to_string(k.second)}},
             static_cast<double>(n));
  w.family("afd_requests_finished_total", "counter",
           "Generations by how they ended: stop, length, abort (client gone) or error.");
  for (const char* r : {"stop", "length", "abort", "error"}) {
    auto it = finished_.find(r);
    w.sample("afd_requests_finished_total", {{"reason", r}},
             static_cast<double>(it == finished_.end() ? 0 : it->second));
  }
  return w.text();
}

}  // namespace afd::metrics
