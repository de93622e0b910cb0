"""The targets setting and the affect scale: standardised with the training set's statistics,
restored to the corpus' scale, stored as plain values; training values must be complete."""

from __future__ import annotations

import math

import pytest
import torch

from fastser.data.corpus import Utterance
from fastser.errors import CorpusError, SettingsError
from fastser.train.kit.affect import AffectScale, affect_values, check_targets


def test_scale_standardises_and_restores():
    values = [(1.0, 5.0), (2.0, 5.0), (3.0, 5.0)]
    scale = AffectScale.fit("m", ("valence", "arousal"), values, ["a", "b", "c"])
    assert scale.mean == (2.0, 5.0)
    assert scale.std[0] == pytest.approx(math.sqrt(2 / 3)) and scale.std[1] == 1.0  # constant
    table = torch.tensor(values, dtype=torch.float64)
    standard = scale.standardise(table)
    torch.testing.assert_close(standard.mean(0), torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(scale.restore(standard), table)
    assert AffectScale.from_state(scale.state()) == scale
    single = AffectScale.fit("m", ("dominance",), [(4.0,)], ["a"])
    assert single.std == (1.0,)
    identity = AffectScale.identity(("valence",))
    assert torch.equal(identity.restore(torch.tensor([[3.5]])), torch.tensor([[3.5]]))


def test_every_training_value_is_needed():
    with pytest.raises(CorpusError, match=r"m: training utterance 'b' \(and 1 more\) has no "
                                          r"arousal value, which the targets \['valence', "
                                          r"'arousal'\] need"):
        AffectScale.fit("m", ("valence", "arousal"), [(1, 2), (1, math.nan), (math.nan, 2)],
                        ["a", "b", "c"])


def test_targets_and_values():
    check_targets("m", ("emotion", "arousal"))
    for bad in ((), ("joy",), ("arousal", "arousal")):
        with pytest.raises(SettingsError, match="m: setting targets must name one or more of "
                                                "emotion, valence, arousal, dominance"):
            check_targets("m", bad)
    check_targets("m", ("emotion", "arousal"), (1.0, 0.0))
    for bad in ((1.0,), (0.0, 0.0), (1.0, 1.0, 1.0)):
        with pytest.raises(SettingsError, match=r"m: setting loss_weights must give one weight "
                                                r"per target \['emotion', 'arousal'\]"):
            check_targets("m", ("emotion", "arousal"), bad)
    u = Utterance("u", "a.wav", None, "s", "s", arousal=2.5)
    assert affect_values(u, ("arousal",)) == (2.5,)
    assert all(math.isnan(v) for v in affect_values(u, ("valence", "dominance")))
    assert all(math.isnan(v) for v in affect_values(None, ("arousal",)))
