"""The CAN recipe: items from synthetic and IEMOCAP (.wdseg) word timings through the same
path, aligned and equal segmentation, vocabulary and unknown words, settings, per-speaker
standardisation, bad input, padding invariance, the fused and reference implementations,
state, export in a fresh process, and a smoke training run."""

from dataclasses import replace

import numpy as np
import pytest
import soundfile
import torch

import optest
from fastser.audio.alignment import WordTiming, aligned_segments, word_frame_ranges
from fastser.audio.features import MFCC
from fastser.audio.io import load_audio
from fastser.data.corpus import Corpus, Utterance
from fastser.data.iemocap import read_iemocap
from fastser.errors import AudioError, SettingsError
from fastser.methods import make_recipe, recipe_class
from fastser.methods.can import CanItem, CanRecipe, CanSettings, WordTimingsError
from fastser.methods.can.text import UNK_ID
from fastser.train.kit import standardise_by_speaker
from fastser.train.trainer import TrainConfig, Trainer

LABELS = ("neutral", "happy", "sad", "angry")
SMALL = {"embed_dim": 16, "hidden": 8, "word_hidden": 8, "dropout": 0.0}


@pytest.fixture(scope="module")
def items(corpus):
    return CanRecipe(LABELS).featurize(list(corpus))


def fitted(items, **config):
    recipe = CanRecipe(LABELS, **{**SMALL, **config})
    recipe.fit_extra(items)
    return recipe


def utterance(words, path="x.wav", label="sad"):
    return Utterance(id="u1", path=path, label=label, speaker="s", session="s",
                     words=tuple(WordTiming(*w) for w in words))


def test_registered_and_configuration_checked():
    assert recipe_class("can") is CanRecipe
    assert isinstance(make_recipe("can", LABELS), CanRecipe)
    with pytest.raises(SettingsError, match="unknown setting.*hiden"):
        CanRecipe(LABELS, hiden=3)
    with pytest.raises(SettingsError, match="setting segmentation: .*one of .aligned., .equal."):
        CanRecipe(LABELS, segmentation="fixed")


def test_synthetic_items_hold_one_mfcc_segment_per_word(corpus, items):
    for u, item in zip(corpus, items):
        assert isinstance(item, CanItem) and item.label == LABELS.index(u.label)
        assert item.words == tuple(w.word for w in u.words)
        assert item.frame_counts.shape == (len(u.words),) and item.frame_counts.min() >= 1
        assert item.frames.shape == (int(item.frame_counts.sum()), 40)
    u, item = corpus[0], items[0]
    waveform = load_audio(u.path)
    mfcc = MFCC()(waveform)
    mfcc = mfcc - mfcc.mean(dim=0)  # cepstral mean normalisation over the utterance
    segments = aligned_segments(u.words, len(waveform), overlap=0.1)
    first, last = word_frame_ranges(segments.starts, segments.ends, len(waveform))
    assert torch.equal(item.frame_counts, last - first)
    assert torch.equal(item.frames, torch.cat([mfcc[a:b] for a, b in zip(first, last)]))
    # the 10% overlap: neighbouring words share frames, so there are more than the utterance has
    assert item.frames.shape[0] > last[-1] - first[0]


def test_cepstral_mean_normalisation_can_be_switched_off(corpus, items):
    (raw,) = CanRecipe(LABELS, cmn=False).featurize([corpus[0]])
    assert torch.equal(raw.frame_counts, items[0].frame_counts)
    shift = raw.frames - items[0].frames
    torch.testing.assert_close(shift, shift[:1].expand_as(shift), atol=1e-4, rtol=0)
    assert shift[0].abs().max() > 0.1


def test_equal_segmentation_cuts_as_many_equal_pieces_as_words(corpus, items):
    equal = CanRecipe(LABELS, segmentation="equal").featurize(list(corpus)[:5])
    for aligned_item, item in zip(items, equal):
        assert item.words == aligned_item.words
        inner = item.frame_counts[1:-1]  # the end pieces are not widened on their outer side
        if len(inner):
            assert int(inner.max() - inner.min()) <= 1
        assert not torch.equal(item.frame_counts, aligned_item.frame_counts)


