// The bit-exact arithmetic of the zeroth-order noise, shared verbatim by the
// CPU code (noise.cc) and the CUDA kernels (noise_kernels.cu). Every value is
// a fixed sequence of IEEE-754 binary32 operations, each correctly rounded to
// nearest even: multiply, add, subtract, divide, square root, and exact
// integer<->float conversions. No fused multiply-add, no libm, no
// approximate intrinsics: glibc's logf, CUDA's __logf and Arm's libm differ
// in the last bits, these do not. docs/zeroth_order_noise.md is the spec.
//
// Host translation units that include this header must be compiled with
// -ffp-contract=off (CMake sets it for the zeroth_order core library), since
// C++ allows a compiler to fuse a*b+c otherwise. Device code uses the _rn
// intrinsics, which nvcc never fuses.
#ifndef FEDFM_ZEROTH_ORDER_INTERNAL_NOISE_MATH_H_
#define FEDFM_ZEROTH_ORDER_INTERNAL_NOISE_MATH_H_

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "zeroth_order/noise_stream.h"
#include "zeroth_order/philox.h"

#if defined(__FAST_MATH__)
#error "zeroth-order noise must not be compiled with -ffast-math: it relies on IEEE rounding"
#endif
#if !defined(__CUDA_ARCH__) && defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0
#error "zeroth-order noise needs float evaluated in float (FLT_EVAL_METHOD 0, e.g. SSE, not x87)"
#endif
#if defined(__clang__) && !defined(__CUDA_ARCH__)
#pragma STDC FP_CONTRACT OFF
#endif

namespace fedfm::zeroth_order::internal {

// --- Correctly rounded binary32 primitives ---------------------------------
// The only place where device and host code differ, and only in spelling.
#if defined(__CUDA_ARCH__)
__device__ inline float FMul(float a, float b) { return __fmul_rn(a, b); }
__device__ inline float FAdd(float a, float b) { return __fadd_rn(a, b); }
__device__ inline float FSub(float a, float b) { return __fsub_rn(a, b); }
__device__ inline float FDiv(float a, float b) { return __fdiv_rn(a, b); }
__device__ inline float FSqrt(float a) { return __fsqrt_rn(a); }
__device__ inline uint32_t FloatBits(float f) { return __float_as_uint(f); }
__device__ inline float BitsFloat(uint32_t u) { return __uint_as_float(u); }
#else
inline float FMul(float a, float b) { return a * b; }
inline float FAdd(float a, float b) { return a + b; }
inline float FSub(float a, float b) { return a - b; }
inline float FDiv(float a, float b) { return a / b; }
inline float FSqrt(float a) { return std::sqrt(a); }  // correctly rounded (IEEE 754)
inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}
inline float BitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}
#endif

// --- Uniforms ------------------------------------------------------------------
// [0, 1): (x >> 8) * 2^-24. (0, 1]: ((x >> 8) + 1) * 2^-24. Both exact.
FEDFM_HOST_DEVICE inline float UniformOpen1(uint32_t x) {
  return FMul(static_cast<float>(x >> 8), 0x1p-24f);
}
FEDFM_HOST_DEVICE inline float UniformOpen0(uint32_t x) {
  return FMul(static_cast<float>((x >> 8) + 1u), 0x1p-24f);
}

// --- ln(x) for x in [2^-24, 1] -------------------------------------------------
// The classic fdlibm/FreeBSD logf scheme: x = 2^k * m, m in [sqrt(1/2), sqrt(2)),
// f = m - 1 (exact, Sterbenz), s = f / (2 + f), ln(m) = f - hfsq + s*(hfsq + R(s^2))
// with the 4-term polynomial R; ln 2 split into hi + lo so k*ln2_hi is exact.
// Max error below 1 ulp over the whole domain (checked exhaustively by a test).
FEDFM_HOST_DEVICE inline float LogUnit(float x) {
  constexpr float kLn2Hi = 0x1.62e3p-1f;     // 0x3f317180
  constexpr float kLn2Lo = 0x1.2fefa2p-17f;  // 0x3717f7d1
  constexpr float kLg1 = 0x1.555554p-1f;     // 0.66666662693
  constexpr float kLg2 = 0x1.999c26p-2f;     // 0.40000972152
  constexpr float kLg3 = 0x1.23d3dcp-2f;     // 0.28498786688
  constexpr float kLg4 = 0x1.f13c4cp-3f;     // 0.24279078841
  uint32_t ix = FloatBits(x);
  ix += 0x3f800000u - 0x3f3504f3u;
  const int k = static_cast<int>(ix >> 23) - 0x7f;
  ix = (ix & 0x007fffffu) + 0x3f3504f3u;
  const float f = FSub(BitsFloat(ix), 1.0f);
  const float s = FDiv(f, FAdd(2.0f, f));
  const float z = FMul(s, s);
  const float w = FMul(z, z);
  const float t1 = FMul(w, FAdd(kLg2, FMul(w, kLg4)));
  const float t2 = FMul(z, FAdd(kLg1, FMul(w, kLg3)));
  const float r = FAdd(t2, t1);
  const float hfsq = FMul(FMul(0.5f, f), f);
  const float dk = static_cast<float>(k);
  // ((s*(hfsq + r) + dk*ln2_lo) - hfsq + f) + dk*ln2_hi, left to right.
  float acc = FAdd(FMul(s, FAdd(hfsq, r)), FMul(dk, kLn2Lo));
  acc = FSub(acc, hfsq);
  acc = FAdd(acc, f);
  return FAdd(acc, FMul(dk, kLn2Hi));
}

