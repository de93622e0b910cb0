"""fastser.ops.cross_attention (docs/ops.md) against the reference, float64, autograd
machinery, compilation, TorchScript and bad input."""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

import optest
from fastser.ops import cross_attention
from fastser.ops.reference import cross_attention_loop_reference, cross_attention_reference

OP = torch.ops.fastser.cross_attention
BACKWARD_OP = torch.ops.fastser.cross_attention_backward
SCALE = 0.6


def make_inputs(batch=5, frames=128, heads=3, dim=5, *, edges=(1, 2, 7, 128), seed=0,
                ragged=True):
    """float64 CPU (h_text, h_audio, q_text, q_audio, lengths); padding holds large values so
    that any leak into the results shows."""
    gen = torch.Generator().manual_seed(seed)
    h_text = torch.randn(batch, frames, heads, dim, generator=gen, dtype=torch.float64)
    h_audio = torch.randn(batch, frames, heads, dim, generator=gen, dtype=torch.float64)
    q_text = torch.randn(heads, dim, generator=gen, dtype=torch.float64)
    q_audio = torch.randn(heads, dim, generator=gen, dtype=torch.float64)
    lengths = None
    if ragged:
        lengths = optest.ragged_lengths(batch, frames, edges=edges, generator=gen)
        pad = optest.padding_mask(lengths, frames)[:, :, None, None]
        h_text = h_text.masked_fill(pad, 50.0)
        h_audio = h_audio.masked_fill(pad, -50.0)
    return h_text, h_audio, q_text, q_audio, lengths


def fused(h_text, h_audio, q_text, q_audio, lengths):
    return cross_attention(h_text, h_audio, q_text, q_audio, lengths, scale=SCALE)


def reference(h_text, h_audio, q_text, q_audio, lengths):
    return cross_attention_reference(h_text, h_audio, q_text, q_audio, lengths, SCALE)


# --- values and gradients -------------------------------------------------------------------

@pytest.mark.parametrize("device", optest.devices())
def test_matches_reference_on_ragged_batches(device):
    """Lengths 1, 2, 7, 128 and random ones.  float16/bfloat16 (2x rule) use d = 16: with
    d = 5, q's gradient has 15 entries and its max error is too noisy a statistic."""
    for dtype in optest.dtypes_for(device):
        dim = 16 if dtype in optest.LOW_PRECISION else 5
        inputs = make_inputs(heads=3 if dim == 5 else 4, dim=dim)
        optest.check_against_reference(fused, reference, inputs, dtype=dtype, device=device)


@pytest.mark.parametrize("device", optest.devices())
@pytest.mark.parametrize("sizes", [(3, 9, 2, 16), (2, 70, 4, 64), (1, 1, 1, 1), (2, 33, 1, 130),
                                   (2, 5, 1, 1000)],
                         ids=["d16", "d64", "all-one", "d130", "d1000"])
def test_matches_reference_without_lengths(device, sizes):
    inputs = make_inputs(*sizes, ragged=False)
    optest.check_against_reference(fused, reference, inputs, dtype=torch.float32, device=device)


def test_loop_reference_agrees_with_reference():
    inputs = make_inputs(batch=4, frames=20, edges=(1, 2, 7))
    optest.check_against_reference(
        lambda *x: cross_attention_loop_reference(*x, SCALE), reference, inputs,
        dtype=torch.float64, device="cpu")


