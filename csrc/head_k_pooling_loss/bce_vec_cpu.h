// Four float BCEWithLogits terms at once for the CPU kernel of head_k_pooling_loss, written
// with GCC/Clang vector extensions (one SSE2 / NEON register).  Same stable softplus form as
// bce_with_logits in head_k_pooling_loss.h, with exp and log1p as polynomials (within a few
// ulps of float32) so that the whole term vectorises: glibc's expf/log1pf do not.
#pragma once

#include <cstdint>
#include <cstring>

namespace fastser::head_k_pooling::vec {

inline constexpr int kWidth = 4;
typedef float Float4 __attribute__((vector_size(16)));
typedef int32_t Int4 __attribute__((vector_size(16)));
typedef uint32_t Uint4 __attribute__((vector_size(16)));

inline Float4 splat(float c) { return Float4{} + c; }

// mask ? a : b, lane by lane (mask lanes are 0 or all ones).
inline Float4 select(Int4 mask, Float4 a, Float4 b) {
  return (Float4)(((Int4)a & mask) | ((Int4)b & ~mask));
}

inline Float4 load(const float* p) {
  Float4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline Int4 load(const int32_t* p) {
  Int4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline void store(float* p, Float4 v) { std::memcpy(p, &v, sizeof(v)); }

// e^x for x <= 0: Cody-Waite range reduction x = n ln2 + r, |r| <= ln2 / 2, and Cephes'
// degree-7 polynomial for e^r.  -inf (and anything below the float range) gives 0, NaN NaN.
inline Float4 exp_nonpositive(Float4 x) {
  constexpr float kShifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  constexpr uint32_t kShifterBits = 0x4B400000u;
  const Float4 clamped = select(x < -87.0f, splat(-87.0f), x);
  const Float4 shifted = clamped * 1.44269504088896341f + kShifter;
  const Float4 n = shifted - kShifter;
  const Uint4 n_bits = (Uint4)shifted - kShifterBits;  // n as a two's complement integer
  const Float4 r = (clamped - n * 0.693359375f) - n * -2.12194440e-4f;
  Float4 p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const Float4 exp_r = p * r * r + r + 1.0f;
  const Float4 two_to_n = (Float4)((n_bits + 127u) << 23);
  return select(x < -87.33654f, Float4{}, exp_r * two_to_n);
}

// log1p(e) for e in [0, 1] as 2 atanh(s), s = e / (2 + e) in [0, 1/3]: the odd series to s^15
// (truncation below 2e-9 relative).
inline Float4 log1p_unit(Float4 e) {
  const Float4 s = e / (2.0f + e);
  const Float4 w = s * s;
  Float4 p = splat(1.0f / 15.0f);
  p = p * w + 1.0f / 13.0f;
  p = p * w + 1.0f / 11.0f;
  p = p * w + 1.0f / 9.0f;
  p = p * w + 1.0f / 7.0f;
  p = p * w + 1.0f / 5.0f;
  p = p * w + 1.0f / 3.0f;
  p = p * w + 1.0f;
  return 2.0f * s * p;
}

struct Bce4 {
  Float4 loss;
  Float4 grad;  // sigmoid(z) - target
};

// BCEWithLogits(z, target) and its derivative; target lanes are masks.  Infinite z gives the
// limits, NaN gives NaN.
inline Bce4 bce_with_logits(Float4 z, Int4 target) {
  const Int4 non_negative = z >= 0.0f;  // false for NaN
  const Float4 e = exp_nonpositive(select(non_negative, -z, z));
  const Float4 r = 1.0f / (1.0f + e);
  const Float4 er = e * r;
  const Float4 softplus_tail = log1p_unit(e);
  const Float4 linear = select(target, select(non_negative, Float4{}, -z),
                               select(non_negative, z, Float4{}));
  const Float4 grad = select(target, -select(non_negative, er, r), select(non_negative, r, er));
  return {linear + softplus_tail, grad};
}

inline float horizontal_sum(Float4 v) { return (v[0] + v[1]) + (v[2] + v[3]); }

}  // namespace fastser::head_k_pooling::vec
