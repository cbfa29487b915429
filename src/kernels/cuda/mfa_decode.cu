// MFA decode attention over a paged KV cache, sm_90a (contract: mfa_decode.h).
//
// Kernel design (one persistent CTA per SM, 256 threads, two warpgroups):
//   warpgroup 0 (producer): for each 64-token tile of its work items, looks up the pages in the
//     block table and copies K and V (and the fp8 scales) into a ring of shared-memory stages
//     with the Tensor Memory Accelerator: one 2-D tensor copy per page and 128-byte panel, which
//     lands K in the 128-byte-swizzled K-major layout wgmma reads; the stage's "full" mbarrier
//     counts the bytes. (Block sizes TMA cannot serve: per-thread cp.async.) FP8: the producer
//     also converts each tile's K and V (e4m3 -> f16, exact) into a swizzled f16 buffer
//     (2 buffers), one tile behind the copies, and frees the landing stage.
//   warpgroup 1 (consumer): per item loads Q (64 heads x head_dim, bf16; fp8 path: f16) into
//     shared memory; per tile:
//       S[64 x 64]  = Q K^T        wgmma m64n64k16 (bf16, or f16 on converted fp8 K)
//       online softmax in f32 registers (exp2 domain, masked tail, fp8: per-token K scale)
//       O[64 x D]  += P V          wgmma m64nDk16, P from registers, V MN-major from smem
//     software-pipelined: QK(i+1) is issued before PV(i) and softmax(i+1) runs while PV(i) is
//     on the tensor cores, which see QK(i+1), PV(i) back to back. Then it writes out directly, or a
//     partial (O/l, log2-sum-exp) when the sequence is split, which the combine kernel merges.
//   Why not fp8 tensor cores for Q K^T: Hopper's fp8 MMA accumulates with reduced precision
//   (about 14 bits, DeepSeek-V3 report); with peaky scores that cost 2% of the output, twice
//   the test tolerance. Converting K to f16 on chip keeps f32 accumulation.
//   The plan kernel (once per step; mfa_decode_plan.cu) cuts sequences into items and gives each
//   CTA a contiguous run of items of about equal total length.
#include <cuda.h>  // CUtensorMap and its enums (types only; the encoder comes via the runtime)
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cmath>
#include <mutex>
#include <type_traits>

#include "kernels/cuda/mfa_decode.h"
#include "kernels/cuda/mfa_decode_internal.cuh"
#include "kernels/cuda/mfa_sm90.cuh"

// Benchmark diagnostics only (bench/gpu/run.sh builds variants; production builds use 0):
// 1 = the consumer only waits and releases buffers (time of the producer: loads, conversion),
// 2 = the producer only signals (time of the consumer: MMA + softmax), 3 = fp8 without the
// K/V conversion.
#ifndef MFA_DIAG
#define MFA_DIAG 0
#endif