@pytest.mark.parametrize("device", optest.devices())
@pytest.mark.parametrize("dim", [5, 64, 129, 1000])
def test_backward_recomputes_exactly_the_forward_weights(device, dim):
    """With one frame, α = 1 exactly, so dh_text = g_tt and dh_audio = 0 bit for bit (the
    backward's recomputed scores must equal the forward's), and dq = 0 up to rounding."""
    h_text, h_audio, q_text, q_audio, _ = optest.cast_inputs(
        make_inputs(4, 3, 2, dim, ragged=False), torch.float32, device)
    lengths = torch.ones(4, dtype=torch.int64, device=device)
    stats = OP(h_text, h_audio, q_text, q_audio, lengths, SCALE)[4]
    grad = torch.randn(4, 2, dim, device=device)
    d_text, d_audio, dq_text, dq_audio = BACKWARD_OP(grad, None, None, None, h_text, h_audio,
                                                     q_text, q_audio, lengths, stats, SCALE)
    assert torch.equal(d_text[:, 0], grad)
    assert torch.count_nonzero(d_text[:, 1:]) == 0 and torch.count_nonzero(d_audio) == 0
    torch.testing.assert_close(dq_text, torch.zeros_like(dq_text), rtol=0, atol=1e-5)
    assert torch.count_nonzero(dq_audio) == 0


def test_gradcheck_float64():
    """The non-crossed contexts depend on every input; the crossed ones are linear in their
    value input (the stopped weights make their other gradients zero, checked below)."""
    h_text, h_audio, q_text, q_audio, lengths = make_inputs(4, 9, 2, 3, edges=(1, 2, 7))
    optest.gradcheck64(lambda *x: fused(*x, lengths)[0::2], (h_text, h_audio, q_text, q_audio))
    optest.gradcheck64(lambda h_a: fused(h_text, h_a, q_text, q_audio, lengths)[1], (h_audio,))
    optest.gradcheck64(lambda h_t: fused(h_t, h_audio, q_text, q_audio, lengths)[3], (h_text,))


@pytest.mark.parametrize("device", optest.devices())
@pytest.mark.parametrize("crossed, stopped", [(1, ("h_text", "q_text", "q_audio")),
                                              (3, ("h_audio", "q_audio", "q_text"))],
                         ids=["c_ta", "c_at"])
def test_crossed_terms_stop_the_gradient(device, crossed, stopped):
    """Back-propagating only through c_ta (c_at) gives exactly zero gradient to q_text and
    h_text (q_audio and h_audio), and the value gradient Σ sg(α) g to the other modality."""
    names = ("h_text", "h_audio", "q_text", "q_audio")
    inputs = optest.cast_inputs(make_inputs(), torch.float32, device, requires_grad=True)
    leaves = dict(zip(names, inputs[:4]))
    outputs = fused(*inputs)
    grad = torch.randn_like(outputs[crossed])
    grads = dict(zip(names, torch.autograd.grad(outputs[crossed], inputs[:4], grad,
                                                allow_unused=True, materialize_grads=True)))
    for name in stopped:
        assert torch.count_nonzero(grads[name]) == 0, f"gradient leaked into {name}"
    value = ({"h_text", "h_audio"} - set(stopped)).pop()
    want = torch.autograd.grad(reference(*inputs)[crossed], leaves[value], grad)[0]
    torch.testing.assert_close(grads[value], want)


@pytest.mark.parametrize("device", optest.devices())
def test_padding_takes_no_part(device):
    """NaN in the padding changes nothing, and padded frames get exactly zero gradient."""
    h_text, h_audio, q_text, q_audio, lengths = make_inputs(frames=40, edges=(1, 2, 7))
    pad = optest.padding_mask(lengths, 40)[:, :, None, None]
    poisoned = [h.masked_fill(pad, float("nan")) for h in (h_text, h_audio)]
    inputs = optest.cast_inputs([*poisoned, q_text, q_audio, lengths], torch.float32, device,
                                requires_grad=True)
    outputs = fused(*inputs)
    grads = torch.autograd.grad(outputs, inputs[:4], [torch.ones_like(o) for o in outputs])
    for b, n in enumerate(lengths.tolist()):
        alone = optest.cast_inputs([h_text[b:b + 1, :n], h_audio[b:b + 1, :n], q_text, q_audio],
                                   torch.float32, device)
        for got, want in zip(outputs, fused(*alone, None)):
            torch.testing.assert_close(got[b:b + 1], want)
        for g in grads[:2]:
            assert torch.count_nonzero(g[b, n:]) == 0
            assert g[b, :n].isfinite().all()
    assert all(g.isfinite().all() for g in grads[2:])


