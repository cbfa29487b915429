// FFN side of AFD: the expert slices one FFN rank owns, and its per-layer loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"
#include "model/step3_weights.h"
#include "runtime/placement.h"
#include "runtime/stats.h"
#include "runtime/wire.h"
#include "transport/fabric.h"

namespace afd {

class FfnExecutor {
 public:
  // Copies rank `rank`'s slices (contiguous, f32) out of the full weights.
  FfnExecutor(const ModelConfig& cfg, const Step3Weights& w, const Placement& p, int rank);

  // y f32 [T, H] = the sum of this rank's slices of `layer` over x f32 [T, H]: always-selected
  // slices on every token, a routed expert's slice on the tokens that chose it, times the
  // router weight. ids i32 [T, k], weights f32 [T, k] (ignored on dense layers).
  void compute(int64_t layer, const float* x, int64_t T, const int32_t* ids, const float* weights,
               float* y) const;

 private:
  struct Slice {
    int64_t expert;  // -1: always selected
    int64_t inter;   // intermediate rows of this slice
    Tensor gate;     // f32 [inter, H]
    Tensor up;       // f32 [inter, H]
    Tensor down;     // f32 [H, inter]
  };
  ModelConfig cfg_;
  std::vector<std::vector<Slice>> layers_;  // [layer][slice]
};

struct FfnRankOptions {
  int attention_ranks = 1;  // fabric ranks 0 .. A-1
  int micro_batches = 3;
  WireDType dispatch = WireDType::kFp8;
  std::chrono::milliseconds peer_timeout{10000};
  // Called at the start of every step with the stats so far (serving publishes gauges).
  std::function<void(const RankStats&)> on_step;
};

// The FFN rank's loop: per step, per layer, per micro-batch, receive from EVERY attention
// rank, compute, answer each. Returns when all attention ranks report done (or on error).
Status run_ffn_rank(Fabric& fabric, const FfnExecutor& ex, const ModelConfig& cfg,
                    const FfnRankOptions& opt, RankStats* stats, Trace* trace);

// Fabric tag of a message (step, layer, micro-batch, direction 0 = A->F, 1 = F->A).
inline uint64_t afd_tag(int64_t step, int64_t layer, int mb, int dir) {
  return (static_cast<uint64_t>(step) << 20) | (static_cast<uint64_t>(layer) << 8) |
         (static_cast<uint64_t>(mb) << 1) | static_cast<uint64_t>(dir);
}

}  // namespace afd
