// The AFD planner (src/analysis/planner.h) against its formulas computed here by hand, the
// paper's Hopper design point as a sanity check, and its invariants.
#include <gtest/gtest.h>

#include <cmath>

#include "analysis/planner.h"

namespace afd::analysis {
namespace {

ModelShape preset(const std::string& name) { return model_preset(name).value(); }
Hardware hw(const std::string& name) { return hardware_preset(name).value(); }

Plan plan(const std::string& model, const std::string& a, const std::string& f,
          const PlanOptions& o) {
  auto p = plan_afd(preset(model), hw(a), hw(f), o);
  EXPECT_TRUE(p.ok()) << p.status().message();
  return p.value();
}

PlanOptions at(int64_t context, double efficiency = 1.0) {
  PlanOptions o;
  o.context = context;
  o.attention_efficiency = o.ffn_efficiency = efficiency;
  return o;
}

// Step-3 per layer, from step3.md: 169,345,024 attention weights, 512 KV bytes per token.
constexpr double kStep3AttnWeights =
    7168.0 * 2048 + 2048.0 * 16384 + 2 * 7168.0 * 256 + 16384.0 * 7168;
constexpr double kBudget = 50e-3 / 3 / 61;

TEST(PlanStep3, HopperAt4KFollowsTheFormulas) {
  const Plan p = plan("step3", "h800", "h800", at(4096));
  EXPECT_EQ(kStep3AttnWeights, 169345024.0);
  EXPECT_DOUBLE_EQ(p.budget_us, 1e6 * kBudget);
  EXPECT_NEAR(p.budget_us, 273.2, 0.05);  // step3.md §3: "about 272 us"
  const double kv = 512.0 * 4096, flops = 4.0 * 64 * 256 * 4096 + 2 * kStep3AttnWeights;
  EXPECT_DOUBLE_EQ(p.attention.kv_bytes_per_token, kv);
  EXPECT_DOUBLE_EQ(p.attention.weight_bytes, kStep3AttnWeights);
  EXPECT_DOUBLE_EQ(p.attention.flops_per_token, flops);
  const int64_t bw_batch =
      static_cast<int64_t>(std::floor((kBudget * 3.35e12 - kStep3AttnWeights) / kv));
  const int64_t fl_batch = static_cast<int64_t>(std::floor(kBudget * 1.98e15 / flops));
  EXPECT_EQ(p.attention.bandwidth_batch, bw_batch);
  EXPECT_EQ(p.attention.compute_batch, fl_batch);
  EXPECT_EQ(bw_batch, 355);
  EXPECT_EQ(fl_batch, 891);
  EXPECT_EQ(p.attention.batch, 355);
  EXPECT_EQ(p.attention.bound, "memory_bandwidth");
  EXPECT_LE(p.attention.time_us, p.budget_us);
  // FFN batch for full MFU: B_dense / S with S = 4 / 49.
  EXPECT_DOUBLE_EQ(p.ffn.b_moe, 1.98e15 / 3.35e12 / 2 * 49 / 4);
  EXPECT_TRUE(p.network.ok);
  const int64_t na = static_cast<int64_t>(std::ceil(p.ffn.b_moe / 355));
  EXPECT_EQ(p.attention_gpus, na);
  EXPECT_EQ(na, 11);
  EXPECT_EQ(p.ffn.tokens, na * 355);
  const double ffn_flops = 2.0 * 3 * 7168 * (5 * 18432.0 + 56 * 20480.0) / 61;
  const double ffn_weights = 3.0 * 7168 * (5 * 18432.0 + 56 * 49 * 5120.0) / 61;
  const double need = std::max(p.ffn.tokens * ffn_flops / 1.98e15, ffn_weights / 3.35e12);
  EXPECT_EQ(p.ffn_gpus, static_cast<int64_t>(std::ceil(need / kBudget)));
  EXPECT_EQ(p.ffn_gpus, 7);
  EXPECT_EQ(p.ffn.bound, "compute");
  EXPECT_DOUBLE_EQ(p.tokens_per_s_per_gpu, 11.0 * 355 * 3 / 0.05 / 18);
  EXPECT_EQ(p.binding_constraint, "attention_memory_bandwidth");
  EXPECT_DOUBLE_EQ(p.network.bytes_per_layer, 3.0 * 7168 * 11 * 355);
}

TEST(PlanStep3, PaperDesignPointIsInRange) {
  // step3.md §3: the paper ran 128 tokens per attention GPU per micro-batch at 4K on Hopper.
  // The ideal bound (E = 1) must allow at least that; the efficiency at which the bandwidth
  // bound gives exactly 128, (128 x KV + W) / (budget x BW), is about 0.48, a plausible
  // end-to-end fraction of peak bandwidth for a real attention layer.
  EXPECT_GE(plan("step3", "h800", "h800", at(4096)).attention.batch, 128);
  const double e128 = (128 * 512.0 * 4096 + kStep3AttnWeights) / (kBudget * 3.35e12);
  EXPECT_NEAR(e128, 0.478, 0.001);
  EXPECT_EQ(plan("step3", "h800", "h800", at(4096, 0.48)).attention.batch, 128);
  // Its memory: 3 micro-batches x 128 sequences x 4K x 31,232 B + 61 layers of weights fits an
  // 80 GB card; the capacity bound at 80 GB is above 128 too.
  PlanOptions o = at(4096);
  o.attention_memory_bytes = 80e9;
  const Plan p = plan("step3", "h800", "h800", o);
  ASSERT_TRUE(p.attention.capacity_batch.has_value());
  EXPECT_EQ(*p.attention.capacity_batch,
            static_cast<int64_t>((80e9 - 61 * kStep3AttnWeights) / (3 * 31232.0 * 4096)));
  EXPECT_EQ(*p.attention.capacity_batch, 181);
  EXPECT_EQ(p.attention.batch, 181);
  EXPECT_EQ(p.attention.bound, "memory_capacity");
  EXPECT_EQ(p.binding_constraint, "attention_memory_capacity");
  // At 8K the bandwidth bound halves its KV part, as the paper needed more attention GPUs.
  EXPECT_LT(plan("step3", "h800", "h800", at(8192)).attention.batch,
            plan("step3", "h800", "h800", at(4096)).attention.batch);
}

TEST(PlanInvariants, EfficiencyEqualsSlowerHardware) {
  // E scales bandwidth and peak alike: planning at E on a card equals planning at 1 on a card
  // with E x its bandwidth and peak.
  for (const auto& m : {"step3", "deepseek-v3", "qwen3-32b", "minimax-m1"}) {
    PlanOptions half = at(8192);
    half.attention_efficiency = 0.5;
    Hardware slow = hw("h20");
    slow.memory_bandwidth *= 0.5;
    slow.fp8_flops = *slow.fp8_flops * 0.5;
    const Plan a = plan_afd(preset(m), hw("h20"), hw("h800"), half).value();
    const Plan b = plan_afd(preset(m), slow, hw("h800"), at(8192)).value();
    EXPECT_EQ(a.attention.batch, b.attention.batch) << m;
    EXPECT_EQ(a.attention_gpus, b.attention_gpus) << m;
    EXPECT_EQ(a.ffn_gpus, b.ffn_gpus) << m;
  }
  // --ffn-efficiency leaves the attention side alone and needs at least as many FFN GPUs.
  PlanOptions o = at(4096);
  o.ffn_efficiency = 0.4;
  const Plan slow_ffn = plan("step3", "h800", "h800", o);
  const Plan ideal = plan("step3", "h800", "h800", at(4096));
  EXPECT_EQ(slow_ffn.attention.batch, ideal.attention.batch);
  EXPECT_GT(slow_ffn.ffn_gpus, ideal.ffn_gpus);
}

TEST(PlanInvariants, NetworkCheckMatchesMinSparsity) {
  // The planner's network check 3 H B_MoE / Net <= tpot / stages / L is §3.3's minimum
  // sparsity with the budget 2/3 x tpot / stages (the paper's 11.1 ms, unrounded).
  for (const auto& m : model_preset_names())
    for (const auto& h : hardware_preset_names()) {
      const ModelShape model = preset(m);
      const Plan p = plan_afd(model, hw("h800"), hw(h), at(8192)).value();
      const double smin =
          min_sparsity(hw(h), model.hidden_size, model.num_layers(), 2.0 / 3 * 50e-3 / 3);
      if (std::fabs(model.sparsity() / smin - 1) > 1e-9)
        EXPECT_EQ(p.network.ok, model.sparsity() >= smin) << m << " on " << h;
      EXPECT_LE(p.ffn.tokens, p.network.max_tokens) << m << " on " << h;
      EXPECT_LE(p.network.time_us, p.budget_us + 1e-9) << m << " on " << h;
    }
  // DeepSeek-V3 (S = 9/257) is below H800's minimum (0.058): the network binds.
  const Plan ds = plan("deepseek-v3", "h800", "h800", at(4096));
  EXPECT_FALSE(ds.network.ok);
  EXPECT_EQ(ds.binding_constraint, "network");
  EXPECT_LT(ds.ffn.tokens, ds.ffn.b_moe);
}

TEST(PlanInvariants, UnitsAndThroughputAreConsistent) {
  for (const auto& m : model_preset_names())
    for (int64_t T : {4096, 32768}) {
      PlanOptions o = at(T);
      o.ffn_memory_bytes = 80e9;
      const Plan p = plan(m, "h20", "h800", o);
      EXPECT_GE(p.attention.batch, 1) << m;
      EXPECT_LE(p.attention.time_us, p.budget_us * (1 + 1e-12)) << m;
      EXPECT_LE(p.ffn.time_us, p.budget_us * (1 + 1e-12)) << m;
      EXPECT_GE(p.ffn_gpus * 80e9, p.ffn.total_weight_bytes) << m;
      EXPECT_EQ(p.ffn.tokens, p.attention_gpus * p.attention.batch) << m;
      EXPECT_DOUBLE_EQ(p.tokens_per_s_per_gpu,
                       static_cast<double>(p.attention_gpus * p.attention.batch * 3) / 0.05 /
                           static_cast<double>(p.attention_gpus + p.ffn_gpus))
          << m;
      if (p.network.ok) EXPECT_GE(static_cast<double>(p.ffn.tokens), p.ffn.b_moe) << m;
    }
}

TEST(PlanErrors, InfeasibleAndOutOfRange) {
  PlanOptions o = at(4096);
  o.tpot_ms = 1;  // 5.5 us per layer: the weights alone take 50 us on H800
  auto r = plan_afd(preset("step3"), hw("h800"), hw("h800"), o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("infeasible"), std::string::npos);
  EXPECT_NE(r.status().message().find("h800"), std::string::npos);
  o = at(4096);
  o.attention_memory_bytes = 5e9;  // less than Step-3's 10.3 GB of attention weights
  r = plan_afd(preset("step3"), hw("h800"), hw("h800"), o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("memory_capacity"), std::string::npos);
  o = at(4096);
  o.attention_efficiency = 1.5;
  EXPECT_FALSE(plan_afd(preset("step3"), hw("h800"), hw("h800"), o).ok());
  o = at(0);
  EXPECT_FALSE(plan_afd(preset("step3"), hw("h800"), hw("h800"), o).ok());
  o = at(4096);
  o.stages = 0;
  EXPECT_FALSE(plan_afd(preset("step3"), hw("h800"), hw("h800"), o).ok());
}

}  // namespace
}  // namespace afd::analysis