namespace afd::cuda {
namespace mfa {

constexpr int kDiag = MFA_DIAG;

constexpr int kThreads = 256;     // producer warpgroup + consumer warpgroup
constexpr float kPScale = 256.f;  // fp8 path: P' = p * v_scale / G * 256 stays in f16 range

// ---- shared-memory plan of the attention kernel --------------------------------------------
template <int D, bool FP8>
struct Cfg {
  static constexpr int kEsz = FP8 ? 1 : 2;        // bytes per KV element in the cache
  static constexpr int kRowBytes = D * kEsz;      // one token's K (or V) row
  static constexpr int kChunks = kRowBytes / 16;  // 16-byte chunks per row
  // Landing stages of the copies. FP8: the converter frees a stage as soon as it has turned it
  // into f16, so 2 stages keep 2 tiles in flight; 2 f16 buffers hold tiles i (PV) and i+1 (QK).
  static constexpr int kStages = FP8 ? (D == 256 ? 2 : 4) : (D == 256 ? 3 : 4);
  static constexpr int kBufs = FP8 ? 2 : 0;         // f16 K+V tiles (fp8 path)
  static constexpr int kPanel = kTile * 128;        // bytes between 128-byte panels (64 rows)
  static constexpr int kQBytes = 128 * D;           // Q [64][D], bf16 (fp8 path: f16)
  static constexpr int kKTile = kTile * kRowBytes;  // K tile; the V tile follows it
  static constexpr int kStageBytes = 2 * kKTile;
  static constexpr int kTile16 = kTile * D * 2;  // one f16 (or bf16) K or V tile
  static constexpr int kBufBytes = 2 * kTile16;  // f16 K tile, then f16 V tile
  static constexpr int kOffStages = kQBytes;
  static constexpr int kOffBufs = kOffStages + kStages * kStageBytes;
  static constexpr int kOffScales = kOffBufs + kBufs * kBufBytes;  // f32 [stage][k|v][64]
  static constexpr int kOffBufScales = kOffScales + (FP8 ? kStages * 2 * kTile * 4 : 0);
  static constexpr int kOffBars = kOffBufScales + kBufs * 2 * kTile * 4;  // f32 [buf][k|v][64]
  static constexpr int kNumBars = 2 * kStages + 2 * kBufs;
  static constexpr int kSmemBytes = kOffBars + kNumBars * 8;
  static_assert(D == 128 || D == 256, "head_dim 128 or 256");
  static_assert(kSmemBytes <= 232448, "over the 227 KiB a block may use");
  static_assert(kQBytes % 1024 == 0 && kKTile % 1024 == 0 && kTile16 % 1024 == 0,
                "swizzled tiles start 1024-byte aligned");
};

struct Bars {
  // shared addresses of the first of each kind: landing stages (full, empty) and, fp8, the
  // f16 buffers (kvfull, kvempty)
  uint32_t full, empty, kvfull, kvempty;
};

__device__ __forceinline__ uint32_t pack_f16(float a, float b) {
  __half2 h = __floats2half2_rn(a, b);  // a -> low half
  return *reinterpret_cast<uint32_t*>(&h);
}
__device__ __forceinline__ uint32_t pack_bf16(float a, float b) {
  __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
  return *reinterpret_cast<uint32_t*>(&h);
}
// Two e4m3 bytes (low byte first) -> two f16 (exact).
__device__ __forceinline__ uint32_t e4m3x2_to_f16x2(uint32_t two_bytes) {
  __half2_raw h =
      __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(two_bytes & 0xFFFFu), __NV_E4M3);
  return static_cast<uint32_t>(h.x) | (static_cast<uint32_t>(h.y) << 16);
}

// ---- producer warpgroup --------------------------------------------------------------------
// fp8 tile m (landing stage m % kStages: K then V, 128-byte-swizzled panels of 128 dims) ->
// f16 buffer m % kBufs (K then V, 128-byte-swizzled panels of 64 dims: the K-major layout of
// the QK product and the MN-major layout of the PV product are the same bytes), plus the scales.
// Tokens >= nvalid become 0 (TMA copies whole pages: rows past the end hold stale data).
template <int D, bool FP8>
__device__ void convert_tile(uint8_t* smem, const Bars& b, uint32_t m, int nvalid, int t) {
  using C = Cfg<D, FP8>;
  const int s = m % C::kStages;
  const int v = m % C::kBufs;
  mbar_wait(b.full + 8 * s, (m / C::kStages) & 1);         // the fp8 tile has landed
  mbar_wait(b.kvempty + 8 * v, ((m / C::kBufs) & 1) ^ 1);  // the f16 buffer is free
  constexpr int CH = C::kChunks;                           // 16-dim fp8 chunks per token
#pragma unroll
  for (int kv = 0; kv < 2; ++kv) {
    const uint8_t* src = smem + C::kOffStages + s * C::kStageBytes + kv * C::kKTile;
    uint8_t* dst = smem + C::kOffBufs + v * C::kBufBytes + kv * C::kTile16;
#pragma unroll
    for (int j = 0; j < (kDiag >= 2 ? 0 : kTile * CH / 128); ++j) {
      // 8 consecutive threads take 8 tokens of one chunk: both sides are 128-byte swizzled,
      // so the 8 accesses of a phase fall in 8 different bank groups.
      const int i = t + 128 * j;
      const int tok = (i & 7) + 8 * ((i >> 3) / CH);
      const int c = (i >> 3) % CH;
      uint4 raw = *reinterpret_cast<const uint4*>(src + (c >> 3) * C::kPanel + tok * 128 +
                                                  (((c & 7) ^ (tok & 7)) << 4));
      if (tok >= nvalid) raw = make_uint4(0, 0, 0, 0);
      uint4 h0, h1;
      h0.x = e4m3x2_to_f16x2(raw.x);
      h0.y = e4m3x2_to_f16x2(raw.x >> 16);
      h0.z = e4m3x2_to_f16x2(raw.y);
      h0.w = e4m3x2_to_f16x2(raw.y >> 16);
      h1.x = e4m3x2_to_f16x2(raw.z);
      h1.y = e4m3x2_to_f16x2(raw.z >> 16);
      h1.z = e4m3x2_to_f16x2(raw.w);
      h1.w = e4m3x2_to_f16x2(raw.w >> 16);
      // dims 16c .. 16c+15 -> f16 panel c/4 (64 dims), 16-byte chunks 2(c%4) and 2(c%4)+1
      uint8_t* line = dst + (c >> 2) * C::kPanel + tok * 128;
      const int ch0 = (c & 3) << 1;
      *reinterpret_cast<uint4*>(line + ((ch0 ^ (tok & 7)) << 4)) = h0;
      *reinterpret_cast<uint4*>(line + (((ch0 | 1) ^ (tok & 7)) << 4)) = h1;
    }
  }
  {  // scales: thread t copies entry t of [k|v][64]; 0 past the end (stale rows may be NaN)
    const float* ssrc = reinterpret_cast<const float*>(smem + C::kOffScales) + s * 2 * kTile;
    float* sdst = reinterpret_cast<float*>(smem + C::kOffBufScales) + v * 2 * kTile;
    sdst[t] = (t & (kTile - 1)) < nvalid ? ssrc[t] : 0.f;
  }
  fence_proxy_async();  // generic stores -> wgmma (async proxy) reads
  mbar_arrive(b.kvfull + 8 * v);
  mbar_arrive(b.empty + 8 * s);  // the landing stage is free for the next copy
}

// TMA: warp 0 issues, per tile, one 2-D tensor copy per (page, 128-byte panel) for K and V and
// (fp8) one bulk copy per page for each scale row; the stage's "full" barrier counts the bytes.
// Pages must tile the 64-token tile: block_size in {8, 16, 32, 64} or a multiple of 64, and items
// start at multiples of 64 (the plan's split points). Without TMA (other block sizes) all 128
// threads copy 16-byte chunks with cp.async. FP8: all 4 warps convert K and V to f16 one tile
// behind the copies.
template <int D, bool FP8, bool TMA>
__device__ void producer(const MfaDecodeParams& p, const CUtensorMap* tk, const CUtensorMap* tv,
                         uint8_t* smem, const Bars& b, const int4* items, int ib, int ie) {
  using C = Cfg<D, FP8>;
  const int t = threadIdx.x;  // 0..127
  const int lane = t & 31, warp = t >> 5;
  if constexpr (TMA && !FP8) {
    if (warp != 0) return;  // nothing to convert: one warp is the whole producer
  }
  const bool issuer = !TMA || warp == 0;
  constexpr int kPanels = C::kRowBytes / 128;
  constexpr int kTokStep = 128 / C::kChunks;  // cp.async: tokens one pass of 128 threads covers
  constexpr int kPasses = TMA ? 1 : kTile / kTokStep;
  const int c = t % C::kChunks;
  const int tok0 = t / C::kChunks;
  const int rows_per_box = p.block_size < kTile ? p.block_size : kTile;
  const uint8_t* kc = static_cast<const uint8_t*>(p.k_cache);
  const uint8_t* vc = static_cast<const uint8_t*>(p.v_cache);
  const uint32_t sbase = smem_addr(smem);
  size_t rows[kPasses];  // cache rows for the next tile to issue (TMA: this lane's page)
  auto lookup = [&](const int32_t* bt, int pos0, int nvalid) {
#pragma unroll
    for (int j = 0; j < kPasses; ++j) {
      const int tok = TMA ? lane * rows_per_box : tok0 + kTokStep * j;
      rows[j] = 0;
      if (tok < nvalid) {
        const int pos = pos0 + tok;
        const int bi = pos / p.block_size;
        if (bi >= p.max_blocks_per_seq) __trap();  // seq_lens beyond the block table
        rows[j] = static_cast<size_t>(__ldg(bt + bi)) * p.block_size + (pos - bi * p.block_size);
      }
    }
  };
  uint32_t n = 0;  // tiles issued by this CTA
  int nv1 = 0;     // valid tokens of tile n-1 (fp8: converted one tile behind the copies)
  for (int it = ib; it < ie; ++it) {
    const int4 item = items[it];
    const int32_t* bt = p.block_table + static_cast<size_t>(item.x) * p.max_blocks_per_seq;
    if (issuer && kDiag != 2) lookup(bt, item.y, min(kTile, item.z - item.y));
    for (int pos0 = item.y; pos0 < item.z; pos0 += kTile, ++n) {
      const int s = n % C::kStages;
      const int nvalid = min(kTile, item.z - pos0);
      if (issuer) {
        mbar_wait(b.empty + 8 * s, ((n / C::kStages) & 1) ^ 1);
        const uint32_t kdst = sbase + C::kOffStages + s * C::kStageBytes;
        const uint32_t vdst = kdst + C::kKTile;
        const uint32_t sdst = sbase + C::kOffScales + s * 2 * kTile * 4;
        if constexpr (kDiag == 2) {
          if (!TMA || lane == 0) mbar_arrive(b.full + 8 * s);
        } else if constexpr (TMA) {
          const int npages = (nvalid + rows_per_box - 1) / rows_per_box;
          const uint32_t bytes = npages * rows_per_box * (2 * C::kRowBytes + (FP8 ? 8 : 0));
          if (lane == 0) mbar_arrive_expect_tx(b.full + 8 * s, bytes);
          __syncwarp();
          if (lane < npages) {
            const int row = static_cast<int>(rows[0]);
            const uint32_t off = lane * rows_per_box * 128;
#pragma unroll
            for (int q = 0; q < kPanels; ++q) {
              tma_load_2d(kdst + q * C::kPanel + off, tk, q * (128 / C::kEsz), row, b.full + 8 * s);
              tma_load_2d(vdst + q * C::kPanel + off, tv, q * (128 / C::kEsz), row, b.full + 8 * s);
            }
            if constexpr (FP8) {
              bulk_load(sdst + lane * rows_per_box * 4, p.k_scale + row, rows_per_box * 4,
                        b.full + 8 * s);
              bulk_load(sdst + (kTile + lane * rows_per_box) * 4, p.v_scale + row, rows_per_box * 4,
                        b.full + 8 * s);
            }
          }
        } else {
#pragma unroll
          for (int j = 0; j < kPasses; ++j) {
            const int tok = tok0 + kTokStep * j;
            const int bytes = tok < nvalid ? 16 : 0;  // 0: zero fill past the end of the item
            const size_t off = rows[j] * C::kRowBytes + c * 16;
            const uint32_t sw = (c >> 3) * C::kPanel + tok * 128 + (((c & 7) ^ (tok & 7)) << 4);
            cp_async_16(kdst + sw, kc + off, bytes);
            cp_async_16(vdst + sw, vc + off, bytes);
            if constexpr (FP8) {
              if (c < 2) {
                const float* sc = c == 0 ? p.k_scale : p.v_scale;
                cp_async_4(sdst + (c * kTile + tok) * 4, sc + rows[j], bytes ? 4 : 0);
              }
            }
          }
          mbar_arrive_cp_async(b.full + 8 * s);
        }
        // Look the next tile's pages up now: the loads fly while this thread converts and
        // waits for the next free stage.
        if (kDiag != 2 && pos0 + kTile < item.z)
          lookup(bt, pos0 + kTile, min(kTile, item.z - pos0 - kTile));
      }
      if constexpr (FP8) {  // convert the previous tile (its copy has had a tile's time)
        if (n >= 1) convert_tile<D, FP8>(smem, b, n - 1, nv1, t);
        nv1 = nvalid;
      }
    }
  }
  if constexpr (FP8) {
    if (n >= 1) convert_tile<D, FP8>(smem, b, n - 1, nv1, t);
  }
  if constexpr (!TMA) asm volatile("cp.async.wait_all;\n" ::: "memory");
}

// ---- consumer warpgroup --------------------------------------------------------------------
// Loads the 64 query rows of this head group into the swizzled Q tile (fp8 path: as f16).
template <int D, bool FP8>
__device__ void load_q(const MfaDecodeParams& p, uint8_t* smem, int seq, int hg, int ct) {
  using C = Cfg<D, FP8>;
  const int h = ct >> 1, half = ct & 1;  // two threads per head row, D/2 dims each
  constexpr int kVec = D / 16;           // 16-byte vectors (8 bf16) per thread
  const uint4* src = reinterpret_cast<const uint4*>(
      static_cast<const __nv_bfloat16*>(p.q) +
      (static_cast<size_t>(seq) * p.heads + hg * kHeadsPerCta + h) * D + half * (D / 2));
  uint4 raw[kVec];
#pragma unroll
  for (int i = 0; i < kVec; ++i) raw[i] = __ldg(src + i);
  named_barrier_sync(1, 128);  // every consumer warp is done with the previous Q
  // Q [64 heads][D] in 128-byte-swizzled panels of 64 dims (K-major A of QK). The fp8 path
  // multiplies in f16: bf16 -> f16 is exact for |q| in [2^-14, 65504] (q after RoPE).
#pragma unroll
  for (int i = 0; i < kVec; ++i) {
    uint4 w = raw[i];
    if constexpr (FP8) {
      const __nv_bfloat162* v2 = reinterpret_cast<const __nv_bfloat162*>(&raw[i]);
      uint32_t hw[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const float2 f = __bfloat1622float2(v2[k]);
        hw[k] = pack_f16(f.x, f.y);
      }
      w = make_uint4(hw[0], hw[1], hw[2], hw[3]);
    }
    const int dim = half * (D / 2) + i * 8;
    const int panel = dim >> 6, chunk = (dim & 63) >> 3;
    *reinterpret_cast<uint4*>(smem + panel * C::kPanel + h * 128 + ((chunk ^ (h & 7)) << 4)) = w;
  }
  fence_proxy_async();
  named_barrier_sync(1, 128);
}

// S = Q K^T for the K tile at shared address `ktile` (64 heads x 64 tokens, f32).
template <int D, bool FP8>
__device__ __forceinline__ void issue_qk(float (&sacc)[32], uint32_t sbase, uint32_t ktile) {
  using C = Cfg<D, FP8>;
  const uint64_t desc_k_major = make_desc_sw128(0, 16, 1024);
  auto desc_at = [&](uint32_t addr) { return desc_k_major + ((addr & 0x3FFFF) >> 4); };
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    const uint32_t off = (kk >> 2) * C::kPanel + (kk & 3) * 32;
    if constexpr (FP8)
      wgmma_m64n64k16_ss_f16(sacc, desc_at(sbase + off), desc_at(ktile + off), kk > 0);
    else
      wgmma_m64n64k16_ss_bf16(sacc, desc_at(sbase + off), desc_at(ktile + off), kk > 0);
  }
  wgmma_commit();
}

