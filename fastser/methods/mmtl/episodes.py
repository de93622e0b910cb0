"""MMTL's training steps: per-speaker episodes of support and query segments.

Every training speaker is a task. Per step, each chosen speaker contributes a support batch
(segments with their affect classes, for the auxiliary tasks) and a query batch (segments with
their emotion labels) of the same size, so the per-speaker batches stack into one episode
(the layout of :mod:`fastser.methods.mmtl.meta`). The two batches are the same segments
(``draws="same"``, the paper's Eq. 1-3: both tasks on the same X_i) or independent draws
(``"independent"``, fastser 0.1).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from fastser.errors import CorpusError, SettingsError
from fastser.methods.mmtl.meta import AFFECT_NAMES, class_weights
from fastser.methods.mmtl.model import AFFECT_CLASSES
from fastser.train.recipe import TrainBatches, TrainStep

#: How a speaker's support and query batches are drawn (see the module docstring).
EPISODE_DRAWS = ("independent", "same")

if TYPE_CHECKING:
    from fastser.methods.mmtl.recipe import SegmentItem


class SpeakerEpisodes(TrainBatches):
    """MMTL's training steps. Every training speaker is a task; per step, each chosen speaker
    (all of them, or ``speakers_per_step`` drawn at random) contributes a support batch of
    ``per_speaker`` segments with affect labels and a query batch of ``per_speaker`` segments
    with emotion labels, so the per-speaker batches stack (see
    :mod:`fastser.methods.mmtl.meta`). Each speaker's segments are drawn without replacement
    from a fresh permutation (a new permutation when one runs out, so small speakers repeat
    segments): with ``draws="independent"`` support (from the segments with affect labels) and
    query (from those with an emotion label) independently, with ``draws="same"`` one draw
    (from the segments with both) serves as both. An epoch has ceil(training segments /
    (speakers per step x per_speaker)) steps. Deterministic for (seed, epoch). With several
    processes each takes every world_size-th chosen speaker; gradients are sums over speakers
    (share = world_size). The class weights of each speaker come from its own segments."""

    def __init__(self, items: Sequence[SegmentItem], per_speaker: int, num_classes: int, *,
                 seed: int = 0, speakers_per_step: int | None = None, rank: int = 0,
                 world_size: int = 1, draws: str = "independent", name: str = "mmtl") -> None:
        if draws not in EPISODE_DRAWS:
            raise ValueError(f"SpeakerEpisodes: draws must be one of {EPISODE_DRAWS}, got "
                             f"{draws!r}")
        self.items, self.per_speaker, self.seed = items, int(per_speaker), int(seed)
        self.same = draws == "same"
        self.rank, self.world_size, self.epoch = rank, world_size, 0
        self.speakers = sorted({it.speaker for it in items})
        if len(self.speakers) < 2:
            raise CorpusError(f"{name}: meta-learning over speakers needs at least 2 training "
                              f"speakers, got {self.speakers} (train the 'stl' or 'mtl' "
                              f"baseline instead)")
        self.per_step = len(self.speakers) if speakers_per_step is None else int(speakers_per_step)
        if not world_size <= self.per_step <= len(self.speakers):
            raise SettingsError(f"{name}: speakers_per_step must be in [{world_size}, "
                                f"{len(self.speakers)}] (processes .. training speakers), got "
                                f"{speakers_per_step}")
        self.support, self.query = [], []  # per speaker: (P, 2) int64 (item, segment) pairs
        self.affect_weights, self.emotion_weights = [], []
        for speaker in self.speakers:
            mine = [i for i, it in enumerate(items) if it.speaker == speaker]
            labelled = [i for i in mine if items[i].label >= 0]
            support = self._pairs([i for i in (labelled if self.same else mine)
                                   if items[i].affect is not None])
            query = support if self.same else self._pairs(labelled)
            if not labelled:
                raise CorpusError(f"{name}: training speaker {speaker!r} has no utterance with "
                                  f"an emotion label")
            if len(support) == 0:
                both = " and an emotion label" if self.same else ""
                raise CorpusError(f"{name}: training speaker {speaker!r} has no utterance with "
                                  f"affect labels ({', '.join(AFFECT_NAMES)}: the auxiliary "
                                  f"tasks){both}")
            affect = torch.stack([items[i].affect for i in support[:, 0].tolist()])
            labels = torch.tensor([items[i].label for i in query[:, 0].tolist()])
            self.support.append(support)
            self.query.append(query)
            self.affect_weights.append(torch.stack([class_weights(affect[:, j], AFFECT_CLASSES)
                                                    for j in range(3)]))
            self.emotion_weights.append(class_weights(labels, num_classes))
        total = sum(len(q) for q in self.query)
        self.steps = max(1, math.ceil(total / (self.per_step * self.per_speaker)))

    def _pairs(self, indices: list[int]) -> Tensor:
        pairs = [(i, j) for i in indices for j in range(len(self.items[i].segments))]
        return torch.tensor(pairs, dtype=torch.int64).reshape(-1, 2)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def _draws(self, pool: int, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` draws from ``pool`` items: permutations, one after another."""
        orders = [rng.permutation(pool) for _ in range(math.ceil(count / pool))]
        return np.concatenate(orders)[:count]

    def __iter__(self) -> Iterator[TrainStep]:
        choice = np.random.default_rng([self.seed, self.epoch])
        chosen = [sorted(choice.permutation(len(self.speakers))[:self.per_step].tolist())
                  for _ in range(self.steps)]
        mine = {k for c in chosen for k in c[self.rank::self.world_size]}
        draws = {}  # speaker -> (support, query) draws (uses, per_speaker), the same on every rank
        for k in mine:
            uses = sum(k in c for c in chosen)
            roles = (self.support,) if self.same else (self.support, self.query)
            draws[k] = tuple(self._draws(len(pool[k]), uses * self.per_speaker,
                                         np.random.default_rng([self.seed, self.epoch, k, role])
                                         ).reshape(uses, self.per_speaker)
                             for role, pool in enumerate(roles))
            if self.same:
                draws[k] = (draws[k][0], draws[k][0])
        position = [0] * len(self.speakers)
        for speakers in chosen:
            parts = [self._speaker_batch(k, draws[k][0][position[k]], draws[k][1][position[k]])
                     for k in speakers[self.rank::self.world_size]]
            for k in speakers:
                position[k] += 1
            batch = {key: torch.stack([p[key] for p in parts]) for key in parts[0]}
            yield TrainStep(batch, float(self.world_size), 2 * self.per_speaker * len(parts))

    def _speaker_batch(self, k: int, support: np.ndarray, query: np.ndarray) -> dict[str, Tensor]:
        def segments(pairs: Tensor) -> Tensor:
            return torch.stack([self.items[i].segments[j] for i, j in pairs.tolist()])

        support_pairs, query_pairs = self.support[k][support], self.query[k][query]
        support_segments = segments(support_pairs)
        return {"support": support_segments,
                "support_affect": torch.stack([self.items[i].affect
                                               for i in support_pairs[:, 0].tolist()]),
                "affect_weights": self.affect_weights[k],
                "query": support_segments if self.same else segments(query_pairs),
                "query_labels": torch.tensor([self.items[i].label
                                              for i in query_pairs[:, 0].tolist()]),
                "emotion_weights": self.emotion_weights[k]}
