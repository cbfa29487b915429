// Benchmark of the MFA decode kernel (src/kernels/cuda/mfa_decode.h) next to the device's copy
// bandwidth measured in the same run.
//
// For KV in {fp8, bf16} x batch {1, 16, 64, 128, 256} x context {1K, 4K, 8K, 32K}: 64 heads x
// head_dim 256, block size 64, pages shuffled, non-zero random data. Time = attention + combine
// launch pair (CUDA events around each pair, 3 warm-ups, median of 25); the plan is timed on its
// own (it runs once per step, not once per layer). Achieved bandwidth = bytes the kernel must
// read or write (KV cache, fp8 scales, block table, q, out) / time. Copy ceiling: device-to-device
// cudaMemcpy of 1 GiB, bytes read + written, median of 10.
//
// Usage: bench_mfa [--csv FILE] [--reps N]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/mfa_decode.h"

#define CUDA_OK(expr)                                                                        \
  do {                                                                                       \
    cudaError_t e_ = (expr);                                                                 \
    if (e_ != cudaSuccess) {                                                                 \
      std::fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorString(e_), __FILE__, \
                   __LINE__, #expr);                                                         \
      std::exit(2);                                                                          \
    }                                                                                        \
  } while (0)

namespace {

__device__ __forceinline__ uint32_t hash32(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return static_cast<uint32_t>(x);
}
// fp8 bytes: random, never the NaN codes 0x7F / 0xFF.
__global__ void fill_fp8(uint8_t* p, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint8_t b = static_cast<uint8_t>(hash32(seed + i));
    if ((b & 0x7F) == 0x7F) b ^= 1;
    p[i] = b;
  }
}
// bf16 values uniform in (-2, 2).
__global__ void fill_bf16(uint16_t* p, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float f = (hash32(seed + i) * (1.0f / 4294967296.0f) - 0.5f) * 4.0f;
    uint32_t u = __float_as_uint(f);
    p[i] = static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
  }
}
// scales in [0.5, 1.5) / 448.
__global__ void fill_scale(float* p, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    p[i] = (0.5f + hash32(seed + i) * (1.0f / 4294967296.0f)) / 448.0f;
}

// Read-only streaming ceiling: every byte of `p` read once with 16-byte loads.
__global__ void read_stream(const uint4* __restrict__ p, size_t n16, uint32_t* sink) {
  uint32_t acc = 0;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  for (; i + 3 * stride < n16; i += 4 * stride) {
    const uint4 a = __ldcs(p + i), b = __ldcs(p + i + stride), c = __ldcs(p + i + 2 * stride),
                d = __ldcs(p + i + 3 * stride);
    acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^
           d.w;
  }
  for (; i < n16; i += stride) acc ^= __ldcs(p + i).x;
  if (acc == 0x12345678u) sink[0] = acc;  // keeps the loads
}

