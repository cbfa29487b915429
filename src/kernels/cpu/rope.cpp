// NeoX rotary embedding ("rotate half"), in place.
#include <cmath>
#include <vector>

#include "core/status.h"
#include "kernels/cpu/ops.h"

namespace afd::cpu {

void rope_neox(float* x, const int32_t* positions, int64_t T, int64_t heads, int64_t head_dim,
               float theta) {
  AFD_CHECK(T >= 0 && heads > 0 && head_dim > 0, "rope_neox: bad sizes T={} heads={} head_dim={}",
            T, heads, head_dim);
  AFD_CHECK(head_dim % 2 == 0, "rope_neox: head_dim {} must be even", head_dim);
  AFD_CHECK(theta > 0, "rope_neox: theta {} must be positive", theta);
  const int64_t half = head_dim / 2;
  // Angles in double: pos * inv_freq reaches ~65536 rad, where an f32 angle would already be
  // off by ~4e-3 rad before cos/sin are taken.
  std::vector<double> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    inv_freq[i] = std::pow(static_cast<double>(theta), -2.0 * static_cast<double>(i) /
                                                           static_cast<double>(head_dim));
  std::vector<float> cos_a(static_cast<size_t>(half)), sin_a(static_cast<size_t>(half));
  for (int64_t t = 0; t < T; ++t) {
    AFD_CHECK(positions[t] >= 0, "rope_neox: token {} has negative position {}", t,
              positions[t]);
    for (int64_t i = 0; i < half; ++i) {
      const double a = static_cast<double>(positions[t]) * inv_freq[i];
      cos_a[i] = static_cast<float>(std::cos(a));
      sin_a[i] = static_cast<float>(std::sin(a));
    }
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + (t * heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float lo = v[i], hi = v[i + half];
        v[i] = lo * cos_a[i] - hi * sin_a[i];
        v[i + half] = hi * cos_a[i] + lo * sin_a[i];
      }
    }
  }
}

}  // namespace afd::cpu
