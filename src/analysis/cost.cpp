// cost-model.md §3.1-§3.3 with the conventions of §4 (the numbers in comments are its sections).
#include "analysis/cost.h"

#include <algorithm>

namespace afd::analysis {

namespace {

// §4.8: fitted, not derived; the natural 4 (one rank-1 update, one mat-vec) misses the paper.
constexpr double kLightningFlopsPerStateElement = 10;

}  // namespace

TokenCost& TokenCost::operator+=(const TokenCost& o) {
  kv_bytes += o.kv_bytes;
  attention_flops += o.attention_flops;
  linear_flops += o.linear_flops;
  ffn_flops += o.ffn_flops;
  resident_cache_bytes += o.resident_cache_bytes;
  return *this;
}

int64_t attended_tokens(const AttentionShape& a, int64_t context) {
  return a.window > 0 ? std::min(context, a.window) : context;
}

TokenCost layer_cost(const LayerShape& layer, int64_t hidden, int64_t context) {
  const AttentionShape& a = layer.attention;
  const double H = static_cast<double>(hidden);
  const double t = static_cast<double>(attended_tokens(a, context));
  const double q = static_cast<double>(a.q_heads), d = static_cast<double>(a.head_dim);
  TokenCost c;
  double weights = 0;  // projection weight elements
  switch (a.kind) {
    case AttentionKind::kGqa:
    case AttentionKind::kMfa: {
      const double kv = static_cast<double>(a.kv_heads);
      // §4.6 / §4.5: only the kv heads are cached; the q heads drive the FLOPs.
      c.kv_bytes = 2 * kv * d * a.cache_bytes * t;
      c.attention_flops = 4 * q * d * t;
      // q path: H -> q_lora -> q x d (MFA), or H -> q x d; then K and V, and o_proj.
      const double q_path =
          a.q_lora_rank > 0 ? H * a.q_lora_rank + a.q_lora_rank * q * d : H * q * d;
      weights = q_path + 2 * H * kv * d + q * d * H;
      break;
    }
    case AttentionKind::kMla: {
      const double lat = static_cast<double>(a.kv_lora_rank + a.qk_rope_head_dim);
      const double qk = static_cast<double>(a.qk_nope_head_dim + a.qk_rope_head_dim);
      // §4.3: the absorbed form over the full latent width for both QK and PV.
      c.kv_bytes = lat * a.cache_bytes * t;
      c.attention_flops = 4 * q * lat * t;
      // §4.4: the stored (un-absorbed) weights, kv_b_proj included.
      const double q_path =
          a.q_lora_rank > 0 ? H * a.q_lora_rank + a.q_lora_rank * q * qk : H * q * qk;
      weights = q_path + H * lat +
                static_cast<double>(a.kv_lora_rank) * q * (a.qk_nope_head_dim + a.v_head_dim) +
                q * a.v_head_dim * H;
      break;
    }
    case AttentionKind::kLightning: {
      const double state = q * d * d;          // [heads, head_dim, head_dim], independent of T
      c.kv_bytes = 2 * state * a.cache_bytes;  // §4.8: read and written back every step
      c.attention_flops = kLightningFlopsPerStateElement * state;
      weights = H * 3 * q * d + H * q * d + q * d * H;  // qkv_proj, output_gate, out_proj
      break;
    }
  }
  c.resident_cache_bytes = a.kind == AttentionKind::kLightning ? c.kv_bytes / 2 : c.kv_bytes;
  c.linear_flops = 2 * weights;
  c.ffn_flops = 2.0 * 3.0 * H * static_cast<double>(layer.ffn.active_intermediate);
  return c;
}

TokenCost token_cost(const ModelShape& model, int64_t context) {
  TokenCost total;
  for (const auto& l : model.layers) total += layer_cost(l, model.hidden_size, context);
  return total;
}

UsdCost usd_per_million_tokens(const TokenCost& c, const Hardware& hw) {
  const double uf = hw.usd_per_flop(), ub = hw.usd_per_byte();
  UsdCost u;
  u.attention = (std::max(c.attention_flops * uf, c.kv_bytes * ub) + c.linear_flops * uf) * 1e6;
  u.ffn = c.ffn_flops * uf * 1e6;
  u.total = u.attention + u.ffn;
  return u;
}

double b_dense(const Hardware& hw) { return hw.ridge_point() / 2; }

double min_sparsity(const Hardware& hw, int64_t hidden, int64_t layers, double budget_seconds) {
  return static_cast<double>(hidden) * hw.pricing_peak() * static_cast<double>(layers) /
         (hw.network_bandwidth * hw.memory_bandwidth * budget_seconds);
}

}  // namespace afd::analysis
