// The CPU reference ops (kernels/cpu/ops.h) against deliberately naive double-precision
// formulas written out here, on seeded random inputs at odd sizes (1, 7, 129, 1000).
// Set AFD_TEST_SEED to rerun every case with another seed; failures print the seed used.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/status.h"
#include "kernels/cpu/ops.h"

namespace afd::cpu {
namespace {

uint32_t test_seed(uint32_t base) {
  const char* env = std::getenv("AFD_TEST_SEED");
  return env ? static_cast<uint32_t>(std::strtoul(env, nullptr, 10)) + base : base;
}

// A seeded generator whose seed is part of every failure message of the enclosing scope.
struct Gen {
  explicit Gen(uint32_t base)
      : seed(test_seed(base)), eng(seed), trace(__FILE__, __LINE__, "seed=" + std::to_string(seed)) {}
  uint32_t seed;
  std::mt19937 eng;
  ::testing::ScopedTrace trace;

  std::vector<float> uniform(size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) x = d(eng);
    return v;
  }
  int64_t randint(int64_t lo, int64_t hi) {  // [lo, hi]
    return std::uniform_int_distribution<int64_t>(lo, hi)(eng);
  }
};

// |got - want| <= tol * (1 + |want|) everywhere; names the first bad index and counts the rest.
::testing::AssertionResult AllClose(const float* got, const std::vector<double>& want,
                                    double tol) {
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < want.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(err <= tol * (1.0 + std::fabs(want[i])))) {
      if (first < 0) first = static_cast<int64_t>(i);
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << bad << " of " << want.size() << " elements differ; first at " << first
         << ": got " << got[first] << ", want " << want[first] << " (tol " << tol << ")";
}

// ---- embedding -----------------------------------------------------------------------------

TEST(CpuOpsEmbedding, CopiesRows) {
  Gen g(101);
  const int64_t vocab = 37, hidden = 45;
  const auto table = g.uniform(vocab * hidden);
  for (int64_t T : {1, 7, 129}) {
    std::vector<int32_t> ids(T);
    for (auto& id : ids) id = static_cast<int32_t>(g.randint(0, vocab - 1));
    ids[0] = vocab - 1;
    std::vector<float> out(T * hidden);
    embedding(ids.data(), T, table.data(), vocab, hidden, out.data());
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < hidden; ++c)
        ASSERT_EQ(out[t * hidden + c], table[ids[t] * hidden + c]) << "T=" << T << " t=" << t;
  }
}

TEST(CpuOpsEmbedding, RejectsIdsOutOfRange) {
  std::vector<float> table(4 * 3, 1.0f), out(3);
  for (int32_t id : {-1, 4}) {
    EXPECT_THROW(embedding(&id, 1, table.data(), 4, 3, out.data()), afd::Error) << id;
  }
}

// ---- rms_norm ------------------------------------------------------------------------------

std::vector<double> naive_rms_norm(const std::vector<float>& x, const std::vector<float>& w,
                                   int64_t rows, int64_t dim, double eps) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += double(x[r * dim + i]) * x[r * dim + i];
    const double inv = 1.0 / std::sqrt(ss / dim + eps);
    for (int64_t i = 0; i < dim; ++i) y[r * dim + i] = x[r * dim + i] * inv * w[i];
  }
  return y;
}

TEST(CpuOpsRmsNorm, MatchesNaive) {
  Gen g(202);
  for (int64_t rows : {1, 7, 129}) {
    for (int64_t dim : {1, 45, 1001}) {
      SCOPED_TRACE("rows=" + std::to_string(rows) + " dim=" + std::to_string(dim));
      auto x = g.uniform(rows * dim, -3.0f, 3.0f);
      const auto w = g.uniform(dim, 0.5f, 1.5f);
      const auto want = naive_rms_norm(x, w, rows, dim, 1e-5);
      std::vector<float> out(rows * dim);
      rms_norm(x.data(), w.data(), rows, dim, 1e-5f, out.data());
      EXPECT_TRUE(AllClose(out.data(), want, 1e-5));
      rms_norm(x.data(), w.data(), rows, dim, 1e-5f, x.data());  // in place
      EXPECT_TRUE(AllClose(x.data(), want, 1e-5));
    }
  }
}

