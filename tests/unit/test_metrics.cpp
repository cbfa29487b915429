// Prometheus text exposition of the serving metrics.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <thread>

#include "serve/metrics.h"

namespace afd::metrics {
namespace {

TEST(Metrics, HistogramIsCumulativeWithInfSumAndCount) {
  Histogram h({0.1, 1.0, 10.0});
  for (double v : {0.05, 0.1, 0.5, 5.0, 50.0}) h.observe(v);
  auto s = h.snapshot();
  EXPECT_EQ(s.cumulative, (std::vector<uint64_t>{2, 3, 4}));  // le is inclusive
  EXPECT_EQ(s.count, 5u);
  EXPECT_DOUBLE_EQ(s.sum, 55.65);
  Writer w;
  w.histogram("x_seconds", "help text", s);
  EXPECT_EQ(w.text(),
            "# HELP x_seconds help text\n# TYPE x_seconds histogram\n"
            "x_seconds_bucket{le=\"0.1\"} 2\nx_seconds_bucket{le=\"1\"} 3\n"
            "x_seconds_bucket{le=\"10\"} 4\nx_seconds_bucket{le=\"+Inf\"} 5\n"
            "x_seconds_sum 55.65\nx_seconds_count 5\n");
}

TEST(Metrics, HistogramIsThreadSafe) {
  Histogram h({1.0});
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) h.observe(0.5);
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(h.snapshot().count, 40000u);
  EXPECT_EQ(h.snapshot().cumulative[0], 40000u);
}

TEST(Metrics, LabelsAreEscapedAndValuesSpelledAsPrometheusDoes) {
  EXPECT_EQ(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(format_value(3), "3");
  EXPECT_EQ(format_value(0.25), "0.25");
  EXPECT_EQ(format_value(INFINITY), "+Inf");
  EXPECT_EQ(format_value(NAN), "NaN");
  Writer w;
  w.sample("m", {{"rank", "attention \"0\""}, {"stage", "x"}}, 1.5);
  EXPECT_EQ(w.text(), "m{rank=\"attention \\\"0\\\"\",stage=\"x\"} 1.5\n");
}

// Every sample line is `name{labels} value` with a parsable value, and every family is
// announced by HELP and TYPE before its samples.
void expect_well_formed(const std::string& text) {
  std::istringstream in(text);
  std::string line, family;
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0) continue;
    if (line.rfind("# TYPE ", 0) == 0) {
      family = line.substr(7, line.find(' ', 7) - 7);
      continue;
    }
    ASSERT_FALSE(family.empty()) << line;
    EXPECT_EQ(line.rfind(family, 0), 0u) << line << " outside family " << family;
    std::string value = line.substr(line.rfind(' ') + 1);
    if (value != "NaN" && value != "+Inf") {
      EXPECT_NO_THROW((void)std::stod(value)) << line;
    }
  }
}

TEST(Metrics, RenderHasEveryFamily) {
  ServingMetrics m;
  m.ttft_s.observe(0.2);
  m.count_response("/v1/completions", 200);
  m.count_response("/v1/completions", 200);
  m.count_response("other", 404);
  m.count_finished("length");
  EngineMetrics e;
  e.attention = {{"attention 0", 3, 2, 0.5}, {"attention 1", 0, 0, 0}};
  e.stages = {{"attention 0", 1, 2, 3}, {"ffn 0", 4, 5, 6}};
  e.transfer_latency_samples = {0.004, 0.001, 0.003, 0.002};
  std::vector<RankHealth> h = {{"attention 0", true, ""}, {"ffn 0", false, "killed"}};
  std::string t = m.render(e, h);
  expect_well_formed(t);
  for (const char* s :
       {"afd_time_to_first_token_seconds_count 1", "afd_time_per_output_token_seconds_count 0",
        "afd_e2e_request_latency_seconds_count 0", "afd_requests_running{rank=\"attention 0\"} 3",
        "afd_requests_waiting{rank=\"attention 0\"} 2",
        "afd_kv_cache_usage_ratio{rank=\"attention 0\"} 0.5",
        "afd_rank_busy_seconds_total{rank=\"ffn 0\",stage=\"wait\"} 5",
        "afd_transfer_latency_seconds{quantile=\"0.5\"} 0.002",
        "afd_transfer_latency_seconds{quantile=\"0.99\"} 0.004",
        "afd_transfer_latency_seconds_count 4", "afd_rank_up{rank=\"ffn 0\"} 0",
        "afd_http_responses_total{route=\"/v1/completions\",status=\"200\"} 2",
        "afd_http_responses_total{route=\"other\",status=\"404\"} 1",
        "afd_requests_finished_total{reason=\"length\"} 1",
        "afd_requests_finished_total{reason=\"abort\"} 0", "afd_frontend_requests_in_flight 0"})
    EXPECT_NE(t.find(s), std::string::npos) << "missing: " << s << "\n" << t;
  // No samples yet: quantiles are NaN, not made up.
  std::string empty = ServingMetrics().render(EngineMetrics{}, {});
  expect_well_formed(empty);
  EXPECT_NE(empty.find("afd_transfer_latency_seconds{quantile=\"0.5\"} NaN"), std::string::npos);
}

}  // namespace
}  // namespace afd::metrics
