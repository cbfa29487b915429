// afd bench's report: percentiles as numpy computes them, throughput and goodput definitions,
// and the exact JSON keys docs/bench.md promises.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "serve/bench_client_stats.h"

namespace afd::serve::bench {
namespace {

TEST(BenchStats, PercentileMatchesNumpyLinear) {
  // numpy.percentile([1, 2, 3, 4], [0, 50, 90, 99, 100]) = [1, 2.5, 3.7, 3.97, 4]
  const std::vector<double> v = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(percentile(v, 50), 2.5);
  EXPECT_NEAR(percentile(v, 90), 3.7, 1e-12);
  EXPECT_NEAR(percentile(v, 99), 3.97, 1e-12);
  EXPECT_DOUBLE_EQ(percentile(v, 100), 4);
  EXPECT_DOUBLE_EQ(percentile({7}, 99), 7);
  // numpy.percentile(range(101), 99) = 99; (range(10), 90) = 8.1
  std::vector<double> r101, r10;
  for (int i = 0; i <= 100; ++i) r101.push_back(i);
  for (int i = 0; i < 10; ++i) r10.push_back(i);
  EXPECT_NEAR(percentile(r101, 99), 99, 1e-12);
  EXPECT_NEAR(percentile(r10, 90), 8.1, 1e-12);
}

TEST(BenchStats, SummaryIsInMillisecondsAndSortsItsInput) {
  Summary s = summarize_ms({0.004, 0.001, 0.003, 0.002});
  EXPECT_EQ(s.count, 4u);
  EXPECT_NEAR(s.mean, 2.5, 1e-12);
  EXPECT_NEAR(s.median, 2.5, 1e-12);
  EXPECT_NEAR(s.p90, 3.7, 1e-9);
  EXPECT_NEAR(s.p99, 3.97, 1e-9);
  EXPECT_NEAR(s.std, std::sqrt(1.25), 1e-12);  // population std, numpy's default
  EXPECT_EQ(summarize_ms({}).count, 0u);
}

RequestResult ok_result(double ttft, double e2e, int64_t out, int64_t in,
                        std::vector<double> itl = {}) {
  RequestResult r;
  r.ok = true;
  r.ttft_s = ttft;
  r.e2e_s = e2e;
  r.output_tokens = out;
  r.prompt_tokens = in;
  r.itl_s = std::move(itl);
  return r;
}

RequestResult failed_result(std::string error) {
  RequestResult r;
  r.error = std::move(error);
  return r;
}

TEST(BenchStats, TpotDefinition) {
  EXPECT_NEAR(tpot_s(ok_result(0.1, 1.1, 11, 5)), 0.1, 1e-12);
  EXPECT_LT(tpot_s(ok_result(0.1, 1.1, 1, 5)), 0);  // one token: undefined
  EXPECT_LT(tpot_s(ok_result(-1, 1.1, 5, 5)), 0);   // no text arrived: undefined
  EXPECT_LT(tpot_s(failed_result("x")), 0);
}

TEST(BenchStats, ReportCountsThroughputAndGoodput) {
  BenchConfig c;
  c.tpot_slo_ms = 50;
  std::vector<RequestResult> rs = {
      ok_result(0.1, 0.5, 5, 10, {0.1, 0.1, 0.1, 0.1}),          // TPOT 100 ms: misses the SLO
      ok_result(0.1, 0.2, 5, 20, {0.025, 0.025, 0.025, 0.025}),  // TPOT 25 ms: meets it
      ok_result(0.3, 0.3, 1, 30),  // one token, no TPOT: counts as meeting it (as vLLM)
      failed_result("HTTP 500: boom"),
      failed_result("connect: Connection refused"),
  };
  BenchReport r = make_report(c, rs, /*duration_s=*/2.0, /*max_in_flight=*/4);
  EXPECT_EQ(r.completed, 3);
  EXPECT_EQ(r.failed, 2);
  EXPECT_EQ(r.total_input_tokens, 60);
  EXPECT_EQ(r.total_output_tokens, 11);
  EXPECT_DOUBLE_EQ(r.request_throughput, 1.5);
  EXPECT_DOUBLE_EQ(r.output_throughput, 5.5);
  EXPECT_DOUBLE_EQ(r.total_token_throughput, 35.5);
  EXPECT_EQ(r.good_requests, 2);
  ASSERT_TRUE(r.request_goodput.has_value());
  EXPECT_DOUBLE_EQ(*r.request_goodput, 1.0);
  EXPECT_EQ(r.ttft.count, 3u);
  EXPECT_NEAR(r.ttft.mean, (100 + 100 + 300) / 3.0, 1e-9);
  EXPECT_EQ(r.tpot.count, 2u);
  EXPECT_NEAR(r.tpot.mean, (100 + 25) / 2.0, 1e-9);
  EXPECT_EQ(r.itl.count, 8u);
  EXPECT_NEAR(r.itl.mean, 62.5, 1e-9);
  EXPECT_EQ(r.e2el.count, 3u);
  EXPECT_NEAR(r.e2el.median, 300, 1e-9);
  EXPECT_EQ(r.errors, (std::vector<std::string>{"HTTP 500: boom", "connect: Connection refused"}));
  EXPECT_EQ(r.max_in_flight, 4);
}

TEST(BenchStats, GoodputBoundaryIsInclusive) {
  BenchConfig c;
  c.tpot_slo_ms = 100;
  BenchReport r = make_report(c, {ok_result(0.5, 1.5, 11, 1)}, 1.0, 1);  // TPOT exactly 100 ms
  EXPECT_EQ(r.good_requests, 1);
}

TEST(BenchStats, NoSloNoGoodput) {
  BenchReport r = make_report(BenchConfig{}, {ok_result(0.1, 0.2, 2, 1)}, 1.0, 1);
  EXPECT_FALSE(r.request_goodput.has_value());
  EXPECT_TRUE(report_json(r)["request_goodput"].is_null());
  EXPECT_TRUE(report_json(r)["good_requests"].is_null());
}

TEST(BenchStats, KeepsOnlyTheFirstErrors) {
  std::vector<RequestResult> rs;
  for (int i = 0; i < 25; ++i) rs.push_back(failed_result("e" + std::to_string(i)));
  BenchReport r = make_report(BenchConfig{}, rs, 1.0, 25);
  EXPECT_EQ(r.failed, 25);
  ASSERT_EQ(r.errors.size(), kKeptErrors);
  EXPECT_EQ(r.errors.front(), "e0");
  EXPECT_EQ(r.errors.back(), "e" + std::to_string(kKeptErrors - 1));
  nlohmann::json j = report_json(r);
  EXPECT_TRUE(j["mean_ttft_ms"].is_null());  // no samples: null, not a made-up 0
  EXPECT_EQ(j["ttft_samples"], 0);
  EXPECT_EQ(j["completed"], 0);
}

TEST(BenchStats, JsonKeysAreExactlyTheDocumentedOnes) {
  BenchConfig c;
  c.url = "http://h:1";
  c.endpoint = "/v1/completions";
  c.request_rate = INFINITY;
  c.max_concurrency = 8;
  c.tpot_slo_ms = 20;
  nlohmann::json j = report_json(make_report(c, {ok_result(0.1, 0.3, 3, 4, {0.1, 0.1})}, 1, 1));
  std::set<std::string> want = {"url",
                                "endpoint",
                                "model",
                                "num_prompts",
                                "request_rate",
                                "max_concurrency",
                                "warmup",
                                "seed",
                                "tpot_slo_ms",
                                "duration",
                                "completed",
                                "failed",
                                "total_input_tokens",
                                "total_output_tokens",
                                "request_throughput",
                                "request_goodput",
                                "good_requests",
                                "output_throughput",
                                "total_token_throughput",
                                "max_in_flight",
                                "errors"};
  for (const char* m : {"ttft", "tpot", "itl", "e2el"}) {
    for (const char* s : {"mean", "median", "std", "p90", "p99"})
      want.insert(std::string(s) + "_" + m + "_ms");
    want.insert(std::string(m) + "_samples");
  }
  std::set<std::string> got;
  for (auto it = j.begin(); it != j.end(); ++it) got.insert(it.key());
  EXPECT_EQ(got, want);
  EXPECT_EQ(j["request_rate"], "inf");
  EXPECT_EQ(j["max_concurrency"], 8);
  EXPECT_TRUE(j["model"].is_null());
  EXPECT_NEAR(j["mean_tpot_ms"].get<double>(), 100, 1e-9);
  EXPECT_NEAR(j["request_goodput"].get<double>(), 0, 1e-12);
}

TEST(BenchStats, TextReport) {
  BenchConfig c;
  c.request_rate = 4;
  c.tpot_slo_ms = 150;
  std::string t = report_text(make_report(
      c, {ok_result(0.1, 0.3, 3, 4, {0.1, 0.1}), failed_result("HTTP 503: down")}, 2, 2));
  for (const char* needle :
       {"Serving Benchmark Result", "Successful requests:", "Failed requests:",
        "Request throughput (req/s):", "Request goodput, TPOT <= 150 ms (req/s):",
        "Output token throughput (tok/s):", "Mean TTFT (ms):", "P99 TPOT (ms):", "Median ITL (ms):",
        "P90 E2EL (ms):", "HTTP 503: down"})
    EXPECT_NE(t.find(needle), std::string::npos) << needle << "\n" << t;
}

}  // namespace
}  // namespace afd::serve::bench