// O += P V for the V tile at shared address `vtile` (MN-major, N = head_dim).
template <int D, bool FP8>
__device__ __forceinline__ void issue_pv(float (&o)[D / 2], const uint32_t (&pa)[4][4],
                                         uint32_t vtile) {
  using C = Cfg<D, FP8>;
  const uint64_t desc_v = make_desc_sw128(0, C::kPanel, 1024);  // MN-major: LBO = panel stride
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const uint64_t dv = desc_v + (((vtile + j * 16 * 128) & 0x3FFFF) >> 4);
    if constexpr (FP8) {
      if constexpr (D == 256)
        wgmma_m64n256k16_rs_f16(o, pa[j], dv, 1);
      else
        wgmma_m64n128k16_rs_f16(o, pa[j], dv, 1);
    } else {
      if constexpr (D == 256)
        wgmma_m64n256k16_rs_bf16(o, pa[j], dv, 1);
      else
        wgmma_m64n128k16_rs_bf16(o, pa[j], dv, 1);
    }
  }
  wgmma_commit();
}

// Online softmax of one tile in registers (f32, exp2 domain). In: sacc = raw scores. Out: the
// P fragments for PV, and the factors O must be multiplied by before the PV of this tile.
struct SoftmaxState {
  float m0, m1, l0, l1;  // running max and (thread-partial) sum of rows r0 and r0 + 8
  float g;               // fp8: running max V scale (P' = p * v_scale / g * kPScale)
};
template <bool FP8>
__device__ __forceinline__ void softmax_tile(float (&sacc)[32], uint32_t (&pa)[4][4],
                                             SoftmaxState& st, int nvalid, const float* ks,
                                             const float* vs, float rf0, float rf1, int cq,
                                             float& oalpha0, float& oalpha1) {
  float mx0 = st.m0, mx1 = st.m1;
#pragma unroll
  for (int nb = 0; nb < 8; ++nb) {
    float kf0 = 1.f, kf1 = 1.f;
    if constexpr (FP8) {
      const float2 k2 = *reinterpret_cast<const float2*>(ks + nb * 8 + cq);
      kf0 = k2.x;
      kf1 = k2.y;
    }
    const int col = nb * 8 + cq;
    const bool ok0 = col < nvalid, ok1 = col + 1 < nvalid;
    sacc[4 * nb + 0] = ok0 ? sacc[4 * nb + 0] * rf0 * kf0 : -INFINITY;
    sacc[4 * nb + 1] = ok1 ? sacc[4 * nb + 1] * rf0 * kf1 : -INFINITY;
    sacc[4 * nb + 2] = ok0 ? sacc[4 * nb + 2] * rf1 * kf0 : -INFINITY;
    sacc[4 * nb + 3] = ok1 ? sacc[4 * nb + 3] * rf1 * kf1 : -INFINITY;
    mx0 = fmaxf(mx0, fmaxf(sacc[4 * nb + 0], sacc[4 * nb + 1]));
    mx1 = fmaxf(mx1, fmaxf(sacc[4 * nb + 2], sacc[4 * nb + 3]));
  }
  // a row's 64 columns live in the 4 threads of a quad
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
  mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
  mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
  // every tile has a valid column, so mx is finite; ex2(-inf) = 0 on the first tile
  const float alpha0 = ex2(st.m0 - mx0), alpha1 = ex2(st.m1 - mx1);
  oalpha0 = alpha0;
  oalpha1 = alpha1;
  st.m0 = mx0;
  st.m1 = mx1;
  float vmul[16];  // per column multiplier of p for the PV product
  if constexpr (FP8) {
    float vmax = 0.f;
#pragma unroll
    for (int nb = 0; nb < 8; ++nb) {
      const float2 v2 = *reinterpret_cast<const float2*>(vs + nb * 8 + cq);
      const int col = nb * 8 + cq;
      vmul[2 * nb] = col < nvalid ? v2.x : 0.f;  // rows past the end may hold stale scales
      vmul[2 * nb + 1] = col + 1 < nvalid ? v2.y : 0.f;
      vmax = fmaxf(vmax, fmaxf(vmul[2 * nb], vmul[2 * nb + 1]));
    }
    vmax = fmaxf(vmax, __shfl_xor_sync(0xffffffffu, vmax, 1));
    vmax = fmaxf(vmax, __shfl_xor_sync(0xffffffffu, vmax, 2));
    const float gn = fmaxf(fmaxf(st.g, vmax), 1e-30f);
    const float galpha = st.g / gn;  // 0 on the first tile (O is 0 then)
    st.g = gn;
    oalpha0 *= galpha;
    oalpha1 *= galpha;
    const float mul = kPScale / gn;
#pragma unroll
    for (int i = 0; i < 16; ++i) vmul[i] *= mul;
  }
  float ps0 = 0.f, ps1 = 0.f;
#pragma unroll
  for (int nb = 0; nb < 8; ++nb) {
    const float p00 = ex2(sacc[4 * nb + 0] - mx0), p01 = ex2(sacc[4 * nb + 1] - mx0);
    const float p10 = ex2(sacc[4 * nb + 2] - mx1), p11 = ex2(sacc[4 * nb + 3] - mx1);
    ps0 += p00 + p01;
    ps1 += p10 + p11;
    const int j = nb >> 1, hi = (nb & 1) * 2;  // nb even: regs 0,1; odd: regs 2,3
    if constexpr (FP8) {
      const float w0 = vmul[2 * nb], w1 = vmul[2 * nb + 1];
      pa[j][hi + 0] = pack_f16(p00 * w0, p01 * w1);
      pa[j][hi + 1] = pack_f16(p10 * w0, p11 * w1);
    } else {
      pa[j][hi + 0] = pack_bf16(p00, p01);
      pa[j][hi + 1] = pack_bf16(p10, p11);
    }
  }
  st.l0 = st.l0 * alpha0 + ps0;
  st.l1 = st.l1 * alpha1 + ps1;
}

