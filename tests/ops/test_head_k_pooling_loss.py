"""fastser.ops.head_k_pooling_loss (docs/ops.md) against the vectorised and loop
references, float64, the contract's selection rule and zero-gradient rule, NaN semantics, and
the custom-op machinery (opcheck, gradcheck, torch.compile, fake kernels).  The module and
TorchScript: tests/losses/test_head_k_pooling.py."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

import optest
from fastser.ops import head_k_pooling_loss
from fastser.ops.head_k_pooling_loss import BACKWARD_FLOPS_PER_LOGIT, FORWARD_FLOPS_PER_LOGIT
from fastser.ops.reference import head_k_pooling_loss_loop, head_k_pooling_loss_reference

OP = torch.ops.fastser.head_k_pooling_loss
BACKWARD_OP = torch.ops.fastser.head_k_pooling_loss_backward
CLASSES = 5
NEUTRAL = 2
# Segment counts of the ragged batches: the contract's edge sizes plus a few small ones.
EDGE_LENGTHS = (1, 2, 3, 10, 97, 4, 7)
KS = (0.1, 0.5, 0.7, 1.0)
REDUCTIONS = ("mean", "sum", "none")


def make_batch(lengths=EDGE_LENGTHS, classes=CLASSES, seed=0, integer=False):
    """float64 (S, C) logits that every dtype represents exactly (so all dtypes select the
    same segments), lengths and labels covering every class (and so the neutral one).
    ``integer``: logits in {-2, ..., 2}, full of ties."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths, dtype=torch.int64)
    batch, segments = len(lengths), int(lengths.sum())
    labels = torch.randperm(batch, generator=gen) % classes
    if integer:
        logits = torch.randint(-2, 3, (segments, classes), generator=gen).double()
    else:
        logits = (2 * torch.randn(segments, classes, generator=gen, dtype=torch.float64))
        logits = logits.to(torch.bfloat16).double()
    return logits, lengths, labels


def fused_fn(**kwargs):
    return lambda logits, lengths, labels: head_k_pooling_loss(logits, lengths, labels, **kwargs)


def reference_fn(reference=head_k_pooling_loss_reference, **kwargs):
    return lambda logits, lengths, labels: reference(logits, lengths, labels, **kwargs)


def expected_selection(column, k):
    """Indices of the K selected segments of one utterance, by the contract, in plain Python."""
    n = len(column)
    top = min(n, max(1, math.ceil(k * n - 1e-6)))
    order = sorted(range(n), key=lambda s: -column[s])  # stable: ties keep index order
    return set(order[:top])


def kernel_selection(logits, lengths, labels, k, device="cpu"):
    """Selected segments per utterance, read off the kernel's gradient: the label-class logit
    of a selected segment has gradient (sigmoid - 1) / (K C) != 0, of any other segment 0."""
    x = logits.to(device).requires_grad_()
    head_k_pooling_loss(x, lengths.to(device), labels.to(device), k=k, reduction="sum").backward()
    label_grad = x.grad.cpu()[torch.arange(len(x)), labels.repeat_interleave(lengths)]
    parts = label_grad.split(lengths.tolist())
    return [set(torch.nonzero(part).flatten().tolist()) for part in parts]


# --- values and gradients -------------------------------------------------------------------

def assert_matches_reference(device, inputs, **kwargs):
    """The fused op's values and gradients equal the reference's in every dtype of ``device``."""
    for dtype in optest.dtypes_for(device):
        optest.check_against_reference(fused_fn(**kwargs), reference_fn(**kwargs), inputs,
                                       dtype=dtype, device=device, grad_outputs_in_dtype=True)


@pytest.mark.parametrize("device", optest.devices())
@pytest.mark.parametrize("neutral_class", [None, NEUTRAL])
@pytest.mark.parametrize("k", KS)
def test_per_utterance_loss_and_grad_match_reference(device, k, neutral_class):
    inputs = make_batch()
    assert_matches_reference(device, inputs, k=k, neutral_class=neutral_class,
                             negative_weight=0.5, reduction="none")