WDSEG = ("\tSFrm  EFrm    SegAScr Word\n"
         "\t0     18      -1105308 <s>\n"
         "\t19    43      -1165006 EXCUSE\n"
         "\t44    55      -505866 ME(2)\n"
         "\t56    70      -505866 <sil>\n"
         "\t71    92      -505866 SIR\n"
         "\t93    99      -2041210 </s>\n"
         " Total Energy: -4817390\n")


@pytest.fixture
def iemocap_root(tmp_path):
    """A one-utterance IEMOCAP tree (1 s of audio) with its .wdseg forced alignment."""
    root = tmp_path / "IEMOCAP"
    session = root / "Session1"
    (session / "dialog" / "EmoEvaluation").mkdir(parents=True)
    (session / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt").write_text(
        "[6.2901 - 7.2901]\tSes01F_impro01_F000\tang\t[2.5000, 4.0000, 3.5000]\n")
    wav = session / "sentences" / "wav" / "Ses01F_impro01" / "Ses01F_impro01_F000.wav"
    wav.parent.mkdir(parents=True)
    soundfile.write(wav, 0.1 * np.random.default_rng(0).standard_normal(16000), 16000)
    wdseg = wav.parents[2] / "ForcedAlignment" / "Ses01F_impro01" / "Ses01F_impro01_F000.wdseg"
    wdseg.parent.mkdir(parents=True)
    wdseg.write_text(WDSEG)
    return root


def test_iemocap_wdseg_and_synthetic_timings_feed_the_model_through_one_path(
        iemocap_root, items):
    iemocap = read_iemocap(iemocap_root)
    recipe = fitted(items)
    (item,) = recipe.featurize(list(iemocap))
    assert item.words == ("EXCUSE", "ME", "SIR") and item.label == LABELS.index("angry")
    assert item.frame_counts.shape == (3,)
    assert recipe.vocabulary.encode(item.words).tolist() == [
        recipe.vocabulary.index.get(w, UNK_ID) for w in ("excuse", "me", "sir")]
    batch = recipe.collate([items[0], item, items[1]])
    assert batch["lengths"].tolist() == [len(items[0].words), 3, len(items[1].words)]
    assert batch["frames"].shape[0] == batch["lengths"].sum()
    probs = recipe.predict(recipe.build_model().eval(), batch).probs
    assert probs.shape == (3, 4) and torch.isfinite(probs).all()
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(3))


def test_collate_pads_tokens_and_word_frames(items):
    recipe = fitted(items)
    batch = recipe.collate(items[:3])
    lengths = [len(item.words) for item in items[:3]]
    assert batch["lengths"].tolist() == lengths
    assert batch["token_ids"].shape == (3, max(lengths))
    assert (batch["token_ids"][0, lengths[0]:] == 0).all()
    counts = torch.cat([item.frame_counts for item in items[:3]])
    assert torch.equal(batch["frame_lengths"], counts)
    assert batch["frames"].shape == (sum(lengths), int(counts.max()), 40)
    assert torch.equal(batch["frames"][0, :counts[0]], items[0].frames[:counts[0]])
    assert batch["labels"].tolist() == [item.label for item in items[:3]]


def test_unknown_words_map_to_the_unknown_token_and_are_counted(items):
    recipe = fitted(items)
    item = items[0]._replace(words=("zyzzyva",) + items[0].words[1:])
    batch = recipe.collate([item])
    assert batch["token_ids"][0, 0] == UNK_ID and (batch["token_ids"][0, 1:] > UNK_ID).all()
    assert recipe.epoch_logs()["unknown_words"] == pytest.approx(1 / len(item.words))
    assert recipe.epoch_logs() == {}


def test_recording_without_word_timings_is_a_clear_error():
    recipe = CanRecipe(LABELS)
    waveform = torch.zeros(16000)
    with pytest.raises(WordTimingsError,
                       match="can: the recording: .*needs the recording's word timings.*--words"):
        recipe.item_from_audio(waveform)
    with pytest.raises(WordTimingsError, match="utterance 'u1': no word timings"):
        recipe.item_from_audio(waveform, utterance([]))
    item = recipe.item_from_audio(waveform, words=[WordTiming("hello", 0.1, 0.5)])
    assert item.label == -1 and item.words == ("hello",)
    with pytest.raises(WordTimingsError, match="empty transcript"):
        recipe.item_from_audio(waveform, words=[])


