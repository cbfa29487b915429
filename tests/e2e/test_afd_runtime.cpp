// The AFD runtime in one process: every layout gives the tokens of single-process generation;
// placement and scheduler invariants; the fp8 wire's error bound.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "model/checkpoint_init.h"
#include "runtime/ffn_worker.h"
#include "runtime/generate.h"
#include "runtime/job.h"
#include "runtime/placement.h"
#include "runtime/scheduler.h"
#include "runtime/wire.h"

namespace afd {
namespace {

const Step3Model& tiny() {
  static Step3Model m = [] {
    ModelConfig cfg = ModelConfig::preset("step3-tiny").value();
    return Step3Model(cfg, random_step3_weights(cfg, 21));
  }();
  return m;
}

std::vector<Request> requests() {
  std::vector<Request> r;
  const int lens[] = {1, 5, 23, 9, 2, 40, 7};
  const int news[] = {6, 3, 5, 8, 1, 4, 7};
  uint32_t x = 7;
  for (int i = 0; i < 7; ++i) {
    Request q;
    q.index = i;
    for (int t = 0; t < lens[i]; ++t) q.prompt.push_back(static_cast<int32_t>((x = x * 1103515245u + 12345u) >> 8) % 1000);
    q.max_new_tokens = news[i];
    r.push_back(q);
  }
  return r;
}

std::vector<std::vector<int32_t>> reference_tokens() {
  std::vector<std::vector<int32_t>> out;
  for (const Request& q : requests()) {
    GenerateOptions o;
    o.max_new_tokens = q.max_new_tokens;
    out.push_back(generate(tiny(), {q.prompt}, o).value().tokens[0]);
  }
  return out;
}

class AfdLayouts : public ::testing::TestWithParam<std::tuple<int, int, int>> {};

TEST_P(AfdLayouts, F32DispatchGivesTheTokensOfGenerate) {
  static const auto ref = reference_tokens();
  const auto [A, M, K] = GetParam();
  JobOptions o;
  o.attention_ranks = A;
  o.ffn_ranks = M;
  o.micro_batches = K;
  o.dispatch = WireDType::kF32;
  o.sched.max_step_tokens = 24;  // forces chunked prefill of the 40- and 23-token prompts
  o.sched.prefill_chunk = 11;
  o.sched.max_running = 3;       // requests join as others leave
  auto rep = run_local_job(tiny(), requests(), o);
  ASSERT_TRUE(rep.ok()) << rep.status().to_string();
  ASSERT_EQ(rep->results.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_EQ(rep->results[i].tokens, ref[i]) << "request " << i;
  EXPECT_GT(rep->ranks[static_cast<size_t>(A)].bytes_received, 0u);  // FFN rank 0 got traffic
}

INSTANTIATE_TEST_SUITE_P(Runtime, AfdLayouts,
                         ::testing::Values(std::make_tuple(1, 1, 1), std::make_tuple(2, 1, 2),
                                           std::make_tuple(1, 3, 3), std::make_tuple(2, 3, 3),
                                           std::make_tuple(2, 3, 1), std::make_tuple(3, 2, 4)));

TEST(Runtime, ColocatedGivesTheTokensOfGenerate) {
  JobOptions o;
  o.colocated = true;
  o.micro_batches = 1;
  auto rep = run_local_job(tiny(), requests(), o);
  ASSERT_TRUE(rep.ok()) << rep.status().to_string();
  const auto ref = reference_tokens();
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_EQ(rep->results[i].tokens, ref[i]) << i;
}

TEST(Runtime, SmallKvCacheAdmitsRequestsAsOthersFinish) {
  JobOptions o;
  o.attention_ranks = 1;
  o.ffn_ranks = 2;
  o.dispatch = WireDType::kF32;
  o.kv_tokens = 64;  // 4 blocks of 16: the 40-token prompt + 4 new fits only alone
  o.block_size = 16;
  auto rep = run_local_job(tiny(), requests(), o);
  ASSERT_TRUE(rep.ok()) << rep.status().to_string();
  const auto ref = reference_tokens();
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_EQ(rep->results[i].tokens, ref[i]) << i;
}

TEST(Runtime, RequestLargerThanTheCacheIsRefused) {
  JobOptions o;
  o.kv_tokens = 32;
  auto rep = run_local_job(tiny(), requests(), o);
  ASSERT_FALSE(rep.ok());
  EXPECT_NE(rep.status().message().find("never fit"), std::string::npos) << rep.status().message();
}

TEST(Placement, EverySliceOnceAndTooManyRanksRefused) {
  const ModelConfig& cfg = tiny().config();
  for (int M : {1, 2, 3, 5, 7}) {
    Placement p = Placement::build(cfg, M).value();
    for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
      std::vector<int64_t> rows_always;
      std::multiset<int64_t> experts;
      for (int f = 0; f < M; ++f)
        for (const ExpertSlice& s : p.slices(l, f)) {
          EXPECT_LT(s.begin, s.end);
          if (s.expert < 0) rows_always.push_back(s.end - s.begin);
          else {
            experts.insert(s.expert);
            EXPECT_EQ(p.expert_rank(s.expert), f);
          }
        }
      int64_t total = 0;
      for (int64_t r : rows_always) total += r;
      EXPECT_EQ(total, cfg.is_moe_layer(l) ? cfg.share_expert_dim : cfg.intermediate_size);
      EXPECT_EQ(static_cast<int64_t>(experts.size()), cfg.is_moe_layer(l) ? cfg.moe_num_experts : 0);
      EXPECT_EQ(std::set<int64_t>(experts.begin(), experts.end()).size(), experts.size());
    }
  }
  auto bad = Placement::build(cfg, 201);  // shared expert has 200 rows
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("at most 200"), std::string::npos) << bad.status().message();
}

TEST(Scheduler, JoinLeaveChunkAndEmptyMicroBatches) {
  KVCache cache(1, 8, 4, 8);  // 8 blocks of 4 tokens = 32 positions
  SchedulerConfig sc;
  sc.max_running = 2;
  sc.max_step_tokens = 6;
  sc.prefill_chunk = 4;
  Scheduler s(sc, &cache);
  ASSERT_TRUE(s.add({0, {1, 2, 3, 4, 5, 6, 7, 8, 9}, 2}).ok());  // 11 tokens: 3 blocks
  ASSERT_TRUE(s.add({1, {1}, 3}).ok());
  ASSERT_TRUE(s.add({2, {1, 2}, 1}).ok());
  EXPECT_FALSE(s.add({3, std::vector<int32_t>(40, 1), 1}).ok());  // can never fit
  auto plan = s.plan(3);
  ASSERT_EQ(plan.size(), 3u);
  int64_t tokens = 0, chunks = 0;
  for (auto& mb : plan) for (auto& c : mb) tokens += static_cast<int64_t>(c.chunk.tokens.size()), ++chunks;
  EXPECT_EQ(chunks, 2);  // max_running = 2: request 2 waits
  EXPECT_EQ(tokens, 5);  // 4 prompt tokens of request 0 (chunk), 1 of request 1
  EXPECT_EQ(s.running(), 2);
  EXPECT_EQ(s.waiting(), 1);
  int empty = 0;
  for (auto& mb : plan) empty += mb.empty();
  EXPECT_EQ(empty, 1);  // three micro-batches, two chunks
}

TEST(Wire, Fp8DispatchErrorIsBoundedAndF32IsExact) {
  const int64_t T = 7, H = 300, k = 3;
  std::vector<float> x(T * H), w(T * k);
  std::vector<int32_t> ids(T * k);
  for (int64_t i = 0; i < T * H; ++i) x[i] = std::sin(0.1f * i) * (1 + i % 17);
  for (int64_t i = 0; i < T * k; ++i) ids[i] = static_cast<int32_t>(i % 5), w[i] = 0.1f * i;
  std::vector<int64_t> rows = {0, 2, 3, 6};
  for (WireDType dt : {WireDType::kF32, WireDType::kBF16, WireDType::kFp8}) {
    std::vector<uint8_t> buf;
    encode_dispatch(kFlagRankDone, dt, x.data(), ids.data(), w.data(), rows, H, k, &buf);
    DispatchMsg m;
    ASSERT_TRUE(decode_dispatch(buf, &m).ok());
    EXPECT_EQ(m.tokens, 4);
    EXPECT_EQ(m.flags, kFlagRankDone);
    // e4m3 keeps 3 mantissa bits: relative error <= 2^-4 of the block's scale; bf16 2^-8.
    const double bound = dt == WireDType::kF32 ? 0 : dt == WireDType::kBF16 ? 1.0 / 256 : 1.0 / 16;
    for (size_t t = 0; t < rows.size(); ++t) {
      EXPECT_EQ(m.ids[t * k + 1], ids[rows[t] * k + 1]);
      for (int64_t c = 0; c < H; ++c) {
        float ref = x[rows[t] * H + c], got = m.x[t * H + c];
        EXPECT_LE(std::fabs(got - ref), bound * std::fabs(ref) + (dt == WireDType::kFp8 ? 17.0 / 448 / 2 : 0))
            << wire_dtype_name(dt) << " t=" << t << " c=" << c;
      }
    }
    buf.pop_back();
    EXPECT_FALSE(decode_dispatch(buf, &m).ok());
  }
}

}  // namespace
}  // namespace afd

