// Argument validation shared by every op.  Each failed check raises c10::ValueError (a Python
// ValueError) whose message starts with "fastser.<op>: " and names the offending argument, so a
// bad call never reaches a kernel.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>
#include <string>
#include <utility>

#define FASTSER_CHECK(cond, op, ...) TORCH_CHECK_VALUE((cond), "fastser.", (op), ": ", __VA_ARGS__)

namespace fastser {

// t is float16, bfloat16, float32 or float64.
void check_floating(const at::Tensor& t, const char* op, const char* name);

// float64 only on the CPU (it exists for gradcheck); CUDA kernels take the other float dtypes.
void check_device_dtype(const at::Tensor& t, const char* op, const char* name);

// t has `dim` dimensions; `layout` describes them in the message, e.g. "(B, T, H, D)".
void check_dim(const at::Tensor& t, int64_t dim, const char* op, const char* name,
               const char* layout);

// t has exactly ref's shape.
void check_same_shape(const at::Tensor& t, const at::Tensor& ref, const char* op,
                      const char* name, const char* ref_name);

// t lives on ref's device and has ref's dtype.
void check_same_device(const at::Tensor& t, const at::Tensor& ref, const char* op,
                       const char* name, const char* ref_name);
void check_same_dtype(const at::Tensor& t, const at::Tensor& ref, const char* op,
                      const char* name, const char* ref_name);

// t is a 1-D int64 tensor of `size` entries on like's device.
void check_index_vector(const at::Tensor& t, int64_t size, const at::Tensor& like,
                        const char* op, const char* name);

// (min, max) of a non-empty int64 tensor, read on the host (one small copy for CUDA tensors).
std::pair<int64_t, int64_t> host_min_max(const at::Tensor& t);

// Padded-batch lengths: when present, an int64 (batch,) tensor on like's device with every
// entry in [1, max_len].
void check_lengths(const std::optional<at::Tensor>& lengths, int64_t batch, int64_t max_len,
                   const at::Tensor& like, const char* op);

// A scalar argument (scale, temperature, ...) is finite.
void check_finite(double value, const char* op, const char* name);

std::string shape_str(const at::Tensor& t);

}  // namespace fastser
