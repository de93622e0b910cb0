"""What a method predicts (its ``targets`` setting: the emotion classes and/or affect
dimensions) and the scale of affect values.

Corpora give valence, arousal and dominance on their own scales (IEMOCAP and the synthetic
corpus 1-5, MSP-Podcast 1-7, others -1..1). A model learns them standardised with the mean
and standard deviation of the training set (:class:`AffectScale`, fitted by the recipe's
``fit_extra`` and stored in the checkpoint); its predictions are mapped back to the corpus'
scale, where they are scored and reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from fastser.data.corpus import AFFECT, Utterance
from fastser.errors import CorpusError, SettingsError
from fastser.losses.affect import affect_loss

#: The target of the emotion classes; the others are the affect dimensions.
EMOTION = "emotion"
TARGETS = (EMOTION, *AFFECT)
TARGETS_DOC = (f"what the model predicts: any of {', '.join(TARGETS)} ({EMOTION}: the classes; "
               "the others: regression of affect values)")


def check_targets(method: str, targets: Sequence[str],
                  loss_weights: Sequence[float] | None = None) -> None:
    """SettingsError unless ``targets`` names one or more of :data:`TARGETS`, each once, and
    ``loss_weights`` (None: the method's own) gives one weight per target, not all 0."""
    if not targets or any(t not in TARGETS for t in targets) or len(set(targets)) != len(targets):
        raise SettingsError(f"{method}: setting targets must name one or more of "
                            f"{', '.join(TARGETS)}, each once; got {list(targets)}")
    if loss_weights is not None and (len(loss_weights) != len(targets)
                                     or not sum(loss_weights) > 0):
        raise SettingsError(f"{method}: setting loss_weights must give one weight per target "
                            f"{list(targets)}, not all 0; got {list(loss_weights)}")


def affect_values(utterance: Utterance | None, names: Sequence[str]) -> tuple[float, ...]:
    """The utterance's values of the affect dimensions ``names`` (NaN where unknown or without
    an utterance)."""
    values = (None,) * len(names) if utterance is None else (
        getattr(utterance, name) for name in names)
    return tuple(math.nan if v is None else float(v) for v in values)


@dataclass
class AffectScale:
    """Per-dimension mean and standard deviation of the training set's affect values."""

    names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, method: str, names: Sequence[str], values: Sequence[Sequence[float]],
            ids: Sequence[str]) -> "AffectScale":
        """The scale of the training values (N, K) of utterances ``ids``; every training
        utterance must have every dimension (CorpusError naming the first that lacks one)."""
        table = torch.tensor(values, dtype=torch.float64).reshape(len(ids), len(names))
        missing = torch.isnan(table)
        if missing.any():
            row, column = (int(i) for i in missing.nonzero()[0])
            count = int(missing.any(1).sum())
            more = f" (and {count - 1} more)" if count > 1 else ""
            raise CorpusError(f"{method}: training utterance {ids[row]!r}{more} has no "
                              f"{names[column]} value, which the targets {list(names)} need "
                              "(choose other targets, or leave those utterances out)")
        std = table.std(0, unbiased=False) if len(ids) > 1 else torch.ones(len(names))
        std = torch.where(std > 0, std, torch.ones_like(std))
        return cls(tuple(names), tuple(table.mean(0).tolist()), tuple(std.tolist()))

    @classmethod
    def identity(cls, names: Sequence[str]) -> "AffectScale":
        """No standardisation (models of fastser 0.1 learnt SAP's values unscaled)."""
        return cls(tuple(names), (0.0,) * len(names), (1.0,) * len(names))

    def standardise(self, values: Tensor) -> Tensor:
        """(N, K) values on the corpus' scale -> standardised."""
        return (values - values.new_tensor(self.mean)) / values.new_tensor(self.std)

    def restore(self, values: Tensor) -> Tensor:
        """(N, K) standardised values (a model's outputs) -> the corpus' scale."""
        return values * values.new_tensor(self.std) + values.new_tensor(self.mean)

    def state(self) -> dict[str, Any]:
        return {"names": list(self.names), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "AffectScale":
        return cls(tuple(state["names"]), tuple(state["mean"]), tuple(state["std"]))


def targets_loss(targets: Sequence[str], loss_weights: Sequence[float],
                 class_loss: Tensor | None, outputs: Tensor, values: Tensor,
                 scale: AffectScale | None, kind: str) -> Tensor:
    """The loss of a model of ``targets``, weighted by ``loss_weights`` (in targets order): the
    emotion classes' ``class_loss`` (None for a model without them) plus, for each affect
    target k, the ``kind`` loss between the model's affect outputs (N, K), standardised, and
    the true values (N, K) on the corpus' scale."""
    weights = dict(zip(targets, loss_weights))
    loss = outputs.new_zeros((), dtype=torch.float32)
    if class_loss is not None:
        loss = loss + weights[EMOTION] * class_loss
    affect = [name for name in targets if name != EMOTION]
    if affect:
        if scale is None:
            raise RuntimeError("the affect scale is unset; call fit_extra(train_items) before "
                               "computing the loss")
        losses = affect_loss(outputs.float(), scale.standardise(values), kind)
        loss = loss + (losses * losses.new_tensor([weights[name] for name in affect])).sum()
    return loss
