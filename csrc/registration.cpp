// The single TORCH_LIBRARY block: every fastser schema lives here.  Kernels are registered
// per backend next to their implementation (csrc/<op>/<op>_cpu.cpp, csrc/<op>/<op>_cuda.cu)
// with TORCH_LIBRARY_IMPL; fake kernels, autograd and FLOP formulas in fastser/ops/<op>.py.
#include <torch/library.h>

TORCH_LIBRARY(fastser, m) {
  // cross_attention also returns softmax_stats (2, B, H, 2), each attention's max score and
  // Σ exp(score - max), saved for the backward; grads of unused outputs may be None.
  m.def("cross_attention(Tensor h_text, Tensor h_audio, Tensor q_text, Tensor q_audio, "
        "Tensor? lengths, float scale) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("cross_attention_backward(Tensor? grad_tt, Tensor? grad_ta, Tensor? grad_aa, "
        "Tensor? grad_at, Tensor h_text, Tensor h_audio, Tensor q_text, Tensor q_audio, "
        "Tensor? lengths, Tensor softmax_stats, float scale) "
        "-> (Tensor, Tensor, Tensor, Tensor)");
  // head_k_pooling_loss: (loss, d loss / d logits before the upstream gradient, or an empty
  // tensor when compute_grad is false); the backward scales that gradient by grad_loss.
  m.def("head_k_pooling_loss(Tensor logits, Tensor lengths, Tensor labels, float k, "
        "int? neutral_class, float negative_weight, str reduction, bool compute_grad) "
        "-> (Tensor, Tensor)");
  m.def("head_k_pooling_loss_backward(Tensor grad_loss, Tensor grad_logits, Tensor lengths, "
        "str reduction) -> Tensor");
  m.def("fractal_attention(Tensor q, Tensor k, Tensor v, Tensor? lengths, int p, int levels, "
        "float? scale) -> Tensor");
  m.def("fractal_attention_backward(Tensor grad_out, Tensor q, Tensor k, Tensor v, "
        "Tensor? lengths, int p, int levels, float? scale) -> (Tensor, Tensor, Tensor)");
}