// Software pipeline per tile i: issue QK(i+1), issue PV(i), softmax(i+1) while PV(i) runs on the
// tensor cores, then rescale O once PV(i) is done.
template <int D, bool FP8>
__device__ void consumer(const MfaDecodeParams& p, uint8_t* smem, const Bars& b, const int4* items,
                         int ib, int ie, int hg) {
  using C = Cfg<D, FP8>;
  const int ct = threadIdx.x - 128;
  const int warp = ct >> 5, lane = ct & 31;
  const int r0 = warp * 16 + (lane >> 2);  // accumulator rows (heads) of this thread: r0, r0+8
  const int cq = 2 * (lane & 3);           // column pair inside each 8-wide block
  const uint32_t sbase = smem_addr(smem);
  const float scale_log2 = p.softmax_scale * 1.4426950408889634f;
  float* ws_o = static_cast<float*>(p.workspace);
  const MetaLayout ml = meta_layout(p.batch, p.num_ctas);
  float* ws_lse = ws_o + static_cast<size_t>(ml.max_items) * p.heads * D;
  constexpr int kPanels = C::kRowBytes / 128;
  constexpr int kB = C::kBufs > 0 ? C::kBufs : 1;  // (no f16 buffers on the bf16 path)
  // Where tile m is read from: bf16, the landing stage; fp8, the f16 buffer the producer
  // converted it into (K tile, then V tile, same size) and its scales.
  auto wait_tile = [&](uint32_t m) {
    if constexpr (FP8)
      mbar_wait(b.kvfull + 8 * (m % kB), (m / kB) & 1);
    else
      mbar_wait(b.full + 8 * (m % C::kStages), (m / C::kStages) & 1);
    fence_proxy_async();  // TMA / cp.async / converter data -> wgmma reads
  };
  auto k_tile = [&](uint32_t m) -> uint32_t {
    return FP8 ? sbase + C::kOffBufs + (m % kB) * C::kBufBytes
               : sbase + C::kOffStages + (m % C::kStages) * C::kStageBytes;
  };
  auto tile_scales = [&](uint32_t m) {  // fp8: f32 [k|v][64]
    return reinterpret_cast<const float*>(smem + C::kOffBufScales) + (m % kB) * 2 * kTile;
  };
  auto release_tile = [&](uint32_t m) {
    if constexpr (FP8)
      mbar_arrive(b.kvempty + 8 * (m % kB));
    else
      mbar_arrive(b.empty + 8 * (m % C::kStages));
  };

  float o[D / 2];
  float sacc[32];
  uint32_t pa[4][4], pn[4][4];  // P of the tile in PV, P of the next tile
  uint32_t n = 0;               // tiles consumed by this CTA
  for (int it = ib; it < ie; ++it) {
    const int4 item = items[it];
    const int seq = item.x;
    if constexpr (kDiag == 1) {  // diagnostics: release the buffers, compute nothing
      for (int pos0 = item.y; pos0 < item.z; pos0 += kTile, ++n) {
        wait_tile(n);
        release_tile(n);
      }
      continue;
    }
    if (it + 1 < ie) {  // warm L2 with the next item's query rows
      const int nseq = items[it + 1].x;
      const char* nq = reinterpret_cast<const char*>(
          static_cast<const __nv_bfloat16*>(p.q) +
          (static_cast<size_t>(nseq) * p.heads + hg * kHeadsPerCta + (ct >> 1)) * D +
          (ct & 1) * (D / 2));
      prefetch_l2(nq);
      if (D == 256) prefetch_l2(nq + 128);
    }
    load_q<D, FP8>(p, smem, seq, hg, ct);
    const float rf0 = scale_log2, rf1 = scale_log2;
    SoftmaxState st{-INFINITY, -INFINITY, 0.f, 0.f, 0.f};
#pragma unroll
    for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
    const int ntiles = (item.z - item.y + kTile - 1) / kTile;

    // prologue: S and P of tile 0
    {
      wait_tile(n);
      wgmma_fence();
      issue_qk<D, FP8>(sacc, sbase, k_tile(n));
      wgmma_wait<0>();
      fence_regs(sacc);
      float a0, a1;
      softmax_tile<FP8>(sacc, pa, st, min(kTile, item.z - item.y), tile_scales(n),
                        tile_scales(n) + kTile, rf0, rf1, cq, a0, a1);
    }
    // One pipeline step; kNext: a next tile exists (the last step is peeled off so that ptxas
    // sees straight-line code and does not serialize the wgmma pipeline).
    auto step = [&](int i, auto next_tag) {
      constexpr bool kNext = decltype(next_tag)::value;
      if constexpr (kNext) {
        wait_tile(n + 1);
        wgmma_fence();
        issue_qk<D, FP8>(sacc, sbase, k_tile(n + 1));
      }
      const uint32_t vtile = k_tile(n) + C::kTile16;
      if constexpr (!FP8 && !kNext) {
        // Only the last tile can be partial; its rows past the end may hold stale data (and
        // 0 * NaN is NaN), so they are zeroed before PV. (fp8: the converter zeroes them.)
        const int nvalid = min(kTile, item.z - item.y - i * kTile);
        if (nvalid < kTile) {
          uint8_t* vp = smem + (vtile - sbase);
          for (int idx = ct; idx < (kTile - nvalid) * kPanels * 8; idx += 128) {
            const int row = nvalid + idx / (kPanels * 8), rem = idx % (kPanels * 8);
            *reinterpret_cast<uint4*>(vp + (rem >> 3) * C::kPanel + row * 128 + (rem & 7) * 16) =
                make_uint4(0, 0, 0, 0);
          }
          fence_proxy_async();
          named_barrier_sync(1, 128);
        }
      }
      wgmma_fence();
      issue_pv<D, FP8>(o, pa, vtile);
      float a0 = 1.f, a1 = 1.f;
      if constexpr (kNext) {
        wgmma_wait<1>();  // QK(i+1) is done; PV(i) may still run
        fence_regs(sacc);
        softmax_tile<FP8>(sacc, pn, st, min(kTile, item.z - item.y - (i + 1) * kTile),
                          tile_scales(n + 1), tile_scales(n + 1) + kTile, rf0, rf1, cq, a0, a1);
      }
      wgmma_wait<0>();
      fence_regs(o);
#pragma unroll
      for (int j = 0; j < 4; ++j) fence_regs(pa[j]);  // P registers stay live until PV is done
      release_tile(n);
      if constexpr (kNext) {
#pragma unroll
        for (int k = 0; k < D / 8; ++k) {
          o[4 * k + 0] *= a0;
          o[4 * k + 1] *= a0;
          o[4 * k + 2] *= a1;
          o[4 * k + 3] *= a1;
        }
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int k = 0; k < 4; ++k) pa[j][k] = pn[j][k];
      }
      ++n;
    };
    for (int i = 0; i + 1 < ntiles; ++i) step(i, std::true_type{});
    step(ntiles - 1, std::false_type{});

    // ---- epilogue: out = O / l, or a partial for the combine kernel ----
    float l0 = st.l0, l1 = st.l1;
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float norm = FP8 ? st.g / kPScale : 1.f;
    const float inv0 = norm / l0, inv1 = norm / l1;
    const int slot = item.w;
    const size_t row0 = static_cast<size_t>(hg * kHeadsPerCta + r0);
    if (slot < 0) {
      __nv_bfloat16* out =
          static_cast<__nv_bfloat16*>(p.out) + (static_cast<size_t>(seq) * p.heads + row0) * D;
#pragma unroll
      for (int nb = 0; nb < D / 8; ++nb) {
        const int col = nb * 8 + cq;
        *reinterpret_cast<__nv_bfloat162*>(out + col) =
            __floats2bfloat162_rn(o[4 * nb + 0] * inv0, o[4 * nb + 1] * inv0);
        *reinterpret_cast<__nv_bfloat162*>(out + 8 * D + col) =
            __floats2bfloat162_rn(o[4 * nb + 2] * inv1, o[4 * nb + 3] * inv1);
      }
    } else {
      float* w = ws_o + (static_cast<size_t>(slot) * p.heads + row0) * D;
#pragma unroll
      for (int nb = 0; nb < D / 8; ++nb) {
        const int col = nb * 8 + cq;
        *reinterpret_cast<float2*>(w + col) = make_float2(o[4 * nb] * inv0, o[4 * nb + 1] * inv0);
        *reinterpret_cast<float2*>(w + 8 * D + col) =
            make_float2(o[4 * nb + 2] * inv1, o[4 * nb + 3] * inv1);
      }
      if ((lane & 3) == 0) {
        ws_lse[static_cast<size_t>(slot) * p.heads + row0] = st.m0 + __log2f(l0);
        ws_lse[static_cast<size_t>(slot) * p.heads + row0 + 8] = st.m1 + __log2f(l1);
      }
    }
  }
}

