#include "runtime/wire.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dtype.h"

namespace afd {

namespace {

constexpr uint32_t kMagic = 0x31444641;  // "AFD1"
constexpr size_t kHeader = 6 * 4;

void put_header(std::vector<uint8_t>* out, uint32_t flags, WireDType dt, int64_t T, int64_t H,
                int64_t k) {
  uint32_t h[6] = {kMagic, flags, static_cast<uint32_t>(dt), static_cast<uint32_t>(T),
                   static_cast<uint32_t>(H), static_cast<uint32_t>(k)};
  out->resize(kHeader);
  std::memcpy(out->data(), h, kHeader);
}

template <typename T>
void append(std::vector<uint8_t>* out, const T* p, size_t n) {
  size_t at = out->size();
  out->resize(at + n * sizeof(T));
  if (n) std::memcpy(out->data() + at, p, n * sizeof(T));
}

int64_t act_bytes(WireDType dt, int64_t T, int64_t H) {
  switch (dt) {
    case WireDType::kF32: return T * H * 4;
    case WireDType::kBF16: return T * H * 2;
    case WireDType::kFp8: return T * H + T * ((H + kWireGroup - 1) / kWireGroup) * 4;
  }
  return -1;
}

}  // namespace

const char* wire_dtype_name(WireDType t) {
  switch (t) {
    case WireDType::kF32: return "f32";
    case WireDType::kBF16: return "bf16";
    case WireDType::kFp8: return "fp8";
  }
  return "?";
}

Result<WireDType> parse_wire_dtype(const std::string& s) {
  if (s == "f32") return WireDType::kF32;
  if (s == "bf16") return WireDType::kBF16;
  if (s == "fp8") return WireDType::kFp8;
  return InvalidArgument("--dispatch-dtype must be fp8, bf16 or f32, got \"{}\"", s);
}

void encode_dispatch(uint32_t flags, WireDType dt, const float* x, const int32_t* ids,
                     const float* weights, const std::vector<int64_t>& rows, int64_t H, int64_t k,
                     std::vector<uint8_t>* out) {
  const int64_t T = static_cast<int64_t>(rows.size());
  put_header(out, flags, dt, T, H, k);
  out->reserve(kHeader + static_cast<size_t>(act_bytes(dt, T, H) + T * k * 8));
  if (dt == WireDType::kF32) {
    for (int64_t r : rows) append(out, x + r * H, static_cast<size_t>(H));
  } else if (dt == WireDType::kBF16) {
    std::vector<uint16_t> b(static_cast<size_t>(H));
    for (int64_t r : rows) {
      convert_from_f32(x + r * H, b.data(), DType::kBF16, H);
      append(out, b.data(), b.size());
    }
  } else {
    const int64_t G = (H + kWireGroup - 1) / kWireGroup;
    std::vector<uint8_t> q(static_cast<size_t>(T * H));
    std::vector<float> scales(static_cast<size_t>(T * G));
    for (int64_t t = 0; t < T; ++t) {
      const float* row = x + rows[static_cast<size_t>(t)] * H;
      for (int64_t g = 0; g < G; ++g) {
        const int64_t c0 = g * kWireGroup, c1 = std::min(H, c0 + kWireGroup);
        float amax = 0;
        for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(row[c]));
        const float scale = amax > 0 ? amax / kFp8E4M3Max : 1.0f;
        scales[static_cast<size_t>(t * G + g)] = scale;
        for (int64_t c = c0; c < c1; ++c) q[static_cast<size_t>(t * H + c)] = f32_to_fp8e4m3(row[c] / scale);
      }
    }
    append(out, q.data(), q.size());
    append(out, scales.data(), scales.size());
  }
  for (int64_t r : rows) append(out, ids + r * k, static_cast<size_t>(k));
  for (int64_t r : rows) append(out, weights + r * k, static_cast<size_t>(k));
}

