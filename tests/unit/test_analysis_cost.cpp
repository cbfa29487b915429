// The decoding cost model (src/analysis/cost.h) against hand-computed cost-model.md §3 formulas,
// the Step-3 worked example of §6, and its invariants.
#include <gtest/gtest.h>

#include <cmath>

#include "analysis/cost.h"
#include "analysis/hardware.h"
#include "analysis/model_shape.h"

namespace afd::analysis {
namespace {

ModelShape preset(const std::string& name) { return model_preset(name).value(); }
Hardware hw(const std::string& name) { return hardware_preset(name).value(); }

// Rounds to `digits` significant digits, as the paper and §6 print.
double sig(double x, int digits) {
  const double p = std::pow(10.0, digits - 1 - std::floor(std::log10(std::fabs(x))));
  return std::round(x * p) / p;
}

TEST(CostStep3, WorkedExampleAt8K) {
  // cost-model.md §6, to its printed precision and exactly.
  const TokenCost c = token_cost(preset("step3"), 8192);
  EXPECT_EQ(sig(c.kv_bytes, 3), 2.56e8);
  EXPECT_EQ(sig(c.attention_flops, 3), 3.27e10);
  EXPECT_EQ(sig(c.linear_flops, 3), 2.07e10);
  EXPECT_EQ(sig(c.ffn_flops, 3), 5.33e10);
  EXPECT_EQ(c.arithmetic_intensity(), 128.0);
  EXPECT_EQ(c.kv_bytes, 61.0 * 8192 * (256 + 256) * 1);
  EXPECT_EQ(c.attention_flops, 61.0 * 4 * 64 * 256 * 8192);
  EXPECT_EQ(c.linear_flops,
            61.0 * 2 * (7168.0 * 2048 + 2048.0 * 16384 + 2 * 7168.0 * 256 + 16384.0 * 7168));
  EXPECT_EQ(c.ffn_flops, 2.0 * 3 * 7168 * (5 * 18432.0 + 56 * (3 * 5120.0 + 5120)));
  // step3.md: 31,232 KV bytes per token over 61 layers in FP8.
  EXPECT_EQ(token_cost(preset("step3"), 1).kv_bytes, 31232.0);
}

TEST(CostFormulas, MlaDeepSeekV3) {
  const int64_t T = 12345;  // odd, beyond the paper's contexts
  const TokenCost c = token_cost(preset("deepseek-v3"), T);
  EXPECT_EQ(c.kv_bytes, 61.0 * (512 + 64) * 1 * T);
  EXPECT_EQ(c.attention_flops, 61.0 * 4 * 128 * (512 + 64) * T);  // §4.3: latent width twice
  // §4.4: un-absorbed weights: q_a, q_b, kv_a (latent + rope), kv_b, o.
  const double w = 7168.0 * 1536 + 1536.0 * 128 * (128 + 64) + 7168.0 * (512 + 64) +
                   512.0 * 128 * (128 + 128) + 128.0 * 128 * 7168;
  EXPECT_EQ(c.linear_flops, 61 * 2 * w);
  EXPECT_EQ(c.ffn_flops, 6.0 * 7168 * (3 * 18432.0 + 58 * (8 * 2048.0 + 2048)));
  EXPECT_EQ(c.arithmetic_intensity(), 512.0);
  EXPECT_EQ(token_cost(preset("kimi-k2"), T).arithmetic_intensity(), 256.0);
  EXPECT_EQ(token_cost(preset("kimi-k2"), T).ffn_flops,
            6.0 * 7168 * (1 * 18432.0 + 60 * (8 * 2048.0 + 2048)));
}

TEST(CostFormulas, GqaQwenErniePangu) {
  const int64_t T = 5000;
  const TokenCost q = token_cost(preset("qwen3-235b-a22b"), T);
  EXPECT_EQ(q.kv_bytes, 94.0 * 2 * 4 * 128 * 1 * T);
  EXPECT_EQ(q.attention_flops, 94.0 * 4 * 64 * 128 * T);
  EXPECT_EQ(q.linear_flops, 94.0 * 2 * (4096.0 * (64 + 2 * 4) * 128 + 64.0 * 128 * 4096));
  EXPECT_EQ(q.ffn_flops, 94.0 * 6 * 4096 * (8 * 1536));  // intermediate_size 12288 unused
  const TokenCost d = token_cost(preset("qwen3-32b"), T);
  EXPECT_EQ(d.ffn_flops, 64.0 * 6 * 5120 * 25600);
  EXPECT_EQ(d.arithmetic_intensity(), 16.0);
  const TokenCost e = token_cost(preset("ernie4.5-300b-a47b"), T);
  EXPECT_EQ(e.ffn_flops, 6.0 * 8192 * (3 * 28672.0 + 51 * 8 * 3584.0));
  const TokenCost p = token_cost(preset("pangu-pro-moe"), T);
  EXPECT_EQ(p.ffn_flops, 48 * 6.0 * 5120 * (8 * 1344.0 + 5376));
  EXPECT_EQ(p.kv_bytes, 48.0 * 2 * 8 * 128 * T);
}

TEST(CostFormulas, Llama4ChunkedAndGlobalLayers) {
  const ModelShape m = preset("llama4-maverick");
  int chunked = 0, global = 0, moe = 0;
  for (const auto& l : m.layers) {
    (l.attention.window == 8192 ? chunked : global)++;
    moe += l.ffn.moe;
  }
  EXPECT_EQ(chunked, 36);
  EXPECT_EQ(global, 12);
  EXPECT_EQ(moe, 24);
  EXPECT_EQ(m.layers[3].attention.window, 0);  // NoPE layers 3, 7, ..., 47 are global
  EXPECT_EQ(m.layers[3].attention.cache_bytes, 2);
  EXPECT_TRUE(m.layers[1].ffn.moe);
  EXPECT_FALSE(m.layers[0].ffn.moe);
  for (int64_t T : {4096, 8192, 32768, 131072}) {
    const TokenCost c = token_cost(m, T);
    const double tc = static_cast<double>(std::min<int64_t>(T, 8192));
    EXPECT_EQ(c.kv_bytes, 36 * 2.0 * 8 * 128 * 1 * tc + 12 * 2.0 * 8 * 128 * 2 * T) << T;
    EXPECT_EQ(c.attention_flops, 36 * 4.0 * 40 * 128 * tc + 12 * 4.0 * 40 * 128 * T) << T;
  }
  EXPECT_EQ(token_cost(m, 100).ffn_flops, 6.0 * 5120 * (24 * 16384.0 + 24 * (1 * 8192.0 + 8192)));
}

TEST(CostFormulas, MiniMaxLightningAndSoftmaxLayers) {
  const ModelShape m = preset("minimax-m1");
  int lightning = 0;
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const bool lin = m.layers[i].attention.kind == AttentionKind::kLightning;
    lightning += lin;
    EXPECT_EQ(lin, (i + 1) % 8 != 0) << i;  // softmax layers at 7, 15, ..., 79
  }
  EXPECT_EQ(lightning, 70);
  const int64_t T = 20000;
  const TokenCost c = token_cost(m, T);
  const double state = 64.0 * 128 * 128;
  EXPECT_EQ(c.kv_bytes, 70 * state * 4 * 2 + 10 * 2.0 * 8 * 128 * 2 * T);  // §4.8: twice
  EXPECT_EQ(c.resident_cache_bytes, 70 * state * 4 + 10 * 2.0 * 8 * 128 * 2 * T);
  EXPECT_EQ(c.attention_flops, 70 * 10 * state + 10 * 4.0 * 64 * 128 * T);
  const double lin_w = 6144.0 * 3 * 8192 + 6144.0 * 8192 + 8192.0 * 6144;
  const double gqa_w = 6144.0 * (64 + 16) * 128 + 8192.0 * 6144;
  EXPECT_EQ(c.linear_flops, 2 * (70 * lin_w + 10 * gqa_w));
  EXPECT_EQ(c.ffn_flops, 80 * 6.0 * 6144 * (2 * 9216.0));
}

TEST(CostFormulas, UsdPerMillionTokens) {
  const TokenCost c = token_cost(preset("step3"), 8192);
  for (const auto& name : hardware_preset_names()) {
    const Hardware h = hw(name);
    const double peak = name == "a800" || name == "910b" ? h.bf16_flops : *h.fp8_flops;
    const double uf = h.price_per_hour / 3600 / peak,
                 ub = h.price_per_hour / 3600 / h.memory_bandwidth;
    const UsdCost u = usd_per_million_tokens(c, h);
    EXPECT_DOUBLE_EQ(u.attention, 1e6 * (std::max(c.attention_flops * uf, c.kv_bytes * ub) +
                                         c.linear_flops * uf))
        << name;
    EXPECT_DOUBLE_EQ(u.ffn, 1e6 * c.ffn_flops * uf) << name;
    EXPECT_DOUBLE_EQ(u.total, u.attention + u.ffn) << name;
  }
  // Step-3 attention at 8K is memory-bound on H800: the KV term wins the max.
  const Hardware h = hw("h800");
  EXPECT_NEAR(usd_per_million_tokens(c, h).attention,
              1e6 * (c.kv_bytes * 2 / 3600 / 3.35e12 + c.linear_flops * 2 / 3600 / 1.98e15), 1e-15);
}

TEST(CostFormulas, SparsityBatchesAndMinSparsity) {
  EXPECT_DOUBLE_EQ(preset("step3").sparsity(), 4.0 / 49);
  EXPECT_DOUBLE_EQ(preset("deepseek-v3").sparsity(), 9.0 / 257);  // §3.3's (256+1)S - 1 = 8
  EXPECT_DOUBLE_EQ(preset("kimi-k2").sparsity(), 9.0 / 385);
  EXPECT_DOUBLE_EQ(preset("qwen3-235b-a22b").sparsity(), 8.0 / 128);
  EXPECT_DOUBLE_EQ(preset("qwen3-32b").sparsity(), 1.0);
  EXPECT_DOUBLE_EQ(preset("llama4-maverick").sparsity(), 2.0 / 129);
  EXPECT_DOUBLE_EQ(preset("minimax-m1").sparsity(), 2.0 / 32);
  EXPECT_DOUBLE_EQ(preset("ernie4.5-300b-a47b").sparsity(), 8.0 / 64);
  EXPECT_DOUBLE_EQ(preset("pangu-pro-moe").sparsity(), 12.0 / 68);  // 4 shared units
  EXPECT_DOUBLE_EQ(b_dense(hw("h800")), 1.98e15 / 3.35e12 / 2);
  EXPECT_DOUBLE_EQ(b_dense(hw("a800")), 3.12e14 / 2e12 / 2);  // BF16 pricing peak
  EXPECT_DOUBLE_EQ(hw("h800").network_bandwidth, 400e9);
  EXPECT_DOUBLE_EQ(hw("910b").network_bandwidth, 200e9);
  EXPECT_DOUBLE_EQ(min_sparsity(hw("h800"), 7168, 61),
                   7168 * 1.98e15 * 61 / (400e9 * 3.35e12 * 11.1e-3));
  EXPECT_DOUBLE_EQ(min_sparsity(hw("910b"), 7168, 61),
                   7168 * 2.80e14 * 61 / (200e9 * 1.60e12 * 11.1e-3));
  // To the 3 decimals of the paper's tables.
  EXPECT_EQ(std::round(min_sparsity(hw("h800"), 7168, 61) * 1000), 58);
  EXPECT_EQ(std::round(min_sparsity(hw("h20"), 7168, 61) * 1000), 7);
  EXPECT_EQ(std::round(min_sparsity(hw("a800"), 7168, 61) * 1000), 31);
  EXPECT_EQ(std::round(min_sparsity(hw("910b"), 7168, 61) * 1000), 34);
}

TEST(CostInvariants, CostGrowsWithContext) {
  for (const auto& m : model_preset_names())
    for (const auto& h : hardware_preset_names()) {
      double prev = 0;
      for (int64_t T : {1024, 4096, 8192, 8193, 16384, 65536, 131072, 1 << 20}) {
        const double u = usd_per_million_tokens(token_cost(preset(m), T), hw(h)).total;
        EXPECT_GT(u, prev) << m << " on " << h << " at " << T;
        prev = u;
      }
    }
}

TEST(CostInvariants, PureAttentionIntensityIndependentOfContext) {
  for (const auto& m : {"step3", "deepseek-v3", "kimi-k2", "qwen3-235b-a22b", "qwen3-32b",
                        "ernie4.5-300b-a47b", "pangu-pro-moe"}) {
    const double ai = token_cost(preset(m), 1).arithmetic_intensity();
    for (int64_t T : {7, 4096, 8192, 100000, 1 << 22})
      EXPECT_DOUBLE_EQ(token_cost(preset(m), T).arithmetic_intensity(), ai) << m << " " << T;
  }
  // Hybrids are not: Llama 4's chunked layers stop growing at 8K, MiniMax's state never grows.
  EXPECT_NE(token_cost(preset("llama4-maverick"), 4096).arithmetic_intensity(),
            token_cost(preset("llama4-maverick"), 65536).arithmetic_intensity());
  EXPECT_NE(token_cost(preset("minimax-m1"), 4096).arithmetic_intensity(),
            token_cost(preset("minimax-m1"), 65536).arithmetic_intensity());
}

TEST(AnalysisPresets, NamesAndShapes) {
  EXPECT_EQ(model_preset_names().size(), 9u);
  EXPECT_EQ(hardware_preset_names(),
            (std::vector<std::string>{"h800", "h20", "a800", "910b", "h100", "h200"}));
  const std::vector<std::pair<std::string, int>> layers = {
      {"step3", 61},           {"deepseek-v3", 61},        {"kimi-k2", 61},
      {"qwen3-235b-a22b", 94}, {"qwen3-32b", 64},          {"llama4-maverick", 48},
      {"minimax-m1", 80},      {"ernie4.5-300b-a47b", 54}, {"pangu-pro-moe", 48}};
  for (const auto& [n, l] : layers) EXPECT_EQ(preset(n).num_layers(), l) << n;
  // §2's pricing peak: FP8 where the card has it, BF16 on A800 and 910B.
  EXPECT_EQ(hw("h20").pricing_peak(), 2.96e14);
  EXPECT_EQ(hw("910b").pricing_peak(), 2.80e14);
  EXPECT_FALSE(hw("a800").fp8_flops.has_value());
  EXPECT_EQ(hw("h200").memory_bandwidth, 4.8e12);
}

TEST(AnalysisErrors, UnknownNamesAreNamed) {
  auto m = load_model_shape("gpt-17");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("gpt-17"), std::string::npos);
  EXPECT_NE(m.status().message().find("step3"), std::string::npos);  // lists the presets
  auto h = load_hardware("b200");
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.status().message().find("b200"), std::string::npos);
  EXPECT_NE(h.status().message().find("h800"), std::string::npos);
}

