"""The GLRF recipe: windows at the training and test hops, packing, the fused and naive
head-k-pooling losses, predictions with segment scores, export, and a smoke training run."""

import pytest
import torch
from torch import nn

import optest
from fastser.errors import AudioError, SettingsError
from fastser.audio.features import MFCC
from fastser.audio.segmentation import fixed_windows, num_windows
from fastser.data.protocols import speaker_split
from fastser.inference import Recognizer, export_program, load_trained
from fastser.methods import make_recipe
from fastser.methods.glrf import GLRFRecipe
from fastser.methods.glrf.model import utterance_scores
from fastser.ops import head_k_pooling_loss
from fastser.ops.reference import head_k_pooling_loss_reference
from fastser.train.evaluation import evaluate
from fastser.train.trainer import TrainConfig, Trainer

LABELS = ["neutral", "happy", "sad", "angry"]
SMALL = dict(channels=16, blocks=2, heads=2, dropout=0.0, speaker_norm=False)
# shorter than a window, one window, one sample short of a second training window, exactly
# two training windows, two test windows, many windows with a tail
LENGTHS = [5000, 32000, 35199, 35200, 38400, 51234]


def _recipe(**kw):
    return GLRFRecipe(LABELS, **{**SMALL, **kw})


def _waves(lengths=LENGTHS, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [0.1 * torch.randn(n, generator=gen) for n in lengths]


def _batch(recipe, waves, labels=None):
    items = [recipe.item_from_audio(w) for w in waves]
    if labels is not None:
        items = [item._replace(label=label) for item, label in zip(items, labels)]
    return recipe.collate(items)


def _model(recipe, seed=0):
    torch.manual_seed(seed)
    return recipe.build_model()


class _Recording(nn.Module):
    """The model, noting how many segments each call scores."""

    def __init__(self, model):
        super().__init__()
        self.model, self.sizes = model, []

    def forward(self, features):
        self.sizes.append(features.shape[0])
        return self.model(features)


def test_registered_under_glrf():
    assert isinstance(make_recipe("glrf", LABELS), GLRFRecipe)


def test_segments_are_the_mfcc_of_the_fixed_windows_at_each_hop():
    recipe = _recipe()
    waves = _waves()
    batch = _batch(recipe, waves)
    mfcc = MFCC(16000, 40, top_db=None)
    for hop_seconds, hop in ((0.2, recipe.train_hop_samples), (0.4, recipe.test_hop_samples)):
        features, counts = recipe.segments(batch, hop)
        windows = fixed_windows(waves, window=2.0, hop=hop_seconds)
        assert torch.equal(counts, windows.counts)
        assert features.shape == (int(counts.sum()), 198, 40)
        torch.testing.assert_close(features, mfcc(windows.segments), atol=1e-4, rtol=1e-5)


def test_training_uses_the_training_hop_and_prediction_the_test_hop():
    recipe = _recipe()
    waves = _waves()
    batch = _batch(recipe, waves, labels=[0, 1, 2, 3, 1, 2])
    model = _Recording(_model(recipe))
    recipe.loss(model, batch)
    preds = recipe.predict(model, batch)
    train_counts = [num_windows(len(w), 32000, 3200) for w in waves]
    test_counts = [num_windows(len(w), 32000, 6400) for w in waves]
    assert train_counts != test_counts
    assert model.sizes == [sum(train_counts), sum(test_counts)]
    assert preds.segment_counts.tolist() == test_counts
    assert recipe.export_inputs(batch)[1].tolist() == test_counts


def test_predictions_are_the_mean_of_segment_sigmoid_scores():
    recipe = _recipe()
    batch = _batch(recipe, _waves())
    model = _model(recipe).eval()
    with torch.no_grad():
        preds = recipe.predict(model, batch)
        features, counts = recipe.segments(batch, recipe.test_hop_samples)
        segment_probs = torch.sigmoid(model(features))
    torch.testing.assert_close(preds.segment_probs, segment_probs)
    torch.testing.assert_close(preds.probs, utterance_scores(segment_probs, counts))
    with torch.no_grad():
        exported = recipe.export_module(model)(*recipe.export_inputs(batch))
    torch.testing.assert_close(exported, preds.probs)


@pytest.mark.parametrize("neutral", ["neutral", None])
def test_fused_and_reference_losses_agree_with_gradients(neutral):
    fused = _recipe(neutral=neutral, k=0.6)
    naive = _recipe(neutral=neutral, k=0.6, implementation="reference")
    batch = _batch(fused, _waves(), labels=[0, 1, 2, 3, 1, 0])
    model = _model(fused).train()
    results = []
    for recipe in (fused, naive):
        torch.manual_seed(5)  # the same dropout masks (none here) and batch statistics
        model.zero_grad()
        loss = recipe.loss(model, batch)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-6, rtol=1e-6)
    for g_fused, g_naive in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(g_fused, g_naive, atol=1e-5, rtol=1e-4)
    # and both are the reference loss with this recipe's neutral class and k
    features, counts = fused.segments(batch, fused.train_hop_samples)
    model.eval()
    want = head_k_pooling_loss_reference(model(features), counts, batch["labels"], 0.6,
                                         0 if neutral else None)
    torch.testing.assert_close(fused.loss(model, batch), want, atol=1e-6, rtol=1e-6)


