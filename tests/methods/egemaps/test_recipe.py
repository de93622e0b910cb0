"""The eGeMAPS baseline: the fitted classifier as a module (against scikit-learn itself, for each
classifier, with two classes and with a class missing from training), per-speaker and lone
recording standardisation, the feature cache, the optional extra's error, and the method end to
end through the command line (train, cv, eval, predict, export) on a tiny synthetic corpus."""

import json

import numpy as np
import pytest
import torch

from fastser.cli import main
from fastser.data.corpus import Corpus
from fastser.data.synthetic import read_synthetic, write_synthetic
from fastser.errors import UserError
from fastser.inference import Recognizer, load_trained
from fastser.methods import make_recipe
from fastser.methods.egemaps import EgemapsRecipe, features as egemaps_features
from fastser.methods.egemaps.recipe import EgemapsItem
from fastser.train.kit import frame_statistics

LABELS = ("neutral", "happy", "sad", "angry")


def _items(labels, speakers, seed=0, dim=88):
    """Items of random functionals whose mean depends on the class and the speaker."""
    gen = torch.Generator().manual_seed(seed)
    items = []
    for label, speaker in zip(labels, speakers):
        raw = torch.randn(dim, generator=gen) + 2.0 * torch.nn.functional.one_hot(
            torch.tensor(label), dim).float() + 5.0 * float(speaker[-1])
        items.append(EgemapsItem(raw, raw, speaker, label))
    return items


def _labelled(n, classes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, len(classes), (n,), generator=gen)
    return [classes[i] for i in labels.tolist()], [f"s{i % 3}" for i in range(n)]


@pytest.mark.parametrize("classifier", ["logreg", "linear_svm", "svc"])
@pytest.mark.parametrize("classes", [(0, 1, 2, 3), (0, 2), (0, 1, 3)])
def test_model_scores_are_scikit_learns(classifier, classes):
    """The module reproduces the fitted scikit-learn classifier: logistic regression's
    probabilities, the SVMs' decision scores (one-vs-one: scikit-learn's ovr shape); classes
    absent from training are never predicted."""
    sklearn = pytest.importorskip("sklearn")
    del sklearn
    labels, speakers = _labelled(60, classes)
    recipe = EgemapsRecipe(LABELS, classifier=classifier, speaker_norm=False)
    items = _items(labels, speakers)
    recipe.fit_extra(items)
    model = recipe.build_model().double()
    x = torch.stack([i.features for i in items]).double()
    inputs = ((x - recipe.feature_stats.mean.double()) / recipe.feature_stats.std.double())
    scores = model(x)
    reference = _reference(recipe, inputs.numpy(), np.array(labels), classifier)
    present = list(classes)
    if classifier == "logreg":
        np.testing.assert_allclose(scores.softmax(1)[:, present].numpy(), reference, atol=1e-5)
    elif len(classes) == 2:  # one binary score: > 0 for the second class
        assert ((scores[:, present[1]] > scores[:, present[0]]).numpy() == (reference > 0)).all()
    else:
        np.testing.assert_allclose(scores[:, present].numpy(), reference, atol=1e-4)
    absent = [c for c in range(4) if c not in classes]
    assert not np.isin(scores.argmax(1).numpy(), absent).any()


def _reference(recipe, inputs, labels, classifier):
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC, LinearSVC

    if classifier == "logreg":
        return LogisticRegression(C=0.1, class_weight="balanced", max_iter=5000).fit(
            inputs, labels).predict_proba(inputs)
    if classifier == "linear_svm":
        model = LinearSVC(C=0.01, class_weight="balanced", max_iter=20000, random_state=0)
    else:
        model = SVC(kernel="linear", C=0.01, class_weight="balanced")
    return model.fit(inputs, labels).decision_function(inputs)


def test_speaker_norm_and_the_lone_recording():
    pytest.importorskip("sklearn")
    labels, speakers = _labelled(60, (0, 1, 2, 3))
    items = _items(labels, speakers)
    recipe = EgemapsRecipe(LABELS)
    normed = [recipe.with_features(i, f) for i, f in zip(items, _speaker_standardised(items))]
    recipe.fit_extra(normed)
    # a lone recording: the typical training speaker's statistics (mean of the speakers' means,
    # root mean of their variances), computed here in float64
    groups = [[i.raw.double() for i in items if i.speaker == s] for s in ("s0", "s1", "s2")]
    mean = torch.stack([torch.stack(g).mean(0) for g in groups]).mean(0)
    std = torch.stack([torch.stack(g).var(0) for g in groups]).mean(0).sqrt()
    lone = items[0].raw[None]
    torch.testing.assert_close(recipe.standardise_recording(lone).double(),
                               (lone.double() - mean) / std, rtol=1e-4, atol=1e-4)
    restored = EgemapsRecipe.from_state(recipe.state())
    torch.testing.assert_close(restored.standardise_recording(lone),
                               recipe.standardise_recording(lone))
    for key, value in recipe.build_model().state_dict().items():
        torch.testing.assert_close(restored.build_model().state_dict()[key], value)


