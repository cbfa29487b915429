// afd bench's workload: random prompt lengths and ids, Poisson arrivals, JSON-lines datasets,
// request bodies and --url parsing.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "serve/bench_client.h"
#include "serve/bench_client_workload.h"
#include "test_util.h"

namespace afd::serve::bench {
namespace {

using afd::testing::TempDir;

TEST(BenchWorkload, UniformIntStaysInRangeAndHitsBothEnds) {
  Rng rng(1);
  bool lo = false, hi = false;
  for (int i = 0; i < 10000; ++i) {
    int64_t v = rng.uniform_int(3, 7);
    ASSERT_GE(v, 3);
    ASSERT_LE(v, 7);
    lo |= v == 3;
    hi |= v == 7;
  }
  EXPECT_TRUE(lo && hi);
  EXPECT_EQ(rng.uniform_int(5, 5), 5);
}

TEST(BenchWorkload, RandomPromptsFollowTheSpec) {
  RandomSpec s{/*input_len=*/100, /*output_len=*/20, /*range_ratio=*/0.5, /*vocab=*/50,
               /*seed=*/9};
  auto ps = random_prompts(s, 500);
  ASSERT_EQ(ps.size(), 500u);
  int64_t min_in = 1 << 30, max_in = 0, min_out = 1 << 30, max_out = 0;
  for (const Prompt& p : ps) {
    ASSERT_TRUE(p.is_ids);
    EXPECT_EQ(p.known_len(), int64_t(p.ids.size()));
    min_in = std::min<int64_t>(min_in, p.ids.size());
    max_in = std::max<int64_t>(max_in, p.ids.size());
    min_out = std::min(min_out, p.max_tokens);
    max_out = std::max(max_out, p.max_tokens);
    for (int64_t id : p.ids) ASSERT_TRUE(id >= 0 && id < 50) << id;
  }
  // [int(100 * 0.5), int(100 * 1.5)] and [int(20 * 0.5), int(20 * 1.5)]
  EXPECT_GE(min_in, 50);
  EXPECT_LE(max_in, 150);
  EXPECT_GE(min_out, 10);
  EXPECT_LE(max_out, 30);
  EXPECT_LT(min_in, 60);  // 500 draws cover the range
  EXPECT_GT(max_in, 140);
  // Same seed, same prompts; another seed, others.
  auto again = random_prompts(s, 500);
  EXPECT_EQ(again[17].ids, ps[17].ids);
  EXPECT_EQ(again[499].max_tokens, ps[499].max_tokens);
  s.seed = 10;
  EXPECT_NE(random_prompts(s, 1)[0].ids, ps[0].ids);
}

TEST(BenchWorkload, ZeroRangeRatioGivesExactLengths) {
  for (const Prompt& p : random_prompts(RandomSpec{8, 3, 0.0, 1000, 0}, 20)) {
    EXPECT_EQ(p.ids.size(), 8u);
    EXPECT_EQ(p.max_tokens, 3);
  }
  // Lengths never fall below one token.
  for (const Prompt& p : random_prompts(RandomSpec{1, 1, 0.9, 1000, 0}, 50)) {
    EXPECT_GE(p.ids.size(), 1u);
    EXPECT_GE(p.max_tokens, 1);
  }
}

TEST(BenchWorkload, PoissonArrivals) {
  auto inf = poisson_arrivals(5, INFINITY, 1);
  EXPECT_EQ(inf, std::vector<double>(5, 0.0));
  auto t = poisson_arrivals(20000, 50.0, 3);
  EXPECT_EQ(t[0], 0.0);
  for (size_t i = 1; i < t.size(); ++i) ASSERT_GE(t[i], t[i - 1]);
  // Deterministic for a seed, so this is no flaky statistics: mean gap 1/50 s within 3%.
  EXPECT_NEAR(t.back() / double(t.size() - 1), 0.02, 0.02 * 0.03);
  EXPECT_EQ(poisson_arrivals(20000, 50.0, 3), t);
}

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(BenchWorkload, DatasetLinesInOrderAndRepeated) {
  TempDir dir;
  const std::string path = dir / "d.jsonl";
  write(path,
        "{\"prompt\": \"hello there\", \"max_tokens\": 4}\n"
        "\n"
        "{\"prompt_ids\": [1, 2, 3]}\n"
        "{\"prompt\": [9, 8], \"max_tokens\": 2, \"other\": 1}\n");
  auto r = load_dataset(path, /*default_max_tokens=*/7, 5);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const auto& ps = *r;
  ASSERT_EQ(ps.size(), 5u);
  EXPECT_FALSE(ps[0].is_ids);
  EXPECT_EQ(ps[0].text, "hello there");
  EXPECT_EQ(ps[0].max_tokens, 4);
  EXPECT_EQ(ps[0].known_len(), -1);
  EXPECT_EQ(ps[1].ids, (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(ps[1].max_tokens, 7);
  EXPECT_EQ(ps[2].ids, (std::vector<int64_t>{9, 8}));
  EXPECT_EQ(ps[3].text, "hello there");  // wrapped around
  EXPECT_EQ(ps[4].ids, ps[1].ids);
}

TEST(BenchWorkload, DatasetErrorsNameFileAndLine) {
  TempDir dir;
  const std::string path = dir / "bad.jsonl";
  auto expect_error = [&](const std::string& text, const std::string& needle) {
    write(path, text);
    auto r = load_dataset(path, 1, 1);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
  };
  expect_error("{\"prompt\": \"a\"}\nnot json\n", path + ":2");
  expect_error("{\"text\": \"a\"}\n", path + ":1: needs \"prompt\"");
  expect_error("{\"prompt\": \"a\", \"prompt_ids\": [1]}\n", "not both");
  expect_error("{\"prompt_ids\": [1, -2]}\n", "non-negative");
  expect_error("{\"prompt_ids\": []}\n", "non-empty");
  expect_error("{\"prompt\": \"a\", \"max_tokens\": 0}\n", "max_tokens");
  expect_error("\n\n", "no prompts");
  auto missing = load_dataset(dir / "nope.jsonl", 1, 1);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
}

TEST(BenchWorkload, RequestBodies) {
  Prompt ids;
  ids.is_ids = true;
  ids.ids = {5, 6};
  ids.max_tokens = 3;
  auto b = nlohmann::json::parse(request_body(ids, Api::kCompletions, "m", {}).value());
  EXPECT_EQ(b["model"], "m");
  EXPECT_EQ(b["prompt"], nlohmann::json::array({5, 6}));
  EXPECT_EQ(b["max_tokens"], 3);
  EXPECT_EQ(b["stream"], true);
  EXPECT_EQ(b["stream_options"]["include_usage"], true);
  EXPECT_FALSE(b.contains("messages"));

  Prompt text;
  text.text = "hi";
  text.max_tokens = 2;
  nlohmann::json extra = {{"ignore_eos", true}, {"max_tokens", 9}};
  auto c = nlohmann::json::parse(request_body(text, Api::kChat, "", extra).value());
  EXPECT_FALSE(c.contains("model"));  // no model known: none sent
  EXPECT_EQ(c["messages"][0]["role"], "user");
  EXPECT_EQ(c["messages"][0]["content"], "hi");
  EXPECT_EQ(c["ignore_eos"], true);
  EXPECT_EQ(c["max_tokens"], 9);  // --extra-body has the last word
  EXPECT_FALSE(request_body(ids, Api::kChat, "m", {}).ok());
}

TEST(BenchUrl, Parse) {
  auto u = parse_url("http://127.0.0.1:8000").value();
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, "8000");
  EXPECT_EQ(u.base, "");
  EXPECT_EQ(u.host_header, "127.0.0.1:8000");
  u = parse_url("http://example.com/prefix/").value();
  EXPECT_EQ(u.host, "example.com");
  EXPECT_EQ(u.port, "80");
  EXPECT_EQ(u.base, "/prefix");
  u = parse_url("http://[::1]:9/").value();
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.port, "9");
  EXPECT_EQ(u.host_header, "[::1]:9");
  EXPECT_FALSE(parse_url("https://x").ok());
  EXPECT_FALSE(parse_url("x:80").ok());
  EXPECT_FALSE(parse_url("http://:80").ok());
  EXPECT_FALSE(parse_url("http://h:0").ok());
  EXPECT_FALSE(parse_url("http://h:99999").ok());
  EXPECT_FALSE(parse_url("http://h:8a").ok());
}

}  // namespace
}  // namespace afd::serve::bench