@pytest.mark.parametrize("words,samples,message", [
    ([("hi", 0.1, 0.4), ("there", 1.2, 1.5)], 16000, r"'there' starts at 1.2 s, at or after"),
    ([("hi", 0.1, 0.4), ("there", 0.5, 1.3)], 16000, r"'there' ends at 1.3 s"),
    ([("<s>", 0.0, 0.1), ("<sil>", 0.1, 0.5)], 16000, "empty transcript"),
    ([("hi", 0.3, 0.6), ("there", 0.1, 0.2)], 16000, "not sorted"),
])
def test_bad_word_timings_name_the_utterance_and_the_problem(words, samples, message):
    recipe = CanRecipe(LABELS)
    with pytest.raises(WordTimingsError, match=f"can: utterance 'u1': .*{message}"):
        recipe.item_from_audio(torch.zeros(samples), utterance(words))


def test_equal_segmentation_needs_words_too():
    recipe = CanRecipe(LABELS, segmentation="equal")
    with pytest.raises(WordTimingsError, match="can: utterance 'u1': .*empty transcript"):
        recipe.item_from_audio(torch.zeros(16000), utterance([("<sil>", 0.0, 0.5)]))
    with pytest.raises(WordTimingsError, match="cannot cut 400 samples into 401"):
        recipe.item_from_audio(torch.zeros(400), words=[WordTiming(f"w{i}", 0.0, 0.0)
                                                        for i in range(401)])


def test_equal_segmentation_takes_the_transcripts_words_without_timings(corpus):
    """Without word timings, equal pieces need only the number (and the tokens) of the
    transcript's words; aligned segmentation still needs the timings."""
    timed = corpus[0]
    bare = Utterance("bare", timed.path, timed.label, timed.speaker, timed.session,
                     transcript="Well, I don't know... really!")
    waveform = load_audio(timed.path)
    item = CanRecipe(LABELS, segmentation="equal").item_from_audio(waveform, bare)
    assert item.words == ("Well", "I", "don't", "know", "really")
    with_words = Utterance("same", timed.path, timed.label, timed.speaker, timed.session,
                           words=[WordTiming(w, 0.0, 0.0) for w in item.words])
    again = CanRecipe(LABELS, segmentation="equal").item_from_audio(waveform, with_words)
    assert torch.equal(item.frames, again.frames) and torch.equal(item.frame_counts,
                                                                  again.frame_counts)
    with pytest.raises(WordTimingsError, match="can: utterance 'bare': no word timings .*"
                                               "segmentation=equal and a transcript"):
        CanRecipe(LABELS).item_from_audio(waveform, bare)


def test_requirements_count_the_utterances_without_words(corpus):
    from fastser.data.corpus import Corpus

    bare = [Utterance(f"b{i}", "a.wav", "sad", "s", "s", transcript="hi there" if i else None)
            for i in range(3)]
    mixed = Corpus("c", LABELS, (*list(corpus)[:2], *bare))
    assert CanRecipe(LABELS).requirements(mixed) == [
        "cuts the audio at words: needs word timings (segmentation=equal needs only a "
        "transcript), which 3 of 5 utterance(s) lack"]
    assert CanRecipe(LABELS, segmentation="equal").requirements(mixed) == [
        "cuts the audio at words: needs word timings or a transcript, which 1 of 5 "
        "utterance(s) lack"]
    assert CanRecipe(LABELS).requirements(corpus) == []


def test_audio_shorter_than_one_mfcc_frame_is_rejected():
    recipe = CanRecipe(LABELS)
    assert recipe.min_samples == recipe.mfcc.n_fft == 400  # one 25 ms frame
    with pytest.raises(AudioError, match="can: utterance 'u1' has 300 samples, fewer than the "
                                         r"400 \(25 ms\)"):
        recipe.item_from_audio(torch.zeros(300), utterance([("hi", 0.0, 0.01)]))
    with pytest.raises(AudioError, match="the recording has 399 samples"):
        recipe.item_from_audio(torch.zeros(399), words=[WordTiming("hi", 0.0, 0.01)])
    item = recipe.item_from_audio(torch.zeros(400), words=[WordTiming("hi", 0.0, 0.01)])
    assert item.frame_counts.tolist() == [1] and item.frames.shape == (1, 40)


