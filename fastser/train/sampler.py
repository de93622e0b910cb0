"""Epoch-seeded batches that give the same global batches on one process or many."""

from __future__ import annotations

from typing import Iterator

import torch


class GlobalBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Shuffles ``num_items`` with a generator seeded by ``seed + epoch`` (call ``set_epoch``),
    cuts the permutation into global batches of ``batch_size`` and yields this rank's share of
    each (``batch[rank::world_size]``). With ``world_size`` processes every step sees exactly
    the utterances a single process with the same ``batch_size`` sees. A final global batch
    with fewer items than processes is dropped (when world_size > 1) so no rank idles.

    ``weights`` (num_items,): instead of a permutation, each epoch draws ``num_items`` items
    with replacement, item i with probability proportional to weights[i] (class-balanced
    sampling: fastser.train.kit.balance.balanced_item_weights)."""

    def __init__(self, num_items: int, batch_size: int, *, seed: int = 0, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1,
                 weights: torch.Tensor | None = None) -> None:
        if num_items < 1:
            raise ValueError("GlobalBatchSampler: the dataset is empty")
        if batch_size < world_size:
            raise ValueError(f"GlobalBatchSampler: batch_size {batch_size} is smaller than "
                             f"the number of processes {world_size}")
        self.num_items, self.batch_size = num_items, batch_size
        self.seed, self.shuffle = seed, shuffle
        self.rank, self.world_size = rank, world_size
        if weights is not None and tuple(weights.shape) != (num_items,):
            raise ValueError(f"GlobalBatchSampler: weights of shape {tuple(weights.shape)} for "
                             f"{num_items} items")
        self.weights = weights
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self) -> list[list[int]]:
        if self.weights is not None:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.multinomial(self.weights, self.num_items, replacement=True,
                                      generator=gen).tolist()
        elif self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_items, generator=gen).tolist()
        else:
            order = list(range(self.num_items))
        batches = [order[i:i + self.batch_size] for i in range(0, self.num_items, self.batch_size)]
        return [b for b in batches if len(b) >= self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches():
            yield batch[self.rank::self.world_size]

    def __len__(self) -> int:
        return len(self.global_batches())
