// CPU helpers shared by kernels: function multiversioning and vectorisable reductions.
#pragma once

#include <cstdint>

// Compiles a kernel function for AVX-512 and AVX2+FMA machines besides the baseline ISA the
// extension is built for; the loader picks the best version once (GCC target_clones on x86-64
// Linux, nothing elsewhere).  `flatten` inlines the helpers into each version.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FASTSER_CPU_MULTIVERSION \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), flatten))
#else
#define FASTSER_CPU_MULTIVERSION
#endif

namespace fastser::cpu {

// Independent partial sums per reduction: enough to fill one AVX-512 register of floats, and a
// fixed summation order (the result does not depend on the thread count).
inline constexpr int kLanes = 16;

template <typename T>
inline T sum_lanes(const T* lanes) {
  T sum = 0;
  for (int l = 0; l < kLanes; ++l) {
    sum += lanes[l];
  }
  return sum;
}

// <x, y> over n values.
template <typename T>
inline T dot(const T* x, const T* y, int64_t n) {
  T lanes[kLanes] = {};
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      lanes[l] += x[k + l] * y[k + l];
    }
  }
  for (int l = 0; k < n; ++k, ++l) {
    lanes[l] += x[k] * y[k];
  }
  return sum_lanes(lanes);
}

// <x, y1> and <x, y2> in one pass over x.
template <typename T>
inline void dot2(const T* x, const T* y1, const T* y2, int64_t n, T& out1, T& out2) {
  T lanes1[kLanes] = {}, lanes2[kLanes] = {};
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      lanes1[l] += x[k + l] * y1[k + l];
      lanes2[l] += x[k + l] * y2[k + l];
    }
  }
  for (int l = 0; k < n; ++k, ++l) {
    lanes1[l] += x[k] * y1[k];
    lanes2[l] += x[k] * y2[k];
  }
  out1 = sum_lanes(lanes1);
  out2 = sum_lanes(lanes2);
}

}  // namespace fastser::cpu
