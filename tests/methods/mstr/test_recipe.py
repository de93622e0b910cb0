"""The MSTR recipe and its vanilla-Transformer baseline: settings and their ranges, features,
standardisation (global and per speaker), state, the reference implementation, padding
invariance, export in a fresh process, bad input and a smoke training run on a tiny synthetic
corpus."""

import importlib
import sys

import numpy as np
import pytest
import torch

import optest
from fastser.data.protocols import speaker_split
from fastser.errors import AudioError, SettingsError, UserError
from fastser.inference import TrainedModel, export_program, export_torchscript
from fastser.methods import make_recipe, recipe_class
from fastser.methods.mstr import MSTR, VanillaTransformer
from fastser.methods.mstr.recipe import (FrameItem, MSTRRecipe, MSTRSettings, TransformerRecipe,
                                         TransformerSettings)
from fastser.train.evaluation import predict_items
from fastser.train.metrics import concordance_cc
from fastser.train.trainer import TrainConfig, Trainer

LABELS = ("neutral", "happy", "sad", "angry")
SIZES = {"embed_dim": 16, "num_heads": 2, "num_blocks": 1, "ffn_dim": 32, "dropout": 0.0}
SMALL = {**SIZES, "speaker_norm": False, "class_weighted": False}
RECIPES = [MSTRRecipe, TransformerRecipe]


@pytest.fixture(scope="module")
def items(corpus):
    return MSTRRecipe(LABELS).featurize(list(corpus))


def fitted(cls, items, **settings):
    recipe = cls(LABELS, **{**SMALL, **settings})
    recipe.fit_extra(items)
    return recipe


def test_registered_and_configuration_checked():
    assert recipe_class("mstr") is MSTRRecipe and recipe_class("transformer") is TransformerRecipe
    assert isinstance(make_recipe("mstr", LABELS).build_model(), MSTR)
    assert isinstance(make_recipe("transformer", LABELS).build_model(), VanillaTransformer)
    with pytest.raises(SettingsError, match=r"mstr: unknown setting\(s\) head;"):
        MSTRRecipe(LABELS, head=3)
    with pytest.raises(SettingsError, match=r"transformer: unknown setting\(s\) p;"):
        TransformerRecipe(LABELS, p=3)
    assert MSTRRecipe.Settings is MSTRSettings and TransformerRecipe.Settings is TransformerSettings
    assert set(MSTRSettings.fields()) == set(TransformerSettings.fields()) | {"p", "levels"}


