// Hugging Face config.json files, written here from the tables of cost-model.md §1, give exactly
// the presets' shapes and numbers; malformed or unsupported configs are clear errors.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "analysis/cost.h"
#include "analysis/model_shape.h"
#include "test_util.h"

namespace afd::analysis {
namespace {

using nlohmann::json;

void expect_same(const ModelShape& a, const ModelShape& b) {
  ASSERT_EQ(a.num_layers(), b.num_layers());
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.sparsity(), b.sparsity());
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const AttentionShape &x = a.layers[i].attention, &y = b.layers[i].attention;
    EXPECT_EQ(x.kind, y.kind) << i;
    EXPECT_EQ(x.q_heads, y.q_heads) << i;
    EXPECT_EQ(x.kv_heads, y.kv_heads) << i;
    EXPECT_EQ(x.head_dim, y.head_dim) << i;
    EXPECT_EQ(x.q_lora_rank, y.q_lora_rank) << i;
    EXPECT_EQ(x.kv_lora_rank, y.kv_lora_rank) << i;
    EXPECT_EQ(x.cache_bytes, y.cache_bytes) << i;
    EXPECT_EQ(x.window, y.window) << i;
    EXPECT_EQ(a.layers[i].ffn.moe, b.layers[i].ffn.moe) << i;
    EXPECT_EQ(a.layers[i].ffn.active_intermediate, b.layers[i].ffn.active_intermediate) << i;
    EXPECT_EQ(a.layers[i].ffn.total_intermediate, b.layers[i].ffn.total_intermediate) << i;
  }
  for (int64_t T : {1, 4096, 8192, 8193, 32768, 131072}) {
    const TokenCost p = token_cost(a, T), q = token_cost(b, T);
    EXPECT_EQ(p.kv_bytes, q.kv_bytes) << T;
    EXPECT_EQ(p.attention_flops, q.attention_flops) << T;
    EXPECT_EQ(p.linear_flops, q.linear_flops) << T;
    EXPECT_EQ(p.ffn_flops, q.ffn_flops) << T;
  }
}

// Through a real file, as `--model PATH` reads it.
ModelShape from_file(const json& config) {
  afd::testing::TempDir d;
  { std::ofstream(d / "config.json") << config.dump(2); }
  auto m = load_model_shape(d.str());  // a folder holding config.json
  EXPECT_TRUE(m.ok()) << m.status().message();
  return m.value();
}

std::string layer_list(int from, int to) {
  std::string s;
  for (int i = from; i <= to; ++i) s += (s.empty() ? "" : ",") + std::to_string(i);
  return s;
}

json step3_config() {  // §1.9 and step3.md §2: nested step3_vl with a text_config
  return {{"model_type", "step3_vl"},
          {"architectures", {"Step3VLForConditionalGeneration"}},
          {"text_config",
           {{"model_type", "step3_text"},
            {"hidden_size", 7168},
            {"intermediate_size", 18432},
            {"num_attention_heads", 64},
            {"num_attention_groups", 1},
            {"num_hidden_layers", 61},
            {"head_dim", 256},
            {"share_q_dim", 2048},
            {"moe_intermediate_size", 5120},
            {"moe_num_experts", 48},
            {"moe_top_k", 3},
            {"share_expert_dim", 5120},
            {"moe_layers_enum", layer_list(4, 59)},
            {"vocab_size", 128815},
            {"rope_theta", 500000.0},
            {"max_position_embedding", 65536}}}};
}

json deepseek_config() {  // §1.1
  return {{"model_type", "deepseek_v3"},
          {"architectures", {"DeepseekV3ForCausalLM"}},
          {"hidden_size", 7168},
          {"intermediate_size", 18432},
          {"moe_intermediate_size", 2048},
          {"num_hidden_layers", 61},
          {"num_nextn_predict_layers", 1},
          {"num_attention_heads", 128},
          {"num_key_value_heads", 128},
          {"q_lora_rank", 1536},
          {"kv_lora_rank", 512},
          {"qk_nope_head_dim", 128},
          {"qk_rope_head_dim", 64},
          {"v_head_dim", 128},
          {"n_routed_experts", 256},
          {"n_shared_experts", 1},
          {"num_experts_per_tok", 8},
          {"first_k_dense_replace", 3},
          {"moe_layer_freq", 1},
          {"n_group", 8},
          {"topk_group", 4},
          {"routed_scaling_factor", 2.5},
          {"vocab_size", 129280},
          {"quantization_config",
           {{"quant_method", "fp8"}, {"fmt", "e4m3"}, {"weight_block_size", {128, 128}}}}};
}

