// afd plan: size an AFD unit (attention GPUs + FFN GPUs) for a model under a TPOT SLA
// (src/analysis/planner.h has the formulas, docs/analysis.md their reasons).
#include <fmt/ranges.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "analysis/hardware.h"
#include "analysis/model_shape.h"
#include "analysis/planner.h"
#include "analysis/report.h"
#include "tools/afd/commands.h"

namespace afd::cli {

namespace {

using namespace afd::analysis;

struct PlanArgs {
  std::string model;
  std::string attention_hw;
  std::string ffn_hw;
  std::string context = "8192";
  double tpot_ms = 50;
  int64_t stages = 3;
  double efficiency = 1.0;
  std::optional<double> attention_efficiency;
  std::optional<double> ffn_efficiency;
  double attention_memory_gb = 0;
  double ffn_memory_gb = 0;
  bool json = false;
};

int run(const PlanArgs& a) {
  PlanOptions o;
  o.context = parse_token_count(a.context, "--context").value();
  o.tpot_ms = a.tpot_ms;
  o.stages = a.stages;
  o.attention_efficiency = a.attention_efficiency.value_or(a.efficiency);
  o.ffn_efficiency = a.ffn_efficiency.value_or(a.efficiency);
  o.attention_memory_bytes = a.attention_memory_gb * 1e9;
  o.ffn_memory_bytes = a.ffn_memory_gb * 1e9;
  const ModelShape model = load_model_shape(a.model).value();
  const Hardware ahw = load_hardware(a.attention_hw).value();
  const Hardware fhw = load_hardware(a.ffn_hw).value();
  const Plan p = plan_afd(model, ahw, fhw, o).value();
  if (a.json)
    std::printf("%s\n", plan_json(model.name, ahw, fhw, p).dump().c_str());
  else
    std::printf("%s", plan_text(model.name, ahw, fhw, p).c_str());
  return 0;
}

}  // namespace

Command register_plan(CLI::App& app) {
  auto a = std::make_shared<PlanArgs>();
  CLI::App* c = app.add_subcommand(
      "plan",
      "Size one AFD unit for a model under a TPOT SLA (docs/analysis.md). Per layer the budget "
      "is tpot / stages / L. The attention batch per GPU B_attn is the largest B with\n"
      "  max((B x KV + W_attn) / (BW x E_attn), B x F_attn / (peak x E_attn)) <= budget\n"
      "(KV: KV/state bytes per token per layer at the context; W_attn: attention weight bytes "
      "per layer at 1 byte per parameter; F_attn: core + linear FLOPs per token per layer; "
      "layer averages; peak: the pricing peak, FP8 where the card has it). The FFN batch for "
      "full MFU is B_MoE = B_dense / S with B_dense = peak / BW / 2 (cost-model.md §3.3). "
      "Attention GPUs N_a = ceil(B_MoE / B_attn), fewer if the network (3 x H bytes per token "
      "per layer over one FFN server's network_bandwidth) cannot carry N_a x B_attn tokens in "
      "the budget. FFN GPUs N_f = ceil(max(N_a x B_attn x F_ffn / (peak x E_ffn), W_ffn / (BW x "
      "E_ffn)) / budget) (and enough memory for all expert weights with --ffn-memory-gb). "
      "Predicted tokens/s/GPU = N_a x B_attn x stages / tpot / (N_a + N_f).");
  const std::string models = fmt::format("{}", fmt::join(model_preset_names(), ", "));
  const std::string hws = fmt::format("{}", fmt::join(hardware_preset_names(), ", "));
  c->add_option("--model", a->model,
                "A preset (" + models + ") or the path of a supported HF config.json")
      ->required();
  const std::string hw_help =
      "A preset (" + hws + ") or the path of a hardware JSON file (see afd cost --help)";
  c->add_option("--attention-hw", a->attention_hw, "Attention hardware: " + hw_help)->required();
  c->add_option("--ffn-hw", a->ffn_hw, "FFN hardware: " + hw_help)->required();
  c->add_option("--context", a->context, "Tokens each decoding token attends; 8192, 4K, 128K ...")
      ->capture_default_str();
  c->add_option("--tpot-ms", a->tpot_ms, "Time per output token SLA, in milliseconds")
      ->check(CLI::Range(1e-3, 1e6))
      ->capture_default_str();
  c->add_option("--stages", a->stages,
                "Micro-batches in flight (attention, network, FFN overlap): each gets tpot / "
                "stages per step")
      ->check(CLI::Range(int64_t{1}, int64_t{64}))
      ->capture_default_str();
  c->add_option("--efficiency", a->efficiency,
                "Fraction of peak FLOP/s and HBM bandwidth the kernels reach, in (0, 1]; a "
                "measured kernel efficiency replaces the ideal 1.0")
      ->check(CLI::Range(1e-6, 1.0))
      ->capture_default_str();
  c->add_option("--attention-efficiency", a->attention_efficiency,
                "Efficiency of the attention GPUs, overriding --efficiency")
      ->check(CLI::Range(1e-6, 1.0));
  c->add_option("--ffn-efficiency", a->ffn_efficiency,
                "Efficiency of the FFN GPUs, overriding --efficiency")
      ->check(CLI::Range(1e-6, 1.0));
  c->add_option("--attention-memory-gb", a->attention_memory_gb,
                "Memory per attention GPU in GB (1e9 B): also require stages x B_attn caches + "
                "all attention weights to fit (0: not checked; the hardware spec has no memory "
                "size)")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  c->add_option("--ffn-memory-gb", a->ffn_memory_gb,
                "Memory per FFN GPU in GB: also require N_f x memory >= all FFN weights (0: not "
                "checked)")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  c->add_flag("--json", a->json,
              "One JSON object: per_layer_budget_us, attention_batch_per_gpu, "
              "ffn_batch_for_full_mfu, ffn_tokens_per_micro_batch, network_ok, attention_gpus, "
              "ffn_gpus, tokens_per_s_per_gpu, binding_constraint, and the details under "
              "attention, ffn and network (docs/analysis.md)");
  return {c, [a] { return run(*a); }};
}

}  // namespace afd::cli
