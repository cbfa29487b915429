#include "model/step3_weights.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <thread>

namespace afd {

std::vector<WeightSpec> step3_weight_specs(const ModelConfig& c) {
  const int64_t H = c.hidden_size, Q = c.share_q_dim, D = c.head_dim, QW = c.q_width();
  std::vector<WeightSpec> s;
  auto lin = [&](std::string n, Shape shape) {
    int64_t fan_in = shape.back();
    s.push_back({std::move(n), std::move(shape), true, WeightInit::kLinear, fan_in});
  };
  auto norm = [&](std::string n, int64_t dim) {
    s.push_back({std::move(n), {dim}, false, WeightInit::kNorm, dim});
  };
  s.push_back({"model.embed_tokens.weight", {c.vocab_size, H}, false, WeightInit::kEmbedding, H});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    std::string p = fmt::format("model.layers.{}.", l);
    norm(p + "input_layernorm.weight", H);
    norm(p + "post_attention_layernorm.weight", H);
    lin(p + "self_attn.q_proj.weight", {Q, H});
    lin(p + "self_attn.k_proj.weight", {D, H});
    lin(p + "self_attn.v_proj.weight", {D, H});
    norm(p + "self_attn.inter_norm.weight", Q);
    lin(p + "self_attn.wq.weight", {QW, Q});
    lin(p + "self_attn.o_proj.weight", {H, QW});
    if (c.is_moe_layer(l)) {
      const int64_t E = c.moe_num_experts, Im = c.moe_intermediate_size, S = c.share_expert_dim;
      // The router stays high precision in FP8 checkpoints.
      s.push_back({p + "moe.gate.weight", {E, H}, false, WeightInit::kLinear, H});
      lin(p + "moe.gate_proj.weight", {E, Im, H});
      lin(p + "moe.up_proj.weight", {E, Im, H});
      lin(p + "moe.down_proj.weight", {E, H, Im});
      lin(p + "share_expert.gate_proj.weight", {S, H});
      lin(p + "share_expert.up_proj.weight", {S, H});
      lin(p + "share_expert.down_proj.weight", {H, S});
    } else {
      const int64_t I = c.intermediate_size;
      lin(p + "mlp.gate_proj.weight", {I, H});
      lin(p + "mlp.up_proj.weight", {I, H});
      lin(p + "mlp.down_proj.weight", {H, I});
    }
  }
  norm("model.norm.weight", H);
  s.push_back({"lm_head.weight", {c.vocab_size, H}, false, WeightInit::kLinear, H});
  return s;
}

Shape fp8_scale_shape(const Shape& w, int64_t bn, int64_t bk) {
  AFD_CHECK(w.size() >= 2, "fp8 block scales need a matrix, got {}", shape_str(w));
  Shape s = w;
  s[s.size() - 2] = (w[w.size() - 2] + bn - 1) / bn;
  s[s.size() - 1] = (w[w.size() - 1] + bk - 1) / bk;
  return s;
}

namespace {

// Splits a block-scaled tensor into its matrices: count, rows, cols.
void matrix_dims(const Shape& shape, int64_t* mats, int64_t* rows, int64_t* cols) {
  *rows = shape[shape.size() - 2];
  *cols = shape[shape.size() - 1];
  *mats = shape_numel(shape) / std::max<int64_t>(1, *rows * *cols);
}

}  // namespace

void dequantize_fp8_blocks(const uint8_t* q, const float* scale_inv, const Shape& shape,
                           int64_t bn, int64_t bk, float* out) {
  int64_t mats, rows, cols;
  matrix_dims(shape, &mats, &rows, &cols);
  const int64_t sr = (rows + bn - 1) / bn, sc = (cols + bk - 1) / bk;
  for (int64_t m = 0; m < mats; ++m) {
    const float* s = scale_inv + m * sr * sc;
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t* qr = q + (m * rows + r) * cols;
      float* orow = out + (m * rows + r) * cols;
      const float* srow = s + (r / bn) * sc;
      for (int64_t c = 0; c < cols; ++c) orow[c] = fp8e4m3_to_f32(qr[c]) * srow[c / bk];
    }
  }
}

