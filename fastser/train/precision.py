"""Mixed precision: which ``amp`` mode a device trains (or predicts) in, and its autocast.

``amp`` is one of :data:`AMP_MODES`. ``"auto"`` is bf16 on CUDA and on CPUs that multiply
bf16 matrices in hardware (AMX-BF16 or AVX512-BF16, read from /proc/cpuinfo), float32
elsewhere: without those instructions oneDNN emulates bf16 and it is slower than float32. A
method whose CPU training measured no faster in bf16 (its step or its whole cross-validation)
opts out of "auto" on the CPU (``Recipe.cpu_bf16``: CAN, GLRF, MMTL, the Transformer
baseline), so "auto" there means float32.
The environment variable ``FASTSER_CPU_BF16=1`` (or ``0``) overrides the CPU detection.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from fastser.errors import SettingsError

AMP_MODES = ("auto", "off", "bf16", "fp16")
#: CPU flags (as /proc/cpuinfo names them) of native bf16 matrix arithmetic.
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
CPU_BF16_ENV = "FASTSER_CPU_BF16"


def bf16_flags_in(cpuinfo: str) -> tuple[str, ...]:
    """The flags of :data:`CPU_BF16_FLAGS` in the first "flags" line of /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return tuple(f for f in CPU_BF16_FLAGS if f in flags)
    return ()


@functools.lru_cache(maxsize=1)
def cpu_bf16_flags() -> tuple[str, ...]:
    """This CPU's flags of :data:`CPU_BF16_FLAGS` (none where /proc/cpuinfo is absent)."""
    try:
        return bf16_flags_in(Path("/proc/cpuinfo").read_text())
    except OSError:
        return ()


def cpu_fast_bf16() -> bool:
    """Whether ``amp="auto"`` trains in bf16 on this CPU: ``FASTSER_CPU_BF16`` when set to 0
    or 1, else whether the CPU has AMX-BF16 or AVX512-BF16."""
    override = os.environ.get(CPU_BF16_ENV, "").strip()
    if override in ("0", "1"):
        return override == "1"
    return bool(cpu_bf16_flags())


def resolve_amp(mode: str, device: torch.device, *, cpu_bf16: bool = True) -> str:
    """``mode`` with "auto" replaced by what it means on ``device``: "bf16" or "off"
    (``cpu_bf16=False``: the method's CPU step is not faster in bf16, so "off" on a CPU)."""
    if mode not in AMP_MODES:
        raise SettingsError(f"amp must be one of {AMP_MODES}, got {mode!r}")
    if mode != "auto":
        return mode
    if device.type == "cuda" or (device.type == "cpu" and cpu_bf16 and cpu_fast_bf16()):
        return "bf16"
    return "off"


def autocast(mode: str, device: torch.device, *,
             cpu_bf16: bool = True) -> contextlib.AbstractContextManager:
    """The autocast context of ``amp=mode`` on ``device`` (a no-op for "off")."""
    mode = resolve_amp(mode, device, cpu_bf16=cpu_bf16)
    if mode == "off":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def describe_cpu_bf16(opted_out: Sequence[str] = ()) -> str:
    """One line for ``fastser info``: the CPU's bf16 instructions and what "auto" picks
    (``opted_out``: the methods that keep float32 on the CPU)."""
    flags = ", ".join(cpu_bf16_flags()) or "none"
    choice = "float32"
    if cpu_fast_bf16():
        choice = "bf16" + (f"; float32 for {', '.join(opted_out)}" if opted_out else "")
    override = os.environ.get(CPU_BF16_ENV)
    note = f", {CPU_BF16_ENV}={override}" if override is not None else ""
    return f"{flags} (--amp auto on CPU: {choice}{note})"
