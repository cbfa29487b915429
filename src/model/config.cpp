#include "model/config.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace afd {

using nlohmann::json;

bool ModelConfig::is_moe_layer(int64_t layer) const {
  return std::binary_search(moe_layers.begin(), moe_layers.end(), layer);
}

int64_t ModelConfig::num_params() const {
  const int64_t H = hidden_size;
  int64_t attn = share_q_dim * H + share_q_dim + q_width() * share_q_dim + 2 * head_dim * H +
                 H * q_width();
  int64_t dense = 3 * H * intermediate_size;
  int64_t moe = moe_num_experts * H + moe_num_experts * 3 * H * moe_intermediate_size +
                3 * H * share_expert_dim;
  int64_t n = 2 * vocab_size * H + H;
  for (int64_t l = 0; l < num_hidden_layers; ++l) n += 2 * H + attn + (is_moe_layer(l) ? moe : dense);
  return n;
}

int64_t ModelConfig::num_active_params() const {
  const int64_t H = hidden_size;
  int64_t attn = share_q_dim * H + share_q_dim + q_width() * share_q_dim + 2 * head_dim * H +
                 H * q_width();
  int64_t dense = 3 * H * intermediate_size;
  int64_t moe = moe_num_experts * H + moe_top_k * 3 * H * moe_intermediate_size +
                3 * H * share_expert_dim;
  int64_t n = vocab_size * H + H;  // lm_head + final norm; the embedding is a row lookup
  for (int64_t l = 0; l < num_hidden_layers; ++l) n += 2 * H + attn + (is_moe_layer(l) ? moe : dense);
  return n;
}

Status ModelConfig::validate() const {
  auto pos = [&](const char* field, int64_t v) -> Status {
    if (v <= 0) return InvalidArgument("{}: {} must be positive, got {}", name, field, v);
    return Status::OK();
  };
  AFD_RETURN_IF_ERROR(pos("hidden_size", hidden_size));
  AFD_RETURN_IF_ERROR(pos("intermediate_size", intermediate_size));
  AFD_RETURN_IF_ERROR(pos("num_attention_heads", num_attention_heads));
  AFD_RETURN_IF_ERROR(pos("num_hidden_layers", num_hidden_layers));
  AFD_RETURN_IF_ERROR(pos("head_dim", head_dim));
  AFD_RETURN_IF_ERROR(pos("share_q_dim", share_q_dim));
  AFD_RETURN_IF_ERROR(pos("vocab_size", vocab_size));
  AFD_RETURN_IF_ERROR(pos("max_position_embedding", max_position_embedding));
  if (num_attention_groups != 1)
    return InvalidArgument("{}: num_attention_groups must be 1 (MFA shares one K/V head), got {}",
                           name, num_attention_groups);
  if (head_dim % 2 != 0)
    return InvalidArgument("{}: head_dim must be even for rotary embedding, got {}", name, head_dim);
  if (!(rms_norm_eps > 0)) return InvalidArgument("{}: rms_norm_eps must be positive", name);
  if (!(rope_theta > 0)) return InvalidArgument("{}: rope_theta must be positive", name);
  if (!moe_layers.empty()) {
    AFD_RETURN_IF_ERROR(pos("moe_num_experts", moe_num_experts));
    AFD_RETURN_IF_ERROR(pos("moe_top_k", moe_top_k));
    AFD_RETURN_IF_ERROR(pos("moe_intermediate_size", moe_intermediate_size));
    AFD_RETURN_IF_ERROR(pos("share_expert_dim", share_expert_dim));
    if (moe_top_k > moe_num_experts)
      return InvalidArgument("{}: moe_top_k ({}) exceeds moe_num_experts ({})", name, moe_top_k,
                             moe_num_experts);
  }
  for (size_t i = 0; i < moe_layers.size(); ++i) {
    if (moe_layers[i] < 0 || moe_layers[i] >= num_hidden_layers)
      return InvalidArgument("{}: moe_layers_enum lists layer {} outside [0, {})", name,
                             moe_layers[i], num_hidden_layers);
    if (i > 0 && moe_layers[i] <= moe_layers[i - 1])
      return InvalidArgument("{}: moe_layers_enum must list distinct layers in ascending order",
                             name);
  }
  if (quant && (quant->block_n <= 0 || quant->block_k <= 0))
    return InvalidArgument("{}: quantization_config.weight_block_size must be positive", name);
  return Status::OK();
}

