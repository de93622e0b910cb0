// CPU helpers for kernels whose inner loops run over short rows (a head dimension): loops the
// compiler turns into SIMD code, a float32 GELU written without library calls so that it
// vectorises too, and per-ISA multiversioning of the hot functions.
//
// The extension is compiled for the baseline x86-64 ISA; FASTSER_CPU_MULTIVERSION on a function
// makes GCC also compile it for AVX2+FMA and AVX-512 and pick the best at load time. Functions it
// calls are inlined into each version (FASTSER_CPU_INLINE), so they vectorise for that ISA.
// Results are deterministic on a given machine (the version chosen never changes), and may
// differ in the last bits between machines with different ISAs.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

// target_clones needs the loader's ifunc support (GCC, x86-64 Linux); `flatten` inlines every
// helper into each version so that it vectorises for that ISA.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FASTSER_CPU_MULTIVERSION \
  __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4"), flatten))
#else
#define FASTSER_CPU_MULTIVERSION
#endif

#if defined(__GNUC__)
#define FASTSER_CPU_INLINE inline __attribute__((always_inline))
#define FASTSER_MAY_ALIAS __attribute__((may_alias))
#else
#define FASTSER_CPU_INLINE inline
#define FASTSER_MAY_ALIAS
#endif

namespace fastser::cpu {

// --- rows -----------------------------------------------------------------------------------

// Sum of a[i] * b[i] over n values with 16 interleaved partial sums (one SIMD register of
// floats on AVX-512), each summing at most kDotBlockRows products before it is added into a
// running total, and added pairwise at the end: no long chain of dependent additions, a fixed
// summation order (the result does not depend on the thread count), and a rounding error that
// grows with n / (16 * kDotBlockRows) rather than n / 16 for long rows.
inline constexpr int64_t kDotLanes = 16;
inline constexpr int64_t kDotBlockRows = 8;

template <typename T>
FASTSER_CPU_INLINE T row_dot(const T* a, const T* b, int64_t n) {
  T total[kDotLanes] = {};
  T part[kDotLanes];
  int64_t i = 0;
  while (i < n) {
#pragma omp simd
    for (int64_t l = 0; l < kDotLanes; ++l) {
      part[l] = 0;
    }
    const int64_t block_end = std::min<int64_t>(n, i + kDotLanes * kDotBlockRows);
    for (; i + kDotLanes <= block_end; i += kDotLanes) {
#pragma omp simd
      for (int64_t l = 0; l < kDotLanes; ++l) {
        part[l] += a[i + l] * b[i + l];
      }
    }
    if (block_end == n) {  // the tail, one value per lane
      for (int64_t l = 0; i < n; ++i, ++l) {
        part[l] += a[i] * b[i];
      }
    }
#pragma omp simd
    for (int64_t l = 0; l < kDotLanes; ++l) {
      total[l] += part[l];
    }
  }
#pragma GCC unroll 4
  for (int64_t width = kDotLanes / 2; width > 0; width /= 2) {
#pragma omp simd
    for (int64_t l = 0; l < width; ++l) {
      total[l] += total[l + width];
    }
  }
  return total[0];
}

// y += alpha * x
template <typename T>
FASTSER_CPU_INLINE void row_axpy(T* __restrict y, T alpha, const T* __restrict x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    y[i] += alpha * x[i];
  }
}

// y = alpha * x
template <typename T>
FASTSER_CPU_INLINE void row_scaled_copy(T* __restrict y, T alpha, const T* __restrict x,
                                        int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    y[i] = alpha * x[i];
  }
}

// y *= alpha
template <typename T>
FASTSER_CPU_INLINE void row_scale(T* y, T alpha, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    y[i] *= alpha;
  }
}

template <typename T>
FASTSER_CPU_INLINE void row_fill(T* y, T value, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    y[i] = value;
  }
}

