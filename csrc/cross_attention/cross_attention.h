// fastser::cross_attention (ARCHITECTURE.md 3.2): argument checks and host-side preparation
// shared by the CPU and CUDA kernels.
//
// Forward outputs: c_tt, c_ta, c_aa, c_at, each (B, H, d) in the input dtype, and
// softmax_stats (2, B, H, 2) in the accumulation dtype: the max score and Σ_{i<n} exp(score_i −
// max) of the text [0] and audio [1] attention, saved so that the backward recomputes exactly
// the forward's weights while reading h once.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace fastser::cross_attention {

inline constexpr const char* kForwardOp = "cross_attention";
inline constexpr const char* kBackwardOp = "cross_attention_backward";

// Largest head dimension d the CUDA kernels hold in registers.
inline constexpr int64_t kCudaMaxHeadDim = 1024;

struct Sizes {
  int64_t batch;
  int64_t frames;
  int64_t heads;
  int64_t dim;
};

// Validates the forward arguments (ValueError naming the argument); returns (B, L, H, d).
Sizes check_forward_args(const at::Tensor& h_text, const at::Tensor& h_audio,
                         const at::Tensor& q_text, const at::Tensor& q_audio,
                         const std::optional<at::Tensor>& lengths, double scale, const char* op);

// Validates the backward arguments: the forward ones plus the output gradients (each absent or
// (B, H, d)) and the saved softmax_stats (2, B, H, 2).
Sizes check_backward_args(const std::optional<at::Tensor>& grad_tt,
                          const std::optional<at::Tensor>& grad_ta,
                          const std::optional<at::Tensor>& grad_aa,
                          const std::optional<at::Tensor>& grad_at, const at::Tensor& h_text,
                          const at::Tensor& h_audio, const at::Tensor& q_text,
                          const at::Tensor& q_audio, const std::optional<at::Tensor>& lengths,
                          const at::Tensor& softmax_stats, double scale);

// The accumulation dtype: float64 for float64 inputs, float32 otherwise.
at::ScalarType accumulation_dtype(at::ScalarType input);

// t itself when its last dimension has unit stride (kernels take the other strides), else a
// contiguous copy.
at::Tensor unit_inner_stride(const at::Tensor& t);

// scale·q_text and scale·q_audio stacked into one contiguous (2, H, d) tensor of the
// accumulation dtype.  A score is then a plain dot product, computed and rounded identically in
// the forward and the backward (no multiply for the compiler to fuse into the next subtraction),
// so the backward's weights are exactly the forward's.
at::Tensor scaled_queries(const at::Tensor& q_text, const at::Tensor& q_audio, double scale);

// A present (B, H, d) tensor made contiguous; an absent one stays absent.
std::optional<at::Tensor> contiguous_or_absent(const std::optional<at::Tensor>& t);

// The forward's checked inputs in the layouts the kernels read, and its outputs, allocated
// (uninitialised): what the CPU and CUDA forward share.
struct ForwardPrep {
  Sizes sizes;
  at::Tensor h_text, h_audio;         // unit inner stride
  at::Tensor queries;                 // scaled_queries (2, H, d)
  std::optional<at::Tensor> lengths;  // contiguous or absent
  at::Tensor contexts[4];             // c_tt, c_ta, c_aa, c_at: (B, H, d), input dtype
  at::Tensor stats;                   // (2, B, H, 2) softmax max and sum, accumulation dtype

  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> outputs() const {
    return {contexts[0], contexts[1], contexts[2], contexts[3], stats};
  }
};
ForwardPrep prepare_forward(const at::Tensor& h_text, const at::Tensor& h_audio,
                            const at::Tensor& q_text, const at::Tensor& q_audio,
                            const std::optional<at::Tensor>& lengths, double scale);

// The backward's checked inputs in the layouts the kernels read, and its four outputs,
// allocated (uninitialised) in the input dtype: what the CPU and CUDA backward share.
struct BackwardPrep {
  Sizes sizes;
  at::Tensor h_text, h_audio;                 // unit inner stride
  at::Tensor queries;                         // scaled_queries (2, H, d)
  std::optional<at::Tensor> lengths;          // contiguous or absent
  std::optional<at::Tensor> grads[4];         // grad_tt, grad_ta, grad_aa, grad_at
  at::Tensor stats;                           // contiguous softmax_stats
  at::Tensor grad_h_text, grad_h_audio;       // (B, L, H, d)
  at::Tensor grad_q_text, grad_q_audio;       // (H, d)
};
BackwardPrep prepare_backward(const std::optional<at::Tensor>& grad_tt,
                              const std::optional<at::Tensor>& grad_ta,
                              const std::optional<at::Tensor>& grad_aa,
                              const std::optional<at::Tensor>& grad_at, const at::Tensor& h_text,
                              const at::Tensor& h_audio, const at::Tensor& q_text,
                              const at::Tensor& q_audio, const std::optional<at::Tensor>& lengths,
                              const at::Tensor& softmax_stats, double scale);

}  // namespace fastser::cross_attention
