// Scalar maths shared by CPU and CUDA kernels.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define FASTSER_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FASTSER_HOST_DEVICE inline
#endif

namespace fastser {

// Exact (erf) GELU and its derivative.
template <typename T>
FASTSER_HOST_DEVICE T gelu_erf(T x) {
  return T(0.5) * x * (T(1) + erf(x * T(0.70710678118654752440)));
}

template <typename T>
FASTSER_HOST_DEVICE T gelu_erf_grad(T x) {
  const T cdf = T(0.5) * (T(1) + erf(x * T(0.70710678118654752440)));
  const T pdf = exp(T(-0.5) * x * x) * T(0.39894228040143267794);
  return cdf + x * pdf;
}

FASTSER_HOST_DEVICE int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace fastser