json qwen3_moe_config() {  // §1.3
  return {{"model_type", "qwen3_moe"},
          {"hidden_size", 4096},
          {"intermediate_size", 12288},
          {"num_hidden_layers", 94},
          {"num_attention_heads", 64},
          {"num_key_value_heads", 4},
          {"head_dim", 128},
          {"num_experts", 128},
          {"num_experts_per_tok", 8},
          {"moe_intermediate_size", 1536},
          {"decoder_sparse_step", 1},
          {"mlp_only_layers", json::array()},
          {"norm_topk_prob", true},
          {"vocab_size", 151936},
          {"rope_theta", 1000000.0}};
}

TEST(AnalysisConfig, Step3EqualsPreset) {
  expect_same(from_file(step3_config()), model_preset("step3").value());
  // A flat text-only config and a moe_layers_enum given as a list read the same.
  json flat = step3_config()["text_config"];
  std::vector<int> idx;
  for (int i = 4; i <= 59; ++i) idx.push_back(i);
  flat["moe_layers_enum"] = idx;
  expect_same(from_file(flat), model_preset("step3").value());
}

TEST(AnalysisConfig, DeepSeekV3AndKimiK2EqualPresets) {
  expect_same(from_file(deepseek_config()), model_preset("deepseek-v3").value());
  json kimi = deepseek_config();  // §1.2
  kimi["model_type"] = "kimi_k2";
  kimi["num_attention_heads"] = 64;
  kimi["num_key_value_heads"] = 64;
  kimi["n_routed_experts"] = 384;
  kimi["first_k_dense_replace"] = 1;
  kimi["n_group"] = 1;
  kimi["topk_group"] = 1;
  expect_same(from_file(kimi), model_preset("kimi-k2").value());
}

TEST(AnalysisConfig, Qwen3EqualPresets) {
  expect_same(from_file(qwen3_moe_config()), model_preset("qwen3-235b-a22b").value());
  json dense = {
      {"model_type", "qwen3"},   {"hidden_size", 5120},       {"intermediate_size", 25600},
      {"num_hidden_layers", 64}, {"num_attention_heads", 64}, {"num_key_value_heads", 8},
      {"head_dim", 128},         {"vocab_size", 151936}};
  expect_same(from_file(dense), model_preset("qwen3-32b").value());
}

TEST(AnalysisConfig, Llama4EqualsPresetWithDefaultsAndExplicitLayouts) {
  // §1.5: the full config was not read verbatim; the HF defaults define the layout.
  json text = {{"model_type", "llama4_text"},    {"hidden_size", 5120},
               {"num_hidden_layers", 48},        {"num_attention_heads", 40},
               {"num_key_value_heads", 8},       {"head_dim", 128},
               {"intermediate_size", 8192},      {"intermediate_size_mlp", 16384},
               {"num_local_experts", 128},       {"num_experts_per_tok", 1},
               {"interleave_moe_layer_step", 2}, {"attention_chunk_size", 8192},
               {"use_qk_norm", false},           {"vocab_size", 202048}};
  json top = {{"model_type", "llama4"}, {"text_config", text}};
  const ModelShape preset = model_preset("llama4-maverick").value();
  expect_same(from_file(top), preset);
  // The same layout spelled out (as newer exports do).
  std::vector<int> no_rope, moe;
  std::vector<std::string> types;
  for (int i = 0; i < 48; ++i) {
    no_rope.push_back((i + 1) % 4 != 0);
    types.push_back((i + 1) % 4 != 0 ? "chunked_attention" : "full_attention");
    if (i % 2 == 1) moe.push_back(i);
  }
  top["text_config"]["no_rope_layers"] = no_rope;
  top["text_config"]["layer_types"] = types;
  top["text_config"]["moe_layers"] = moe;
  expect_same(from_file(top), preset);
}

