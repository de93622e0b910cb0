"""The small CUDA subset that launches every fastser kernel, forward and backward, with ragged
lengths and each CUDA dtype, against the reference.  scripts/gpu_check.sh runs it under
compute-sanitizer memcheck and racecheck (``pytest -m sanitize``), so sizes are small; each
case names the kernel path it reaches.  It is also part of ``pytest -m cuda``."""

from __future__ import annotations

import pytest
import torch

import optest
from fastser.ops import cross_attention, fractal_attention, head_k_pooling_loss
from fastser.ops.reference import (
    cross_attention_reference,
    fractal_attention_reference,
    head_k_pooling_loss_reference,
)

pytestmark = [pytest.mark.cuda, pytest.mark.sanitize, optest.requires_cuda]

CUDA_DTYPES = optest.dtypes_for("cuda")


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --- fractal_attention ------------------------------------------------------------------------

FRACTAL_CASES = [
    # (B, T, H, D, p, levels, lengths, path)
    (3, 100, 2, 16, 3, 4, (1, 82, 100), "shared memory, 16-byte loads, partial last block"),
    (2, 40, 2, 5, 3, 2, (40, 7), "scalar loads (D = 5)"),
    (2, 5, 1, 8, 3, 7, (5, 2), "one block, levels past the single-frame level"),
    (2, 700, 1, 32, 2, 10, (700, 301), "one 700-frame block: the global-memory workspace"),
]


@pytest.mark.parametrize("B,T,H,D,p,levels,lengths,path", FRACTAL_CASES,
                         ids=[case[-1] for case in FRACTAL_CASES])
@pytest.mark.parametrize("dtype", CUDA_DTYPES, ids=str)
def test_fractal_attention(B, T, H, D, p, levels, lengths, path, dtype):
    q, k, v = (_randn(B, T, H, D, seed=s) for s in range(3))

    def fused(q, k, v, lengths):
        return fractal_attention(q, k, v, lengths, p=p, levels=levels)

    def reference(q, k, v, lengths):
        return fractal_attention_reference(q, k, v, lengths, p, levels)

    optest.check_against_reference(fused, reference, [q, k, v, torch.tensor(lengths)],
                                   dtype=dtype, device="cuda")


def test_fractal_attention_non_contiguous_inputs():
    """Strided q, k, v (a fused projection's views): the kernels read them through strides."""
    qkv = _randn(2, 90, 3, 2, 8, seed=4)
    q, k, v = qkv.unbind(2)
    optest.check_against_reference(
        lambda q, k, v, lengths: fractal_attention(q, k, v, lengths),
        lambda q, k, v, lengths: fractal_attention_reference(q, k, v, lengths),
        [q, k, v, torch.tensor([90, 41])], dtype=torch.float32, device="cuda")


# --- cross_attention --------------------------------------------------------------------------

CROSS_CASES = [
    # (B, L, H, d, lengths, path)
    (3, 70, 2, 5, (1, 2, 70), "d <= 32, 8 warps, sequences shorter than the warps"),
    (2, 9, 2, 40, (9, 3), "d <= 64"),
    (2, 20, 1, 130, None, "d <= 256, no lengths"),
]


@pytest.mark.parametrize("B,L,H,d,lengths,path", CROSS_CASES, ids=[c[-1] for c in CROSS_CASES])
@pytest.mark.parametrize("dtype", CUDA_DTYPES, ids=str)
def test_cross_attention(B, L, H, d, lengths, path, dtype):
    inputs = [_randn(B, L, H, d, seed=0), _randn(B, L, H, d, seed=1), _randn(H, d, seed=2),
              _randn(H, d, seed=3), None if lengths is None else torch.tensor(lengths)]
    optest.check_against_reference(
        lambda *x: cross_attention(*x, scale=0.5),
        lambda *x: cross_attention_reference(*x, 0.5), inputs, dtype=dtype, device="cuda")


def test_cross_attention_backward_with_unused_outputs():
    """Only c_tt gets a gradient: the backward kernel reads null gradients as zero."""
    h_text, h_audio = (_randn(2, 12, 2, 8, seed=s).float().cuda().requires_grad_()
                       for s in range(2))
    q_text, q_audio = (_randn(2, 8, seed=s).float().cuda().requires_grad_() for s in (2, 3))
    lengths = torch.tensor([12, 5], device="cuda")
    c_tt = cross_attention(h_text, h_audio, q_text, q_audio, lengths)[0]
    got = torch.autograd.grad(c_tt.sum(), (h_text, q_text))
    want_tt = cross_attention_reference(h_text, h_audio, q_text, q_audio, lengths)[0]
    want = torch.autograd.grad(want_tt.sum(), (h_text, q_text))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


# --- head_k_pooling_loss ----------------------------------------------------------------------

POOLING_CASES = [
    # (lengths, reduction, path)
    ((1, 2, 7, 33, 128), "mean", "keys in registers, one reduction block"),
    ((300, 129, 3), "none", "keys re-read past 128 segments, per-utterance gradient scaling"),
    ((5, 1, 64), "sum", "sum"),
]


@pytest.mark.parametrize("lengths,reduction,path", POOLING_CASES,
                         ids=[c[-1] for c in POOLING_CASES])
@pytest.mark.parametrize("dtype", CUDA_DTYPES, ids=str)
def test_head_k_pooling_loss(lengths, reduction, path, dtype):
    lengths = torch.tensor(lengths)
    logits = _randn(int(lengths.sum()), 5, seed=len(lengths)).to(torch.bfloat16).double()
    labels = torch.arange(len(lengths)) % 5
    kwargs = dict(k=0.7, neutral_class=2, negative_weight=0.5, reduction=reduction)
    optest.check_against_reference(
        lambda x, n, y: head_k_pooling_loss(x, n, y, **kwargs),
        lambda x, n, y: head_k_pooling_loss_reference(x, n, y, **kwargs),
        [logits, lengths, labels], dtype=dtype, device="cuda", grad_outputs_in_dtype=True)


def test_head_k_pooling_loss_without_gradient():
    """compute_grad=False: the kernel writes the losses only."""
    lengths = torch.tensor([4, 9], device="cuda")
    logits = torch.randn(13, 3, device="cuda")
    labels = torch.tensor([0, 2], device="cuda")
    loss, grad = torch.ops.fastser.head_k_pooling_loss(logits, lengths, labels, 0.5, None, 1.0,
                                                        "mean", False)
    assert grad.numel() == 0
    want = head_k_pooling_loss_reference(logits.double(), lengths, labels, k=0.5)
    torch.testing.assert_close(loss.double(), want, atol=1e-6, rtol=1e-6)