def test_words_ending_before_they_start_cannot_enter_an_utterance():
    with pytest.raises(ValueError, match="needs 0 <= start <= end"):
        utterance([("hi", 0.5, 0.2)])


def test_other_bad_input(items):
    recipe = CanRecipe(LABELS, **SMALL)
    with pytest.raises(ValueError, match="no vocabulary yet"):
        recipe.collate(items[:2])
    with pytest.raises(ValueError, match="no vocabulary yet"):
        recipe.build_model()
    recipe.fit_extra(items)
    with pytest.raises(ValueError, match="item 1: text and audio step counts disagree"):
        recipe.collate([items[0], items[1]._replace(words=items[1].words[:-1])])
    with pytest.raises(ValueError, match="empty batch"):
        recipe.collate([])
    with pytest.raises(AudioError, match="NaN"):
        recipe.item_from_audio(torch.full((16000,), float("nan")),
                               words=[WordTiming("a", 0.0, 0.5)])
    with pytest.raises(ValueError, match="label 'bored' is not one of"):
        recipe.item_from_audio(torch.zeros(16000), utterance([("a", 0.0, 0.5)], label="bored"))


def test_prediction_does_not_depend_on_batch_padding(items):
    recipe = fitted(items)
    model = recipe.build_model().eval()
    with torch.no_grad():
        together = recipe.predict(model, recipe.collate(items[:5])).probs
        for b in range(5):
            alone = recipe.predict(model, recipe.collate([items[b]])).probs
            torch.testing.assert_close(alone[0], together[b], atol=1e-6, rtol=1e-5)


def test_reference_implementation_gives_the_same_loss_and_predictions(items):
    fused, naive = fitted(items), fitted(items, implementation="reference")
    torch.manual_seed(0)
    model = fused.build_model().eval()
    naive_model = naive.build_model().eval()
    naive_model.load_state_dict(model.state_dict())
    assert naive_model.cross.implementation == "reference"
    assert model.cross.implementation == "fused"
    batch = fused.collate(items[:6])
    torch.testing.assert_close(fused.loss(model, batch), naive.loss(naive_model, batch))
    with torch.no_grad():
        torch.testing.assert_close(fused.predict(model, batch).probs,
                                   naive.predict(naive_model, batch).probs)


def test_the_former_naive_setting_is_read_as_the_implementation():
    assert CanRecipe(LABELS, naive=True).settings.implementation == "reference"
    assert CanRecipe(LABELS, naive=False).settings.implementation == "fused"


def test_state_rebuilds_the_same_model(items):
    recipe = fitted(items)
    model = recipe.build_model().eval()
    state = recipe.state()
    assert state["extra"]["vocabulary"] == recipe.vocabulary.words
    assert state["settings"]["vocabulary"] is None  # learnt, not set
    assert set(state["extra"]) == {"vocabulary", "feature_mean", "feature_std"}
    rebuilt = CanRecipe.from_state(state)
    clone = rebuilt.build_model().eval()
    # what fit_extra learnt is restored: the MFCC statistics reach a fresh model's buffers
    assert torch.equal(clone.audio.feature_mean, recipe.feature_stats.mean)
    assert torch.equal(clone.audio.feature_std, recipe.feature_stats.std)
    clone.load_state_dict(model.state_dict())
    batch = recipe.collate(items[:4])
    assert torch.equal(rebuilt.collate(items[:4])["token_ids"], batch["token_ids"])
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.predict(clone, batch).probs,
                                   recipe.predict(model, batch).probs)


def test_example_batch_uses_the_vocabulary(items):
    recipe = fitted(items)
    batch = recipe.example_batch()
    assert batch["lengths"].tolist() == [6, 5]  # two words a second of 3 s and 2.5 s
    assert (batch["token_ids"][0] > UNK_ID).all() and (batch["labels"] == -1).all()
    model = recipe.build_model().eval()
    with torch.no_grad():
        probs = recipe.export_module(model)(*recipe.export_inputs(batch))
    torch.testing.assert_close(probs.sum(1), torch.ones(2))


