// The AFD planner: sizes one AFD unit (attention GPUs + FFN GPUs) of a model on chosen
// attention and FFN hardware, under a TPOT SLA with `stages` micro-batches in flight (the paper's
// §5 pipeline: attention, communication and FFN of different micro-batches overlap, so each gets
// tpot / stages per step, i.e. tpot / stages / L per layer).
//
// All weights are 8-bit (1 byte per parameter), as in the paper. The formulas (docs/analysis.md
// has them with their reasons), per layer, for a batch B per attention GPU:
//   attention time(B) = max((B x KV + W_attn) / (BW_a x E_a), B x F_attn / (peak_a x E_a))
//   with KV = KV bytes per token per layer, W_attn = attention weight bytes per layer, F_attn =
//   attention core + linear FLOPs per token per layer (layer averages: the sums over layers / L).
//   B_attn = the largest integer B with time(B) <= budget (and, with an attention memory size,
//   stages x B x cache bytes per sequence + all attention weights <= memory).
//   FFN batch for full MFU = B_MoE = B_dense / S (cost-model.md §3.3), tokens per micro-batch
//   entering the FFN side.
//   attention GPUs N_a = ceil(B_MoE / B_attn), unless the network caps the tokens (below).
//   network: 3 x H x (N_a x B_attn) / Net_ffn <= budget (§3.3, one FFN server's NICs).
//   FFN GPUs N_f = the fewest whose FLOPs and weight streaming fit the budget:
//   N_f = ceil(max(N_a x B_attn x F_ffn / (peak_f x E_f), W_ffn / (BW_f x E_f)) / budget),
//   and, with an FFN memory size, N_f >= all FFN weights / memory.
//   tokens/s/GPU = N_a x B_attn x stages / tpot / (N_a + N_f).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "analysis/cost.h"
#include "analysis/hardware.h"
#include "analysis/model_shape.h"

namespace afd::analysis {

struct PlanOptions {
  int64_t context = 8192;
  double tpot_ms = 50;
  int64_t stages = 3;
  double attention_efficiency = 1.0;  // achieved fraction of peak FLOP/s and HBM bandwidth
  double ffn_efficiency = 1.0;
  double attention_memory_bytes = 0;  // per attention GPU; 0: not checked
  double ffn_memory_bytes = 0;        // per FFN GPU; 0: not checked
};

struct AttentionPlan {
  double kv_bytes_per_token = 0;          // per layer (average over layers), at the context
  double weight_bytes = 0;                // per layer, 1 byte per parameter
  double flops_per_token = 0;             // per layer: core + linear
  int64_t bandwidth_batch = 0;            // largest B the memory-bandwidth term allows
  int64_t compute_batch = 0;              // largest B the FLOP term allows
  std::optional<int64_t> capacity_batch;  // largest B the memory size allows (when given)
  int64_t batch = 0;                      // B_attn: the smallest of the above
  std::string bound;                      // "memory_bandwidth", "compute" or "memory_capacity"
  double time_us = 0;                     // per layer at B_attn
  double resident_bytes = 0;              // per GPU: stages x B_attn x cache + attention weights
};

struct FfnPlan {
  double sparsity = 1;
  double b_dense = 0;
  double b_moe = 0;                        // the FFN batch for full MFU, tokens per micro-batch
  int64_t tokens = 0;                      // tokens per micro-batch the unit feeds the FFN side
  double flops_per_token = 0;              // per layer (average), activated experts
  double weight_bytes = 0;                 // per layer (average), all experts, 1 byte per parameter
  double total_weight_bytes = 0;           // all layers
  int64_t gpus_for_time = 0;               // FFN GPUs so that FLOPs and weight streaming fit
  std::optional<int64_t> gpus_for_memory;  // FFN GPUs so that all weights fit (when given)
  double time_us = 0;                      // per layer with the chosen FFN GPUs
  std::string bound;                       // "compute" or "memory_bandwidth" on the FFN GPUs
  double mfu = 0;                          // FLOP time / layer time on the FFN GPUs
};

struct NetworkPlan {
  double bytes_per_layer = 0;  // 3 x H x tokens (FP8 dispatch + BF16 combine)
  double time_us = 0;          // over one FFN server's network bandwidth
  int64_t max_tokens = 0;      // tokens per micro-batch the network allows
  bool ok = true;              // the B_MoE batch fits (the FFN can reach full MFU)
};

struct Plan {
  PlanOptions options;
  int64_t layers = 0;
  double budget_us = 0;  // tpot / stages / L
  AttentionPlan attention;
  FfnPlan ffn;
  NetworkPlan network;
  int64_t attention_gpus = 0;
  int64_t ffn_gpus = 0;
  double tokens_per_s_per_gpu = 0;
  // What limits tokens/s/GPU: "attention_memory_bandwidth", "attention_compute",
  // "attention_memory_capacity" (the attention batch), or "network" (caps the FFN batch below
  // full MFU).
  std::string binding_constraint;
};

// Errors (InvalidArgument) for options out of range and for an infeasible plan (the attention
// weights alone, or one token, do not fit the per-layer budget), naming the numbers.
Result<Plan> plan_afd(const ModelShape& model, const Hardware& attention_hw, const Hardware& ffn_hw,
                      const PlanOptions& options);

}  // namespace afd::analysis
