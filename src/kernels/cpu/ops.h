// CPU reference ops: plain, readable loops in f32 (GEMM through OpenBLAS).
//
// These are the correctness oracle for every fast path (DESIGN.md §3): the CUDA backend
// implements the same launchers and tests compare the two. Every op takes raw pointers,
// sizes and (for the KV cache) a paged layout; none knows about the model or the runtime.
// All arrays are contiguous row-major unless a stride says otherwise. Output buffers may not
// alias inputs unless the comment says "in place".
#pragma once

#include <cstdint>
#include <vector>

namespace afd::cpu {

// out[t, :] = table[ids[t], :].   table f32 [vocab, hidden], ids i32 [T], out f32 [T, hidden].
// Every id must be in [0, vocab) (AFD_CHECK).
void embedding(const int32_t* ids, int64_t T, const float* table, int64_t vocab, int64_t hidden,
               float* out);

// out[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + eps) * w.   x, out f32 [rows, dim]; w f32 [dim].
// In place allowed (out == x).
void rms_norm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* out);

// NeoX ("rotate half") rotary embedding over the full head_dim, in place.
// x f32 [T, heads, head_dim] (head_dim even); positions i32 [T].
// For i < d/2 with d = head_dim: inv_freq_i = theta^(-2i/d), a = pos * inv_freq_i;
//   x'[i] = x[i] cos a - x[i + d/2] sin a;   x'[i + d/2] = x[i + d/2] cos a + x[i] sin a.
void rope_neox(float* x, const int32_t* positions, int64_t T, int64_t heads, int64_t head_dim,
               float theta);

// y[M, N] = x[M, K] @ w[N, K]^T  (+ y when accumulate). The [out, in] layout is the
// checkpoint's. x f32 [M, K], w f32 [N, K], y f32 [M, N]. M may be 0.
void linear(const float* x, const float* w, int64_t M, int64_t N, int64_t K, float* y,
            bool accumulate = false);
// Threads the BLAS may use in this process (ranks sharing a host each take a share).
void set_num_threads(int n);

// ---- MFA attention over a paged KV cache ---------------------------------------------------
// One K head and one V head (head_dim wide) shared by all query heads. The cache is paged:
// k_cache, v_cache f32 [num_blocks, block_size, head_dim]; sequence s owns the blocks
// block_table[s * max_blocks_per_seq + j], j = 0.. ceil(seq_lens[s] / block_size) - 1, and
// cache position p lives in block block_table[s*max + p / block_size], row p % block_size.
//
// Queries: q f32 [T, heads, head_dim], grouped by sequence: the tokens of sequence s are rows
// q_offsets[s] .. q_offsets[s+1]-1 (q_offsets i32 [num_seqs + 1], q_offsets[0] = 0). They are
// that sequence's LAST n_s = q_offsets[s+1] - q_offsets[s] cache positions, so query j of s
// sits at position seq_lens[s] - n_s + j and attends causally to positions 0 .. that position.
// (Decode: n_s = 1. Prefill or a prefill chunk: n_s > 1. n_s = 0: the sequence is skipped.)
// out f32 [T, heads, head_dim] = softmax(q k^T * scale) v.
struct MfaParams {
  const float* q = nullptr;         // f32 [T, heads, head_dim]
  float* out = nullptr;             // f32 [T, heads, head_dim]
  const float* k_cache = nullptr;   // f32 [num_blocks, block_size, head_dim]
  const float* v_cache = nullptr;   // f32 [num_blocks, block_size, head_dim]
  const int32_t* block_table = nullptr;  // i32 [num_seqs, max_blocks_per_seq]
  const int32_t* seq_lens = nullptr;     // i32 [num_seqs]: cache length incl. the new tokens
  const int32_t* q_offsets = nullptr;    // i32 [num_seqs + 1]
  int64_t num_seqs = 0;
  int64_t heads = 0;
  int64_t head_dim = 0;
  int64_t block_size = 0;
  int64_t max_blocks_per_seq = 0;
  float scale = 0;  // usually head_dim^-0.5
};
void mfa_attention(const MfaParams& p);

// Writes k[t], v[t] (f32 [T, head_dim] each) into cache row slots[t] (block * block_size +
// offset within the block) of k_cache / v_cache (f32 [num_blocks * block_size, head_dim]).
void kv_cache_write(const float* k, const float* v, const int64_t* slots, int64_t T,
                    int64_t head_dim, float* k_cache, float* v_cache);

// ---- MoE router ----------------------------------------------------------------------------
// p = softmax(logits[t, :]) in f32; ids[t, :] = indices of the k largest p (descending; ties
// to the lower index); weights[t, :] = those p, divided by their sum only when renormalize.
// logits f32 [T, E], ids i32 [T, k], weights f32 [T, k]; 1 <= k <= E.
void router_topk(const float* logits, int64_t T, int64_t E, int64_t k, bool renormalize,
                 int32_t* ids, float* weights);

// ---- SwiGLU FFN ----------------------------------------------------------------------------
// out[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + exp(-x)). n elements; in place on gate ok.
void silu_mul(const float* gate, const float* up, int64_t n, float* out);

// y[T, H] (+)= down(silu(x w_gate^T) * (x w_up^T)) for a dense MLP, a shared expert or one
// expert (or one slice of it along the intermediate dimension: SwiGLU is separable).
// x f32 [T, H]; w_gate, w_up f32 [I, H]; w_down f32 [H, I]; y f32 [T, H]. Accumulates when
// accumulate is true. (Routing weights are applied by moe_experts, not here.)
void swiglu_mlp(const float* x, int64_t T, int64_t H, int64_t I, const float* w_gate,
                const float* w_up, const float* w_down, float* y, bool accumulate = false);

// Routed experts: y[t] += sum_j weights[t, j] * expert_{ids[t, j]}(x[t]).
// x f32 [T, H]; ids i32 [T, k]; weights f32 [T, k]; w_gate, w_up f32 [E, I, H] (stacked as in
// the checkpoint); w_down f32 [E, H, I]; y f32 [T, H] (accumulated into). Tokens are grouped
// by expert so each expert runs one GEMM over its tokens.
void moe_experts(const float* x, int64_t T, int64_t H, const int32_t* ids, const float* weights,
                 int64_t k, const float* w_gate, const float* w_up, const float* w_down,
                 int64_t E, int64_t I, float* y);

// ---- sampling ------------------------------------------------------------------------------
// xoshiro256** seeded through splitmix64: the same seed gives the same stream on every
// platform (std:: distributions do not promise that).
class Rng {
 public:
  explicit Rng(uint64_t seed = 0);
  uint64_t next();
  double uniform();  // [0, 1), 53 random bits
 private:
  uint64_t s_[4];
};

struct SamplingParams {
  float temperature = 0.0f;  // <= 0: greedy (argmax, ties to the lowest id)
  int64_t top_k = 0;         // 0: no top-k limit
  float top_p = 1.0f;        // 1: no nucleus limit
};

// Picks one token from logits f32 [vocab]. Order: temperature, top-k (keep the k largest),
// softmax, top-p (the smallest prefix of the sorted probabilities whose sum reaches top_p;
// always at least one token), renormalise, draw with rng.uniform().
int32_t sample(const float* logits, int64_t vocab, const SamplingParams& sp, Rng& rng);

}  // namespace afd::cpu