def test_k_of_one_is_the_cross_entropy_ablation():
    """Table 4's "wo/ Head-k-Pooling": with k = 1 every segment is selected and the loss is the
    mean one-vs-rest binary cross entropy of all segments towards the utterance's class."""
    torch.manual_seed(5)
    logits, counts = torch.randn(7, 4), torch.tensor([3, 1, 3])
    labels = torch.tensor([2, 0, 3])
    targets = torch.nn.functional.one_hot(labels.repeat_interleave(counts), 4).float()
    want = torch.stack([torch.nn.functional.binary_cross_entropy_with_logits(
        part_logits, part_targets) for part_logits, part_targets in
        zip(logits.split(counts.tolist()), targets.split(counts.tolist()))]).mean()
    for neutral in (None, 0):
        torch.testing.assert_close(head_k_pooling_loss(logits, counts, labels, k=1.0,
                                                       neutral_class=neutral), want)


def test_paper_preset():
    paper = GLRFRecipe.presets["paper"]
    s = GLRFRecipe(LABELS, **paper.settings).settings
    assert (s.scorer, s.fusion, s.branches, s.k, s.train_hop, s.test_hop) == (
        "linear", "sk", "global_local", 0.7, 0.2, 0.4)


def test_neutral_class_and_settings():
    assert _recipe().neutral_class == 0
    assert _recipe(neutral=None).neutral_class is None
    assert GLRFRecipe(["happy", "sad"]).neutral_class is None
    assert GLRFRecipe(["calm", "sad"], neutral="calm").neutral_class == 0
    with pytest.raises(ValueError, match="'calm' is not one of"):
        _recipe(neutral="calm")
    with pytest.raises(SettingsError, match="unknown setting"):
        _recipe(hop=0.3)
    with pytest.raises(ValueError, match="multiple of the 10 ms MFCC hop"):
        _recipe(train_hop=0.205)
    with pytest.raises(ValueError, match="at most the window"):
        _recipe(test_hop=2.5)
    with pytest.raises(SettingsError, match=r"setting k: expected number in \(0, 1\]"):
        _recipe(k=0.0)
    with pytest.raises(SettingsError, match="setting heads .* must divide channels"):
        _recipe(heads=3)


