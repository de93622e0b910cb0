"""Shared helpers for op tests: devices, ragged batches, reference comparison (with the
fp16/bf16 2x rule), float64 gradcheck, opcheck, torch.compile and TorchScript round trips."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any, Callable, Sequence

import pytest
import torch

import fastser

LOW_PRECISION = (torch.float16, torch.bfloat16)
ALL_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def cuda_kernels_available() -> bool:
    """A CUDA device is visible and every op has a CUDA kernel: the compiled one (fastser built
    with CUDA kernels) or the reference backend's."""
    return torch.cuda.is_available() and all(
        fastser.ops.has_kernel(name.split("::")[1], "CUDA")
        for name in fastser.ops.registered_ops())


def reference_backend() -> bool:
    """The ops run their reference versions (no compiled library is loaded)."""
    return fastser.build_config()["backend"] == "reference"


requires_cuda = pytest.mark.skipif(
    not cuda_kernels_available(),
    reason="needs a CUDA device and fastser's ops on CUDA (no device here, or fastser built "
           "without CUDA kernels)",
)


def devices() -> list[Any]:
    """``["cpu", "cuda"]`` for parametrisation; the CUDA entry skips itself without a GPU."""
    return ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, requires_cuda])]


def dtypes_for(device: str) -> list[torch.dtype]:
    """Every dtype an op accepts on ``device`` (float64 only on the CPU)."""
    return list(ALL_DTYPES) if device == "cpu" else list(ALL_DTYPES[:3])


# --- ragged batches -------------------------------------------------------------------------