def test_items_are_mfcc_frames_at_the_ssl_frame_rate(corpus, items):
    for u, item in zip(corpus, items):
        assert isinstance(item, FrameItem) and item.label == LABELS.index(u.label)
        assert item.frames.dtype == torch.float32 and item.frames.shape[1] == 40
    item = MSTRRecipe(LABELS).item_from_audio(0.1 * torch.randn(16000))
    assert item.label == -1 and item.frames.shape == ((16000 - 400) // 320 + 1, 40)
    assert MSTRRecipe(LABELS, hop_ms=10.0, n_mfcc=20).item_from_audio(
        torch.zeros(16000)).frames.shape == ((16000 - 400) // 160 + 1, 20)


def test_speaker_norm_standardises_each_speaker_with_its_own_frames(corpus, items):
    normed = MSTRRecipe(LABELS, speaker_norm=True).featurize(list(corpus))
    speakers = [u.speaker for u in corpus]
    for speaker in set(speakers):
        raw = torch.cat([i.frames for i, s in zip(items, speakers) if s == speaker]).double()
        mean, std = raw.mean(0), raw.std(0)
        for item, normed_item, s in zip(items, normed, speakers):
            if s == speaker:
                torch.testing.assert_close(normed_item.frames.double(),
                                           (item.frames.double() - mean) / std,
                                           atol=1e-4, rtol=1e-4)
    # a lone recording is its own speaker
    lone = MSTRRecipe(LABELS, speaker_norm=True).item_from_audio(0.1 * torch.randn(16000))
    torch.testing.assert_close(lone.frames.mean(0), torch.zeros(40), atol=1e-4, rtol=0)


def test_bad_audio_is_a_clear_error(corpus):
    recipe = MSTRRecipe(LABELS)
    with pytest.raises(AudioError, match=r"mstr: the recording: expected a 1-D float tensor"):
        recipe.item_from_audio(torch.zeros(2, 16000))
    with pytest.raises(AudioError, match=r"mstr: utterance '.*' has 100 samples, fewer than "
                                         r"the 400 \(25 ms\)"):
        recipe.item_from_audio(torch.zeros(100), corpus[0])
    assert recipe.item_from_audio(torch.zeros(400)).frames.shape == (1, 40)  # one frame
    with pytest.raises(ValueError, match="empty batch"):
        recipe.collate([])


def test_collate_standardises_with_training_statistics_and_state_keeps_them(items):
    recipe = fitted(MSTRRecipe, items)
    frames = torch.cat([item.frames for item in items])
    torch.testing.assert_close(recipe.feature_stats.mean, frames.mean(0))
    batch = recipe.collate(items[:3])
    lengths = [item.frames.shape[0] for item in items[:3]]
    assert batch["lengths"].tolist() == lengths and batch["labels"].tolist() == [
        item.label for item in items[:3]]
    assert batch["features"].shape == (3, max(lengths), 40)
    torch.testing.assert_close(batch["features"][1, :lengths[1]],
                               (items[1].frames - frames.mean(0)) / frames.std(0))
    restored = MSTRRecipe.from_state(recipe.state())
    assert restored.settings == recipe.settings
    assert torch.equal(restored.collate(items[:3])["features"], batch["features"])
    assert torch.equal(MSTRRecipe(LABELS).collate(items[:1])["features"][0], items[0].frames)


@pytest.mark.parametrize("cls", RECIPES)
def test_reference_implementation_is_the_same_model_on_the_reference_path(cls, items):
    recipe = fitted(cls, items)
    reference = fitted(cls, items, implementation="reference")
    model = recipe.build_model()
    reference_model = reference.build_model()
    reference_model.load_state_dict(model.state_dict())
    attention = reference_model.blocks[0].attention
    assert attention.implementation == "reference"
    assert model.blocks[0].attention.implementation == "fused"
    # the 0.1 key `naive` is read as the implementation
    assert fitted(cls, items, naive=True).settings == reference.settings
    batch = recipe.collate(items[:6])
    losses = []
    for r, m in ((recipe, model), (reference, reference_model)):
        loss = r.loss(m, batch)
        loss.backward()
        losses.append((loss, [p.grad for p in m.parameters()]))
    torch.testing.assert_close(losses[0][0], losses[1][0], atol=1e-5, rtol=1e-5)
    for got, want in zip(losses[0][1], losses[1][1]):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cls", RECIPES)
def test_predictions_do_not_depend_on_batch_companions(cls, items):
    recipe = fitted(cls, items)
    model = recipe.build_model().eval()
    with torch.no_grad():
        together = recipe.predict(model, recipe.collate(items[:5])).probs
        alone = torch.cat([recipe.predict(model, recipe.collate([i])).probs for i in items[:5]])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together.sum(dim=1), torch.ones(5))


@pytest.mark.parametrize("cls", RECIPES)
def test_export_runs_in_a_fresh_process_without_fastser(cls, items, tmp_path):
    recipe = fitted(cls, items)
    model = recipe.build_model().eval()
    path = export_torchscript(TrainedModel(recipe, model, {}), tmp_path / "model.ts")
    batch = recipe.collate(items[:3])
    inputs = recipe.export_inputs(batch)
    with torch.no_grad():
        expected = recipe.predict(model, batch).probs
    optest.check_scripted_in_fresh_process(path, inputs, expected, tmp_path, atol=1e-5)


@pytest.mark.parametrize("cls", RECIPES)
def test_torch_export_with_dynamic_batch_and_frames(cls, items, tmp_path):
    recipe = fitted(cls, items)
    model = recipe.build_model().eval()
    path = export_program(TrainedModel(recipe, model, {}), tmp_path / "model.pt2")
    program = torch.export.load(str(path)).module()
    batch = recipe.collate(items[:3])  # other B and T than the example batch exported
    with torch.no_grad():
        torch.testing.assert_close(program(*recipe.export_inputs(batch)),
                                   recipe.predict(model, batch).probs, atol=1e-5, rtol=1e-5)
    features, lengths = recipe.export_inputs(batch)
    with pytest.raises(RuntimeError):  # the run-time assert on the lengths' bounds
        program(features, lengths + features.shape[1])


@pytest.mark.parametrize("name", ["mstr", "transformer"])
def test_smoke_training_run(name, items, tmp_path):
    recipe = make_recipe(name, LABELS, **SMALL)
    config = TrainConfig(epochs=3, batch_size=8, lr=3e-3, warmup_fraction=0.0, seed=0,
                         device="cpu", progress=False)
    fit = Trainer(recipe, config, tmp_path).fit(items[:32], items[32:])
    losses = [record["train_loss"] for record in fit.history]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    assert fit.best is not None and 0 <= fit.best["ua"] <= 1
    assert (tmp_path / "best.pt").exists()


# -- settings ------------------------------------------------------------------------------------

BAD_SETTINGS = [
    ("n_mfcc", 0), ("n_mfcc", 65), ("n_mfcc", 2.5), ("hop_ms", 0.0), ("hop_ms", -10.0),
    ("hop_ms", "fast"), ("embed_dim", 0), ("num_heads", 0), ("num_blocks", 0), ("ffn_dim", 0),
    ("dropout", -0.1), ("dropout", 1.0), ("classifier_hidden", (8, 0)),
    ("classifier_hidden", 16), ("implementation", "naive"), ("speaker_norm", 1),
]


@pytest.mark.parametrize("cls", RECIPES)
@pytest.mark.parametrize("key,value", BAD_SETTINGS)
def test_every_setting_out_of_range_is_rejected_naming_it(cls, key, value):
    with pytest.raises(SettingsError, match=rf"{cls.name}: setting {key}: expected"):
        cls(LABELS, **{key: value})


@pytest.mark.parametrize("key,value", [("p", 1), ("p", 0), ("p", 2.5), ("levels", 0),
                                       ("levels", 1.5), ("p", "3")])
def test_mstr_scales_are_integers_in_range(key, value):
    with pytest.raises(SettingsError, match=rf"mstr: setting {key}: expected integer"):
        MSTRRecipe(LABELS, **{key: value})


def test_fractional_p_is_rejected_before_any_work():
    """`--set p=2.5` used to pass the recipe and fail in the first forward pass."""
    with pytest.raises(SettingsError, match=r"mstr: setting p: expected integer in \[2, inf\), "
                                            r"got 2.5"):
        MSTRSettings.parse("mstr", "p", "2.5")
    assert MSTRSettings.parse("mstr", "p", "2") == 2
    assert MSTRSettings.parse("mstr", "levels", "3.0") == 3
    recipe = MSTRRecipe(LABELS, p=2.0, levels=5, **SMALL)
    assert (recipe.settings.p, recipe.settings.levels) == (2, 5)
    attention = recipe.build_model().blocks[0].attention
    assert (attention.p, attention.levels) == (2, 5)


@pytest.mark.parametrize("cls", RECIPES)
def test_settings_checked_together(cls):
    with pytest.raises(SettingsError, match=rf"{cls.name}: setting num_heads \(3\) must divide "
                                            r"embed_dim \(16\)"):
        cls(LABELS, embed_dim=16, num_heads=3)
    with pytest.raises(SettingsError, match="setting classifier_hidden must be two sizes"):
        cls(LABELS, classifier_hidden=(8,))
    with pytest.raises(SettingsError, match="setting classifier_hidden must be two sizes"):
        cls(LABELS, classifier_hidden=(8, 8, 8))
    with pytest.raises(SettingsError, match="setting hop_ms .* shorter than one sample"):
        cls(LABELS, hop_ms=0.01)
    recipe = cls(LABELS, **{**SMALL, "classifier_hidden": [12, 6]})
    assert recipe.settings.classifier_hidden == (12, 6)
    linears = [m for m in recipe.build_model().classifier if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 12), (12, 6), (6, 4)]