template <int D, bool FP8, bool TMA>
__global__ void __launch_bounds__(kThreads, 1)
    mfa_decode_kernel(const MfaDecodeParams p, const __grid_constant__ CUtensorMap tmap_k,
                      const __grid_constant__ CUtensorMap tmap_v) {
  using C = Cfg<D, FP8>;
  extern __shared__ __align__(1024) uint8_t smem[];
  if ((smem_addr(smem) & 1023) != 0) __trap();  // swizzled tiles need 1024-byte alignment
  const uint32_t bars = smem_addr(smem) + C::kOffBars;
  Bars b{bars, bars + 8 * C::kStages, bars + 16 * C::kStages,
         bars + 16 * C::kStages + 8 * C::kBufs};
  if (threadIdx.x == 0) {
    for (int i = 0; i < C::kStages; ++i) {
      // full: TMA, one arrival with the byte count; cp.async, one per producer thread.
      // empty: bf16, one arrival per consumer thread; fp8, per converting (producer) thread.
      mbar_init(b.full + 8 * i, TMA ? 1 : 128);
      mbar_init(b.empty + 8 * i, 128);
    }
    for (int i = 0; i < C::kBufs; ++i) {
      mbar_init(b.kvfull + 8 * i, 128);   // converting threads
      mbar_init(b.kvempty + 8 * i, 128);  // consumer threads
    }
    fence_mbarrier_init();
  }
  __syncthreads();
  const MetaLayout ml = meta_layout(p.batch, p.num_ctas);
  const int ib = p.metadata[ml.cta_begin + blockIdx.x];
  const int ie = p.metadata[ml.cta_begin + blockIdx.x + 1];
  const int4* items = reinterpret_cast<const int4*>(p.metadata + ml.items);
  if (threadIdx.x < 128)
    producer<D, FP8, TMA>(p, &tmap_k, &tmap_v, smem, b, items, ib, ie);
  else
    consumer<D, FP8>(p, smem, b, items, ib, ie, blockIdx.y);
}

