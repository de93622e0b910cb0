"""The running mean of a model's weights over epochs (model selection by averaging the last
epochs' weights, TrainConfig.select="average")."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class WeightAverage:
    """The mean of the state dicts added so far: floating tensors (parameters and buffers such
    as batch-norm statistics) averaged, other tensors (counters) the latest. Its state is plain
    tensors, saved in training checkpoints so that a resumed run averages the same epochs."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: dict[str, torch.Tensor] = {}

    def add(self, model: nn.Module) -> None:
        """Fold the model's current weights into the mean."""
        self.count += 1
        for key, value in model.state_dict().items():
            value = value.detach()
            if key not in self.mean or not value.is_floating_point():
                self.mean[key] = value.clone()
            else:
                self.mean[key] += (value - self.mean[key]) / self.count

    def apply(self, model: nn.Module) -> None:
        """Load the mean into ``model``."""
        if self.count == 0:
            raise ValueError("WeightAverage: no weights were added")
        model.load_state_dict(self.mean)

    def state(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean}

    def load_state(self, state: dict[str, Any]) -> None:
        self.count, self.mean = int(state["count"]), dict(state["mean"])