// --- element conversions that vectorise ------------------------------------------------------
//
// float16 and bfloat16 rows are read and written as their 16-bit patterns, converted with
// integer and float arithmetic free of branches (round to nearest even, subnormals, infinities
// and NaN exactly as c10::Half and c10::BFloat16), so that the loops vectorise.

typedef uint16_t bits16 FASTSER_MAY_ALIAS;

template <typename T>
struct Storage {
  using type = T;
};
template <>
struct Storage<c10::Half> {
  using type = bits16;
};
template <>
struct Storage<c10::BFloat16> {
  using type = bits16;
};

// The element type a row of T is accessed as.
template <typename T>
using storage_t = typename Storage<T>::type;

template <typename T>
FASTSER_CPU_INLINE storage_t<T>* storage(T* p) {
  return reinterpret_cast<storage_t<T>*>(p);
}
template <typename T>
FASTSER_CPU_INLINE const storage_t<T>* storage(const T* p) {
  return reinterpret_cast<const storage_t<T>*>(p);
}

FASTSER_CPU_INLINE float half_to_float(uint16_t h) {
  const uint32_t magnitude = static_cast<uint32_t>(h & 0x7FFFu) << 13;
  // Rebias the exponent by a multiplication by 2^112 (exact, subnormals included).
  const float scaled = std::bit_cast<float>(magnitude) * 5.192296858534828e33f;
  const uint32_t finite = std::bit_cast<uint32_t>(scaled);
  const uint32_t special = magnitude | 0x7F800000u;  // infinity or NaN (payload kept)
  const uint32_t bits = (h & 0x7C00u) == 0x7C00u ? special : finite;
  return std::bit_cast<float>(bits | (static_cast<uint32_t>(h & 0x8000u) << 16));
}

FASTSER_CPU_INLINE uint16_t float_to_half(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const uint32_t magnitude = bits & 0x7FFFFFFFu;
  // Normal results: rebias the exponent and round the 13 dropped bits to nearest even.
  const uint32_t normal = (magnitude - (112u << 23) + 0xFFFu + ((magnitude >> 13) & 1u)) >> 13;
  // Subnormal results: adding 0.5 aligns the mantissa so that the float addition rounds.
  const uint32_t subnormal =
      std::bit_cast<uint32_t>(std::bit_cast<float>(magnitude) + 0.5f) - 0x3F000000u;
  const uint32_t overflow = magnitude > 0x7F800000u ? 0x7E00u : 0x7C00u;  // NaN : infinity
  const uint32_t half = magnitude >= 0x47800000u   ? overflow
                        : magnitude < 0x38800000u ? subnormal
                                                  : normal;
  return static_cast<uint16_t>(half | sign);
}

FASTSER_CPU_INLINE float bfloat16_to_float(uint16_t b) {
  return std::bit_cast<float>(static_cast<uint32_t>(b) << 16);
}

FASTSER_CPU_INLINE uint16_t float_to_bfloat16(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  return static_cast<uint16_t>(x != x ? 0x7FC0u : rounded);
}

// A stored T as float32 (float64 stays float64).
template <typename T>
FASTSER_CPU_INLINE auto decode(storage_t<T> x) {
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    return bfloat16_to_float(x);
  } else if constexpr (std::is_same_v<T, c10::Half>) {
    return half_to_float(x);
  } else {
    return x;
  }
}

// A float32 (or float64) value stored as T.
template <typename T, typename A>
FASTSER_CPU_INLINE storage_t<T> encode(A x) {
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    return float_to_bfloat16(x);
  } else if constexpr (std::is_same_v<T, c10::Half>) {
    return float_to_half(x);
  } else {
    return static_cast<T>(x);
  }
}

// y = x, converting the element type (float16/bfloat16 <-> float32, or a plain copy).
template <typename To, typename From>
FASTSER_CPU_INLINE void row_convert(To* __restrict y, const From* __restrict x, int64_t n) {
  storage_t<To>* dst = storage(y);
  const storage_t<From>* src = storage(x);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    dst[i] = encode<To>(decode<From>(src[i]));
  }
}

