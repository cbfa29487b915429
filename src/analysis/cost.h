// The decoding cost model of cost-model.md §3 (per decoding token, summed over layers), under
// the conventions of §4, and the batch/sparsity relations of §3.3.
#pragma once

#include <cstdint>

#include "analysis/hardware.h"
#include "analysis/model_shape.h"

namespace afd::analysis {

// Per decoding token at context T. All FLOPs count a multiply-add as 2.
struct TokenCost {
  double kv_bytes = 0;         // KV/latent bytes read, plus lightning state read + written (§4.8)
  double attention_flops = 0;  // attention core: QK and PV (lightning: 10 per state element)
  double linear_flops = 0;     // projections before and after the core (2 x weight elements)
  double ffn_flops = 0;        // SwiGLU gate, up, down of the activated experts (2 x 3 x H x I)
  // Bytes the cache of one sequence occupies: kv_bytes, except that a lightning state counts
  // once (it is read and written back, but stored once). The planner's memory check uses it.
  double resident_cache_bytes = 0;

  // §3.3: FLOP_attn / Byte_KV, independent of batch.
  double arithmetic_intensity() const { return attention_flops / kv_bytes; }
  TokenCost& operator+=(const TokenCost& o);
};

// Tokens a layer attends at context T: T, or min(T, window) for a chunked layer (§4.7).
int64_t attended_tokens(const AttentionShape& a, int64_t context);

// One layer of `hidden` width at context T (§3.1).
TokenCost layer_cost(const LayerShape& layer, int64_t hidden, int64_t context);
// The sum over all layers.
TokenCost token_cost(const ModelShape& model, int64_t context);

// USD per 1M decoding tokens (§3.2), every part on the same hardware.
struct UsdCost {
  double attention = 0;  // max(FLOP_attn x U_flop, Byte_KV x U_byte) + FLOP_linear x U_flop
  double ffn = 0;        // FLOP_FFN x U_flop (AFD keeps the FFN compute-bound)
  double total = 0;      // attention + ffn
};
UsdCost usd_per_million_tokens(const TokenCost& cost, const Hardware& hw);

// §3.3: the dense-FFN batch at which 8-bit weights reach the ridge point:
// 2 x B_dense = pricing_peak / HBM bandwidth.
double b_dense(const Hardware& hw);

// §3.3 / §4.12: the smallest MoE sparsity for which the FFN's network traffic (3 x H bytes per
// token and layer: FP8 dispatch, BF16 combine) fits the budget at B_MoE = B_dense / S:
// S >= H x pricing_peak x L / (Net x HBM bandwidth x budget). The paper writes the budget as
// 11.1 ms (= 16.6 ms x 2 / 3, the 2 of B_dense folded in) with H = 7168, L = 61.
inline constexpr double kMinSparsityBudgetSeconds = 11.1e-3;
double min_sparsity(const Hardware& hw, int64_t hidden, int64_t layers,
                    double budget_seconds = kMinSparsityBudgetSeconds);

}  // namespace afd::analysis