def ragged_lengths(batch: int, max_len: int, *, edges: Sequence[int] = (),
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """int64 (batch,) lengths in [1, max_len]: the ``edges`` first (clipped to the range), one
    full-length sequence, the rest uniform at random."""
    values = [min(max(1, e), max_len) for e in edges][:batch]
    if len(values) < batch and max_len not in values:
        values.append(max_len)
    while len(values) < batch:
        values.append(int(torch.randint(1, max_len + 1, (1,), generator=generator)))
    return torch.tensor(values, dtype=torch.int64)


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """bool (B, max_len): True at frames past each sequence's length."""
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


# --- comparison against the reference -------------------------------------------------------

def _flat(out: Any) -> list[torch.Tensor]:
    return [out] if isinstance(out, torch.Tensor) else list(out)


def cast_inputs(inputs: Sequence[Any], dtype: torch.dtype, device: str | torch.device,
                requires_grad: bool = False) -> list[Any]:
    """Floating tensors to ``dtype`` on ``device`` (as fresh leaves); others only moved."""
    result = []
    for x in inputs:
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            y = x.detach().to(device=device, dtype=dtype)
            result.append(y.requires_grad_(requires_grad))
        elif isinstance(x, torch.Tensor):
            result.append(x.to(device))
        else:
            result.append(x)
    return result


def max_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest absolute difference (NaN where either side is NaN and the other is not)."""
    if actual.numel() == 0:
        return 0.0
    diff = actual.detach().double().cpu() - expected.detach().double().cpu()
    both_nan = actual.detach().cpu().isnan() & expected.detach().cpu().isnan()
    return diff.masked_fill(both_nan, 0.0).abs().max().item()


DEFAULT_TOLERANCE = {torch.float64: 1e-9, torch.float32: 2e-5}


def _run_with_grads(fn: Callable[..., Any], inputs: list[Any], grad_outputs: list[torch.Tensor] | None):
    outs = _flat(fn(*inputs))
    if grad_outputs is None:
        return outs, []
    leaves = [x for x in inputs if isinstance(x, torch.Tensor) and x.requires_grad]
    used = [(o, g) for o, g in zip(outs, grad_outputs) if o.requires_grad]
    grads = torch.autograd.grad([o for o, _ in used], leaves,
                                [g.to(o.dtype) for o, g in used], allow_unused=True)
    grads = [torch.zeros_like(leaf) if g is None else g for g, leaf in zip(grads, leaves)]
    return outs, grads


def check_against_reference(fused: Callable[..., Any], reference: Callable[..., Any],
                            inputs: Sequence[Any], *, dtype: torch.dtype, device: str,
                            backward: bool = True, tolerance: float | None = None,
                            floor: float = 1e-6, grad_outputs_in_dtype: bool = False) -> None:
    """Outputs (and input gradients) of ``fused`` in ``dtype`` on ``device`` against the
    ``reference`` run in float64 on the CPU.

    float32/float64: the largest absolute error, relative to the largest reference magnitude,
    is at most ``tolerance``.  float16/bfloat16 (docs/ops.md): the kernel's error is at
    most twice that of ``reference`` run in the same dtype on the same device (+ ``floor``).
    ``inputs`` are float64 CPU tensors (and non-float extras such as lengths).
    ``grad_outputs_in_dtype``: draw output gradients that ``dtype`` represents exactly, so that
    the float64 truth back-propagates the very gradients the low-precision runs get (otherwise
    their rounding, shared by kernel and reference, can dominate both errors).
    """
    truth_inputs = cast_inputs(inputs, torch.float64, "cpu", requires_grad=backward)
    truth_outs = _flat(reference(*truth_inputs))
    grad_outputs = None
    if backward:
        gen = torch.Generator().manual_seed(1234)
        grad_outputs = [torch.randn(o.shape, generator=gen, dtype=torch.float64) for o in truth_outs]
        if grad_outputs_in_dtype:
            grad_outputs = [g.to(dtype).to(torch.float64) for g in grad_outputs]
    truth_outs, truth_grads = _run_with_grads(reference, truth_inputs, grad_outputs)

    def run(fn):
        xs = cast_inputs(inputs, dtype, device, requires_grad=backward)
        gs = None if grad_outputs is None else [g.to(device) for g in grad_outputs]
        return _run_with_grads(fn, xs, gs)

    outs, grads = run(fused)
    assert len(outs) == len(truth_outs), f"{len(outs)} outputs, reference has {len(truth_outs)}"
    for o in outs:
        assert o.dtype == dtype, f"output dtype {o.dtype}, expected {dtype}"
        assert o.device.type == torch.device(device).type
    pairs = list(zip(outs + grads, truth_outs + truth_grads))
    names = [f"output {i}" for i in range(len(outs))] + [f"grad {i}" for i in range(len(grads))]
    if dtype in LOW_PRECISION:
        ref_outs, ref_grads = run(reference)
        for name, (got, want), ref in zip(names, pairs, ref_outs + ref_grads):
            err, ref_err = max_error(got, want), max_error(ref, want)
            assert err <= 2 * ref_err + floor, (
                f"{name} in {dtype}: error {err:.3g} exceeds twice the reference's {ref_err:.3g}")
        return
    tol = DEFAULT_TOLERANCE[dtype] if tolerance is None else tolerance
    for name, (got, want) in zip(names, pairs):
        scale = max(want.abs().max().item() if want.numel() else 0.0, 1.0)
        err = max_error(got, want)
        assert err <= tol * scale, f"{name} in {dtype}: error {err:.3g} > {tol:.1g} x {scale:.3g}"
        assert got.isfinite().all() or not want.isfinite().all(), f"{name} has non-finite values"


def gradcheck64(fn: Callable[..., Any], inputs: Sequence[Any], **kwargs: Any) -> None:
    """float64 gradcheck of ``fn`` with respect to every floating input."""
    xs = cast_inputs(inputs, torch.float64, "cpu", requires_grad=True)
    assert torch.autograd.gradcheck(fn, tuple(xs), **kwargs)


def opcheck(op: Any, args: Sequence[Any], kwargs: dict[str, Any] | None = None) -> None:
    """``torch.library.opcheck`` (schema, autograd registration, fake tensor, AOT dispatch)
    must pass every test."""
    results = torch.library.opcheck(op, tuple(args), kwargs or {})
    failed = {name: r for name, r in results.items() if r != "SUCCESS"}
    assert not failed, f"opcheck failed: {failed}"


def assert_deterministic(fn: Callable[..., Any], inputs: Sequence[Any]) -> None:
    """Two calls give bitwise-identical outputs."""
    a, b = _flat(fn(*inputs)), _flat(fn(*inputs))
    for x, y in zip(a, b):
        assert torch.equal(x, y), "two calls with the same input gave different bits"


def check_compiled(fn: Callable[..., Any], inputs: Sequence[Any], *, backend: str = "inductor",
                   atol: float = 1e-5, rtol: float = 1e-5) -> None:
    """``torch.compile(fn, fullgraph=True)`` runs without graph breaks and matches eager."""
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend=backend)
    for got, want in zip(_flat(compiled(*inputs)), _flat(fn(*inputs))):
        torch.testing.assert_close(got, want, atol=atol, rtol=rtol)


# --- TorchScript round trips ----------------------------------------------------------------

def script_roundtrip(module: torch.nn.Module, inputs: Sequence[Any], path: str | os.PathLike,
                     *, atol: float = 1e-6, rtol: float = 1e-6) -> torch.jit.ScriptModule:
    """Script ``module``, save it to ``path``, load it back; both match eager on ``inputs``."""
    module.eval()
    scripted = torch.jit.script(module)
    scripted.save(str(path))
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        want = _flat(module(*inputs))
        for got in (_flat(scripted(*inputs)), _flat(loaded(*inputs))):
            for g, w in zip(got, want):
                torch.testing.assert_close(g, w, atol=atol, rtol=rtol)
    return loaded


def run_in_fresh_process(code: str, *, timeout: float = 300,
                         env: dict[str, str] | None = None) -> str:
    """Run ``code`` in a new Python process (with ``env`` added to the environment); returns
    its stdout, fails the test on error."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, f"fresh process failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def check_scripted_in_fresh_process(path: str | os.PathLike, inputs: Sequence[Any],
                                    expected: Any, tmp_dir: str | os.PathLike, *,
                                    only_library: bool = True, atol: float = 1e-6) -> None:
    """Load the TorchScript file ``path`` in a new process that registers fastser's ops only
    through its shared library (``only_library``) or by importing fastser, run it on
    ``inputs`` and compare with ``expected``.  With the reference backend there is no shared
    library: the new process imports fastser, the one way it then registers the ops."""
    only_library = only_library and not reference_backend()
    inputs_path = os.path.join(tmp_dir, "fresh_inputs.pt")
    out_path = os.path.join(tmp_dir, "fresh_outputs.pt")
    torch.save(list(inputs), inputs_path)
    load = (f"torch.ops.load_library({fastser.ops.library_path()!r})" if only_library
            else "import fastser")
    run_in_fresh_process(f"""
        import sys, torch
        {load}
        module = torch.jit.load({str(path)!r})
        inputs = torch.load({inputs_path!r})
        with torch.no_grad():
            out = module(*inputs)
        torch.save(out, {out_path!r})
        assert ("fastser" in sys.modules) == {not only_library}
    """)
    got = torch.load(out_path)
    for g, w in zip(_flat(got), _flat(expected)):
        torch.testing.assert_close(g, w, atol=atol, rtol=atol)
