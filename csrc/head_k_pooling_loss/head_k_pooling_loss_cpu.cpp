// CPU kernels of head_k_pooling_loss: at::parallel_for over utterances; each utterance finds
// its selection threshold by a quickselect on packed (order key, index) ranks, marks what
// each of its logits contributes, then computes its BCE terms and gradients four at a time.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "common/dispatch.h"
#include "head_k_pooling_loss/bce_vec_cpu.h"
#include "head_k_pooling_loss/head_k_pooling_loss.h"

namespace fastser::head_k_pooling {
namespace {

// Row where each utterance starts: exclusive prefix sums of the (validated) lengths.
std::vector<int64_t> row_offsets(const int64_t* lengths, int64_t batch) {
  std::vector<int64_t> offsets(batch);
  int64_t row = 0;
  for (int64_t b = 0; b < batch; ++b) {
    offsets[b] = row;
    row += lengths[b];
  }
  return offsets;
}

// Utterances per parallel_for task: about 16K logits each.
int64_t utterance_grain(int64_t elements, int64_t batch) {
  const int64_t per_utterance = std::max<int64_t>(1, elements / std::max<int64_t>(1, batch));
  return std::max<int64_t>(1, 16384 / per_utterance);
}

// The kth largest (0-based) of the n distinct values in v, which it reorders: quickselect with
// median-of-three pivots and branch-free Lomuto partitions (std::nth_element's branches
// mispredict on every other element), handing over to std::nth_element after 2 log2(n) + 4
// rounds so that no input takes quadratic time.
template <typename Rank>
Rank kth_largest(Rank* v, int64_t n, int64_t kth) {
  int64_t lo = 0;
  int64_t hi = n;  // the answer lies in v[lo, hi)
  int rounds_left = 4;
  for (int64_t m = n; m > 1; m >>= 1) rounds_left += 2;
  while (hi - lo > 1) {
    if (rounds_left-- == 0) {
      std::nth_element(v + lo, v + kth, v + hi, std::greater<>());
      return v[kth];
    }
    const int64_t mid = lo + (hi - lo) / 2;
    if (v[mid] < v[lo]) std::swap(v[mid], v[lo]);
    if (v[hi - 1] < v[lo]) std::swap(v[hi - 1], v[lo]);
    if (v[mid] < v[hi - 1]) std::swap(v[mid], v[hi - 1]);  // v[hi - 1]: median of the three
    const Rank pivot = v[hi - 1];
    int64_t store = lo;
    for (int64_t i = lo; i < hi - 1; ++i) {
      const Rank x = v[i];
      v[i] = v[store];
      v[store] = x;
      store += x > pivot ? 1 : 0;
    }
    v[hi - 1] = v[store];
    v[store] = pivot;  // v[lo, store) > pivot > v(store, hi)
    if (kth == store) return pivot;
    if (kth < store) {
      hi = store;
    } else {
      lo = store + 1;
    }
  }
  return v[lo];
}

// What a logit contributes to its utterance's loss.
constexpr int32_t kUnused = 0;
constexpr int32_t kPositive = 1;        // selected segment, target 0
constexpr int32_t kPositiveTarget = 2;  // selected segment, label class (target 1)
constexpr int32_t kNegative = 3;        // unselected segment, eligible negative class

template <typename T>
struct TermSums {
  T positive;
  T negative;
};

// Sums the BCE terms of `count` logits by kind and, when grad is not null, writes their
// gradients: positive_grad or negative_grad times d BCE / dz, 0 for unused logits.
TermSums<float> accumulate_terms(const float* z, const int32_t* kind, int64_t count,
                                 float positive_grad, float negative_grad, float* grad) {
  vec::Float4 positive{};
  vec::Float4 negative{};
  const auto block = [&](vec::Float4 values, vec::Int4 k) {
    const vec::Int4 is_target = k == kPositiveTarget;
    const vec::Int4 is_positive = (k == kPositive) | is_target;
    const vec::Int4 is_negative = k == kNegative;
    const vec::Bce4 term = vec::bce_with_logits(values, is_target);
    positive += vec::select(is_positive, term.loss, vec::Float4{});
    negative += vec::select(is_negative, term.loss, vec::Float4{});
    return vec::select(is_positive, term.grad * positive_grad,
                       vec::select(is_negative, term.grad * negative_grad, vec::Float4{}));
  };
  int64_t j = 0;
  for (; j + vec::kWidth <= count; j += vec::kWidth) {
    const vec::Float4 g = block(vec::load(z + j), vec::load(kind + j));
    if (grad != nullptr) vec::store(grad + j, g);
  }
  if (j < count) {  // the last, partial block through zero-padded copies (kind kUnused)
    float values[vec::kWidth] = {};
    int32_t kinds[vec::kWidth] = {};
    float grads[vec::kWidth];
    std::copy(z + j, z + count, values);
    std::copy(kind + j, kind + count, kinds);
    vec::store(grads, block(vec::load(values), vec::load(kinds)));
    if (grad != nullptr) std::copy(grads, grads + (count - j), grad + j);
  }
  return {vec::horizontal_sum(positive), vec::horizontal_sum(negative)};
}

// float64 (gradcheck) version, one logit at a time.
TermSums<double> accumulate_terms(const double* z, const int32_t* kind, int64_t count,
                                  double positive_grad, double negative_grad, double* grad) {
  TermSums<double> sums{0.0, 0.0};
  for (int64_t j = 0; j < count; ++j) {
    const auto term = bce_with_logits(z[j], kind[j] == kPositiveTarget);
    double g = 0.0;
    if (kind[j] == kPositive || kind[j] == kPositiveTarget) {
      sums.positive += term.loss;
      g = positive_grad * term.grad;
    } else if (kind[j] == kNegative) {
      sums.negative += term.loss;
      g = negative_grad * term.grad;
    }
    if (grad != nullptr) grad[j] = g;
  }
  return sums;
}

template <typename scalar_t>
class UtteranceLoss {
 public:
  using acc = acc_t<scalar_t>;
  using Key = typename OrderKey<acc>::type;

