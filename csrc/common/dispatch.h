// dtype dispatch and accumulation types shared by every kernel.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

// float16, bfloat16, float32 and float64 kernels.
#define FASTSER_DISPATCH_FLOATING_TYPES(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)

// float16, bfloat16 and float32 kernels: the CUDA dtypes (float64 is CPU-only, for gradcheck;
// check_device_dtype rejects it on CUDA first).
#define FASTSER_DISPATCH_CUDA_FLOATING_TYPES(TYPE, NAME, ...)         \
  AT_DISPATCH_SWITCH(TYPE, NAME,                                      \
                     AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__)        \
                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__)         \
                     AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__))

namespace fastser {

// Accumulation type: float32 for float16/bfloat16/float32 inputs, float64 for float64.
template <typename scalar_t>
using acc_t = at::opmath_type<scalar_t>;

}  // namespace fastser
