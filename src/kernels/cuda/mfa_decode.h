// MFA decode attention over a paged KV cache on Hopper (sm_90a): the contract.
//
// Step-3's MFA attention has `heads` query heads (64 per attention rank) sharing ONE K head and
// ONE V head of head_dim 256. At decode each sequence brings one query token, so per sequence
// the work is two matrix products with the heads as the M dimension:
//     S = Q K^T * softmax_scale   Q [heads, head_dim], K [ctx, head_dim]
//     out = softmax(S) V          V [ctx, head_dim]
// Every KV byte is read once per sequence (per group of 64 heads) and used by all 64 heads on
// the tensor cores (wgmma, M = 64), which is what makes the kernel bandwidth-bound.
//
// Paged cache (shared by every sequence; one layer):
//   k_cache, v_cache [num_blocks, block_size, head_dim]   fp8 e4m3 (uint8) or bf16
//   k_scale, v_scale [num_blocks, block_size] f32         fp8 only: real value = fp8 * scale
//   block_table i32 [batch, max_blocks_per_seq]: cache position p of sequence s lives in block
//     block_table[s * max_blocks_per_seq + p / block_size], row p % block_size.
//   seq_lens i32 [batch]: positions 0 .. seq_lens[s]-1 are attended (the new token's K and V
//     already written). 0 is allowed (out = 0); lengths need not be multiples of block_size.
//
// One step = plan once, attend per layer:
//   1. mfa_decode_plan(seq_lens, ...) runs a small device kernel that splits the work into
//      items (sequence, kv_begin, kv_end) of roughly equal size over `num_ctas` persistent CTAs
//      (split-KV when a batch is small or contexts are long) and writes them to `metadata`.
//      It reads seq_lens on the device: nothing goes back to the host.
//   2. mfa_decode(params, stream) launches the attention kernel (grid = num_ctas x heads/64,
//      fixed; each CTA runs its items, persistent) and a combine kernel (grid = batch x
//      heads/4, fixed) that merges split partials (out, log-sum-exp) from `workspace` and
//      zero-fills empty sequences. Neither launch depends on the values of seq_lens on the
//      host, so plan + attention + combine can be captured in a CUDA graph and replayed with new
//      lengths and block tables (the test does). The plan may be reused by every layer of the
//      step (same seq_lens and num_ctas).
//
// Numerics: f32 online softmax (exp2 domain) and f32 accumulation. BF16 KV: bf16 tensor-core
// products, probabilities rounded to bf16. FP8 KV: K and V converted on chip to f16 (exact), q
// converted to f16 (exact for |q| in [2^-14, 65504]), f16 tensor-core products, the per-token
// K scale applied to the f32 scores, probabilities times the per-token V scale in f16
// (normalised by the running max V scale, so f16 keeps them in range).
//
// Copies: with block_size 8, 16, 32, 64 or a multiple of 64 the pages are copied by the Tensor
// Memory Accelerator (cp.async.bulk.tensor, 128-byte swizzle, one copy per page and 128-byte
// panel); other block sizes use per-thread cp.async (slower: fewer bytes in flight per SM).
// Limits: heads a multiple of 64; head_dim 128 or 256; block_size >= 1; num_ctas <= 4096;
// fp8 V scales within a sequence within about 1e4 of each other (f16 probabilities). Every
// buffer is device memory; q, out, k_cache and v_cache 16-byte aligned.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace afd::cuda {

enum class MfaKvType : int { kFp8E4M3 = 0, kBf16 = 1 };

struct MfaDecodeParams {
  const void* q = nullptr;               // bf16 [batch, heads, head_dim] (after RoPE)
  void* out = nullptr;                   // bf16 [batch, heads, head_dim]
  const void* k_cache = nullptr;         // fp8 e4m3 or bf16 [num_blocks, block_size, head_dim]
  const void* v_cache = nullptr;         // fp8 e4m3 or bf16 [num_blocks, block_size, head_dim]
  const float* k_scale = nullptr;        // f32 [num_blocks, block_size]; fp8 only
  const float* v_scale = nullptr;        // f32 [num_blocks, block_size]; fp8 only
  const int32_t* block_table = nullptr;  // i32 [batch, max_blocks_per_seq]
  const int32_t* seq_lens = nullptr;     // i32 [batch]
  const int32_t* metadata = nullptr;     // written by mfa_decode_plan for this batch/num_ctas
  void* workspace = nullptr;             // mfa_decode_workspace_bytes(...) bytes
  int64_t num_blocks = 0;  // blocks in k_cache / v_cache (bounds of the TMA tensor maps)
  int batch = 0;
  int heads = 64;
  int head_dim = 256;
  int block_size = 16;
  int max_blocks_per_seq = 0;
  int num_ctas = 0;               // the value the plan was made for (mfa_decode_default_num_ctas)
  float softmax_scale = 0.0625f;  // usually head_dim^-0.5
  MfaKvType kv_type = MfaKvType::kFp8E4M3;
};

// One persistent CTA per multiprocessor of `device` (the usual num_ctas).
int mfa_decode_default_num_ctas(int device = 0);

// Bytes of the metadata buffer (i32) and of the workspace for a batch and grid.
size_t mfa_decode_metadata_bytes(int batch, int num_ctas);
size_t mfa_decode_workspace_bytes(int batch, int num_ctas, int heads, int head_dim);

// Plans one step on `stream` (device kernel): reads seq_lens i32 [batch], writes metadata.
// Capturable in a CUDA graph. Returns cudaErrorInvalidValue for bad arguments.
cudaError_t mfa_decode_plan(const int32_t* seq_lens, int batch, int num_ctas, int32_t* metadata,
                            cudaStream_t stream);

// Attention + combine on `stream`. Returns cudaErrorInvalidValue for unsupported shapes or
// missing buffers, else the launch status. The kernel traps if a block_table lookup would
// reach past max_blocks_per_seq.
cudaError_t mfa_decode(const MfaDecodeParams& p, cudaStream_t stream);

}  // namespace afd::cuda
