"""The SAP recipe end to end on a tiny synthetic corpus with a tiny random WavLM: training,
the feature cache, per-speaker standardisation, class weights through checkpoints, V/A
labels, the VAD fallback counter, the fused and reference implementations, export,
fine-tuning, bad input and settings."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import optest
from fastser.audio.io import load_audio
from fastser.checkpoint import load_checkpoint
from fastser.data.protocols import speaker_split
from fastser.errors import AudioError, CheckpointError, CorpusError, SettingsError, UserError
from fastser.methods import make_recipe, recipe_class
from fastser.methods.sap import SAPRecipe, SAPSettings
from fastser.train.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("ssl-cache"))


def recipe(corpus, cache_dir, **config):
    return make_recipe("sap", corpus.labels,
                       **{"ssl_config": "tiny", "heads": 2, "cache_dir": cache_dir, **config})


@pytest.fixture(scope="module")
def items(corpus, cache_dir):
    return recipe(corpus, cache_dir).featurize(list(corpus))


def fitted(corpus, cache_dir, items, **config):
    r = recipe(corpus, cache_dir, **config)
    r.fit_extra(items)
    torch.manual_seed(0)
    return r, r.build_model()


def test_registered():
    assert recipe_class("sap") is SAPRecipe
    assert SAPRecipe.Settings is SAPSettings


def test_smoke_training(corpus, cache_dir, tmp_path):
    split = speaker_split(corpus, seed=0)
    r = recipe(corpus, cache_dir)
    train, val = r.featurize(list(split.train)), r.featurize(list(split.validation))
    fit = Trainer(r, TrainConfig(epochs=4, batch_size=4, lr=3e-3, progress=False),
                  tmp_path).fit(train, val)
    losses = [h["train_loss"] for h in fit.history]
    assert losses[-1] < losses[0] and all(np.isfinite(losses))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["vad_fallback_utterances"] for r in records] == [0] * 4
    assert 0.0 <= records[-1]["val"]["ua"] <= 1.0


def test_items_and_batches(corpus, cache_dir, items):
    item = items[0]
    assert item.inputs.dtype == np.float16 and item.inputs.shape[1:] == (3, 32)
    assert item.speech.shape == (item.inputs.shape[0],) and item.speech.dtype == torch.bool
    assert item.affect == (corpus[0].valence, corpus[0].arousal)
    batch = recipe(corpus, cache_dir).collate(items[:5])
    frames = [i.inputs.shape[0] for i in items[:5]]
    assert batch["inputs"].shape == (5, max(frames), 3, 32)
    assert batch["inputs"].dtype == torch.float32 and batch["lengths"].tolist() == frames
    assert batch["speech"].shape == (5, max(frames))
    assert torch.equal(batch["affect"], torch.tensor([[u.valence, u.arousal] for u in corpus[:5]]))
    assert batch["labels"].tolist() == [corpus.label_index(u.label) for u in corpus[:5]]


def test_cache_reuse_gives_identical_outputs(corpus, cache_dir, items):
    from pathlib import Path

    folders = sorted(Path(cache_dir).iterdir())
    again = recipe(corpus, cache_dir).featurize(list(corpus))
    assert sorted(Path(cache_dir).iterdir()) == folders  # nothing new computed
    r, model = fitted(corpus, cache_dir, items)
    model.eval()
    with torch.no_grad():
        first = r.predict(model, r.collate(items)).probs
        second = r.predict(model, r.collate(again)).probs
    assert torch.equal(first, second)
    for a, b in zip(items, again):
        assert np.array_equal(a.inputs, b.inputs) and torch.equal(a.speech, b.speech)


def test_speaker_norm_standardises_each_speakers_cached_features(corpus, cache_dir, items):
    normed = recipe(corpus, cache_dir, speaker_norm=True).featurize(list(corpus))
    speakers = [u.speaker for u in corpus]
    for speaker in set(speakers):
        mine = [i for i, s in zip(range(len(items)), speakers) if s == speaker]
        raw = torch.cat([torch.from_numpy(np.asarray(items[i].inputs, np.float32))
                         for i in mine]).double()
        mean, std = raw.mean(0), raw.std(0).clamp_min(1e-5)
        for i in mine:
            expected = (torch.from_numpy(np.asarray(items[i].inputs, np.float32)).double()
                        - mean) / std
            torch.testing.assert_close(torch.from_numpy(normed[i].inputs).double(), expected,
                                       atol=1e-4, rtol=1e-4)
        assert all(torch.equal(normed[i].speech, items[i].speech) for i in mine)
    with pytest.raises(SettingsError, match="speaker_norm .* frozen front end"):
        recipe(corpus, cache_dir, speaker_norm=True, frozen=False)


def test_item_from_audio_matches_cached_features(corpus, cache_dir, items):
    r = recipe(corpus, cache_dir)
    fresh = r.item_from_audio(load_audio(corpus[3].path), corpus[3])
    assert fresh.label == items[3].label and fresh.id == corpus[3].id
    assert torch.equal(fresh.speech, items[3].speech) and fresh.inputs.dtype == np.float16
    np.testing.assert_allclose(fresh.inputs.astype(np.float32),
                               items[3].inputs.astype(np.float32), rtol=2e-3, atol=1e-4)
    unlabelled = r.item_from_audio(load_audio(corpus[3].path))
    assert unlabelled.label == -1 and np.isnan(unlabelled.affect).all()


def test_class_weights_restored_from_checkpoint(corpus, cache_dir, items, tmp_path):
    r = recipe(corpus, cache_dir)
    uneven = items[:12]
    labels = np.array([i.label for i in uneven])
    counts = np.bincount(labels, minlength=4)
    Trainer(r, TrainConfig(epochs=1, batch_size=6, progress=False), tmp_path).fit(uneven)
    want = [len(labels) / (4 * c) if c else 0.0 for c in counts]
    np.testing.assert_allclose(r.class_weights, want)
    values = np.array([i.affect for i in uneven])
    assert r.affect_scale.mean == pytest.approx(tuple(values.mean(0)))
    assert r.affect_scale.std == pytest.approx(tuple(values.std(0)))
    payload = load_checkpoint(tmp_path / "last.pt", recipe="sap")
    restored = recipe_class("sap").from_state(payload["recipe_state"])
    assert restored.class_weights == r.class_weights
    assert restored.affect_scale == r.affect_scale
    model = restored.build_model()
    model.load_state_dict(payload["model"])
    batch = restored.collate(items[:8])
    torch.manual_seed(0)
    a = restored.loss(model.eval(), batch)
    torch.manual_seed(0)
    b = r.loss(model, batch)
    assert torch.equal(a, b)


def test_loss_is_weighted_ce_plus_standardised_va_mae(corpus, cache_dir, items):
    r, model = fitted(corpus, cache_dir, items, loss_weights=(0.5, 0.3, 0.2))
    batch = r.collate(items[:8])
    model.eval()
    out = model(batch["inputs"], batch["lengths"], batch["speech"])
    weights = torch.tensor(r.class_weights, dtype=torch.float32)
    ce = torch.nn.functional.cross_entropy(out.logits, batch["labels"], weight=weights)
    mean, std = torch.tensor(r.affect_scale.mean), torch.tensor(r.affect_scale.std)
    mae = (out.regression - (batch["affect"] - mean) / std).abs().mean(dim=0)
    torch.testing.assert_close(r.loss(model, batch), 0.5 * ce + 0.3 * mae[0] + 0.2 * mae[1])
    predicted = r.predict(model, batch).affect  # on the corpus' scale
    torch.testing.assert_close(predicted, out.regression * std + mean)


def test_missing_valence_arousal(corpus, cache_dir, tmp_path):
    utterances = list(corpus)[:8]
    utterances[5] = dataclasses.replace(utterances[5], arousal=None)
    r = recipe(corpus, cache_dir)
    items = r.featurize(utterances)
    with pytest.raises(CorpusError, match=f"sap: training utterance '{utterances[5].id}' has "
                                          "no arousal value"):
        r.fit_extra(items)
    r = recipe(corpus, cache_dir, targets=["emotion"])
    r.fit_extra(items)
    model = r.build_model()
    assert model.head.regressor.out_features == 0 and r.loss_weights == (0.5,)
    assert torch.isfinite(r.loss(model, r.collate(items)))


def test_settings_of_earlier_releases_become_targets(corpus, cache_dir):
    old = {"regression": False, "loss_weights": (0.5, 0.25, 0.25)}
    assert SAPSettings.build("sap", dict(old)).targets == ("emotion",)
    assert SAPSettings.build("sap", dict(old)).loss_weights == (0.5,)
    unused = SAPSettings.build("sap", {"regression": True, "loss_weights": (1.0, 0.0, 0.0)})
    assert unused.targets == ("emotion",) and unused.loss_weights == (1.0,)
    kept = SAPSettings.build("sap", {"regression": True, "loss_weights": (0.5, 0.0, 0.5)})
    assert kept.targets == ("emotion", "valence", "arousal")
    assert kept.loss_weights == (0.5, 0.0, 0.5)


def test_affect_only_regression(corpus, cache_dir, items, tmp_path):
    r = recipe(corpus, cache_dir, targets=["arousal", "valence"], affect_loss="ccc")
    assert r.label_names == [] and r.affect_targets == ("arousal", "valence")
    mine = r.featurize(list(corpus))
    assert mine[0].label == -1 and mine[0].affect == (corpus[0].arousal, corpus[0].valence)
    split = speaker_split(corpus, seed=0)
    train = r.featurize(list(split.train))
    fit = Trainer(r, TrainConfig(epochs=2, batch_size=4, progress=False),
                  tmp_path).fit(train, r.featurize(list(split.validation)))
    val = fit.history[-1]["val"]
    assert "ua" not in val and set(val) >= {"ccc", "arousal_ccc", "valence_mae"}
    assert fit.best["ccc"] == max(h["val"]["ccc"] for h in fit.history)


def test_vad_fallback_is_counted(corpus, cache_dir, items):
    r, model = fitted(corpus, cache_dir, items)
    gen = torch.Generator().manual_seed(0)
    silent = r.item_from_audio(1e-4 * torch.randn(16000, generator=gen))
    assert not bool(silent.speech.any())
    silent.label, silent.affect = 0, (3.0, 3.0)
    assert r.epoch_logs() == {"vad_fallback_utterances": 0}
    r.loss(model, r.collate([silent, items[0], silent]))
    r.loss(model, r.collate([items[1], silent]))
    assert r.epoch_logs() == {"vad_fallback_utterances": 3}
    assert r.epoch_logs() == {"vad_fallback_utterances": 0}
    model.eval()  # a validation loss does not count
    r.loss(model, r.collate([silent, items[0]]))
    assert r.epoch_logs() == {"vad_fallback_utterances": 0}


def test_reference_implementation_matches(corpus, cache_dir, items):
    r, model = fitted(corpus, cache_dir, items)
    reference_recipe, reference = fitted(corpus, cache_dir, items, implementation="reference")
    reference.load_state_dict(model.state_dict())
    batch = r.collate(items[:10])
    with torch.no_grad():
        torch.testing.assert_close(reference_recipe.predict(reference.eval(), batch).probs,
                                   r.predict(model.eval(), batch).probs, atol=1e-5, rtol=1e-5)


def test_export_scripted_in_fresh_process(corpus, cache_dir, items, tmp_path):
    r, model = fitted(corpus, cache_dir, items)
    model.eval()
    batch = r.collate(items[:6])
    module = r.export_module(model).eval()
    inputs = r.export_inputs(batch)
    with torch.no_grad():
        expected = r.predict(model, batch).probs
        torch.testing.assert_close(module(*inputs), expected)
    optest.script_roundtrip(module, inputs, tmp_path / "sap.pt", atol=1e-5, rtol=1e-5)
    optest.check_scripted_in_fresh_process(tmp_path / "sap.pt", inputs, expected, tmp_path,
                                           atol=1e-5)


def test_fine_tuning_front_end(corpus, cache_dir):
    r = recipe(corpus, cache_dir, frozen=False, layer="last")
    items = r.featurize(list(corpus)[:6])
    assert items[0].inputs.dtype == torch.float32 and items[0].inputs.dim() == 1
    r.fit_extra(items)
    model = r.build_model().train()
    batch = r.collate(items)
    assert batch["inputs"].shape == (6, max(i.inputs.shape[0] for i in items))
    r.loss(model, batch).backward()
    ssl_grads = [p.grad for p in model.front_end.model.parameters()]
    assert all(g is not None for g in ssl_grads) and any(bool(g.any()) for g in ssl_grads)
    with torch.no_grad():
        probs = r.predict(model.eval(), batch).probs
    assert probs.shape == (6, 4)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(6))
    with pytest.raises(UserError, match="cannot be exported to TorchScript"):
        r.export_module(model)
    with pytest.raises(UserError, match="frozen front ends only"):
        r.export_inputs(batch)


def test_front_end_must_match_the_trained_one(corpus, cache_dir, items):
    r, _ = fitted(corpus, cache_dir, items)
    state = r.state()
    state["extra"]["front_end_hash"] = "0" * 20
    restored = recipe_class("sap").from_state(state)
    with pytest.raises(CheckpointError, match="differs from the one the model was trained with"):
        restored.item_from_audio(load_audio(corpus[0].path))


@pytest.mark.parametrize("waveform,pattern", [
    (torch.zeros(399), r"sap: the recording has 399 samples, fewer than the 400 \(25 ms\)"),
    (torch.zeros(2, 1600), r"sap: the recording: expected a 1-D float tensor \(N,\) of 16 kHz"),
    (torch.full((800,), float("nan")), "sap: the recording: every sample is NaN"),
])
def test_bad_audio(corpus, cache_dir, waveform, pattern):
    with pytest.raises(AudioError, match=pattern):
        recipe(corpus, cache_dir).item_from_audio(waveform)


def test_short_file_in_corpus(corpus, cache_dir, tmp_path):
    import soundfile

    soundfile.write(tmp_path / "tiny.wav", np.zeros(320), 16000)
    short = dataclasses.replace(corpus[0], id="tiny", path=tmp_path / "tiny.wav")
    with pytest.raises(ValueError, match="tiny.wav: 320 samples at 16 kHz is shorter"):
        recipe(corpus, cache_dir).featurize([short])
    with pytest.raises(AudioError, match="utterance 'tiny' has 320 samples"):
        recipe(corpus, cache_dir, cache=False).featurize([short])


@pytest.mark.parametrize("config,pattern", [
    ({"ssl_confg": "tiny"}, "unknown setting"),
    ({"ssl_config": "huge"}, "ssl_config must be a JSON object or one of"),
    ({"ssl_kind": "bert"}, r"setting ssl_kind: expected string \(one of"),
    ({"layer": "first"}, r"setting layer: expected string \(one of"),
    ({"loss_weights": (0.0, 0.0, 0.0)}, "loss_weights must give one weight per target"),
    ({"loss_weights": (0.5, 0.5)}, "loss_weights must give one weight per target"),
    ({"targets": ("emotion", "joy")}, "targets must name one or more of emotion, valence"),
    ({"targets": ()}, "targets must name one or more of"),
    ({"loss_weights": (0.5, -0.25, 0.25)}, r"setting loss_weights: expected .* in \[0, inf\)"),
    ({"cache_dtype": "int8"}, r"setting cache_dtype: expected string \(one of"),
    ({"vad_aggressiveness": 5}, r"setting vad_aggressiveness: expected integer in \[0, 3\]"),
])
def test_bad_config(corpus, config, pattern):
    with pytest.raises(SettingsError, match=pattern):
        make_recipe("sap", corpus.labels, **config)


def test_loss_needs_fit_extra(corpus, cache_dir, items):
    r = recipe(corpus, cache_dir)
    with pytest.raises(RuntimeError, match="call fit_extra"):
        r.loss(r.build_model(), r.collate(items[:2]))


def test_reference_implementation_gives_the_same_loss_and_gradients(corpus, cache_dir, items):
    r, model = fitted(corpus, cache_dir, items, dropout=0.0)
    reference_recipe, reference = fitted(corpus, cache_dir, items, dropout=0.0,
                                         implementation="reference")
    assert reference.head.implementation == "reference" and model.head.implementation == "fused"
    reference.load_state_dict(model.state_dict())
    batch = r.collate(items[:10])
    results = []
    for rec, m in ((r, model.train()), (reference_recipe, reference.train())):
        loss = rec.loss(m, batch)
        loss.backward()
        results.append((loss.detach(), [p.grad for p in m.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-5, rtol=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def _frames(item):
    return torch.from_numpy(np.asarray(item.inputs)).double()


@pytest.mark.parametrize("cache", [True, False])
def test_speaker_norm_gives_each_speaker_mean_0_std_1(corpus, cache_dir, cache):
    utterances = list(corpus) if cache else list(corpus)[:10]
    r = recipe(corpus, cache_dir, speaker_norm=True, cache=cache)
    normed = r.featurize(utterances)
    assert all(item.inputs.dtype == np.float32 for item in normed)
    speakers = [u.speaker for u in utterances]
    assert len(set(speakers)) > 1
    for speaker in set(speakers):
        frames = torch.cat([_frames(i) for i, s in zip(normed, speakers) if s == speaker])
        torch.testing.assert_close(frames.mean(0), torch.zeros_like(frames[0]), atol=1e-5,
                                   rtol=0)
        torch.testing.assert_close(frames.std(0), torch.ones_like(frames[0]), atol=1e-4,
                                   rtol=0)


def test_speaker_norm_of_a_lone_recording_uses_its_own_statistics(corpus, cache_dir, items):
    r = recipe(corpus, cache_dir, speaker_norm=True)
    item = r.item_from_audio(load_audio(corpus[2].path), corpus[2])
    frames = _frames(item)
    torch.testing.assert_close(frames.mean(0), torch.zeros_like(frames[0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(frames.std(0), torch.ones_like(frames[0]), atol=1e-4, rtol=0)
    # the hooks the base class standardises through: float32 layer outputs in and out
    raw = recipe(corpus, cache_dir).item_from_audio(load_audio(corpus[2].path), corpus[2])
    features = r.item_features(raw)
    assert features.dtype == torch.float32 and features.shape == raw.inputs.shape
    assert torch.equal(features, torch.from_numpy(raw.inputs.astype(np.float32)))
    mean, std = features.double().mean(0), features.double().std(0).clamp_min(1e-5)
    torch.testing.assert_close(frames, (features.double() - mean) / std, atol=1e-4, rtol=1e-4)
    replaced = r.with_features(raw, features + 1)
    assert isinstance(replaced.inputs, np.ndarray) and replaced.inputs.dtype == np.float32
    assert torch.equal(replaced.speech, raw.speech) and replaced.label == raw.label


BAD_SETTINGS = [
    ("implementation", "naive"),
    ("speaker_norm", "yes"),
    ("ssl_kind", "bert"),
    ("ssl_path", ""),
    ("ssl_config", "huge"),
    ("ssl_config", 5),
    ("ssl_seed", -1),
    ("ssl_seed", 0.5),
    ("layer", "first"),
    ("frozen", 1),
    ("cache", "no"),
    ("cache_dir", 7),
    ("cache_dtype", "int8"),
    ("vad_frame_ms", 25),
    ("vad_aggressiveness", -1),
    ("vad_aggressiveness", 4),
    ("heads", 0),
    ("heads", 3),  # does not divide the tiny preset's hidden size 32
    ("proj_dim", 0),
    ("dropout", -0.1),
    ("dropout", 1.0),
    ("attention_dropout", 1.0),
    ("sr_norm", None),
    ("regression", "true"),
    ("targets", ("joy",)),
    ("targets", ("emotion", "emotion")),
    ("affect_loss", "l1"),
    ("loss_weights", (1.0, 0.5)),
    ("loss_weights", (0.0, 0.0, 0.0)),
    ("loss_weights", (0.5, -0.1, 0.5)),
    ("loss_weights", (0.5, 0.2, float("inf"))),
]


@pytest.mark.parametrize("key,value", BAD_SETTINGS)
def test_every_setting_is_checked(corpus, key, value):
    with pytest.raises(SettingsError, match=f"^sap: setting {key}"):
        make_recipe("sap", corpus.labels, **{"ssl_config": "tiny", "heads": 2, key: value})


def test_cross_setting_checks(corpus):
    with pytest.raises(SettingsError, match=r"^sap: setting speaker_norm .* \(frozen=True\)"):
        make_recipe("sap", corpus.labels, speaker_norm=True, frozen=False)
    with pytest.raises(SettingsError, match=r"heads \(5\) must divide the SSL hidden size "
                                            r"\(64\)"):
        make_recipe("sap", corpus.labels, ssl_config={"hidden_size": 64}, heads=5)
    # a preset name is only checked without ssl_path (which then describes the front end);
    # the hidden size of a folder's weights is known when the model is built
    r = make_recipe("sap", corpus.labels, ssl_path="/nowhere", ssl_config="huge", heads=3)
    assert r.settings.ssl_config == "huge"
    # every setting in range is accepted, as attributes
    r = make_recipe("sap", corpus.labels, ssl_kind="hubert", ssl_seed=7, layer="last",
                    frozen=False, cache=False, cache_dtype="float32", vad_frame_ms=10,
                    vad_aggressiveness=0, heads=8, proj_dim=1, dropout=0.0,
                    attention_dropout=0.5, sr_norm=True, targets=["emotion", "dominance"],
                    loss_weights=[1, 0], affect_loss="mse", implementation="reference")
    assert r.settings.loss_weights == (1.0, 0.0) and r.settings.vad_frame_ms == 10
    assert r.vad.frame_ms == 10 and r.vad.aggressiveness == 0
    assert r.affect_targets == ("dominance",) and r.settings.affect_loss == "mse"


def test_ssl_config_as_json_object(corpus, cache_dir):
    from fastser.methods.sap import SSL_PRESETS

    value = SAPSettings.parse("sap", "ssl_config", json.dumps(SSL_PRESETS["tiny"]))
    assert isinstance(value, dict) and value["hidden_size"] == 32
    from_dict = recipe(corpus, cache_dir, ssl_config=value)
    assert from_dict.front_end.weights_hash() == recipe(corpus, cache_dir).front_end.weights_hash()
    assert SAPSettings.parse("sap", "loss_weights", "[1, 0.5, 0]") == (1.0, 0.5, 0.0)


def test_settings_round_trip_and_old_states(corpus, cache_dir, items):
    r, _ = fitted(corpus, cache_dir, items, implementation="reference", proj_dim=8)
    restored = SAPRecipe.from_state(r.state())
    assert restored.settings == r.settings
    assert restored.settings.changed() == {"implementation": "reference", "ssl_config": "tiny",
                                           "heads": 2, "cache_dir": cache_dir, "proj_dim": 8}
    # fastser 0.1 stored the changed keys under "config", with naive for the implementation
    old = SAPRecipe.from_state({"label_names": corpus.labels, "extra": {},
                                "config": {"ssl_config": "tiny", "heads": 2, "naive": True}})
    assert old.settings.implementation == "reference" and old.settings.heads == 2


def test_random_front_ends_warn_loudly_and_pretrained_ones_do_not(corpus, cache_dir, tmp_path):
    from fastser.audio.ssl import build_ssl_model
    from fastser.train.kit.ssl import SSL_PRESETS, RandomSSLWeightsWarning

    with pytest.warns(RandomSSLWeightsWarning, match=r"sap: the SSL front end has RANDOM "
                                                     r"weights \(wavlm, tiny configuration"):
        recipe(corpus, cache_dir).front_end  # noqa: B018
    build_ssl_model("wavlm", SSL_PRESETS["tiny"]).save_pretrained(tmp_path / "wavlm")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomSSLWeightsWarning)
        recipe(corpus, cache_dir, ssl_path=str(tmp_path / "wavlm")).front_end  # noqa: B018


def test_an_ssl_model_name_that_cannot_be_fetched_is_a_clear_error(corpus, cache_dir,
                                                                    monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network here
    r = recipe(corpus, cache_dir, ssl_path="fastser-tests/no-such-wavlm")
    with pytest.raises(UserError, match="SSL model 'fastser-tests/no-such-wavlm': not a local "
                                        "folder, and transformers could not load it by name"):
        r.featurize(list(corpus)[:2])


def test_max_seconds_cuts_the_audio_before_the_front_end(corpus, cache_dir, items):
    longest = max(range(len(corpus)), key=lambda i: items[i].inputs.shape[0])
    wave = load_audio(corpus[longest].path)
    seconds = wave.shape[0] / 16000 / 2
    r = recipe(corpus, cache_dir, max_seconds=seconds)
    cut = r.featurize([corpus[longest]])[0]  # through the cache (its own key)
    half = recipe(corpus, cache_dir).item_from_audio(wave[:round(seconds * 16000)],
                                                     corpus[longest])
    assert cut.inputs.shape == half.inputs.shape < items[longest].inputs.shape
    np.testing.assert_allclose(np.asarray(cut.inputs, dtype=np.float32),
                               half.inputs.astype(np.float32), rtol=2e-3, atol=1e-4)
    assert torch.equal(cut.speech, half.speech)
    fresh = r.item_from_audio(wave, corpus[longest])
    assert fresh.inputs.shape == half.inputs.shape


@pytest.mark.parametrize("pooling", ["gap", "sap"])
def test_pooling_ablations_train(corpus, cache_dir, items, pooling):
    r, model = fitted(corpus, cache_dir, items, pooling=pooling)
    assert model.head.projection[0].in_features == 32  # D, not 2D
    r.loss(model, r.collate(items[:4])).backward()
    used = model.head.attention.in_proj_weight.grad is not None
    assert used == (pooling == "sap")


def test_paper_preset(corpus):
    preset = SAPRecipe.presets["paper"]
    r = make_recipe("sap", corpus.labels, **preset.settings)  # nothing loaded yet
    s = r.settings
    assert (s.ssl_path, s.frozen, s.max_seconds, s.pooling) == ("microsoft/wavlm-large", False,
                                                                19.0, "gap+sap")
    config = TrainConfig(**preset.training)
    assert (config.lr, config.batch_size, config.epochs, config.warmup_fraction,
            config.schedule, config.patience, config.monitor) == (3e-5, 64, 30, 0.1,
                                                                  "warmup_cosine", 5, "loss")


def test_demo_preset(corpus):
    preset = SAPRecipe.presets["demo"]
    r = make_recipe("sap", corpus.labels, **preset.settings)
    assert r.settings.speaker_norm and r.settings.dropout == 0.3
    assert r.settings.ssl_config == "small" and r.settings.layer == "weighted"
    assert dict(preset.training) == {"epochs": 20, "batch_size": 16, "lr": 2e-3,
                                     "weight_decay": 0.05}


def test_augmentation_settings_are_checked_next_to_the_ssl_front_end():
    # SSLSettings.check hands on to AugmentSettings.check (SAPSettings has both bases)
    with pytest.raises(SettingsError, match="noise_snr"):
        make_recipe("sap", ["neutral", "angry"], ssl_config="tiny", heads=2,
                    noise_snr=(30.0, 10.0))
