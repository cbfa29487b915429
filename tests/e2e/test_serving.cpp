// The serving Engine over the AFD runtime: requests joining a running cluster, streamed tokens
// equal to offline generation, cancellation, stop tokens, and a lost rank failing requests.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "model/checkpoint_init.h"
#include "runtime/generate.h"
#include "runtime/serving.h"
#include "test_util.h"

namespace afd {
namespace {

using namespace std::chrono_literals;

// Collects one request's events.
struct Stream {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int32_t> tokens;
  bool finished = false;
  std::string reason;
  Status error;
  int events = 0;
  std::function<void(const TokenEvent&)> callback() {
    return [this](const TokenEvent& e) {
      std::lock_guard<std::mutex> g(mu);
      ++events;
      tokens.insert(tokens.end(), e.tokens.begin(), e.tokens.end());
      if (!e.error.ok()) error = e.error, finished = true;
      if (e.finished) finished = true, reason = e.finish_reason;
      cv.notify_all();
    };
  }
  bool wait(std::chrono::milliseconds t) {
    std::unique_lock<std::mutex> l(mu);
    return cv.wait_for(l, t, [&] { return finished; });
  }
};

std::vector<int32_t> reference(const std::vector<int32_t>& prompt, int64_t n) {
  static Step3Model m = [] {
    ModelConfig c = ModelConfig::preset("step3-tiny").value();
    return Step3Model(c, random_step3_weights(c, 0));
  }();
  GenerateOptions o;
  o.max_new_tokens = n;
  return generate(m, {prompt}, o).value().tokens[0];
}

GenerationRequest greedy(std::vector<int32_t> prompt, int64_t n) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = n;
  r.temperature = 0;
  return r;
}

class Serving : public ::testing::TestWithParam<std::string> {};

TEST_P(Serving, StreamsTheTokensOfGenerateCancelsAndStops) {
  ServeOptions so;
  so.model = "step3-tiny";
  so.transport = GetParam() == "colocated" ? "local" : GetParam();
  so.job.colocated = GetParam() == "colocated";
  so.job.attention_ranks = 2;
  so.job.ffn_ranks = 2;
  so.job.dispatch = WireDType::kF32;
  so.worker_binary = AFD_BINARY;  // this test binary is not an afd executable
  auto engine = start_engine(so);
  ASSERT_TRUE(engine.ok()) << engine.status().to_string();
  Engine& e = **engine;

  std::vector<std::vector<int32_t>> prompts = {{1, 2, 3}, {9}, {400, 500, 600, 700, 800, 900}, {5, 5}};
  std::vector<Stream> streams(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(e.submit(greedy(prompts[i], 6 + static_cast<int64_t>(i)), streams[i].callback()).ok());
    std::this_thread::sleep_for(5ms);  // requests join a running engine at different steps
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(streams[i].wait(20s)) << i;
    EXPECT_TRUE(streams[i].error.ok()) << streams[i].error.to_string();
    EXPECT_EQ(streams[i].reason, "length");
    EXPECT_EQ(streams[i].tokens, reference(prompts[i], 6 + static_cast<int64_t>(i))) << i;
  }

  // A stop token ends the stream right after it.
  auto ref = reference({7, 7, 7}, 8);
  GenerationRequest stop = greedy({7, 7, 7}, 8);
  stop.stop_token_ids = {ref[2]};
  Stream s;
  ASSERT_TRUE(e.submit(stop, s.callback()).ok());
  ASSERT_TRUE(s.wait(20s));
  EXPECT_EQ(s.reason, "stop");
  EXPECT_EQ(s.tokens, std::vector<int32_t>(ref.begin(), ref.begin() + 3));

  // Cancel a long request: it finishes as cancelled and the KV gauges drain to zero.
  Stream c;
  auto id = e.submit(greedy({3, 1, 4}, 3000), c.callback());
  ASSERT_TRUE(id.ok());
  std::this_thread::sleep_for(100ms);
  e.cancel(*id);
  ASSERT_TRUE(c.wait(20s));
  EXPECT_EQ(c.reason, "cancelled");
  EXPECT_LT(c.tokens.size(), 3000u);
  bool drained = false;
  for (int i = 0; i < 100 && !drained; ++i) {
    // Gauges arrive with the next step that produces tokens: nudge with a tiny request.
    Stream nudge;
    ASSERT_TRUE(e.submit(greedy({1}, 1), nudge.callback()).ok());
    nudge.wait(10s);
    drained = true;
    for (const auto& a : e.metrics().attention) drained = drained && a.running == 0;
  }
  EXPECT_TRUE(drained);

  // Bad requests fail at submit.
  Stream bad;
  EXPECT_EQ(e.submit(greedy({1000}, 1), bad.callback()).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(e.submit(greedy({1}, 100000), bad.callback()).status().code(), Code::kInvalidArgument);
  for (const auto& h : e.health()) EXPECT_TRUE(h.up) << h.name;
  e.shutdown();
}

INSTANTIATE_TEST_SUITE_P(Engine, Serving, ::testing::Values("local", "colocated", "ucx"));

TEST(ServingCluster, KillingARankFailsRequestsAndReportsItDown) {
  ServeOptions so;
  so.model = "step3-tiny";
  so.weights_seed = 4242;  // marks this test's workers
  so.transport = "ucx";
  so.job.attention_ranks = 1;
  so.job.ffn_ranks = 2;
  so.worker_binary = AFD_BINARY;
  auto engine = start_engine(so);
  ASSERT_TRUE(engine.ok()) << engine.status().to_string();
  Engine& e = **engine;
  Stream s;
  ASSERT_TRUE(e.submit(greedy({1, 2}, 3000), s.callback()).ok());
  std::this_thread::sleep_for(300ms);
  afd::testing::run_command("pkill -9 -f -- '[r]ole ffn --index 1 --model step3-tiny --weights-seed 4242'");
  ASSERT_TRUE(s.wait(10s));
  EXPECT_EQ(s.error.code(), Code::kUnavailable);
  EXPECT_NE(s.error.message().find("ffn 1"), std::string::npos) << s.error.message();
  bool reported = false;
  for (const auto& h : e.health())
    if (h.name == "ffn 1") reported = !h.up;
  EXPECT_TRUE(reported);
  Stream later;
  EXPECT_EQ(e.submit(greedy({1}, 1), later.callback()).status().code(), Code::kUnavailable);
  e.shutdown();
  auto left = afd::testing::run_command("pgrep -f -c -- '[w]eights-seed 4242'");
  EXPECT_EQ(left.out.empty() ? 0 : std::stoi(left.out), 0);
}

}  // namespace
}  // namespace afd