TEST(AnalysisConfig, MiniMaxEqualsPresetInBothLayerForms) {
  std::vector<int> attn_types;
  std::vector<std::string> layer_types;
  for (int r = 0; r < 10; ++r)
    for (int k = 0; k < 8; ++k) {
      attn_types.push_back(k == 7);
      layer_types.push_back(k == 7 ? "full_attention" : "linear_attention");
    }
  json cfg = {
      {"model_type", "minimax_m1"},    {"hidden_size", 6144},          {"num_hidden_layers", 80},
      {"num_attention_heads", 64},     {"num_key_value_heads", 8},     {"head_dim", 128},
      {"intermediate_size", 9216},     {"num_local_experts", 32},      {"num_experts_per_tok", 2},
      {"shared_intermediate_size", 0}, {"attn_type_list", attn_types}, {"rotary_dim", 64},
      {"vocab_size", 200064}};
  const ModelShape preset = model_preset("minimax-m1").value();
  expect_same(from_file(cfg), preset);
  cfg.erase("attn_type_list");
  cfg["model_type"] = "minimax";
  cfg["layer_types"] = layer_types;
  expect_same(from_file(cfg), preset);
}

TEST(AnalysisConfig, LayoutRulesFollowTransformers) {
  // DeepSeek with moe_layer_freq 2 and no q LoRA; Qwen3-MoE with mlp_only_layers and a step.
  json ds = deepseek_config();
  ds["moe_layer_freq"] = 2;
  ds["q_lora_rank"] = nullptr;
  const ModelShape m = model_from_config_json(ds.dump(), "ds.json").value();
  EXPECT_FALSE(m.layers[3].ffn.moe);
  EXPECT_TRUE(m.layers[4].ffn.moe);
  EXPECT_EQ(m.layers[0].attention.q_lora_rank, 0);
  const double full_q = 7168.0 * 128 * (128 + 64);  // H -> heads x (nope + rope) directly
  EXPECT_EQ(layer_cost(m.layers[0], 7168, 1).linear_flops,
            2 * (full_q + 7168.0 * 576 + 512.0 * 128 * 256 + 128.0 * 128 * 7168));
  json q = qwen3_moe_config();
  q["decoder_sparse_step"] = 2;
  q["mlp_only_layers"] = {1};
  const ModelShape qm = model_from_config_json(q.dump(), "q.json").value();
  EXPECT_FALSE(qm.layers[0].ffn.moe);  // (0 + 1) % 2 != 0
  EXPECT_FALSE(qm.layers[1].ffn.moe);  // listed in mlp_only_layers
  EXPECT_TRUE(qm.layers[3].ffn.moe);
  EXPECT_EQ(qm.layers[0].ffn.active_intermediate, 12288);
}

TEST(AnalysisConfig, ErrorsNameTheFileFieldOrType) {
  auto bad = [](const std::string& text, std::vector<std::string> needles) {
    auto r = model_from_config_json(text, "cfg.json");
    ASSERT_FALSE(r.ok()) << text;
    for (const auto& n : needles)
      EXPECT_NE(r.status().message().find(n), std::string::npos) << r.status().message();
  };
  bad("{\"model_type\": ", {"cfg.json", "not valid JSON"});
  bad("[]", {"cfg.json", "object"});
  bad("{\"hidden_size\": 5}", {"model_type", "qwen3_moe"});  // lists what is supported
  bad("{\"model_type\": \"mistral\"}", {"\"mistral\"", "deepseek_v3", "minimax"});
  json ds = deepseek_config();
  ds.erase("kv_lora_rank");
  bad(ds.dump(), {"cfg.json", "kv_lora_rank", "missing"});
  json st = step3_config();
  st["text_config"].erase("moe_layers_enum");
  bad(st.dump(), {"text_config.moe_layers_enum", "missing"});
  st = step3_config();
  st["text_config"]["moe_layers_enum"] = "4,5,x";
  bad(st.dump(), {"moe_layers_enum", "\"x\""});
  st = step3_config();
  st["text_config"]["hidden_size"] = "big";
  bad(st.dump(), {"text_config.hidden_size", "integer"});
  json q = qwen3_moe_config();
  q["num_experts_per_tok"] = 200;
  bad(q.dump(), {"top-k 200", "128"});
  json mm = {{"model_type", "minimax"},  {"hidden_size", 64},        {"num_hidden_layers", 2},
             {"num_attention_heads", 2}, {"num_key_value_heads", 1}, {"intermediate_size", 8},
             {"num_local_experts", 2},   {"num_experts_per_tok", 1}, {"attn_type_list", {0}}};
  bad(mm.dump(), {"attn_type_list", "1 entries for 2 layers"});
  auto missing = load_model_shape("/no/such/config.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/no/such/config.json"), std::string::npos);
}

}  // namespace
}  // namespace afd::analysis
