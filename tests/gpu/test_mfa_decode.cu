// Differential test of the MFA decode kernel (src/kernels/cuda/mfa_decode.h) against a naive
// double-precision CPU reference written here, on fresh random inputs.
//
// Self-contained on purpose (the GPU machine has none of the project's Debian dependencies):
// no gtest, no fmt, no BLAS. Exit status is nonzero on any failure; the last line printed is
// "N passed, M failed". Usage: test_mfa_decode [--seed S]   (default: a time-based seed, printed)
//
// What it covers: batches 1, 3, 7, 129, 1000; contexts 0, 1, 5, 17, 100, 1000, 4097 and random
// ones (never multiples of the block size on purpose); block sizes 8, 16, 64, 128 (TMA copies)
// and 5 (cp.async copies); shuffled,
// non-contiguous block tables; FP8 (e4m3 + per-token scales) and BF16 caches; 64 heads x 256
// (the real shape), head_dim 128, 128 heads; a grid of 3 CTAs (many items per CTA); split and
// unsplit sequences; a CUDA graph of plan + attention replayed with new lengths. Cache rows no
// sequence owns hold NaN, so any read past a sequence's end shows up; the output is poisoned
// (NaN) before each run, so any element left unwritten shows up.
//
// Tolerance: bf16 output rounding is 2^-9 (0.2%) of a value; the kernel also rounds the
// probabilities to bf16 (BF16 KV) or f16 (FP8 KV) and, for FP8 KV, represents q as two e4m3
// terms (about bf16 precision). We require, per sequence,
//     max |out - ref| <= 1e-2 * max |ref|        (1% of the output's scale)
// and report the relative L2 error as well. NaN never passes.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/mfa_decode.h"

using afd::cuda::MfaDecodeParams;
using afd::cuda::MfaKvType;