namespace afd {
namespace {

// Logits of one prefill through the A->F->A path with the given wire dtype and FFN ranks:
// per layer, the attention side encodes x, each FFN rank decodes it, computes its slices and
// answers in the wire's partial dtype, and the attention side adds the partials.
Tensor logits_through_wire(const Step3Model& m, const std::vector<int32_t>& tokens, WireDType dt,
                           int M) {
  const ModelConfig& cfg = m.config();
  const int64_t H = cfg.hidden_size, k = cfg.moe_top_k;
  Placement p = Placement::build(cfg, M).value();
  std::vector<std::unique_ptr<FfnExecutor>> ex;
  for (int f = 0; f < M; ++f) ex.push_back(std::make_unique<FfnExecutor>(cfg, m.weights(), p, f));
  KVCache cache = m.make_cache(256);
  BatchLayout b = m.prepare({{cache.create_sequence(), tokens}}, cache).value();
  const int64_t T = b.T;
  std::vector<float> h(T * H), x(T * H), w(T * k), y(T * H);
  std::vector<int32_t> ids(T * k);
  std::vector<int64_t> rows(T);
  for (int64_t t = 0; t < T; ++t) rows[t] = t;
  cpu::embedding(b.tokens.data(), T, m.weights().embed.data<float>(), cfg.vocab_size, H, h.data());
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    m.attention(l, b, cache, h.data());
    m.ffn_input(l, h.data(), T, x.data());
    const int64_t kl = cfg.is_moe_layer(l) ? k : 0;
    if (kl) m.route(l, x.data(), T, ids.data(), w.data());
    std::vector<uint8_t> msg, part;
    encode_dispatch(0, dt, x.data(), ids.data(), w.data(), rows, H, kl, &msg);
    DispatchMsg d;
    EXPECT_TRUE(decode_dispatch(msg, &d).ok());
    for (int f = 0; f < M; ++f) {
      ex[f]->compute(l, d.x.data(), T, d.ids.data(), d.weights.data(), y.data());
      encode_partial(0, dt, y.data(), T, H, &part);
      uint32_t fl = 0;
      EXPECT_TRUE(accumulate_partial(part, rows, H, h.data(), &fl).ok());
    }
  }
  std::vector<int64_t> all(rows.begin(), rows.end());
  return m.logits(h.data(), all);
}

double rel_l2(const Tensor& a, const Tensor& b) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    double d = a.data<float>()[i] - b.data<float>()[i];
    num += d * d, den += double(b.data<float>()[i]) * b.data<float>()[i];
  }
  return std::sqrt(num / den);
}