def test_smoke_training_then_checkpoint_prediction_and_export_in_a_fresh_process(
        corpus, items, tmp_path):
    """Training runs end to end and lowers the loss; the checkpoint alone (vocabulary and
    MFCC statistics in its extra state) rebuilds the recognizer, which predicts a recording
    from its word timings; the exported TorchScript file runs in a process that only loads
    fastser's shared library."""
    from fastser.inference import Recognizer, export_torchscript, load_trained

    recipe = CanRecipe(LABELS, **SMALL)
    config = TrainConfig(epochs=3, batch_size=8, lr=5e-3, seed=0, progress=False, device="cpu")
    result = Trainer(recipe, config, tmp_path / "run").fit(items[:32], items[32:])
    losses = [record["train_loss"] for record in result.history]
    assert losses[-1] < losses[0]
    assert 0 <= result.history[-1]["unknown_words"] <= 1

    checkpoint = tmp_path / "run" / "best.pt"
    recognizer = Recognizer.from_checkpoint(checkpoint)
    assert recognizer.recipe.vocabulary.words == recipe.vocabulary.words
    u = list(corpus)[35]
    recognition = recognizer.predict(u.path, words=u.words)
    probs = recipe.predict(result.model.eval(), recipe.collate([items[35]])).probs[0]
    assert recognition.scores == pytest.approx(dict(zip(LABELS, probs.tolist())), abs=1e-5)
    with pytest.raises(WordTimingsError, match="word timings"):
        recognizer.predict(u.path)

    trained = load_trained(checkpoint)
    path = export_torchscript(trained, tmp_path / "can.pt")
    batch = trained.recipe.collate(items[:3])
    inputs = trained.recipe.export_inputs(batch)
    with torch.no_grad():
        expected = trained.recipe.predict(trained.model.eval(), batch).probs
    optest.check_scripted_in_fresh_process(path, inputs, expected, tmp_path, atol=1e-5)


@pytest.mark.parametrize("key,value", [
    ("embed_dim", 0), ("hidden", 0), ("word_hidden", 0), ("heads", 0), ("dropout", -0.1),
    ("dropout", 1.0), ("alpha", -0.01), ("segmentation", "fixed"), ("overlap", -0.1),
    ("overlap", 1.0), ("cmn", 1), ("glove", ""), ("min_count", 0), ("vocabulary", "word"),
    ("vocabulary", ["ok", ""]), ("hidden", 8.5), ("implementation", "naive"),
    ("speaker_norm", "yes"),
])
def test_every_setting_out_of_its_range_is_a_settings_error_naming_it(key, value):
    with pytest.raises(SettingsError, match=f"can: setting {key}: expected"):
        CanRecipe(LABELS, **{key: value})


def test_settings_are_typed_with_their_defaults():
    s = CanRecipe(LABELS).settings
    assert isinstance(s, CanSettings)
    assert (s.embed_dim, s.hidden, s.word_hidden, s.heads, s.dropout, s.alpha) == (
        300, 128, 128, 4, 0.3, 0.1)
    assert (s.segmentation, s.overlap, s.cmn, s.glove, s.min_count, s.vocabulary) == (
        "aligned", 0.1, True, None, 1, None)
    assert (s.implementation, s.speaker_norm) == ("fused", False)
    assert CanRecipe(LABELS, vocabulary=["b", "a"]).settings.vocabulary == ("b", "a")
    assert CanRecipe(LABELS, overlap=0.0, dropout=0.0, alpha=0.0).settings.overlap == 0.0


@pytest.mark.parametrize("settings,message", [
    ({"hidden": 8, "heads": 3}, r"setting heads \(3\) must divide .* 2 \* hidden = 16"),
    ({"vocabulary": []}, "setting vocabulary: needs at least one word"),
    ({"vocabulary": ["a", "A"]}, r"setting vocabulary: duplicate words .*\['a'\]"),
    ({"vocabulary": ["<unk>"]}, "setting vocabulary: <pad> and <unk> are reserved"),
])
def test_settings_that_do_not_fit_together_are_settings_errors(settings, message):
    with pytest.raises(SettingsError, match=f"can: {message}"):
        CanRecipe(LABELS, **settings)


