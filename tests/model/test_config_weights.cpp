// ModelConfig parsing/validation and Step-3 weight loading: every bad input names its field or
// tensor.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "model/checkpoint_init.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "model/step3_weights.h"
#include "test_util.h"

namespace afd {
namespace {

using afd::testing::TempDir;
using nlohmann::json;

json text_config() {
  return json{{"model_type", "step3_text"},   {"hidden_size", 200},
              {"intermediate_size", 300},     {"num_attention_heads", 3},
              {"num_attention_groups", 1},    {"num_hidden_layers", 3},
              {"head_dim", 72},               {"share_q_dim", 136},
              {"moe_intermediate_size", 150}, {"moe_num_experts", 5},
              {"moe_top_k", 2},               {"share_expert_dim", 130},
              {"moe_layers_enum", "1, 2"},    {"norm_expert_weight", false},
              {"vocab_size", 333},            {"rms_norm_eps", 1e-5},
              {"rope_theta", 10000.0},        {"rope_scaling", nullptr},
              {"max_position_embedding", 512}};
}

Status parse(const json& j) { return ModelConfig::from_json(j.dump(), "cfg.json").status(); }

TEST(ModelConfig, FlatAndNestedParseTheSame) {
  auto flat = ModelConfig::from_json(text_config().dump(), "flat.json");
  ASSERT_TRUE(flat.ok()) << flat.status().to_string();
  json nested = {{"model_type", "step3_vl"}, {"text_config", text_config()},
                 {"vision_config", {{"hidden_size", 1792}}}};
  auto n = ModelConfig::from_json(nested.dump(), "nested.json");
  ASSERT_TRUE(n.ok()) << n.status().to_string();
  EXPECT_EQ(flat->hidden_size, 200);
  EXPECT_EQ(n->moe_layers, (std::vector<int64_t>{1, 2}));
  EXPECT_TRUE(n->is_moe_layer(2));
  EXPECT_FALSE(n->is_moe_layer(0));
  EXPECT_EQ(n->max_position_embedding, 512);
  EXPECT_EQ(n->q_width(), 216);
  // to_json round-trips.
  auto back = ModelConfig::from_json(n->to_json(), "back.json");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->num_params(), n->num_params());
  EXPECT_EQ(back->moe_layers, n->moe_layers);
}

TEST(ModelConfig, PluralMaxPositionsAndQuantizationConfig) {
  json t = text_config();
  t.erase("max_position_embedding");
  t["max_position_embeddings"] = 777;
  json top = {{"model_type", "step3_vl"},
              {"text_config", t},
              {"quantization_config",
               {{"quant_method", "fp8"}, {"fmt", "e4m3"}, {"weight_block_size", {128, 64}}}}};
  auto c = ModelConfig::from_json(top.dump(), "q.json");
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->max_position_embedding, 777);
  ASSERT_TRUE(c->quant.has_value());
  EXPECT_EQ(c->quant->block_k, 64);
}

TEST(ModelConfig, ErrorsNameTheField) {
  struct Case {
    std::string field;
    json value;  // null: remove the field
  };
  for (const Case& k : std::vector<Case>{{"hidden_size", nullptr},
                                         {"hidden_size", "big"},
                                         {"num_attention_groups", 2},
                                         {"head_dim", 71},
                                         {"moe_top_k", 9},
                                         {"moe_layers_enum", "1,x"},
                                         {"moe_layers_enum", "7"},
                                         {"norm_expert_weight", 3},
                                         {"rope_scaling", {{"type", "yarn"}}},
                                         {"vocab_size", 0}}) {
    json t = text_config();
    if (k.value.is_null()) t.erase(k.field);
    else t[k.field] = k.value;
    Status s = parse(t);
    EXPECT_FALSE(s.ok()) << k.field;
    // Validation errors speak of the field by name; "moe_top_k" problems mention both.
    EXPECT_NE(s.message().find(k.field == "moe_top_k" ? "moe_top_k" : k.field), std::string::npos)
        << s.message();
    EXPECT_NE(s.message().find("cfg.json"), std::string::npos) << s.message();
  }
  EXPECT_FALSE(ModelConfig::from_json("{not json", "bad.json").ok());
  json other = text_config();
  other["model_type"] = "llama";
  EXPECT_NE(parse(other).message().find("llama"), std::string::npos);
  EXPECT_EQ(ModelConfig::from_file("/nonexistent/config.json").status().code(), Code::kNotFound);
}