TEST(Wire, DispatchDtypesKeepLogitsWithinTheirStatedTolerance) {
  const Step3Model& m = tiny();
  std::vector<int32_t> tokens;
  for (int i = 0; i < 29; ++i) tokens.push_back((i * 37 + 11) % 1000);
  KVCache cache = m.make_cache(256);
  BatchLayout b = m.prepare({{cache.create_sequence(), tokens}}, cache).value();
  Tensor ref = m.forward(b, cache, /*all_positions=*/true);  // f32 [29, vocab]
  // Stated tolerances (relative L2 over all logits of the prompt):
  //   f32: summation order only, 1e-5; bf16 activations and partials (8 bits of mantissa),
  //   1e-2; fp8 e4m3 activations (3 bits, one scale per 128 channels) + bf16 partials, 6e-2.
  const double f32 = rel_l2(logits_through_wire(m, tokens, WireDType::kF32, 3), ref);
  const double bf16 = rel_l2(logits_through_wire(m, tokens, WireDType::kBF16, 3), ref);
  const double fp8 = rel_l2(logits_through_wire(m, tokens, WireDType::kFp8, 3), ref);
  std::printf("relative L2 error of the logits: f32 %.2e, bf16 %.2e, fp8 %.2e\n", f32, bf16, fp8);
  EXPECT_LT(f32, 1e-5);
  EXPECT_LT(bf16, 1e-2);
  EXPECT_LT(fp8, 6e-2);
  EXPECT_GT(fp8, bf16);  // the fp8 wire really quantizes
}

}  // namespace
}  // namespace afd
