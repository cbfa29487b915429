// Element types and exact scalar conversions.
//
// Encoders round to nearest, ties to even. FP8 is OCP e4m3fn ("fn": finite, no infinities):
// bias 7, max finite 448 (0x7E), NaN 0x7F/0xFF. Encoding SATURATES: finite values and
// infinities beyond +-448 become +-448; NaN stays NaN. Subnormals are kept.
// These functions are plain inline code so CUDA kernels can use them too (AFD_HD).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

#if defined(__CUDACC__)
#define AFD_HD __host__ __device__ __forceinline__
#else
#define AFD_HD inline
#endif

namespace afd {

enum class DType : uint8_t { kF32, kBF16, kF16, kF8E4M3, kI32, kI64 };

// Bytes per element.
constexpr int64_t dtype_size(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kBF16: return 2;
    case DType::kF16: return 2;
    case DType::kF8E4M3: return 1;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
  }
  return 0;
}

// Lower-case short name: "f32", "bf16", "f16", "fp8_e4m3", "i32", "i64".
const char* dtype_name(DType t);
// safetensors spelling: "F32", "BF16", "F16", "F8_E4M3", "I32", "I64".
const char* dtype_safetensors_name(DType t);
// Parses the safetensors spelling; nullopt for anything else (including other dtypes
// safetensors knows, such as F64 or U8, which afd does not load).
std::optional<DType> dtype_from_safetensors(std::string_view s);

AFD_HD uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
AFD_HD float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// ---- bf16 ----
AFD_HD float bf16_to_f32(uint16_t h) { return bits_f32(static_cast<uint32_t>(h) << 16); }
AFD_HD uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // RNE; overflow carries into the exponent (to inf) correctly
  return static_cast<uint16_t>(u >> 16);
}

// ---- f16 (IEEE binary16) ----
AFD_HD float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13));  // inf / NaN
  if (exp == 0) {                                                      // zero / subnormal
    float v = static_cast<float>(man) * (1.0f / 16777216.0f);          // man * 2^-24, exact
    return sign ? -v : v;
  }
  return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}
AFD_HD uint16_t f32_to_f16(float f) {
  uint32_t u = f32_bits(f);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  u &= 0x7fffffffu;
  if (u > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (u >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to inf
  if (u >= 0x38800000u) {                       // normal in f16 (>= 2^-14)
    uint32_t r = (u >> 13) - (112u << 10);
    uint32_t rem = u & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  // Subnormal (or zero): units of 2^-24; the product is exact, rintf rounds half to even.
  uint32_t m = static_cast<uint32_t>(rintf(bits_f32(u) * 16777216.0f));
  return static_cast<uint16_t>(sign | m);
}

// ---- fp8 e4m3fn ----
constexpr float kFp8E4M3Max = 448.0f;

AFD_HD float fp8e4m3_to_f32(uint8_t b) {
  uint32_t sign = static_cast<uint32_t>(b & 0x80u) << 24;
  uint32_t exp = (b >> 3) & 0xfu, man = b & 0x7u;
  if (exp == 0xf && man == 0x7) return bits_f32(sign | 0x7fc00000u);  // NaN
  if (exp == 0) {
    float v = static_cast<float>(man) * (1.0f / 512.0f);  // man * 2^-9
    return sign ? -v : v;
  }
  return bits_f32(sign | ((exp + 120u) << 23) | (man << 20));
}
AFD_HD uint8_t f32_to_fp8e4m3(float f) {
  uint32_t u = f32_bits(f);
  uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  u &= 0x7fffffffu;
  if (u > 0x7f800000u) return sign | 0x7fu;   // NaN
  if (u >= 0x43e00000u) return sign | 0x7eu;  // >= 448 (and inf): saturate
  if (u >= 0x3c800000u) {                     // normal in e4m3 (>= 2^-6)
    uint32_t r = (u >> 20) - (120u << 3);
    uint32_t rem = u & 0xfffffu;
    if (rem > 0x80000u || (rem == 0x80000u && (r & 1u))) ++r;
    return static_cast<uint8_t>(sign | r);
  }
  // Subnormal (or zero): units of 2^-9, exact product, half to even; 8 becomes 0x08 = 2^-6.
  uint32_t m = static_cast<uint32_t>(rintf(bits_f32(u) * 512.0f));
  return static_cast<uint8_t>(sign | m);
}

// Reads element i of a float-like buffer of dtype t as f32 (f32, bf16, f16, fp8 only).
float load_as_f32(const void* data, DType t, int64_t i);
// Converts n elements of dtype `from` (any float dtype) into f32. `src` may be unaligned.
void convert_to_f32(const void* src, DType from, float* dst, int64_t n);
// Converts n f32 values into dtype `to` (any float dtype), rounding to nearest even.
void convert_from_f32(const float* src, void* dst, DType to, int64_t n);

}  // namespace afd
