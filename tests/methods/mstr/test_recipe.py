"""The MSTR recipe and its vanilla-Transformer baseline: features, standardisation, state,
the naive path, padding invariance, export in a fresh process, bad input and a smoke
training run on a tiny synthetic corpus."""

import pytest
import torch

import optest
from fastser.data.synthetic import SyntheticConfig, load_synthetic
from fastser.export import export_program, export_torchscript
from fastser.models.mstr import MSTR
from fastser.models.transformer import VanillaTransformer
from fastser.train.recipes import make_recipe, recipe_class
from fastser.train.recipes.mstr import FrameItem, MSTRRecipe, TransformerRecipe
from fastser.train.run import TrainedModel
from fastser.train.trainer import TrainConfig, Trainer

LABELS = ("neutral", "happy", "sad", "angry")
SMALL = {"embed_dim": 16, "num_heads": 2, "num_blocks": 1, "ffn_dim": 32, "dropout": 0.0}
RECIPES = [MSTRRecipe, TransformerRecipe]


@pytest.fixture(scope="module")
def corpus():
    return load_synthetic(SyntheticConfig(utterances=40, speakers=4))


@pytest.fixture(scope="module")
def items(corpus):
    return MSTRRecipe(LABELS).featurize(list(corpus))


def fitted(cls, items, **config):
    recipe = cls(LABELS, **{**SMALL, **config})
    recipe.fit_extra(items)
    return recipe


def test_registered_and_configuration_checked():
    assert recipe_class("mstr") is MSTRRecipe and recipe_class("transformer") is TransformerRecipe
    assert isinstance(make_recipe("mstr", LABELS).build_model(), MSTR)
    assert isinstance(make_recipe("transformer", LABELS).build_model(), VanillaTransformer)
    with pytest.raises(ValueError, match=r"mstr: unknown config key\(s\) \['head'\]"):
        MSTRRecipe(LABELS, head=3)
    with pytest.raises(ValueError, match=r"transformer: unknown config key\(s\) \['p'\]"):
        TransformerRecipe(LABELS, p=3)


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
    with pytest.raises(ValueError, match=r"mstr: waveform must be a 1-D tensor"):
        recipe.item_from_audio(torch.zeros(2, 16000))
    with pytest.raises(ValueError, match=r"mstr: utterance '.*': .*shorter than one frame"):
        recipe.item_from_audio(torch.zeros(100), corpus[0])
    with pytest.raises(ValueError, match="empty batch"):
        recipe.collate([])


def test_collate_standardises_with_training_statistics_and_state_keeps_them(items):
    recipe = fitted(MSTRRecipe, items)
    frames = torch.cat([item.frames for item in items])
    torch.testing.assert_close(recipe.feature_mean, frames.mean(0))
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
def test_naive_config_is_the_same_model_on_the_naive_path(cls, items):
    recipe, naive = fitted(cls, items), fitted(cls, items, naive=True)
    model = recipe.build_model()
    naive_model = naive.build_model()
    naive_model.load_state_dict(model.state_dict())
    attention = naive_model.blocks[0].attention
    assert getattr(attention, "use_reference", getattr(attention, "naive", None)) is True
    batch = recipe.collate(items[:6])
    losses = []
    for r, m in ((recipe, model), (naive, naive_model)):
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
