"""What the Recipe base class does for every method: label lookup, waveform checks with the
utterance named, the empty-batch guard, per-speaker standardisation through the item hooks,
state round trips (also of fastser 0.1 states)."""

from pathlib import Path

import pytest
import torch

from fastser.audio.io import AudioSpan
from fastser.data.corpus import Corpus, Utterance
from fastser.errors import AudioError, CorpusError, SettingsError, UserError
from fastser.methods import make_recipe
from toy_recipe import LABELS, ToyRecipe


def _utterance(tmp_path, id_, speaker, label="happy"):
    return Utterance(id_, tmp_path / f"{id_}.wav", label, speaker, speaker)


def test_labels_are_looked_up_and_unknown_labels_named(tmp_path):
    recipe = ToyRecipe(LABELS)
    assert recipe.label_of(None) == -1
    assert recipe.label_of(_utterance(tmp_path, "u", "s", "sad")) == 2
    with pytest.raises(UserError, match="label 'calm' is not one of"):
        recipe.label_of(_utterance(tmp_path, "u", "s", "calm"))
    with pytest.raises(UserError, match="needs at least 2 classes"):
        ToyRecipe(["only"])
    with pytest.raises(CorpusError, match=r"no emotion label, which the targets \['emotion'\]"):
        recipe.label_of(_utterance(tmp_path, "u", "s", None))
    assert recipe.targets == ("emotion",) and recipe.affect_targets == ()


def test_requirements_name_what_a_corpus_lacks(tmp_path):
    utterances = [_utterance(tmp_path, "u0", "s", "sad"), _utterance(tmp_path, "u1", "s", None)]
    corpus = Corpus("c", LABELS, utterances)
    assert ToyRecipe(LABELS).requirements(corpus) == [
        "needs utterances of at least 2 emotion classes, has ['sad']",
        "1 utterance(s) have no emotion label (leave them out with --labels, or train affect "
        "targets only)"]
    assert ToyRecipe(LABELS).requirements(Corpus("c", LABELS, (
        utterances[0], _utterance(tmp_path, "u2", "s", "happy")))) == []
    affect = Corpus("c", (), [Utterance(f"a{i}", "a.wav", None, "s", "s", arousal=float(i))
                              for i in range(3)])
    assert make_recipe("mstr", (), targets=["arousal"]).requirements(affect) == []
    assert make_recipe("mstr", (), targets=["arousal", "valence"]).requirements(affect) == [
        "its targets include valence, which 3 of 3 utterance(s) lack (choose others: --set "
        "targets=...)"]


def test_waveform_errors_name_the_method_and_the_utterance(tmp_path):
    recipe = ToyRecipe(LABELS)
    with pytest.raises(AudioError, match="toy: utterance 'u1' has 4 samples, fewer than the 8"):
        recipe.checked_item(torch.zeros(4), _utterance(tmp_path, "u1", "s"))
    with pytest.raises(AudioError, match="toy: the recording: contains NaN"):
        recipe.item_from_audio(torch.tensor([0.0] * 7 + [float("nan")]))
    with pytest.raises(ValueError, match="toy: cannot collate an empty batch"):
        recipe.collate([])


def test_speaker_norm_standardises_each_speaker_with_its_own_statistics(tmp_path, monkeypatch):
    utterances = [_utterance(tmp_path, f"u{i}", "a" if i < 3 else "b") for i in range(6)]
    gen = torch.Generator().manual_seed(0)
    waves = {u.id: 0.1 * torch.randn(64, generator=gen) * (1 + 4 * (u.speaker == "b"))
             for u in utterances}
    monkeypatch.setattr(AudioSpan, "load", lambda span, rate: waves[Path(span.path).stem])
    plain = ToyRecipe(LABELS).featurize(utterances)
    normed = ToyRecipe(LABELS, speaker_norm=True).featurize(utterances)
    for speaker in ("a", "b"):
        rows = torch.stack([normed[i][0] for i, u in enumerate(utterances) if u.speaker == speaker])
        torch.testing.assert_close(rows.mean(0), torch.zeros(8), atol=1e-5, rtol=0)
        torch.testing.assert_close(rows.std(0), torch.ones(8), atol=1e-5, rtol=0)
        raw = torch.stack([plain[i][0] for i, u in enumerate(utterances) if u.speaker == speaker])
        torch.testing.assert_close(rows, (raw - raw.mean(0)) / raw.std(0), atol=1e-5, rtol=1e-5)
    # a lone recording is its own speaker: its one frame is standardised on its own statistics
    lone = ToyRecipe(LABELS, speaker_norm=True).item_from_audio(waves["u0"])
    assert torch.equal(lone[0], torch.zeros(8))


def test_state_round_trip_and_0_1_states():
    recipe = ToyRecipe(LABELS, hidden=4, implementation="reference")
    restored = ToyRecipe.from_state(recipe.state())
    assert restored.settings == recipe.settings and restored.label_names == LABELS
    old = ToyRecipe.from_state({"label_names": LABELS, "config": {"hidden": 4, "naive": True}})
    assert old.settings == recipe.settings
    with pytest.raises(SettingsError, match="toy: unknown setting"):
        ToyRecipe.from_state({"label_names": LABELS, "settings": {"width": 3}})