// ---- rope ----------------------------------------------------------------------------------

TEST(CpuOpsRope, MatchesNaive) {
  Gen g(303);
  for (float theta : {10000.0f, 500000.0f}) {
    for (int64_t T : {1, 7, 129}) {
      const int64_t heads = 3, d = 38;
      SCOPED_TRACE("theta=" + std::to_string(theta) + " T=" + std::to_string(T));
      auto x = g.uniform(T * heads * d);
      std::vector<int32_t> pos(T);
      for (auto& p : pos) p = static_cast<int32_t>(g.randint(0, 65535));
      pos[0] = 0;
      std::vector<double> want(x.size());
      for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < heads; ++h)
          for (int64_t i = 0; i < d / 2; ++i) {
            const double a = pos[t] * std::pow(double(theta), -2.0 * i / d);
            const double lo = x[(t * heads + h) * d + i], hi = x[(t * heads + h) * d + i + d / 2];
            want[(t * heads + h) * d + i] = lo * std::cos(a) - hi * std::sin(a);
            want[(t * heads + h) * d + i + d / 2] = hi * std::cos(a) + lo * std::sin(a);
          }
      rope_neox(x.data(), pos.data(), T, heads, d, theta);
      EXPECT_TRUE(AllClose(x.data(), want, 1e-5));
    }
  }
}

TEST(CpuOpsRope, RejectsOddHeadDim) {
  std::vector<float> x(5, 1.0f);
  int32_t pos = 3;
  EXPECT_THROW(rope_neox(x.data(), &pos, 1, 1, 5, 10000.0f), afd::Error);
}

// ---- linear --------------------------------------------------------------------------------

std::vector<double> naive_linear(const float* x, const float* w, int64_t M, int64_t N, int64_t K) {
  std::vector<double> y(M * N, 0.0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) y[m * N + n] += double(x[m * K + k]) * w[n * K + k];
  return y;
}

TEST(CpuOpsLinear, MatchesTripleLoop) {
  Gen g(404);
  struct Case { int64_t M, N, K; };
  for (Case c : {Case{1, 7, 45}, Case{7, 129, 33}, Case{129, 37, 1000}, Case{1000, 77, 129}}) {
    SCOPED_TRACE("M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) +
                 " K=" + std::to_string(c.K));
    const auto x = g.uniform(c.M * c.K), w = g.uniform(c.N * c.K);
    const auto want = naive_linear(x.data(), w.data(), c.M, c.N, c.K);
    std::vector<float> y(c.M * c.N, NAN);  // garbage must be overwritten, not accumulated
    linear(x.data(), w.data(), c.M, c.N, c.K, y.data());
    EXPECT_TRUE(AllClose(y.data(), want, 1e-4));

    auto y0 = g.uniform(c.M * c.N);
    std::vector<double> want_acc(want);
    for (size_t i = 0; i < want_acc.size(); ++i) want_acc[i] += y0[i];
    linear(x.data(), w.data(), c.M, c.N, c.K, y0.data(), /*accumulate=*/true);
    EXPECT_TRUE(AllClose(y0.data(), want_acc, 1e-4));
  }
}

TEST(CpuOpsLinear, EmptyShapes) {
  std::vector<float> w(3 * 4, 1.0f);
  linear(nullptr, w.data(), 0, 3, 4, nullptr);  // M == 0 touches nothing
  std::vector<float> y(2 * 3, 5.0f);
  linear(nullptr, nullptr, 2, 3, 0, y.data(), /*accumulate=*/true);  // empty sum
  for (float v : y) EXPECT_EQ(v, 5.0f);
  linear(nullptr, nullptr, 2, 3, 0, y.data());
  for (float v : y) EXPECT_EQ(v, 0.0f);
}

// ---- attention -----------------------------------------------------------------------------

// One attention call: several sequences, each with a cache length and a query count, over a
// paged cache whose block ids are handed out in shuffled order.
struct AttnCase {
  struct Seq { int64_t len, n; };
  std::vector<Seq> seqs;
  int64_t heads, head_dim, block_size = 16;
};

