"""Argument checks for the fake (meta) kernels.

They mirror csrc/common/checks.h, which guards the real kernels, so that a bad call raises the
same ``ValueError`` ("fastser.<op>: <argument> ...") in eager mode, under ``torch.compile`` and
in ``torch.export``.  Only metadata is checked here (shapes, dtypes, devices); values such as
lengths are checked by the kernels, which see the data.
"""

from __future__ import annotations

import math

import torch

FLOATING_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# c10's names of the dtypes, as the C++ checks print them.
_DTYPE_NAMES = {torch.float16: "Half", torch.bfloat16: "BFloat16", torch.float32: "Float",
                torch.float64: "Double", torch.uint8: "Byte", torch.int8: "Char",
                torch.int16: "Short", torch.int32: "Int", torch.int64: "Long", torch.bool: "Bool",
                torch.complex64: "ComplexFloat", torch.complex128: "ComplexDouble"}


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the kernels accumulate in (fastser::acc_t): float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    """``dtype`` as the C++ checks name it ("Float" for torch.float32, ...)."""
    return _DTYPE_NAMES.get(dtype, str(dtype).replace("torch.", ""))


def fail(op: str, message: str) -> None:
    raise ValueError(f"fastser.{op}: {message}")


def check_floating(t: torch.Tensor, op: str, name: str) -> None:
    if t.dtype not in FLOATING_DTYPES:
        fail(op, f"{name} must be float16, bfloat16, float32 or float64, got "
                 f"{dtype_name(t.dtype)}")


def check_device_dtype(t: torch.Tensor, op: str, name: str) -> None:
    if t.dtype == torch.float64 and t.device.type != "cpu":
        fail(op, f"{name} is float64, which is supported on the CPU only; got it on {t.device}")


def check_dim(t: torch.Tensor, dim: int, op: str, name: str, layout: str) -> None:
    if t.dim() != dim:
        fail(op, f"{name} must be {dim}-D {layout}, got shape {list(t.shape)}")


def check_same_shape(t: torch.Tensor, ref: torch.Tensor, op: str, name: str, ref_name: str) -> None:
    if t.shape != ref.shape:
        fail(op, f"{name} must have the shape of {ref_name} {list(ref.shape)}, got {list(t.shape)}")


def check_same_device(t: torch.Tensor, ref: torch.Tensor, op: str, name: str, ref_name: str) -> None:
    if t.device != ref.device:
        fail(op, f"{name} must be on the device of {ref_name} ({ref.device}), got {t.device}")


def check_same_dtype(t: torch.Tensor, ref: torch.Tensor, op: str, name: str, ref_name: str) -> None:
    if t.dtype != ref.dtype:
        fail(op, f"{name} must have the dtype of {ref_name} ({dtype_name(ref.dtype)}), got "
                 f"{dtype_name(t.dtype)}")


def check_index_vector(t: torch.Tensor, size: int, like: torch.Tensor, op: str, name: str) -> None:
    if t.dtype != torch.int64:
        fail(op, f"{name} must be int64, got {dtype_name(t.dtype)}")
    if t.dim() != 1 or t.shape[0] != size:
        fail(op, f"{name} must have shape ({size}), got {list(t.shape)}")
    check_same_device(t, like, op, name, "the data")


def check_lengths(lengths: torch.Tensor | None, batch: int, like: torch.Tensor, op: str) -> None:
    if lengths is not None:
        check_index_vector(lengths, batch, like, op, "lengths")


def check_finite(value: float, op: str, name: str) -> None:
    if not math.isfinite(value):
        fail(op, f"{name} must be finite, got {value}")
