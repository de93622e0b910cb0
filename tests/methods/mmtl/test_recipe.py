"""The mmtl / mtl / stl recipes on a tiny synthetic corpus: smoke training, batched == reference
training, exact resumption through the trainer hooks, per-speaker episodes, test-time
adaptation in prediction, export, DDP, settings and their ranges, speaker_norm, the 0.1
checkpoint keys, and the bad inputs."""

import os
import textwrap
from dataclasses import replace

import pytest
import torch

from fastser.errors import AudioError, CorpusError, SettingsError
from fastser.methods import make_recipe, recipe_class
from fastser.methods.mmtl import TABLE1_CONV, MMTLRecipe, SegmentItem, SpeakerEpisodes
from fastser.train.evaluation import evaluate
from fastser.train.trainer import TrainConfig, Trainer

import optest
from torchrun import run_two_processes

# a small input (300 x 200 pooled to 50 x 25) and a small network keep these tests fast
TINY = {"pool": (6, 8), "conv": ((3, 3, 4), (3, 3, 6)), "lstm_hidden": 8, "embed_dim": 8}
TESTS_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def items(corpus):
    return MMTLRecipe(corpus.labels, **TINY).featurize(list(corpus))


def _split(items):
    """3 training speakers, 1 test speaker."""
    speakers = sorted({it.speaker for it in items})
    train = [it for it in items if it.speaker != speakers[-1]]
    return train, [it for it in items if it.speaker == speakers[-1]]


def _config(**kw):
    base = dict(epochs=2, batch_size=4, lr=3e-3, progress=False, device="cpu", seed=1,
                eval_batch_size=64)
    return TrainConfig(**{**base, **kw})


def _without_affect(item):
    return replace(item, affect=None)


# -- training --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mmtl", "mtl", "stl"])
def test_smoke_training_runs_end_to_end_and_the_loss_decreases(name, corpus, items, tmp_path):
    train, test = _split(items)
    recipe = make_recipe(name, corpus.labels, **TINY)
    result = Trainer(recipe, _config(epochs=3), tmp_path).fit(train, test)
    losses = [r["train_loss"] for r in result.history]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert (tmp_path / "last.pt").exists() and (tmp_path / "metrics.jsonl").exists()
    metrics = evaluate(recipe, result.model, test)
    assert 0.0 <= metrics["ua"] <= 1.0 and "pure_accuracy" in metrics


@pytest.mark.parametrize("transfer_input", ["affect_logits", "representation"])
def test_training_moves_every_parameter_the_shared_affect_classifier_included(
        transfer_input, corpus, items, tmp_path):
    """fastser 0.1 left FC_2 (meta.head) at its initialisation: its outer gradient was zero."""
    from fastser.train.trainer import seed_everything

    train, _ = _split(items)
    recipe = MMTLRecipe(corpus.labels, transfer_input=transfer_input, **TINY)
    config = _config(epochs=1)
    trained = Trainer(recipe, config, tmp_path).fit(train).model
    seed_everything(config.seed)
    initial = recipe.build_model().state_dict()
    for name, value in trained.state_dict().items():
        assert not torch.equal(value, initial[name]), name