void quantize_fp8_blocks(const float* w, const Shape& shape, int64_t bn, int64_t bk, uint8_t* q,
                         float* scale_inv) {
  int64_t mats, rows, cols;
  matrix_dims(shape, &mats, &rows, &cols);
  const int64_t sr = (rows + bn - 1) / bn, sc = (cols + bk - 1) / bk;
  for (int64_t m = 0; m < mats; ++m) {
    for (int64_t br = 0; br < sr; ++br) {
      for (int64_t bc = 0; bc < sc; ++bc) {
        const int64_t r0 = br * bn, r1 = std::min(rows, r0 + bn);
        const int64_t c0 = bc * bk, c1 = std::min(cols, c0 + bk);
        float amax = 0;
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c)
            amax = std::max(amax, std::fabs(w[(m * rows + r) * cols + c]));
        const float scale = amax > 0 ? amax / kFp8E4M3Max : 1.0f;
        scale_inv[(m * sr + br) * sc + bc] = scale;
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) {
            const int64_t i = (m * rows + r) * cols + c;
            q[i] = f32_to_fp8e4m3(w[i] / scale);
          }
      }
    }
  }
}

namespace {

bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

bool is_vision(const std::string& n) {
  std::string r = starts_with(n, "model.") ? n.substr(6) : n;
  return starts_with(r, "vision_model.") || starts_with(r, "vit_downsampler") ||
         starts_with(r, "vit_large_projector");
}

// The canonical (prefix-free) name of a checkpoint tensor: "model.language_model.X" and
// "language_model.X" both become X when X starts with "model." or "lm_head.", and
// "model." + X otherwise (exports differ in whether they keep the inner "model.").
std::string canonical_name(const std::string& n) {
  for (const char* p : {"model.language_model.", "language_model."}) {
    if (starts_with(n, p)) {
      std::string r = n.substr(std::string(p).size());
      if (starts_with(r, "model.") || starts_with(r, "lm_head.")) return r;
      return "model." + r;
    }
  }
  return n;
}

struct Resolved {
  const TensorInfo* weight = nullptr;
  const TensorInfo* scale = nullptr;  // set for F8_E4M3 weights
};

// Matches checkpoint tensors to specs; appends every problem to `problems`.
std::vector<Resolved> resolve(const ModelConfig& cfg, const Checkpoint& ckpt,
                              const std::vector<WeightSpec>& specs,
                              std::vector<std::string>* problems) {
  std::map<std::string, const TensorInfo*> by_canon;
  for (const std::string& n : ckpt.names()) {
    if (is_vision(n)) continue;
    std::string c = canonical_name(n);
    const TensorInfo* t = ckpt.find(n);
    auto [it, fresh] = by_canon.emplace(c, t);
    if (!fresh)
      problems->push_back(fmt::format("tensors {} and {} are both {}", it->second->name, n, c));
  }
  const int64_t bn = cfg.quant ? cfg.quant->block_n : 128, bk = cfg.quant ? cfg.quant->block_k : 128;
  std::vector<Resolved> out(specs.size());
  std::map<std::string, bool> used;
  for (size_t i = 0; i < specs.size(); ++i) {
    const WeightSpec& s = specs[i];
    auto it = by_canon.find(s.name);
    if (it == by_canon.end()) {
      problems->push_back(fmt::format("missing tensor {} (expected shape {})", s.name,
                                      shape_str(s.shape)));
      continue;
    }
    const TensorInfo* t = it->second;
    used[s.name] = true;
    out[i].weight = t;
    if (t->shape != s.shape)
      problems->push_back(fmt::format("tensor {} in {}: shape {} but the config needs {}", t->name,
                                      t->file, shape_str(t->shape), shape_str(s.shape)));
    if (t->dtype == DType::kI32 || t->dtype == DType::kI64) {
      problems->push_back(fmt::format("tensor {} in {}: dtype {} is not a float type", t->name,
                                      t->file, dtype_safetensors_name(t->dtype)));
      out[i].weight = nullptr;
      continue;
    }
    if (t->dtype == DType::kF8E4M3) {
      std::string sname = s.name + "_scale_inv";
      auto sit = by_canon.find(sname);
      if (s.shape.size() < 2) {
        problems->push_back(fmt::format("tensor {} in {}: F8_E4M3 needs a matrix", t->name, t->file));
      } else if (sit == by_canon.end()) {
        problems->push_back(fmt::format("tensor {} in {}: F8_E4M3 weight without {}", t->name,
                                        t->file, sname));
      } else {
        used[sname] = true;
        const TensorInfo* sc = sit->second;
        Shape want = fp8_scale_shape(s.shape, bn, bk);
        if (sc->shape != want)
          problems->push_back(fmt::format("tensor {} in {}: shape {} but {} blocks of {} need {}",
                                          sc->name, sc->file, shape_str(sc->shape),
                                          shape_str(s.shape), fmt::format("{}x{}", bn, bk),
                                          shape_str(want)));
        else if (sc->dtype == DType::kI32 || sc->dtype == DType::kI64 ||
                 sc->dtype == DType::kF8E4M3)
          problems->push_back(fmt::format("tensor {} in {}: scale dtype {} must be F32/BF16/F16",
                                          sc->name, sc->file, dtype_safetensors_name(sc->dtype)));
        else
          out[i].scale = sc;
      }
    }
  }
  for (const auto& [canon, t] : by_canon) {
    if (used.count(canon)) continue;
    if (ends_with(canon, "_scale_inv"))
      problems->push_back(fmt::format("tensor {} in {}: a scale for a weight that is not F8_E4M3 "
                                      "or not part of the model",
                                      t->name, t->file));
    else
      problems->push_back(fmt::format("unknown tensor {} in {}", t->name, t->file));
  }
  return out;
}

void load_one(const WeightSpec& s, const Resolved& r, const ModelConfig& cfg, Tensor* dst) {
  *dst = Tensor::empty(DType::kF32, s.shape);
  const TensorInfo* w = r.weight;
  if (w->dtype == DType::kF8E4M3) {
    Tensor scale = to_f32(r.scale->view());
    const int64_t bn = cfg.quant ? cfg.quant->block_n : 128;
    const int64_t bk = cfg.quant ? cfg.quant->block_k : 128;
    dequantize_fp8_blocks(w->data, scale.data<float>(), s.shape, bn, bk, dst->data<float>());
  } else {
    convert_to_f32(w->data, w->dtype, dst->data<float>(), dst->numel());
  }
}

// Where spec i lands inside Step3Weights (the same order as step3_weight_specs).
std::vector<Tensor*> destinations(const ModelConfig& c, Step3Weights& w) {
  std::vector<Tensor*> d;
  d.push_back(&w.embed);
  for (auto& L : w.layers) {
    for (Tensor* t : {&L.input_norm, &L.post_norm, &L.q_proj, &L.k_proj, &L.v_proj,
                      &L.inter_norm, &L.wq, &L.o_proj})
      d.push_back(t);
    if (L.moe) {
      for (Tensor* t : {&L.router, &L.moe_gate, &L.moe_up, &L.moe_down, &L.share_gate,
                        &L.share_up, &L.share_down})
        d.push_back(t);
    } else {
      for (Tensor* t : {&L.mlp_gate, &L.mlp_up, &L.mlp_down}) d.push_back(t);
    }
  }
  d.push_back(&w.final_norm);
  d.push_back(&w.lm_head);
  (void)c;
  return d;
}

}  // namespace

