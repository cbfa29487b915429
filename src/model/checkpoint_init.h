// Random Step-3 weights, deterministic per seed, in the exact checkpoint format.
//
// Each tensor's values depend only on (seed, tensor name), so sharding and dtype do not change
// them: the FP8 checkpoint of a seed is the block-quantization of the BF16 one, and
// `random_step3_weights(cfg, seed)` equals loading the BF16 checkpoint of that seed.
// Scales keep activations O(1): linear weights ~ U with std 1/sqrt(fan_in), embeddings std 1,
// norm weights 1 +- 0.1.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "core/status.h"
#include "core/tensor.h"
#include "model/config.h"
#include "model/step3_weights.h"

namespace afd {

// f32 values of one weight, already rounded to BF16 precision.
Tensor random_weight(const WeightSpec& spec, uint64_t seed);

// All weights in f32 (what loading the BF16 checkpoint of `seed` gives).
Step3Weights random_step3_weights(const ModelConfig& cfg, uint64_t seed);

struct CheckpointInitOptions {
  std::string dtype = "bf16";  // "bf16" or "fp8" (128x128 block scales, step3.md §2)
  uint64_t seed = 0;
  int shards = 1;
  bool overwrite = false;      // replace a non-empty out_dir
  // Called after each tensor with (done, total); may be empty.
  std::function<void(size_t, size_t)> progress;
};

// Writes out_dir/config.json, the safetensors shards and model.safetensors.index.json. The
// files are built in a sibling temporary folder that replaces out_dir only when complete, so
// a failure leaves no partial checkpoint.
Status write_random_checkpoint(const ModelConfig& cfg, const CheckpointInitOptions& opt,
                               const std::string& out_dir);

}  // namespace afd
