// Internal to src/analysis: the family builders that both the presets (model_shape.cpp) and
// the config.json reader (hf_config.cpp) go through, so equal inputs give equal shapes.
// The bytes per cached element of each family (cost-model.md §4.1) are decided here, once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "analysis/model_shape.h"

namespace afd::analysis::detail {

// §4.1: FP8 (or INT8 on A800/910B) is 1 byte, BF16 2, the FP32 lightning state 4.
inline constexpr double kFp8Bytes = 1;
inline constexpr double kBf16Bytes = 2;
inline constexpr double kFp32Bytes = 4;

// Attention of every layer, per family.
std::vector<AttentionShape> step3_attention(int64_t layers, int64_t q_heads, int64_t kv_heads,
                                            int64_t head_dim, int64_t q_lora_rank);
std::vector<AttentionShape> mla_attention(int64_t layers, int64_t heads, int64_t q_lora_rank,
                                          int64_t kv_lora_rank, int64_t qk_nope_head_dim,
                                          int64_t qk_rope_head_dim, int64_t v_head_dim);
std::vector<AttentionShape> gqa_attention(int64_t layers, int64_t q_heads, int64_t kv_heads,
                                          int64_t head_dim);
// rope[i]: layer i uses RoPE (FP8 cache, §4.1); chunked[i]: it attends min(T, chunk) tokens.
std::vector<AttentionShape> llama4_attention(const std::vector<bool>& rope,
                                             const std::vector<bool>& chunked, int64_t q_heads,
                                             int64_t kv_heads, int64_t head_dim,
                                             int64_t chunk_size);
// lightning[i]: layer i is lightning attention (FP32 state), else BF16 GQA softmax attention.
std::vector<AttentionShape> minimax_attention(const std::vector<bool>& lightning, int64_t q_heads,
                                              int64_t kv_heads, int64_t head_dim);

// HF defaults of the layer layouts (cost-model.md §1.5, §1.6, §1.1).
std::vector<bool> llama4_default_rope(int64_t layers, int64_t no_rope_layer_interval);
std::vector<bool> llama4_default_moe(int64_t layers, int64_t interleave_moe_layer_step);
std::vector<bool> minimax_default_lightning(int64_t layers);
std::vector<bool> deepseek_moe_layers(int64_t layers, int64_t first_k_dense_replace,
                                      int64_t moe_layer_freq);
std::vector<bool> moe_layers_from_indices(int64_t layers, const std::vector<int64_t>& indices);

// Puts a model together and checks it: every width positive, one attention and one FFN flag
// per layer, top_k <= experts, MoE layers only with experts. `where` prefixes errors.
Result<ModelShape> assemble(const std::string& name, const std::string& family, int64_t hidden,
                            std::vector<AttentionShape> attention, const std::vector<bool>& moe,
                            int64_t dense_intermediate, const MoeShape& experts,
                            const std::string& where);

}  // namespace afd::analysis::detail