TEST(ModelConfig, PresetsMatchThePaper) {
  auto s3 = ModelConfig::preset("step3").value();
  // step3.md §1: 316B parameters in the language model, 38B activated per token.
  EXPECT_NEAR(s3.num_params() / 1e9, 316.0, 1.0);
  EXPECT_NEAR(s3.num_active_params() / 1e9, 38.0, 0.5);
  EXPECT_EQ(s3.moe_layers.size(), 56u);
  auto small = ModelConfig::preset("step3-small").value();
  EXPECT_GE(small.num_params(), 100'000'000);
  EXPECT_LE(small.num_params(), 300'000'000);
  EXPECT_NE(small.q_width(), small.hidden_size);
  EXPECT_FALSE(small.moe_layers.empty());
  EXPECT_LT(static_cast<int64_t>(small.moe_layers.size()), small.num_hidden_layers);
  EXPECT_FALSE(ModelConfig::preset("step4").ok());
}

// ---- weight loading --------------------------------------------------------------------------

struct TinyCheckpoint {
  TempDir dir;
  ModelConfig cfg = ModelConfig::preset("step3-tiny").value();
  std::vector<Tensor> owned;
  std::vector<std::pair<std::string, TensorView>> tensors;

  explicit TinyCheckpoint(bool fp8 = false) {
    if (fp8) cfg.quant = Fp8QuantConfig{};
    for (const WeightSpec& s : step3_weight_specs(cfg)) {
      Tensor w = random_weight(s, 1);
      if (fp8 && s.quantizable) {
        Tensor q = Tensor::empty(DType::kF8E4M3, s.shape);
        Tensor sc = Tensor::empty(DType::kF32, fp8_scale_shape(s.shape, 128, 128));
        quantize_fp8_blocks(w.data<float>(), s.shape, 128, 128, q.data<uint8_t>(),
                            sc.data<float>());
        add(s.name, std::move(q));
        add(s.name + "_scale_inv", std::move(sc));
      } else {
        add(s.name, std::move(w));
      }
    }
  }
  void add(const std::string& name, Tensor t) {
    owned.push_back(std::move(t));
    tensors.emplace_back(name, owned.back().view());
  }
  void remove(const std::string& name) {
    std::erase_if(tensors, [&](auto& p) { return p.first == name; });
  }
  void rename_all(const std::string& prefix) {
    for (auto& p : tensors) p.first = prefix + p.first;
  }
  Result<Step3Weights> load() {
    std::string d = dir / "ckpt";
    std::filesystem::remove_all(d);
    Status s = write_checkpoint_shards(d, tensors, 2);
    if (!s.ok()) return s;
    auto ck = Checkpoint::open(d);
    if (!ck.ok()) return ck.status();
    return load_step3_weights(cfg, *ck);
  }
};

void expect_error_naming(Result<Step3Weights> r, const std::string& name) {
  ASSERT_FALSE(r.ok()) << "expected an error naming " << name;
  EXPECT_NE(r.status().message().find(name), std::string::npos) << r.status().message();
}

TEST(Step3Weights, LoadsBf16AndFp8) {
  TinyCheckpoint b;
  ASSERT_TRUE(b.load().ok()) << b.load().status().to_string();
  TinyCheckpoint f(/*fp8=*/true);
  auto w = f.load();
  ASSERT_TRUE(w.ok()) << w.status().to_string();
  EXPECT_EQ(w->layers[1].moe_gate.shape(), (Shape{6, 200, 160}));
}

TEST(Step3Weights, MissingTensorIsNamed) {
  TinyCheckpoint c;
  c.remove("model.layers.2.moe.down_proj.weight");
  expect_error_naming(c.load(), "model.layers.2.moe.down_proj.weight");
}

