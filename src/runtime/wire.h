// Wire format of the per-layer A<->F messages (DESIGN.md §1).
//
// A->F (dispatch): header, activations, router result:
//   header      6 x u32: magic "AFD1", flags, dtype, tokens T, hidden H, top-k k
//   activations f32 [T, H] | bf16 [T, H] | fp8 e4m3 [T, H] + f32 scales [T, ceil(H / 128)]
//               (fp8: one scale per token per 128 channels, scale = amax / 448)
//   ids         i32 [T, k]   routed expert ids (k = 0 on dense layers)
//   weights     f32 [T, k]   router weights
// F->A (partial): header (k = 0), then the partial output f32 [T, H] or bf16 [T, H], rows in
// the order the dispatch listed them.
// All little-endian (the hosts are). A message that does not parse is kCorrupt.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace afd {

enum class WireDType : uint32_t { kF32 = 0, kBF16 = 1, kFp8 = 2 };
const char* wire_dtype_name(WireDType t);
Result<WireDType> parse_wire_dtype(const std::string& s);  // "f32" | "bf16" | "fp8"

constexpr uint32_t kFlagRankDone = 1u;  // A->F: this attention rank has no more work
constexpr uint32_t kFlagAllDone = 2u;   // F->A: every attention rank is done; stop
constexpr int64_t kWireGroup = 128;     // channels per fp8 scale

struct DispatchMsg {
  uint32_t flags = 0;
  int64_t tokens = 0, hidden = 0, topk = 0;
  std::vector<float> x;        // f32 [tokens, hidden] (dequantized on arrival)
  std::vector<int32_t> ids;    // i32 [tokens, topk]
  std::vector<float> weights;  // f32 [tokens, topk]
};

// Encodes rows `rows` of x (f32 [*, H]), ids (i32 [*, k]) and weights (f32 [*, k]).
// ids/weights may be null when k == 0.
void encode_dispatch(uint32_t flags, WireDType dt, const float* x, const int32_t* ids,
                     const float* weights, const std::vector<int64_t>& rows, int64_t H, int64_t k,
                     std::vector<uint8_t>* out);
Status decode_dispatch(const std::vector<uint8_t>& in, DispatchMsg* out);

// y f32 [T, H] -> message (dt: kF32 or kBF16).
void encode_partial(uint32_t flags, WireDType dt, const float* y, int64_t T, int64_t H,
                    std::vector<uint8_t>* out);
// Adds the partial's row i into acc[rows[i]] (acc f32 [*, H]); checks T == rows.size().
Status accumulate_partial(const std::vector<uint8_t>& in, const std::vector<int64_t>& rows,
                          int64_t H, float* acc, uint32_t* flags);

}  // namespace afd