@pytest.mark.parametrize("device", optest.devices())
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_reductions_match_reference_in_every_dtype(device, reduction):
    inputs = make_batch(seed=1)
    assert_matches_reference(device, inputs, k=0.7, neutral_class=NEUTRAL, reduction=reduction)


@pytest.mark.parametrize("device", optest.devices())
@pytest.mark.parametrize("k", KS)
def test_ties_match_reference(device, k):
    # Integer logits: most label-class columns hold equal values, so the tie rule decides.
    # Lengths past 128 take the CUDA kernel's selection beyond its register cache.
    inputs = make_batch(lengths=(300, 129, 128, 33, 1, 2, 3, 10), integer=True, seed=2)
    kwargs = dict(k=k, neutral_class=NEUTRAL, reduction="none")
    optest.check_against_reference(fused_fn(**kwargs), reference_fn(**kwargs), inputs,
                                   dtype=torch.float32, device=device)


@pytest.mark.parametrize("shape", [(1, 1), (3, 1), (4, 2), (6, 3)])
def test_few_classes(shape):
    # C = 1: no negative class at all; C = 2 with a neutral class: none for non-neutral labels.
    n, classes = shape
    inputs = make_batch(lengths=(n, 1, n + 1), classes=classes, seed=3)
    for neutral_class in (None, classes - 1):
        kwargs = dict(k=0.5, neutral_class=neutral_class, reduction="none")
        optest.check_against_reference(fused_fn(**kwargs), reference_fn(**kwargs), inputs,
                                       dtype=torch.float64, device="cpu")


def test_loop_and_vectorised_references_agree():
    for integer in (False, True):
        logits, lengths, labels = make_batch(integer=integer, seed=4)
        for k in KS:
            for neutral_class in (None, NEUTRAL):
                for reduction in REDUCTIONS:
                    kwargs = dict(k=k, neutral_class=neutral_class, negative_weight=0.3,
                                  reduction=reduction)
                    optest.check_against_reference(
                        reference_fn(head_k_pooling_loss_loop, **kwargs), reference_fn(**kwargs),
                        (logits, lengths, labels), dtype=torch.float64, device="cpu")


@pytest.mark.parametrize("device", optest.devices())
def test_k_one_is_the_mean_of_one_vs_rest_bce(device):
    logits, lengths, labels = make_batch(seed=5)
    expected = torch.stack([
        F.binary_cross_entropy_with_logits(z, F.one_hot(y, CLASSES).double().expand_as(z))
        for z, y in zip(logits.split(lengths.tolist()), labels)
    ]).mean()
    got = head_k_pooling_loss(logits.float().to(device), lengths.to(device), labels.to(device),
                              k=1.0, neutral_class=NEUTRAL)
    torch.testing.assert_close(got.cpu().double(), expected, rtol=1e-6, atol=1e-6)


# --- the selection rule ---------------------------------------------------------------------

@pytest.mark.parametrize("n, k, top", [
    (10, 0.7, 7), (20, 0.35, 7), (3, 0.7, 3), (1, 0.1, 1), (97, 0.1, 10), (2, 0.5, 1),
    (10, 1.0, 10), (5, 0.2, 1), (6, 0.5, 3), (97, 0.7, 68),
])
def test_number_of_selected_segments(n, k, top):
    # Distinct label-class logits: the kernel's selection is exactly the top-K of the column.
    gen = torch.Generator().manual_seed(n)
    logits = torch.randn(n, CLASSES, dtype=torch.float64, generator=gen)
    selected, = kernel_selection(logits, torch.tensor([n]), torch.tensor([1]), k)
    assert len(selected) == top
    assert selected == expected_selection(logits[:, 1].tolist(), k)