std::string ModelConfig::to_json() const {
  std::string moe_enum;
  for (size_t i = 0; i < moe_layers.size(); ++i)
    moe_enum += (i ? "," : "") + std::to_string(moe_layers[i]);
  json text = {
      {"model_type", "step3_text"},
      {"architectures", {"Step3TextForCausalLM"}},
      {"hidden_size", hidden_size},
      {"intermediate_size", intermediate_size},
      {"num_attention_heads", num_attention_heads},
      {"num_attention_groups", num_attention_groups},
      {"num_hidden_layers", num_hidden_layers},
      {"head_dim", head_dim},
      {"share_q_dim", share_q_dim},
      {"moe_intermediate_size", moe_intermediate_size},
      {"moe_num_experts", moe_num_experts},
      {"moe_top_k", moe_top_k},
      {"share_expert_dim", share_expert_dim},
      {"moe_layers_enum", moe_enum},
      {"norm_expert_weight", norm_expert_weight},
      {"vocab_size", vocab_size},
      {"rms_norm_eps", rms_norm_eps},
      {"rope_theta", rope_theta},
      {"rope_scaling", nullptr},
      {"max_position_embedding", max_position_embedding},
      {"torch_dtype", "bfloat16"},
  };
  if (bos_token_id) text["bos_token_id"] = *bos_token_id;
  if (eos_token_id) text["eos_token_id"] = *eos_token_id;
  json top = {{"model_type", "step3_vl"},
              {"architectures", {"Step3VLForConditionalGeneration"}},
              {"text_config", text}};
  if (quant) {
    top["quantization_config"] = {{"quant_method", "fp8"},
                                  {"fmt", quant->fmt},
                                  {"activation_scheme", quant->activation_scheme},
                                  {"weight_block_size", {quant->block_n, quant->block_k}}};
  }
  return top.dump(2) + "\n";
}

namespace {

// Reads typed fields of one JSON object, naming "<source>: <prefix><field>" in errors.
struct FieldReader {
  const json& obj;
  std::string source, prefix;

  std::string where(const char* f) const { return fmt::format("{}: {}{}", source, prefix, f); }

  Status int_field(const char* f, int64_t* out, bool required) const {
    auto it = obj.find(f);
    if (it == obj.end() || it->is_null()) {
      if (required) return InvalidArgument("{}: missing required field", where(f));
      return Status::OK();
    }
    if (!it->is_number_integer() || it->get<int64_t>() < 0)
      return InvalidArgument("{}: must be a non-negative integer, got {}", where(f), it->dump());
    *out = it->get<int64_t>();
    return Status::OK();
  }
  Status float_field(const char* f, double* out) const {
    auto it = obj.find(f);
    if (it == obj.end() || it->is_null()) return Status::OK();
    if (!it->is_number()) return InvalidArgument("{}: must be a number, got {}", where(f), it->dump());
    *out = it->get<double>();
    return Status::OK();
  }
  Status bool_field(const char* f, bool* out) const {
    auto it = obj.find(f);
    if (it == obj.end() || it->is_null()) return Status::OK();
    if (!it->is_boolean()) return InvalidArgument("{}: must be true or false, got {}", where(f), it->dump());
    *out = it->get<bool>();
    return Status::OK();
  }
};

Status parse_moe_layers(const json& v, const std::string& where, std::vector<int64_t>* out) {
  out->clear();
  if (v.is_array()) {
    for (const auto& e : v) {
      if (!e.is_number_integer()) return InvalidArgument("{}: entries must be integers", where);
      out->push_back(e.get<int64_t>());
    }
    return Status::OK();
  }
  if (!v.is_string())
    return InvalidArgument("{}: must be a comma-separated string of layer indices", where);
  std::stringstream ss(v.get<std::string>());
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    if (b == std::string::npos) continue;
    item = item.substr(b, e - b + 1);
    char* end = nullptr;
    long long x = std::strtoll(item.c_str(), &end, 10);
    if (end == item.c_str() || *end != '\0')
      return InvalidArgument("{}: '{}' is not a layer index", where, item);
    out->push_back(x);
  }
  return Status::OK();
}

