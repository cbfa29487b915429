#include "model/checkpoint_init.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/mmap_file.h"
#include "kernels/cpu/ops.h"
#include "model/safetensors.h"

namespace afd {

namespace fs = std::filesystem;

namespace {

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace

Tensor random_weight(const WeightSpec& spec, uint64_t seed) {
  Tensor t = Tensor::empty(DType::kF32, spec.shape);
  cpu::Rng rng(seed * 0x9e3779b97f4a7c15ull ^ fnv1a(spec.name));
  float* p = t.data<float>();
  const int64_t n = t.numel();
  // Uniform on [-a, a] has std a / sqrt(3).
  float center = 0, half = 0;
  switch (spec.init) {
    case WeightInit::kLinear: half = std::sqrt(3.0f / static_cast<float>(spec.fan_in)); break;
    case WeightInit::kEmbedding: half = std::sqrt(3.0f); break;
    case WeightInit::kNorm: center = 1.0f, half = 0.1f; break;
  }
  for (int64_t i = 0; i < n; ++i) {
    float u = static_cast<float>(rng.uniform()) * 2.0f - 1.0f;
    p[i] = bf16_to_f32(f32_to_bf16(center + half * u));
  }
  return t;
}

Step3Weights random_step3_weights(const ModelConfig& cfg, uint64_t seed) {
  std::vector<WeightSpec> specs = step3_weight_specs(cfg);
  Step3Weights w;
  w.layers.resize(static_cast<size_t>(cfg.num_hidden_layers));
  size_t i = 0;
  auto next = [&] { return random_weight(specs[i++], seed); };
  w.embed = next();
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    Step3LayerWeights& L = w.layers[static_cast<size_t>(l)];
    L.moe = cfg.is_moe_layer(l);
    // Same order as step3_weight_specs.
    L.input_norm = next(), L.post_norm = next(), L.q_proj = next(), L.k_proj = next();
    L.v_proj = next(), L.inter_norm = next(), L.wq = next(), L.o_proj = next();
    if (L.moe) {
      L.router = next(), L.moe_gate = next(), L.moe_up = next(), L.moe_down = next();
      L.share_gate = next(), L.share_up = next(), L.share_down = next();
    } else {
      L.mlp_gate = next(), L.mlp_up = next(), L.mlp_down = next();
    }
  }
  w.final_norm = next();
  w.lm_head = next();
  AFD_CHECK(i == specs.size(), "random_step3_weights consumed {} of {} specs", i, specs.size());
  return w;
}

Status write_random_checkpoint(const ModelConfig& cfg_in, const CheckpointInitOptions& opt,
                               const std::string& out_dir) {
  if (opt.dtype != "bf16" && opt.dtype != "fp8")
    return InvalidArgument("--dtype must be bf16 or fp8, got \"{}\"", opt.dtype);
  if (opt.shards < 1) return InvalidArgument("--shards must be at least 1, got {}", opt.shards);
  std::error_code ec;
  if (fs::exists(out_dir, ec) && !opt.overwrite) {
    if (!fs::is_directory(out_dir, ec)) return InvalidArgument("{}: exists and is not a folder", out_dir);
    if (!fs::is_empty(out_dir, ec))
      return InvalidArgument("{}: folder exists and is not empty (use --force to replace it)",
                             out_dir);
  }
  ModelConfig cfg = cfg_in;
  if (opt.dtype == "fp8") cfg.quant = Fp8QuantConfig{};
  const bool fp8 = cfg.quant.has_value();

  // Build everything in a temporary sibling folder, then move it into place.
  fs::path final_dir = fs::absolute(out_dir);
  fs::path tmp = final_dir.parent_path() /
                 (final_dir.filename().string() + ".partial-" + std::to_string(::getpid()));
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) return IOError("{}: cannot create: {}", tmp.string(), ec.message());
  auto fail = [&](Status s) {
    fs::remove_all(tmp, ec);
    return s;
  };

  std::vector<WeightSpec> specs = step3_weight_specs(cfg);
  std::vector<Tensor> owned;  // keeps the data alive until the shards are written
  owned.reserve(specs.size() * 2);
  std::vector<std::pair<std::string, TensorView>> tensors;
  for (size_t i = 0; i < specs.size(); ++i) {
    const WeightSpec& s = specs[i];
    Tensor w = random_weight(s, opt.seed);
    if (fp8 && s.quantizable) {
      const int64_t bn = cfg.quant->block_n, bk = cfg.quant->block_k;
      Tensor q = Tensor::empty(DType::kF8E4M3, s.shape);
      Tensor sc = Tensor::empty(DType::kF32, fp8_scale_shape(s.shape, bn, bk));
      quantize_fp8_blocks(w.data<float>(), s.shape, bn, bk, q.data<uint8_t>(), sc.data<float>());
      owned.push_back(std::move(q));
      tensors.emplace_back(s.name, owned.back().view());
      owned.push_back(std::move(sc));
      tensors.emplace_back(s.name + "_scale_inv", owned.back().view());
    } else {
      Tensor b = Tensor::empty(DType::kBF16, s.shape);
      convert_from_f32(w.data<float>(), b.raw(), DType::kBF16, w.numel());
      owned.push_back(std::move(b));
      tensors.emplace_back(s.name, owned.back().view());
    }
    if (opt.progress) opt.progress(i + 1, specs.size());
  }
  Status st = write_checkpoint_shards(tmp.string(), tensors, opt.shards, {{"format", "pt"}});
  if (!st.ok()) return fail(st);
  std::string cfg_json = cfg.to_json();
  st = write_file_atomic((tmp / "config.json").string(), cfg_json.data(), cfg_json.size());
  if (!st.ok()) return fail(st);

  fs::remove_all(final_dir, ec);
  fs::create_directories(final_dir.parent_path(), ec);
  fs::rename(tmp, final_dir, ec);
  if (ec) return fail(IOError("{}: cannot move the new checkpoint into place: {}", out_dir, ec.message()));
  return Status::OK();
}

}  // namespace afd