namespace {

constexpr double kTol = 1e-2;

#define CUDA_OK(expr)                                                                        \
  do {                                                                                       \
    cudaError_t e_ = (expr);                                                                 \
    if (e_ != cudaSuccess) {                                                                 \
      std::fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorString(e_), __FILE__, \
                   __LINE__, #expr);                                                         \
      std::exit(2);                                                                          \
    }                                                                                        \
  } while (0)

// ---- number formats, written from their definitions (independent of the kernel) ------------
double e4m3_to_double(uint8_t b) {
  const int sign = b >> 7, exp = (b >> 3) & 15, man = b & 7;
  if (exp == 15 && man == 7) return NAN;
  const double mag = exp == 0 ? std::ldexp(man / 8.0, -6) : std::ldexp(1.0 + man / 8.0, exp - 7);
  return sign ? -mag : mag;
}

struct E4m3Table {
  double pos[127];  // values of codes 0x00..0x7E, increasing
  E4m3Table() {
    for (int i = 0; i < 127; ++i) pos[i] = e4m3_to_double(static_cast<uint8_t>(i));
  }
  // Round to nearest (ties to the even code), saturating at 448.
  uint8_t encode(double x) const {
    const uint8_t sign = x < 0 ? 0x80 : 0;
    const double a = std::fabs(x);
    if (a >= pos[126]) return sign | 126;
    int hi = static_cast<int>(std::upper_bound(pos, pos + 127, a) - pos);  // pos[hi-1] <= a
    int lo = hi - 1;
    const double dl = a - pos[lo], dh = pos[hi] - a;
    int code = dl < dh ? lo : (dh < dl ? hi : ((lo & 1) == 0 ? lo : hi));
    return sign | static_cast<uint8_t>(code);
  }
};
const E4m3Table kE4m3;

uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
double bf16_to_double(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

template <class T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t count) : n(count) {
    CUDA_OK(cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T)));
  }
  ~DevBuf() { cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  void upload(const std::vector<T>& v) {
    CUDA_OK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
};

struct Case {
  std::string name;
  std::vector<int> lens;
  int heads = 64;
  int head_dim = 256;
  int block_size = 16;
  bool fp8 = true;
  double q_amp = 1.0;  // query amplitude: larger -> peakier softmax
  int num_ctas = 0;    // 0: one per SM
  bool graph = false;  // capture plan + attention in a CUDA graph, replay with new lengths
};

// One batch's host data: paged cache, block table, queries.
struct Batch {
  int batch = 0, heads = 0, D = 0, bs = 0, max_blocks = 0, num_blocks = 0;
  bool fp8 = true;
  std::vector<int> lens;
  std::vector<int32_t> block_table;
  std::vector<uint8_t> k8, v8;     // fp8 caches
  std::vector<uint16_t> k16, v16;  // bf16 caches
  std::vector<float> ks, vs;       // fp8 scales per cache row
  std::vector<uint16_t> q;         // bf16 [batch, heads, D]

  // real value of element d of cache row `row`
  double k_at(size_t row, int d) const {
    return fp8 ? e4m3_to_double(k8[row * D + d]) * ks[row] : bf16_to_double(k16[row * D + d]);
  }
  double v_at(size_t row, int d) const {
    return fp8 ? e4m3_to_double(v8[row * D + d]) * vs[row] : bf16_to_double(v16[row * D + d]);
  }
};

Batch make_batch(const Case& c, std::mt19937_64& rng) {
  Batch b;
  b.batch = static_cast<int>(c.lens.size());
  b.heads = c.heads;
  b.D = c.head_dim;
  b.bs = c.block_size;
  b.fp8 = c.fp8;
  b.lens = c.lens;
  int need_total = 0;
  b.max_blocks = 1;
  for (int len : b.lens) {
    const int nb = (len + b.bs - 1) / b.bs;
    need_total += nb;
    b.max_blocks = std::max(b.max_blocks, nb + 1);  // one spare column, left at -1
  }
  b.num_blocks = need_total + 3;  // a few blocks nobody owns
  std::vector<int32_t> perm(b.num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  b.block_table.assign(static_cast<size_t>(b.batch) * b.max_blocks, -1);
  std::vector<char> owned_row(static_cast<size_t>(b.num_blocks) * b.bs, 0);
  int next = 0;
  for (int s = 0; s < b.batch; ++s) {
    const int nb = (b.lens[s] + b.bs - 1) / b.bs;
    for (int j = 0; j < nb; ++j) {
      const int blk = perm[next++];
      b.block_table[static_cast<size_t>(s) * b.max_blocks + j] = blk;
      for (int r = 0; r < b.bs && j * b.bs + r < b.lens[s]; ++r)
        owned_row[static_cast<size_t>(blk) * b.bs + r] = 1;
    }
  }
  const size_t rows = static_cast<size_t>(b.num_blocks) * b.bs;
  std::normal_distribution<double> nd(0.0, 1.0);
  std::uniform_real_distribution<double> amp(0.25, 4.0);
  if (b.fp8) {
    b.k8.resize(rows * b.D);
    b.v8.resize(rows * b.D);
    b.ks.resize(rows);
    b.vs.resize(rows);
  } else {
    b.k16.resize(rows * b.D);
    b.v16.resize(rows * b.D);
  }
  std::vector<double> tmp(b.D);
  for (size_t row = 0; row < rows; ++row) {
    for (int kv = 0; kv < 2; ++kv) {
      if (!owned_row[row]) {  // NaN: the kernel must never read these rows
        if (b.fp8) {
          std::fill_n((kv ? b.v8 : b.k8).begin() + row * b.D, b.D, 0x7F);
          (kv ? b.vs : b.ks)[row] = NAN;
        } else {
          std::fill_n((kv ? b.v16 : b.k16).begin() + row * b.D, b.D, 0x7FC0);
        }
        continue;
      }
      const double a = amp(rng);  // per-token amplitude: scales differ from token to token
      double amax = 0;
      for (int d = 0; d < b.D; ++d) {
        tmp[d] = a * nd(rng);
        amax = std::max(amax, std::fabs(tmp[d]));
      }
      if (b.fp8) {
        const float scale = static_cast<float>(amax / 448.0);
        (kv ? b.vs : b.ks)[row] = scale;
        for (int d = 0; d < b.D; ++d)
          (kv ? b.v8 : b.k8)[row * b.D + d] = kE4m3.encode(tmp[d] / scale);
      } else {
        for (int d = 0; d < b.D; ++d)
          (kv ? b.v16 : b.k16)[row * b.D + d] = f32_to_bf16(static_cast<float>(tmp[d]));
      }
    }
  }
  b.q.resize(static_cast<size_t>(b.batch) * b.heads * b.D);
  for (auto& x : b.q) x = f32_to_bf16(static_cast<float>(c.q_amp * nd(rng)));
  return b;
}

// out [batch, heads, D] in double: softmax(q k^T * scale) v, zeros for empty sequences.
std::vector<double> reference(const Batch& b, double scale) {
  std::vector<double> out(static_cast<size_t>(b.batch) * b.heads * b.D, 0.0);
  std::vector<double> kf, vf, sc;
  for (int s = 0; s < b.batch; ++s) {
    const int len = b.lens[s];
    if (len == 0) continue;
    kf.assign(static_cast<size_t>(len) * b.D, 0);
    vf.assign(static_cast<size_t>(len) * b.D, 0);
    for (int t = 0; t < len; ++t) {
      const size_t row =
          static_cast<size_t>(b.block_table[static_cast<size_t>(s) * b.max_blocks + t / b.bs]) *
              b.bs +
          t % b.bs;
      for (int d = 0; d < b.D; ++d) {
        kf[static_cast<size_t>(t) * b.D + d] = b.k_at(row, d);
        vf[static_cast<size_t>(t) * b.D + d] = b.v_at(row, d);
      }
    }
    sc.resize(len);
    for (int h = 0; h < b.heads; ++h) {
      const uint16_t* q = &b.q[(static_cast<size_t>(s) * b.heads + h) * b.D];
      double mx = -INFINITY;
      for (int t = 0; t < len; ++t) {
        double acc = 0;
        for (int d = 0; d < b.D; ++d)
          acc += bf16_to_double(q[d]) * kf[static_cast<size_t>(t) * b.D + d];
        sc[t] = acc * scale;
        mx = std::max(mx, sc[t]);
      }
      double sum = 0;
      for (int t = 0; t < len; ++t) {
        sc[t] = std::exp(sc[t] - mx);
        sum += sc[t];
      }
      double* o = &out[(static_cast<size_t>(s) * b.heads + h) * b.D];
      for (int t = 0; t < len; ++t) {
        const double w = sc[t] / sum;
        for (int d = 0; d < b.D; ++d) o[d] += w * vf[static_cast<size_t>(t) * b.D + d];
      }
    }
  }
  return out;
}

// Compares per sequence; prints a diagnosis for the first failing sequence.
bool compare(const Batch& b, const std::vector<uint16_t>& got, const std::vector<double>& ref,
             double& worst_rel, double& rel_l2) {
  bool ok = true, diagnosed = false;
  worst_rel = 0;
  double se = 0, sr = 0;
  const size_t per = static_cast<size_t>(b.heads) * b.D;
  for (int s = 0; s < b.batch; ++s) {
    double scale = 0, err = 0;
    size_t worst = 0;
    bool nan = false;
    for (size_t i = 0; i < per; ++i) {
      const double r = ref[s * per + i], g = bf16_to_double(got[s * per + i]);
      if (std::isnan(g)) nan = true;
      scale = std::max(scale, std::fabs(r));
      const double e = std::fabs(g - r);
      if (!(e <= err)) {
        err = e;
        worst = i;
      }
      se += (g - r) * (g - r);
      sr += r * r;
    }
    const double rel = b.lens[s] == 0 ? err : err / std::max(scale, 1e-30);
    if (std::isnan(err) || nan)
      worst_rel = NAN;
    else
      worst_rel = std::max(worst_rel, rel);
    const bool seq_ok = !nan && (b.lens[s] == 0 ? err == 0 : rel <= kTol);
    if (!seq_ok) {
      ok = false;
      if (!diagnosed) {
        diagnosed = true;
        const int h = static_cast<int>(worst / b.D), d = static_cast<int>(worst % b.D);
        std::printf(
            "    seq %d (len %d): max err %.3e of scale %.3e at head %d dim %d: got %.6f ref "
            "%.6f%s\n",
            s, b.lens[s], err, scale, h, d, bf16_to_double(got[s * per + worst]),
            ref[s * per + worst], nan ? " (NaN present)" : "");
        std::printf("    max err by head:");
        for (int hh = 0; hh < b.heads; ++hh) {
          double e = 0;
          for (int dd = 0; dd < b.D; ++dd) {
            const size_t i = s * per + static_cast<size_t>(hh) * b.D + dd;
            e = std::max(e, std::fabs(bf16_to_double(got[i]) - ref[i]));
          }
          std::printf(" %.2g", e / std::max(scale, 1e-30));
        }
        std::printf("\n    max err by 8-dim block:");
        for (int db = 0; db < b.D / 8; ++db) {
          double e = 0;
          for (int hh = 0; hh < b.heads; ++hh)
            for (int dd = db * 8; dd < db * 8 + 8; ++dd) {
              const size_t i = s * per + static_cast<size_t>(hh) * b.D + dd;
              e = std::max(e, std::fabs(bf16_to_double(got[i]) - ref[i]));
            }
          std::printf(" %.2g", e / std::max(scale, 1e-30));
        }
        std::printf("\n");
      }
    }
  }
  rel_l2 = sr > 0 ? std::sqrt(se / sr) : std::sqrt(se);
  return ok;
}

struct Device {
  DevBuf<uint8_t> k, v;
  DevBuf<float> ks, vs;
  DevBuf<int32_t> bt, lens, meta;
  DevBuf<uint16_t> q, out;
  DevBuf<uint8_t> ws;
  MfaDecodeParams p;
  Device(const Batch& b, int num_ctas)
      : k(static_cast<size_t>(b.num_blocks) * b.bs * b.D * (b.fp8 ? 1 : 2)),
        v(k.n),
        ks(b.fp8 ? static_cast<size_t>(b.num_blocks) * b.bs : 1),
        vs(ks.n),
        bt(b.block_table.size()),
        lens(b.batch),
        meta(afd::cuda::mfa_decode_metadata_bytes(b.batch, num_ctas) / 4),
        q(b.q.size()),
        out(b.q.size()),
        ws(afd::cuda::mfa_decode_workspace_bytes(b.batch, num_ctas, b.heads, b.D)) {
    upload(b);
    p.q = q.p;
    p.out = out.p;
    p.k_cache = k.p;
    p.v_cache = v.p;
    p.k_scale = b.fp8 ? ks.p : nullptr;
    p.v_scale = b.fp8 ? vs.p : nullptr;
    p.block_table = bt.p;
    p.seq_lens = lens.p;
    p.metadata = meta.p;
    p.workspace = ws.p;
    p.num_blocks = b.num_blocks;
    p.batch = b.batch;
    p.heads = b.heads;
    p.head_dim = b.D;
    p.block_size = b.bs;
    p.max_blocks_per_seq = b.max_blocks;
    p.num_ctas = num_ctas;
    p.softmax_scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(b.D)));
    p.kv_type = b.fp8 ? MfaKvType::kFp8E4M3 : MfaKvType::kBf16;
  }
  void upload(const Batch& b) {
    if (b.fp8) {
      CUDA_OK(cudaMemcpy(k.p, b.k8.data(), b.k8.size(), cudaMemcpyHostToDevice));
      CUDA_OK(cudaMemcpy(v.p, b.v8.data(), b.v8.size(), cudaMemcpyHostToDevice));
      ks.upload(b.ks);
      vs.upload(b.vs);
    } else {
      CUDA_OK(cudaMemcpy(k.p, b.k16.data(), b.k16.size() * 2, cudaMemcpyHostToDevice));
      CUDA_OK(cudaMemcpy(v.p, b.v16.data(), b.v16.size() * 2, cudaMemcpyHostToDevice));
    }
    bt.upload(b.block_table);
    std::vector<int32_t> l(b.lens.begin(), b.lens.end());
    lens.upload(l);
    q.upload(b.q);
  }
  void poison() { CUDA_OK(cudaMemset(out.p, 0xFF, out.n * 2)); }
  std::vector<uint16_t> download() {
    std::vector<uint16_t> h(out.n);
    CUDA_OK(cudaMemcpy(h.data(), out.p, out.n * 2, cudaMemcpyDeviceToHost));
    return h;
  }
};

