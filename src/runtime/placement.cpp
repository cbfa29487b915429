#include "runtime/placement.h"

namespace afd {

Result<Placement> Placement::build(const ModelConfig& cfg, int M) {
  if (M < 1) return InvalidArgument("--ffn-ranks must be at least 1, got {}", M);
  Placement p;
  p.ranks_ = M;
  p.slices_.assign(static_cast<size_t>(cfg.num_hidden_layers),
                   std::vector<std::vector<ExpertSlice>>(static_cast<size_t>(M)));
  p.has_always_.assign(static_cast<size_t>(cfg.num_hidden_layers * M), 0);
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    const bool moe = cfg.is_moe_layer(l);
    const int64_t always = moe ? cfg.share_expert_dim : cfg.intermediate_size;
    if (always < M)
      return InvalidArgument("{} FFN ranks but the {} of layer {} has only {} intermediate rows "
                             "to split: use at most {} FFN ranks",
                             M, moe ? "shared expert" : "dense MLP", l, always, always);
    for (int f = 0; f < M; ++f) {
      // Contiguous near-equal split: rank f gets rows [f*I/M, (f+1)*I/M).
      int64_t b = always * f / M, e = always * (f + 1) / M;
      p.slices_[l][f].push_back({-1, b, e});
      p.has_always_[static_cast<size_t>(l * M + f)] = 1;
    }
    if (moe)
      for (int64_t x = 0; x < cfg.moe_num_experts; ++x)
        p.slices_[l][static_cast<size_t>(x % M)].push_back({x, 0, cfg.moe_intermediate_size});
  }
  return p;
}

bool Placement::needs(int64_t layer, int f, const int32_t* ids, int64_t k) const {
  if (has_always_[static_cast<size_t>(layer * ranks_ + f)]) return true;
  for (int64_t j = 0; j < k; ++j)
    if (expert_rank(ids[j]) == f) return true;
  return false;
}

}  // namespace afd
