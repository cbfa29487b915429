// MFA decode: the plan (once per step: split sequences into work items over the persistent
// CTAs) and the combine kernel (merge split partials, zero-fill empty sequences). Contract:
// mfa_decode.h; metadata layout: mfa_decode_internal.cuh.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>

#include "kernels/cuda/mfa_decode.h"
#include "kernels/cuda/mfa_decode_internal.cuh"

namespace afd::cuda {
namespace mfa {

// ---- combine: merge split partials; zero-fill empty sequences -------------------------------
// grid (batch, heads / 4), head_dim threads: 4 heads per block, 4 dims per thread.
constexpr int kCombineSmemSplits = 1024;

__global__ void mfa_combine_kernel(const MfaDecodeParams p) {
  __shared__ float sw[kCombineHeads][kCombineSmemSplits];
  const int seq = blockIdx.x;
  const MetaLayout ml = meta_layout(p.batch, p.num_ctas);
  const int2 info = reinterpret_cast<const int2*>(p.metadata + ml.seq_info)[seq];
  const int ns = info.x, first = info.y;
  if (ns == 1) return;  // written directly by the attention kernel
  const int D = p.head_dim;
  const int hh = threadIdx.x / (D / 4);  // head within the block
  const int h = blockIdx.y * kCombineHeads + hh;
  const int d = (threadIdx.x % (D / 4)) * 4;
  __nv_bfloat16* out =
      static_cast<__nv_bfloat16*>(p.out) + (static_cast<size_t>(seq) * p.heads + h) * D + d;
  if (ns == 0) {
    *reinterpret_cast<uint2*>(out) = make_uint2(0, 0);
    return;
  }
  const float* ws_o = static_cast<const float*>(p.workspace);
  const float* ws_lse = ws_o + static_cast<size_t>(ml.max_items) * p.heads * D;
  const float* lse = ws_lse + static_cast<size_t>(first) * p.heads + blockIdx.y * kCombineHeads;
  const bool in_smem = ns <= kCombineSmemSplits;  // block-uniform
  if (in_smem) {
    for (int i = threadIdx.x; i < ns * kCombineHeads; i += blockDim.x)
      sw[i % kCombineHeads][i / kCombineHeads] =
          lse[static_cast<size_t>(i / kCombineHeads) * p.heads + i % kCombineHeads];
    __syncthreads();
  }
  auto lse_at = [&](int i) {
    return in_smem ? sw[hh][i] : lse[static_cast<size_t>(i) * p.heads + hh];
  };
  float mx = -INFINITY;
  for (int i = 0; i < ns; ++i) mx = fmaxf(mx, lse_at(i));
  const float* o = ws_o + (static_cast<size_t>(first) * p.heads + h) * D + d;
  const size_t stride = static_cast<size_t>(p.heads) * D;
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  float wsum = 0.f;
#pragma unroll 4
  for (int i = 0; i < ns; ++i) {
    const float w = exp2f(lse_at(i) - mx);
    const float4 v = *reinterpret_cast<const float4*>(o + i * stride);
    wsum += w;
    acc.x += w * v.x;
    acc.y += w * v.y;
    acc.z += w * v.z;
    acc.w += w * v.w;
  }
  const float inv = 1.f / wsum;
  *reinterpret_cast<__nv_bfloat162*>(out) = __floats2bfloat162_rn(acc.x * inv, acc.y * inv);
  *reinterpret_cast<__nv_bfloat162*>(out + 2) = __floats2bfloat162_rn(acc.z * inv, acc.w * inv);
}

// ---- plan ----------------------------------------------------------------------------------
constexpr int kPlanThreads = 1024;

// Exclusive scan over the block; `total` gets the block's sum. Uses `ws` [32].
__device__ long long block_excl_scan(long long v, long long* ws, long long& total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  long long x = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const long long y = __shfl_up_sync(0xffffffffu, x, o);
    if (lane >= o) x += y;
  }
  if (lane == 31) ws[warp] = x;
  __syncthreads();
  if (warp == 0) {
    long long w = ws[lane];  // kPlanThreads / 32 == 32 warps
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const long long y = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += y;
    }
    ws[lane] = w;
  }
  __syncthreads();
  const long long incl = x + (warp > 0 ? ws[warp - 1] : 0);
  total = ws[31];
  __syncthreads();  // ws is reused by the next call
  return incl - v;
}