Status parse_quant(const json& q, const std::string& where, std::optional<Fp8QuantConfig>* out) {
  if (!q.is_object()) return InvalidArgument("{}: must be an object", where);
  std::string method = q.value("quant_method", "");
  if (method != "fp8")
    return InvalidArgument("{}.quant_method: only \"fp8\" is supported, got \"{}\"", where, method);
  Fp8QuantConfig c;
  if (q.contains("fmt")) c.fmt = q["fmt"].get<std::string>();
  if (c.fmt != "e4m3") return InvalidArgument("{}.fmt: only \"e4m3\" is supported", where);
  if (q.contains("activation_scheme") && q["activation_scheme"].is_string())
    c.activation_scheme = q["activation_scheme"].get<std::string>();
  if (q.contains("weight_block_size")) {
    const json& b = q["weight_block_size"];
    if (!b.is_array() || b.size() != 2 || !b[0].is_number_integer() || !b[1].is_number_integer())
      return InvalidArgument("{}.weight_block_size: must be [rows, cols]", where);
    c.block_n = b[0].get<int64_t>();
    c.block_k = b[1].get<int64_t>();
  }
  *out = c;
  return Status::OK();
}

}  // namespace

Result<ModelConfig> ModelConfig::from_json(const std::string& text, const std::string& source) {
  json top;
  try {
    top = json::parse(text);
  } catch (const json::parse_error& e) {
    return InvalidArgument("{}: not valid JSON: {}", source, e.what());
  }
  if (!top.is_object()) return InvalidArgument("{}: must hold a JSON object", source);

  const json* cfg = &top;
  std::string prefix;
  std::string model_type = top.value("model_type", "");
  if (model_type == "step3_vl" || top.contains("text_config")) {
    if (!top.contains("text_config") || !top["text_config"].is_object())
      return InvalidArgument("{}: text_config: missing (model_type step3_vl needs it)", source);
    cfg = &top["text_config"];
    prefix = "text_config.";
    model_type = cfg->value("model_type", "step3_text");
  }
  if (model_type != "step3_text" && model_type != "step3")
    return InvalidArgument("{}: {}model_type: \"{}\" is not a Step-3 text model (step3_text)",
                           source, prefix, model_type);

  ModelConfig c;
  c.name = source;
  FieldReader r{*cfg, source, prefix};
  AFD_RETURN_IF_ERROR(r.int_field("hidden_size", &c.hidden_size, true));
  AFD_RETURN_IF_ERROR(r.int_field("intermediate_size", &c.intermediate_size, true));
  AFD_RETURN_IF_ERROR(r.int_field("num_attention_heads", &c.num_attention_heads, true));
  AFD_RETURN_IF_ERROR(r.int_field("num_attention_groups", &c.num_attention_groups, false));
  AFD_RETURN_IF_ERROR(r.int_field("num_hidden_layers", &c.num_hidden_layers, true));
  AFD_RETURN_IF_ERROR(r.int_field("head_dim", &c.head_dim, true));
  AFD_RETURN_IF_ERROR(r.int_field("share_q_dim", &c.share_q_dim, true));
  AFD_RETURN_IF_ERROR(r.int_field("moe_intermediate_size", &c.moe_intermediate_size, true));
  AFD_RETURN_IF_ERROR(r.int_field("moe_num_experts", &c.moe_num_experts, true));
  AFD_RETURN_IF_ERROR(r.int_field("moe_top_k", &c.moe_top_k, true));
  AFD_RETURN_IF_ERROR(r.int_field("share_expert_dim", &c.share_expert_dim, true));
  AFD_RETURN_IF_ERROR(r.int_field("vocab_size", &c.vocab_size, true));
  AFD_RETURN_IF_ERROR(r.bool_field("norm_expert_weight", &c.norm_expert_weight));
  AFD_RETURN_IF_ERROR(r.float_field("rms_norm_eps", &c.rms_norm_eps));
  AFD_RETURN_IF_ERROR(r.float_field("rope_theta", &c.rope_theta));
  if (cfg->contains("max_position_embedding"))
    AFD_RETURN_IF_ERROR(r.int_field("max_position_embedding", &c.max_position_embedding, false));
  else
    AFD_RETURN_IF_ERROR(r.int_field("max_position_embeddings", &c.max_position_embedding, false));
  for (const char* f : {"bos_token_id", "eos_token_id"}) {
    int64_t v = -1;
    if (cfg->contains(f) && (*cfg)[f].is_array()) continue;  // lists of ids: not used here
    AFD_RETURN_IF_ERROR(r.int_field(f, &v, false));
    if (v >= 0) (std::string(f) == "bos_token_id" ? c.bos_token_id : c.eos_token_id) = v;
  }
  if (cfg->contains("rope_scaling") && !(*cfg)["rope_scaling"].is_null())
    return InvalidArgument("{}: {}rope_scaling: {} is not supported (only null)", source, prefix,
                           (*cfg)["rope_scaling"].dump());
  if (!cfg->contains("moe_layers_enum"))
    return InvalidArgument("{}: {}moe_layers_enum: missing required field", source, prefix);
  AFD_RETURN_IF_ERROR(parse_moe_layers((*cfg)["moe_layers_enum"],
                                       fmt::format("{}: {}moe_layers_enum", source, prefix),
                                       &c.moe_layers));
  // quantization_config sits at the top level in HF exports; accept it in text_config too.
  if (top.contains("quantization_config") && !top["quantization_config"].is_null())
    AFD_RETURN_IF_ERROR(parse_quant(top["quantization_config"],
                                    fmt::format("{}: quantization_config", source), &c.quant));
  else if (cfg->contains("quantization_config") && !(*cfg)["quantization_config"].is_null())
    AFD_RETURN_IF_ERROR(parse_quant((*cfg)["quantization_config"],
                                    fmt::format("{}: {}quantization_config", source, prefix),
                                    &c.quant));
  std::sort(c.moe_layers.begin(), c.moe_layers.end());
  AFD_RETURN_IF_ERROR(c.validate());
  return c;
}