TEST(AnalysisErrors, HardwareJson) {
  auto bad = [](const std::string& text, const std::string& needle) {
    auto r = hardware_from_json(text, "my.json");
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("my.json"), std::string::npos);
  };
  const std::string ok_body =
      R"("price_per_hour": 1, "bf16_flops": 1e15, "memory_bandwidth": 2e12,
         "network_bandwidth": 1e11)";
  bad("{\"name\": \"x\",", "not valid JSON");
  bad("[1, 2]", "object");
  bad("{\"name\": \"x\", " + ok_body + "}", "fp8_flops");  // must be present, null if none
  bad("{\"fp8_flops\": null, " + ok_body + "}", "\"name\"");
  bad(R"({"name": "x", "fp8_flops": null, "price_per_hour": 1, "bf16_flops": 1e15,
          "network_bandwidth": 1e11})",
      "memory_bandwidth");
  bad("{\"name\": \"x\", \"fp8_flops\": null, \"memory_bw\": 1, " + ok_body + "}", "memory_bw");
  bad("{\"name\": \"x\", \"fp8_flops\": \"fast\", " + ok_body + "}", "fp8_flops");
  bad(R"({"name": "x", "fp8_flops": null, "price_per_hour": -1, "bf16_flops": 1e15,
          "memory_bandwidth": 2e12, "network_bandwidth": 1e11})",
      "price_per_hour");
  bad("{\"name\": \"\", \"fp8_flops\": null, " + ok_body + "}", "name");
  auto good = hardware_from_json("{\"name\": \"l20\", \"fp8_flops\": null, " + ok_body + "}", "x");
  ASSERT_TRUE(good.ok()) << good.status().message();
  EXPECT_EQ(good->pricing_peak(), 1e15);
}

}  // namespace
}  // namespace afd::analysis