def _speaker_standardised(items):
    out = []
    for item in items:
        mine = [i.raw[None] for i in items if i.speaker == item.speaker]
        mean, std = frame_statistics(mine)
        out.append((item.raw[None] - mean) / std)
    return out


def test_a_missing_extra_is_a_user_error_naming_it(monkeypatch):
    reason = "the eGeMAPS baseline needs the optional extra fastser[egemaps]"
    monkeypatch.setattr(egemaps_features, "missing_extra", lambda: reason)
    monkeypatch.setattr("fastser.methods.egemaps.recipe.missing_extra", lambda: reason)
    recipe = EgemapsRecipe(LABELS)
    assert any("fastser[egemaps]" in reason
               for reason in recipe.requirements(Corpus("c", LABELS, ())))
    with pytest.raises(UserError, match=r"fastser\[egemaps\]"):
        egemaps_features.require_extra()


# -- with openSMILE ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    pytest.importorskip("opensmile", reason="the optional extra fastser[egemaps] (opensmile)")
    pytest.importorskip("sklearn", reason="the optional extra fastser[egemaps] (scikit-learn)")
    folder = tmp_path_factory.mktemp("corpus") / "synthetic"
    write_synthetic(folder, utterances=32, speakers=4, seed=5)
    return folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_functionals_are_cached_per_corpus(corpus_dir, cache, monkeypatch):
    monkeypatch.setenv("FASTSER_CACHE", str(cache))
    utterances = list(read_synthetic(corpus_dir))[:4]
    calls = []
    real = egemaps_features.functionals

    def counting(waveform, rate):
        calls.append(rate)
        return real(waveform, rate)

    monkeypatch.setattr("fastser.methods.egemaps.recipe.functionals", counting)
    recipe = EgemapsRecipe(LABELS, speaker_norm=False)
    first = recipe.featurize(utterances)
    assert calls == [48000] * 4
    second = recipe.featurize(utterances)
    assert len(calls) == 4  # read back from the cache
    for a, b in zip(first, second):
        assert a.features.shape == (88,) and torch.isfinite(a.features).all()
        assert torch.equal(a.features, b.features)
    uncached = EgemapsRecipe(LABELS, speaker_norm=False, cache=False).featurize(utterances[:1])
    assert torch.equal(uncached[0].features, first[0].features)
    EgemapsRecipe(LABELS, analysis_rate=16000).featurize(utterances[:1])
    assert calls[-1] == 16000  # another analysis rate is another cache entry


def test_too_short_audio_is_a_clear_error():
    pytest.importorskip("opensmile")
    with pytest.raises(UserError, match="egemaps: the recording has 800 samples.*960"):
        EgemapsRecipe(LABELS).item_from_audio(0.1 * torch.randn(800))


def test_train_cv_eval_predict_export_through_the_command(corpus_dir, cache, tmp_path,
                                                          monkeypatch, capsys):
    monkeypatch.setenv("FASTSER_CACHE", str(cache))
    data = f"synthetic:{corpus_dir}"
    out = tmp_path / "run"
    assert main(["train", "--model", "egemaps", "--data", data, "--out", str(out),
                 "--protocol", "speaker", "--no-progress", "--epochs", "5"]) == 0
    results = json.loads((out / "results.json").read_text())
    # one fitting epoch; every non-test speaker trains (no validation speaker to select with)
    assert results["epochs_run"] == 1 and results["best_validation"] is None
    assert 0.0 <= results["test"]["ua"] <= 1.0
    trained = load_trained(out / "best.pt", method="egemaps")
    assert not any(p.requires_grad for p in trained.model.parameters())
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out / "best.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ua"] == pytest.approx(results["test"]["ua"])
    wav = next(iter(read_synthetic(corpus_dir))).path
    assert main(["predict", "--checkpoint", str(out / "best.pt"), str(wav), "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out)[str(wav)]
    assert predicted["label"] == max(predicted["scores"], key=predicted["scores"].get)
    assert sum(predicted["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    api = Recognizer.from_checkpoint(out / "best.pt").predict(wav)
    assert api.scores == pytest.approx(predicted["scores"], abs=1e-6)
    script = tmp_path / "egemaps.ts"
    assert main(["export", "--checkpoint", str(out / "best.pt"), "--out", str(script)]) == 0
    batch = trained.recipe.collate(trained.recipe.featurize(list(read_synthetic(corpus_dir))[:3]))
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(script))(batch["features"]),
                                   trained.recipe.predict(trained.model, batch).probs)
    assert main(["cv", "--model", "egemaps", "--data", data, "--protocol", "speaker",
                 "--out", str(tmp_path / "cv"), "--set", "classifier=svc"]) == 0
    cv = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert len(cv["folds"]) == 4 and all(f["settings"]["classifier"] == "svc"
                                         for f in cv["folds"])


def test_registered():
    assert isinstance(make_recipe("egemaps", LABELS), EgemapsRecipe)