template <class F>
float median_ms(int reps, cudaStream_t st, F&& fn) {
  std::vector<cudaEvent_t> ev(2 * reps);
  for (auto& e : ev) CUDA_OK(cudaEventCreate(&e));
  for (int r = 0; r < reps; ++r) {
    CUDA_OK(cudaEventRecord(ev[2 * r], st));
    fn();
    CUDA_OK(cudaEventRecord(ev[2 * r + 1], st));
  }
  CUDA_OK(cudaStreamSynchronize(st));
  std::vector<float> ms(reps);
  for (int r = 0; r < reps; ++r) CUDA_OK(cudaEventElapsedTime(&ms[r], ev[2 * r], ev[2 * r + 1]));
  for (auto& e : ev) CUDA_OK(cudaEventDestroy(e));
  std::sort(ms.begin(), ms.end());
  return ms[reps / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const char* csv_path = nullptr;
  const char* only = nullptr;  // "fp8:128:8192,bf16:64:4096": run just these
  int reps = 25;
  for (int i = 1; i + 1 < argc; ++i) {
    if (!std::strcmp(argv[i], "--csv")) csv_path = argv[i + 1];
    if (!std::strcmp(argv[i], "--reps")) reps = std::max(5, std::atoi(argv[i + 1]));
    if (!std::strcmp(argv[i], "--only")) only = argv[i + 1];
  }
  cudaDeviceProp prop{};
  CUDA_OK(cudaGetDeviceProperties(&prop, 0));
  const int num_ctas = afd::cuda::mfa_decode_default_num_ctas(0);
  std::printf("bench_mfa: %s, %d SMs, L2 %d MiB\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20);
  cudaStream_t st;
  CUDA_OK(cudaStreamCreate(&st));

  // ---- ceiling: device-to-device copy ----
  double copy_gbps;
  {
    const size_t n = size_t(1) << 30;
    void *a, *b;
    CUDA_OK(cudaMalloc(&a, n));
    CUDA_OK(cudaMalloc(&b, n));
    CUDA_OK(cudaMemset(a, 1, n));
    for (int i = 0; i < 2; ++i) CUDA_OK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, st));
    const float ms =
        median_ms(10, st, [&] { CUDA_OK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, st)); });
    copy_gbps = 2.0 * n / (ms * 1e-3) / 1e9;
    CUDA_OK(cudaFree(a));
    CUDA_OK(cudaFree(b));
  }
  std::printf("copy (D2D, read + write): %.0f GB/s\n", copy_gbps);
  {  // read-only streaming, for reference (a decode kernel only reads)
    const size_t n = size_t(4) << 30;
    void* a;
    uint32_t* sink;
    CUDA_OK(cudaMalloc(&a, n));
    CUDA_OK(cudaMalloc(&sink, 4));
    CUDA_OK(cudaMemset(a, 1, n));
    auto run = [&] {
      read_stream<<<prop.multiProcessorCount * 8, 512, 0, st>>>(static_cast<const uint4*>(a),
                                                                n / 16, sink);
    };
    run();
    const float ms = median_ms(10, st, run);
    CUDA_OK(cudaGetLastError());
    std::printf("read-only stream (16-byte loads): %.0f GB/s\n", n / (ms * 1e-3) / 1e9);
    CUDA_OK(cudaFree(a));
    CUDA_OK(cudaFree(sink));
  }

  FILE* csv = csv_path ? std::fopen(csv_path, "w") : nullptr;
  if (csv) std::fprintf(csv, "kv,batch,ctx,us,gbps,copy_gbps,frac_copy,plan_us,items\n");
  std::printf("%-5s %5s %6s %10s %9s %8s %8s %6s\n", "kv", "batch", "ctx", "us", "GB/s", "%copy",
              "plan_us", "items");

  const int heads = 64, D = 256, bs = 64;
  const int batches[] = {1, 16, 64, 128, 256};
  const int ctxs[] = {1024, 4096, 8192, 32768};
  std::mt19937_64 rng(12345);
  for (int kv = 0; kv < 2; ++kv) {
    const bool fp8 = kv == 0;
    const int esz = fp8 ? 1 : 2;
    for (int B : batches) {
      for (int ctx : ctxs) {
        if (only) {
          char key[64];
          std::snprintf(key, sizeof key, "%s:%d:%d", fp8 ? "fp8" : "bf16", B, ctx);
          const std::string list = std::string(",") + only + ",";
          if (list.find(std::string(",") + key + ",") == std::string::npos) continue;
        }
        const size_t tokens = static_cast<size_t>(B) * ctx;
        const size_t kv_bytes = 2 * tokens * D * esz;
        size_t free_b = 0, total_b = 0;
        CUDA_OK(cudaMemGetInfo(&free_b, &total_b));
        if (kv_bytes + (size_t(4) << 30) > free_b) {
          std::printf("%-5s %5d %6d   skipped: %.1f GB of KV does not fit\n", fp8 ? "fp8" : "bf16",
                      B, ctx, kv_bytes / 1e9);
          continue;
        }
        const int blocks_per_seq = (ctx + bs - 1) / bs;
        const int num_blocks = B * blocks_per_seq;
        std::vector<int32_t> perm(num_blocks);
        std::iota(perm.begin(), perm.end(), 0);
        std::shuffle(perm.begin(), perm.end(), rng);
        std::vector<int32_t> lens(B, ctx);
        uint8_t *k, *v;
        float *ks = nullptr, *vs = nullptr;
        int32_t *bt, *dl, *meta;
        uint16_t *q, *out;
        void* ws;
        const size_t cache_elems = static_cast<size_t>(num_blocks) * bs * D;
        CUDA_OK(cudaMalloc(&k, cache_elems * esz));
        CUDA_OK(cudaMalloc(&v, cache_elems * esz));
        if (fp8) {
          CUDA_OK(cudaMalloc(&ks, static_cast<size_t>(num_blocks) * bs * 4));
          CUDA_OK(cudaMalloc(&vs, static_cast<size_t>(num_blocks) * bs * 4));
          fill_fp8<<<4096, 256, 0, st>>>(k, cache_elems, 1);
          fill_fp8<<<4096, 256, 0, st>>>(v, cache_elems, 2);
          fill_scale<<<1024, 256, 0, st>>>(ks, static_cast<size_t>(num_blocks) * bs, 3);
          fill_scale<<<1024, 256, 0, st>>>(vs, static_cast<size_t>(num_blocks) * bs, 4);
        } else {
          fill_bf16<<<4096, 256, 0, st>>>(reinterpret_cast<uint16_t*>(k), cache_elems, 1);
          fill_bf16<<<4096, 256, 0, st>>>(reinterpret_cast<uint16_t*>(v), cache_elems, 2);
        }
        CUDA_OK(cudaMalloc(&bt, perm.size() * 4));
        CUDA_OK(cudaMemcpy(bt, perm.data(), perm.size() * 4, cudaMemcpyHostToDevice));
        CUDA_OK(cudaMalloc(&dl, B * 4));
        CUDA_OK(cudaMemcpy(dl, lens.data(), B * 4, cudaMemcpyHostToDevice));
        CUDA_OK(cudaMalloc(&meta, afd::cuda::mfa_decode_metadata_bytes(B, num_ctas)));
        CUDA_OK(cudaMalloc(&ws, afd::cuda::mfa_decode_workspace_bytes(B, num_ctas, heads, D)));
        const size_t qn = static_cast<size_t>(B) * heads * D;
        CUDA_OK(cudaMalloc(&q, qn * 2));
        CUDA_OK(cudaMalloc(&out, qn * 2));
        fill_bf16<<<256, 256, 0, st>>>(q, qn, 5);
        CUDA_OK(cudaGetLastError());

        afd::cuda::MfaDecodeParams p;
        p.q = q;
        p.out = out;
        p.k_cache = k;
        p.v_cache = v;
        p.k_scale = ks;
        p.v_scale = vs;
        p.block_table = bt;
        p.seq_lens = dl;
        p.metadata = meta;
        p.workspace = ws;
        p.num_blocks = num_blocks;
        p.batch = B;
        p.heads = heads;
        p.head_dim = D;
        p.block_size = bs;
        p.max_blocks_per_seq = blocks_per_seq;
        p.num_ctas = num_ctas;
        p.softmax_scale = 0.0625f;
        p.kv_type = fp8 ? afd::cuda::MfaKvType::kFp8E4M3 : afd::cuda::MfaKvType::kBf16;

        CUDA_OK(afd::cuda::mfa_decode_plan(dl, B, num_ctas, meta, st));
        for (int i = 0; i < 3; ++i) CUDA_OK(afd::cuda::mfa_decode(p, st));
        CUDA_OK(cudaStreamSynchronize(st));
        const float plan_ms = median_ms(
            11, st, [&] { CUDA_OK(afd::cuda::mfa_decode_plan(dl, B, num_ctas, meta, st)); });
        const float ms = median_ms(reps, st, [&] { CUDA_OK(afd::cuda::mfa_decode(p, st)); });
        CUDA_OK(cudaStreamSynchronize(st));
        CUDA_OK(cudaGetLastError());
        int32_t num_items = 0;
        CUDA_OK(cudaMemcpy(&num_items, meta, 4, cudaMemcpyDeviceToHost));
        // NaN check on the output (a broken kernel must not report a speed)
        std::vector<uint16_t> h(qn);
        CUDA_OK(cudaMemcpy(h.data(), out, qn * 2, cudaMemcpyDeviceToHost));
        size_t bad = 0;
        for (uint16_t x : h) bad += ((x & 0x7F80) == 0x7F80);
        const double bytes = static_cast<double>(kv_bytes) + (fp8 ? 8.0 * tokens : 0.0) +
                             4.0 * B * blocks_per_seq + 2.0 * 2.0 * qn;
        const double gbps = bytes / (ms * 1e-3) / 1e9;
        std::printf("%-5s %5d %6d %10.1f %9.0f %7.1f%% %8.1f %6d%s\n", fp8 ? "fp8" : "bf16", B, ctx,
                    ms * 1e3, gbps, 100.0 * gbps / copy_gbps, plan_ms * 1e3, num_items,
                    bad ? "  NON-FINITE OUTPUT" : "");
        if (csv)
          std::fprintf(csv, "%s,%d,%d,%.2f,%.1f,%.1f,%.4f,%.2f,%d\n", fp8 ? "fp8" : "bf16", B, ctx,
                       ms * 1e3, gbps, copy_gbps, gbps / copy_gbps, plan_ms * 1e3, num_items);
        std::fflush(stdout);
        CUDA_OK(cudaFree(k));
        CUDA_OK(cudaFree(v));
        if (fp8) {
          CUDA_OK(cudaFree(ks));
          CUDA_OK(cudaFree(vs));
        }
        CUDA_OK(cudaFree(bt));
        CUDA_OK(cudaFree(dl));
        CUDA_OK(cudaFree(meta));
        CUDA_OK(cudaFree(ws));
        CUDA_OK(cudaFree(q));
        CUDA_OK(cudaFree(out));
      }
    }
  }
  if (csv) std::fclose(csv);
  CUDA_OK(cudaStreamDestroy(st));
  return 0;
}
