// ModelConfig: the Step-3 text model's dimensions, read from a Hugging Face config.json
// (nested `step3_vl` with `text_config`, or flat `step3_text`) or taken from a preset.
//
// Invariant after validate() (which every constructor path runs): every size is positive,
// num_attention_groups == 1 (MFA: one shared K/V head), head_dim is even, moe_top_k <=
// moe_num_experts, every MoE layer index is in [0, num_hidden_layers) and listed once.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace afd {

// FP8 block quantization of a checkpoint (DeepSeek-V3 convention, step3.md §2).
struct Fp8QuantConfig {
  std::string fmt = "e4m3";
  std::string activation_scheme = "dynamic";
  int64_t block_n = 128;  // weight_block_size[0]: rows (output features) per scale block
  int64_t block_k = 128;  // weight_block_size[1]: columns (input features) per scale block
};

struct ModelConfig {
  std::string name;                    // preset name or the directory it came from
  int64_t hidden_size = 0;             // H
  int64_t intermediate_size = 0;       // dense MLP intermediate
  int64_t num_attention_heads = 0;     // query heads
  int64_t num_attention_groups = 1;    // K/V heads (MFA: 1)
  int64_t num_hidden_layers = 0;
  int64_t head_dim = 0;
  int64_t share_q_dim = 0;             // q low rank (q_proj output, inter_norm width)
  int64_t moe_intermediate_size = 0;   // per routed expert
  int64_t moe_num_experts = 0;
  int64_t moe_top_k = 0;
  int64_t share_expert_dim = 0;        // shared expert intermediate
  std::vector<int64_t> moe_layers;     // from moe_layers_enum "4,5,...,59", ascending
  bool norm_expert_weight = false;     // renormalize the top-k router weights
  int64_t vocab_size = 0;
  double rms_norm_eps = 1e-5;
  double rope_theta = 500000.0;
  int64_t max_position_embedding = 65536;
  std::optional<int64_t> bos_token_id;
  std::optional<int64_t> eos_token_id;
  std::optional<Fp8QuantConfig> quant;  // set for FP8 block-scaled checkpoints

  bool is_moe_layer(int64_t layer) const;
  int64_t q_width() const { return num_attention_heads * head_dim; }  // wq output, o_proj input

  // Parameter counts of the language model (embedding and lm_head included).
  int64_t num_params() const;
  // Parameters touched per token: attention, dense MLPs, top-k routed experts, shared expert,
  // router, norms, one embedding row and the lm_head.
  int64_t num_active_params() const;

  Status validate() const;
  // The nested HF form: {"model_type": "step3_vl", "architectures": [...], "text_config": {...}}
  // (with "quantization_config" when quant is set). Round-trips through from_json.
  std::string to_json() const;

  // Parses config.json text; `source` names the file in error messages.
  static Result<ModelConfig> from_json(const std::string& text, const std::string& source);
  static Result<ModelConfig> from_file(const std::string& path);
  // "step3" (real dimensions), "step3-small" (CPU demo, ~280 M params), "step3-tiny" (tests).
  static Result<ModelConfig> preset(const std::string& name);
  static std::vector<std::string> preset_names();
};

}  // namespace afd