# -- SSL features, positional encoding, the paper preset ---------------------------------------

@pytest.fixture(scope="module")
def ssl_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("ssl-cache"))


def ssl_settings(cache_dir, **more):
    return {**SMALL, "features": "ssl", "ssl_config": "tiny", "cache_dir": cache_dir, **more}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("layer", ["last", "weighted"])
def test_ssl_features_through_the_front_end_and_cache_sap_uses(corpus, ssl_cache, layer,
                                                                tmp_path):
    from fastser.audio.io import load_audio
    from fastser.methods.mstr.transformer import CombinedLayers
    from fastser.methods.sap import SAPRecipe

    recipe = MSTRRecipe(LABELS, **ssl_settings(ssl_cache, layer=layer))
    items = recipe.featurize(list(corpus))
    sap = SAPRecipe(LABELS, ssl_config="tiny", heads=2, cache_dir=ssl_cache, layer=layer)
    sap_items = sap.featurize(list(corpus))  # the same cache entry: the same arrays
    for item, other in zip(items, sap_items):
        assert item.frames.shape == other.inputs.shape and item.frames.dtype == np.float16
        np.testing.assert_array_equal(np.asarray(item.frames), np.asarray(other.inputs))
    fresh = recipe.item_from_audio(load_audio(corpus[2].path))
    np.testing.assert_allclose(fresh.frames.astype(np.float32),
                               np.asarray(items[2].frames, dtype=np.float32), rtol=2e-3,
                               atol=1e-4)
    recipe.fit_extra(items)
    model = recipe.build_model()
    assert isinstance(model, CombinedLayers) == (layer == "weighted")
    assert recipe.extra_state()["front_end_hash"] == recipe.ssl.front_end.weights_hash()
    fit = Trainer(recipe, TrainConfig(epochs=2, batch_size=8, lr=3e-3, seed=0, device="cpu",
                                      progress=False), tmp_path).fit(items[:32], items[32:])
    assert fit.history[-1]["train_loss"] < fit.history[0]["train_loss"]
    batch = recipe.collate(items[:3])
    path = export_torchscript(TrainedModel(recipe, fit.model.eval(), {}), tmp_path / "m.ts")
    with torch.no_grad():
        expected = recipe.predict(fit.model, batch).probs
    optest.check_scripted_in_fresh_process(path, recipe.export_inputs(batch), expected,
                                           tmp_path, atol=1e-5)