TEST(Step3Weights, WrongShapeIsNamed) {
  TinyCheckpoint c;
  c.remove("model.layers.0.self_attn.k_proj.weight");
  c.add("model.layers.0.self_attn.k_proj.weight", Tensor::zeros(DType::kBF16, {160, 48}));
  expect_error_naming(c.load(), "model.layers.0.self_attn.k_proj.weight");
}

TEST(Step3Weights, UnknownTensorIsNamedButVisionIsSkipped) {
  TinyCheckpoint c;
  c.add("vision_model.encoder.layers.0.weight", Tensor::zeros(DType::kBF16, {4, 4}));
  c.add("vit_downsampler.weight", Tensor::zeros(DType::kBF16, {4}));
  ASSERT_TRUE(c.load().ok()) << c.load().status().to_string();
  c.add("model.layers.0.self_attn.mystery.weight", Tensor::zeros(DType::kBF16, {3}));
  expect_error_naming(c.load(), "model.layers.0.self_attn.mystery.weight");
}

TEST(Step3Weights, LanguageModelPrefixIsAccepted) {
  TinyCheckpoint c;
  c.rename_all("model.language_model.");
  auto w = c.load();
  EXPECT_TRUE(w.ok()) << w.status().to_string();
}

TEST(Step3Weights, Fp8WithoutOrWithBadScaleIsNamed) {
  TinyCheckpoint c(/*fp8=*/true);
  c.remove("model.layers.1.moe.up_proj.weight_scale_inv");
  expect_error_naming(c.load(), "model.layers.1.moe.up_proj.weight");

  TinyCheckpoint d(/*fp8=*/true);
  d.remove("model.layers.0.self_attn.wq.weight_scale_inv");
  d.add("model.layers.0.self_attn.wq.weight_scale_inv", Tensor::zeros(DType::kF32, {1, 1}));
  expect_error_naming(d.load(), "model.layers.0.self_attn.wq.weight_scale_inv");

  TinyCheckpoint e;  // a scale beside a BF16 weight is not part of the model
  e.add("model.layers.0.self_attn.wq.weight_scale_inv", Tensor::zeros(DType::kF32, {2, 2}));
  expect_error_naming(e.load(), "model.layers.0.self_attn.wq.weight_scale_inv");
}

TEST(Step3Weights, Fp8BlockDequantizationUsesEachBlocksScale) {
  // [2 experts, 130, 3] with 128x128 blocks: rows 128..129 fall in a partial second block.
  Shape shape = {2, 130, 3};
  std::vector<uint8_t> q(2 * 130 * 3, f32_to_fp8e4m3(1.5f));
  std::vector<float> scale = {2.0f, 3.0f, 5.0f, 7.0f};  // [2, 2, 1]
  std::vector<float> out(q.size());
  dequantize_fp8_blocks(q.data(), scale.data(), shape, 128, 128, out.data());
  EXPECT_EQ(out[0], 3.0f);                      // expert 0, row 0
  EXPECT_EQ(out[127 * 3 + 2], 3.0f);            // expert 0, row 127
  EXPECT_EQ(out[128 * 3], 4.5f);                // expert 0, row 128: second block
  EXPECT_EQ(out[130 * 3], 7.5f);                // expert 1, row 0
  EXPECT_EQ(out[(130 + 129) * 3 + 1], 10.5f);   // expert 1, row 129
  // quantize -> dequantize is within half an e4m3 step of each value.
  std::vector<float> w(130 * 3);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.37f * i) * (i < 200 ? 0.01f : 10.0f);
  std::vector<uint8_t> q2(w.size());
  std::vector<float> s2(2), back(w.size());
  quantize_fp8_blocks(w.data(), {130, 3}, 128, 128, q2.data(), s2.data());
  dequantize_fp8_blocks(q2.data(), s2.data(), {130, 3}, 128, 128, back.data());
  for (size_t i = 0; i < w.size(); ++i) {
    float blockmax = s2[i / 3 / 128] * 448.0f;
    EXPECT_LE(std::fabs(back[i] - w[i]), std::fabs(w[i]) / 16 + blockmax * std::ldexp(1.0f, -10))
        << i;
  }
}

}  // namespace
}  // namespace afd
