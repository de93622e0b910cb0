"""fastser.ops.fractal_attention (docs/ops.md, fractal_attention) against its reference, float64, a
literal per-frame loop of the spec, and every op-boundary property (opcheck, gradcheck,
torch.compile, TorchScript, FLOP counting, errors)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

import fastser
from fastser.ops import fractal_attention, fractal_attention_flops
from fastser.ops.fractal_attention import _fractal_attention_backward_fake
from fastser.ops.reference import fractal_attention_reference
from optest import (
    assert_deterministic,
    check_against_reference,
    check_compiled,
    check_scripted_in_fresh_process,
    devices,
    dtypes_for,
    gradcheck64,
    opcheck,
    padding_mask,
    ragged_lengths,
    script_roundtrip,
)

EDGE_LENGTHS = (1, 2, 3, 80, 81, 82, 243)


def _qkv(B, T, H, D, *, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(B, T, H, D, generator=gen, dtype=dtype) for _ in range(3)]


def _lengths(B, T, edges=EDGE_LENGTHS, seed=0):
    return ragged_lengths(B, T, edges=edges, generator=torch.Generator().manual_seed(seed))


def _fused(p, levels, scale=None):
    def run(q, k, v, lengths):
        return fractal_attention(q, k, v, lengths, p=p, levels=levels, scale=scale)

    return run


def _reference(p, levels, scale=None):
    def run(q, k, v, lengths):
        return fractal_attention_reference(q, k, v, lengths, p, levels, scale)

    return run


# --- the reference against a literal reading of the spec ------------------------------------

def _literal(q, k, v, lengths, p, levels, scale=None):
    """docs/ops.md read frame by frame: Python lists of level frames, one softmax per
    query over its window, the output frame as a sum over levels."""
    B, T, H, D = q.shape
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    out = torch.zeros_like(q)
    for b in range(B):
        n = T if lengths is None else int(lengths[b])
        for h in range(H):
            level = [[x[b, t, h] for t in range(n)] for x in (q, k, v)]
            ys = []
            for j in range(levels):
                if j > 0:  # means of groups of p frames; the last group may be shorter
                    level = [[sum(xs[i:i + p]) / len(xs[i:i + p]) for i in range(0, len(xs), p)]
                             for xs in level]
                qs, ks, vs = level
                y = []
                for i in range(len(qs)):
                    window = range(i // p * p, min(i // p * p + p, len(qs)))
                    scores = torch.stack([scale * torch.dot(qs[i], ks[m]) for m in window])
                    weights = torch.softmax(scores, dim=0)
                    y.append(sum(w * vs[m] for w, m in zip(weights, window)))
                ys.append(y)
            for t in range(n):
                out[b, t, h] = sum(F.gelu(ys[j][t // p ** j]) for j in range(levels))
    return out


@pytest.mark.parametrize("T,p,levels,lengths", [
    (12, 3, 3, [12, 7, 1]),
    (11, 2, 4, [11, 4, 2]),
    (9, 3, 5, [9, 5, 3]),   # levels beyond a single frame
    (10, 4, 2, [10, 6, 1]),
    (5, 3, 1, [5, 2, 1]),
])
def test_reference_matches_literal_spec(T, p, levels, lengths):
    q, k, v = _qkv(3, T, 2, 3, seed=T)
    lengths = torch.tensor(lengths)
    want = _literal(q, k, v, lengths, p, levels)
    got = fractal_attention_reference(q, k, v, lengths, p, levels)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    torch.testing.assert_close(fractal_attention(q, k, v, lengths, p=p, levels=levels), want,
                               atol=1e-12, rtol=0)


def test_reference_scale_and_no_lengths_match_literal_spec():
    q, k, v = _qkv(2, 10, 1, 4, seed=3)
    want = _literal(q, k, v, None, 3, 3, scale=0.7)
    torch.testing.assert_close(fractal_attention_reference(q, k, v, None, 3, 3, 0.7), want,
                               atol=1e-12, rtol=0)


# --- kernels against the reference ----------------------------------------------------------

@pytest.mark.parametrize("device", devices())
def test_matches_reference_every_dtype_ragged_edges(device):
    """Lengths 1, 2, 3, 80, 81, 82, 243 and full, T = 250 (not a multiple of 81)."""
    q, k, v = _qkv(8, 250, 2, 16)
    lengths = _lengths(8, 250)
    for dtype in dtypes_for(device):
        check_against_reference(_fused(3, 4), _reference(3, 4), [q, k, v, lengths],
                                dtype=dtype, device=device)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("D", [1, 24, 40, 100])
def test_matches_reference_odd_head_dims(device, D):
    q, k, v = _qkv(3, 100, 2, D, seed=D)
    lengths = _lengths(3, 100, edges=(82, 3))
    for dtype in (torch.float32, torch.bfloat16):
        check_against_reference(_fused(3, 4), _reference(3, 4), [q, k, v, lengths],
                                dtype=dtype, device=device)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("p,levels", [(2, 1), (2, 2), (2, 3), (2, 4), (2, 5), (3, 1), (3, 5),
                                      (4, 2), (5, 3)])
def test_matches_reference_p_and_levels(device, p, levels):
    q, k, v = _qkv(4, 70, 2, 8, seed=p * 10 + levels)
    lengths = _lengths(4, 70, edges=(1, p, p ** levels + 1))
    check_against_reference(_fused(p, levels), _reference(p, levels), [q, k, v, lengths],
                            dtype=torch.float32, device=device)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("T,p,levels", [
    (5, 3, 7),    # levels past the single-frame level: the top one counts 4 times
    (1, 3, 4),    # one frame
    (9, 50, 3),   # p larger than T: one window holding the whole sequence
    (30, 2, 6),   # p ** levels > T
])
def test_matches_reference_short_sequences(device, T, p, levels):
    q, k, v = _qkv(3, T, 2, 5, seed=T)
    lengths = _lengths(3, T, edges=(1, max(1, T - 2)))
    check_against_reference(_fused(p, levels), _reference(p, levels), [q, k, v, lengths],
                            dtype=torch.float32, device=device)


@pytest.mark.parametrize("device", devices())
def test_matches_reference_without_lengths_and_with_scale(device):
    q, k, v = _qkv(2, 90, 3, 8, seed=5)
    check_against_reference(_fused(3, 4, scale=0.3), _reference(3, 4, scale=0.3),
                            [q, k, v, None], dtype=torch.float32, device=device)


# --- padding --------------------------------------------------------------------------------

@pytest.mark.parametrize("device", devices())
def test_padding_is_exactly_zero_and_never_read(device):
    """Outputs and gradients past each length are exactly 0, and NaN in the padding changes
    nothing."""
    B, T, H, D = 5, 170, 2, 8
    lengths = _lengths(B, T, edges=(1, 80, 82, 163)).to(device)
    pad = padding_mask(lengths, T)[:, :, None, None]
    clean = [x.to(device=device, dtype=torch.float32) for x in _qkv(B, T, H, D)]
    dirty = [x.masked_fill(pad, float("nan")).requires_grad_() for x in clean]
    clean = [x.requires_grad_() for x in clean]
    grad = torch.randn(B, T, H, D, device=device)
    results = []
    for inputs in (clean, dirty):
        out = fractal_attention(*inputs, lengths)
        results.append([out, *torch.autograd.grad(out, inputs, grad)])
    for got, want in zip(results[1], results[0]):
        assert torch.equal(got, want)
    for tensor in results[0]:
        assert torch.equal(tensor.masked_select(pad.expand_as(tensor)),
                           torch.zeros(int(pad.expand_as(tensor).sum()), device=device))


# --- layouts --------------------------------------------------------------------------------

@pytest.mark.parametrize("device", devices())
def test_non_contiguous_inputs_give_the_same_bits(device):
    B, T, H, D = 3, 100, 2, 16
    lengths = _lengths(B, T, edges=(1, 82)).to(device)
    gen = torch.Generator().manual_seed(7)
    fused_qkv = torch.randn(B, T, 3, H, D, generator=gen).to(device)  # a fused projection
    heads_first = torch.randn(3, B, H, T, D, generator=gen).to(device)  # (B, H, T, D) layouts
    wide = torch.randn(3, B, T, H, 2 * D, generator=gen).to(device)  # every other feature
    grad = torch.randn(B, T, H, D, generator=gen).to(device)
    layouts = [
        fused_qkv.unbind(2),
        [x.transpose(1, 2) for x in heads_first],
        [x[..., ::2] for x in wide],
    ]
    for views in layouts:
        assert not any(x.is_contiguous() for x in views)
        leaves = [x.detach().requires_grad_() for x in views]
        copies = [x.detach().contiguous().requires_grad_() for x in views]
        out, want = fractal_attention(*leaves, lengths), fractal_attention(*copies, lengths)
        assert torch.equal(out, want)
        for got, ref in zip(torch.autograd.grad(out, leaves, grad),
                            torch.autograd.grad(want, copies, grad)):
            assert torch.equal(got, ref)


@pytest.mark.parametrize("device", devices())
def test_expanded_grad_out(device):
    """sum().backward() hands the backward op a stride-0 gradient."""
    q, k, v = [x.to(device).requires_grad_() for x in _qkv(2, 90, 2, 8, dtype=torch.float32)]
    lengths = torch.tensor([90, 40], device=device)
    fractal_attention(q, k, v, lengths).sum().backward()
    dq, dk, dv = torch.ops.fastser.fractal_attention_backward(
        torch.ones(2, 90, 2, 8, device=device), q, k, v, lengths, 3, 4, None)
    for got, want in zip((q.grad, k.grad, v.grad), (dq, dk, dv)):
        assert torch.equal(got, want)


@pytest.mark.parametrize("device", devices())
def test_empty_inputs(device):
    for shape in [(0, 5, 2, 4), (2, 5, 0, 4), (2, 5, 2, 0), (2, 0, 2, 4)]:
        q = torch.randn(shape, device=device, requires_grad=True)
        out = fractal_attention(q, q, q)
        assert out.shape == shape
        out.sum().backward()
        assert q.grad.shape == shape


# --- determinism, opcheck, gradcheck ---------------------------------------------------------

@pytest.mark.parametrize("device", devices())
def test_deterministic(device):
    q, k, v = [x.to(device) for x in _qkv(4, 200, 4, 16, dtype=torch.float32)]
    lengths = _lengths(4, 200, edges=(1, 82)).to(device)
    grad = torch.randn(4, 200, 4, 16, device=device)
    assert_deterministic(lambda *a: fractal_attention(*a), [q, k, v, lengths])
    assert_deterministic(
        lambda *a: torch.ops.fastser.fractal_attention_backward(*a, 3, 4, None),
        [grad, q, k, v, lengths])


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("with_lengths", [True, False])
def test_opcheck(device, with_lengths):
    q, k, v = [x.to(device=device, dtype=torch.float32).requires_grad_()
               for x in _qkv(2, 20, 2, 4)]
    lengths = torch.tensor([20, 7], device=device) if with_lengths else None
    opcheck(torch.ops.fastser.fractal_attention.default, (q, k, v, lengths, 2, 3, None))
    plain = [x.detach() for x in (q, k, v)]
    opcheck(torch.ops.fastser.fractal_attention_backward.default,
            (torch.randn_like(q), *plain, lengths, 3, 2, 0.5))


def test_double_backward_raises():
    q, k, v = [x.requires_grad_() for x in _qkv(1, 9, 1, 4)]
    (dq,) = torch.autograd.grad(fractal_attention(q, k, v).sum(), (q,), create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        dq.sum().backward()


@pytest.mark.parametrize("p,levels", [(2, 3), (3, 2)])
def test_gradcheck_float64(p, levels):
    q, k, v = _qkv(2, 10, 2, 3, seed=p)
    lengths = torch.tensor([10, 4])
    gradcheck64(lambda q, k, v: fractal_attention(q, k, v, lengths, p=p, levels=levels,
                                                  scale=0.8), [q, k, v])


# --- compile, TorchScript, FLOPs --------------------------------------------------------------

def test_compile_fullgraph_forward_and_backward():
    q, k, v = [x.float().requires_grad_() for x in _qkv(2, 30, 2, 8)]
    lengths = torch.tensor([30, 11])

    def loss(q, k, v, lengths):
        return (fractal_attention(q, k, v, lengths, p=3, levels=3) ** 2).sum()

    check_compiled(loss, [q, k, v, lengths])
    torch._dynamo.reset()
    compiled = torch.compile(loss, fullgraph=True)
    got = torch.autograd.grad(compiled(q, k, v, lengths), (q, k, v))
    want = torch.autograd.grad(loss(q, k, v, lengths), (q, k, v))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


def test_bad_input_raises_under_compile():
    compiled = torch.compile(lambda q, k: fractal_attention(q, k, q), fullgraph=True,
                             backend="eager")
    torch._dynamo.reset()
    with pytest.raises(Exception, match="k must have the shape of q"):
        compiled(torch.randn(2, 6, 1, 4), torch.randn(2, 5, 1, 4))


class _OpModule(torch.nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                lengths: torch.Tensor) -> torch.Tensor:
        return torch.ops.fastser.fractal_attention(q, k, v, lengths, 3, 4, None)


def test_torchscript_roundtrip_and_fresh_process(tmp_path):
    q, k, v = [x.float() for x in _qkv(2, 90, 2, 8)]
    lengths = torch.tensor([90, 50])
    path = tmp_path / "fractal.pt"
    loaded = script_roundtrip(_OpModule(), [q, k, v, lengths], path)
    with torch.no_grad():
        expected = loaded(q, k, v, lengths)
    check_scripted_in_fresh_process(path, [q, k, v, lengths], expected, tmp_path)


def _window_pairs_by_counting(T, p, levels):
    pairs = pooled = 0
    frames = list(range(T))
    for level in range(levels):
        if level > 0:
            pooled += len(frames)
            frames = frames[::p]
        for first in range(0, len(frames), p):
            pairs += len(frames[first:first + p]) ** 2
    return pairs, pooled


@pytest.mark.parametrize("T,p,levels", [(250, 3, 4), (7, 2, 5), (4, 3, 6)])
def test_flop_counter_counts_forward_and_backward(T, p, levels):
    B, H, D = 2, 3, 8
    q, k, v = [x.float().requires_grad_() for x in _qkv(B, T, H, D)]
    with FlopCounterMode(display=False) as counter:
        fractal_attention(q, k, v, p=p, levels=levels).sum().backward()
    counts = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    pairs, pooled = _window_pairs_by_counting(T, p, levels)
    forward = B * H * (4 * D * pairs + 3 * D * pooled)
    assert counts["fastser.fractal_attention"] == forward
    assert counts["fastser.fractal_attention_backward"] == forward + B * H * (
        8 * D * pairs + 4 * D * pooled)
    assert fractal_attention_flops(q.shape, p, levels) == forward


# --- errors ---------------------------------------------------------------------------------

def _good():
    q, k, v = [x.float() for x in _qkv(2, 6, 1, 4)]
    return {"q": q, "k": k, "v": v, "lengths": torch.tensor([6, 3]), "p": 3, "levels": 2,
            "scale": None}


BAD_METADATA = [
    ({"q": torch.randn(2, 6, 4)}, "q must be 4-D"),
    ({"k": torch.randn(2, 6, 1, 5)}, "k must have the shape of q"),
    ({"v": torch.randn(2, 7, 1, 4)}, "v must have the shape of q"),
    ({"k": torch.randn(2, 6, 1, 4, dtype=torch.float64)}, "k must have the dtype of q"),
    ({"q": torch.ones(2, 6, 1, 4, dtype=torch.int64)}, "q must be float16, bfloat16"),
    ({"v": torch.ones(2, 6, 1, 4, dtype=torch.bool)}, "v must be float16, bfloat16"),
    ({"k": torch.randn(2, 6, 1, 4, device="meta")}, "k must be on the device of q"),
    ({"lengths": torch.tensor([6, 3], dtype=torch.int32)}, "lengths must be int64"),
    ({"lengths": torch.tensor([6, 3, 2])}, r"lengths must have shape \(2\)"),
    ({"lengths": torch.tensor([[6, 3]])}, r"lengths must have shape \(2\)"),
    ({"lengths": torch.tensor([6, 3], device="meta")}, "lengths must be on the device"),
    ({"p": 1}, "p .* must be >= 2"),
    ({"levels": 0}, "levels must be >= 1"),
    ({"scale": float("nan")}, "scale must be finite, got nan"),
    ({"scale": float("-inf")}, "scale must be finite, got -inf"),
]

BAD_VALUES = [
    ({"lengths": torch.tensor([6, 0])}, r"lengths must be in \[1, 6\]"),
    ({"lengths": torch.tensor([7, 3])}, r"lengths must be in \[1, 6\]"),
]


def _call(args):
    return fractal_attention(args["q"], args["k"], args["v"], args["lengths"], p=args["p"],
                             levels=args["levels"], scale=args["scale"])


@pytest.mark.parametrize("change,message", BAD_METADATA + BAD_VALUES)
def test_bad_input_raises_value_error(change, message):
    args = {**_good(), **change}
    with pytest.raises(ValueError, match=f"fastser.fractal_attention: .*{message}"):
        _call(args)


@pytest.mark.parametrize("change,message", BAD_METADATA)
def test_fake_kernel_raises_the_same_errors(change, message):
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        args = {name: mode.from_tensor(x) if isinstance(x, torch.Tensor) else x
                for name, x in {**_good(), **change}.items()}
        with pytest.raises(ValueError, match=f"fastser.fractal_attention: .*{message}"):
            _call(args)


def test_backward_op_checks_scale():
    args = _good()
    for op in (torch.ops.fastser.fractal_attention_backward, _fractal_attention_backward_fake):
        with pytest.raises(ValueError, match="fractal_attention_backward: scale must be finite"):
            op(torch.randn(2, 6, 1, 4), args["q"], args["k"], args["v"], args["lengths"], 3, 2,
               float("inf"))


def test_float64_on_cuda_is_a_clear_error_in_the_fake_kernel():
    """float64 is CPU-only for every op (csrc/common/checks.h check_device_dtype)."""
    with FakeTensorMode():
        q = torch.empty(2, 6, 1, 4, dtype=torch.float64, device="cuda")
        with pytest.raises(ValueError, match="fractal_attention: q is float64, which is "
                                             "supported on the CPU only; got it on cuda"):
            fractal_attention(q, q, q)


def test_backward_op_checks_grad_out():
    args = _good()
    for grad, message in [(torch.randn(2, 6, 1, 3), "grad_out must have the shape of q"),
                          (torch.randn(2, 6, 1, 4).double(), "grad_out must have the dtype")]:
        with pytest.raises(ValueError, match=f"fractal_attention_backward: {message}"):
            torch.ops.fastser.fractal_attention_backward(grad, args["q"], args["k"], args["v"],
                                                         args["lengths"], 3, 2, None)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_device_errors():
    args = _good()
    with pytest.raises(ValueError, match="k must be on the device of q"):
        _call({**args, "k": args["k"].cuda()})
    with pytest.raises(ValueError, match="lengths must be on the device"):
        _call({**args, **{x: args[x].cuda() for x in "qkv"}})
    with pytest.raises(ValueError, match="float64, which is supported on the CPU only"):
        _call({**args, **{x: args[x].cuda().double() for x in "qkv"},
               "lengths": args["lengths"].cuda()})


def test_registered_with_cpu_kernels():
    assert "fastser::fractal_attention" in fastser.ops.registered_ops()
    assert fastser.ops.has_kernel("fractal_attention", "CPU")
    assert fastser.ops.has_kernel("fractal_attention_backward", "CPU")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_empty_batch_returns_before_the_tile_size_check():
    """B = 0 with one block of T * D >= 2^31 elements: an empty output, as on the CPU, not the
    "too large for the CUDA kernel" error (that check concerns tiles that exist)."""
    q = torch.empty(0, 2 ** 16, 1, 2 ** 15, device="cuda", dtype=torch.float16)
    assert fractal_attention(q, q, q, p=2 ** 16, levels=1).shape == q.shape


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tile_too_large_is_a_clear_error():
    # stride-0 views: the check comes before anything is read or copied
    q = torch.zeros(1, 1, 1, 1, device="cuda", dtype=torch.float16).expand(1, 2 ** 16, 1, 2 ** 15)
    with pytest.raises(ValueError, match="too large for the CUDA kernel"):
        fractal_attention(q, q, q, p=2 ** 16, levels=1)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_concurrent_calls_with_different_tile_sizes():
    """Host threads launching the same kernel with small (shared-memory) and large tiles at
    once: the kernel's shared-memory limit is set once per device and never lowered, so no
    launch fails and every result equals the one-thread result."""
    import threading

    shapes = [(2, 90, 2, 16), (1, 40, 1, 256), (2, 90, 2, 64)]
    inputs = [[x.cuda() for x in _qkv(*shape, dtype=torch.float32, seed=i)]
              for i, shape in enumerate(shapes)]
    want = [fractal_attention(*x) for x in inputs]
    errors, results = [], [[] for _ in shapes]

    def work(i):
        try:
            stream = torch.cuda.Stream()
            with torch.cuda.stream(stream):
                for _ in range(20):
                    results[i].append(fractal_attention(*inputs[i]))
            stream.synchronize()
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(shapes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for got, expected in zip(results, want):
        assert all(torch.equal(g, expected) for g in got)
