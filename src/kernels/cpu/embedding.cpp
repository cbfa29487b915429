// Token embedding lookup: a row copy per token.
#include <algorithm>

#include "core/status.h"
#include "kernels/cpu/ops.h"

namespace afd::cpu {

void embedding(const int32_t* ids, int64_t T, const float* table, int64_t vocab, int64_t hidden,
               float* out) {
  AFD_CHECK(T >= 0 && vocab > 0 && hidden > 0, "embedding: bad sizes T={} vocab={} hidden={}", T,
            vocab, hidden);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t id = ids[t];
    AFD_CHECK(id >= 0 && id < vocab, "embedding: token {} has id {} outside [0, {})", t, id,
              vocab);
    std::copy_n(table + id * hidden, hidden, out + t * hidden);
  }
}

}  // namespace afd::cpu