@pytest.mark.parametrize("device", optest.devices())
def test_ties_go_to_the_lower_segment_index(device):
    columns = [
        [1, 3, 3, 2, 3, 1, 0, 3, 2, 2],   # K = 7 of 10: four 3s, three 2s
        [0, 0, 0, 0, 0, 0],               # all equal: the first K
        [-1, 5, -1, -1, 5, -1, -1],       # K = 5: both 5s, then the first three -1s
        [2] * 150 + [3] * 40,             # past the CUDA register cache
    ]
    for column in columns:
        n = len(column)
        logits = torch.zeros(n, CLASSES, dtype=torch.float64)
        logits[:, 4] = torch.tensor(column, dtype=torch.float64)
        selected, = kernel_selection(logits, torch.tensor([n]), torch.tensor([4]), 0.7, device)
        assert selected == expected_selection(column, 0.7)


@pytest.mark.parametrize("device", optest.devices())
def test_minus_zero_ties_with_zero(device):
    column = [-0.0, 0.0, -0.0, 0.0]
    logits = torch.zeros(4, 2)
    logits[:, 0] = torch.tensor(column)
    selected, = kernel_selection(logits, torch.tensor([4]), torch.tensor([0]), 0.5, device)
    assert selected == {0, 1}


@pytest.mark.parametrize("device", optest.devices())
def test_zero_gradient_exactly_outside_the_terms(device):
    logits, lengths, labels = make_batch(seed=6)
    x = logits.to(device).requires_grad_()
    head_k_pooling_loss(x, lengths.to(device), labels.to(device), k=0.5,
                        neutral_class=NEUTRAL).backward()
    grad = x.grad.cpu()
    starts = torch.cumsum(lengths, 0) - lengths
    unused = torch.zeros_like(grad, dtype=torch.bool)
    for start, n, label in zip(starts.tolist(), lengths.tolist(), labels.tolist()):
        selected = expected_selection(logits[start:start + n, label].tolist(), 0.5)
        for s in set(range(n)) - selected:
            for c in range(CLASSES):
                eligible = c != label and (label == NEUTRAL or c != NEUTRAL)
                unused[start + s, c] = not eligible
    assert unused.any() and (~unused).any()
    assert (grad[unused] == 0).all()
    assert (grad[~unused] != 0).all()


# --- NaN and infinity -----------------------------------------------------------------------

def _nan_cases():
    """(row, column) of one NaN in the batch make_batch(lengths=(6, 5)), labels (0, 3), k=0.5,
    neutral class 2, and whether utterance 0's loss becomes NaN."""
    return [
        ((4, 0), True),    # label-class column: NaN ranks first, so it is selected
        ((0, 1), True),    # another class of a selected segment (segment 0 holds the max)
        ((5, 1), True),    # eligible negative class of an unselected segment
        ((5, 2), False),   # neutral class of an unselected segment: enters no term
    ]


