// Paged KV cache storage for the CPU engine, and its block allocator.
//
// Per layer, K and V pools are f32 [num_blocks, block_size, head_dim] (MFA: one K/V head).
// A sequence owns a list of blocks; cache position p of a sequence lives in its block
// p / block_size at row p % block_size. Invariant: a sequence of length L owns exactly
// ceil(L / block_size) blocks, and every block is owned by at most one sequence.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"

namespace afd {

class KVCache {
 public:
  KVCache(int64_t layers, int64_t head_dim, int64_t block_size, int64_t num_blocks);

  // A new empty sequence; returns its handle.
  int64_t create_sequence();
  // Frees a sequence and its blocks (unknown handles are an AFD_CHECK failure).
  void release(int64_t seq);
  // Grows the sequence by n positions, allocating blocks as needed. When there are not
  // enough free blocks it returns kUnavailable and changes nothing (admission control).
  Status extend(int64_t seq, int64_t n);
  // Blocks needed to grow `seq` by n (0 for n that fits the last block).
  int64_t blocks_needed(int64_t seq, int64_t n) const;

  int64_t length(int64_t seq) const;
  const std::vector<int32_t>& blocks(int64_t seq) const;
  // Row index into the pools (block * block_size + offset) of position `pos` of `seq`.
  int64_t slot(int64_t seq, int64_t pos) const;

  float* k(int64_t layer) { return k_[static_cast<size_t>(layer)].data<float>(); }  // f32 [blocks, bs, hd]
  float* v(int64_t layer) { return v_[static_cast<size_t>(layer)].data<float>(); }  // f32 [blocks, bs, hd]
  const float* k(int64_t layer) const { return k_[static_cast<size_t>(layer)].data<float>(); }
  const float* v(int64_t layer) const { return v_[static_cast<size_t>(layer)].data<float>(); }

  int64_t layers() const { return layers_; }
  int64_t head_dim() const { return head_dim_; }
  int64_t block_size() const { return block_size_; }
  int64_t num_blocks() const { return num_blocks_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t num_sequences() const { return static_cast<int64_t>(seqs_.size()); }

 private:
  struct Seq {
    int64_t length = 0;
    std::vector<int32_t> blocks;
  };
  const Seq& get(int64_t seq) const;

  int64_t layers_, head_dim_, block_size_, num_blocks_;
  std::vector<Tensor> k_, v_;   // one pool per layer
  std::vector<int32_t> free_;   // free block ids (a stack)
  std::unordered_map<int64_t, Seq> seqs_;
  int64_t next_id_ = 0;
};

}  // namespace afd