struct AttnSetup {
  std::vector<float> q, k_cache, v_cache;
  std::vector<int32_t> block_table, seq_lens, q_offsets;
  int64_t max_blocks = 0, T = 0;
  MfaParams params(const AttnCase& c, float* out) const {
    MfaParams p;
    p.q = q.data(); p.out = out; p.k_cache = k_cache.data(); p.v_cache = v_cache.data();
    p.block_table = block_table.data(); p.seq_lens = seq_lens.data();
    p.q_offsets = q_offsets.data(); p.num_seqs = static_cast<int64_t>(c.seqs.size());
    p.heads = c.heads; p.head_dim = c.head_dim; p.block_size = c.block_size;
    p.max_blocks_per_seq = max_blocks; p.scale = 1.0f / std::sqrt(float(c.head_dim));
    return p;
  }
};

// Fills the cache as the engine would: the first len - n positions of each sequence "from
// earlier steps" directly, the n new tokens' K/V through kv_cache_write.
AttnSetup make_attention(const AttnCase& c, Gen& g) {
  AttnSetup s;
  const int64_t D = c.head_dim, bs = c.block_size;
  int64_t total_blocks = 0;
  for (auto sq : c.seqs) {
    const int64_t nb = (sq.len + bs - 1) / bs;
    s.max_blocks = std::max(s.max_blocks, nb + 1);  // one spare column, left at -1
    total_blocks += nb;
    s.T += sq.n;
  }
  const int64_t num_blocks = total_blocks + 3;  // a few never-used blocks of garbage too
  std::vector<int32_t> ids(num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), g.eng);
  s.block_table.assign(c.seqs.size() * s.max_blocks, -1);
  s.k_cache = g.uniform(num_blocks * bs * D);  // every row random: wrong addressing shows
  s.v_cache = g.uniform(num_blocks * bs * D);
  s.q = g.uniform(s.T * c.heads * D);
  s.q_offsets.push_back(0);
  size_t next = 0;
  std::vector<int64_t> slots;
  for (size_t i = 0; i < c.seqs.size(); ++i) {
    const auto sq = c.seqs[i];
    for (int64_t j = 0; j < (sq.len + bs - 1) / bs; ++j)
      s.block_table[i * s.max_blocks + j] = ids[next++];
    s.seq_lens.push_back(static_cast<int32_t>(sq.len));
    s.q_offsets.push_back(static_cast<int32_t>(s.q_offsets.back() + sq.n));
    for (int64_t p = sq.len - sq.n; p < sq.len; ++p)
      slots.push_back(int64_t(s.block_table[i * s.max_blocks + p / bs]) * bs + p % bs);
  }
  const auto k_new = g.uniform(s.T * D), v_new = g.uniform(s.T * D);
  kv_cache_write(k_new.data(), v_new.data(), slots.data(), s.T, D, s.k_cache.data(),
                 s.v_cache.data());
  return s;
}

// softmax(q k^T * scale) v for query row t, head h, with the cache read through the block
// table by hand; double throughout.
void naive_attention_row(const AttnCase& c, const AttnSetup& s, int64_t seq, int64_t t,
                         int64_t h, double* out) {
  const int64_t D = c.head_dim, bs = c.block_size;
  const int64_t L = s.seq_lens[seq], n = s.q_offsets[seq + 1] - s.q_offsets[seq];
  const int64_t pos = L - n + (t - s.q_offsets[seq]);
  const double scale = 1.0 / std::sqrt(double(c.head_dim));
  auto row = [&](int64_t p) {
    return (int64_t(s.block_table[seq * s.max_blocks + p / bs]) * bs + p % bs) * D;
  };
  std::vector<double> score(pos + 1);
  for (int64_t p = 0; p <= pos; ++p) {
    double dot = 0;
    for (int64_t i = 0; i < D; ++i)
      dot += double(s.q[(t * c.heads + h) * D + i]) * s.k_cache[row(p) + i];
    score[p] = dot * scale;
  }
  const double mx = *std::max_element(score.begin(), score.end());
  double sum = 0;
  for (double& x : score) sum += (x = std::exp(x - mx));
  for (int64_t i = 0; i < D; ++i) out[i] = 0;
  for (int64_t p = 0; p <= pos; ++p)
    for (int64_t i = 0; i < D; ++i) out[i] += score[p] / sum * s.v_cache[row(p) + i];
}

