// The family builders, the nine presets of cost-model.md §1 and load_model_shape().
#include "analysis/model_shape.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "analysis/shape_builders.h"

namespace afd::analysis {

const char* attention_kind_name(AttentionKind k) {
  switch (k) {
    case AttentionKind::kGqa: return "GQA";
    case AttentionKind::kMfa: return "MFA";
    case AttentionKind::kMla: return "MLA";
    case AttentionKind::kLightning: return "lightning";
  }
  return "?";
}

double ModelShape::sparsity() const {
  bool any_moe = false;
  for (const auto& l : layers) any_moe |= l.ffn.moe;
  if (!any_moe || moe.routed_experts == 0) return 1.0;
  // §3.3: shared experts count in units of one routed expert (Pangu's 5376 = 4 x 1344 is 4).
  const double shared =
      static_cast<double>(moe.shared_intermediate) / static_cast<double>(moe.expert_intermediate);
  return (moe.experts_per_token + shared) / (moe.routed_experts + shared);
}

std::string ModelShape::summary() const {
  // Count layer kinds in first-seen order: "36 GQA (chunked 8192, FP8) + 12 GQA (BF16)".
  std::vector<std::pair<std::string, int>> kinds;
  int dense = 0, moe_layers = 0;
  for (const auto& l : layers) {
    const AttentionShape& a = l.attention;
    std::string k = attention_kind_name(a.kind);
    if (a.window > 0) k += fmt::format(" chunked {}", a.window);
    if (a.cache_bytes != 1) k += fmt::format(" ({} B/elem)", a.cache_bytes);
    auto it = std::find_if(kinds.begin(), kinds.end(), [&](auto& p) { return p.first == k; });
    if (it == kinds.end())
      kinds.push_back({k, 1});
    else
      ++it->second;
    (l.ffn.moe ? moe_layers : dense)++;
  }
  std::string att;
  for (const auto& [k, n] : kinds) att += fmt::format("{}{} {}", att.empty() ? "" : " + ", n, k);
  return fmt::format("{} layers, hidden {}: {}; {} dense + {} MoE FFN", layers.size(), hidden_size,
                     att, dense, moe_layers);
}

namespace detail {

namespace {
AttentionShape gqa_like(AttentionKind kind, int64_t q, int64_t kv, int64_t d, double bytes) {
  AttentionShape a;
  a.kind = kind;
  a.q_heads = q;
  a.kv_heads = kv;
  a.head_dim = d;
  a.cache_bytes = bytes;
  return a;
}
}  // namespace

std::vector<AttentionShape> step3_attention(int64_t layers, int64_t q_heads, int64_t kv_heads,
                                            int64_t head_dim, int64_t q_lora_rank) {
  // §4.5: the single K and V heads are cached in FP8; q is low rank H -> q_lora -> heads*dim.
  AttentionShape a = gqa_like(AttentionKind::kMfa, q_heads, kv_heads, head_dim, kFp8Bytes);
  a.q_lora_rank = q_lora_rank;
  return std::vector<AttentionShape>(static_cast<size_t>(std::max<int64_t>(layers, 0)), a);
}

std::vector<AttentionShape> mla_attention(int64_t layers, int64_t heads, int64_t q_lora_rank,
                                          int64_t kv_lora_rank, int64_t qk_nope_head_dim,
                                          int64_t qk_rope_head_dim, int64_t v_head_dim) {
  AttentionShape a;
  a.kind = AttentionKind::kMla;
  a.q_heads = heads;
  a.q_lora_rank = q_lora_rank;
  a.kv_lora_rank = kv_lora_rank;
  a.qk_nope_head_dim = qk_nope_head_dim;
  a.qk_rope_head_dim = qk_rope_head_dim;
  a.v_head_dim = v_head_dim;
  a.cache_bytes = kFp8Bytes;  // §4.1: FP8 latent
  return std::vector<AttentionShape>(static_cast<size_t>(std::max<int64_t>(layers, 0)), a);
}

std::vector<AttentionShape> gqa_attention(int64_t layers, int64_t q_heads, int64_t kv_heads,
                                          int64_t head_dim) {
  // §4.1: the GQA family (Qwen3, ERNIE 4.5, Pangu) caches FP8 K/V.
  return std::vector<AttentionShape>(
      static_cast<size_t>(std::max<int64_t>(layers, 0)),
      gqa_like(AttentionKind::kGqa, q_heads, kv_heads, head_dim, kFp8Bytes));
}

std::vector<AttentionShape> llama4_attention(const std::vector<bool>& rope,
                                             const std::vector<bool>& chunked, int64_t q_heads,
                                             int64_t kv_heads, int64_t head_dim,
                                             int64_t chunk_size) {
  std::vector<AttentionShape> out;
  for (size_t i = 0; i < rope.size(); ++i) {
    // §4.1: chunked (RoPE) layers cache FP8, global (NoPE) layers BF16.
    AttentionShape a = gqa_like(AttentionKind::kGqa, q_heads, kv_heads, head_dim,
                                rope[i] ? kFp8Bytes : kBf16Bytes);
    if (i < chunked.size() && chunked[i]) a.window = chunk_size;
    out.push_back(a);
  }
  return out;
}

std::vector<AttentionShape> minimax_attention(const std::vector<bool>& lightning, int64_t q_heads,
                                              int64_t kv_heads, int64_t head_dim) {
  std::vector<AttentionShape> out;
  for (bool lin : lightning) {
    if (lin) {
      AttentionShape a;
      a.kind = AttentionKind::kLightning;
      a.q_heads = q_heads;
      a.head_dim = head_dim;
      a.cache_bytes = kFp32Bytes;  // §4.1: the state is kept in FP32
      out.push_back(a);
    } else {
      out.push_back(gqa_like(AttentionKind::kGqa, q_heads, kv_heads, head_dim, kBf16Bytes));
    }
  }
  return out;
}

std::vector<bool> llama4_default_rope(int64_t layers, int64_t interval) {
  // HF Llama4TextConfig: no_rope_layers[i] = int((i + 1) % interval != 0); 1 means RoPE.
  std::vector<bool> v;
  for (int64_t i = 0; i < layers; ++i) v.push_back(interval <= 0 || (i + 1) % interval != 0);
  return v;
}

std::vector<bool> llama4_default_moe(int64_t layers, int64_t step) {
  // HF: moe_layers = range(step - 1, layers, step).
  std::vector<bool> v(static_cast<size_t>(std::max<int64_t>(layers, 0)), false);
  if (step <= 0) return v;
  for (int64_t i = step - 1; i < layers; i += step) v[static_cast<size_t>(i)] = true;
  return v;
}

std::vector<bool> minimax_default_lightning(int64_t layers) {
  // attn_type_list [0]*7 + [1], repeated: a softmax layer after every 7 lightning layers.
  std::vector<bool> v;
  for (int64_t i = 0; i < layers; ++i) v.push_back((i + 1) % 8 != 0);
  return v;
}

std::vector<bool> deepseek_moe_layers(int64_t layers, int64_t first_k_dense, int64_t freq) {
  // HF DeepseekV3: MoE iff layer >= first_k_dense_replace and layer % moe_layer_freq == 0.
  std::vector<bool> v;
  for (int64_t i = 0; i < layers; ++i) v.push_back(i >= first_k_dense && freq > 0 && i % freq == 0);
  return v;
}

std::vector<bool> moe_layers_from_indices(int64_t layers, const std::vector<int64_t>& idx) {
  std::vector<bool> v(static_cast<size_t>(std::max<int64_t>(layers, 0)), false);
  for (int64_t i : idx)
    if (i >= 0 && i < layers) v[static_cast<size_t>(i)] = true;
  return v;
}

Result<ModelShape> assemble(const std::string& name, const std::string& family, int64_t hidden,
                            std::vector<AttentionShape> attention, const std::vector<bool>& moe,
                            int64_t dense_intermediate, const MoeShape& experts,
                            const std::string& where) {
  if (hidden <= 0)
    return InvalidArgument("{}: hidden_size must be positive, got {}", where, hidden);
  if (attention.empty()) return InvalidArgument("{}: the model has no layers", where);
  if (moe.size() != attention.size())
    return InvalidArgument("{}: {} FFN layer flags for {} layers", where, moe.size(),
                           attention.size());
  ModelShape m;
  m.name = name;
  m.family = family;
  m.hidden_size = hidden;
  m.moe = experts;
  bool any_moe = false, any_dense = false;
  for (size_t i = 0; i < attention.size(); ++i) {
    const AttentionShape& a = attention[i];
    const bool mla = a.kind == AttentionKind::kMla;
    const bool kv = a.kind == AttentionKind::kGqa || a.kind == AttentionKind::kMfa;
    if (a.q_heads <= 0 || (!mla && a.head_dim <= 0) || (kv && a.kv_heads <= 0) ||
        (mla && (a.kv_lora_rank <= 0 || a.qk_nope_head_dim < 0 || a.qk_rope_head_dim < 0 ||
                 a.v_head_dim <= 0)) ||
        a.q_lora_rank < 0)
      return InvalidArgument("{}: layer {}: {} attention needs positive heads and widths", where, i,
                             attention_kind_name(a.kind));
    if (kv && a.q_heads % a.kv_heads != 0)
      return InvalidArgument("{}: {} query heads are not a multiple of {} K/V heads", where,
                             a.q_heads, a.kv_heads);
    LayerShape l;
    l.attention = a;
    l.ffn.moe = moe[i];
    if (moe[i]) {
      any_moe = true;
      l.ffn.active_intermediate =
          experts.experts_per_token * experts.expert_intermediate + experts.shared_intermediate;
      l.ffn.total_intermediate =
          experts.routed_experts * experts.expert_intermediate + experts.shared_intermediate;
    } else {
      any_dense = true;
      l.ffn.active_intermediate = l.ffn.total_intermediate = dense_intermediate;
    }
    m.layers.push_back(l);
  }
  if (any_dense && dense_intermediate <= 0)
    return InvalidArgument("{}: dense layers need a positive intermediate size, got {}", where,
                           dense_intermediate);
  if (any_moe) {
    if (experts.routed_experts <= 0 || experts.experts_per_token <= 0 ||
        experts.expert_intermediate <= 0 || experts.shared_intermediate < 0)
      return InvalidArgument("{}: MoE layers need positive expert count, top-k and expert size",
                             where);
    if (experts.experts_per_token > experts.routed_experts)
      return InvalidArgument("{}: top-k {} exceeds the {} routed experts", where,
                             experts.experts_per_token, experts.routed_experts);
  } else {
    m.moe = MoeShape{};  // a dense model: sparsity 1 whatever the config says about experts
  }
  return m;
}

}  // namespace detail

namespace {

using namespace detail;

// The presets, built from the numbers of cost-model.md §1 with the same builders a config.json
// goes through (hf_config.cpp).
Result<ModelShape> build_preset(const std::string& name) {
  const std::string where = "preset " + name;
  if (name == "step3") {  // §1.9: dense layers 0-3 and 60
    std::vector<int64_t> moe;
    for (int64_t i = 4; i <= 59; ++i) moe.push_back(i);
    return assemble(name, "step3", 7168, step3_attention(61, 64, 1, 256, 2048),
                    moe_layers_from_indices(61, moe), 18432, {48, 3, 5120, 5120}, where);
  }
  if (name == "deepseek-v3")  // §1.1
    return assemble(name, "deepseek_v3", 7168, mla_attention(61, 128, 1536, 512, 128, 64, 128),
                    deepseek_moe_layers(61, 3, 1), 18432, {256, 8, 2048, 2048}, where);
  if (name == "kimi-k2")  // §1.2
    return assemble(name, "kimi_k2", 7168, mla_attention(61, 64, 1536, 512, 128, 64, 128),
                    deepseek_moe_layers(61, 1, 1), 18432, {384, 8, 2048, 2048}, where);
  if (name == "qwen3-235b-a22b")  // §1.3: every layer MoE; intermediate_size 12288 unused
    return assemble(name, "qwen3_moe", 4096, gqa_attention(94, 64, 4, 128),
                    std::vector<bool>(94, true), 12288, {128, 8, 1536, 0}, where);
  if (name == "qwen3-32b")  // §1.4
    return assemble(name, "qwen3", 5120, gqa_attention(64, 64, 8, 128),
                    std::vector<bool>(64, false), 25600, {}, where);
  if (name == "llama4-maverick") {  // §1.5: 36 chunked RoPE + 12 global NoPE layers
    std::vector<bool> rope = llama4_default_rope(48, 4);
    return assemble(name, "llama4", 5120, llama4_attention(rope, rope, 40, 8, 128, 8192),
                    llama4_default_moe(48, 2), 16384, {128, 1, 8192, 8192}, where);
  }
  if (name == "minimax-m1")  // §1.6: 70 lightning + 10 softmax layers, MoE everywhere
    return assemble(name, "minimax", 6144,
                    minimax_attention(minimax_default_lightning(80), 64, 8, 128),
                    std::vector<bool>(80, true), 0, {32, 2, 9216, 0}, where);
  if (name == "ernie4.5-300b-a47b")  // §1.7: 54 layers as released, dense 0-2
    return assemble(name, "ernie4_5_moe", 8192, gqa_attention(54, 64, 8, 128),
                    deepseek_moe_layers(54, 3, 1), 28672, {64, 8, 3584, 0}, where);
  if (name == "pangu-pro-moe")  // §1.8: shared expert 5376 = 4 routed experts of 1344
    return assemble(name, "pangu_pro_moe", 5120, gqa_attention(48, 40, 8, 128),
                    std::vector<bool>(48, true), 0, {64, 8, 1344, 5376}, where);
  return NotFound("unknown model preset \"{}\"", name);
}

}  // namespace

std::vector<std::string> model_preset_names() {
  return {"step3",           "deepseek-v3",        "kimi-k2",
          "qwen3-235b-a22b", "qwen3-32b",          "llama4-maverick",
          "minimax-m1",      "ernie4.5-300b-a47b", "pangu-pro-moe"};
}

Result<ModelShape> model_preset(const std::string& name) {
  for (const auto& n : model_preset_names())
    if (n == name) return build_preset(name);
  return InvalidArgument("unknown model \"{}\": presets are {}", name,
                         fmt::join(model_preset_names(), ", "));
}

Result<ModelShape> load_model_shape(const std::string& name_or_path) {
  for (const auto& n : model_preset_names())
    if (n == name_or_path) return build_preset(n);
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string path = name_or_path;
  if (fs::is_directory(path, ec)) path = (fs::path(path) / "config.json").string();
  if (!fs::is_regular_file(path, ec))
    return InvalidArgument(
        "unknown model \"{}\": not a preset ({}) and no such config.json file or folder",
        name_or_path, fmt::join(model_preset_names(), ", "));
  std::ifstream in(path, std::ios::binary);
  if (!in) return IOError("{}: cannot open", path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto m = model_from_config_json(ss.str(), path);
  if (m.ok()) m->name = name_or_path;
  return m;
}

}  // namespace afd::analysis
