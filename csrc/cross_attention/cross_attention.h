// fastser::cross_attention (docs/ops.md): the host-side preparation (argument checks,
// the layouts the kernels read, output allocation) shared by the CPU and CUDA kernels.
//
// Forward outputs: c_tt, c_ta, c_aa, c_at, each (B, H, d) in the input dtype, and
// softmax_stats (2, B, H, 2) in the accumulation dtype: the max score and Σ_{i<n} exp(score_i −
// max) of the text [0] and audio [1] attention, saved so that the backward recomputes exactly
// the forward's weights while reading h once.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace fastser::cross_attention {

// Largest head dimension d the CUDA kernels hold in registers.
inline constexpr int64_t kCudaMaxHeadDim = 1024;

struct Sizes {
  int64_t batch;
  int64_t frames;
  int64_t heads;
  int64_t dim;
};

// The forward's checked inputs in the layouts the kernels read, and its outputs, allocated
// (uninitialised): what the CPU and CUDA forward share.
struct ForwardPrep {
  Sizes sizes;
  at::Tensor h_text, h_audio;         // unit inner stride
  at::Tensor queries;                 // scale·q_text, scale·q_audio (2, H, d), accumulation dtype
  std::optional<at::Tensor> lengths;  // contiguous or absent
  at::Tensor contexts[4];             // c_tt, c_ta, c_aa, c_at: (B, H, d), input dtype
  at::Tensor stats;                   // (2, B, H, 2) softmax max and sum, accumulation dtype

  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> outputs() const {
    return {contexts[0], contexts[1], contexts[2], contexts[3], stats};
  }
};

// Validates the forward arguments (ValueError naming the argument).
ForwardPrep prepare_forward(const at::Tensor& h_text, const at::Tensor& h_audio,
                            const at::Tensor& q_text, const at::Tensor& q_audio,
                            const std::optional<at::Tensor>& lengths, double scale);

// The backward's checked inputs in the layouts the kernels read, and its four outputs,
// allocated (uninitialised) in the input dtype: what the CPU and CUDA backward share.
struct BackwardPrep {
  Sizes sizes;
  at::Tensor h_text, h_audio;                 // unit inner stride
  at::Tensor queries;                         // as in ForwardPrep
  std::optional<at::Tensor> lengths;          // contiguous or absent
  std::optional<at::Tensor> grads[4];         // grad_tt, grad_ta, grad_aa, grad_at
  at::Tensor stats;                           // contiguous softmax_stats
  at::Tensor grad_h_text, grad_h_audio;       // (B, L, H, d)
  at::Tensor grad_q_text, grad_q_audio;       // (H, d)
};

// Validates the backward arguments: the forward ones plus the output gradients (each absent or
// (B, H, d)) and the saved softmax_stats (2, B, H, 2).
BackwardPrep prepare_backward(const std::optional<at::Tensor>& grad_tt,
                              const std::optional<at::Tensor>& grad_ta,
                              const std::optional<at::Tensor>& grad_aa,
                              const std::optional<at::Tensor>& grad_at, const at::Tensor& h_text,
                              const at::Tensor& h_audio, const at::Tensor& q_text,
                              const at::Tensor& q_audio, const std::optional<at::Tensor>& lengths,
                              const at::Tensor& softmax_stats, double scale);

}  // namespace fastser::cross_attention