// Runs the case and compares the rows of every sequence whose query index j satisfies
// j % stride == 0 or is the last one (stride 1: all rows).
void check_attention(const AttnCase& c, uint32_t seed, int64_t stride = 1) {
  Gen g(seed);
  const AttnSetup s = make_attention(c, g);
  std::vector<float> out(s.T * c.heads * c.head_dim, NAN);
  mfa_attention(s.params(c, out.data()));
  std::vector<double> want(c.head_dim);
  for (size_t seq = 0; seq < c.seqs.size(); ++seq) {
    const int64_t q0 = s.q_offsets[seq], n = c.seqs[seq].n;
    for (int64_t j = 0; j < n; ++j) {
      if (j % stride != 0 && j != n - 1) continue;
      for (int64_t h = 0; h < c.heads; ++h) {
        naive_attention_row(c, s, seq, q0 + j, h, want.data());
        ASSERT_TRUE(AllClose(out.data() + ((q0 + j) * c.heads + h) * c.head_dim, want, 1e-5))
            << "seq " << seq << " (len " << c.seqs[seq].len << ", n " << n << ") query " << j
            << " head " << h;
      }
    }
  }
}

TEST(CpuOpsAttention, MixedBatch) {
  // Full prefill, first token, skipped (n = 0), decode, prefill chunks after cached context,
  // exactly one block, and lengths that are not multiples of the block size.
  AttnCase c{{{37, 37}, {1, 1}, {50, 0}, {129, 1}, {100, 7}, {16, 16}, {33, 20}, {17, 1}},
             5, 36};
  check_attention(c, 501);
}

TEST(CpuOpsAttention, SingleDecodeToken) {
  check_attention(AttnCase{{{7, 1}}, 3, 38}, 502);
  check_attention(AttnCase{{{129, 1}}, 1, 45, 8}, 503);  // one head, odd head_dim, block 8
}

TEST(CpuOpsAttention, AllSequencesSkipped) {
  AttnCase c{{{10, 0}, {0, 0}}, 2, 8};
  Gen g(504);
  const AttnSetup s = make_attention(c, g);
  mfa_attention(s.params(c, nullptr));  // T = 0: nothing to write
}

TEST(CpuOpsAttention, Prefill1000With16Heads) {
  // A 1000-token prompt plus, in the same call, a 129-token chunk after 871 cached positions
  // and a decode step. Every 7th query row is checked against the naive loops.
  AttnCase c{{{1000, 1000}, {1000, 129}, {301, 1}}, 16, 64};
  check_attention(c, 505, /*stride=*/7);
}

TEST(CpuOpsAttention, RejectsMoreQueriesThanPositions) {
  AttnCase c{{{4, 4}}, 1, 8};
  Gen g(506);
  AttnSetup s = make_attention(c, g);
  std::vector<float> out(4 * 8);
  s.seq_lens[0] = 3;
  EXPECT_THROW(mfa_attention(s.params(c, out.data())), afd::Error);
  s.seq_lens[0] = int32_t(s.max_blocks * c.block_size + 1);  // beyond the block table
  EXPECT_THROW(mfa_attention(s.params(c, out.data())), afd::Error);
}

TEST(CpuOpsKvCacheWrite, WritesOnlyItsSlots) {
  Gen g(601);
  const int64_t D = 19, rows = 3 * 16;
  for (int64_t T : {1, 7, 29}) {
    auto kc = g.uniform(rows * D), vc = g.uniform(rows * D);
    const auto k0 = kc, v0 = vc;
    std::vector<int64_t> all(rows);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), g.eng);
    std::vector<int64_t> slots(all.begin(), all.begin() + T);
    const auto k = g.uniform(T * D), v = g.uniform(T * D);
    kv_cache_write(k.data(), v.data(), slots.data(), T, D, kc.data(), vc.data());
    std::vector<int64_t> src(rows, -1);
    for (int64_t t = 0; t < T; ++t) src[slots[t]] = t;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < D; ++i) {
        ASSERT_EQ(kc[r * D + i], src[r] < 0 ? k0[r * D + i] : k[src[r] * D + i]) << r;
        ASSERT_EQ(vc[r * D + i], src[r] < 0 ? v0[r * D + i] : v[src[r] * D + i]) << r;
      }
  }
}

