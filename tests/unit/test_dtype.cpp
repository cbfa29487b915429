#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/dtype.h"

namespace afd {
namespace {

// Reference: the exact f32 value nearest to x among all finite e4m3fn values, ties to the
// even code, saturating at 448 -- found by brute force over the 254 finite codes.
uint8_t fp8_brute(float x) {
  if (std::isnan(x)) return std::signbit(x) ? 0xff : 0x7f;
  if (x >= 448.0f) return 0x7e;
  if (x <= -448.0f) return 0xfe;
  int best = -1;
  double best_err = 0;
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;
    double v = fp8e4m3_to_f32(static_cast<uint8_t>(c));
    if (std::signbit(v) != std::signbit(x) && v != 0) continue;
    double err = std::fabs(v - static_cast<double>(x));
    if (best < 0 || err < best_err || (err == best_err && (c & 1) == 0 && (best & 1) == 1)) {
      best = c;
      best_err = err;
    }
  }
  // keep the sign of zero
  if ((best & 0x7f) == 0) best = std::signbit(x) ? 0x80 : 0x00;
  return static_cast<uint8_t>(best);
}

TEST(DType, Fp8DecodeKnownCodes) {
  EXPECT_EQ(fp8e4m3_to_f32(0x7e), 448.0f);
  EXPECT_EQ(fp8e4m3_to_f32(0xfe), -448.0f);
  EXPECT_EQ(fp8e4m3_to_f32(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_EQ(fp8e4m3_to_f32(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(fp8e4m3_to_f32(0x38), 1.0f);
  EXPECT_TRUE(std::isnan(fp8e4m3_to_f32(0x7f)));
  EXPECT_TRUE(std::isnan(fp8e4m3_to_f32(0xff)));
}

TEST(DType, Fp8RoundTripsEveryCode) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;
    float v = fp8e4m3_to_f32(static_cast<uint8_t>(c));
    EXPECT_EQ(f32_to_fp8e4m3(v), c) << "code " << c;
  }
}

TEST(DType, Fp8EncodeMatchesBruteForceNearestEven) {
  // Midpoints between neighbours are the interesting cases: test them and their neighbours.
  for (int c = 0; c < 0x7e; ++c) {
    float lo = fp8e4m3_to_f32(static_cast<uint8_t>(c));
    float hi = fp8e4m3_to_f32(static_cast<uint8_t>(c + 1));
    float mid = 0.5f * (lo + hi);
    for (float x : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1000.0f), lo, hi}) {
      EXPECT_EQ(f32_to_fp8e4m3(x), fp8_brute(x)) << "x=" << x;
      EXPECT_EQ(f32_to_fp8e4m3(-x), fp8_brute(-x)) << "x=" << -x;
    }
  }
}

TEST(DType, Fp8SaturatesAndKeepsNaN) {
  EXPECT_EQ(f32_to_fp8e4m3(448.0f), 0x7e);
  EXPECT_EQ(f32_to_fp8e4m3(460.0f), 0x7e);
  EXPECT_EQ(f32_to_fp8e4m3(1e30f), 0x7e);
  EXPECT_EQ(f32_to_fp8e4m3(-std::numeric_limits<float>::infinity()), 0xfe);
  EXPECT_EQ(f32_to_fp8e4m3(std::numeric_limits<float>::quiet_NaN()) & 0x7f, 0x7f);
  EXPECT_EQ(f32_to_fp8e4m3(1e-30f), 0x00);
}

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  // 1 + 3 * 2^-8 is halfway between 1+2^-7 (odd) and 1+2^-6 (even): rounds up.
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)), 0x3f81);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::nanf("")))));
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  for (uint32_t h = 0; h < 0x10000; h += 7) {
    if (((h >> 7) & 0xff) == 0xff && (h & 0x7f)) continue;  // NaN payloads
    EXPECT_EQ(f32_to_bf16(bf16_to_f32(static_cast<uint16_t>(h))), h);
  }
}

TEST(DType, F16RoundTripAndRounding) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if (((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff)) continue;  // NaN
    ASSERT_EQ(f32_to_f16(f16_to_f32(static_cast<uint16_t>(h))), h) << h;
  }
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie to even
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // tie to even (0)
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 units: tie to even (2)
}

}  // namespace
}  // namespace afd