Result<ModelConfig> ModelConfig::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("{}: cannot open", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return from_json(ss.str(), path);
}

std::vector<std::string> ModelConfig::preset_names() { return {"step3", "step3-small", "step3-tiny"}; }

Result<ModelConfig> ModelConfig::preset(const std::string& name) {
  ModelConfig c;
  c.name = name;
  auto range = [](int64_t a, int64_t b) {
    std::vector<int64_t> v;
    for (int64_t i = a; i <= b; ++i) v.push_back(i);
    return v;
  };
  if (name == "step3") {
    c.hidden_size = 7168, c.intermediate_size = 18432, c.num_attention_heads = 64;
    c.num_hidden_layers = 61, c.head_dim = 256, c.share_q_dim = 2048;
    c.moe_intermediate_size = 5120, c.moe_num_experts = 48, c.moe_top_k = 3;
    c.share_expert_dim = 5120, c.moe_layers = range(4, 59), c.vocab_size = 128815;
    c.rope_theta = 500000, c.max_position_embedding = 65536;
  } else if (name == "step3-small") {
    // A CPU demo (~284 M parameters, 198 M of them the real-size vocabulary's embedding and
    // lm_head) with every structural feature: dense layers first and last, MoE in between,
    // shared expert, q low rank, one K/V head, heads*head_dim != hidden.
    c.hidden_size = 768, c.intermediate_size = 1536, c.num_attention_heads = 16;
    c.num_hidden_layers = 8, c.head_dim = 64, c.share_q_dim = 384;
    c.moe_intermediate_size = 320, c.moe_num_experts = 16, c.moe_top_k = 3;
    c.share_expert_dim = 320, c.moe_layers = range(2, 6), c.vocab_size = 128815;
    c.rope_theta = 500000, c.max_position_embedding = 65536;
  } else if (name == "step3-tiny") {
    // Unit tests: small, and sizes that are not multiples of 128 (FP8 edge blocks).
    c.hidden_size = 160, c.intermediate_size = 272, c.num_attention_heads = 4;
    c.num_hidden_layers = 4, c.head_dim = 48, c.share_q_dim = 136;
    c.moe_intermediate_size = 200, c.moe_num_experts = 6, c.moe_top_k = 3;
    c.share_expert_dim = 200, c.moe_layers = {1, 2}, c.vocab_size = 1000;
    c.rope_theta = 10000, c.max_position_embedding = 4096;
  } else {
    std::string names;
    for (auto& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
    return InvalidArgument("unknown model preset \"{}\" (presets: {})", name, names);
  }
  AFD_RETURN_IF_ERROR(c.validate());
  return c;
}

}  // namespace afd
