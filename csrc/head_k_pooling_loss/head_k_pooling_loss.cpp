// Argument checks of head_k_pooling_loss, shared by its CPU and CUDA entry points.
#include "head_k_pooling_loss/head_k_pooling_loss.h"

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common/checks.h"

namespace fastser::head_k_pooling {
namespace {

Reduction parse_reduction(const std::string& reduction, const char* op) {
  if (reduction == "mean") {
    return Reduction::kMean;
  }
  if (reduction == "sum") {
    return Reduction::kSum;
  }
  FASTSER_CHECK(reduction == "none", op, "reduction must be 'mean', 'sum' or 'none', got '",
                reduction, "'");
  return Reduction::kNone;
}

// lengths: a 1-D int64 tensor of B >= 1 segment counts on like's device.
int64_t check_lengths_meta(const at::Tensor& lengths, const at::Tensor& like, const char* op) {
  FASTSER_CHECK(lengths.dim() == 1, op,
                "lengths must be a 1-D (B,) tensor of segment counts, got shape ",
                shape_str(lengths));
  const int64_t batch = lengths.size(0);
  FASTSER_CHECK(batch >= 1, op, "lengths must hold at least one utterance, got shape ",
                shape_str(lengths));
  check_index_vector(lengths, batch, like, op, "lengths");
  return batch;
}

// Value ranges of lengths (and labels when given), read on the host in one copy.
struct ValueRanges {
  int64_t min_length, max_length, total_length, min_label, max_label;
};

ValueRanges value_ranges(const at::Tensor& lengths, const at::Tensor* labels) {
  if (lengths.is_cpu()) {
    const auto counts = lengths.contiguous();
    const int64_t* n = counts.data_ptr<int64_t>();
    ValueRanges r{n[0], n[0], 0, 0, 0};
    for (int64_t b = 0; b < counts.numel(); ++b) {
      r.min_length = std::min(r.min_length, n[b]);
      r.max_length = std::max(r.max_length, n[b]);
      r.total_length += n[b];  // compared only once every entry is known to be in [1, S]
    }
    if (labels != nullptr) {
      const auto classes = labels->contiguous();
      const int64_t* y = classes.data_ptr<int64_t>();
      r.min_label = r.max_label = y[0];
      for (int64_t b = 0; b < classes.numel(); ++b) {
        r.min_label = std::min(r.min_label, y[b]);
        r.max_label = std::max(r.max_label, y[b]);
      }
    }
    return r;
  }
  auto [lo, hi] = at::aminmax(lengths);
  std::vector<at::Tensor> parts{lo, hi, lengths.sum()};
  if (labels != nullptr) {
    auto [label_lo, label_hi] = at::aminmax(*labels);
    parts.push_back(label_lo);
    parts.push_back(label_hi);
  }
  const auto host = at::stack(parts).cpu();
  const int64_t* v = host.data_ptr<int64_t>();
  return {v[0], v[1], v[2], labels != nullptr ? v[3] : 0, labels != nullptr ? v[4] : 0};
}

void check_length_values(const ValueRanges& r, int64_t segments, const char* op) {
  FASTSER_CHECK(r.min_length >= 1, op,
                "every entry of lengths must be >= 1 (an utterance has at least one segment), "
                "got a minimum of ", r.min_length);
  FASTSER_CHECK(r.max_length <= segments && r.total_length == segments, op,
                "lengths must sum to the number of rows of logits (S = ", segments,
                "), got entries in [", r.min_length, ", ", r.max_length, "]",
                r.max_length <= segments ? " summing to " : "",
                r.max_length <= segments ? std::to_string(r.total_length) : std::string());
}

}  // namespace

Config check_forward(const at::Tensor& logits, const at::Tensor& lengths, const at::Tensor& labels,
                     double k, std::optional<int64_t> neutral_class, double negative_weight,
                     const std::string& reduction) {
  check_dim(logits, 2, kOp, "logits", "(S, C): the segments of every utterance back to back");
  check_floating(logits, kOp, "logits");
  check_device_dtype(logits, kOp, "logits");
  const int64_t segments = logits.size(0);
  const int64_t classes = logits.size(1);
  FASTSER_CHECK(classes >= 1, kOp, "logits must have at least one class column, got shape ",
                shape_str(logits));
  const int64_t batch = check_lengths_meta(lengths, logits, kOp);
  check_index_vector(labels, batch, logits, kOp, "labels");
  FASTSER_CHECK(k > 0.0 && k <= 1.0, kOp, "k must be in (0, 1], got ", k);
  if (neutral_class.has_value()) {
    FASTSER_CHECK(*neutral_class >= 0 && *neutral_class < classes, kOp,
                  "neutral_class must be None or in [0, ", classes, ") (C = ", classes,
                  " classes), got ", *neutral_class);
  }
  FASTSER_CHECK(std::isfinite(negative_weight), kOp, "negative_weight must be finite, got ",
                negative_weight);
  const Reduction parsed = parse_reduction(reduction, kOp);

  const ValueRanges r = value_ranges(lengths, &labels);
  check_length_values(r, segments, kOp);
  FASTSER_CHECK(r.min_label >= 0 && r.max_label < classes, kOp,
                "every entry of labels must be in [0, ", classes, ") (C = ", classes,
                " classes), got values in [", r.min_label, ", ", r.max_label, "]");
  return {batch, segments, classes, k, neutral_class.value_or(-1), negative_weight, parsed};
}

Reduction check_backward(const at::Tensor& grad_loss, const at::Tensor& grad_logits,
                         const at::Tensor& lengths, const std::string& reduction) {
  const Reduction parsed = parse_reduction(reduction, kBackwardOp);
  check_dim(grad_logits, 2, kBackwardOp, "grad_logits", "(S, C)");
  check_floating(grad_loss, kBackwardOp, "grad_loss");
  check_device_dtype(grad_loss, kBackwardOp, "grad_loss");
  const auto acc = at::toOpMathType(grad_loss.scalar_type());
  FASTSER_CHECK(grad_logits.scalar_type() == acc, kBackwardOp,
                "grad_logits must have the accumulation dtype of grad_loss (", acc,
                " for ", grad_loss.scalar_type(), "), got ", grad_logits.scalar_type());
  check_same_device(grad_loss, grad_logits, kBackwardOp, "grad_loss", "grad_logits");
  const int64_t batch = check_lengths_meta(lengths, grad_logits, kBackwardOp);
  if (parsed != Reduction::kNone) {
    FASTSER_CHECK(grad_loss.dim() == 0, kBackwardOp, "grad_loss must be a scalar for reduction '",
                  reduction, "', got shape ", shape_str(grad_loss));
    return parsed;
  }
  FASTSER_CHECK(grad_loss.dim() == 1 && grad_loss.size(0) == batch, kBackwardOp,
                "grad_loss must have shape (", batch, ") for reduction 'none', got shape ",
                shape_str(grad_loss));
  check_length_values(value_ranges(lengths, nullptr), grad_logits.size(0), kBackwardOp);
  return parsed;
}

}  // namespace fastser::head_k_pooling
