// CUDA helpers shared by every kernel: stream, device guard, launch checks, warp reductions.
#pragma once

// Only c10 headers: ATen/cuda/CUDAContext.h pulls in cuBLAS/cuSPARSE headers that a minimal
// CUDA toolkit (nvcc + cudart) does not ship.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace fastser::cuda {

// The stream every fastser kernel launches on.
inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream(); }

template <typename T>
__device__ __forceinline__ T warp_sum(T value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  }
  return value;
}

template <typename T>
__device__ __forceinline__ T warp_max(T value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    value = max(value, __shfl_xor_sync(0xffffffffu, value, offset));
  }
  return value;
}

}  // namespace fastser::cuda

// Call right after every kernel launch.
#define FASTSER_CUDA_LAUNCH_CHECK() C10_CUDA_KERNEL_LAUNCH_CHECK()

// A device-side assertion of an invariant that the host-side checks guarantee (a failure is a
// fastser bug, not bad input).  Compiled into debug builds only (setup.py, FASTSER_DEBUG=1),
// where a failed one stops the kernel and names its condition, file and line.
#if defined(FASTSER_DEBUG)
#define FASTSER_DEVICE_ASSERT(cond) CUDA_KERNEL_ASSERT(cond)
#else
#define FASTSER_DEVICE_ASSERT(cond) ((void)0)
#endif