def test_bad_audio_is_rejected():
    recipe = _recipe()
    with pytest.raises(ValueError, match="1-D float tensor"):
        recipe.item_from_audio(torch.zeros(2, 16000))
    with pytest.raises(ValueError, match="1-D float tensor"):
        recipe.item_from_audio(torch.zeros(16000, dtype=torch.int16))
    with pytest.raises(AudioError, match="zero-length audio"):
        recipe.item_from_audio(torch.zeros(0))
    wave = torch.zeros(16000)
    wave[7] = float("nan")
    with pytest.raises(AudioError, match="glrf: the recording: contains NaN"):
        recipe.item_from_audio(wave)
    with pytest.raises(ValueError, match="empty batch"):
        recipe.collate([])


def test_segment_spans_follow_the_test_windows():
    recipe = _recipe()
    assert recipe.segment_spans(5000) == [(0.0, 5000 / 16000)]
    assert recipe.segment_spans(51234) == [(0.0, 2.0), (0.4, 2.4), (0.8, 2.8), (1.2, 3.2)]


def test_feature_stats_round_trip_through_the_recipe_state():
    recipe = _recipe()
    assert recipe.extra_state() == {}
    gen = torch.Generator().manual_seed(3)
    recipe.fit_extra([recipe.item_from_audio(0.1 * torch.randn(n, generator=gen))
                      for n in (20000, 41000)])
    restored = GLRFRecipe.from_state(recipe.state())
    torch.testing.assert_close(restored.feature_stats.mean, recipe.feature_stats.mean, atol=0,
                               rtol=0)
    torch.testing.assert_close(restored.feature_stats.std, recipe.feature_stats.std, atol=0,
                               rtol=0)
    model = restored.build_model()
    torch.testing.assert_close(model.feature_mean, recipe.feature_stats.mean, atol=0, rtol=0)
    torch.testing.assert_close(model.feature_std, recipe.feature_stats.std, atol=0, rtol=0)


def test_export_module_scripts_and_runs_in_a_fresh_process(tmp_path):
    recipe = _recipe()
    model = _model(recipe).eval()
    module = recipe.export_module(model)
    inputs = recipe.export_inputs(recipe.example_batch())
    with torch.no_grad():
        expected = module(*inputs)
    assert expected.shape == (2, 4)
    optest.script_roundtrip(module, inputs, tmp_path / "glrf.pt")
    optest.check_scripted_in_fresh_process(tmp_path / "glrf.pt", inputs, expected, tmp_path)


def test_smoke_training_on_a_tiny_synthetic_corpus(tmp_path, tiny_corpus):
    corpus = tiny_corpus
    split = speaker_split(corpus, seed=0)
    recipe = GLRFRecipe(corpus.labels, **SMALL)
    train, test = recipe.featurize(list(split.train)), recipe.featurize(list(split.test))
    config = TrainConfig(epochs=3, batch_size=8, lr=3e-3, progress=False, device="cpu", seed=0)
    fit = Trainer(recipe, config, tmp_path).fit(train, test)
    losses = [record["train_loss"] for record in fit.history]
    assert losses[-1] < losses[0]
    result = evaluate(recipe, fit.model, test)
    assert 0.0 <= result["pure_accuracy"] <= 1.0 and "ua" in result
    # the checkpoint predicts a recording with its segment timeline
    recognition = Recognizer.from_checkpoint(tmp_path / "last.pt").predict(split.test[0].path)
    spans = recipe.segment_spans(int(round(split.test[0].duration * 16000)))
    assert [(s.start, s.end) for s in recognition.segments] == spans
    assert recognition.label in corpus.labels
    # and exports with torch.export: one program for any number of utterances and segments
    trained = load_trained(tmp_path / "last.pt")
    program = torch.export.load(str(export_program(trained, tmp_path / "glrf.pt2"))).module()
    module = trained.recipe.export_module(trained.model).eval()
    inputs = recipe.export_inputs(_batch(recipe, _waves((16000, 70123, 41000), seed=5)))
    with torch.no_grad():
        torch.testing.assert_close(program(*inputs), module(*inputs), atol=1e-6, rtol=1e-5)
