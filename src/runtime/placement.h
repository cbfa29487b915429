// Placement: which FFN rank computes which expert slice (DESIGN.md §1).
//
// Routed experts are whole slices spread round-robin (expert e on rank e % M), so every rank
// holds floor or ceil(E / M) experts. The shared expert and dense MLPs are experts every token
// selects with weight 1; they are split along their intermediate dimension into M contiguous
// slices, one per rank (SwiGLU is separable, so the partial outputs sum to the whole).
// Invariant: every (layer, expert, intermediate row) is computed by exactly one rank.
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "model/config.h"

namespace afd {

struct ExpertSlice {
  int64_t expert = -1;  // routed expert id; -1: always selected (shared expert or dense MLP)
  int64_t begin = 0;    // intermediate rows [begin, end)
  int64_t end = 0;
};

class Placement {
 public:
  // Fails when an always-selected FFN would give some rank an empty slice (more FFN ranks
  // than intermediate rows) or ffn_ranks < 1.
  static Result<Placement> build(const ModelConfig& cfg, int ffn_ranks);

  int ffn_ranks() const { return ranks_; }
  // Slices rank f computes at `layer`.
  const std::vector<ExpertSlice>& slices(int64_t layer, int f) const {
    return slices_[static_cast<size_t>(layer)][static_cast<size_t>(f)];
  }
  // The rank holding routed expert e of an MoE layer.
  int expert_rank(int64_t e) const { return static_cast<int>(e % ranks_); }
  // Whether rank f must see a token with routed experts ids[0..k) at `layer`: it holds an
  // always-selected slice, or one of those experts.
  bool needs(int64_t layer, int f, const int32_t* ids, int64_t k) const;

 private:
  int ranks_ = 0;
  std::vector<std::vector<std::vector<ExpertSlice>>> slices_;  // [layer][rank]
  std::vector<char> has_always_;                               // [layer * ranks + rank]
};

}  // namespace afd