// Asks for the cache lines of `bytes` bytes at p to be brought into the L2 cache.
FASTSER_CPU_INLINE void prefetch(const void* p, int64_t bytes) {
#if defined(__GNUC__)
  const char* c = static_cast<const char*>(p);
  for (int64_t offset = 0; offset < bytes; offset += 64) {
    __builtin_prefetch(c + offset, 0, 1);
  }
#endif
}

// --- GELU -----------------------------------------------------------------------------------

// exp(x) for x <= 1.  float32: smaller x than -87 is clamped to -87 (NaN stays NaN); x = n ln2
// + r with |r| <= ln2 / 2, exp(r) by its degree-7 Taylor polynomial (error < 1e-8 relative),
// 2^n built in the exponent bits.
FASTSER_CPU_INLINE float exp_bounded(float x) {
  x = x < -87.0f ? -87.0f : x;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float shifted = x * 1.44269504088896341f + kRound;
  const float n = shifted - kRound;
  const int32_t exponent = std::bit_cast<int32_t>(shifted) - std::bit_cast<int32_t>(kRound);
  float r = x - n * 0.693145751953125f;  // ln2 in two parts (Cody-Waite)
  r = r - n * 1.428606765330187045e-6f;
  float poly = 1.0f / 5040.0f;
  poly = poly * r + 1.0f / 720.0f;
  poly = poly * r + 1.0f / 120.0f;
  poly = poly * r + 1.0f / 24.0f;
  poly = poly * r + 1.0f / 6.0f;
  poly = poly * r + 0.5f;
  poly = poly * r + 1.0f;
  poly = poly * r + 1.0f;
  return poly * std::bit_cast<float>((exponent + 127) << 23);
}

FASTSER_CPU_INLINE double exp_bounded(double x) { return std::exp(x); }

// The standard normal CDF Phi(x) = erfc(-x / sqrt 2) / 2, with erfc from its Chebyshev fit
// (Numerical Recipes' erfcc, relative error < 1.2e-7 for every argument), so that the GELU tail
// x * Phi(x) for negative x keeps float32 relative accuracy.
FASTSER_CPU_INLINE float normal_cdf(float x) {
  const float z = std::fabs(x) * 0.70710678118654752440f;
  const float t = 1.0f / (1.0f + 0.5f * z);
  float poly = 0.17087277f;
  poly = poly * t - 0.82215223f;
  poly = poly * t + 1.48851587f;
  poly = poly * t - 1.13520398f;
  poly = poly * t + 0.27886807f;
  poly = poly * t - 0.18628806f;
  poly = poly * t + 0.09678418f;
  poly = poly * t + 0.37409196f;
  poly = poly * t + 1.00002368f;
  const float half_erfc = 0.5f * t * exp_bounded(poly * t - 1.26551223f - z * z);
  return x >= 0.0f ? 1.0f - half_erfc : half_erfc;
}

// Exact (erf) GELU: x * Phi(x); its derivative Phi(x) + x * phi(x).  The float32 versions are
// accurate to a few ulps and vectorise; the float64 ones call the C library.
FASTSER_CPU_INLINE float gelu(float x) { return x * normal_cdf(x); }

FASTSER_CPU_INLINE float gelu_grad(float x) {
  return normal_cdf(x) + x * 0.39894228040143267794f * exp_bounded(-0.5f * x * x);
}

FASTSER_CPU_INLINE double gelu(double x) { return 0.5 * x * std::erfc(-x * 0.70710678118654752440); }

FASTSER_CPU_INLINE double gelu_grad(double x) {
  return 0.5 * std::erfc(-x * 0.70710678118654752440) +
         x * 0.39894228040143267794 * std::exp(-0.5 * x * x);
}

}  // namespace fastser::cpu