// ---- router --------------------------------------------------------------------------------

void check_router(const std::vector<float>& logits, int64_t T, int64_t E, int64_t k, bool renorm) {
  SCOPED_TRACE("T=" + std::to_string(T) + " E=" + std::to_string(E) + " k=" +
               std::to_string(k) + " renormalize=" + std::to_string(renorm));
  std::vector<int32_t> ids(T * k, -7);
  std::vector<float> w(T * k, NAN);
  router_topk(logits.data(), T, E, k, renorm, ids.data(), w.data());
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> p(E);
    double sum = 0;
    for (int64_t e = 0; e < E; ++e) sum += (p[e] = std::exp(double(logits[t * E + e])));
    for (double& x : p) x /= sum;
    // Selection by brute force: repeatedly the largest remaining p, lowest index on ties.
    std::vector<bool> used(E, false);
    std::vector<double> want_w;
    double kept = 0;
    for (int64_t j = 0; j < k; ++j) {
      int64_t best = -1;
      for (int64_t e = 0; e < E; ++e)
        if (!used[e] && (best < 0 || p[e] > p[best])) best = e;
      used[best] = true;
      ASSERT_EQ(ids[t * k + j], best) << "token " << t << " choice " << j;
      want_w.push_back(p[best]);
      kept += p[best];
    }
    if (renorm)
      for (double& x : want_w) x /= kept;
    EXPECT_TRUE(AllClose(w.data() + t * k, want_w, 1e-5)) << "token " << t;
  }
}

TEST(CpuOpsRouter, MatchesBruteForce) {
  Gen g(701);
  // Logits on a 1/8 grid: frequent exact ties (which must go to the lower index), and
  // distinct values far enough apart that f32 and double agree on the order.
  for (int64_t E : {5, 13, 48}) {
    for (int64_t T : {1, 7, 129}) {
      std::vector<float> logits(T * E);
      for (float& l : logits) l = float(g.randint(-24, 24)) / 8.0f;
      for (int64_t k : {int64_t{1}, int64_t{3}, E})
        for (bool renorm : {false, true}) check_router(logits, T, E, k, renorm);
    }
  }
}

TEST(CpuOpsRouter, TiesGoToLowerIndex) {
  const std::vector<float> equal(6, 0.25f);
  std::vector<int32_t> ids(3);
  std::vector<float> w(3);
  router_topk(equal.data(), 1, 6, 3, false, ids.data(), w.data());
  EXPECT_EQ(ids, (std::vector<int32_t>{0, 1, 2}));
  for (float x : w) EXPECT_NEAR(x, 1.0 / 6, 1e-7);
  router_topk(equal.data(), 1, 6, 3, true, ids.data(), w.data());
  for (float x : w) EXPECT_NEAR(x, 1.0 / 3, 1e-7);

  const std::vector<float> l{1, 3, 0, 3, 2, 3};
  router_topk(l.data(), 1, 6, 2, false, ids.data(), w.data());
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 3);
}

TEST(CpuOpsRouter, RejectsBadK) {
  std::vector<float> l(4, 0.0f), w(5);
  std::vector<int32_t> ids(5);
  EXPECT_THROW(router_topk(l.data(), 1, 4, 0, false, ids.data(), w.data()), afd::Error);
  EXPECT_THROW(router_topk(l.data(), 1, 4, 5, false, ids.data(), w.data()), afd::Error);
}

// ---- SwiGLU ----------------------------------------------------------------------------------

double naive_silu(double x) { return x / (1.0 + std::exp(-x)); }

