#include "common/checks.h"

#include <ATen/ATen.h>

#include <cmath>
#include <sstream>

namespace fastser {

std::string shape_str(const at::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

void check_floating(const at::Tensor& t, const char* op, const char* name) {
  const auto dtype = t.scalar_type();
  FASTSER_CHECK(dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kFloat ||
                    dtype == at::kDouble,
                op, name, " must be float16, bfloat16, float32 or float64, got ", dtype);
}

void check_device_dtype(const at::Tensor& t, const char* op, const char* name) {
  FASTSER_CHECK(t.scalar_type() != at::kDouble || t.device().is_cpu(), op, name,
                " is float64, which is supported on the CPU only; got it on ", t.device());
}

void check_dim(const at::Tensor& t, int64_t dim, const char* op, const char* name,
               const char* layout) {
  FASTSER_CHECK(t.dim() == dim, op, name, " must be ", dim, "-D ", layout, ", got shape ",
                shape_str(t));
}

void check_same_shape(const at::Tensor& t, const at::Tensor& ref, const char* op,
                      const char* name, const char* ref_name) {
  FASTSER_CHECK(t.sizes() == ref.sizes(), op, name, " must have the shape of ", ref_name, " ",
                shape_str(ref), ", got ", shape_str(t));
}

void check_same_device(const at::Tensor& t, const at::Tensor& ref, const char* op,
                       const char* name, const char* ref_name) {
  FASTSER_CHECK(t.device() == ref.device(), op, name, " must be on the device of ", ref_name,
                " (", ref.device(), "), got ", t.device());
}

void check_same_dtype(const at::Tensor& t, const at::Tensor& ref, const char* op,
                      const char* name, const char* ref_name) {
  FASTSER_CHECK(t.scalar_type() == ref.scalar_type(), op, name, " must have the dtype of ",
                ref_name, " (", ref.scalar_type(), "), got ", t.scalar_type());
}

void check_index_vector(const at::Tensor& t, int64_t size, const at::Tensor& like,
                        const char* op, const char* name) {
  FASTSER_CHECK(t.scalar_type() == at::kLong, op, name, " must be int64, got ",
                t.scalar_type());
  FASTSER_CHECK(t.dim() == 1 && t.size(0) == size, op, name, " must have shape (", size,
                "), got ", shape_str(t));
  check_same_device(t, like, op, name, "the data");
}

std::pair<int64_t, int64_t> host_min_max(const at::Tensor& t) {
  auto [lo, hi] = at::aminmax(t);
  const auto both = at::stack({lo, hi}).cpu();
  return {both[0].item<int64_t>(), both[1].item<int64_t>()};
}

void check_lengths(const std::optional<at::Tensor>& lengths, int64_t batch, int64_t max_len,
                   const at::Tensor& like, const char* op) {
  if (!lengths.has_value()) {
    return;
  }
  check_index_vector(*lengths, batch, like, op, "lengths");
  if (batch == 0) {
    return;
  }
  const auto [lo, hi] = host_min_max(*lengths);
  FASTSER_CHECK(lo >= 1 && hi <= max_len, op, "every entry of lengths must be in [1, ", max_len,
                "] (the padded length), got values in [", lo, ", ", hi, "]");
}

void check_finite(double value, const char* op, const char* name) {
  FASTSER_CHECK(std::isfinite(value), op, name, " must be finite, got ", value);
}

}  // namespace fastser
