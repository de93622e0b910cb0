"""The 88 eGeMAPSv02 functionals (Eyben et al., "The Geneva Minimalistic Acoustic Parameter
Set (GeMAPS) for Voice Research and Affective Computing", extended set) of a waveform, through
audEERING's ``opensmile`` package: an optional extra (``pip install fastser[egemaps]``), whose
licence allows research and other non-commercial use only."""

from __future__ import annotations

import functools
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fastser.audio.io import SAMPLE_RATE, resample
from fastser.errors import AudioError, UserError

#: Functionals per utterance.
NUM_FEATURES = 88
#: The feature set's name in openSMILE.
FEATURE_SET = "eGeMAPSv02"
#: The shortest audio openSMILE computes every functional of (60 ms: shorter gives NaN).
MIN_SECONDS = 0.06
EXTRA = "pip install fastser[egemaps]"


def missing_extra() -> str | None:
    """Why the eGeMAPS baseline cannot run here (its optional packages are missing), or
    None."""
    missing = []
    for module in ("opensmile", "sklearn"):
        try:
            __import__(module)
        except ImportError:
            missing.append("scikit-learn" if module == "sklearn" else module)
    if not missing:
        return None
    return (f"the eGeMAPS baseline needs the optional extra fastser[egemaps] ({EXTRA}); "
            f"missing: {', '.join(missing)}")


def require_extra() -> None:
    """UserError naming the extra when its packages are missing."""
    reason = missing_extra()
    if reason is not None:
        raise UserError(reason)


@functools.lru_cache(maxsize=1)
def _smile() -> Any:
    require_extra()
    import opensmile

    return opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, FEATURE_SET),
                           feature_level=opensmile.FeatureLevel.Functionals)


def opensmile_version() -> str:
    require_extra()
    import opensmile

    return opensmile.__version__


def functionals(waveform: Tensor, analysis_rate: int) -> Tensor:
    """The eGeMAPSv02 functionals (88,) float32 of a 16 kHz waveform (N,) of at least
    ``MIN_SECONDS``, resampled to ``analysis_rate`` Hz for openSMILE (every input path of a
    model goes through the same resampling, so training and prediction see the same
    features)."""
    audio = resample(waveform.float(), SAMPLE_RATE, analysis_rate).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Segment too short": checked below
        row = _smile().process_signal(audio, analysis_rate).to_numpy()[0]
    if not np.isfinite(row).all():
        raise AudioError(f"openSMILE gave non-finite {FEATURE_SET} functionals (audio of "
                         f"{waveform.shape[0] / SAMPLE_RATE:.3f} s)")
    return torch.from_numpy(row.astype(np.float32))
