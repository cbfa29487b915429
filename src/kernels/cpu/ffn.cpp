// SwiGLU FFN: the activation, one dense MLP (or expert slice), and routed experts.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/status.h"
#include "kernels/cpu/ops.h"

namespace afd::cpu {

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  AFD_CHECK(n >= 0, "silu_mul: bad size n={}", n);
  // For gate << 0, exp(-gate) overflows to inf and the quotient is -0, the right limit.
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void swiglu_mlp(const float* x, int64_t T, int64_t H, int64_t I, const float* w_gate,
                const float* w_up, const float* w_down, float* y, bool accumulate) {
  AFD_CHECK(T >= 0 && H > 0 && I > 0, "swiglu_mlp: bad sizes T={} H={} I={}", T, H, I);
  if (T == 0) return;
  std::vector<float> gate(static_cast<size_t>(T * I)), up(static_cast<size_t>(T * I));
  linear(x, w_gate, T, I, H, gate.data());
  linear(x, w_up, T, I, H, up.data());
  silu_mul(gate.data(), up.data(), T * I, gate.data());
  linear(gate.data(), w_down, T, H, I, y, accumulate);
}

void moe_experts(const float* x, int64_t T, int64_t H, const int32_t* ids, const float* weights,
                 int64_t k, const float* w_gate, const float* w_up, const float* w_down,
                 int64_t E, int64_t I, float* y) {
  AFD_CHECK(T >= 0 && H > 0 && k >= 1 && E > 0 && I > 0,
            "moe_experts: bad sizes T={} H={} k={} E={} I={}", T, H, k, E, I);
  // Bucket the (token, choice) pairs by expert. A token that names one expert twice simply
  // appears twice in that bucket, which is what the sum over j asks for.
  std::vector<std::vector<int64_t>> bucket(static_cast<size_t>(E));  // entries t * k + j
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < k; ++j) {
      const int64_t e = ids[t * k + j];
      AFD_CHECK(e >= 0 && e < E, "moe_experts: token {} choice {} has expert {} outside [0, {})",
                t, j, e, E);
      bucket[e].push_back(t * k + j);
    }
  }

  std::vector<float> xe, ye;  // f32 [n_e, H]: the expert's gathered inputs and its outputs
  for (int64_t e = 0; e < E; ++e) {
    const std::vector<int64_t>& b = bucket[e];
    const int64_t n = static_cast<int64_t>(b.size());
    if (n == 0) continue;
    xe.resize(static_cast<size_t>(n * H));
    ye.resize(static_cast<size_t>(n * H));
    for (int64_t r = 0; r < n; ++r) std::copy_n(x + (b[r] / k) * H, H, xe.data() + r * H);
    swiglu_mlp(xe.data(), n, H, I, w_gate + e * I * H, w_up + e * I * H, w_down + e * H * I,
               ye.data());
    for (int64_t r = 0; r < n; ++r) {
      const float w = weights[b[r]];
      float* yt = y + (b[r] / k) * H;
      const float* yr = ye.data() + r * H;
      for (int64_t c = 0; c < H; ++c) yt[c] += w * yr[c];
    }
  }
}

}  // namespace afd::cpu