@pytest.mark.parametrize("device", optest.devices())
@pytest.mark.parametrize("position, nan_loss", _nan_cases())
def test_nan_semantics(device, position, nan_loss):
    lengths, labels = torch.tensor([6, 5]), torch.tensor([0, 3])
    logits = torch.zeros(11, 3 + 1, dtype=torch.float64)
    logits[:6, 0] = torch.tensor([9.0, 4.0, 6.0, 1.0, 2.0, -3.0])  # selected: 0, 2, 1
    logits[6:] = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    logits[position] = math.nan
    kwargs = dict(k=0.5, neutral_class=NEUTRAL, reduction="none")
    x = logits.float().to(device).requires_grad_()
    loss = head_k_pooling_loss(x, lengths.to(device), labels.to(device), **kwargs)
    loss.sum().backward()
    for reference in (head_k_pooling_loss_reference, head_k_pooling_loss_loop):
        x64 = logits.clone().requires_grad_()
        want = reference(x64, lengths, labels, **kwargs)
        want.sum().backward()
        torch.testing.assert_close(loss.cpu().double(), want, equal_nan=True, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(x.grad.cpu().double(), x64.grad, equal_nan=True, rtol=1e-5,
                                   atol=1e-6)
    assert bool(loss[0].isnan()) == nan_loss and loss[1].isfinite()
    grad_at_nan = x.grad[position].item()
    assert math.isnan(grad_at_nan) if nan_loss else grad_at_nan == 0.0
    assert bool(head_k_pooling_loss(x, lengths.to(device), labels.to(device), k=0.5,
                                    neutral_class=NEUTRAL).isnan()) == nan_loss


@pytest.mark.parametrize("device", optest.devices())
def test_infinite_logits_give_the_limits(device):
    # One segment, two classes, label 0: the loss is (BCE(z0, 1) + BCE(z1, 0)) / 2.
    cases = [((math.inf, -math.inf), 0.0, (0.0, 0.0)),
             ((-math.inf, -math.inf), math.inf, (-0.5, 0.0)),
             ((math.inf, math.inf), math.inf, (0.0, 0.5))]
    for (z0, z1), loss, grad in cases:
        x = torch.tensor([[z0, z1]], device=device, requires_grad=True)
        out = head_k_pooling_loss(x, torch.tensor([1], device=device),
                                  torch.tensor([0], device=device))
        out.backward()
        assert out.item() == loss
        assert x.grad.cpu().tolist() == [list(grad)]


# --- the custom-op machinery ----------------------------------------------------------------

def _op_args(device="cpu", reduction="mean", compute_grad=True):
    logits, lengths, labels = make_batch(seed=7)
    x = logits.float().to(device).requires_grad_(compute_grad)
    return (x, lengths.to(device), labels.to(device), 0.7, NEUTRAL, 0.5, reduction, compute_grad)


@pytest.mark.parametrize("device", optest.devices())
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_opcheck(device, reduction):
    optest.opcheck(OP, _op_args(device, reduction))
    optest.opcheck(OP, _op_args(device, reduction, compute_grad=False))
    _, grad_logits = OP(*_op_args(device, reduction))
    lengths = _op_args(device)[1]
    grad_loss = torch.randn(len(lengths) if reduction == "none" else (), device=device)
    optest.opcheck(BACKWARD_OP, (grad_loss, grad_logits, lengths, reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_float64(reduction):
    logits, lengths, labels = make_batch(lengths=(1, 2, 3, 10, 9), seed=8)
    gen = torch.Generator().manual_seed(8)
    logits = torch.randn(logits.shape, dtype=torch.float64, generator=gen)  # no ties
    optest.gradcheck64(
        lambda x: head_k_pooling_loss(x, lengths, labels, k=0.5, neutral_class=NEUTRAL,
                                      negative_weight=0.7, reduction=reduction), (logits,))


def test_non_contiguous_logits():
    logits, lengths, labels = make_batch(seed=9)
    strided = logits.t().contiguous().t()
    assert not strided.is_contiguous()
    torch.testing.assert_close(head_k_pooling_loss(strided, lengths, labels, reduction="none"),
                               head_k_pooling_loss(logits, lengths, labels, reduction="none"),
                               rtol=0, atol=0)


@pytest.mark.parametrize("device", optest.devices())
def test_deterministic(device):
    args = _op_args(device)
    optest.assert_deterministic(OP, args)
    big = torch.randn(40000, CLASSES, device=device)
    lengths = torch.full((1000,), 40, device=device)
    labels = torch.arange(1000, device=device) % CLASSES
    optest.assert_deterministic(OP, (big, lengths, labels, 0.7, None, 1.0, "mean", True))


def test_torch_compile_fullgraph_forward_and_backward():
    logits, lengths, labels = make_batch(seed=10)
    logits = logits.float()

    def loss_fn(x, lengths, labels):
        return head_k_pooling_loss(x, lengths, labels, k=0.7, neutral_class=NEUTRAL)

    optest.check_compiled(loss_fn, (logits, lengths, labels))
    compiled = torch.compile(loss_fn, fullgraph=True)
    eager_x, compiled_x = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    loss_fn(eager_x, lengths, labels).backward()
    compiled(compiled_x, lengths, labels).backward()
    torch.testing.assert_close(compiled_x.grad, eager_x.grad)


def test_flop_formula_counts_forward_and_backward():
    logits, lengths, labels = make_batch(seed=11)
    x = logits.float().requires_grad_()
    with FlopCounterMode(display=False) as counter:
        head_k_pooling_loss(x, lengths, labels).backward()
    per_logit = FORWARD_FLOPS_PER_LOGIT + BACKWARD_FLOPS_PER_LOGIT
    assert counter.get_total_flops() == per_logit * x.numel()


def test_no_gradient_without_compute_grad():
    args = list(_op_args())
    loss, grad = OP(*args[:-1], False)
    assert grad.numel() == 0
    with pytest.raises(RuntimeError, match="compute_grad=False"):
        loss.backward()


# --- bad input ------------------------------------------------------------------------------

def _bad_metadata_cases():
    """(changes to the op's arguments, name the error must start with): caught from metadata,
    so by the kernels and the fake kernel alike."""
    logits, lengths, labels = make_batch()
    return [
        (dict(logits=logits[0]), "logits must be 2-D"),
        (dict(logits=logits.long()), "logits must be float16"),
        (dict(logits=logits[:, :0]), "logits must have at least one class"),
        (dict(lengths=lengths.int()), "lengths must be int64"),
        (dict(lengths=lengths[None]), "lengths must be a 1-D"),
        (dict(lengths=lengths[:0], labels=labels[:0]), "lengths must hold at least one"),
        (dict(labels=labels.float()), "labels must be int64"),
        (dict(labels=labels[:-1]), "labels must have shape"),
        (dict(k=0.0), "k must be in"),
        (dict(k=1.01), "k must be in"),
        (dict(k=math.nan), "k must be in"),
        (dict(neutral_class=CLASSES), "neutral_class must be"),
        (dict(neutral_class=-1), "neutral_class must be"),
        (dict(reduction="avg"), "reduction must be"),
        (dict(negative_weight=math.nan), "negative_weight must be finite"),
        (dict(negative_weight=-math.inf), "negative_weight must be finite"),
    ]


def _call(changes, fake=False):
    """The op on make_batch()'s arguments with ``changes``, on fake tensors when ``fake``."""
    logits, lengths, labels = make_batch()
    args = dict(logits=logits.float(), lengths=lengths, labels=labels, k=0.7,
                neutral_class=None, negative_weight=1.0, reduction="mean", compute_grad=True)
    args.update(changes)
    if not fake:
        return OP(*args.values())
    with FakeTensorMode() as mode:
        return OP(*[mode.from_tensor(v) if isinstance(v, torch.Tensor) else v
                    for v in args.values()])


@pytest.mark.parametrize("changes, message", _bad_metadata_cases())
def test_bad_metadata_raises_eagerly_and_in_the_fake_kernel(changes, message):
    for fake in (False, True):
        with pytest.raises(ValueError, match=f"fastser.head_k_pooling_loss: {message}"):
            _call(changes, fake)


SUM_MISMATCH = "lengths must sum to the number of rows"
LABEL_RANGE = r"every entry of labels must be in \[0, 5\)"


@pytest.mark.parametrize("changes, message", [  # make_batch(): lengths (1, 2, 3, 10, 97, 4, 7)
    (dict(lengths=torch.tensor([0, 2, 3, 10, 98, 4, 7])), "every entry of lengths must be >= 1"),
    (dict(lengths=torch.tensor([1, 2, 3, 10, 96, 4, 7])), SUM_MISMATCH),
    (dict(lengths=torch.tensor([1, 2, 3, 10, 97, 4, 8])), SUM_MISMATCH),
    (dict(lengths=torch.tensor([1, 2, 3, 10, 2**62, 4, 7])), SUM_MISMATCH),
    (dict(labels=torch.tensor([0, 1, 2, 3, 4, 5, 0])), LABEL_RANGE),
    (dict(labels=torch.tensor([0, 1, -1, 3, 4, 2, 0])), LABEL_RANGE),
])
def test_bad_values_raise(changes, message):
    with pytest.raises(ValueError, match=f"fastser.head_k_pooling_loss: {message}"):
        _call(changes)


def test_float64_on_cuda_is_a_clear_error_in_the_fake_kernel():
    """float64 is CPU-only for every op (csrc/common/checks.h check_device_dtype)."""
    message = r"is float64, which is supported on the CPU only; got it on cuda"
    with FakeTensorMode():
        logits = torch.empty(5, 3, device="cuda", dtype=torch.float64)
        lengths = torch.empty(2, device="cuda", dtype=torch.int64)
        with pytest.raises(ValueError, match="head_k_pooling_loss: logits " + message):
            OP(logits, lengths, lengths, 0.7, None, 1.0, "mean", True)
        with pytest.raises(ValueError, match="head_k_pooling_loss_backward: grad_loss " + message):
            BACKWARD_OP(torch.empty((), device="cuda", dtype=torch.float64),
                        logits, lengths, "mean")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_rejects_float64():
    logits = torch.zeros(5, 3, device="cuda", dtype=torch.float64)
    with pytest.raises(ValueError, match=r"logits is float64, which is supported on the CPU"):
        head_k_pooling_loss(logits, torch.tensor([2, 3], device="cuda"),
                            torch.tensor([0, 1], device="cuda"))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batch_past_the_grid_cap():
    """More utterances than the loss kernel's capped grid holds warps (2^20 blocks of 4):
    its warps stride over the rest, and every utterance gets its loss."""
    batch = 4 * 2 ** 20 + 7
    lengths = torch.ones(batch, dtype=torch.int64, device="cuda")
    labels = torch.arange(batch, device="cuda") % 2
    logits = torch.randn(batch, 2, device="cuda")
    got = head_k_pooling_loss(logits, lengths, labels, reduction="none")
    want = F.binary_cross_entropy_with_logits(
        logits, F.one_hot(labels, 2).float(), reduction="none").mean(1)
    torch.testing.assert_close(got, want)


def test_mismatched_devices_raise_the_fake_kernel_error():
    with pytest.raises(ValueError, match="lengths must be on the device"):
        _call(dict(logits=torch.zeros(124, CLASSES, device="meta")), fake=True)


def test_bad_backward_arguments_raise():
    _, grad_logits = OP(*_op_args(reduction="none"))
    lengths = _op_args()[1]
    good = dict(grad_loss=torch.ones(len(lengths)), grad_logits=grad_logits, lengths=lengths,
                reduction="none")
    cases = [
        (dict(reduction="avg"), "reduction must be"),
        (dict(grad_logits=grad_logits[0]), "grad_logits must be 2-D"),
        (dict(grad_logits=grad_logits.double()), "grad_logits must have the accumulation dtype"),
        (dict(grad_loss=torch.ones(())), "grad_loss must have shape"),
        (dict(grad_loss=torch.ones(len(lengths)), reduction="sum"), "grad_loss must be a scalar"),
        (dict(lengths=lengths.int()), "lengths must be int64"),
    ]
    for changes, message in cases:
        args = {**good, **changes}
        with pytest.raises(ValueError, match=f"head_k_pooling_loss_backward: {message}"):
            BACKWARD_OP(*args.values())
        with pytest.raises(ValueError, match=f"head_k_pooling_loss_backward: {message}"):
            with FakeTensorMode() as mode:
                BACKWARD_OP(*[mode.from_tensor(v) if isinstance(v, torch.Tensor) else v
                              for v in args.values()])
    bad_lengths = lengths.clone()
    bad_lengths[0] += 1
    with pytest.raises(ValueError, match="lengths must sum to the number of rows"):
        BACKWARD_OP(good["grad_loss"], grad_logits, bad_lengths, "none")
