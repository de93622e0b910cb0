// The single TORCH_LIBRARY block: every fastser schema lives here.  Kernels are registered
// per backend next to their implementation (csrc/<op>/<op>_cpu.cpp, csrc/<op>/<op>_cuda.cu)
// with TORCH_LIBRARY_IMPL; fake kernels, autograd and FLOP formulas in fastser/ops/<op>.py.
#include <torch/library.h>

TORCH_LIBRARY(fastser, m) {
  // cross_attention also returns softmax_lse (2, B, H), the log-sum-exp of both attentions,
  // saved for the one-pass backward; grads of unused outputs may be None.
  m.def("cross_attention(Tensor h_text, Tensor h_audio, Tensor q_text, Tensor q_audio, "
        "Tensor? lengths, float scale) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("cross_attention_backward(Tensor? grad_tt, Tensor? grad_ta, Tensor? grad_aa, "
        "Tensor? grad_at, Tensor h_text, Tensor h_audio, Tensor q_text, Tensor q_audio, "
        "Tensor? lengths, Tensor c_tt, Tensor c_aa, Tensor softmax_lse, float scale) "
        "-> (Tensor, Tensor, Tensor, Tensor)");
}
