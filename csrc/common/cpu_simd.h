// CPU helpers shared by kernels: function multiversioning and vectorisable reductions.
#pragma once

#include <algorithm>
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

// Independent partial sums per reduction (enough to fill one AVX-512 register of floats), each
// accumulating at most kBlockRows products before it is added into a running total, and a fixed
// summation order: results do not depend on the thread count, and the rounding error grows
// with n / (kLanes · kBlockRows) rather than n / kLanes.
inline constexpr int kLanes = 16;
inline constexpr int kBlockRows = 8;

// Sum of the lanes as a pairwise tree.
template <typename T>
inline T sum_lanes(T* lanes) {
  for (int width = kLanes / 2; width > 0; width /= 2) {
    for (int l = 0; l < width; ++l) {
      lanes[l] += lanes[l + width];
    }
  }
  return lanes[0];
}

// <x, y> over n values.
template <typename T>
inline T dot(const T* x, const T* y, int64_t n) {
  T total[kLanes] = {};
  T lanes[kLanes];
  int64_t k = 0;
  while (k < n) {
    for (int l = 0; l < kLanes; ++l) {
      lanes[l] = 0;
    }
    const int64_t block_end = std::min<int64_t>(n, k + kLanes * kBlockRows);
    for (; k + kLanes <= block_end; k += kLanes) {
      for (int l = 0; l < kLanes; ++l) {
        lanes[l] += x[k + l] * y[k + l];
      }
    }
    if (block_end == n) {  // the tail, one value per lane
      for (int l = 0; k < n; ++k, ++l) {
        lanes[l] += x[k] * y[k];
      }
    }
    for (int l = 0; l < kLanes; ++l) {
      total[l] += lanes[l];
    }
  }
  return sum_lanes(total);
}

}  // namespace fastser::cpu
