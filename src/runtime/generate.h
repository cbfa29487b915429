// Offline generation on one process: prefill every prompt together, then decode all
// sequences together one token per step (the simplest engine; the AFD runtime replaces it).
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "kernels/cpu/ops.h"
#include "model/step3.h"

namespace afd {

struct GenerateOptions {
  int64_t max_new_tokens = 16;
  cpu::SamplingParams sampling;  // temperature 0: greedy
  uint64_t seed = 0;             // sequence i samples from Rng(seed, i)
  bool record_logits = false;    // keep the logits each token was drawn from
  int64_t block_size = 16;       // KV cache page size (tokens)
};

struct GenerateTimings {
  double prefill_s = 0;      // the first step: every prompt, producing the first token
  double decode_s = 0;       // every later step
  int64_t prefill_tokens = 0;
  int64_t decode_steps = 0;  // steps after the prefill
  int64_t generated_tokens = 0;
};

struct GenerateOutput {
  std::vector<std::vector<int32_t>> tokens;  // per prompt: generated ids only
  // Per prompt, when record_logits: f32 [max_new_tokens, vocab] row-major.
  std::vector<std::vector<float>> logits;
  GenerateTimings timings;
};

Result<GenerateOutput> generate(const Step3Model& model,
                                const std::vector<std::vector<int32_t>>& prompts,
                                const GenerateOptions& opt);

}  // namespace afd