TEST(CpuOpsSiluMul, MatchesNaive) {
  Gen g(801);
  for (int64_t n : {1, 7, 129}) {
    auto gate = g.uniform(n, -8.0f, 8.0f);
    const auto up = g.uniform(n, -2.0f, 2.0f);
    gate[0] = -200.0f;  // exp(-gate) overflows: the result must still be (-)0, not NaN
    if (n > 1) gate[1] = 200.0f;
    std::vector<double> want(n);
    for (int64_t i = 0; i < n; ++i) want[i] = naive_silu(gate[i]) * up[i];
    std::vector<float> out(n);
    silu_mul(gate.data(), up.data(), n, out.data());
    EXPECT_TRUE(AllClose(out.data(), want, 1e-5)) << "n=" << n;
    silu_mul(gate.data(), up.data(), n, gate.data());  // in place on gate
    EXPECT_TRUE(AllClose(gate.data(), want, 1e-5)) << "n=" << n;
  }
}

// One expert (or dense MLP) for one token, double throughout.
std::vector<double> naive_expert(const float* x, int64_t H, int64_t I, const float* wg,
                                 const float* wu, const float* wd) {
  std::vector<double> act(I), y(H, 0.0);
  for (int64_t i = 0; i < I; ++i) {
    double gt = 0, u = 0;
    for (int64_t c = 0; c < H; ++c) {
      gt += double(x[c]) * wg[i * H + c];
      u += double(x[c]) * wu[i * H + c];
    }
    act[i] = naive_silu(gt) * u;
  }
  for (int64_t c = 0; c < H; ++c)
    for (int64_t i = 0; i < I; ++i) y[c] += act[i] * wd[c * I + i];
  return y;
}

TEST(CpuOpsSwiglu, MatchesNaive) {
  Gen g(802);
  const int64_t H = 45, I = 37;
  // Weights ~ 1/sqrt(fan_in) keep activations O(1).
  const auto wg = g.uniform(I * H, -0.3f, 0.3f), wu = g.uniform(I * H, -0.3f, 0.3f);
  const auto wd = g.uniform(H * I, -0.3f, 0.3f);
  for (int64_t T : {1, 7, 129}) {
    const auto x = g.uniform(T * H);
    std::vector<double> want(T * H);
    for (int64_t t = 0; t < T; ++t) {
      const auto yt = naive_expert(x.data() + t * H, H, I, wg.data(), wu.data(), wd.data());
      std::copy(yt.begin(), yt.end(), want.begin() + t * H);
    }
    std::vector<float> y(T * H, NAN);
    swiglu_mlp(x.data(), T, H, I, wg.data(), wu.data(), wd.data(), y.data());
    EXPECT_TRUE(AllClose(y.data(), want, 1e-5)) << "T=" << T;

    auto y0 = g.uniform(T * H);
    for (int64_t i = 0; i < T * H; ++i) want[i] += y0[i];
    swiglu_mlp(x.data(), T, H, I, wg.data(), wu.data(), wd.data(), y0.data(), true);
    EXPECT_TRUE(AllClose(y0.data(), want, 1e-5)) << "T=" << T << " accumulate";
  }
}

// Routes T tokens to k experts each, drawn from `allowed`; experts outside it get NaN
// weights, so touching one would show.
void check_moe(int64_t T, int64_t k, const std::vector<int32_t>& allowed, uint32_t seed) {
  Gen g(seed);
  const int64_t H = 45, I = 19, E = 6;
  SCOPED_TRACE("T=" + std::to_string(T) + " k=" + std::to_string(k));
  auto wg = g.uniform(E * I * H, -0.3f, 0.3f), wu = g.uniform(E * I * H, -0.3f, 0.3f);
  auto wd = g.uniform(E * H * I, -0.4f, 0.4f);
  for (int32_t e = 0; e < E; ++e) {
    if (std::find(allowed.begin(), allowed.end(), e) != allowed.end()) continue;
    std::fill_n(wg.begin() + e * I * H, I * H, NAN);
    std::fill_n(wu.begin() + e * I * H, I * H, NAN);
    std::fill_n(wd.begin() + e * H * I, H * I, NAN);
  }
  const auto x = g.uniform(T * H);
  std::vector<int32_t> ids(T * k);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<int32_t> pick(allowed);
    std::shuffle(pick.begin(), pick.end(), g.eng);
    for (int64_t j = 0; j < k; ++j) ids[t * k + j] = pick[j];
  }
  const auto w = g.uniform(T * k, 0.05f, 1.0f);
  auto y = g.uniform(T * H);
  std::vector<double> want(y.begin(), y.end());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < k; ++j) {
      const int64_t e = ids[t * k + j];
      const auto ye = naive_expert(x.data() + t * H, H, I, wg.data() + e * I * H,
                                   wu.data() + e * I * H, wd.data() + e * H * I);
      for (int64_t c = 0; c < H; ++c) want[t * H + c] += w[t * k + j] * ye[c];
    }
  moe_experts(x.data(), T, H, ids.data(), w.data(), k, wg.data(), wu.data(), wd.data(), E, I,
              y.data());
  EXPECT_TRUE(AllClose(y.data(), want, 1e-5));
}

