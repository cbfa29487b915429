// MFA attention over the paged KV cache (one shared K/V head), and the cache write.
//
// Per sequence, the cache rows it uses are first gathered into contiguous K and V so that
// each query token's scores for all heads are one small GEMM (linear()). Memory stays
// O(seq_len * head_dim + heads * seq_len), independent of the prefill chunk length.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/status.h"
#include "kernels/cpu/ops.h"

namespace afd::cpu {

void mfa_attention(const MfaParams& p) {
  AFD_CHECK(p.num_seqs >= 0 && p.heads > 0 && p.head_dim > 0 && p.block_size > 0 &&
                p.max_blocks_per_seq >= 0,
            "mfa_attention: bad sizes num_seqs={} heads={} head_dim={} block_size={} "
            "max_blocks_per_seq={}",
            p.num_seqs, p.heads, p.head_dim, p.block_size, p.max_blocks_per_seq);
  if (p.num_seqs == 0) return;
  AFD_CHECK(p.q_offsets[0] == 0, "mfa_attention: q_offsets[0] = {}, must be 0", p.q_offsets[0]);
  const int64_t H = p.heads, D = p.head_dim;

  std::vector<float> k, v, scores;  // f32 [L, D], f32 [L, D], f32 [H, L]
  for (int64_t s = 0; s < p.num_seqs; ++s) {
    const int64_t q0 = p.q_offsets[s], n = p.q_offsets[s + 1] - q0, L = p.seq_lens[s];
    AFD_CHECK(n >= 0, "mfa_attention: q_offsets decrease at sequence {}", s);
    if (n == 0) continue;
    AFD_CHECK(n <= L, "mfa_attention: sequence {} has {} queries but seq_len {}", s, n, L);
    AFD_CHECK(L <= p.max_blocks_per_seq * p.block_size,
              "mfa_attention: sequence {} seq_len {} exceeds {} blocks of {}", s, L,
              p.max_blocks_per_seq, p.block_size);

    k.resize(static_cast<size_t>(L * D));
    v.resize(static_cast<size_t>(L * D));
    const int32_t* blocks = p.block_table + s * p.max_blocks_per_seq;
    for (int64_t pos = 0; pos < L; ++pos) {
      const int64_t b = blocks[pos / p.block_size];
      AFD_CHECK(b >= 0, "mfa_attention: sequence {} block {} has id {}", s, pos / p.block_size,
                b);
      const int64_t row = (b * p.block_size + pos % p.block_size) * D;
      std::copy_n(p.k_cache + row, D, k.data() + pos * D);
      std::copy_n(p.v_cache + row, D, v.data() + pos * D);
    }

    scores.resize(static_cast<size_t>(H * L));
    for (int64_t j = 0; j < n; ++j) {
      const int64_t t = q0 + j;
      const int64_t ctx = L - n + j + 1;  // causal: positions 0 .. L - n + j
      // scores [H, ctx] = q_t [H, D] @ k[0:ctx]^T
      linear(p.q + t * H * D, k.data(), H, ctx, D, scores.data());
      for (int64_t h = 0; h < H; ++h) {
        float* sc = scores.data() + h * ctx;
        float mx = -INFINITY;
        for (int64_t i = 0; i < ctx; ++i) mx = std::max(mx, sc[i] * p.scale);
        double sum = 0;
        for (int64_t i = 0; i < ctx; ++i) {
          sc[i] = std::exp(sc[i] * p.scale - mx);
          sum += sc[i];
        }
        const float inv = static_cast<float>(1.0 / sum);
        float* o = p.out + (t * H + h) * D;
        std::fill_n(o, D, 0.0f);
        for (int64_t i = 0; i < ctx; ++i) {
          const float w = sc[i] * inv;
          const float* vr = v.data() + i * D;
          for (int64_t c = 0; c < D; ++c) o[c] += w * vr[c];
        }
      }
    }
  }
}

void kv_cache_write(const float* k, const float* v, const int64_t* slots, int64_t T,
                    int64_t head_dim, float* k_cache, float* v_cache) {
  AFD_CHECK(T >= 0 && head_dim > 0, "kv_cache_write: bad sizes T={} head_dim={}", T, head_dim);
  for (int64_t t = 0; t < T; ++t) {
    AFD_CHECK(slots[t] >= 0, "kv_cache_write: token {} has slot {}", t, slots[t]);
    std::copy_n(k + t * head_dim, head_dim, k_cache + slots[t] * head_dim);
    std::copy_n(v + t * head_dim, head_dim, v_cache + slots[t] * head_dim);
  }
}

}  // namespace afd::cpu