std::vector<std::string> check_step3_checkpoint(const ModelConfig& cfg, const Checkpoint& ckpt) {
  std::vector<std::string> problems;
  resolve(cfg, ckpt, step3_weight_specs(cfg), &problems);
  return problems;
}

Result<Step3Weights> load_step3_weights(const ModelConfig& cfg, const Checkpoint& ckpt) {
  std::vector<WeightSpec> specs = step3_weight_specs(cfg);
  std::vector<std::string> problems;
  std::vector<Resolved> res = resolve(cfg, ckpt, specs, &problems);
  if (!problems.empty()) {
    std::string more = problems.size() > 1
                           ? fmt::format(" (and {} more problems; see afd checkpoint inspect)",
                                         problems.size() - 1)
                           : "";
    return Status(Code::kCorrupt, problems.front() + more);
  }
  Step3Weights w;
  w.layers.resize(static_cast<size_t>(cfg.num_hidden_layers));
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) w.layers[l].moe = cfg.is_moe_layer(l);
  std::vector<Tensor*> dst = destinations(cfg, w);
  AFD_CHECK(dst.size() == specs.size(), "weight table out of step: {} vs {}", dst.size(),
            specs.size());
  // Conversion is memory-bound; spread tensors over the cores.
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < specs.size();) load_one(specs[i], res[i], cfg, dst[i]);
  };
  unsigned n = std::max(1u, std::min(8u, std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < n; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  return w;
}

}  // namespace afd
