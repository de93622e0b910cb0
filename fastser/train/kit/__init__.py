"""The recipe kit: the sub-problems every method shares, solved once.

- :mod:`~fastser.train.kit.settings`: typed, range-checked method settings and presets;
- :mod:`~fastser.train.kit.waveforms`: the check of every waveform a recipe receives;
- :mod:`~fastser.train.kit.standardise`: feature standardisation, global and per speaker;
- :mod:`~fastser.train.kit.ssl`: SSL front-end settings, building (random weights warn) and
  the feature cache (SAP, MSTR on SSL features; imported on its own: it needs the SSL and VAD
  stack).

Collation helpers (padded and packed ragged batches) live in :mod:`fastser.data.collate`; the
recipe interface that uses all of them is :class:`fastser.train.recipe.Recipe`.
"""

from fastser.train.kit.settings import IMPLEMENTATIONS, Preset, Settings, setting
from fastser.train.kit.standardise import FeatureStats, frame_statistics, standardise_by_speaker
from fastser.train.kit.waveforms import check_waveform

__all__ = ["IMPLEMENTATIONS", "FeatureStats", "Preset", "Settings", "check_waveform",
           "frame_statistics", "setting", "standardise_by_speaker"]