def test_training_plus_glove_vocabulary_keeps_test_words_glove_covers(items, tmp_path):
    """Words only a test utterance has are <unk> with the training vocabulary; with
    vocabulary_source=training+glove, those the GloVe file covers get their own id (and
    their pretrained vector)."""
    train = items[: len(items) // 2]
    seen = {w.casefold() for item in train for w in item.words}
    unseen = sorted({w.casefold() for item in items for w in item.words} - seen)
    assert unseen, "the test needs a word only the later utterances have"
    glove = tmp_path / "glove.txt"
    glove.write_text("".join(f"{w} {i}.5 1.0\n" for i, w in enumerate(unseen[:2] + ["zebra"])))
    plain = CanRecipe(LABELS, embed_dim=2, hidden=4, word_hidden=4, heads=2, glove=str(glove))
    joined = CanRecipe(LABELS, embed_dim=2, hidden=4, word_hidden=4, heads=2, glove=str(glove),
                       vocabulary_source="training+glove")
    for recipe in (plain, joined):
        recipe.fit_extra(train)
    assert unseen[0] not in plain.vocabulary
    assert unseen[0] in joined.vocabulary and "zebra" in joined.vocabulary
    assert joined.vocabulary.words[:len(plain.vocabulary.words)] == plain.vocabulary.words
    model = joined.build_model()
    row = joined.vocabulary.index[unseen[0]]
    torch.testing.assert_close(model.text.embedding.weight[row].detach(), torch.tensor([0.5, 1.0]))
    limited = CanRecipe(LABELS, glove=str(glove), vocabulary_source="training+glove",
                        glove_max_words=1)
    limited.fit_extra(train)
    assert len(limited.vocabulary.words) == len(plain.vocabulary.words) + 1
    with pytest.raises(SettingsError, match="training\\+glove needs the GloVe vectors"):
        CanRecipe(LABELS, vocabulary_source="training+glove")


def test_paper_preset():
    paper = CanRecipe.presets["paper"]
    assert paper.settings["side_heads"] == "own_context"
    assert (paper.training["optimizer"], paper.training["lr"], paper.training["batch_size"],
            paper.training["grad_clip"], paper.training["patience"]) == ("adam", 1e-3, 64, 1.0,
                                                                         10)
    with pytest.raises(SettingsError, match="set glove=PATH"):
        CanRecipe(LABELS, **paper.settings)
    CanRecipe(LABELS, **paper.settings, glove="/any/glove.txt")


def test_a_min_count_no_word_reaches_is_a_settings_error(items):
    recipe = CanRecipe(LABELS, min_count=10**6)
    with pytest.raises(SettingsError, match="min_count = 1000000"):
        recipe.fit_extra(items)


def test_demo_preset():
    demo = CanRecipe.presets["demo"]
    assert dict(demo.settings) == {"embed_dim": 64, "hidden": 64, "word_hidden": 64}
    assert dict(demo.training) == {"epochs": 12, "batch_size": 16, "lr": 2e-3}
    CanRecipe(LABELS, **demo.settings)


def _speaker_frames(items, speakers):
    frames = {}
    for item, speaker in zip(items, speakers):
        frames.setdefault(speaker, []).append(item.frames)
    return {speaker: torch.cat(parts).double() for speaker, parts in frames.items()}


def test_speaker_norm_standardises_each_speakers_word_frames(corpus, items):
    utterances = list(corpus)
    normed = CanRecipe(LABELS, speaker_norm=True).featurize(utterances)
    speakers = [u.speaker for u in utterances]
    per_speaker = _speaker_frames(normed, speakers)
    assert len(per_speaker) == 4
    for frames in per_speaker.values():
        torch.testing.assert_close(frames.mean(0), torch.zeros(40, dtype=torch.float64),
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(frames.std(0), torch.ones(40, dtype=torch.float64),
                                   atol=1e-4, rtol=0)
    # the item's frames (its word segments back to back) are what is standardised; the rest
    # of the item is unchanged
    want = standardise_by_speaker([item.frames for item in items], speakers)
    for raw, item, frames in zip(items, normed, want):
        assert item.words == raw.words and item.label == raw.label
        assert torch.equal(item.frame_counts, raw.frame_counts)
        torch.testing.assert_close(item.frames, frames)
    # and training, prediction and the recipe state go through as without it
    recipe = CanRecipe(LABELS, speaker_norm=True, **SMALL)
    recipe.fit_extra(normed)
    torch.testing.assert_close(recipe.feature_stats.mean, torch.zeros(40), atol=1e-5, rtol=0)
    probs = recipe.predict(recipe.build_model().eval(), recipe.collate(normed[:3])).probs
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(3))
    assert CanRecipe.from_state(recipe.state()).settings.speaker_norm


def test_speaker_norm_takes_a_lone_recording_as_its_own_speaker(corpus):
    u = list(corpus)[0]
    waveform = load_audio(u.path)
    recipe = CanRecipe(LABELS, speaker_norm=True)
    item = recipe.item_from_audio(waveform, words=u.words)
    frames = item.frames.double()
    torch.testing.assert_close(frames.mean(0), torch.zeros(40, dtype=torch.float64),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(frames.std(0), torch.ones(40, dtype=torch.float64),
                               atol=1e-4, rtol=0)
    raw = CanRecipe(LABELS).item_from_audio(waveform, words=u.words)
    (want,) = standardise_by_speaker([raw.frames], ["anyone"])
    torch.testing.assert_close(item.frames, want)
    assert item.label == -1 and item.words == raw.words


@pytest.mark.filterwarnings("ignore:fastser.train.recipes has moved:DeprecationWarning")
@pytest.mark.parametrize("old,new", [
    ("fastser.models.can", "fastser.methods.can.model"),
    ("fastser.models.can_text", "fastser.methods.can.text"),
    ("fastser.models.can_layers", "fastser.methods.can.layers"),
    ("fastser.train.recipes.can", "fastser.methods.can.recipe"),
])
def test_old_import_paths_still_work_with_a_deprecation_warning(old, new):
    import importlib
    import sys

    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} has moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_equal_segmentation_takes_the_transcript_words_without_timings():
    untimed = Utterance(id="u1", path="x.wav", label="sad", speaker="s", session="s",
                        transcript="Der Lappen liegt auf dem Eisschrank.")
    equal = CanRecipe(LABELS, segmentation="equal")
    item = equal.item_from_audio(torch.zeros(32000), untimed)
    assert item.words == ("Der", "Lappen", "liegt", "auf", "dem", "Eisschrank")
    assert item.frame_counts.shape == (6,)
    other = replace(untimed, id="u2", label="happy")
    corpus = Corpus("c", LABELS, (untimed, other))
    assert equal.requirements(corpus) == []
    aligned = CanRecipe(LABELS)
    with pytest.raises(WordTimingsError, match="segmentation=equal and a transcript"):
        aligned.item_from_audio(torch.zeros(32000), untimed)
    assert "which 2 of 2 utterance(s) lack" in aligned.requirements(corpus)[0]


def test_class_weighted_loss_weights_each_class_by_its_training_rarity(items):
    recipe = fitted(items, class_weighted=True)
    labels = torch.tensor([item.label for item in items])
    counts = torch.bincount(labels, minlength=4).double()
    expected = counts.sum() / (4 * counts)
    torch.testing.assert_close(recipe.class_weights.double(), expected)
    model = recipe.build_model().eval()
    batch = recipe.collate(items[:8])
    logits, text, audio = model(*recipe._inputs(batch))
    weight = expected.float()
    reference = sum(scale * torch.nn.functional.cross_entropy(out, batch["labels"], weight=weight)
                    for scale, out in ((1.0, logits), (0.1, text), (0.1, audio)))
    torch.testing.assert_close(recipe.loss(model, batch), reference)
    restored = CanRecipe.from_state(recipe.state())
    torch.testing.assert_close(restored.class_weights, recipe.class_weights)
