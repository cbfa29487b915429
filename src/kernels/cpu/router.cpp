// MoE router: softmax over experts, then the top k probabilities.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/status.h"
#include "kernels/cpu/ops.h"

namespace afd::cpu {

void router_topk(const float* logits, int64_t T, int64_t E, int64_t k, bool renormalize,
                 int32_t* ids, float* weights) {
  AFD_CHECK(T >= 0 && E > 0, "router_topk: bad sizes T={} E={}", T, E);
  AFD_CHECK(k >= 1 && k <= E, "router_topk: k = {} must be in [1, E = {}]", k, E);
  std::vector<float> prob(static_cast<size_t>(E));
  std::vector<int32_t> order(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    const float* l = logits + t * E;
    const float mx = *std::max_element(l, l + E);
    double sum = 0;
    for (int64_t e = 0; e < E; ++e) {
      prob[e] = std::exp(l[e] - mx);
      sum += prob[e];
    }
    for (int64_t e = 0; e < E; ++e) prob[e] = static_cast<float>(prob[e] / sum);

    // A total order (ties to the lower index) makes partial_sort deterministic.
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
      return prob[a] > prob[b] || (prob[a] == prob[b] && a < b);
    });
    double kept = 0;
    for (int64_t j = 0; j < k; ++j) kept += prob[order[j]];
    for (int64_t j = 0; j < k; ++j) {
      ids[t * k + j] = order[j];
      weights[t * k + j] =
          renormalize ? static_cast<float>(prob[order[j]] / kept) : prob[order[j]];
    }
  }
}

}  // namespace afd::cpu
