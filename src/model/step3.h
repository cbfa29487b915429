// Step-3 forward pass on the CPU reference ops (f32 compute), with a paged KV cache.
//
// One call runs a batch of sequence chunks together: each chunk appends its new tokens to its
// sequence (a whole prompt, a prefill chunk, or one decode token) and the tokens of all chunks
// flow through every layer as one [T, H] activation. The per-layer pieces are public so the
// AFD runtime can split a layer between an attention rank (attention, norms, router) and FFN
// ranks (experts), exactly as DESIGN.md §1 draws it.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "model/step3_weights.h"

namespace afd {

// New tokens for one sequence. The sequence's cache grows by tokens.size().
struct SeqChunk {
  int64_t seq = 0;              // KVCache handle
  std::vector<int32_t> tokens;  // i32 [n], n >= 1
};

// Flattened layout of a batch (built once per step, shared by every layer).
struct BatchLayout {
  int64_t T = 0;                     // total new tokens
  int64_t num_seqs = 0;
  int64_t max_blocks = 0;            // columns of block_table
  std::vector<int32_t> tokens;       // i32 [T]
  std::vector<int32_t> positions;    // i32 [T]: absolute position of each token
  std::vector<int64_t> slots;        // i64 [T]: KV cache row of each token
  std::vector<int32_t> block_table;  // i32 [num_seqs, max_blocks] (unused entries 0)
  std::vector<int32_t> seq_lens;     // i32 [num_seqs]: cache length including the new tokens
  std::vector<int32_t> q_offsets;    // i32 [num_seqs + 1]: token rows of each sequence
};

class Step3Model {
 public:
  Step3Model(ModelConfig cfg, Step3Weights w);

  const ModelConfig& config() const { return cfg_; }
  const Step3Weights& weights() const { return w_; }

  // A KV cache for this model holding up to `max_tokens` positions in total.
  KVCache make_cache(int64_t max_tokens, int64_t block_size = 16) const;

  // Grows each chunk's sequence in `cache` and lays the batch out. Fails (changing nothing)
  // with kUnavailable when the cache lacks blocks and kInvalidArgument for a token id outside
  // the vocabulary, an empty chunk, a repeated sequence or a position past
  // max_position_embedding.
  Result<BatchLayout> prepare(const std::vector<SeqChunk>& chunks, KVCache& cache) const;

  // Runs every layer and returns logits f32 [rows, vocab]: the last token of each chunk, or
  // every token when all_positions.
  Tensor forward(const BatchLayout& b, KVCache& cache, bool all_positions = false) const;

  // ---- per-layer pieces (h is the residual stream, f32 [T, H]) ----
  // h += o_proj(MFA(input_norm(h))); writes the new tokens' K/V into the cache.
  void attention(int64_t layer, const BatchLayout& b, KVCache& cache, float* h) const;
  // x = post_attention_layernorm(h). x f32 [T, H].
  void ffn_input(int64_t layer, const float* h, int64_t T, float* x) const;
  // Router: top-k expert ids and weights of x (MoE layers only). ids i32 [T, k], w f32 [T, k].
  void route(int64_t layer, const float* x, int64_t T, int32_t* ids, float* weights) const;
  // h += FFN(x): the dense MLP, or routed experts (by ids/weights) plus the shared expert.
  void ffn(int64_t layer, const float* x, int64_t T, const int32_t* ids, const float* weights,
           float* h) const;
  // logits f32 [rows, vocab] = lm_head(norm(h[rows])) for the given row indices of h.
  Tensor logits(const float* h, const std::vector<int64_t>& rows) const;

 private:
  ModelConfig cfg_;
  Step3Weights w_;
};

}  // namespace afd