__global__ void __launch_bounds__(kPlanThreads)
    mfa_plan_kernel(const int32_t* seq_lens, int batch, int num_ctas, int32_t* meta) {
  __shared__ int cnt[kMaxCtas];
  __shared__ long long ws[32];
  const MetaLayout ml = meta_layout(batch, num_ctas);
  for (int c = threadIdx.x; c < num_ctas; c += kPlanThreads) cnt[c] = 0;
  long long total_tokens = 0;
  for (int base = 0; base < batch; base += kPlanThreads) {
    const int s = base + threadIdx.x;
    long long part;
    block_excl_scan(s < batch ? max(seq_lens[s], 0) : 0, ws, part);
    total_tokens += part;
  }
  // Chunk length: about total / num_ctas (10% slack so a sequence just over it is not cut in
  // two), never below kMinChunk. Items per sequence = ceil(len / chunk); their sum is at most
  // total / chunk + batch < num_ctas + batch = max_items.
  long long chunk = (total_tokens + num_ctas - 1) / num_ctas;
  if (chunk < kMinChunk) chunk = kMinChunk;
  chunk += chunk / 10;
  int4* items = reinterpret_cast<int4*>(meta + ml.items);
  int2* seq_info = reinterpret_cast<int2*>(meta + ml.seq_info);
  long long item_carry = 0, tok_carry = 0;
  for (int base = 0; base < batch; base += kPlanThreads) {
    const int s = base + threadIdx.x;
    const long long len = s < batch ? max(seq_lens[s], 0) : 0;
    const long long splits = len > 0 ? (len + chunk - 1) / chunk : 0;
    long long items_here, toks_here;
    const long long item0 = item_carry + block_excl_scan(splits, ws, items_here);
    const long long tok0 = tok_carry + block_excl_scan(len, ws, toks_here);
    if (s < batch) {
      seq_info[s] = make_int2(static_cast<int>(splits), static_cast<int>(item0));
      for (long long j = 0; j < splits; ++j) {
        // Split points at multiples of the 64-token tile (TMA copies whole pages into tiles).
        // Pieces are never empty: len / splits > chunk / 2 >= 128 when splits > 1.
        const long long b = (j * len / splits) & ~63LL;
        const long long e = j + 1 == splits ? len : (((j + 1) * len / splits) & ~63LL);
        items[item0 + j] = make_int4(s, static_cast<int>(b), static_cast<int>(e),
                                     splits > 1 ? static_cast<int>(item0 + j) : -1);
        // Items go to CTAs by the midpoint of their tokens in the batch's token order: each
        // CTA gets a contiguous run of about total / num_ctas tokens.
        const long long mid = tok0 + (b + e) / 2;
        const long long cc = mid * num_ctas / total_tokens;
        const int c = static_cast<int>(cc < num_ctas - 1 ? cc : num_ctas - 1);
        atomicAdd(&cnt[c], 1);
      }
    }
    item_carry += items_here;
    tok_carry += toks_here;
  }
  __syncthreads();
  long long carry = 0;
  for (int base = 0; base < num_ctas; base += kPlanThreads) {
    const int c = base + threadIdx.x;
    long long part;
    const long long ex = carry + block_excl_scan(c < num_ctas ? cnt[c] : 0, ws, part);
    if (c < num_ctas) meta[ml.cta_begin + c] = static_cast<int>(ex);
    carry += part;
  }
  if (threadIdx.x == 0) {
    meta[ml.cta_begin + num_ctas] = static_cast<int>(carry);
    meta[0] = static_cast<int>(carry);
    meta[1] = static_cast<int>(total_tokens);
    meta[2] = static_cast<int>(chunk);
    meta[3] = 0;
  }
}

cudaError_t launch_combine(const MfaDecodeParams& p, cudaStream_t stream) {
  const dim3 grid(p.batch, p.heads / kCombineHeads);
  mfa_combine_kernel<<<grid, p.head_dim, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace mfa

size_t mfa_decode_metadata_bytes(int batch, int num_ctas) {
  return static_cast<size_t>(mfa::meta_layout(batch, num_ctas).total) * sizeof(int32_t);
}

size_t mfa_decode_workspace_bytes(int batch, int num_ctas, int heads, int head_dim) {
  const size_t items = static_cast<size_t>(mfa::meta_layout(batch, num_ctas).max_items);
  return items * heads * (static_cast<size_t>(head_dim) + 1) * sizeof(float);
}

cudaError_t mfa_decode_plan(const int32_t* seq_lens, int batch, int num_ctas, int32_t* metadata,
                            cudaStream_t stream) {
  if (batch < 0 || num_ctas < 1 || num_ctas > mfa::kMaxCtas || metadata == nullptr ||
      (batch > 0 && seq_lens == nullptr))
    return cudaErrorInvalidValue;
  mfa::mfa_plan_kernel<<<1, mfa::kPlanThreads, 0, stream>>>(seq_lens, batch, num_ctas, metadata);
  return cudaGetLastError();
}

}  // namespace afd::cuda