def test_the_sinusoidal_encoding_makes_the_baseline_see_frame_order(items):
    frames = items[0].frames[None]
    order = torch.randperm(frames.shape[1], generator=torch.Generator().manual_seed(0))
    for encoding in ("none", "sinusoidal"):
        torch.manual_seed(0)
        model = VanillaTransformer(40, 4, **SIZES, positional_encoding=encoding).eval()
        with torch.no_grad():
            same = torch.allclose(model.embed(frames), model.embed(frames[:, order]), atol=1e-5)
        assert same == (encoding == "none")  # without it: a bag of frames


@pytest.mark.parametrize("cls", RECIPES)
def test_paper_preset(cls):
    paper = cls.presets["paper"]
    recipe = cls(LABELS, **paper.settings)  # nothing loaded yet
    s = recipe.settings
    assert (s.features, s.ssl_kind, s.ssl_path, s.layer) == (
        "ssl", "hubert", "facebook/hubert-large-ll60k", "last")
    assert (s.embed_dim, s.num_heads, s.num_blocks, s.ffn_dim) == (1024, 16, 4, 1024)
    model = (MSTR if cls is MSTRRecipe else VanillaTransformer)(
        1024, 4, **recipe.model_settings())  # HuBERT-large's 1024-d frames
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 26.9  # Table 2: 27.0
    config = TrainConfig(**paper.training)
    assert (config.optimizer, config.lr, config.epochs, config.batch_size) == ("adam", 1e-4,
                                                                               150, 32)


@pytest.mark.parametrize("cls", RECIPES)
def test_demo_preset(cls):
    demo = cls.presets["demo"]
    assert dict(demo.settings) == {"embed_dim": 64, "num_heads": 4, "num_blocks": 2,
                                   "ffn_dim": 128, "dropout": 0.3, "speaker_norm": True,
                                   "class_weighted": False}
    assert dict(demo.training) == {"epochs": 30, "batch_size": 16, "lr": 2e-3,
                                   "weight_decay": 0.05}
    settings = cls(LABELS, **demo.settings).settings
    assert all(getattr(settings, k) == v for k, v in demo.settings.items())


# -- per-speaker standardisation through the recipe base class ------------------------------------