Status decode_dispatch(const std::vector<uint8_t>& in, DispatchMsg* m) {
  if (in.size() < kHeader) return Corrupt("dispatch message of {} bytes is too short", in.size());
  uint32_t h[6];
  std::memcpy(h, in.data(), kHeader);
  if (h[0] != kMagic) return Corrupt("dispatch message has a bad magic number");
  if (h[2] > 2) return Corrupt("dispatch message has unknown dtype {}", h[2]);
  const auto dt = static_cast<WireDType>(h[2]);
  m->flags = h[1];
  m->tokens = h[3], m->hidden = h[4], m->topk = h[5];
  const int64_t T = m->tokens, H = m->hidden, k = m->topk;
  const int64_t need = static_cast<int64_t>(kHeader) + act_bytes(dt, T, H) + T * k * 8;
  if (static_cast<int64_t>(in.size()) != need)
    return Corrupt("dispatch message of {} bytes, header says {}", in.size(), need);
  const uint8_t* p = in.data() + kHeader;
  m->x.resize(static_cast<size_t>(T * H));
  if (dt == WireDType::kF32) {
    std::memcpy(m->x.data(), p, static_cast<size_t>(T * H * 4));
  } else if (dt == WireDType::kBF16) {
    convert_to_f32(p, DType::kBF16, m->x.data(), T * H);
  } else {
    const int64_t G = (H + kWireGroup - 1) / kWireGroup;
    const uint8_t* sp = p + T * H;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < H; ++c) {
        float s;
        std::memcpy(&s, sp + (t * G + c / kWireGroup) * 4, 4);
        m->x[static_cast<size_t>(t * H + c)] = fp8e4m3_to_f32(p[t * H + c]) * s;
      }
  }
  p += act_bytes(dt, T, H);
  m->ids.resize(static_cast<size_t>(T * k));
  m->weights.resize(static_cast<size_t>(T * k));
  if (T * k) {
    std::memcpy(m->ids.data(), p, static_cast<size_t>(T * k * 4));
    std::memcpy(m->weights.data(), p + T * k * 4, static_cast<size_t>(T * k * 4));
  }
  return Status::OK();
}

void encode_partial(uint32_t flags, WireDType dt, const float* y, int64_t T, int64_t H,
                    std::vector<uint8_t>* out) {
  const WireDType pdt = dt == WireDType::kF32 ? WireDType::kF32 : WireDType::kBF16;
  put_header(out, flags, pdt, T, H, 0);
  if (pdt == WireDType::kF32) {
    append(out, y, static_cast<size_t>(T * H));
  } else {
    std::vector<uint16_t> b(static_cast<size_t>(T * H));
    convert_from_f32(y, b.data(), DType::kBF16, T * H);
    append(out, b.data(), b.size());
  }
}

Status accumulate_partial(const std::vector<uint8_t>& in, const std::vector<int64_t>& rows,
                          int64_t H, float* acc, uint32_t* flags) {
  if (in.size() < kHeader) return Corrupt("partial message of {} bytes is too short", in.size());
  uint32_t h[6];
  std::memcpy(h, in.data(), kHeader);
  if (h[0] != kMagic) return Corrupt("partial message has a bad magic number");
  *flags = h[1];
  const int64_t T = h[3];
  if (h[4] != static_cast<uint32_t>(H) || T != static_cast<int64_t>(rows.size()) ||
      (h[2] != 0 && h[2] != 1))
    return Corrupt("partial message: {} tokens x {} ({}), expected {} x {}", T, h[4], h[2],
                   rows.size(), H);
  const int64_t width = h[2] == 0 ? 4 : 2;
  if (static_cast<int64_t>(in.size()) != static_cast<int64_t>(kHeader) + T * H * width)
    return Corrupt("partial message of {} bytes for {} x {}", in.size(), T, H);
  const uint8_t* p = in.data() + kHeader;
  for (int64_t t = 0; t < T; ++t) {
    float* dst = acc + rows[static_cast<size_t>(t)] * H;
    for (int64_t c = 0; c < H; ++c) {
      if (width == 4) {
        float v;
        std::memcpy(&v, p + (t * H + c) * 4, 4);
        dst[c] += v;
      } else {
        uint16_t v;
        std::memcpy(&v, p + (t * H + c) * 2, 2);
        dst[c] += bf16_to_f32(v);
      }
    }
  }
  return Status::OK();
}

}  // namespace afd
