// The Step-3 CPU engine: incremental decode == full recompute, batching == running alone,
// FP8 checkpoints close to the BF16 ones they were quantized from, presets == checkpoints.
#include <gtest/gtest.h>

#include <cmath>

#include "model/checkpoint_init.h"
#include "model/safetensors.h"
#include "model/step3.h"
#include "test_util.h"

namespace afd {
namespace {

using afd::testing::max_rel_err;
using afd::testing::TempDir;

Step3Model tiny_model(uint64_t seed, bool norm_expert_weight = false) {
  ModelConfig cfg = ModelConfig::preset("step3-tiny").value();
  cfg.norm_expert_weight = norm_expert_weight;
  return Step3Model(cfg, random_step3_weights(cfg, seed));
}

std::vector<int32_t> random_tokens(int n, int vocab, uint32_t seed) {
  std::vector<int32_t> t;
  uint32_t x = seed * 2654435761u + 12345u;
  for (int i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    t.push_back(static_cast<int32_t>((x >> 8) % static_cast<uint32_t>(vocab)));
  }
  return t;
}

// Logits at every position of `tokens`, in one prefill over a fresh cache.
Tensor full_logits(const Step3Model& m, const std::vector<int32_t>& tokens, int64_t block_size) {
  KVCache cache = m.make_cache(static_cast<int64_t>(tokens.size()), block_size);
  int64_t s = cache.create_sequence();
  BatchLayout b = m.prepare({{s, tokens}}, cache).value();
  return m.forward(b, cache, /*all_positions=*/true);
}

class DecodeVsRecompute : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(DecodeVsRecompute, EveryPositionMatches) {
  const auto [block_size, first_chunk] = GetParam();
  Step3Model m = tiny_model(3);
  const int64_t V = m.config().vocab_size;
  std::vector<int32_t> tokens = random_tokens(37, static_cast<int>(V), 11);
  Tensor ref = full_logits(m, tokens, block_size);  // f32 [37, V]