@pytest.mark.parametrize("cls", RECIPES)
def test_speaker_norm_gives_each_speaker_mean_0_std_1(cls, corpus):
    recipe = cls(LABELS, speaker_norm=True)
    normed = recipe.featurize(list(corpus))
    assert all(isinstance(item, FrameItem) for item in normed)
    speakers = [u.speaker for u in corpus]
    assert len(set(speakers)) == 4
    for speaker in set(speakers):
        frames = torch.cat([recipe.item_features(item)
                            for item, s in zip(normed, speakers) if s == speaker]).double()
        torch.testing.assert_close(frames.mean(0), torch.zeros(40, dtype=torch.float64),
                                   atol=1e-4, rtol=0)
        torch.testing.assert_close(frames.std(0), torch.ones(40, dtype=torch.float64),
                                   atol=1e-4, rtol=0)
    # labels are kept; a lone recording is its own speaker
    assert [item.label for item in normed] == [LABELS.index(u.label) for u in corpus]
    lone = recipe.item_from_audio(0.1 * torch.randn(24000, generator=torch.Generator()
                                                     .manual_seed(4)))
    assert lone.label == -1
    torch.testing.assert_close(lone.frames.mean(0), torch.zeros(40), atol=1e-4, rtol=0)
    torch.testing.assert_close(lone.frames.std(0), torch.ones(40), atol=1e-4, rtol=0)


def test_item_features_and_with_features_round_trip(items):
    recipe = MSTRRecipe(LABELS)
    item = items[0]
    assert recipe.item_features(item) is item.frames
    replaced = recipe.with_features(item, torch.zeros_like(item.frames))
    assert isinstance(replaced, FrameItem) and replaced.label == item.label
    assert torch.equal(replaced.frames, torch.zeros_like(item.frames))


def test_feature_statistics_keep_their_checkpoint_keys(items):
    recipe = fitted(MSTRRecipe, items)
    assert set(recipe.extra_state()) == {"feature_mean", "feature_std"}
    assert MSTRRecipe(LABELS).extra_state() == {}
    restored = MSTRRecipe(LABELS, **SMALL)
    restored.load_extra_state(recipe.extra_state())
    assert torch.equal(restored.feature_stats.std, recipe.feature_stats.std)
    restored.load_extra_state({})
    assert restored.feature_stats is None


