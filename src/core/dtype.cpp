#include "core/dtype.h"

#include "core/status.h"

namespace afd {

namespace {
// safetensors packs tensors back to back, so a mapped tensor may be unaligned: read through
// memcpy (compiled to a plain load on x86).
inline uint16_t load_u16(const void* p, int64_t i) {
  uint16_t v;
  std::memcpy(&v, static_cast<const uint8_t*>(p) + 2 * i, 2);
  return v;
}
inline float load_f32(const void* p, int64_t i) {
  float v;
  std::memcpy(&v, static_cast<const uint8_t*>(p) + 4 * i, 4);
  return v;
}
}  // namespace

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "f32";
    case DType::kBF16: return "bf16";
    case DType::kF16: return "f16";
    case DType::kF8E4M3: return "fp8_e4m3";
    case DType::kI32: return "i32";
    case DType::kI64: return "i64";
  }
  return "?";
}

const char* dtype_safetensors_name(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kBF16: return "BF16";
    case DType::kF16: return "F16";
    case DType::kF8E4M3: return "F8_E4M3";
    case DType::kI32: return "I32";
    case DType::kI64: return "I64";
  }
  return "?";
}

std::optional<DType> dtype_from_safetensors(std::string_view s) {
  if (s == "F32") return DType::kF32;
  if (s == "BF16") return DType::kBF16;
  if (s == "F16") return DType::kF16;
  if (s == "F8_E4M3") return DType::kF8E4M3;
  if (s == "I32") return DType::kI32;
  if (s == "I64") return DType::kI64;
  return std::nullopt;
}

float load_as_f32(const void* data, DType t, int64_t i) {
  switch (t) {
    case DType::kF32: return load_f32(data, i);
    case DType::kBF16: return bf16_to_f32(load_u16(data, i));
    case DType::kF16: return f16_to_f32(load_u16(data, i));
    case DType::kF8E4M3: return fp8e4m3_to_f32(static_cast<const uint8_t*>(data)[i]);
    default: break;
  }
  AFD_CHECK(false, "load_as_f32: dtype {} is not a float type", dtype_name(t));
  return 0;
}

void convert_to_f32(const void* src, DType from, float* dst, int64_t n) {
  switch (from) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(load_u16(src, i));
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(load_u16(src, i));
      return;
    case DType::kF8E4M3: {
      auto* s = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp8e4m3_to_f32(s[i]);
      return;
    }
    default: break;
  }
  AFD_CHECK(false, "convert_to_f32: dtype {} is not a float type", dtype_name(from));
}

void convert_from_f32(const float* src, void* dst, DType to, int64_t n) {
  switch (to) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::kBF16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
      return;
    }
    case DType::kF16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
      return;
    }
    case DType::kF8E4M3: {
      auto* d = static_cast<uint8_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = f32_to_fp8e4m3(src[i]);
      return;
    }
    default: break;
  }
  AFD_CHECK(false, "convert_from_f32: dtype {} is not a float type", dtype_name(to));
}

}  // namespace afd