  UtteranceLoss(const Config& cfg, const scalar_t* logits, acc* grad)
      : cfg_(cfg), logits_(logits), grad_(grad),
        grad_scale_(cfg.reduction == Reduction::kMean ? acc(1) / acc(cfg.batch) : acc(1)) {}

  // Loss of the utterance of n segments starting at row `start`; writes its gradient rows.
  acc operator()(int64_t start, int64_t n, int64_t label) {
    const int64_t classes = cfg_.classes;
    const int64_t count = n * classes;
    const scalar_t* z = logits_ + start * classes;
    const int64_t top = num_selected(n, cfg_.k);
    const int64_t rest = n - top;
    const int64_t negatives = num_negative_classes(classes, label, cfg_.neutral_class);
    const bool has_negative_term = rest > 0 && negatives > 0;
    const acc positive_count = acc(top * classes);
    const acc negative_count = acc(has_negative_term ? rest * negatives : 1);
    const acc weight = acc(cfg_.negative_weight);

    // The kinds of a selected row, then of an unselected one; then of every row.
    row_kinds_.resize(2 * classes);
    for (int64_t c = 0; c < classes; ++c) {
      row_kinds_[c] = c == label ? kPositiveTarget : kPositive;
      row_kinds_[classes + c] =
          is_negative_class(c, label, cfg_.neutral_class) ? kNegative : kUnused;
    }
    kinds_.resize(count);
    const Threshold<Key> threshold = select(z, n, label, top);
    for (int64_t s = 0; s < n; ++s) {
      const bool selected = threshold.selects(order_key(acc(z[s * classes + label])), s);
      const int32_t* row = row_kinds_.data() + (selected ? 0 : classes);
      std::copy(row, row + classes, kinds_.data() + s * classes);
    }
    const auto sums = accumulate_terms(
        as_acc(z, count), kinds_.data(), count, grad_scale_ / positive_count,
        grad_scale_ * weight / negative_count,
        grad_ == nullptr ? nullptr : grad_ + start * classes);
    const acc negative_term = has_negative_term ? sums.negative / negative_count : acc(0);
    return sums.positive / positive_count + weight * negative_term;
  }

 private:
  // The top-th segment in (logit of the label class desc, index asc) order.
  Threshold<Key> select(const scalar_t* z, int64_t n, int64_t label, int64_t top) {
    if (top == n) {
      return Threshold<Key>::all();
    }
    const auto key_at = [&](int64_t s) { return order_key(acc(z[s * cfg_.classes + label])); };
    if constexpr (sizeof(Key) == 4) {
      if (n <= int64_t(UINT32_MAX)) {
        return nth_in_order(n, top, key_at, narrow_ranks_);
      }
    }
    return nth_in_order(n, top, key_at, wide_ranks_);
  }

  // Selection on ranks that pack each segment's key above the complement of its index (a
  // larger rank comes earlier); Rank holds the key bits and n indices.
  template <typename Rank, typename KeyAt>
  static Threshold<Key> nth_in_order(int64_t n, int64_t top, const KeyAt& key_at,
                                     std::vector<Rank>& ranks) {
    constexpr int kIndexBits = 8 * int(sizeof(Rank) - sizeof(Key));
    constexpr Rank kIndexMask = (Rank(1) << kIndexBits) - 1;
    ranks.resize(n);
    for (int64_t s = 0; s < n; ++s) {
      ranks[s] = (Rank(key_at(s)) << kIndexBits) | (kIndexMask - Rank(s));
    }
    const Rank kth = kth_largest(ranks.data(), n, top - 1);
    return {Key(kth >> kIndexBits), int64_t(kIndexMask - (kth & kIndexMask))};
  }

  // The utterance's logits in the accumulation type (float16/bfloat16 converted to scratch).
  const acc* as_acc(const scalar_t* z, int64_t count) {
    if constexpr (std::is_same_v<scalar_t, acc>) {
      return z;
    } else {
      values_.resize(count);
      std::transform(z, z + count, values_.begin(), [](scalar_t v) { return acc(v); });
      return values_.data();
    }
  }