@pytest.mark.parametrize("cls", RECIPES)
def test_implementations_predict_the_same(cls, items):
    fused, reference = fitted(cls, items), fitted(cls, items, implementation="reference")
    torch.manual_seed(0)
    model = fused.build_model().eval()
    reference_model = reference.build_model().eval()
    reference_model.load_state_dict(model.state_dict())
    batch = fused.collate(items[:7])
    assert torch.equal(reference.collate(items[:7])["features"], batch["features"])
    with torch.no_grad():
        torch.testing.assert_close(fused.predict(model, batch).probs,
                                   reference.predict(reference_model, batch).probs,
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("old,new", [("fastser.models.mstr", "fastser.methods.mstr.model"),
                                     ("fastser.models.transformer",
                                      "fastser.methods.mstr.transformer"),
                                     ("fastser.train.recipes.mstr",
                                      "fastser.methods.mstr.recipe")])
def test_old_import_paths_still_work_with_a_warning(old, new, monkeypatch):
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=f"{old} has moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


@pytest.mark.parametrize("cls", RECIPES)
def test_class_weighted_cross_entropy(cls, items):
    plain, weighted = fitted(cls, items), fitted(cls, items, class_weighted=True)
    assert plain.class_weights is None and "class_weights" not in plain.state()["extra"]
    labels = torch.tensor([item.label for item in items])
    counts = torch.bincount(labels, minlength=len(LABELS)).double()
    torch.testing.assert_close(weighted.class_weights.double(),
                               counts.sum() / (len(LABELS) * counts))
    model = weighted.build_model().eval()
    batch = weighted.collate(items[:8])
    logits = model(batch["features"], batch["lengths"])
    nll = -logits.log_softmax(1).double()[torch.arange(8), batch["labels"]]
    w = weighted.class_weights.double()[batch["labels"]]
    torch.testing.assert_close(weighted.loss(model, batch).double(), (w * nll).sum() / w.sum(),
                               rtol=1e-5, atol=1e-6)
    restored = cls.from_state(weighted.state())
    torch.testing.assert_close(restored.class_weights, weighted.class_weights)


def test_the_leaderboard_skips_random_ssl_weights_like_sap(corpus):
    from fastser.methods.sap import SAPRecipe

    random_weights = [cls(LABELS, **SMALL, features="ssl", ssl_config="tiny") for cls in RECIPES]
    for recipe in [*random_weights, SAPRecipe(LABELS, ssl_config="tiny", heads=2)]:
        assert "no pretrained SSL weights" in recipe.requirements(corpus)[0]
    for cls in RECIPES:  # MFCC, or SSL with weights named (nothing is loaded here)
        assert cls(LABELS, **SMALL).requirements(corpus) == []
        assert cls(LABELS, **SMALL, features="ssl", ssl_path="/somewhere").requirements(
            corpus) == []
# ---------------------------------------------------------------- dimensional emotion

AFFECT = ("arousal", "valence")


@pytest.mark.parametrize("cls", RECIPES)
def test_regression_head_loss_and_predictions(cls, corpus):
    """Emotion and affect targets: one head of C + K outputs; the loss is CE plus 1 - CCC of
    the standardised values; predictions are restored to the corpus' scale."""
    recipe = cls(LABELS, **SMALL, targets=["emotion", *AFFECT], loss_weights=[1.0, 0.5, 2.0])
    items = recipe.featurize(list(corpus))
    assert items[0].affect == (corpus[0].arousal, corpus[0].valence) and items[0].id == corpus[0].id
    recipe.fit_extra(items)
    values = torch.tensor([item.affect for item in items], dtype=torch.float64)
    assert recipe.affect_scale.mean == pytest.approx(tuple(values.mean(0).tolist()))
    torch.manual_seed(0)
    model = recipe.build_model().eval()
    assert model.classifier[-1].out_features == len(LABELS) + 2
    batch = recipe.collate(items[:12])
    outputs = model(batch["features"], batch["lengths"])
    ce = torch.nn.functional.cross_entropy(outputs[:, :4], batch["labels"])
    mean, std = torch.tensor(recipe.affect_scale.mean), torch.tensor(recipe.affect_scale.std)
    standard = (batch["affect"] - mean) / std
    ccc = [concordance_cc(standard[:, k], outputs[:, 4 + k]) for k in range(2)]
    torch.testing.assert_close(recipe.loss(model, batch),
                               ce + 0.5 * (1 - ccc[0]) + 2.0 * (1 - ccc[1]), atol=1e-5, rtol=1e-5)
    preds = recipe.predict(model, batch)
    torch.testing.assert_close(preds.probs, outputs[:, :4].softmax(dim=1))
    torch.testing.assert_close(preds.affect, outputs[:, 4:] * std + mean)
    restored = cls.from_state(recipe.state())
    assert restored.affect_scale == recipe.affect_scale and restored.targets == recipe.targets


def test_affect_only_training_monitors_ccc_and_predicts_values(corpus, tmp_path):
    recipe = TransformerRecipe(["ignored", "classes"], **SMALL, targets=["arousal"])
    assert recipe.label_names == [] and not recipe.predicts_emotion
    split = speaker_split(corpus, seed=0)
    fit = Trainer(recipe, TrainConfig(epochs=3, batch_size=8, lr=3e-3, progress=False),
                  tmp_path).fit(recipe.featurize(list(split.train)),
                                recipe.featurize(list(split.validation)))
    val = fit.history[0]["val"]
    assert set(val) == {"ccc", "arousal_ccc", "arousal_pearson", "arousal_mae"}
    assert fit.best["ccc"] == max(h["val"]["ccc"] for h in fit.history)
    test = recipe.featurize(list(split.test))
    preds, _, truth = predict_items(recipe, fit.model, test)
    assert preds.probs.shape == (len(test), 0) and preds.affect.shape == (len(test), 1)
    assert torch.equal(truth[:, 0], torch.tensor([u.arousal for u in split.test]))
    trained = TrainedModel(recipe, fit.model, {})
    with pytest.raises(UserError, match="predicts affect only .* nothing to export"):
        export_torchscript(trained, tmp_path / "m.ts")


def test_affect_settings_are_checked():
    with pytest.raises(SettingsError, match="targets must name one or more of"):
        TransformerRecipe(LABELS, targets=["joy"])
    with pytest.raises(SettingsError, match="loss_weights must give one weight per target"):
        TransformerRecipe(LABELS, targets=["emotion", "arousal"], loss_weights=[1.0])
    with pytest.raises(SettingsError, match=r"setting affect_loss: expected string \(one of"):
        TransformerRecipe(LABELS, affect_loss="huber")
