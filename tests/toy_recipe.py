"""A tiny recipe for trainer tests: 8-d feature vectors whose class shifts their mean."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fastser.errors import CorpusError
from fastser.train.kit import AugmentSettings, Settings, setting
from fastser.train.recipe import Predictions, Recipe, StepGradients, TrainBatches, TrainStep


@dataclass(frozen=True, kw_only=True)
class ToySettings(Settings):
    hidden: int = setting(16, "hidden units", low=1)


class ToyRecipe(Recipe):
    name = "toy"
    Settings = ToySettings
    min_samples = 8

    def build_model(self) -> nn.Module:
        hidden = self.settings.hidden
        return nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, self.num_classes))

    def make_item(self, waveform, utterance, *, words=None):
        mean = waveform[: len(waveform) // 8 * 8].reshape(8, -1).abs().mean(dim=1) * 100
        return mean, self.label_of(utterance)

    def item_features(self, item):
        return item[0][None]

    def with_features(self, item, features):
        return features[0], item[1]

    def item_label(self, item):
        return item[1]

    def export_module(self, model):
        return nn.Sequential(model, nn.Softmax(dim=1))

    def export_inputs(self, batch):
        return (batch["x"],)

    def make_batch(self, items):
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


class OwnGradientsToyRecipe(ToyRecipe):
    """The toy recipe through the trainer hooks: its own gradients (autograd of ``loss``) and
    its own batches (fixed consecutive slices, the second half of each epoch's batch list
    first)."""

    name = "toy_own"

    def step_gradients(self, model, batch):
        loss = self.loss(model, batch)
        return StepGradients(loss.detach(), list(torch.autograd.grad(loss, model.parameters())))

    def train_batches(self, train_items, batch_size, *, seed, rank, world_size):
        return SlicedBatches(self, train_items, batch_size)


class SlicedBatches(TrainBatches):
    def __init__(self, recipe, items, batch_size):
        self.recipe, self.items, self.batch_size, self.epoch = recipe, items, batch_size, 0
        self.served = []  # (epoch, first item) of every step served

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.items) // self.batch_size

    def __iter__(self):
        starts = [i * self.batch_size for i in range(len(self))]
        half = len(starts) // 2
        for start in starts[half:] + starts[:half]:
            self.served.append((self.epoch, start))
            chunk = self.items[start:start + self.batch_size]
            yield TrainStep(self.recipe.collate(chunk), 1.0, len(chunk))


class FittedToyRecipe(ToyRecipe):
    """The toy data through a model fitted in fit_extra (nearest class mean as a linear layer
    that gradient descent does not touch)."""

    name = "toy_fitted"
    gradient_trained = False

    def fit_extra(self, train_items):
        x = torch.stack([x for x, _ in train_items])
        y = torch.tensor([label for _, label in train_items])
        self.means = torch.stack([x[y == c].mean(0) for c in range(self.num_classes)])

    def build_model(self):
        model = nn.Linear(8, self.num_classes)
        model.requires_grad_(False)
        with torch.no_grad():  # argmax of -|x - mean|^2 / 2
            model.weight.copy_(self.means)
            model.bias.copy_(-0.5 * self.means.pow(2).sum(1))
        return model


@dataclass(frozen=True, kw_only=True)
class FramesToySettings(AugmentSettings):
    hidden: int = setting(16, "hidden units", low=1)


class FramesToyRecipe(ToyRecipe):
    """Toy items with feature frames (T, 8), averaged over time by the model; its settings
    take the augmentation settings."""

    name = "toy_frames"
    Settings = FramesToySettings
    min_samples = 32

    def make_item(self, waveform, utterance, *, words=None):
        """4 frames: the toy features of each quarter of the waveform."""
        quarters = waveform[: len(waveform) // 4 * 4].reshape(4, -1)
        return (torch.stack([super(FramesToyRecipe, self).make_item(q, None)[0]
                             for q in quarters]), self.label_of(utterance))

    def build_model(self):
        return nn.Sequential(MeanOverTime(), *super().build_model())

    def item_features(self, item):
        return item[0]

    def with_features(self, item, features):
        return features, item[1]


class MeanOverTime(nn.Module):
    def forward(self, x):
        return x.mean(dim=1)


def make_frame_items(n: int, num_classes: int = 3, seed: int = 0, frames: int = 6):
    """Items (frames (T, 8), label): the toy vectors plus noise per frame."""
    gen = torch.Generator().manual_seed(seed + 100)
    return [(x + 0.5 * torch.randn(frames, 8, generator=gen), label)
            for x, label in make_items(n, num_classes, seed)]


class NeedyToyRecipe(ToyRecipe):
    """A toy method that cannot run on any corpus (for the leaderboard's skip rule)."""

    name = "toy_needy"

    def requirements(self, corpus):
        return [f"{corpus.name} lacks what toy_needy needs"]


class FailingToyRecipe(ToyRecipe):
    """A toy method whose training stops on a user error (a corpus it cannot use)."""

    name = "toy_failing"

    def fit_extra(self, train_items):
        raise CorpusError("toy_failing: this corpus has no such annotation")
