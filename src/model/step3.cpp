#include "model/step3.h"

#include <cmath>
#include <cstring>
#include <set>

#include "kernels/cpu/ops.h"

namespace afd {

Step3Model::Step3Model(ModelConfig cfg, Step3Weights w) : cfg_(std::move(cfg)), w_(std::move(w)) {
  AFD_CHECK(static_cast<int64_t>(w_.layers.size()) == cfg_.num_hidden_layers,
            "weights have {} layers, config {}", w_.layers.size(), cfg_.num_hidden_layers);
}

KVCache Step3Model::make_cache(int64_t max_tokens, int64_t block_size) const {
  int64_t blocks = std::max<int64_t>(1, (max_tokens + block_size - 1) / block_size);
  return KVCache(cfg_.num_hidden_layers, cfg_.head_dim, block_size, blocks);
}

Result<BatchLayout> Step3Model::prepare(const std::vector<SeqChunk>& chunks,
                                        KVCache& cache) const {
  BatchLayout b;
  b.num_seqs = static_cast<int64_t>(chunks.size());
  std::set<int64_t> seen;
  int64_t need_blocks = 0;
  for (const SeqChunk& c : chunks) {
    if (c.tokens.empty()) return InvalidArgument("sequence {}: a chunk needs at least one token", c.seq);
    if (!seen.insert(c.seq).second)
      return InvalidArgument("sequence {} appears twice in one batch", c.seq);
    for (int32_t t : c.tokens)
      if (t < 0 || t >= cfg_.vocab_size)
        return InvalidArgument("token id {} is outside the vocabulary [0, {})", t, cfg_.vocab_size);
    int64_t end = cache.length(c.seq) + static_cast<int64_t>(c.tokens.size());
    if (end > cfg_.max_position_embedding)
      return InvalidArgument("sequence {} would reach {} positions, past max_position_embedding {}",
                             c.seq, end, cfg_.max_position_embedding);
    need_blocks += cache.blocks_needed(c.seq, static_cast<int64_t>(c.tokens.size()));
  }
  if (need_blocks > cache.free_blocks())
    return Status(Code::kUnavailable,
                  fmt::format("KV cache full: the batch needs {} blocks, {} free", need_blocks,
                              cache.free_blocks()));
  b.q_offsets.push_back(0);
  for (const SeqChunk& c : chunks) {
    const int64_t start = cache.length(c.seq), n = static_cast<int64_t>(c.tokens.size());
    AFD_RETURN_IF_ERROR(cache.extend(c.seq, n));
    for (int64_t j = 0; j < n; ++j) {
      b.tokens.push_back(c.tokens[static_cast<size_t>(j)]);
      b.positions.push_back(static_cast<int32_t>(start + j));
      b.slots.push_back(cache.slot(c.seq, start + j));
    }
    b.seq_lens.push_back(static_cast<int32_t>(start + n));
    b.q_offsets.push_back(static_cast<int32_t>(b.tokens.size()));
    b.max_blocks = std::max<int64_t>(b.max_blocks, static_cast<int64_t>(cache.blocks(c.seq).size()));
  }
  b.T = static_cast<int64_t>(b.tokens.size());
  b.block_table.assign(static_cast<size_t>(b.num_seqs * b.max_blocks), 0);
  for (int64_t s = 0; s < b.num_seqs; ++s) {
    const auto& blocks = cache.blocks(chunks[static_cast<size_t>(s)].seq);
    std::copy(blocks.begin(), blocks.end(), b.block_table.begin() + s * b.max_blocks);
  }
  return b;
}

void Step3Model::attention(int64_t layer, const BatchLayout& b, KVCache& cache, float* h) const {
  const Step3LayerWeights& L = w_.layers[static_cast<size_t>(layer)];
  const int64_t T = b.T, H = cfg_.hidden_size, Q = cfg_.share_q_dim, D = cfg_.head_dim;
  const int64_t heads = cfg_.num_attention_heads, QW = cfg_.q_width();
  const float eps = static_cast<float>(cfg_.rms_norm_eps);

  std::vector<float> x(T * H), qa(T * Q), q(T * QW), k(T * D), v(T * D), o(T * QW);
  cpu::rms_norm(h, L.input_norm.data<float>(), T, H, eps, x.data());
  cpu::linear(x.data(), L.q_proj.data<float>(), T, Q, H, qa.data());
  cpu::rms_norm(qa.data(), L.inter_norm.data<float>(), T, Q, eps, qa.data());
  cpu::linear(qa.data(), L.wq.data<float>(), T, QW, Q, q.data());
  cpu::linear(x.data(), L.k_proj.data<float>(), T, D, H, k.data());
  cpu::linear(x.data(), L.v_proj.data<float>(), T, D, H, v.data());
  const float theta = static_cast<float>(cfg_.rope_theta);
  cpu::rope_neox(q.data(), b.positions.data(), T, heads, D, theta);
  cpu::rope_neox(k.data(), b.positions.data(), T, 1, D, theta);
  cpu::kv_cache_write(k.data(), v.data(), b.slots.data(), T, D, cache.k(layer), cache.v(layer));

  cpu::MfaParams p;
  p.q = q.data();
  p.out = o.data();
  p.k_cache = cache.k(layer);
  p.v_cache = cache.v(layer);
  p.block_table = b.block_table.data();
  p.seq_lens = b.seq_lens.data();
  p.q_offsets = b.q_offsets.data();
  p.num_seqs = b.num_seqs;
  p.heads = heads;
  p.head_dim = D;
  p.block_size = cache.block_size();
  p.max_blocks_per_seq = b.max_blocks;
  p.scale = 1.0f / std::sqrt(static_cast<float>(D));
  cpu::mfa_attention(p);
  cpu::linear(o.data(), L.o_proj.data<float>(), T, H, QW, h, /*accumulate=*/true);
}

void Step3Model::ffn_input(int64_t layer, const float* h, int64_t T, float* x) const {
  const Step3LayerWeights& L = w_.layers[static_cast<size_t>(layer)];
  cpu::rms_norm(h, L.post_norm.data<float>(), T, cfg_.hidden_size,
                static_cast<float>(cfg_.rms_norm_eps), x);
}

void Step3Model::route(int64_t layer, const float* x, int64_t T, int32_t* ids,
                       float* weights) const {
  const Step3LayerWeights& L = w_.layers[static_cast<size_t>(layer)];
  AFD_CHECK(L.moe, "route() on dense layer {}", layer);
  const int64_t E = cfg_.moe_num_experts;
  std::vector<float> logits(T * E);
  cpu::linear(x, L.router.data<float>(), T, E, cfg_.hidden_size, logits.data());
  cpu::router_topk(logits.data(), T, E, cfg_.moe_top_k, cfg_.norm_expert_weight, ids, weights);
}

void Step3Model::ffn(int64_t layer, const float* x, int64_t T, const int32_t* ids,
                     const float* weights, float* h) const {
  const Step3LayerWeights& L = w_.layers[static_cast<size_t>(layer)];
  const int64_t H = cfg_.hidden_size;
  if (!L.moe) {
    cpu::swiglu_mlp(x, T, H, cfg_.intermediate_size, L.mlp_gate.data<float>(),
                    L.mlp_up.data<float>(), L.mlp_down.data<float>(), h, /*accumulate=*/true);
    return;
  }
  cpu::moe_experts(x, T, H, ids, weights, cfg_.moe_top_k, L.moe_gate.data<float>(),
                   L.moe_up.data<float>(), L.moe_down.data<float>(), cfg_.moe_num_experts,
                   cfg_.moe_intermediate_size, h);
  cpu::swiglu_mlp(x, T, H, cfg_.share_expert_dim, L.share_gate.data<float>(),
                  L.share_up.data<float>(), L.share_down.data<float>(), h, /*accumulate=*/true);
}

Tensor Step3Model::logits(const float* h, const std::vector<int64_t>& rows) const {
  const int64_t H = cfg_.hidden_size, R = static_cast<int64_t>(rows.size());
  std::vector<float> x(R * H);
  for (int64_t r = 0; r < R; ++r)
    std::memcpy(&x[r * H], h + rows[static_cast<size_t>(r)] * H, H * sizeof(float));
  cpu::rms_norm(x.data(), w_.final_norm.data<float>(), R, H,
                static_cast<float>(cfg_.rms_norm_eps), x.data());
  Tensor out = Tensor::empty(DType::kF32, {R, cfg_.vocab_size});
  cpu::linear(x.data(), w_.lm_head.data<float>(), R, cfg_.vocab_size, H, out.data<float>());
  return out;
}

Tensor Step3Model::forward(const BatchLayout& b, KVCache& cache, bool all_positions) const {
  const int64_t T = b.T, H = cfg_.hidden_size, k = cfg_.moe_top_k;
  std::vector<float> h(T * H), x(T * H), w(T * k);
  std::vector<int32_t> ids(T * k);
  cpu::embedding(b.tokens.data(), T, w_.embed.data<float>(), cfg_.vocab_size, H, h.data());
  for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
    attention(l, b, cache, h.data());
    ffn_input(l, h.data(), T, x.data());
    if (cfg_.is_moe_layer(l)) route(l, x.data(), T, ids.data(), w.data());
    ffn(l, x.data(), T, ids.data(), w.data(), h.data());
  }
  std::vector<int64_t> rows;
  if (all_positions) {
    for (int64_t t = 0; t < T; ++t) rows.push_back(t);
  } else {
    for (int64_t s = 0; s < b.num_seqs; ++s) rows.push_back(b.q_offsets[s + 1] - 1);
  }
  return logits(h.data(), rows);
}

}  // namespace afd