  const Config& cfg_;
  const scalar_t* logits_;
  acc* grad_;
  acc grad_scale_;
  // Scratch, reused across the utterances of one task.
  std::vector<uint64_t> narrow_ranks_;  // float keys, n < 2^32
  std::vector<unsigned __int128> wide_ranks_;
  std::vector<int32_t> row_kinds_;
  std::vector<int32_t> kinds_;
  std::vector<acc> values_;
};

// (B,) per-utterance losses -> the reduced loss in `dtype` (sums in float64, in index order).
at::Tensor reduce_losses(const at::Tensor& losses, Reduction reduction, at::ScalarType dtype) {
  if (reduction == Reduction::kNone) {
    return losses.to(dtype);
  }
  const auto as_double = losses.to(at::kDouble);
  const double* values = as_double.data_ptr<double>();
  double total = 0.0;
  for (int64_t b = 0; b < losses.numel(); ++b) {
    total += values[b];
  }
  if (reduction == Reduction::kMean) {
    total /= static_cast<double>(losses.numel());
  }
  return at::full({}, total, losses.options().dtype(dtype));
}

std::tuple<at::Tensor, at::Tensor> head_k_pooling_loss_cpu(
    const at::Tensor& logits_in, const at::Tensor& lengths_in, const at::Tensor& labels_in,
    double k, std::optional<int64_t> neutral_class, double negative_weight,
    c10::string_view reduction, bool compute_grad) {
  const Config cfg = check_forward(logits_in, lengths_in, labels_in, k, neutral_class,
                                   negative_weight, std::string(reduction));
  const auto logits = logits_in.contiguous();
  const auto lengths = lengths_in.contiguous();
  const auto labels = labels_in.contiguous();
  const auto acc_options = logits.options().dtype(at::toOpMathType(logits.scalar_type()));
  auto losses = at::empty({cfg.batch}, acc_options);
  auto grad = compute_grad ? at::empty({cfg.segments, cfg.classes}, acc_options)
                           : at::empty({0}, acc_options);

  FASTSER_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "head_k_pooling_loss_cpu", [&] {
    using acc = acc_t<scalar_t>;
    const scalar_t* z = logits.const_data_ptr<scalar_t>();
    const int64_t* n = lengths.const_data_ptr<int64_t>();
    const int64_t* y = labels.const_data_ptr<int64_t>();
    acc* out = losses.mutable_data_ptr<acc>();
    acc* g = compute_grad ? grad.mutable_data_ptr<acc>() : nullptr;
    const auto offsets = row_offsets(n, cfg.batch);
    at::parallel_for(0, cfg.batch, utterance_grain(logits.numel(), cfg.batch),
                     [&](int64_t begin, int64_t end) {
                       UtteranceLoss<scalar_t> utterance_loss(cfg, z, g);
                       for (int64_t b = begin; b < end; ++b) {
                         out[b] = utterance_loss(offsets[b], n[b], y[b]);
                       }
                     });
  });
  return {reduce_losses(losses, cfg.reduction, logits.scalar_type()), grad};
}

at::Tensor head_k_pooling_loss_backward_cpu(const at::Tensor& grad_loss_in,
                                            const at::Tensor& grad_logits_in,
                                            const at::Tensor& lengths_in,
                                            c10::string_view reduction) {
  const Reduction parsed =
      check_backward(grad_loss_in, grad_logits_in, lengths_in, std::string(reduction));
  const auto grad_loss = grad_loss_in.contiguous();
  const auto grad_logits = grad_logits_in.contiguous();
  auto out = at::empty(grad_logits.sizes(), grad_logits.options().dtype(grad_loss.scalar_type()));
  const int64_t classes = grad_logits.size(1);

  const auto dtype = grad_loss.scalar_type();
  FASTSER_DISPATCH_FLOATING_TYPES(dtype, "head_k_pooling_loss_backward_cpu", [&] {
    using acc = acc_t<scalar_t>;
    const scalar_t* upstream = grad_loss.const_data_ptr<scalar_t>();
    const acc* g = grad_logits.const_data_ptr<acc>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    if (parsed != Reduction::kNone) {
      const acc scale = acc(upstream[0]);
      at::parallel_for(0, out.numel(), 32768, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) o[i] = scalar_t(g[i] * scale);
      });
      return;
    }
    const auto lengths = lengths_in.contiguous();
    const int64_t* n = lengths.const_data_ptr<int64_t>();
    const int64_t batch = lengths.numel();
    const auto offsets = row_offsets(n, batch);
    const int64_t grain = utterance_grain(out.numel(), batch);
    at::parallel_for(0, batch, grain, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const acc scale = acc(upstream[b]);
        const int64_t first = offsets[b] * classes;
        const int64_t last = first + n[b] * classes;
        for (int64_t i = first; i < last; ++i) o[i] = scalar_t(g[i] * scale);
      }
    });
  });
  return out;
}

}  // namespace
}  // namespace fastser::head_k_pooling

TORCH_LIBRARY_IMPL(fastser, CPU, m) {
  m.impl("head_k_pooling_loss", &fastser::head_k_pooling::head_k_pooling_loss_cpu);
  m.impl("head_k_pooling_loss_backward",
         &fastser::head_k_pooling::head_k_pooling_loss_backward_cpu);
}
