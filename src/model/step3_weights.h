// Step-3 weights: the checkpoint's tensor names and shapes (step3.md §2), FP8 block-scale
// handling, and loading into f32 for the CPU path.
//
// Loading accepts any float dtype per tensor (BF16, F16, F32, or F8_E4M3 with a float
// `<name>_scale_inv` of shape [..., ceil(out/bn), ceil(in/bk)]), an optional
// `model.language_model.` prefix on every language-model tensor, and skips the vision tower
// (`vision_model.*`, `vit_downsampler*`, `vit_large_projector*`). Anything missing, wrongly
// shaped or unknown is an error that names the tensor.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"
#include "model/config.h"
#include "model/safetensors.h"

namespace afd {

// How a random checkpoint initialises a tensor (afd checkpoint init).
enum class WeightInit { kLinear, kNorm, kEmbedding };

struct WeightSpec {
  std::string name;   // canonical name, without any prefix: "model.layers.3.self_attn.wq.weight"
  Shape shape;        // [out, in], or [experts, out, in] for stacked experts, or [dim] for norms
  bool quantizable;   // stored as FP8 + scale_inv in FP8 checkpoints
  WeightInit init;
  int64_t fan_in;     // input features (scale of the random init)
};

// Every language-model tensor of a Step-3 checkpoint for `cfg`, in checkpoint order
// (embedding, layers 0..L-1, final norm, lm_head).
std::vector<WeightSpec> step3_weight_specs(const ModelConfig& cfg);

// Shape of the `_scale_inv` of a block-quantized weight: the last two dims become
// ceil(out / bn), ceil(in / bk); leading (expert) dims stay.
Shape fp8_scale_shape(const Shape& weight_shape, int64_t bn, int64_t bk);

// w[..., r, c] = fp8(q[..., r, c]) * scale_inv[..., r / bn, c / bk].
// q u8 (e4m3) [..., out, in]; scale_inv f32 [..., ceil(out/bn), ceil(in/bk)]; out f32 like q.
void dequantize_fp8_blocks(const uint8_t* q, const float* scale_inv, const Shape& shape,
                           int64_t bn, int64_t bk, float* out);
// Inverse: per block scale = amax / 448 (1 for an all-zero block), q = e4m3(w / scale).
void quantize_fp8_blocks(const float* w, const Shape& shape, int64_t bn, int64_t bk, uint8_t* q,
                         float* scale_inv);

struct Step3LayerWeights {
  bool moe = false;
  Tensor input_norm;  // f32 [H]
  Tensor post_norm;   // f32 [H]
  Tensor q_proj;      // f32 [Q, H]
  Tensor inter_norm;  // f32 [Q]
  Tensor wq;          // f32 [heads * head_dim, Q]
  Tensor k_proj;      // f32 [head_dim, H]
  Tensor v_proj;      // f32 [head_dim, H]
  Tensor o_proj;      // f32 [H, heads * head_dim]
  // dense layers
  Tensor mlp_gate;    // f32 [I, H]
  Tensor mlp_up;      // f32 [I, H]
  Tensor mlp_down;    // f32 [H, I]
  // MoE layers
  Tensor router;      // f32 [E, H]
  Tensor moe_gate;    // f32 [E, Im, H]
  Tensor moe_up;      // f32 [E, Im, H]
  Tensor moe_down;    // f32 [E, H, Im]
  Tensor share_gate;  // f32 [S, H]
  Tensor share_up;    // f32 [S, H]
  Tensor share_down;  // f32 [H, S]
};

struct Step3Weights {
  Tensor embed;       // f32 [vocab, H]
  Tensor final_norm;  // f32 [H]
  Tensor lm_head;     // f32 [vocab, H]
  std::vector<Step3LayerWeights> layers;
};

// Every problem the checkpoint has against `cfg` (missing, misshaped, unknown, bad dtype,
// missing or misshaped scale), one line each; empty when it loads.
std::vector<std::string> check_step3_checkpoint(const ModelConfig& cfg, const Checkpoint& ckpt);

// Loads (dequantizing FP8) into f32. Fails with the first problem check_step3_checkpoint finds.
Result<Step3Weights> load_step3_weights(const ModelConfig& cfg, const Checkpoint& ckpt);

}  // namespace afd