// cuTensorMapEncodeTiled from the driver, through the runtime (no -lcuda needed).
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault,
                                         &q) == cudaSuccess &&
        q == cudaDriverEntryPointSuccess)
      fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
    else
      cudaGetLastError();
  });
  return fn;
}

// 2-D map over a cache [num_blocks * block_size rows, head_dim]: boxes of `box_rows` rows x 128
// bytes, 128-byte swizzle (the layout wgmma reads).
bool encode_cache_map(CUtensorMap* map, const void* base, bool fp8, int D, uint64_t rows,
                      int box_rows) {
  auto encode = tensor_map_encoder();
  if (!encode) return false;
  const int esz = fp8 ? 1 : 2;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(D), rows};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(D) * esz};
  const cuuint32_t box[2] = {static_cast<cuuint32_t>(128 / esz), static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t elem_strides[2] = {1, 1};
  return encode(map, fp8 ? CU_TENSOR_MAP_DATA_TYPE_UINT8 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2,
                const_cast<void*>(base), dims, strides, box, elem_strides,
                CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// TMA copies whole pages into 64-token tiles: pages must tile a tile (and the plan starts items
// at multiples of 64 tokens). Boxes of fewer than 8 rows would not keep the 1024-byte swizzle
// pattern aligned, so block sizes 1, 2, 4 (and any other) take the cp.async path.
bool tma_block_size(int bs) {
  return bs == 8 || bs == 16 || bs == 32 || bs == 64 || (bs > 0 && bs % 64 == 0);
}

template <int D, bool FP8, bool TMA>
cudaError_t launch_one(const MfaDecodeParams& p, cudaStream_t stream) {
  using C = Cfg<D, FP8>;
  static std::once_flag once;
  static cudaError_t attr_err = cudaSuccess;
  std::call_once(once, [] {
    attr_err = cudaFuncSetAttribute(mfa_decode_kernel<D, FP8, TMA>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmemBytes);
  });
  if (attr_err != cudaSuccess) return attr_err;
  CUtensorMap tk{}, tv{};
  if constexpr (TMA) {
    const uint64_t rows = static_cast<uint64_t>(p.num_blocks) * p.block_size;
    const int box_rows = p.block_size < kTile ? p.block_size : kTile;
    if (!encode_cache_map(&tk, p.k_cache, FP8, D, rows, box_rows) ||
        !encode_cache_map(&tv, p.v_cache, FP8, D, rows, box_rows))
      return cudaErrorInvalidValue;
  }
  dim3 grid(p.num_ctas, p.heads / kHeadsPerCta);
  mfa_decode_kernel<D, FP8, TMA><<<grid, kThreads, C::kSmemBytes, stream>>>(p, tk, tv);
  return cudaGetLastError();
}

template <int D, bool FP8>
cudaError_t launch(const MfaDecodeParams& p, cudaStream_t stream) {
  const uint64_t rows = static_cast<uint64_t>(p.num_blocks) * p.block_size;
  if (tma_block_size(p.block_size) && rows < (uint64_t(1) << 31) && tensor_map_encoder())
    return launch_one<D, FP8, true>(p, stream);
  return launch_one<D, FP8, false>(p, stream);
}

}  // namespace mfa

int mfa_decode_default_num_ctas(int device) {
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return sms;
}

cudaError_t mfa_decode(const MfaDecodeParams& p, cudaStream_t stream) {
  const bool fp8 = p.kv_type == MfaKvType::kFp8E4M3;
  if (p.batch < 0 || p.heads <= 0 || p.heads % mfa::kHeadsPerCta != 0 ||
      (p.head_dim != 128 && p.head_dim != 256) || p.block_size < 1 || p.num_blocks < 1 ||
      p.max_blocks_per_seq < 0 || p.num_ctas < 1 || p.num_ctas > mfa::kMaxCtas)
    return cudaErrorInvalidValue;
  if (p.batch == 0) return cudaSuccess;
  if (!p.q || !p.out || !p.k_cache || !p.v_cache || !p.block_table || !p.seq_lens || !p.metadata ||
      !p.workspace || (fp8 && (!p.k_scale || !p.v_scale)))
    return cudaErrorInvalidValue;
  cudaError_t e;
  if (fp8) {
    e = p.head_dim == 256 ? mfa::launch<256, true>(p, stream) : mfa::launch<128, true>(p, stream);
  } else {
    e = p.head_dim == 256 ? mfa::launch<256, false>(p, stream) : mfa::launch<128, false>(p, stream);
  }
  if (e != cudaSuccess) return e;
  return mfa::launch_combine(p, stream);
}

}  // namespace afd::cuda