@pytest.mark.parametrize("speaker_chunk, paper", [(None, False), (2, False), (None, True)])
def test_reference_and_batched_training_give_the_same_model(corpus, items, tmp_path,
                                                            speaker_chunk, paper):
    train, _ = _split(items)
    # paper: the settings of the paper preset that change the outer step
    method = ({"transfer_input": "affect_logits", "episode_draws": "same",
               "lstm_summary": "mean"} if paper else {})
    settings = [{"implementation": "fused", "speaker_chunk": speaker_chunk, **method},
                {"implementation": "reference", **method}]
    models = [Trainer(make_recipe("mmtl", corpus.labels, **extra, **TINY), _config(epochs=1),
                      tmp_path / str(i)).fit(train).model for i, extra in enumerate(settings)]
    for (name, batched), reference in zip(models[0].state_dict().items(),
                                          models[1].state_dict().values()):
        torch.testing.assert_close(batched, reference, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("reference", [False, True])
def test_timed_training_step_is_the_outer_step_on_an_episode(corpus, items, monkeypatch,
                                                             reference):
    """The demo's fused-vs-reference step timing runs MMTL's own step: the batched (or
    sequential) outer step on the first episode, whose gradients the optimiser applies."""
    import fastser.methods.mmtl.meta as meta
    import fastser.methods.mmtl.recipe as recipe_module
    from fastser.bench.training_step import reference_variant, step_runner

    train, _ = _split(items)
    recipe = make_recipe("mmtl", corpus.labels, **TINY)
    if reference:  # the same recipe (settings, fitted statistics) on the reference path
        recipe = reference_variant(recipe)
    episodes = []
    name = "outer_gradients_sequential" if reference else "outer_gradients"
    real = getattr(meta, name)

    def spy(net, episode, **kw):
        episodes.append(episode)
        return real(net, episode, **kw)

    monkeypatch.setattr(recipe_module, name, spy)
    step = step_runner(recipe, train, 4)
    step()
    step()
    assert len(episodes) == 2
    assert episodes[0]["support"].dim() == 4 and episodes[0]["support"].shape[1] == 4


def test_resume_after_an_interruption_matches_an_uninterrupted_run(corpus, items, tmp_path,
                                                                   monkeypatch):
    train, _ = _split(items)
    straight = Trainer(MMTLRecipe(corpus.labels, **TINY), _config(), tmp_path / "a").fit(train)
    original = Trainer._train_epoch

    def interrupted(self, *args):
        if args[-2] == 1:  # epoch index 1: the second epoch never runs
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(Trainer, "_train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Trainer(MMTLRecipe(corpus.labels, **TINY), _config(), tmp_path / "b").fit(train)
    monkeypatch.setattr(Trainer, "_train_epoch", original)
    resumed = Trainer(MMTLRecipe(corpus.labels, **TINY), _config(), tmp_path / "b").fit(
        train, resume=True)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


def test_fp16_loss_scaling_is_refused_for_own_gradients(corpus, items, tmp_path):
    train, _ = _split(items)
    with pytest.raises(ValueError, match="mmtl computes its own gradients.*amp='bf16' or 'off'"):
        Trainer(MMTLRecipe(corpus.labels, **TINY), _config(amp="fp16"), tmp_path).fit(train)


DDP_RUN = """
    import sys, torch
    sys.path.insert(0, {tests!r})
    from fastser.train.trainer import TrainConfig, Trainer
    from fastser.distributed import shutdown_distributed
    from fastser.methods.mmtl import MMTLRecipe
    items = torch.load({items!r}, weights_only=False)
    result = Trainer(MMTLRecipe({labels!r}, **{tiny!r}), TrainConfig(**{config!r}),
                     {out!r}).fit(items)
    if torch.distributed.get_rank() == 0:
        torch.save(result.model.state_dict(), {out!r} + "/final.pt")
    shutdown_distributed()
"""


def test_two_process_ddp_matches_one_process(corpus, items, tmp_path):
    train, _ = _split(items)
    config = dict(epochs=1, batch_size=4, lr=3e-3, progress=False, device="cpu", seed=1)
    single = Trainer(MMTLRecipe(corpus.labels, **TINY), TrainConfig(**config),
                     tmp_path / "one").fit(train)
    out = str(tmp_path / "ddp")
    os.makedirs(out)
    torch.save(train, tmp_path / "items.pt")
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(DDP_RUN).format(
        tests=TESTS_DIR, items=str(tmp_path / "items.pt"), labels=list(corpus.labels), tiny=TINY,
        config=config, out=out))
    run_two_processes(str(script), timeout=300)
    ddp = torch.load(os.path.join(out, "final.pt"))
    for key, value in single.model.state_dict().items():
        torch.testing.assert_close(ddp[key], value, rtol=1e-4, atol=1e-5, msg=key)


# -- episodes --------------------------------------------------------------------------------
def test_speaker_episodes_stack_equal_per_speaker_batches(items):
    train, _ = _split(items)
    episodes = SpeakerEpisodes(train, 3, 4, seed=5)
    segments = sum(len(it.segments) for it in train)
    assert len(episodes) == -(-segments // (3 * 3))
    steps = list(episodes)
    assert len(steps) == len(episodes)
    first = steps[0]
    assert first.share == 1.0 and first.count == 3 * 2 * 3
    batch = first.batch
    assert batch["support"].shape == (3, 3, 50, 25) and batch["query"].shape == (3, 3, 50, 25)
    assert batch["support_affect"].shape == (3, 3, 3) and batch["query_labels"].shape == (3, 3)
    assert batch["affect_weights"].shape == (3, 3, 4) and batch["emotion_weights"].shape == (3, 4)
    # speaker k's rows are speaker k's segments, with their utterance's labels
    for k, speaker in enumerate(sorted({it.speaker for it in train})):
        for row in range(3):
            query = [it for it in train if it.speaker == speaker
                     and any(torch.equal(batch["query"][k, row], s) for s in it.segments)]
            support = [it for it in train if it.speaker == speaker
                       and any(torch.equal(batch["support"][k, row], s) for s in it.segments)]
            assert query and query[0].label == int(batch["query_labels"][k, row])
            assert support and torch.equal(support[0].affect, batch["support_affect"][k, row])
    # weights: N / N_c over the speaker's own segments, normalised by the maximum
    assert float(batch["emotion_weights"].max(dim=1).values.min()) == 1.0
    # deterministic per epoch, different across epochs
    again = list(episodes)
    assert all(torch.equal(a.batch["query"], b.batch["query"]) for a, b in zip(steps, again))
    episodes.set_epoch(1)
    assert not torch.equal(next(iter(episodes)).batch["query"], first.batch["query"])


def test_speaker_episodes_cover_each_speaker_before_repeating(items):
    train, _ = _split(items)
    episodes = SpeakerEpisodes(train, 2, 4, seed=0)
    speaker = sorted({it.speaker for it in train})[0]
    pool = sum(len(it.segments) for it in train if it.speaker == speaker)
    seen = torch.cat([step.batch["query"][0] for step in episodes])[:pool]
    assert len({tuple(s.flatten()[:40].tolist()) for s in seen}) == pool


def test_auxiliary_tasks_select_the_meta_learners_tasks_in_training_and_adaptation(corpus,
                                                                                   items):
    from fastser.methods.mmtl import adapt_meta
    from fastser.methods.mmtl.meta import select_tasks

    train, test = _split(items)
    valence = MMTLRecipe(corpus.labels, auxiliary_tasks=("valence",), adapt_lr=0.1, **TINY)
    every = MMTLRecipe(corpus.labels, adapt_lr=0.1, **TINY)
    torch.manual_seed(0)
    model = every.build_model()
    batch = next(iter(SpeakerEpisodes(train, 2, 4, seed=0)))
    got = valence.step_gradients(model, batch.batch).gradients
    want = outer_gradients_for(model, select_tasks(batch.batch, [0]))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    assert not all(torch.allclose(g, e) for g, e in
                   zip(got, every.step_gradients(model, batch.batch).gradients))
    adapted = valence.adapt(model, test).adapted[test[0].speaker]
    segments = torch.cat([it.segments for it in test])
    affect = torch.cat([it.affect.expand(len(it.segments), 3) for it in test])[:, :1]
    expected = adapt_meta(model, segments, affect, lr=0.1, steps=1)
    for name, value in expected.items():
        torch.testing.assert_close(adapted[name], value)
    with pytest.raises(SettingsError, match="auxiliary_tasks must be a non-empty selection"):
        MMTLRecipe(corpus.labels, auxiliary_tasks=("valence", "joy"))


def outer_gradients_for(model, episode):
    from fastser.methods.mmtl import outer_gradients

    return outer_gradients(model, episode, alpha=0.01, beta=0.01)[1]


def test_same_draws_give_support_and_query_the_same_segments(items):
    train, _ = _split(items)
    same = SpeakerEpisodes(train, 3, 4, seed=5, draws="same")
    independent = SpeakerEpisodes(train, 3, 4, seed=5)
    assert len(same) == len(independent)
    for step in same:
        batch = step.batch
        assert torch.equal(batch["support"], batch["query"])
        for k, speaker in enumerate(sorted({it.speaker for it in train})):
            for row in range(3):
                owner = [it for it in train if it.speaker == speaker and any(
                    torch.equal(batch["query"][k, row], s) for s in it.segments)][0]
                assert owner.label == int(batch["query_labels"][k, row])
                assert torch.equal(owner.affect, batch["support_affect"][k, row])
    assert not all(torch.equal(a.batch["support"], a.batch["query"]) for a in independent)
    # only segments with both labels are drawn
    speaker = train[0].speaker
    partial = [_without_affect(it) if it is train[0] else it for it in train]
    episodes = SpeakerEpisodes(partial, 3, 4, draws="same")
    pool = episodes.support[episodes.speakers.index(speaker)]
    assert 0 not in pool[:, 0].tolist() and len(pool) > 0
    alone = [_without_affect(it) if it.speaker == speaker else it for it in train]
    with pytest.raises(CorpusError, match=f"speaker '{speaker}' has no utterance with affect "
                                          r"labels .* and an emotion label"):
        SpeakerEpisodes(alone, 2, 4, draws="same")


def test_speaker_episodes_split_speakers_over_processes(items):
    train, _ = _split(items)
    single = list(SpeakerEpisodes(train, 2, 4, seed=3, speakers_per_step=2))
    ranks = [list(SpeakerEpisodes(train, 2, 4, seed=3, speakers_per_step=2, rank=r,
                                  world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    for whole, r0, r1 in zip(single, *ranks):
        assert whole.batch["query"].shape[0] == 2
        assert r0.share == r1.share == 2.0
        torch.testing.assert_close(torch.cat([r0.batch["query"], r1.batch["query"]]),
                                   whole.batch["query"])


# -- prediction and export -------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_evaluation_adapts_the_meta_learner_on_each_speakers_whole_data(corpus, items,
                                                                        optimizer):
    """Test-time adaptation: per speaker, on all of that speaker's affect-labelled items of the
    evaluated set, the same whatever the evaluation batch size; the model is not modified."""
    from fastser.methods.mmtl import SpeakerAdaptedNet, adapt_meta, adapted_logits
    from fastser.train.evaluation import predict_items

    train, test = _split(items)
    torch.manual_seed(0)
    plain = MMTLRecipe(corpus.labels, adapt_steps=0, **TINY)
    model = plain.build_model().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adapting = MMTLRecipe(corpus.labels, adapt_steps=3, adapt_lr=0.05, adapt_optimizer=optimizer,
                          **TINY)
    mixed = train[:5] + test
    by_batch = [predict_items(adapting, model, mixed, batch_size=size)[0].probs
                for size in (1, 3, len(mixed))]
    for probs in by_batch[1:]:
        torch.testing.assert_close(probs, by_batch[0], rtol=1e-5, atol=1e-6)
    unadapted = predict_items(plain, model, mixed)[0].probs
    assert not torch.allclose(by_batch[0], unadapted, atol=1e-4)
    # the test speaker's adaptation: adapt_meta on every segment of that speaker in the set
    segments = torch.cat([it.segments for it in test])
    affect = torch.cat([it.affect.expand(len(it.segments), 3) for it in test])
    theta = adapt_meta(model, segments, affect, lr=0.05, steps=3, chunk=64, optimizer=optimizer)
    with torch.no_grad():
        expected = adapted_logits(model, theta, segments).softmax(dim=1)
    counts = [len(it.segments) for it in test]
    expected = torch.stack([part.mean(dim=0) for part in expected.split(counts)])
    torch.testing.assert_close(by_batch[0][5:], expected, rtol=1e-5, atol=1e-6)
    adapted = adapting.adapt(model, mixed)
    assert isinstance(adapted, SpeakerAdaptedNet)
    assert set(adapted.adapted) == {it.speaker for it in mixed}
    # items without affect labels are predicted unadapted
    no_labels = [_without_affect(it) for it in test]
    assert adapting.adapt(model, no_labels) is model
    torch.testing.assert_close(predict_items(adapting, model, no_labels)[0].probs,
                               unadapted[5:])
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("name", ["mmtl", "mtl"])
def test_export_module_matches_unadapted_prediction(name, corpus, items, tmp_path):
    recipe = make_recipe(name, corpus.labels, adapt_steps=0, **TINY) if name == "mmtl" else \
        make_recipe(name, corpus.labels, **TINY)
    torch.manual_seed(0)
    model = recipe.build_model().eval()
    batch = recipe.collate(items[:6])
    with torch.no_grad():
        expected = recipe.predict(model, batch).probs
    inputs = recipe.export_inputs(batch)
    scripted = optest.script_roundtrip(recipe.export_module(model), inputs, tmp_path / "m.pt",
                                       atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scripted(*inputs), expected, rtol=1e-5, atol=1e-6)
    # torch.export with dynamic segment and utterance counts: another batch, other sizes
    dims = tuple({d: torch.export.Dim.AUTO for d in range(x.dim())} for x in inputs)
    program = torch.export.export(recipe.export_module(model), inputs, dynamic_shapes=dims)
    other = recipe.collate(items[6:9])
    with torch.no_grad():
        torch.testing.assert_close(program.module()(*recipe.export_inputs(other)),
                                   recipe.predict(model, other).probs, rtol=1e-5, atol=1e-6)


def test_registry_and_demo_settings():
    for name in ("mmtl", "mtl", "stl"):
        cls = recipe_class(name)
        assert cls.name == name
        TrainConfig(**cls.presets["demo"].training)
        cls(["a", "b"], **cls.presets["demo"].settings)
    default = MMTLRecipe(["a", "b"])  # a 4x4-pooled input, speaker_norm (measured defaults)
    assert (default.encoder_config()["frames"], default.encoder_config()["bins"]) == (75, 50)
    assert default.settings.speaker_norm
    for name in ("mmtl", "mtl", "stl"):  # the paper preset has the paper's input
        paper = recipe_class(name)(["a", "b"], **recipe_class(name).presets["paper"].settings)
        assert (paper.encoder_config()["frames"], paper.encoder_config()["bins"]) == (300, 200)
        assert not paper.settings.speaker_norm and paper.settings.conv == TABLE1_CONV


# -- bad input -------------------------------------------------------------------------------
def _utterance(corpus, **changes):
    return replace(corpus[0], **changes)


def test_affect_values_outside_the_scale_name_the_utterance(corpus):
    recipe = MMTLRecipe(corpus.labels, **TINY)
    wave = torch.randn(16000)
    with pytest.raises(CorpusError, match=r"mmtl: utterance 'odd_one': valence 7.0 is outside"):
        recipe.item_from_audio(wave, _utterance(corpus, id="odd_one", valence=7.0))
    with pytest.raises(CorpusError, match=r"Utterance 'odd_one': dominance must be a finite "
                                          "number or None, got nan"):  # the record refuses it
        _utterance(corpus, id="odd_one", dominance=float("nan"))
    with pytest.raises(CorpusError, match=r"'half': has some affect values \(valence, arousal, "
                                          r"dominance\) but not \['arousal'\]"):
        recipe.item_from_audio(wave, _utterance(corpus, id="half", arousal=None))
    none = recipe.item_from_audio(wave, _utterance(corpus, valence=None, arousal=None,
                                                   dominance=None))
    assert none.affect is None
    unknown = recipe.item_from_audio(wave)
    assert unknown.label == -1 and unknown.affect is None
    assert isinstance(none, SegmentItem) and none.segments.shape == (1, 50, 25)


def test_requirements_name_the_missing_affect_labels(corpus):
    from fastser.data.corpus import Corpus

    def recipe(name):
        return make_recipe(name, corpus.labels)

    assert [recipe(n).requirements(corpus) for n in ("mmtl", "mtl", "stl")] == [[]] * 3
    speaker = corpus.speakers[0]
    bare = Corpus("c", corpus.labels, tuple(
        replace(u, valence=None, arousal=None, dominance=None) if u.speaker == speaker else u
        for u in corpus))
    assert recipe("mmtl").requirements(bare) == [
        "its auxiliary tasks need valence, arousal and dominance from every speaker; 1 "
        f"speaker(s) have none (e.g. {speaker!r})"]
    assert recipe("mtl").requirements(bare) == []
    odd = Corpus("c", corpus.labels, (replace(corpus[0], valence=7.0), corpus[1]))
    assert recipe("mtl").requirements(odd) == [
        "discretises valence, arousal and dominance on IEMOCAP's 1-5 scale: 1 utterance(s) "
        "have values outside [0, 6]"]
    one = Corpus("c", corpus.labels, tuple(u for u in corpus if u.speaker == speaker))
    assert "meta-learns over speakers: needs at least 2, has 1" in recipe(
        "mmtl").requirements(one)


def test_training_set_errors(corpus, items, tmp_path):
    train, _ = _split(items)
    speaker = train[0].speaker
    one_speaker = [it for it in train if it.speaker == speaker]
    with pytest.raises(ValueError, match="at least 2 training speakers.*'stl' or 'mtl'"):
        Trainer(MMTLRecipe(corpus.labels, **TINY), _config(), tmp_path).fit(one_speaker)
    no_affect = [_without_affect(it) if it.speaker == speaker else it for it in train]
    with pytest.raises(CorpusError, match=f"speaker '{speaker}' has no utterance with affect"):
        Trainer(MMTLRecipe(corpus.labels, **TINY), _config(), tmp_path).fit(no_affect)
    no_emotion = [replace(it, label=-1) if it.speaker == speaker else it for it in train]
    with pytest.raises(CorpusError, match=f"speaker '{speaker}' has no utterance with an emotion"):
        SpeakerEpisodes(no_emotion, 2, 4)
    with pytest.raises(SettingsError, match=r"speakers_per_step must be in \[1, 3\]"):
        SpeakerEpisodes(train, 2, 4, speakers_per_step=4)
    with pytest.raises(CorpusError, match="no training utterance has affect labels"):
        make_recipe("mtl", corpus.labels, **TINY).fit_extra([_without_affect(it) for it in train])


def test_settings_and_batch_errors(corpus, items):
    with pytest.raises(SettingsError, match=r"mmtl: unknown setting\(s\) alpah"):
        MMTLRecipe(corpus.labels, alpah=0.1)
    with pytest.raises(SettingsError, match=r"setting alpha: expected number in \[0, inf\)"):
        MMTLRecipe(corpus.labels, alpha=float("nan"))
    for bad in (0, 1.5, "2"):
        with pytest.raises(SettingsError, match=r"setting speaker_chunk: expected integer or "
                                                r"null in \[1, inf\)"):
            MMTLRecipe(corpus.labels, speaker_chunk=bad)
    with pytest.raises(SettingsError, match="setting pool: expected"):
        MMTLRecipe(corpus.labels, pool=(0, 2))
    with pytest.raises(SettingsError, match="alpha"):
        make_recipe("stl", corpus.labels, alpha=0.1)
    recipe = MMTLRecipe(corpus.labels, pool=(1, 1))  # the paper's 300 x 200 input
    with pytest.raises(ValueError, match=r"segments of shape \[\d+, 50, 25\], expected \(n, 300, "
                                         r"200\)"):
        recipe.collate(items[:2])
    with pytest.raises(ValueError, match="empty batch"):
        recipe.collate([])


def test_recipe_state_round_trip_keeps_class_weights_and_segment_spans(corpus, items):
    train, _ = _split(items)
    recipe = make_recipe("mtl", corpus.labels, **TINY)
    recipe.fit_extra(train)
    back = recipe_class("mtl").from_state(recipe.state())
    assert back.settings == recipe.settings
    assert torch.equal(back.emotion_weights, recipe.emotion_weights)
    assert torch.equal(back.affect_weights, recipe.affect_weights)
    # 7 s at 16 kHz: three equal pieces of at most 3 s
    spans = recipe.segment_spans(7 * 16000)
    assert len(spans) == 3 and spans[0][0] == 0.0 and spans[-1][1] == 7.0
    example = recipe.example_batch()
    assert example["counts"].tolist() == [len(recipe.segment_spans(3 * 16000)),
                                          len(recipe.segment_spans(40000))]


# -- settings --------------------------------------------------------------------------------
@pytest.mark.parametrize("key, bad", [
    ("pool", (0, 2)), ("pool", (2, 0)), ("pool", (2,)), ("pool", (2.5, 2)),
    ("conv", ((3, 3, 0),)), ("conv", ((0, 3, 4),)), ("conv", ((3, 3),)), ("conv", (3, 3, 4)),
    ("lstm_hidden", 0), ("embed_dim", 0), ("max_duration", 0.0), ("max_duration", -1.0),
    ("max_duration", float("inf")), ("implementation", "naive"), ("speaker_norm", 1)])
@pytest.mark.parametrize("name", ["mmtl", "mtl", "stl"])
def test_every_setting_range_is_checked(name, key, bad):
    with pytest.raises(SettingsError, match=f"{name}: setting {key}: expected"):
        make_recipe(name, ["a", "b"], **{key: bad})


@pytest.mark.parametrize("key, bad", [
    ("alpha", -0.1), ("alpha", float("nan")), ("beta", -1e-9), ("beta", float("inf")),
    ("adapt_lr", -0.001), ("adapt_lr", float("nan")), ("speakers_per_step", 0),
    ("speakers_per_step", 1.5), ("adapt_steps", -1), ("adapt_chunk", 0),
    ("speaker_chunk", 0), ("speaker_chunk", True)])
def test_every_mmtl_setting_range_is_checked(key, bad):
    with pytest.raises(SettingsError, match=f"mmtl: setting {key}: expected"):
        MMTLRecipe(["a", "b"], **{key: bad})


def test_settings_edges_and_the_old_names():
    ok = MMTLRecipe(["a", "b"], alpha=0, beta=0.0, adapt_lr=0, adapt_steps=0, adapt_chunk=1,
                    speaker_chunk=1, speakers_per_step=1, pool=[2, 3],
                    conv=[[3, 3, 1]], max_duration=0.5)
    assert ok.settings.alpha == 0.0 and ok.settings.pool == (2, 3)
    assert ok.settings.conv == ((3, 3, 1),) and (ok.frames, ok.bins) == (150, 66)
    with pytest.raises(SettingsError, match="mmtl: setting conv needs at least one layer"):
        MMTLRecipe(["a", "b"], conv=())
    # fastser 0.1's naive switch is the implementation setting
    assert MMTLRecipe(["a", "b"], naive=True).settings.implementation == "reference"
    assert MMTLRecipe(["a", "b"], naive=False).settings.implementation == "fused"
    for name in ("mtl", "stl"):
        with pytest.raises(SettingsError, match="unknown setting"):
            make_recipe(name, ["a", "b"], speaker_chunk=2)
    assert MMTLRecipe(["a", "b"], alpha=0.5).settings.changed() == {"alpha": 0.5}


def test_too_short_audio_is_an_audio_error():
    recipe = MMTLRecipe(["a", "b"], **TINY)
    assert recipe.min_samples == 640  # one 40 ms spectrogram frame
    with pytest.raises(AudioError, match="mmtl: the recording has 639 samples"):
        recipe.item_from_audio(torch.randn(639))
    assert recipe.item_from_audio(torch.randn(640)).segments.shape == (1, 50, 25)


# -- speaker_norm ----------------------------------------------------------------------------
def _valid_frames(item):
    return torch.cat([s[:n] for s, n in zip(item.segments, item.valid_frames.tolist())])


@pytest.mark.parametrize("pool", [(1, 1), (6, 8)])
def test_speaker_norm_standardises_each_speakers_frames(corpus, pool):
    settings = {**TINY, "pool": pool}
    utterances = list(corpus)[:12]
    plain = MMTLRecipe(corpus.labels, **settings).featurize(utterances)
    normed = MMTLRecipe(corpus.labels, speaker_norm=True, **settings).featurize(utterances)
    speakers = sorted({u.speaker for u in utterances})
    assert len(speakers) > 1
    for speaker in speakers:
        mine = [i for i, u in enumerate(utterances) if u.speaker == speaker]
        frames = torch.cat([_valid_frames(normed[i]) for i in mine]).double()
        torch.testing.assert_close(frames.mean(0), torch.zeros(frames.shape[1],
                                                               dtype=torch.float64),
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(frames.std(0), torch.ones(frames.shape[1],
                                                             dtype=torch.float64),
                                   atol=1e-4, rtol=0)
        for i in mine:
            a, b = plain[i], normed[i]
            assert torch.equal(a.valid_frames, b.valid_frames)
            assert (a.label, a.speaker, a.utterance) == (b.label, b.speaker, b.utterance)
            assert torch.equal(a.affect, b.affect)
            # the zero padding after each segment's audio stays zero
            for segment, n in zip(b.segments, b.valid_frames.tolist()):
                assert not bool(segment[n:].any())
    # the frames that hold audio: every frame of a pooled 3 s piece, fewer of a shorter one
    assert all(int(it.valid_frames.max()) <= it.segments.shape[1] for it in normed)


def test_speaker_norm_a_lone_recording_is_its_own_speaker():
    recipe = MMTLRecipe(["a", "b"], speaker_norm=True, **TINY)
    wave = 0.1 * torch.randn(70000, generator=torch.Generator().manual_seed(4))
    item = recipe.item_from_audio(wave)
    assert item.segments.shape[0] == 2  # two pieces of 2.19 s
    frames = _valid_frames(item).double()
    torch.testing.assert_close(frames.mean(0), torch.zeros(frames.shape[1], dtype=torch.float64),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(frames.std(0), torch.ones(frames.shape[1], dtype=torch.float64),
                               atol=1e-4, rtol=0)
    plain = MMTLRecipe(["a", "b"], speaker_norm=False, **TINY).item_from_audio(wave)
    assert not torch.allclose(plain.segments, item.segments)
    assert torch.equal(plain.valid_frames, item.valid_frames)


# -- fastser 0.1 names -------------------------------------------------------------------------
def test_mtl_reads_the_0_1_names_of_the_affect_weights_and_heads(corpus, items):
    train, _ = _split(items)
    recipe = make_recipe("mtl", corpus.labels, **TINY)
    recipe.fit_extra(train)
    state = recipe.state()
    assert set(state["extra"]) == {"emotion_weights", "affect_weights"}
    old = {**state, "extra": {"emotion_weights": state["extra"]["emotion_weights"],
                              "vad_weights": state["extra"]["affect_weights"]}}
    back = recipe_class("mtl").from_state(old)
    assert torch.equal(back.affect_weights, recipe.affect_weights)
    torch.manual_seed(0)
    model = recipe.build_model()
    weights = {k.replace("affect.", "vad.", 1) if k.startswith("affect.") else k: v
               for k, v in model.state_dict().items()}
    assert "vad.weight" in weights and "affect.weight" not in weights
    fresh = back.build_model()
    fresh.load_state_dict(weights)  # strict: the old head names land on the affect heads
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key

