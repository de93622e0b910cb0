// head_k_pooling_loss (docs/ops.md): the argument checks shared by the CPU and CUDA
// entry points, and the per-utterance maths shared by their kernels.
//
// For an utterance of N segments with label i, the K = min(N, max(1, ceil(k N - 1e-6))) segments
// with the largest logit for class i are selected (ties: lower segment index first; NaN counts
// as larger than +inf, as in torch.sort).  Both kernels select through a threshold: the K-th
// segment in that order, (key, index), with selected(s) <=> (key_s, s) comes no later.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

#include "common/math.h"

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#endif

namespace fastser::head_k_pooling {

inline constexpr const char* kOp = "head_k_pooling_loss";
inline constexpr const char* kBackwardOp = "head_k_pooling_loss_backward";

enum class Reduction : int { kMean, kSum, kNone };

// Everything the kernels need besides the data, after validation.
struct Config {
  int64_t batch;          // B utterances
  int64_t segments;       // S rows of logits
  int64_t classes;        // C columns of logits
  double k;               // fraction of segments selected, in (0, 1]
  int64_t neutral_class;  // -1 when there is none
  double negative_weight;
  Reduction reduction;
};

// Validates every forward argument, including the values of lengths and labels (one small
// device-to-host copy for CUDA tensors).  Raises ValueError "fastser.head_k_pooling_loss: ...".
Config check_forward(const at::Tensor& logits, const at::Tensor& lengths, const at::Tensor& labels,
                     double k, std::optional<int64_t> neutral_class, double negative_weight,
                     const std::string& reduction);

// Validates the backward arguments (lengths' values only for reduction "none", the only case
// that reads them); returns the reduction.
Reduction check_backward(const at::Tensor& grad_loss, const at::Tensor& grad_logits,
                         const at::Tensor& lengths, const std::string& reduction);

// --- maths shared by the CPU and CUDA kernels ---------------------------------------------

// K = min(N, max(1, ceil(k N - 1e-6))), rounded exactly as in Python (no fused multiply-add).
FASTSER_HOST_DEVICE int64_t num_selected(int64_t n, double k) {
#if defined(__CUDA_ARCH__)
  const double scaled = __dsub_rn(__dmul_rn(k, static_cast<double>(n)), 1e-6);
#else
  const double scaled = k * static_cast<double>(n) - 1e-6;
#endif
  const int64_t top = static_cast<int64_t>(ceil(scaled));
  return top < 1 ? 1 : (top > n ? n : top);
}

// Whether class c is an eligible negative class of an utterance labelled `label`.
FASTSER_HOST_DEVICE bool is_negative_class(int64_t c, int64_t label, int64_t neutral_class) {
  return c != label && !(neutral_class >= 0 && label != neutral_class && c == neutral_class);
}

// |E|: the number of eligible negative classes.
FASTSER_HOST_DEVICE int64_t num_negative_classes(int64_t classes, int64_t label,
                                                 int64_t neutral_class) {
  const bool drops_neutral = neutral_class >= 0 && label != neutral_class;
  return classes - 1 - (drops_neutral ? 1 : 0);
}

// Unsigned keys that order like the floating values: -0 == +0, every NaN above +inf.
template <typename T>
struct OrderKey;
template <>
struct OrderKey<float> {
  using type = uint32_t;
};
template <>
struct OrderKey<double> {
  using type = uint64_t;
};

template <typename T>
FASTSER_HOST_DEVICE typename OrderKey<T>::type order_key(T x) {
  using Key = typename OrderKey<T>::type;
  constexpr Key sign = Key(1) << (8 * sizeof(Key) - 1);
  if (x != x) {
    return ~Key(0);
  }
  if (x == T(0)) {
    x = T(0);  // -0 -> +0
  }
  Key bits;
  memcpy(&bits, &x, sizeof(Key));
  return (bits & sign) ? ~bits : (bits | sign);
}

// The K-th segment in selection order; a segment is selected when it comes no later.
template <typename Key>
struct Threshold {
  Key key;
  int64_t index;

  // Every segment: key 0 belongs to no value (order_key never returns it).
  FASTSER_HOST_DEVICE static Threshold all() { return {Key(0), 0}; }

  FASTSER_HOST_DEVICE bool selects(Key key_s, int64_t s) const {
    return key_s > key || (key_s == key && s <= index);
  }
};

FASTSER_HOST_DEVICE float exp_(float x) { return expf(x); }
FASTSER_HOST_DEVICE double exp_(double x) { return exp(x); }
FASTSER_HOST_DEVICE float log1p_(float x) { return log1pf(x); }
FASTSER_HOST_DEVICE double log1p_(double x) { return log1p(x); }

template <typename T>
struct BceTerm {
  T loss;
  T grad;  // d loss / d z = sigmoid(z) - target
};

// BCEWithLogits(z, target) for a 0/1 target in the stable form softplus(+-z) =
// max(+-z, 0) + log1p(exp(-|z|)), with its derivative.  Infinite z gives the limits
// (e.g. BCE(+inf, 1) = 0, BCE(+inf, 0) = +inf); NaN gives NaN for both.
template <typename T>
FASTSER_HOST_DEVICE BceTerm<T> bce_with_logits(T z, bool target) {
  const bool non_negative = z >= T(0);  // false for NaN
  const T e = exp_(non_negative ? -z : z);
  const T r = T(1) / (T(1) + e);
  const T softplus_tail = log1p_(e);
  if (target) {
    return {(non_negative ? T(0) : -z) + softplus_tail, -(non_negative ? e * r : r)};
  }
  return {(non_negative ? z : T(0)) + softplus_tail, non_negative ? r : e * r};
}

}  // namespace fastser::head_k_pooling
