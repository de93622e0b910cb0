"""The recipe kit: the sub-problems every method shares, solved once.

- :mod:`~fastser.train.kit.settings`: typed, range-checked method settings and presets;
- :mod:`~fastser.train.kit.waveforms`: the check of every waveform a recipe receives;
- :mod:`~fastser.train.kit.standardise`: feature standardisation, global and per speaker;
- :mod:`~fastser.train.kit.augment`: training augmentation (speed-perturbed and noisy copies,
  SpecAugment masks) and its settings;
- :mod:`~fastser.train.kit.balance`: class weights (and their setting) and class-balanced
  sampling weights;
- :mod:`~fastser.train.kit.ssl`: SSL front-end settings, building (random weights warn) and
  the feature cache (SAP, MSTR on SSL features; imported on its own: it needs the SSL and VAD
  stack).

Collation helpers (padded and packed ragged batches) live in :mod:`fastser.data.collate`; the
recipe interface that uses all of them is :class:`fastser.train.recipe.Recipe`.
"""

from fastser.train.kit.augment import AugmentSettings
from fastser.train.kit.balance import (ClassWeightSettings, balanced_item_weights,
                                       class_weights)
from fastser.train.kit.settings import IMPLEMENTATIONS, Preset, Settings, redefault, setting
from fastser.train.kit.standardise import (FeatureStats, frame_statistics,
                                           standardise_by_speaker, typical_speaker)
from fastser.train.kit.waveforms import check_waveform

__all__ = ["IMPLEMENTATIONS", "AugmentSettings", "ClassWeightSettings", "FeatureStats", "Preset",
           "Settings", "balanced_item_weights", "check_waveform", "class_weights", "frame_statistics",
           "redefault", "setting", "standardise_by_speaker", "typical_speaker"]
