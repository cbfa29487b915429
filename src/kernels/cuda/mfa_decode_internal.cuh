// Internals shared by the MFA decode kernels (mfa_decode.cu: attention; mfa_decode_plan.cu:
// plan and combine): tile constants and the layout of the plan's metadata. Device code only
// includes it; plain CUDA C++ (no fmt, no core/status.h).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/mfa_decode.h"

namespace afd::cuda::mfa {

constexpr int kTile = 64;         // KV tokens per tile: N of Q K^T, K of P V
constexpr int kHeadsPerCta = 64;  // wgmma M
constexpr int kMinChunk = 256;    // the plan never splits a sequence finer than this
constexpr int kMaxCtas = 4096;
constexpr int kCombineHeads = 4;  // heads per combine block

// ---- metadata (i32) written by the plan ----------------------------------------------------
//   [0] number of items, [1] total tokens (low 32 bits), [2] chunk length used, [3] unused
//   cta_begin [num_ctas + 1]: CTA c runs items cta_begin[c] .. cta_begin[c+1]-1
//   items     [batch + num_ctas] int4 (seq, kv_begin, kv_end, slot): slot = the item's index
//             when its sequence is split (partials in the workspace), else -1
//   seq_info  [batch] int2 (number of items, first item)
struct MetaLayout {
  int cta_begin, items, seq_info, total, max_items;
};
__host__ __device__ inline MetaLayout meta_layout(int batch, int num_ctas) {
  MetaLayout m;
  m.cta_begin = 4;
  m.items = (4 + num_ctas + 1 + 3) & ~3;  // int4-aligned
  m.max_items = batch + num_ctas;         // the plan's chunk length guarantees no more
  m.seq_info = m.items + 4 * m.max_items;
  m.total = m.seq_info + 2 * batch;
  return m;
}

// Launches the combine kernel (grid batch x heads / kCombineHeads) on `stream`.
cudaError_t launch_combine(const MfaDecodeParams& p, cudaStream_t stream);

}  // namespace afd::cuda::mfa
