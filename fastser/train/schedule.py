"""Learning-rate schedules: linear warm-up, then cosine decay to ``final_fraction`` x lr
("warmup_cosine") or the constant learning rate ("constant")."""

from __future__ import annotations

import math

import torch

#: The schedules of :func:`make_schedule` (TrainConfig.schedule).
SCHEDULES = ("warmup_cosine", "constant")


def make_schedule(kind: str, optimizer: torch.optim.Optimizer, total_steps: int,
                  warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule ``kind`` (one of :data:`SCHEDULES`): linear warm-up over
    ``warmup_steps``, then cosine decay to 0 at ``total_steps`` or the constant rate."""
    if kind not in SCHEDULES:
        raise ValueError(f"make_schedule: kind must be one of {SCHEDULES}, got {kind!r}")
    if kind == "warmup_cosine":
        return warmup_cosine(optimizer, total_steps, warmup_steps)
    return warmup_cosine(optimizer, total_steps, warmup_steps, final_fraction=1.0)


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                  final_fraction: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    if total_steps < 1:
        raise ValueError(f"warmup_cosine: total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_cosine: warmup_steps must be in [0, {total_steps}], "
                         f"got {warmup_steps}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return final_fraction + (1.0 - final_fraction) * cosine

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