// --- cos and sin of 2*pi*q/2^24 for a 24-bit integer q ---------------------------
// Exact reduction in integers: j = round(q / 2^22) quarter turns, remainder
// d = q - j*2^22 in [-2^21, 2^21), angle a = d * fl(2*pi*2^-24) in
// [-pi/4, pi/4]; Taylor polynomials to a^9 (sin) and a^10 (cos), whose
// truncation error is below 2e-9; then the quadrant rotation, which only
// swaps and negates.
FEDFM_HOST_DEVICE inline void SinCosTurns24(uint32_t q, float* cos_out, float* sin_out) {
  constexpr float kTwoPiOver2p24 = 0x1.921fb6p-22f;  // fl(2*pi) * 2^-24
  constexpr float kS1 = -0x1.555556p-3f;  // -1/3!
  constexpr float kS2 = 0x1.111112p-7f;   // 1/5!
  constexpr float kS3 = -0x1.a01a02p-13f; // -1/7!
  constexpr float kS4 = 0x1.71de3ap-19f;  // 1/9!
  constexpr float kC1 = -0x1p-1f;         // -1/2!
  constexpr float kC2 = 0x1.555556p-5f;   // 1/4!
  constexpr float kC3 = -0x1.6c16c2p-10f; // -1/6!
  constexpr float kC4 = 0x1.a01a02p-16f;  // 1/8!
  constexpr float kC5 = -0x1.27e4fcp-22f; // -1/10!
  const uint32_t j = (q + (1u << 21)) >> 22;  // 0..4
  const int32_t d = static_cast<int32_t>(q) - static_cast<int32_t>(j << 22);
  const float a = FMul(static_cast<float>(d), kTwoPiOver2p24);
  const float a2 = FMul(a, a);
  float ps = FAdd(kS3, FMul(a2, kS4));
  ps = FAdd(kS2, FMul(a2, ps));
  ps = FAdd(kS1, FMul(a2, ps));
  const float s = FAdd(a, FMul(FMul(a, a2), ps));
  float pc = FAdd(kC4, FMul(a2, kC5));
  pc = FAdd(kC3, FMul(a2, pc));
  pc = FAdd(kC2, FMul(a2, pc));
  pc = FAdd(kC1, FMul(a2, pc));
  const float c = FAdd(1.0f, FMul(a2, pc));
  switch (j & 3u) {
    case 0: *cos_out = c; *sin_out = s; break;
    case 1: *cos_out = -s; *sin_out = c; break;
    case 2: *cos_out = -c; *sin_out = -s; break;
    default: *cos_out = s; *sin_out = -c; break;
  }
}

// --- Philox block of one stream -------------------------------------------------
// Counter = (lo32(block), hi32(block), tensor_index, kind); key = seed.
FEDFM_HOST_DEVICE inline Philox4x32Counter NoiseBlockBits(const NoiseStream& s, uint64_t block) {
  Philox4x32Counter c;
  c.v[0] = static_cast<uint32_t>(block);
  c.v[1] = static_cast<uint32_t>(block >> 32);
  c.v[2] = s.tensor_index;
  c.v[3] = static_cast<uint32_t>(s.kind);
  return Philox4x32_10(c, PhiloxKeyFromSeed(s.seed));
}

// Box-Muller on one pair of words: r = sqrt(-2 ln u1), u1 = UniformOpen0(x_a),
// angle from the top 24 bits of x_b; first = r*cos, second = r*sin.
FEDFM_HOST_DEVICE inline void BoxMuller(uint32_t xa, uint32_t xb, float* first, float* second) {
  const float r = FSqrt(FMul(-2.0f, LogUnit(UniformOpen0(xa))));
  float c, s;
  SinCosTurns24(xb >> 8, &c, &s);
  *first = FMul(r, c);
  *second = FMul(r, s);
}

// Gaussian elements 4*block .. 4*block+3: (x0, x1) -> z0 = r cos, z1 = r sin;
// (x2, x3) -> z2 = r cos, z3 = r sin.
FEDFM_HOST_DEVICE inline void GaussianBlock(const NoiseStream& s, uint64_t block, float z[4]) {
  const Philox4x32Counter x = NoiseBlockBits(s, block);
  BoxMuller(x.v[0], x.v[1], &z[0], &z[1]);
  BoxMuller(x.v[2], x.v[3], &z[2], &z[3]);
}

inline constexpr int kGaussianPerBlock = 4;
inline constexpr int kRademacherPerBlock = 128;

// Rademacher element e: bit (e % 32) of word ((e / 32) % 4) of block e / 128;
// 1 -> +1.0f, 0 -> -1.0f.
FEDFM_HOST_DEVICE inline float RademacherFromBits(const Philox4x32Counter& x, uint32_t e_in_block) {
  const uint32_t bit = (x.v[(e_in_block >> 5) & 3u] >> (e_in_block & 31u)) & 1u;
  return bit ? 1.0f : -1.0f;
}

// --- Updates ----------------------------------------------------------------------
// theta' = fl(theta + fl(alpha * z)): two roundings, never fused.
FEDFM_HOST_DEVICE inline float AxpyElement(float theta, float alpha, float z) {
  return FAdd(theta, FMul(alpha, z));
}

// bf16 <-> float. Rounding to nearest even; NaN stays a quiet NaN (as
// protocols::FloatToBf16).
FEDFM_HOST_DEVICE inline float Bf16BitsToFloat(uint16_t b) {
  return BitsFloat(static_cast<uint32_t>(b) << 16);
}
FEDFM_HOST_DEVICE inline uint16_t FloatToBf16Bits(float f) {
  const uint32_t u = FloatBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

}  // namespace fedfm::zeroth_order::internal

#endif  // FEDFM_ZEROTH_ORDER_INTERNAL_NOISE_MATH_H_
