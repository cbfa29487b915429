// Resolves `--model DIR|PRESET` into a loaded Step3Model (CPU, f32 weights).
#pragma once

#include <memory>
#include <string>

#include "core/status.h"
#include "model/step3.h"

namespace afd {

struct ModelSourceInfo {
  std::string kind;    // "checkpoint" or "preset"
  std::string weights; // dtype summary: "bf16", "fp8", "random (seed N)"
  double load_seconds = 0;
};

// A folder holding config.json + safetensors is loaded; otherwise a preset name gets random
// weights (seed `weights_seed`, identical to `afd checkpoint init --seed` of the same preset).
// A preset too large for this machine's memory in f32 is refused with the size it would need.
Result<std::unique_ptr<Step3Model>> load_model(const std::string& model, uint64_t weights_seed,
                                               ModelSourceInfo* info = nullptr);

}  // namespace afd
