#include "model/kv_cache.h"

namespace afd {

KVCache::KVCache(int64_t layers, int64_t head_dim, int64_t block_size, int64_t num_blocks)
    : layers_(layers), head_dim_(head_dim), block_size_(block_size), num_blocks_(num_blocks) {
  AFD_CHECK(layers > 0 && head_dim > 0 && block_size > 0 && num_blocks > 0,
            "KVCache: layers {}, head_dim {}, block_size {}, num_blocks {} must be positive",
            layers, head_dim, block_size, num_blocks);
  for (int64_t l = 0; l < layers; ++l) {
    k_.push_back(Tensor::zeros(DType::kF32, {num_blocks, block_size, head_dim}));
    v_.push_back(Tensor::zeros(DType::kF32, {num_blocks, block_size, head_dim}));
  }
  free_.reserve(static_cast<size_t>(num_blocks));
  for (int64_t b = num_blocks; b-- > 0;) free_.push_back(static_cast<int32_t>(b));  // pop 0 first
}

int64_t KVCache::create_sequence() {
  seqs_.emplace(next_id_, Seq{});
  return next_id_++;
}

const KVCache::Seq& KVCache::get(int64_t seq) const {
  auto it = seqs_.find(seq);
  AFD_CHECK(it != seqs_.end(), "KVCache: unknown sequence {}", seq);
  return it->second;
}

void KVCache::release(int64_t seq) {
  const Seq& s = get(seq);
  for (auto it = s.blocks.rbegin(); it != s.blocks.rend(); ++it) free_.push_back(*it);
  seqs_.erase(seq);
}

int64_t KVCache::blocks_needed(int64_t seq, int64_t n) const {
  const Seq& s = get(seq);
  int64_t want = (s.length + n + block_size_ - 1) / block_size_;
  return std::max<int64_t>(0, want - static_cast<int64_t>(s.blocks.size()));
}

Status KVCache::extend(int64_t seq, int64_t n) {
  AFD_CHECK(n >= 0, "KVCache::extend by {}", n);
  int64_t need = blocks_needed(seq, n);
  if (need > free_blocks())
    return Status(Code::kUnavailable,
                  fmt::format("KV cache full: sequence {} needs {} more blocks of {} tokens, {} "
                              "free of {}",
                              seq, need, block_size_, free_blocks(), num_blocks_));
  Seq& s = seqs_.at(seq);
  for (int64_t i = 0; i < need; ++i) {
    s.blocks.push_back(free_.back());
    free_.pop_back();
  }
  s.length += n;
  return Status::OK();
}

int64_t KVCache::length(int64_t seq) const { return get(seq).length; }

const std::vector<int32_t>& KVCache::blocks(int64_t seq) const { return get(seq).blocks; }

int64_t KVCache::slot(int64_t seq, int64_t pos) const {
  const Seq& s = get(seq);
  AFD_CHECK(pos >= 0 && pos < s.length, "KVCache: position {} outside sequence {} of length {}",
            pos, seq, s.length);
  return static_cast<int64_t>(s.blocks[static_cast<size_t>(pos / block_size_)]) * block_size_ +
         pos % block_size_;
}

}  // namespace afd
