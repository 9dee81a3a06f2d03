// Numeric helpers shared by the training-loss kernels (hybrid_memory, soft_triplet), on the
// host and, compiled by nvcc, on the device. No torch and no CUDA header is needed.
//
// bf16 is stored as its 16 raw bits (the layout of torch.bfloat16 / at::BFloat16 and of
// __nv_bfloat16), converted here by the same round-to-nearest-even rule as PyTorch, so the
// CPU and CUDA kernels round identically.
#pragma once

#include <math.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__CUDACC__)
#define SMCR_HD __host__ __device__ __forceinline__
#else
#define SMCR_HD inline
#endif

namespace smcr {

struct bf16 {
  std::uint16_t bits;
};
static_assert(sizeof(bf16) == 2, "bf16 must be 2 bytes");

SMCR_HD float bits_to_float(std::uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
#endif
}

SMCR_HD std::uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
#endif
}

SMCR_HD float bf16_to_float(bf16 v) { return bits_to_float(static_cast<std::uint32_t>(v.bits) << 16); }

// Round to nearest even, NaN kept NaN (PyTorch's c10::BFloat16 rule).
SMCR_HD bf16 float_to_bf16(float f) {
  std::uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{0x7fc0u};
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{static_cast<std::uint16_t>(u >> 16)};
}

// load<Acc>(T): widen a stored value to the accumulation type; store(T*, Acc): narrow it.
template <typename Acc>
SMCR_HD Acc load(float v) { return static_cast<Acc>(v); }
template <typename Acc>
SMCR_HD Acc load(double v) { return static_cast<Acc>(v); }
template <typename Acc>
SMCR_HD Acc load(bf16 v) { return static_cast<Acc>(bf16_to_float(v)); }

SMCR_HD void store(float* p, float v) { *p = v; }
SMCR_HD void store(float* p, double v) { *p = static_cast<float>(v); }
SMCR_HD void store(double* p, double v) { *p = v; }
SMCR_HD void store(double* p, float v) { *p = static_cast<double>(v); }
SMCR_HD void store(bf16* p, float v) { *p = float_to_bf16(v); }
SMCR_HD void store(bf16* p, double v) { *p = float_to_bf16(static_cast<float>(v)); }

// Math with one spelling for float and double, on the host and on the device.
SMCR_HD float m_exp(float x) { return expf(x); }
SMCR_HD double m_exp(double x) { return exp(x); }
SMCR_HD float m_log(float x) { return logf(x); }
SMCR_HD double m_log(double x) { return log(x); }
SMCR_HD float m_log1p(float x) { return log1pf(x); }
SMCR_HD double m_log1p(double x) { return log1p(x); }
SMCR_HD float m_sqrt(float x) { return sqrtf(x); }
SMCR_HD double m_sqrt(double x) { return sqrt(x); }

// log(exp(a) + exp(b)) without overflow; either may be -inf.
template <typename Acc>
SMCR_HD Acc log_add_exp(Acc a, Acc b) {
  const Acc hi = a > b ? a : b;
  const Acc lo = a > b ? b : a;
  if (hi == -std::numeric_limits<Acc>::infinity()) return hi;
  return hi + m_log1p(m_exp(lo - hi));
}

// log(1 + exp(x)) without overflow.
template <typename Acc>
SMCR_HD Acc softplus(Acc x) {
  const Acc ax = x < Acc(0) ? -x : x;
  return (x > Acc(0) ? x : Acc(0)) + m_log1p(m_exp(-ax));
}

// 1 / (1 + exp(-x)) without overflow.
template <typename Acc>
SMCR_HD Acc sigmoid(Acc x) {
  if (x >= Acc(0)) return Acc(1) / (Acc(1) + m_exp(-x));
  const Acc e = m_exp(x);
  return e / (Acc(1) + e);
}

}  // namespace smcr