@pytest.mark.parametrize("device", optest.devices())
def test_non_contiguous_inputs_give_the_same_bits(device):
    h_text, h_audio, q_text, q_audio, lengths = optest.cast_inputs(
        make_inputs(4, 30, 3, 6, edges=(1, 30)), torch.float32, device)
    contiguous = fused(h_text, h_audio, q_text, q_audio, lengths)
    strided = (
        h_text.permute(0, 2, 1, 3).contiguous().permute(0, 2, 1, 3),  # unit inner stride
        torch.stack([h_audio, h_audio], dim=-1)[..., 0],  # inner stride 2
        q_text.t().contiguous().t(),
        q_audio,
        torch.stack([lengths, lengths], dim=-1)[:, 1],
    )
    assert not any(x.is_contiguous() for i, x in enumerate(strided) if i != 3)
    for got, want in zip(fused(*strided), contiguous):
        assert torch.equal(got, want)


@pytest.mark.parametrize("device", optest.devices())
def test_deterministic_including_gradients_and_thread_count(device):
    inputs = optest.cast_inputs(make_inputs(), torch.float32, device, requires_grad=True)

    def run():
        outputs = fused(*inputs)
        gen = torch.Generator().manual_seed(3)
        grads = [torch.randn(o.shape, generator=gen).to(device) for o in outputs]
        return [*outputs, *torch.autograd.grad(outputs, inputs[:4], grads)]

    first = run()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = run()
    finally:
        torch.set_num_threads(threads)
    for a, b, c in zip(first, run(), single):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_unused_outputs_get_no_gradient_tensor():
    """Autograd hands None for outputs that take no part; the backward treats them as zero."""
    inputs = optest.cast_inputs(make_inputs(3, 10, 2, 4, edges=(1,)), torch.float64, "cpu",
                                requires_grad=True)
    only_tt = torch.autograd.grad(fused(*inputs)[0].sum(), inputs[:4])
    with_zeros = torch.autograd.grad(fused(*inputs), inputs[:4],
                                     [torch.ones(3, 2, 4, dtype=torch.float64)] +
                                     [torch.zeros(3, 2, 4, dtype=torch.float64)] * 3)
    for a, b in zip(only_tt, with_zeros):
        assert torch.equal(a, b)


# --- PyTorch integration --------------------------------------------------------------------

@pytest.mark.parametrize("device", optest.devices())
@pytest.mark.parametrize("ragged", [True, False], ids=["lengths", "no-lengths"])
def test_opcheck(device, ragged):
    h_text, h_audio, q_text, q_audio, lengths = optest.cast_inputs(
        make_inputs(3, 11, 2, 5, edges=(1, 4), ragged=ragged), torch.float32, device,
        requires_grad=True)
    optest.opcheck(OP.default, (h_text, h_audio, q_text, q_audio, lengths, SCALE))


