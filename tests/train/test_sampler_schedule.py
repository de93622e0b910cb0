"""Global batches are the same on one process or many; warm-up + cosine schedule."""

import pytest
import torch

from fastser.train.sampler import GlobalBatchSampler
from fastser.train.schedule import make_schedule, warmup_cosine


def test_ranks_split_exactly_the_single_process_batches():
    single = GlobalBatchSampler(23, 6, seed=5)
    ranks = [GlobalBatchSampler(23, 6, seed=5, rank=r, world_size=2) for r in range(2)]
    for s in [single, *ranks]:
        s.set_epoch(4)
    one = list(single)
    two = list(zip(*[list(r) for r in ranks]))
    assert len(one) == len(two) == 4  # 6+6+6+5
    for batch, (a, b) in zip(one, two):
        assert sorted(batch) == sorted(a + b)
        assert len(a) - len(b) in (0, 1)


def test_epochs_reshuffle_reproducibly():
    s = GlobalBatchSampler(10, 3, seed=1)
    first = list(s)
    s.set_epoch(1)
    second = list(s)
    s.set_epoch(0)
    assert list(s) == first and second != first
    assert sorted(i for b in first for i in b) == list(range(10))


def test_sampler_rejects_bad_sizes():
    with pytest.raises(ValueError, match="empty"):
        GlobalBatchSampler(0, 4)
    with pytest.raises(ValueError, match="smaller than the number of processes"):
        GlobalBatchSampler(10, 1, world_size=2)


def test_warmup_then_cosine():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, total_steps=10, warmup_steps=4, final_fraction=0.1)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_cosine(opt, total_steps=3, warmup_steps=5)


@pytest.mark.parametrize("kind", ["constant", "warmup_cosine"])
def test_schedules_by_name(kind):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = make_schedule(kind, opt, total_steps=8, warmup_steps=2)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:2] == pytest.approx([1.0, 2.0])
    if kind == "constant":
        assert lrs[2:] == pytest.approx([2.0] * 6)
    else:
        assert lrs[-1] < lrs[2] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="kind must be one of"):
        make_schedule("step", opt, total_steps=8, warmup_steps=0)
