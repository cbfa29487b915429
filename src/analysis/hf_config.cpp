// Reads a Hugging Face config.json into a ModelShape, for the families of cost-model.md §1.
//
// Structural widths (hidden size, layers, heads, head widths, FFN sizes) are required: a
// missing one is an error naming the file and the field. Layout fields that HF config classes
// derive from a rule (Llama 4's no_rope_layers and moe_layers, MiniMax's layer types, DeepSeek's
// first_k_dense_replace) fall back to that rule, as transformers does (docs/analysis.md lists
// every default).
#include <fmt/ranges.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "analysis/model_shape.h"
#include "analysis/shape_builders.h"

namespace afd::analysis {

namespace {

using nlohmann::json;
using namespace detail;

// Typed access to one JSON object; errors name "<source>: <prefix><field>".
struct Fields {
  const json& obj;
  std::string source, prefix, model_type;

  std::string where(const std::string& f) const {
    return fmt::format("{}: {}{}", source, prefix, f);
  }
  bool has(const std::string& f) const {
    auto it = obj.find(f);
    return it != obj.end() && !it->is_null();
  }
  // A required positive integer.
  Status req(const std::string& f, int64_t* out) const {
    if (!has(f))
      return InvalidArgument("{}: missing required field (model_type {})", where(f), model_type);
    return opt(f, out, /*allow_zero=*/false);
  }
  // An optional integer; *out keeps its default when the field is absent or null.
  Status opt(const std::string& f, int64_t* out, bool allow_zero = true) const {
    if (!has(f)) return Status::OK();
    const json& v = obj.at(f);
    // Some exports write whole numbers as 8192.0; accept those, refuse 1.5.
    if (v.is_number_float() && std::fabs(v.get<double>()) < 9e15 &&
        v.get<double>() == std::floor(v.get<double>())) {
      *out = v.get<int64_t>();
    } else if (v.is_number_integer()) {
      *out = v.get<int64_t>();
    } else {
      return InvalidArgument("{}: must be an integer, got {}", where(f), v.dump());
    }
    if (*out < 0 || (!allow_zero && *out == 0))
      return InvalidArgument("{}: must be {}, got {}", where(f),
                             allow_zero ? "non-negative" : "positive", *out);
    return Status::OK();
  }
  // An optional list of integers (layer indices or 0/1 flags).
  Status int_list(const std::string& f, std::vector<int64_t>* out) const {
    if (!has(f)) return Status::OK();
    const json& v = obj.at(f);
    out->clear();
    if (v.is_string()) {  // Step-3's moe_layers_enum: "4,5,...,59"
      std::string s = v.get<std::string>(), item;
      for (size_t i = 0; i <= s.size(); ++i) {
        if (i == s.size() || s[i] == ',') {
          size_t b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
          if (b != std::string::npos) {
            item = item.substr(b, e - b + 1);
            char* end = nullptr;
            long long x = std::strtoll(item.c_str(), &end, 10);
            if (end == item.c_str() || *end != '\0')
              return InvalidArgument("{}: \"{}\" is not a layer index", where(f), item);
            out->push_back(x);
          }
          item.clear();
        } else {
          item += s[i];
        }
      }
      return Status::OK();
    }
    if (!v.is_array()) return InvalidArgument("{}: must be a list of integers", where(f));
    for (const auto& e : v) {
      if (!e.is_number_integer())
        return InvalidArgument("{}: must be a list of integers, found {}", where(f), e.dump());
      out->push_back(e.get<int64_t>());
    }
    return Status::OK();
  }
  Status str_list(const std::string& f, std::vector<std::string>* out) const {
    if (!has(f)) return Status::OK();
    const json& v = obj.at(f);
    out->clear();
    if (!v.is_array()) return InvalidArgument("{}: must be a list of strings", where(f));
    for (const auto& e : v) {
      if (!e.is_string())
        return InvalidArgument("{}: must be a list of strings, found {}", where(f), e.dump());
      out->push_back(e.get<std::string>());
    }
    return Status::OK();
  }
  Status check_len(const std::string& f, size_t n, int64_t layers) const {
    if (static_cast<int64_t>(n) != layers)
      return InvalidArgument("{}: has {} entries for {} layers", where(f), n, layers);
    return Status::OK();
  }
};

Result<ModelShape> read_step3(const Fields& r) {
  int64_t L = 0, H = 0, heads = 0, groups = 1, d = 0, q_lora = 0, inter = 0;
  MoeShape e;
  AFD_RETURN_IF_ERROR(r.req("num_hidden_layers", &L));
  AFD_RETURN_IF_ERROR(r.req("hidden_size", &H));
  AFD_RETURN_IF_ERROR(r.req("num_attention_heads", &heads));
  AFD_RETURN_IF_ERROR(r.opt("num_attention_groups", &groups, false));
  AFD_RETURN_IF_ERROR(r.req("head_dim", &d));
  AFD_RETURN_IF_ERROR(r.req("share_q_dim", &q_lora));
  AFD_RETURN_IF_ERROR(r.req("intermediate_size", &inter));
  AFD_RETURN_IF_ERROR(r.req("moe_num_experts", &e.routed_experts));
  AFD_RETURN_IF_ERROR(r.req("moe_top_k", &e.experts_per_token));
  AFD_RETURN_IF_ERROR(r.req("moe_intermediate_size", &e.expert_intermediate));
  AFD_RETURN_IF_ERROR(r.opt("share_expert_dim", &e.shared_intermediate));
  if (!r.has("moe_layers_enum"))
    return InvalidArgument("{}: missing required field (model_type {})", r.where("moe_layers_enum"),
                           r.model_type);
  std::vector<int64_t> idx;
  AFD_RETURN_IF_ERROR(r.int_list("moe_layers_enum", &idx));
  for (int64_t i : idx)
    if (i < 0 || i >= L)
      return InvalidArgument("{}: layer {} is outside [0, {})", r.where("moe_layers_enum"), i, L);
  return assemble(r.source, "step3", H, step3_attention(L, heads, groups, d, q_lora),
                  moe_layers_from_indices(L, idx), inter, e, r.source);
}

Result<ModelShape> read_mla(const Fields& r, const std::string& family) {
  int64_t L = 0, H = 0, heads = 0, q_lora = 0, kv_lora = 0, nope = 0, rope = 0, v = 0, inter = 0;
  int64_t first_dense = 0, freq = 1, n_shared = 0;
  MoeShape e;
  AFD_RETURN_IF_ERROR(r.req("num_hidden_layers", &L));
  AFD_RETURN_IF_ERROR(r.req("hidden_size", &H));
  AFD_RETURN_IF_ERROR(r.req("num_attention_heads", &heads));
  AFD_RETURN_IF_ERROR(r.opt("q_lora_rank", &q_lora));  // null: a full-rank q projection
  AFD_RETURN_IF_ERROR(r.req("kv_lora_rank", &kv_lora));
  AFD_RETURN_IF_ERROR(r.req("qk_nope_head_dim", &nope));
  AFD_RETURN_IF_ERROR(r.req("qk_rope_head_dim", &rope));
  AFD_RETURN_IF_ERROR(r.req("v_head_dim", &v));
  AFD_RETURN_IF_ERROR(r.req("intermediate_size", &inter));
  AFD_RETURN_IF_ERROR(r.opt("n_routed_experts", &e.routed_experts));  // null: a dense model
  if (e.routed_experts > 0) {
    AFD_RETURN_IF_ERROR(r.req("num_experts_per_tok", &e.experts_per_token));
    AFD_RETURN_IF_ERROR(r.req("moe_intermediate_size", &e.expert_intermediate));
    AFD_RETURN_IF_ERROR(r.opt("n_shared_experts", &n_shared));
    AFD_RETURN_IF_ERROR(r.opt("first_k_dense_replace", &first_dense));
    AFD_RETURN_IF_ERROR(r.opt("moe_layer_freq", &freq, false));
    e.shared_intermediate = n_shared * e.expert_intermediate;
  }
  std::vector<bool> moe = e.routed_experts > 0 ? deepseek_moe_layers(L, first_dense, freq)
                                               : std::vector<bool>(static_cast<size_t>(L), false);
  return assemble(r.source, family, H, mla_attention(L, heads, q_lora, kv_lora, nope, rope, v), moe,
                  inter, e, r.source);
}

Result<ModelShape> read_qwen3(const Fields& r, bool is_moe) {
  int64_t L = 0, H = 0, heads = 0, kv = 0, d = 0, inter = 0, step = 1;
  MoeShape e;
  AFD_RETURN_IF_ERROR(r.req("num_hidden_layers", &L));
  AFD_RETURN_IF_ERROR(r.req("hidden_size", &H));
  AFD_RETURN_IF_ERROR(r.req("num_attention_heads", &heads));
  kv = heads;  // HF: num_key_value_heads defaults to num_attention_heads
  AFD_RETURN_IF_ERROR(r.opt("num_key_value_heads", &kv, false));
  d = H / heads;  // HF: head_dim defaults to hidden_size / num_attention_heads
  AFD_RETURN_IF_ERROR(r.opt("head_dim", &d, false));
  std::vector<bool> moe(static_cast<size_t>(L), false);
  if (is_moe) {
    AFD_RETURN_IF_ERROR(r.req("num_experts", &e.routed_experts));
    AFD_RETURN_IF_ERROR(r.req("num_experts_per_tok", &e.experts_per_token));
    AFD_RETURN_IF_ERROR(r.req("moe_intermediate_size", &e.expert_intermediate));
    AFD_RETURN_IF_ERROR(r.opt("decoder_sparse_step", &step, false));
    std::vector<int64_t> mlp_only;
    AFD_RETURN_IF_ERROR(r.int_list("mlp_only_layers", &mlp_only));
    // HF Qwen3MoE: MoE iff not in mlp_only_layers and (i + 1) % decoder_sparse_step == 0.
    for (int64_t i = 0; i < L; ++i)
      moe[static_cast<size_t>(i)] =
          std::find(mlp_only.begin(), mlp_only.end(), i) == mlp_only.end() && (i + 1) % step == 0;
  }
  bool any_dense = std::find(moe.begin(), moe.end(), false) != moe.end();
  // intermediate_size is only used by dense layers (Qwen3-235B lists an unused 12288).
  if (any_dense)
    AFD_RETURN_IF_ERROR(r.req("intermediate_size", &inter));
  else
    AFD_RETURN_IF_ERROR(r.opt("intermediate_size", &inter));
  return assemble(r.source, is_moe ? "qwen3_moe" : "qwen3", H, gqa_attention(L, heads, kv, d), moe,
                  inter, e, r.source);
}

Result<ModelShape> read_llama4(const Fields& r) {
  int64_t L = 0, H = 0, heads = 0, kv = 0, d = 0, dense = 0, step = 1, interval = 4, chunk = 0;
  MoeShape e;
  AFD_RETURN_IF_ERROR(r.req("num_hidden_layers", &L));
  AFD_RETURN_IF_ERROR(r.req("hidden_size", &H));
  AFD_RETURN_IF_ERROR(r.req("num_attention_heads", &heads));
  AFD_RETURN_IF_ERROR(r.req("num_key_value_heads", &kv));
  d = H / heads;
  AFD_RETURN_IF_ERROR(r.opt("head_dim", &d, false));
  AFD_RETURN_IF_ERROR(r.req("intermediate_size", &e.expert_intermediate));  // expert (and shared)
  AFD_RETURN_IF_ERROR(r.req("num_local_experts", &e.routed_experts));
  AFD_RETURN_IF_ERROR(r.req("num_experts_per_tok", &e.experts_per_token));
  AFD_RETURN_IF_ERROR(r.opt("interleave_moe_layer_step", &step, false));
  AFD_RETURN_IF_ERROR(r.opt("no_rope_layer_interval", &interval));
  AFD_RETURN_IF_ERROR(r.opt("attention_chunk_size", &chunk));  // null: no chunked layers
  // Llama4TextMoe always has one shared expert as wide as a routed one (§1.5).
  e.shared_intermediate = e.expert_intermediate;

  std::vector<bool> moe = llama4_default_moe(L, step);
  if (r.has("moe_layers")) {
    std::vector<int64_t> idx;
    AFD_RETURN_IF_ERROR(r.int_list("moe_layers", &idx));
    for (int64_t i : idx)
      if (i < 0 || i >= L)
        return InvalidArgument("{}: layer {} is outside [0, {})", r.where("moe_layers"), i, L);
    moe = moe_layers_from_indices(L, idx);
  }
  if (std::find(moe.begin(), moe.end(), false) != moe.end())
    AFD_RETURN_IF_ERROR(r.req("intermediate_size_mlp", &dense));

  std::vector<bool> rope = llama4_default_rope(L, interval);
  std::vector<int64_t> no_rope;
  AFD_RETURN_IF_ERROR(r.int_list("no_rope_layers", &no_rope));
  if (!no_rope.empty()) {  // HF: an empty list means "use the interval rule"
    AFD_RETURN_IF_ERROR(r.check_len("no_rope_layers", no_rope.size(), L));
    for (size_t i = 0; i < no_rope.size(); ++i) rope[i] = no_rope[i] != 0;  // 1 = uses RoPE
  }
  std::vector<bool> chunked(static_cast<size_t>(L), false);
  std::vector<std::string> types;
  AFD_RETURN_IF_ERROR(r.str_list("layer_types", &types));
  if (!types.empty()) {
    AFD_RETURN_IF_ERROR(r.check_len("layer_types", types.size(), L));
    for (size_t i = 0; i < types.size(); ++i) {
      if (types[i] != "chunked_attention" && types[i] != "full_attention")
        return InvalidArgument("{}: \"{}\" is neither chunked_attention nor full_attention",
                               r.where("layer_types"), types[i]);
      chunked[i] = types[i] == "chunked_attention";
    }
  } else {
    for (size_t i = 0; i < chunked.size(); ++i) chunked[i] = rope[i] && chunk > 0;
  }
  for (size_t i = 0; i < chunked.size(); ++i)
    if (chunked[i] && chunk <= 0)
      return InvalidArgument("{}: chunked layers need a positive attention_chunk_size",
                             r.where("attention_chunk_size"));
  return assemble(r.source, "llama4", H, llama4_attention(rope, chunked, heads, kv, d, chunk), moe,
                  dense, e, r.source);
}

Result<ModelShape> read_minimax(const Fields& r) {
  int64_t L = 0, H = 0, heads = 0, kv = 0, d = 0;
  MoeShape e;
  AFD_RETURN_IF_ERROR(r.req("num_hidden_layers", &L));
  AFD_RETURN_IF_ERROR(r.req("hidden_size", &H));
  AFD_RETURN_IF_ERROR(r.req("num_attention_heads", &heads));
  AFD_RETURN_IF_ERROR(r.req("num_key_value_heads", &kv));
  d = H / heads;
  AFD_RETURN_IF_ERROR(r.opt("head_dim", &d, false));
  AFD_RETURN_IF_ERROR(r.req("intermediate_size", &e.expert_intermediate));
  AFD_RETURN_IF_ERROR(r.req("num_local_experts", &e.routed_experts));
  AFD_RETURN_IF_ERROR(r.req("num_experts_per_tok", &e.experts_per_token));
  AFD_RETURN_IF_ERROR(r.opt("shared_intermediate_size", &e.shared_intermediate));

  std::vector<bool> lightning = minimax_default_lightning(L);
  std::vector<int64_t> attn_types;
  std::vector<std::string> types;
  AFD_RETURN_IF_ERROR(r.int_list("attn_type_list", &attn_types));
  AFD_RETURN_IF_ERROR(r.str_list("layer_types", &types));
  if (!attn_types.empty()) {  // vLLM/MiniMax form: 0 = lightning, 1 = softmax
    AFD_RETURN_IF_ERROR(r.check_len("attn_type_list", attn_types.size(), L));
    for (size_t i = 0; i < attn_types.size(); ++i) lightning[i] = attn_types[i] == 0;
  } else if (!types.empty()) {  // transformers form
    AFD_RETURN_IF_ERROR(r.check_len("layer_types", types.size(), L));
    for (size_t i = 0; i < types.size(); ++i) {
      if (types[i] != "linear_attention" && types[i] != "full_attention")
        return InvalidArgument("{}: \"{}\" is neither linear_attention nor full_attention",
                               r.where("layer_types"), types[i]);
      lightning[i] = types[i] == "linear_attention";
    }
  }
  return assemble(r.source, "minimax", H, minimax_attention(lightning, heads, kv, d),
                  std::vector<bool>(static_cast<size_t>(L), true), 0, e, r.source);
}

enum class Family { kNone, kStep3, kMla, kQwen3, kQwen3Moe, kLlama4, kMinimax };

Family family_of(const std::string& t) {
  if (t == "step3_vl" || t == "step3_text" || t == "step3") return Family::kStep3;
  if (t == "deepseek_v3" || t == "kimi_k2") return Family::kMla;
  if (t == "qwen3") return Family::kQwen3;
  if (t == "qwen3_moe") return Family::kQwen3Moe;
  if (t == "llama4" || t == "llama4_text") return Family::kLlama4;
  if (t == "minimax" || t == "minimax_m1" || t == "minimax_text_01") return Family::kMinimax;
  return Family::kNone;
}

}  // namespace

std::vector<std::string> supported_model_types() {
  return {"step3_vl", "step3_text",  "deepseek_v3", "kimi_k2",    "qwen3",          "qwen3_moe",
          "llama4",   "llama4_text", "minimax",     "minimax_m1", "minimax_text_01"};
}

Result<ModelShape> model_from_config_json(const std::string& text, const std::string& source) {
  json top;
  try {
    top = json::parse(text);
  } catch (const json::parse_error& e) {
    return InvalidArgument("{}: not valid JSON: {}", source, e.what());
  }
  if (!top.is_object()) return InvalidArgument("{}: must hold a JSON object", source);
  auto type_of = [](const json& o) -> std::string {
    auto it = o.find("model_type");
    return it != o.end() && it->is_string() ? it->get<std::string>() : "";
  };
  // Multimodal configs (step3_vl, llama4) keep the language model under text_config.
  const json* cfg = &top;
  std::string prefix, type = type_of(top);
  if (top.contains("text_config") && top["text_config"].is_object()) {
    cfg = &top["text_config"];
    prefix = "text_config.";
    std::string inner = type_of(*cfg);
    if (family_of(inner) != Family::kNone || family_of(type) == Family::kNone)
      type = inner.empty() ? type : inner;
  }
  if (type.empty())
    return InvalidArgument("{}: {}model_type: missing; supported: {}", source, prefix,
                           fmt::join(supported_model_types(), ", "));
  Fields r{*cfg, source, prefix, type};
  switch (family_of(type)) {
    case Family::kStep3: return read_step3(r);
    case Family::kMla: return read_mla(r, type);
    case Family::kQwen3: return read_qwen3(r, false);
    case Family::kQwen3Moe: return read_qwen3(r, true);
    case Family::kLlama4: return read_llama4(r);
    case Family::kMinimax: return read_minimax(r);
    case Family::kNone: break;
  }
  return InvalidArgument("{}: model_type \"{}\" is not supported; supported: {}", source, type,
                         fmt::join(supported_model_types(), ", "));
}

}  // namespace afd::analysis
