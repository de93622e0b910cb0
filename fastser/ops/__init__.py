"""fastser's custom operators: the public functions (one module per op) and the reference
reference versions (:mod:`fastser.ops.reference`) they are tested and benchmarked against.

Each op module holds the public function, the fake (meta) kernel, the autograd registration
and the FLOP formula; the kernels are in csrc/<op>/, or, when the compiled extension is not
loaded, in :mod:`fastser.ops.fallback` (see :mod:`fastser.ops._library`).
"""

from fastser.ops import _library
from fastser.ops._library import (
    ReferenceOpsWarning,
    has_kernel,
    library_path,
    op_backend,
    registered_ops,
)
from fastser.ops.cross_attention import cross_attention
from fastser.ops.fractal_attention import fractal_attention, fractal_attention_flops
from fastser.ops.head_k_pooling_loss import head_k_pooling_loss

if _library.BACKEND == "reference":
    from fastser.ops.fallback import KERNELS

    _library.register_reference_kernels(KERNELS)

__all__ = [
    "ReferenceOpsWarning",
    "cross_attention",
    "fractal_attention",
    "fractal_attention_flops",
    "has_kernel",
    "head_k_pooling_loss",
    "library_path",
    "op_backend",
    "registered_ops",
]
