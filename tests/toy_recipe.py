"""A tiny recipe for trainer tests: 8-d feature vectors whose class shifts their mean."""

from __future__ import annotations

import torch
from torch import nn

from fastser.train.recipe import Predictions, Recipe


class ToyRecipe(Recipe):
    name = "toy"

    def build_model(self) -> nn.Module:
        hidden = self.config.get("hidden", 16)
        return nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, self.num_classes))

    def item_from_audio(self, waveform, utterance=None, *, words=None):
        mean = waveform[: len(waveform) // 8 * 8].reshape(8, -1).abs().mean(dim=1) * 100
        label = -1 if utterance is None else self.label_index(utterance.label)
        return mean, label

    def export_module(self, model):
        return nn.Sequential(model, nn.Softmax(dim=1))

    def export_inputs(self, batch):
        return (batch["x"],)

    def collate(self, items):
        return {"x": torch.stack([x for x, _ in items]),
                "labels": torch.tensor([y for _, y in items], dtype=torch.int64)}

    def loss(self, model, batch):
        return nn.functional.cross_entropy(model(batch["x"]), batch["labels"])

    def predict(self, model, batch):
        return Predictions(model(batch["x"]).softmax(dim=1))


def make_items(n: int, num_classes: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=gen)
    x = torch.randn(n, 8, generator=gen) + 3.0 * nn.functional.one_hot(labels, 8).float()
    return [(x[i], int(labels[i])) for i in range(n)]


LABELS = ["neutral", "happy", "sad"]


class OtherToyRecipe(ToyRecipe):
    name = "toy2"
