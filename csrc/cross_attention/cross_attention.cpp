#include "cross_attention/cross_attention.h"

#include "common/checks.h"

#include <ATen/ATen.h>

namespace fastser::cross_attention {

namespace {

constexpr const char* kForwardOp = "cross_attention";
constexpr const char* kBackwardOp = "cross_attention_backward";

// The accumulation dtype: float64 for float64 inputs, float32 otherwise.
at::ScalarType accumulation_dtype(at::ScalarType input) {
  return input == at::kDouble ? at::kDouble : at::kFloat;
}

// t itself when its last dimension has unit stride (kernels take the other strides), else a
// contiguous copy.
at::Tensor unit_inner_stride(const at::Tensor& t) {
  return t.size(-1) <= 1 || t.stride(-1) == 1 ? t : t.contiguous();
}

// scale·q_text and scale·q_audio stacked into one contiguous (2, H, d) tensor of the
// accumulation dtype.  A score is then a plain dot product, computed and rounded identically in
// the forward and the backward (no multiply for the compiler to fuse into the next subtraction),
// so the backward's weights are exactly the forward's.
at::Tensor scaled_queries(const at::Tensor& q_text, const at::Tensor& q_audio, double scale) {
  return at::stack({q_text, q_audio}).to(accumulation_dtype(q_text.scalar_type())).mul_(scale);
}

// A present (B, H, d) tensor made contiguous; an absent one stays absent.
std::optional<at::Tensor> contiguous_or_absent(const std::optional<at::Tensor>& t) {
  return t ? std::optional<at::Tensor>(t->contiguous()) : std::nullopt;
}

// Validates the forward arguments (ValueError naming the argument and the op); returns
// (B, L, H, d).
Sizes check_forward_args(const at::Tensor& h_text, const at::Tensor& h_audio,
                         const at::Tensor& q_text, const at::Tensor& q_audio,
                         const std::optional<at::Tensor>& lengths, double scale, const char* op) {
  check_floating(h_text, op, "h_text");
  check_floating(h_audio, op, "h_audio");
  check_floating(q_text, op, "q_text");
  check_floating(q_audio, op, "q_audio");
  check_dim(h_text, 4, op, "h_text", "(B, L, H, d)");
  check_dim(h_audio, 4, op, "h_audio", "(B, L, H, d)");
  check_dim(q_text, 2, op, "q_text", "(H, d)");
  check_dim(q_audio, 2, op, "q_audio", "(H, d)");
  check_same_shape(h_audio, h_text, op, "h_audio", "h_text");
  const Sizes sizes{h_text.size(0), h_text.size(1), h_text.size(2), h_text.size(3)};
  for (const auto& [q, name] : {std::pair{&q_text, "q_text"}, std::pair{&q_audio, "q_audio"}}) {
    FASTSER_CHECK(q->size(0) == sizes.heads && q->size(1) == sizes.dim, op, name,
                  " must have shape (H, d) = (", sizes.heads, ", ", sizes.dim,
                  ") to match h_text ", shape_str(h_text), ", got ", shape_str(*q));
  }
  check_same_device(h_audio, h_text, op, "h_audio", "h_text");
  check_same_device(q_text, h_text, op, "q_text", "h_text");
  check_same_device(q_audio, h_text, op, "q_audio", "h_text");
  check_same_dtype(h_audio, h_text, op, "h_audio", "h_text");
  check_same_dtype(q_text, h_text, op, "q_text", "h_text");
  check_same_dtype(q_audio, h_text, op, "q_audio", "h_text");
  check_device_dtype(h_text, op, "h_text");
  FASTSER_CHECK(sizes.frames >= 1, op, "h_text must have at least one frame (L >= 1), got shape ",
                shape_str(h_text));
  if (h_text.is_cuda()) {
    FASTSER_CHECK(sizes.dim <= kCudaMaxHeadDim, op,
                  "the head dimension d of h_text must be at most ", kCudaMaxHeadDim,
                  " on CUDA, got ", sizes.dim);
  }
  check_finite(scale, op, "scale");
  check_lengths(lengths, sizes.batch, sizes.frames, h_text, op);
  return sizes;
}

// The backward's own arguments, after check_forward_args gave their sizes: the output gradients
// grad_tt, grad_ta, grad_aa, grad_at (each absent or (B, H, d)) and the saved softmax_stats
// (2, B, H, 2).
void check_backward_extras(const Sizes& sizes, const std::optional<at::Tensor>* const grads[4],
                           const at::Tensor& h_text, const at::Tensor& softmax_stats) {
  const char* op = kBackwardOp;
  const std::vector<int64_t> context_shape{sizes.batch, sizes.heads, sizes.dim};
  const char* names[4] = {"grad_tt", "grad_ta", "grad_aa", "grad_at"};
  for (int i = 0; i < 4; ++i) {
    if (!grads[i]->has_value()) {
      continue;
    }
    const char* name = names[i];
    const at::Tensor* t = &grads[i]->value();
    FASTSER_CHECK(t->sizes() == at::IntArrayRef(context_shape), op, name,
                  " must have shape (B, H, d) = ", at::IntArrayRef(context_shape), ", got ",
                  shape_str(*t));
    check_same_device(*t, h_text, op, name, "h_text");
    check_same_dtype(*t, h_text, op, name, "h_text");
  }
  const std::vector<int64_t> stats_shape{2, sizes.batch, sizes.heads, 2};
  FASTSER_CHECK(softmax_stats.sizes() == at::IntArrayRef(stats_shape), op,
                "softmax_stats must have shape (2, B, H, 2) = ", at::IntArrayRef(stats_shape),
                ", got ", shape_str(softmax_stats));
  check_same_device(softmax_stats, h_text, op, "softmax_stats", "h_text");
  const auto stats_dtype = accumulation_dtype(h_text.scalar_type());
  FASTSER_CHECK(softmax_stats.scalar_type() == stats_dtype, op, "softmax_stats must be ",
                stats_dtype, " for ", h_text.scalar_type(), " inputs, got ",
                softmax_stats.scalar_type());
}

}  // namespace

ForwardPrep prepare_forward(const at::Tensor& h_text, const at::Tensor& h_audio,
                            const at::Tensor& q_text, const at::Tensor& q_audio,
                            const std::optional<at::Tensor>& lengths, double scale) {
  const Sizes s = check_forward_args(h_text, h_audio, q_text, q_audio, lengths, scale, kForwardOp);
  ForwardPrep p{s, unit_inner_stride(h_text), unit_inner_stride(h_audio),
                scaled_queries(q_text, q_audio, scale), contiguous_or_absent(lengths)};
  for (auto& c : p.contexts) {
    c = at::empty({s.batch, s.heads, s.dim}, h_text.options());
  }
  p.stats = at::empty({2, s.batch, s.heads, 2},
                      h_text.options().dtype(accumulation_dtype(h_text.scalar_type())));
  return p;
}

BackwardPrep prepare_backward(const std::optional<at::Tensor>& grad_tt,
                              const std::optional<at::Tensor>& grad_ta,
                              const std::optional<at::Tensor>& grad_aa,
                              const std::optional<at::Tensor>& grad_at, const at::Tensor& h_text,
                              const at::Tensor& h_audio, const at::Tensor& q_text,
                              const at::Tensor& q_audio, const std::optional<at::Tensor>& lengths,
                              const at::Tensor& softmax_stats, double scale) {
  const Sizes s = check_forward_args(h_text, h_audio, q_text, q_audio, lengths, scale, kBackwardOp);
  const std::optional<at::Tensor>* const grads[4] = {&grad_tt, &grad_ta, &grad_aa, &grad_at};
  check_backward_extras(s, grads, h_text, softmax_stats);
  const at::Tensor text = unit_inner_stride(h_text);
  return BackwardPrep{s,
                      text,
                      unit_inner_stride(h_audio),
                      scaled_queries(q_text, q_audio, scale),
                      contiguous_or_absent(lengths),
                      {contiguous_or_absent(grad_tt), contiguous_or_absent(grad_ta),
                       contiguous_or_absent(grad_aa), contiguous_or_absent(grad_at)},
                      softmax_stats.contiguous(),
                      at::empty(text.sizes(), text.options()),
                      at::empty(text.sizes(), text.options()),
                      at::empty({s.heads, s.dim}, text.options()),
                      at::empty({s.heads, s.dim}, text.options())};
}

}  // namespace fastser::cross_attention