TEST(CpuOpsMoe, MatchesPerTokenLoop) {
  for (int64_t T : {1, 7, 129}) {
    check_moe(T, 2, {0, 2, 3, 5}, 901);  // experts 1 and 4 get no tokens
    check_moe(T, 3, {0, 1, 2, 3, 4, 5}, 902);
  }
}

TEST(CpuOpsMoe, OneExpertTakesAllTokens) {
  for (int64_t T : {1, 7, 129}) check_moe(T, 1, {4}, 903);
}

TEST(CpuOpsMoe, RejectsExpertOutOfRange) {
  std::vector<float> x(4, 1.0f), w(1, 1.0f), y(4), wgt(2 * 3 * 4, 0.1f), wdn(2 * 4 * 3, 0.1f);
  for (int32_t id : {-1, 2}) {
    EXPECT_THROW(moe_experts(x.data(), 1, 4, &id, w.data(), 1, wgt.data(), wgt.data(),
                             wdn.data(), 2, 3, y.data()),
                 afd::Error);
  }
}

// ---- sampling ------------------------------------------------------------------------------

TEST(CpuOpsRng, KnownAnswerAndDeterminism) {
  // splitmix64 seeding + xoshiro256**, from an independent (Python) implementation.
  Rng r0(0), r42(42);
  EXPECT_EQ(r0.next(), 0x99ec5f36cb75f2b4ull);
  EXPECT_EQ(r0.next(), 0xbf6e1f784956452aull);
  EXPECT_EQ(r0.next(), 0x1a5f849d4933e6e0ull);
  EXPECT_EQ(r42.next(), 0x15780b2e0c2ec716ull);
  EXPECT_EQ(r42.next(), 0x6104d9866d113a7eull);

  Rng a(12345), b(12345), c(12346);
  int same_as_c = 0;
  for (int i = 0; i < 1000; ++i) {
    const uint64_t x = a.next();
    ASSERT_EQ(x, b.next()) << i;
    same_as_c += x == c.next();
  }
  EXPECT_EQ(same_as_c, 0);
}

TEST(CpuOpsRng, UniformInUnitInterval) {
  Rng r(7);
  double sum = 0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    const double u = r.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / n, 0.5, 0.01);  // sd of the mean ~ 0.0009
}

int32_t naive_argmax(const std::vector<float>& l) {
  int32_t best = 0;
  for (int32_t i = 1; i < int32_t(l.size()); ++i)
    if (l[i] > l[best]) best = i;
  return best;
}

TEST(CpuOpsSample, GreedyIsArgmaxAndUsesNoRandomness) {
  Gen g(1001);
  for (int64_t vocab : {1, 7, 129, 1000}) {
    auto l = g.uniform(vocab, -5.0f, 5.0f);
    Rng rng(1), fresh(1);
    EXPECT_EQ(sample(l.data(), vocab, {}, rng), naive_argmax(l)) << vocab;
    if (vocab > 3) {  // a tie at the maximum goes to the lower id
      l[vocab - 1] = l[2] = 9.0f;
      EXPECT_EQ(sample(l.data(), vocab, {0.0f, 0, 1.0f}, rng), 2);
      EXPECT_EQ(sample(l.data(), vocab, {-1.0f, 5, 0.5f}, rng), 2);
    }
    EXPECT_EQ(rng.next(), fresh.next());
  }
}

