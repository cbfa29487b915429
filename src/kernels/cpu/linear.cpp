// y = x w^T through OpenBLAS. w keeps the checkpoint's [out, in] layout, hence the Trans.
#include <cblas.h>

#include <algorithm>
#include <climits>

#include "core/status.h"
#include "kernels/cpu/ops.h"

namespace afd::cpu {

namespace {
constexpr int64_t kGemvRows = 2;  // measured on step3-small decode: sgemv wins below 3 rows
}  // namespace

void linear(const float* x, const float* w, int64_t M, int64_t N, int64_t K, float* y,
            bool accumulate) {
  AFD_CHECK(M >= 0 && N >= 0 && K >= 0, "linear: bad sizes M={} N={} K={}", M, N, K);
  // OpenBLAS takes 32-bit ints (blasint) in the Debian build.
  AFD_CHECK(M <= INT_MAX && N <= INT_MAX && K <= INT_MAX, "linear: sizes M={} N={} K={} exceed "
            "the BLAS int range", M, N, K);
  if (M == 0 || N == 0) return;
  if (K == 0) {  // an empty sum; BLAS implementations disagree on whether they touch y here
    if (!accumulate) std::fill_n(y, M * N, 0.0f);
    return;
  }
  // sgemm packs all of w before it multiplies: for a few rows (decode) that copy costs more
  // than the product, so stream w once per row with sgemv instead.
  if (M <= kGemvRows) {
    for (int64_t m = 0; m < M; ++m)
      cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(N), static_cast<int>(K), 1.0f, w,
                  static_cast<int>(K), x + m * K, 1, accumulate ? 1.0f : 0.0f, y + m * N, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(M), static_cast<int>(N),
              static_cast<int>(K), 1.0f, x, static_cast<int>(K), w, static_cast<int>(K),
              accumulate ? 1.0f : 0.0f, y, static_cast<int>(N));
}

}  // namespace afd::cpu

namespace afd::cpu {

void set_num_threads(int n) { openblas_set_num_threads(std::max(1, n)); }

}  // namespace afd::cpu