int g_passed = 0, g_failed = 0;

void report(const std::string& name, const Batch& b, bool ok, double worst, double l2) {
  (ok ? g_passed : g_failed)++;
  int total = 0, mx = 0;
  for (int l : b.lens) {
    total += l;
    mx = std::max(mx, l);
  }
  std::printf(
      "%s %-28s kv=%s B=%d H=%d D=%d bs=%d tokens=%d max_len=%d  max_err/scale=%.2e "
      "(tol %.0e) rel_l2=%.2e\n",
      ok ? "PASS" : "FAIL", name.c_str(), b.fp8 ? "fp8 " : "bf16", b.batch, b.heads, b.D, b.bs,
      total, mx, worst, kTol, l2);
  std::fflush(stdout);
}

void run_case(const Case& c, std::mt19937_64& rng, int sms) {
  const int num_ctas = c.num_ctas > 0 ? c.num_ctas : sms;
  Batch b = make_batch(c, rng);
  Device dev(b, num_ctas);
  dev.poison();
  cudaStream_t st;
  CUDA_OK(cudaStreamCreate(&st));
  if (!c.graph) {
    CUDA_OK(afd::cuda::mfa_decode_plan(dev.lens.p, b.batch, num_ctas, dev.meta.p, st));
    CUDA_OK(afd::cuda::mfa_decode(dev.p, st));
    CUDA_OK(cudaStreamSynchronize(st));
    CUDA_OK(cudaGetLastError());
    const auto ref = reference(b, dev.p.softmax_scale);
    double worst, l2;
    const bool ok = compare(b, dev.download(), ref, worst, l2);
    report(c.name, b, ok, worst, l2);
  } else {
    // Capture plan + attention once; replay after changing lengths and block table in place.
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CUDA_OK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
    CUDA_OK(afd::cuda::mfa_decode_plan(dev.lens.p, b.batch, num_ctas, dev.meta.p, st));
    CUDA_OK(afd::cuda::mfa_decode(dev.p, st));
    CUDA_OK(cudaStreamEndCapture(st, &graph));
    CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
    for (int round = 0; round < 2; ++round) {
      if (round == 1) {  // new lengths: each shorter (same pages), one emptied, one grown by 0
        std::uniform_int_distribution<int> u(0, 1 << 20);
        for (auto& l : b.lens) l = l > 0 ? u(rng) % (l + 1) : 0;
        b.lens[0] = 0;
        dev.upload(b);
        dev.poison();
      }
      CUDA_OK(cudaGraphLaunch(exec, st));
      CUDA_OK(cudaStreamSynchronize(st));
      const auto ref = reference(b, dev.p.softmax_scale);
      double worst, l2;
      const bool ok = compare(b, dev.download(), ref, worst, l2);
      report(c.name + (round ? "/replay-new-lens" : "/graph"), b, ok, worst, l2);
    }
    CUDA_OK(cudaGraphExecDestroy(exec));
    CUDA_OK(cudaGraphDestroy(graph));
  }
  CUDA_OK(cudaStreamDestroy(st));
}

