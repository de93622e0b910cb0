"""Validation of ragged batches of waveforms given as a list or as padded tensor + lengths."""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor

WaveformBatch = Union[Sequence[Tensor], Tensor]


def as_padded(batch: WaveformBatch, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """(B, N) float padded waveforms and int64 lengths (B,) on the same device, from a list of
    1-D waveforms or a padded (B, N) batch with optional lengths (None: all N). ValueError for
    an empty batch, an empty utterance, lengths past the padded size, wrong shapes or dtypes."""
    if isinstance(batch, Tensor):
        if batch.dim() != 2:
            raise ValueError(f"a padded batch must be (B, N), got shape {tuple(batch.shape)}")
        if lengths is None:
            lengths = torch.full((batch.shape[0],), batch.shape[1], dtype=torch.long)
        if lengths.dtype != torch.long or lengths.shape != (batch.shape[0],):
            raise ValueError(f"lengths must be int64 of shape ({batch.shape[0]},), got "
                             f"{lengths.dtype} {tuple(lengths.shape)}")
        lengths = lengths.to(batch.device)
        if batch.shape[0] and int(lengths.max()) > batch.shape[1]:
            raise ValueError(f"a length of {int(lengths.max())} exceeds the padded size "
                             f"{batch.shape[1]}")
        padded = batch
    else:
        if lengths is not None:
            raise ValueError("lengths are only for a padded batch; a list carries its own")
        for index, waveform in enumerate(batch):
            if not isinstance(waveform, Tensor) or waveform.dim() != 1:
                raise ValueError(f"utterance {index}: expected a 1-D tensor, got "
                                 f"{getattr(waveform, 'shape', type(waveform).__name__)}")
        if not batch:
            raise ValueError("empty batch: no utterances")
        padded = torch.nn.utils.rnn.pad_sequence(list(batch), batch_first=True)
        lengths = torch.tensor([w.shape[0] for w in batch], dtype=torch.long,
                               device=padded.device)
    if not padded.is_floating_point():
        raise ValueError(f"waveforms must be float, got {padded.dtype}")
    if padded.shape[0] == 0:
        raise ValueError("empty batch: no utterances")
    empty = (lengths < 1).nonzero()
    if empty.numel():
        raise ValueError(f"utterance {int(empty[0])} is empty (length "
                         f"{int(lengths[empty[0]])}); every utterance needs at least one sample")
    return padded, lengths
