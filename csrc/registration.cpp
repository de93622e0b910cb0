// The single TORCH_LIBRARY block: every fastser schema lives here.  Kernels are registered
// per backend next to their implementation (csrc/<op>/<op>_cpu.cpp, csrc/<op>/<op>_cuda.cu)
// with TORCH_LIBRARY_IMPL; fake kernels, autograd and FLOP formulas in fastser/ops/<op>.py.
#include <torch/library.h>

TORCH_LIBRARY(fastser, m) {
  m.def("fractal_attention(Tensor q, Tensor k, Tensor v, Tensor? lengths, int p, int levels, "
        "float? scale) -> Tensor");
  m.def("fractal_attention_backward(Tensor grad_out, Tensor q, Tensor k, Tensor v, "
        "Tensor? lengths, int p, int levels, float? scale) -> (Tensor, Tensor, Tensor)");
}