std::vector<int> random_lens(std::mt19937_64& rng, int batch, int lo, int hi) {
  std::uniform_int_distribution<int> u(lo, hi);
  std::vector<int> v(batch);
  for (auto& x : v) x = u(rng);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seed =
      static_cast<uint64_t>(std::chrono::high_resolution_clock::now().time_since_epoch().count());
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--seed") == 0) seed = std::strtoull(argv[i + 1], nullptr, 10);
  std::printf("test_mfa_decode: seed %llu (rerun with --seed %llu)\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  int dev_count = 0;
  if (cudaGetDeviceCount(&dev_count) != cudaSuccess || dev_count == 0) {
    std::printf("no CUDA device\n0 passed, 1 failed\n");
    return 1;
  }
  cudaDeviceProp prop{};
  CUDA_OK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, sm_%d%d, %d SMs\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount);
  const int sms = afd::cuda::mfa_decode_default_num_ctas(0);
  std::mt19937_64 rng(seed);

  // Argument checks (host side; no launch).
  {
    MfaDecodeParams bad;
    bad.batch = 1;
    bad.heads = 48;
    bad.num_ctas = 1;
    const bool ok =
        afd::cuda::mfa_decode(bad, nullptr) == cudaErrorInvalidValue &&
        afd::cuda::mfa_decode_plan(nullptr, 1, 0, nullptr, nullptr) == cudaErrorInvalidValue;
    (ok ? g_passed : g_failed)++;
    std::printf("%s invalid arguments are rejected\n", ok ? "PASS" : "FAIL");
  }

  std::vector<int> mixed = {0, 1, 5, 17, 100, 1000, 4097};
  std::vector<Case> cases;
  for (bool fp8 : {true, false}) {
    std::vector<int> m = mixed;
    std::shuffle(m.begin(), m.end(), rng);
    cases.push_back({"mixed-7", m, 64, 256, 16, fp8});
    cases.push_back({"one-long-4097", {4097}, 64, 256, 64, fp8});
    cases.push_back({"b129-random", random_lens(rng, 129, 0, 300), 64, 256, 16, fp8});
    cases.push_back({"b1000-short", random_lens(rng, 1000, 0, 40), 64, 256, 16, fp8});
    Case peaky{"peaky-scores", m, 64, 256, 16, fp8};
    peaky.q_amp = 8.0;
    cases.push_back(peaky);
    Case few{"3-ctas-bs5", m, 64, 256, 5, fp8};
    few.num_ctas = 3;
    cases.push_back(few);
    cases.push_back({"d128", m, 64, 128, 16, fp8});
    cases.push_back({"bs128", m, 64, 256, 128, fp8});
    cases.push_back({"bs8-b129", random_lens(rng, 129, 0, 300), 64, 256, 8, fp8});
    cases.push_back({"heads128", {1, 300, 2000}, 128, 256, 16, fp8});
    Case graph{"graph", random_lens(rng, 7, 1, 3000), 64, 256, 16, fp8};
    graph.graph = true;
    cases.push_back(graph);
  }
  for (const auto& c : cases) run_case(c, rng, sms);
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