def test_torch_compile_fullgraph_forward_and_backward():
    inputs = optest.cast_inputs(make_inputs(3, 12, 2, 4, edges=(1, 5)), torch.float32, "cpu")
    optest.check_compiled(fused, inputs)
    leaves = optest.cast_inputs(inputs, torch.float32, "cpu", requires_grad=True)

    def loss(*x):
        c_tt, c_ta, c_aa, c_at = fused(*x)
        return (c_tt * c_ta).sum() + (c_aa - c_at).pow(2).sum()

    torch._dynamo.reset()
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    got = torch.autograd.grad(compiled(*leaves), leaves[:4])
    want = torch.autograd.grad(loss(*leaves), leaves[:4])
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_flop_counter_counts_forward_and_backward():
    batch, frames, heads, dim = 3, 10, 2, 4
    inputs = optest.cast_inputs(make_inputs(batch, frames, heads, dim, edges=(1,)),
                                torch.float32, "cpu", requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        outputs = fused(*inputs)
        forward = counter.get_total_flops()
        torch.autograd.backward(outputs, [torch.ones_like(o) for o in outputs])
    assert forward == 12 * batch * frames * heads * dim
    assert counter.get_total_flops() == forward + 28 * batch * frames * heads * dim


def test_scripted_module_saved_and_run_in_a_fresh_process(tmp_path):
    from fastser.nn import CrossAttention

    torch.manual_seed(0)
    module = CrossAttention(num_heads=2, head_dim=4, scale=SCALE)
    h_text, h_audio = torch.randn(3, 7, 8), torch.randn(3, 7, 8)
    lengths = torch.tensor([7, 1, 4])
    path = tmp_path / "cross_attention.pt"
    loaded = optest.script_roundtrip(module, (h_text, h_audio, lengths), path)
    with torch.no_grad():
        expected = loaded(h_text, h_audio, lengths)
    optest.check_scripted_in_fresh_process(path, (h_text, h_audio, lengths), expected, tmp_path)


# --- bad input ------------------------------------------------------------------------------

def _bad_cases():
    """(name, change to the valid float32 inputs, message pattern) for every check."""
    meta = torch.device("meta")
    return [
        ("h_text rank", lambda x: x.update(h_text=x["h_text"][0]),
         r"h_text must be 4-D \(B, L, H, d\)"),
        ("h_audio rank", lambda x: x.update(h_audio=x["h_audio"][..., 0]), r"h_audio must be 4-D"),
        ("q_text rank", lambda x: x.update(q_text=x["q_text"][0]), r"q_text must be 2-D \(H, d\)"),
        ("q_audio rank", lambda x: x.update(q_audio=x["q_audio"][None]), r"q_audio must be 2-D"),
        ("shape mismatch", lambda x: x.update(h_audio=x["h_audio"][:, :-1]),
         r"h_audio must have the shape of h_text"),
        ("q_text heads", lambda x: x.update(q_text=x["q_text"][:1]),
         r"q_text must have shape \(H, d\) = \(2, 4\)"),
        ("q_audio dim", lambda x: x.update(q_audio=x["q_audio"][:, :3]),
         r"q_audio must have shape \(H, d\) = \(2, 4\)"),
        ("integer h_text", lambda x: x.update(h_text=x["h_text"].long()), r"h_text must be float"),
        ("integer q_audio", lambda x: x.update(q_audio=x["q_audio"].int()),
         r"q_audio must be float"),
        ("mixed dtypes", lambda x: x.update(h_audio=x["h_audio"].double()),
         r"h_audio must have the dtype of h_text"),
        ("mixed q dtype", lambda x: x.update(q_text=x["q_text"].half()),
         r"q_text must have the dtype of h_text"),
        ("mixed devices", lambda x: x.update(q_audio=x["q_audio"].to(meta)),
         r"q_audio must be on the device of h_text"),
        ("lengths dtype", lambda x: x.update(lengths=x["lengths"].int()), r"lengths must be int64"),
        ("lengths shape", lambda x: x.update(lengths=x["lengths"][:2]),
         r"lengths must have shape \(3\)"),
        ("lengths device", lambda x: x.update(lengths=x["lengths"].to(meta)),
         r"lengths must be on the device"),
        ("nan scale", lambda x: x.update(scale=float("nan")), r"scale must be finite"),
        ("inf scale", lambda x: x.update(scale=float("-inf")), r"scale must be finite"),
        ("no frames", lambda x: x.update(h_text=x["h_text"][:, :0], h_audio=x["h_audio"][:, :0],
                                         lengths=None), r"h_text must have at least one frame"),
    ]


def _valid():
    h_text, h_audio, q_text, q_audio, lengths = optest.cast_inputs(
        make_inputs(3, 6, 2, 4, edges=(1, 6)), torch.float32, "cpu")
    return dict(h_text=h_text, h_audio=h_audio, q_text=q_text, q_audio=q_audio, lengths=lengths,
                scale=SCALE)


def _call(args):
    return OP(args["h_text"], args["h_audio"], args["q_text"], args["q_audio"], args["lengths"],
              args["scale"])


@pytest.mark.parametrize("name, change, message", _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_bad_input_raises_a_clear_error_eagerly_and_in_the_fake_kernel(name, change, message):
    args = _valid()
    change(args)
    with pytest.raises(ValueError, match="fastser.cross_attention: " + message):
        cross_attention(args["h_text"], args["h_audio"], args["q_text"], args["q_audio"],
                        args["lengths"], scale=args["scale"])
    with FakeTensorMode() as mode:
        fake = {k: mode.from_tensor(v) if isinstance(v, torch.Tensor) else v
                for k, v in args.items()}
        with pytest.raises(ValueError, match="fastser.cross_attention: " + message):
            _call(fake)


@pytest.mark.parametrize("lengths, bound", [([1, 0, 6], 0), ([1, 7, 6], 7), ([-2, 3, 3], -2)])
def test_lengths_outside_the_padded_length_are_rejected(lengths, bound):
    args = _valid()
    args["lengths"] = torch.tensor(lengths)
    with pytest.raises(ValueError, match=r"every entry of lengths must be in \[1, 6\].*"
                                         + str(bound)):
        _call(args)


def test_cuda_head_dimension_limit_is_a_clear_error_in_the_fake_kernel():
    with FakeTensorMode():
        h = torch.empty(2, 3, 1, 1025, device="cuda")
        q = torch.empty(1, 1025, device="cuda")
        with pytest.raises(ValueError, match=r"head dimension d of h_text must be at most 1024"):
            OP(h, h, q, q, None, 1.0)


def test_float64_on_cuda_is_a_clear_error_in_the_fake_kernel():
    """float64 is CPU-only for every op (csrc/common/checks.h check_device_dtype)."""
    with FakeTensorMode():
        h = torch.empty(2, 3, 1, 4, device="cuda", dtype=torch.float64)
        q = torch.empty(1, 4, device="cuda", dtype=torch.float64)
        with pytest.raises(ValueError, match=r"cross_attention: h_text is float64, which is "
                                             r"supported on the CPU only; got it on cuda"):
            OP(h, h, q, q, None, 1.0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_rejects_float64():
    h = torch.zeros(2, 3, 1, 4, device="cuda", dtype=torch.float64)
    q = torch.zeros(1, 4, device="cuda", dtype=torch.float64)
    with pytest.raises(ValueError, match=r"h_text is float64, which is supported on the CPU"):
        cross_attention(h, h, q, q)


def test_backward_op_checks_its_arguments():
    args = _valid()
    outputs = _call(args)
    inputs = (args["h_text"], args["h_audio"], args["q_text"], args["q_audio"], args["lengths"])
    good = [*outputs[:4], *inputs, outputs[4], SCALE]
    bad_grad = list(good)
    bad_grad[1] = outputs[1][:, :1]
    with pytest.raises(ValueError, match=r"cross_attention_backward: grad_ta must have shape"):
        BACKWARD_OP(*bad_grad)
    bad_stats = list(good)
    bad_stats[9] = outputs[4].double()
    with pytest.raises(ValueError, match=r"softmax_stats must be Float"):
        BACKWARD_OP(*bad_stats)
    with FakeTensorMode() as mode:
        fake = [mode.from_tensor(x) if isinstance(x, torch.Tensor) else x for x in bad_grad]
        with pytest.raises(ValueError, match=r"cross_attention_backward: grad_ta must have shape"):
            BACKWARD_OP(*fake)
