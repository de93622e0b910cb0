"""The check every waveform passes before a recipe turns it into an item."""

from __future__ import annotations

import torch
from torch import Tensor

from fastser.audio.io import SAMPLE_RATE, validate_waveform
from fastser.errors import AudioError


def check_waveform(waveform: Tensor, method: str, who: str, *, min_samples: int = 1) -> Tensor:
    """``waveform``, a 16 kHz mono float tensor (N,), as float32; AudioError naming ``method``
    and ``who`` (e.g. "utterance 'x'") for another shape or type, NaN or infinite samples, or
    fewer than ``min_samples`` samples."""
    if not isinstance(waveform, Tensor) or waveform.dim() != 1 or not waveform.is_floating_point():
        raise AudioError(f"{method}: {who}: expected a 1-D float tensor (N,) of "
                         f"{SAMPLE_RATE // 1000} kHz samples, got "
                         f"{getattr(waveform, 'shape', type(waveform).__name__)}")
    waveform = validate_waveform(waveform, SAMPLE_RATE, name=f"{method}: {who}", warn=False)
    if waveform.shape[0] < min_samples:
        raise AudioError(f"{method}: {who} has {waveform.shape[0]} samples, fewer than the "
                         f"{min_samples} ({1000 * min_samples / SAMPLE_RATE:g} ms) the method "
                         "needs")
    return waveform.to(torch.float32)
