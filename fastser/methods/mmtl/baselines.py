"""MMTL's two baselines, networks and recipes: "stl" (single-task: the CNN-LSTM with an emotion
head) and "mtl" (multi-task: a shared CNN-LSTM encoder with an emotion head and separate 4-way
heads for the affect tasks valence, arousal and dominance, trained jointly, no meta-learning).
Both use :class:`~fastser.methods.mmtl.recipe.SpectrogramRecipe`'s features, batches, emotion
loss and predictions, and its :class:`~fastser.methods.mmtl.recipe.SpectrogramSettings`.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from fastser.data.corpus import Corpus
from fastser.errors import CorpusError
from fastser.methods.mmtl.meta import class_weights, weighted_cross_entropy
from fastser.methods.mmtl.model import AFFECT_CLASSES, CNNLSTMEncoder
from fastser.methods.mmtl.recipe import SegmentItem, SpectrogramRecipe, affect_requirements
from fastser.train.recipe import Batch


class MultiTaskNet(nn.Module):
    """Multi-task baseline: shared encoder, an emotion head and separate 4-way affect heads
    (one Linear(64, 3 * 4), i.e. three independent 64 -> 4 heads for valence, arousal and
    dominance), trained jointly. ``forward``: (S, frames, bins) -> emotion logits (S, C);
    ``heads``: also the affect logits (S, 3, 4)."""

    def __init__(self, num_classes: int, **encoder_config) -> None:
        super().__init__()
        self.encoder = CNNLSTMEncoder(**encoder_config)
        self.emotion = nn.Linear(self.encoder.embed_dim, num_classes)
        self.affect = nn.Linear(self.encoder.embed_dim, 3 * AFFECT_CLASSES)

    @torch.jit.export
    def heads(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.encoder(x)
        return self.emotion(z), self.affect(z).unflatten(1, (3, -1))

    def forward(self, x: Tensor) -> Tensor:
        return self.emotion(self.encoder(x))

    @torch.jit.export
    def embed(self, x: Tensor) -> Tensor:
        """The shared representation the heads read (S, embed_dim)."""
        return self.encoder(x)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # fastser 0.1 named the affect heads "vad"
        for name in ("weight", "bias"):
            old, new = f"{prefix}vad.{name}", f"{prefix}affect.{name}"
            if old in state_dict and new not in state_dict:
                state_dict[new] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class SingleTaskNet(nn.Module):
    """Single-task baseline: the CNN-LSTM with an emotion head, (S, frames, bins) -> (S, C)."""

    def __init__(self, num_classes: int, **encoder_config) -> None:
        super().__init__()
        self.encoder = CNNLSTMEncoder(**encoder_config)
        self.emotion = nn.Linear(self.encoder.embed_dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.emotion(self.encoder(x))

    @torch.jit.export
    def embed(self, x: Tensor) -> Tensor:
        """The representation the emotion head reads (S, embed_dim)."""
        return self.encoder(x)


class STLRecipe(SpectrogramRecipe):
    """Single-task baseline: the CNN-LSTM trained on emotion only (class-weighted CE per
    segment)."""

    name = "stl"

    def build_model(self) -> nn.Module:
        return SingleTaskNet(self.num_classes, **self.encoder_config())


class MTLRecipe(SpectrogramRecipe):
    """Multi-task baseline: shared encoder, emotion head and separate affect heads trained
    jointly on L = CE_emotion + (1/3) sum_j CE_j (class-weighted, per segment; segments without
    affect labels only enter the emotion term). No meta-learning."""

    name = "mtl"

    def __init__(self, label_names: Sequence[str], **settings: Any) -> None:
        super().__init__(label_names, **settings)
        self.affect_weights = torch.ones(3, AFFECT_CLASSES)  # until fit_extra

    def build_model(self) -> nn.Module:
        return MultiTaskNet(self.num_classes, **self.encoder_config())

    def requirements(self, corpus: Corpus) -> list[str]:
        """Besides the classes: affect labels for its auxiliary tasks."""
        return super().requirements(corpus) + affect_requirements(corpus, per_speaker=False)

    def fit_extra(self, train_items: Sequence[SegmentItem]) -> None:
        """Emotion class weights, and per affect task the class weights over the training
        segments with affect labels."""
        super().fit_extra(train_items)
        labelled = [it for it in train_items if it.affect is not None]
        if not labelled:
            raise CorpusError(f"{self.name}: no training utterance has affect labels "
                              f"(valence, arousal, dominance)")
        affect = torch.cat([it.affect.expand(len(it.segments), 3) for it in labelled])
        self.affect_weights = torch.stack([class_weights(affect[:, j], AFFECT_CLASSES)
                                           for j in range(3)])

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "affect_weights": self.affect_weights}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        # checkpoints of fastser 0.1 stored them as "vad_weights"
        self.affect_weights = state["affect_weights" if "affect_weights" in state
                                    else "vad_weights"]

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        device = batch["segments"].device
        emotion_logits, affect_logits = model.heads(batch["segments"])
        loss = weighted_cross_entropy(emotion_logits, batch["segment_labels"],
                                      self.emotion_weights.to(device))
        known = batch["affect"][:, 0] >= 0
        if bool(known.any()):
            affect, weights = batch["affect"][known], self.affect_weights.to(device)
            loss = loss + sum(weighted_cross_entropy(affect_logits[known, j], affect[:, j],
                                                     weights[j]) for j in range(3)) / 3
        return loss