TEST(CpuOpsSample, TopK1IsArgmaxAtAnyTemperature) {
  Gen g(1002);
  Rng rng(2);
  for (float temp : {0.1f, 1.0f, 100.0f}) {
    for (int i = 0; i < 50; ++i) {
      auto l = g.uniform(129, -3.0f, 3.0f);
      l[g.randint(0, 128)] = 3.5f;  // a clear maximum
      ASSERT_EQ(sample(l.data(), 129, {temp, 1, 1.0f}, rng), naive_argmax(l)) << temp;
    }
  }
}

std::vector<int32_t> draws(const std::vector<float>& l, SamplingParams sp, uint64_t seed, int n) {
  Rng rng(seed);
  std::vector<int32_t> out(n);
  for (int32_t& x : out) x = sample(l.data(), int64_t(l.size()), sp, rng);
  return out;
}

TEST(CpuOpsSample, SeedDeterminesSequence) {
  Gen g(1003);
  const auto l = g.uniform(1000, -2.0f, 2.0f);
  const SamplingParams sp{1.0f, 0, 1.0f};
  EXPECT_EQ(draws(l, sp, 5, 200), draws(l, sp, 5, 200));
  EXPECT_NE(draws(l, sp, 5, 200), draws(l, sp, 6, 200));
}

// Empirical frequencies over 20000 draws against the expected distribution. The standard
// error of each frequency is <= 0.0036, so 0.02 is more than 5 sigma.
void expect_distribution(const std::vector<float>& l, SamplingParams sp,
                         const std::vector<double>& want, uint64_t seed) {
  const int n = 20000;
  std::vector<int> count(l.size(), 0);
  for (int32_t x : draws(l, sp, seed, n)) ++count[x];
  for (size_t i = 0; i < l.size(); ++i)
    EXPECT_NEAR(double(count[i]) / n, want[i], 0.02) << "token " << i;
}

std::vector<double> softmax(const std::vector<float>& l, double temp) {
  std::vector<double> p(l.size());
  double sum = 0;
  for (size_t i = 0; i < l.size(); ++i) sum += (p[i] = std::exp(l[i] / temp));
  for (double& x : p) x /= sum;
  return p;
}

TEST(CpuOpsSample, MatchesSoftmaxDistribution) {
  const std::vector<float> l{1.0f, 0.5f, -0.3f, 2.0f, 0.0f};
  expect_distribution(l, {1.0f, 0, 1.0f}, softmax(l, 1.0), 11);
  expect_distribution(l, {2.0f, 0, 1.0f}, softmax(l, 2.0), 12);
  expect_distribution(l, {1.0f, 99, 1.0f}, softmax(l, 1.0), 13);  // top_k > vocab: no limit
}

TEST(CpuOpsSample, TopKAndTopPRestrictTheCandidates) {
  const std::vector<float> l{1.0f, 0.5f, -0.3f, 2.0f, 0.0f};  // order: 3, 0, 1, 4, 2
  for (int32_t x : draws(l, {1.0f, 0, 0.01f}, 21, 500)) ASSERT_EQ(x, 3);

  // top_k = 2 keeps tokens 3 and 0, renormalised.
  const auto p = softmax(l, 1.0);
  std::vector<double> want(5, 0.0);
  want[3] = p[3] / (p[3] + p[0]);
  want[0] = p[0] / (p[3] + p[0]);
  expect_distribution(l, {1.0f, 2, 1.0f}, want, 22);

  // p = {0.5, 0.3, 0.2}: top_p = 0.7 needs the first two (0.5 < 0.7 <= 0.8).
  const std::vector<float> l3{std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  expect_distribution(l3, {1.0f, 0, 0.7f}, {0.625, 0.375, 0.0}, 23);
  // top_p = 0.45 is reached by the first token alone.
  for (int32_t x : draws(l3, {1.0f, 0, 0.45f}, 24, 500)) ASSERT_EQ(x, 0);
}

TEST(CpuOpsSample, RejectsBadParams) {
  const std::vector<float> l(4, 0.0f);
  Rng rng(0);
  EXPECT_THROW(sample(l.data(), 0, {}, rng), afd::Error);
  EXPECT_THROW(sample(l.data(), 4, {1.0f, -1, 1.0f}, rng), afd::Error);
  EXPECT_THROW(sample(l.data(), 4, {1.0f, 0, 1.5f}, rng), afd::Error);
}

}  // namespace
}  // namespace afd::cpu
