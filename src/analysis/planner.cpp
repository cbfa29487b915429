// The AFD planner (planner.h states the formulas; docs/analysis.md explains them).
#include "analysis/planner.h"

#include <algorithm>
#include <cmath>

namespace afd::analysis {

namespace {

// Bytes per parameter of every weight: the paper serves 8-bit weights (FP8, or INT8 on A800 and
// 910B), so a weight byte is a parameter and 2 FLOPs per token.
constexpr double kWeightBytesPerParam = 1;

int64_t floor_count(double x) { return x <= 0 ? 0 : static_cast<int64_t>(std::floor(x)); }
int64_t ceil_count(double x) { return x <= 0 ? 0 : static_cast<int64_t>(std::ceil(x)); }

Status check_options(const PlanOptions& o) {
  if (o.context < 1) return InvalidArgument("--context must be at least 1, got {}", o.context);
  if (!(o.tpot_ms > 0) || !std::isfinite(o.tpot_ms))
    return InvalidArgument("--tpot-ms must be positive, got {}", o.tpot_ms);
  if (o.stages < 1) return InvalidArgument("--stages must be at least 1, got {}", o.stages);
  if (!(o.attention_efficiency > 0 && o.attention_efficiency <= 1))
    return InvalidArgument("attention efficiency must be in (0, 1], got {}",
                           o.attention_efficiency);
  if (!(o.ffn_efficiency > 0 && o.ffn_efficiency <= 1))
    return InvalidArgument("FFN efficiency must be in (0, 1], got {}", o.ffn_efficiency);
  if (o.attention_memory_bytes < 0 || o.ffn_memory_bytes < 0)
    return InvalidArgument("memory sizes must not be negative");
  return Status::OK();
}

}  // namespace

Result<Plan> plan_afd(const ModelShape& model, const Hardware& ahw, const Hardware& fhw,
                      const PlanOptions& opt) {
  AFD_RETURN_IF_ERROR(check_options(opt));
  Plan p;
  p.options = opt;
  p.layers = model.num_layers();
  const double L = static_cast<double>(p.layers);
  const double budget = opt.tpot_ms * 1e-3 / static_cast<double>(opt.stages) / L;  // seconds
  p.budget_us = budget * 1e6;
  const TokenCost c = token_cost(model, opt.context);

  // ---- attention: the largest batch per GPU whose layer time fits the budget ----------------
  AttentionPlan& a = p.attention;
  const double ea = opt.attention_efficiency;
  // Layer averages: requiring the average to fit is requiring the sums over layers (bytes
  // moved, FLOPs) to fit tpot / stages, which is what a step of mixed layers must do.
  a.kv_bytes_per_token = c.kv_bytes / L;
  a.weight_bytes = c.linear_flops / 2 * kWeightBytesPerParam / L;
  a.flops_per_token = (c.attention_flops + c.linear_flops) / L;
  const double bw_a = ahw.memory_bandwidth * ea, peak_a = ahw.pricing_peak() * ea;
  if (a.weight_bytes / bw_a >= budget)
    return InvalidArgument(
        "infeasible: reading the attention weights of one layer ({:.3g} B) on {} takes {:.1f} us, "
        "over the per-layer budget of {:.1f} us (tpot {} ms / {} stages / {} layers)",
        a.weight_bytes, ahw.name, a.weight_bytes / bw_a * 1e6, p.budget_us, opt.tpot_ms, opt.stages,
        p.layers);
  a.bandwidth_batch = floor_count((budget * bw_a - a.weight_bytes) / a.kv_bytes_per_token);
  a.compute_batch = floor_count(budget * peak_a / a.flops_per_token);
  a.batch = std::min(a.bandwidth_batch, a.compute_batch);
  a.bound = a.bandwidth_batch <= a.compute_batch ? "memory_bandwidth" : "compute";
  const double all_attention_weights = a.weight_bytes * L;
  if (opt.attention_memory_bytes > 0) {
    // Every micro-batch in flight keeps its sequences' caches on the GPU.
    a.capacity_batch = floor_count((opt.attention_memory_bytes - all_attention_weights) /
                                   (static_cast<double>(opt.stages) * c.resident_cache_bytes));
    if (*a.capacity_batch < a.batch) {
      a.batch = *a.capacity_batch;
      a.bound = "memory_capacity";
    }
  }
  if (a.batch < 1)
    return InvalidArgument(
        "infeasible: not one sequence per attention GPU fits on {} ({} bound): a token's layer "
        "needs {:.3g} KV bytes and {:.3g} FLOPs within {:.1f} us per layer at context {}",
        ahw.name, a.bound, a.kv_bytes_per_token, a.flops_per_token, p.budget_us, opt.context);
  auto attention_time = [&](int64_t b) {
    const double B = static_cast<double>(b);
    return std::max((B * a.kv_bytes_per_token + a.weight_bytes) / bw_a,
                    B * a.flops_per_token / peak_a);
  };

  // ---- FFN batch for full MFU and the network cap -------------------------------------------
  FfnPlan& f = p.ffn;
  f.sparsity = model.sparsity();
  f.b_dense = b_dense(fhw);
  f.b_moe = f.b_dense / f.sparsity;
  const double H = static_cast<double>(model.hidden_size);
  NetworkPlan& n = p.network;
  // §3.3: 3 x H bytes per token and layer (FP8 out, BF16 back) through one server's NICs.
  n.max_tokens = floor_count(budget * fhw.network_bandwidth / (3 * H));
  n.ok = 3 * H * f.b_moe / fhw.network_bandwidth <= budget;
  if (n.max_tokens < 1)
    return InvalidArgument(
        "infeasible: the network of {} cannot move one token's activations "
        "({:.0f} B) within {:.1f} us",
        fhw.name, 3 * H, p.budget_us);

  int64_t na = std::max<int64_t>(1, ceil_count(f.b_moe / static_cast<double>(a.batch)));
  bool network_binds = false;
  if (na * a.batch > n.max_tokens) {
    network_binds = true;
    if (a.batch > n.max_tokens) a.batch = n.max_tokens;  // one GPU alone saturates the NICs
    na = std::max<int64_t>(1, n.max_tokens / a.batch);
  }
  p.attention_gpus = na;
  f.tokens = na * a.batch;
  a.time_us = attention_time(a.batch) * 1e6;
  a.resident_bytes =
      static_cast<double>(opt.stages) * static_cast<double>(a.batch) * c.resident_cache_bytes +
      all_attention_weights;
  n.bytes_per_layer = 3 * H * static_cast<double>(f.tokens);
  n.time_us = n.bytes_per_layer / fhw.network_bandwidth * 1e6;

  // ---- FFN GPUs: enough FLOP/s and bandwidth for the unit's tokens (and memory, if given) ----
  const double ef = opt.ffn_efficiency;
  f.flops_per_token = c.ffn_flops / L;
  double all_ffn_params = 0;
  for (const auto& l : model.layers)
    all_ffn_params += 3 * H * static_cast<double>(l.ffn.total_intermediate);
  f.total_weight_bytes = all_ffn_params * kWeightBytesPerParam;
  f.weight_bytes = f.total_weight_bytes / L;
  const double t_flops =
      static_cast<double>(f.tokens) * f.flops_per_token / (fhw.pricing_peak() * ef);  // on one GPU
  const double t_weights = f.weight_bytes / (fhw.memory_bandwidth * ef);              // on one GPU
  f.gpus_for_time = std::max<int64_t>(1, ceil_count(std::max(t_flops, t_weights) / budget));
  int64_t nf = f.gpus_for_time;
  if (opt.ffn_memory_bytes > 0) {
    f.gpus_for_memory =
        std::max<int64_t>(1, ceil_count(f.total_weight_bytes / opt.ffn_memory_bytes));
    nf = std::max(nf, *f.gpus_for_memory);
  }
  p.ffn_gpus = nf;
  f.time_us = std::max(t_flops, t_weights) / static_cast<double>(nf) * 1e6;
  f.bound = t_flops >= t_weights ? "compute" : "memory_bandwidth";
  f.mfu = static_cast<double>(f.tokens) * f.flops_per_token /
          (static_cast<double>(nf) * fhw.pricing_peak() * budget);

  // ---- throughput ----------------------------------------------------------------------------
  p.tokens_per_s_per_gpu = static_cast<double>(na * a.batch * opt.stages) / (opt.tpot_ms * 1e-3) /
                           static_cast<double>(na + nf);
  p.binding_constraint = network_binds ? "network" : "attention_" + a.bound;
  return p;
}

}  // namespace afd::analysis
