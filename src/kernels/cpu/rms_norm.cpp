// RMSNorm: x * rsqrt(mean(x^2) + eps) * w, as Step-3 computes it (normalise, then weight).
#include <cmath>

#include "core/status.h"
#include "kernels/cpu/ops.h"

namespace afd::cpu {

void rms_norm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* out) {
  AFD_CHECK(rows >= 0 && dim > 0, "rms_norm: bad sizes rows={} dim={}", rows, dim);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = out + r * dim;
    // The sum of squares in double keeps the reference accurate for any dim; the scale is
    // then an f32 like every other backend's.
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
    // Reads xr[i] before writing yr[i], so out == x is safe.
    for (int64_t i = 0; i < dim; ++i) yr[i] = (xr[i] * inv) * w[i];
  }
}

}  // namespace afd::cpu