  // Prefill a first chunk, then chunks of varying size, then single-token decode steps.
  KVCache cache = m.make_cache(64, block_size);
  int64_t s = cache.create_sequence();
  size_t pos = 0;
  std::vector<size_t> steps = {static_cast<size_t>(first_chunk), 3, 5, 1, 2};
  while (pos < tokens.size()) {
    size_t n = steps.empty() ? 1 : steps.front();
    if (!steps.empty()) steps.erase(steps.begin());
    n = std::min(n, tokens.size() - pos);
    std::vector<int32_t> chunk(tokens.begin() + pos, tokens.begin() + pos + n);
    BatchLayout b = m.prepare({{s, chunk}}, cache).value();
    Tensor got = m.forward(b, cache, /*all_positions=*/true);  // f32 [n, V]
    for (size_t j = 0; j < n; ++j) {
      double err = max_rel_err(got.data<float>() + j * V, ref.data<float>() + (pos + j) * V, V);
      EXPECT_LT(err, 1e-4) << "position " << pos + j << " block_size " << block_size;
    }
    pos += n;
  }
  EXPECT_EQ(cache.length(s), static_cast<int64_t>(tokens.size()));
}

INSTANTIATE_TEST_SUITE_P(Step3Model, DecodeVsRecompute,
                         ::testing::Values(std::make_tuple(16, 1), std::make_tuple(16, 7),
                                           std::make_tuple(5, 4), std::make_tuple(1, 2)));

TEST(Step3Model, BatchOfDifferentLengthsEqualsEachAlone) {
  Step3Model m = tiny_model(5, /*norm_expert_weight=*/true);
  const int64_t V = m.config().vocab_size;
  std::vector<std::vector<int32_t>> prompts = {random_tokens(1, V, 1), random_tokens(9, V, 2),
                                               random_tokens(20, V, 3)};
  // Each alone: the last position's logits.
  std::vector<Tensor> alone;
  for (auto& p : prompts) {
    Tensor all = full_logits(m, p, 16);
    Tensor last = Tensor::empty(DType::kF32, {V});
    std::memcpy(last.raw(), all.data<float>() + (p.size() - 1) * V, V * sizeof(float));
    alone.push_back(std::move(last));
  }
  // Together, in one batch, with an extra decode step that mixes lengths.
  KVCache cache = m.make_cache(256, 16);
  std::vector<SeqChunk> chunks;
  for (auto& p : prompts) chunks.push_back({cache.create_sequence(), p});
  BatchLayout b = m.prepare(chunks, cache).value();
  Tensor got = m.forward(b, cache);  // f32 [3, V]
  for (size_t i = 0; i < prompts.size(); ++i)
    EXPECT_LT(max_rel_err(got.data<float>() + i * V, alone[i].data<float>(), V), 1e-4) << i;

  for (size_t i = 0; i < prompts.size(); ++i) chunks[i].tokens = {static_cast<int32_t>(i + 7)};
  BatchLayout b2 = m.prepare(chunks, cache).value();
  Tensor got2 = m.forward(b2, cache);
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto p = prompts[i];
    p.push_back(static_cast<int32_t>(i + 7));
    Tensor all = full_logits(m, p, 16);
    EXPECT_LT(max_rel_err(got2.data<float>() + i * V, all.data<float>() + (p.size() - 1) * V, V),
              1e-4)
        << i;
  }
}

TEST(Step3Model, PrepareRejectsBadBatchesAndChangesNothing) {
  Step3Model m = tiny_model(1);
  KVCache cache = m.make_cache(32, 16);  // 2 blocks
  int64_t a = cache.create_sequence(), b = cache.create_sequence();
  EXPECT_EQ(m.prepare({{a, {1000}}}, cache).status().code(), Code::kInvalidArgument);  // vocab
  EXPECT_EQ(m.prepare({{a, {}}}, cache).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(m.prepare({{a, {1}}, {a, {2}}}, cache).status().code(), Code::kInvalidArgument);
  // 20 + 20 tokens need 4 blocks of 16; only 2 exist: refused, nothing allocated.
  std::vector<int32_t> twenty(20, 3);
  auto r = m.prepare({{a, twenty}, {b, twenty}}, cache);
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_EQ(cache.length(a), 0);
  EXPECT_EQ(cache.free_blocks(), 2);
  EXPECT_TRUE(m.prepare({{a, twenty}}, cache).ok());
  EXPECT_EQ(cache.free_blocks(), 0);
  cache.release(a);
  EXPECT_EQ(cache.free_blocks(), 2);
}

TEST(Step3Model, PresetWeightsEqualTheirBf16Checkpoint) {
  TempDir dir;
  ModelConfig cfg = ModelConfig::preset("step3-tiny").value();
  CheckpointInitOptions opt;
  opt.seed = 9;
  opt.shards = 3;
  ASSERT_TRUE(write_random_checkpoint(cfg, opt, dir / "ckpt").ok());
  auto loaded_cfg = ModelConfig::from_file(dir / "ckpt/config.json");
  ASSERT_TRUE(loaded_cfg.ok()) << loaded_cfg.status().to_string();
  Checkpoint ckpt = Checkpoint::open(dir / "ckpt").value();
  EXPECT_EQ(ckpt.files().size(), 3u);
  Step3Weights a = load_step3_weights(*loaded_cfg, ckpt).value();
  Step3Weights b = random_step3_weights(cfg, 9);
  ASSERT_EQ(a.embed.nbytes(), b.embed.nbytes());
  EXPECT_EQ(0, std::memcmp(a.embed.raw(), b.embed.raw(), a.embed.nbytes()));
  EXPECT_EQ(0, std::memcmp(a.lm_head.raw(), b.lm_head.raw(), a.lm_head.nbytes()));
  const auto& la = a.layers[1], &lb = b.layers[1];
  ASSERT_TRUE(la.moe);
  EXPECT_EQ(0, std::memcmp(la.moe_down.raw(), lb.moe_down.raw(), la.moe_down.nbytes()));
  EXPECT_EQ(0, std::memcmp(la.wq.raw(), lb.wq.raw(), la.wq.nbytes()));
}

TEST(Step3Model, Fp8CheckpointIsCloseToTheBf16ItWasQuantizedFrom) {
  TempDir dir;
  ModelConfig cfg = ModelConfig::preset("step3-tiny").value();
  CheckpointInitOptions opt;
  opt.seed = 4;
  opt.dtype = "bf16";
  ASSERT_TRUE(write_random_checkpoint(cfg, opt, dir / "bf16").ok());
  opt.dtype = "fp8";
  opt.shards = 2;
  ASSERT_TRUE(write_random_checkpoint(cfg, opt, dir / "fp8").ok());

  auto load = [&](const std::string& d) {
    ModelConfig c = ModelConfig::from_file(d + "/config.json").value();
    Checkpoint ck = Checkpoint::open(d).value();
    Step3Weights w = load_step3_weights(c, ck).value();
    return Step3Model(c, std::move(w));
  };
  Step3Model mb = load(dir / "bf16"), mf = load(dir / "fp8");
  ASSERT_TRUE(mf.config().quant.has_value());
  ASSERT_FALSE(mb.config().quant.has_value());
  std::vector<int32_t> tokens = random_tokens(12, 1000, 8);
  Tensor lb = full_logits(mb, tokens, 16), lf = full_logits(mf, tokens, 16);
  // e4m3 keeps 3 mantissa bits: each weight moves by <= 1/16 of itself (about 2% rms), so
  // the logits move by a few percent, far from the O(1) change an unrelated model gives.
  double num = 0, den = 0, dot = 0, nf = 0;
  for (int64_t i = 0; i < lb.numel(); ++i) {
    double a = lb.data<float>()[i], b = lf.data<float>()[i];
    num += (a - b) * (a - b), den += a * a, dot += a * b, nf += b * b;
  }
  double rel = std::sqrt(num / den), cos = dot / std::sqrt(den * nf);
  EXPECT_GT(rel, 1e-4) << "the FP8 checkpoint was not quantized";
  EXPECT_LT(rel, 0.1);
  EXPECT_GT(cos, 0.995);
}

}  // namespace
}  // namespace afd
