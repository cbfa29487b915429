// ModelShape: the per-layer facts the decoding cost model needs (reference/cost-model.md §1,
// §3.1, §4), for the nine preset architectures and for any Hugging Face config.json of the
// supported families. Presets and config.json files go through the same builders, so a
// config.json that states a preset's numbers gives that preset's shape exactly.
//
// Only what the formulas use is kept: attention kind and widths, the bytes per cached element
// (a convention of §4.1, per family and per layer type), the attended window, and the FFN's
// activated and total intermediate widths. Embedding, lm_head, router, norms are omitted (§4.2).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace afd::analysis {

enum class AttentionKind {
  kGqa,        // grouped-query attention: n_q query heads over n_kv cached K/V heads
  kMfa,        // Step-3 multi-matrix factorization attention: GQA with a low-rank q path
  kMla,        // DeepSeek multi-head latent attention: caches the kv latent plus the rope key
  kLightning,  // MiniMax lightning (linear) attention: a fixed-size state per layer
};
const char* attention_kind_name(AttentionKind k);

// One layer's attention. Which fields matter depends on `kind`; the rest stay 0.
struct AttentionShape {
  AttentionKind kind = AttentionKind::kGqa;
  int64_t q_heads = 0;           // query heads (lightning: heads)
  int64_t kv_heads = 0;          // cached K/V heads (GQA, MFA)
  int64_t head_dim = 0;          // GQA, MFA, lightning
  int64_t q_lora_rank = 0;       // MFA, MLA: low-rank q width; 0 = full-rank q projection
  int64_t kv_lora_rank = 0;      // MLA
  int64_t qk_nope_head_dim = 0;  // MLA
  int64_t qk_rope_head_dim = 0;  // MLA
  int64_t v_head_dim = 0;        // MLA
  // Bytes per cached K/V/latent element, or per lightning state element (§4.1).
  double cache_bytes = 1;
  // > 0: the layer attends min(T, window) tokens (Llama 4 chunked layers, §4.7); 0: all T.
  int64_t window = 0;
};

struct FfnShape {
  bool moe = false;
  // Per token: the dense intermediate, or top_k * moe_intermediate + shared (§3.1, §4.10).
  int64_t active_intermediate = 0;
  // All weights of the layer: the dense intermediate, or experts * moe_intermediate + shared.
  // The planner streams and stores these.
  int64_t total_intermediate = 0;
};

struct LayerShape {
  AttentionShape attention;
  FfnShape ffn;
};

// The routed-expert facts of §3.3's sparsity; routed_experts == 0 for a dense model.
struct MoeShape {
  int64_t routed_experts = 0;
  int64_t experts_per_token = 0;
  int64_t expert_intermediate = 0;  // one routed expert's intermediate width
  int64_t shared_intermediate = 0;  // all shared experts together (0: none)
};

struct ModelShape {
  std::string name;    // the preset name, or the config.json path as given
  std::string family;  // model_type family: step3, deepseek_v3, qwen3_moe, llama4, ...
  int64_t hidden_size = 0;
  std::vector<LayerShape> layers;
  MoeShape moe;

  int64_t num_layers() const { return static_cast<int64_t>(layers.size()); }
  // S = (activated routed + shared) / (routed + shared), shared counted in units of one routed
  // expert (shared_intermediate / expert_intermediate), §3.3. 1 for a dense model.
  double sparsity() const;
  // "61 layers: 61 MFA; 5 dense + 56 MoE" and the like, for text output.
  std::string summary() const;
};

// The nine presets of cost-model.md §1, in the paper's order.
std::vector<std::string> model_preset_names();
Result<ModelShape> model_preset(const std::string& name);

// A Hugging Face config.json of a supported family (model_type step3_vl/step3_text,
// deepseek_v3/kimi_k2, qwen3, qwen3_moe, llama4/llama4_text, minimax/minimax_m1/minimax_text_01;
// a nested "text_config" is used when present). `source` names the file in errors.
Result<ModelShape> model_from_config_json(const std::string& text, const std::string& source);
// The model_type values model_from_config_json accepts.
std::vector<std::string> supported_model_types();

// A preset name, or the path of a config.json (or of a folder holding one).
Result<ModelShape> load_model_shape(const std::string& name_or_path);

}  // namespace afd::analysis
