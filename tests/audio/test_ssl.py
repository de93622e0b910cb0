"""SSL front ends: frame counts against the conv stack, the VAD mask and the model itself,
padding, layer selection, freezing, loading local weights, sample rates, the feature cache."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from fastser.audio import load_audio, resample, ssl_num_frames, ssl_vad_mask
from fastser.audio.ssl import (SSLFrontEnd, VADSettings, WeightedLayerSum, build_ssl_model,
                               cached_features, conv_geometry, speech_mask)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning",
                                        "ignore::DeprecationWarning")
pytest.importorskip("transformers")

TINY = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 32, "conv_dim": (8,) * 7, "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 2, "layerdrop": 0.0, "mask_time_prob": 0.0,
        "feat_extract_norm": "layer", "conv_bias": True}
WAVLM_TINY = {**TINY, "num_buckets": 16, "max_bucket_distance": 100}
KINDS = {"wavlm": WAVLM_TINY, "hubert": TINY, "wav2vec2": TINY}


def front_end(kind="wavlm", seed=0, **options):
    return SSLFrontEnd.from_config(kind, KINDS[kind], seed=seed, **options)


def padded(pieces):
    return (torch.nn.utils.rnn.pad_sequence(pieces, batch_first=True),
            torch.tensor([p.shape[0] for p in pieces]))


@pytest.fixture(scope="module")
def synthetic_audio():
    from fastser.data.synthetic import load_synthetic

    corpus = load_synthetic(utterances=40, seed=3)
    return [load_audio(u.path) for u in corpus.utterances[:4]]


def test_conv_geometry():
    assert conv_geometry((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)) == (400, 320)
    assert conv_geometry((160, 4), (80, 4)) == (400, 320)
    assert conv_geometry((10, 3), (5, 2)) == (20, 10)
    with pytest.raises(ValueError, match="2 kernels and 1 strides"):
        conv_geometry((10, 3), (5,))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_frame_counts_match_model_and_vad(kind, sample_audio):
    fe = front_end(kind)
    lengths = torch.tensor([400, 719, 720, 16000, 16001, 40123])
    pieces = [sample_audio[160000:160000 + n] for n in lengths.tolist()]
    with torch.no_grad():
        features, frame_lengths = fe(*padded(pieces))
    expected = [ssl_num_frames(n) for n in lengths.tolist()]
    assert frame_lengths.tolist() == expected
    assert fe.model._get_feat_extract_output_lengths(lengths).tolist() == expected
    assert features.shape == (6, max(expected), 16)
    _, vad_lengths = ssl_vad_mask(pieces)
    assert vad_lengths.tolist() == expected


def test_vad_mask_aligns_on_real_speech(sample_audio, synthetic_audio):
    """The VAD mask of the pyannote sample and of synthetic utterances has exactly the SSL
    model's frames, and its speech frames carry more energy than its non-speech frames."""
    fe = front_end()
    recordings = [sample_audio] + synthetic_audio
    with torch.no_grad():
        features, frame_lengths = fe(*padded(recordings))
    mask, vad_lengths = ssl_vad_mask(recordings)
    assert torch.equal(vad_lengths, frame_lengths) and mask.shape == features.shape[:2]
    for audio, row, n in zip(recordings, mask, frame_lengths.tolist()):
        frames = audio[:400 + 320 * (n - 1)].unfold(0, 400, 320)
        energy = frames.square().mean(dim=1)
        assert frames.shape[0] == n
        assert float(energy[row[:n]].mean()) > 4 * float(energy[~row[:n]].mean())


def test_other_conv_stack_is_counted_and_refused_for_vad():
    config = {**WAVLM_TINY, "conv_dim": (8, 8, 8), "conv_kernel": (10, 3, 3),
              "conv_stride": (5, 2, 2)}
    fe = SSLFrontEnd.from_config("wavlm", config)
    assert (fe.receptive_field, fe.stride) == (40, 20)
    lengths = torch.tensor([40, 1000, 1234])
    with torch.no_grad():
        _, frame_lengths = fe(torch.randn(3, 1234), lengths)
    assert frame_lengths.tolist() == fe.model._get_feat_extract_output_lengths(lengths).tolist()
    assert frame_lengths.tolist() == [fe.num_frames(n) for n in lengths.tolist()]
    with pytest.raises(ValueError, match="receptive field 40 and stride 20 .* would not line up"):
        fe.check_vad_alignment()
    front_end().check_vad_alignment()


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("norm", ["layer", "group"])
def test_padding_changes_nothing(kind, norm, sample_audio):
    fe = SSLFrontEnd.from_config(kind, {**KINDS[kind], "feat_extract_norm": norm},
                                 layer="weighted")
    assert fe.per_utterance == (norm == "group")
    pieces = [sample_audio[100000:132000], sample_audio[200000:208000],
              sample_audio[300000:300400]]
    with torch.no_grad():
        layers, frame_lengths = fe.layer_outputs(*padded(pieces))
        garbage = padded(pieces)[0]
        garbage[1, 8000:] = 1.0  # padding content must not matter either
        again, _ = fe.layer_outputs(garbage, frame_lengths.new_tensor([32000, 8000, 400]))
        for row, piece, n in zip(layers, pieces, frame_lengths.tolist()):
            alone, _ = fe.layer_outputs(piece[None], torch.tensor([piece.shape[0]]))
            torch.testing.assert_close(row[:n], alone[0], atol=1e-4, rtol=1e-4)
            assert not bool(row[n:].any())
    torch.testing.assert_close(again, layers, atol=1e-4, rtol=1e-4)


def test_layers_last_and_weighted_sum(sample_audio):
    last, weighted = front_end(layer="last"), front_end(layer="weighted")
    audio = sample_audio[100000:116000][None]
    lengths = torch.tensor([16000])
    with torch.no_grad():
        out = last.model(audio, output_hidden_states=True)
        features, _ = last(audio, lengths)
        layers, _ = weighted.layer_outputs(audio, lengths)
    assert layers.shape == (1, 49, 3, 16) and weighted.layer_shape == (3, 16)
    torch.testing.assert_close(features, out.last_hidden_state)
    torch.testing.assert_close(layers[:, :, -1], out.last_hidden_state)
    torch.testing.assert_close(layers[:, :, 0], out.hidden_states[0])
    with torch.no_grad():
        weighted.combine.logits.copy_(torch.tensor([0.3, -1.0, 2.0]))
    combined, _ = weighted(audio, lengths)
    w = torch.softmax(torch.tensor([0.3, -1.0, 2.0]), 0)
    torch.testing.assert_close(combined, sum(w[i] * layers[:, :, i] for i in range(3)))
    combined.sum().backward()
    assert weighted.combine.logits.grad is not None
    assert all(p.grad is None for p in weighted.model.parameters())
    with pytest.raises(ValueError, match="expected .B, F, 3, D. layer outputs"):
        WeightedLayerSum(3)(torch.zeros(1, 2, 4, 16))


def test_frozen_stays_in_eval_and_fine_tuned_learns(sample_audio):
    audio, lengths = sample_audio[100000:116000][None], torch.tensor([16000])
    frozen = front_end().train()
    assert frozen.training and not frozen.model.training
    assert not any(p.requires_grad for p in frozen.model.parameters())
    tuned = front_end(frozen=False).train()
    assert tuned.model.training
    features, _ = tuned(audio, lengths)
    features.square().mean().backward()
    grads = [p.grad for p in tuned.model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


def test_random_weights_come_from_the_seed():
    a, b, c = (build_ssl_model("wavlm", WAVLM_TINY, seed=s) for s in (0, 0, 1))
    state = torch.get_rng_state()
    build_ssl_model("hubert", TINY, seed=5)
    assert torch.equal(state, torch.get_rng_state())
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name
    fe_a, fe_c = SSLFrontEnd(a), SSLFrontEnd(c)
    assert fe_a.fingerprint() == SSLFrontEnd(b).fingerprint() != fe_c.fingerprint()
    assert fe_a.fingerprint() != SSLFrontEnd(a, layer="weighted").fingerprint()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_load_from_local_directory(kind, tmp_path, sample_audio):
    saved = build_ssl_model(kind, KINDS[kind], seed=3)
    saved.save_pretrained(tmp_path / "weights")
    loaded = SSLFrontEnd.from_pretrained(tmp_path / "weights", kind, layer="weighted")
    assert not loaded.normalize
    audio, lengths = sample_audio[100000:120000][None], torch.tensor([20000])
    with torch.no_grad():
        want, _ = SSLFrontEnd(saved, layer="weighted")(audio, lengths)
        got, _ = loaded(audio, lengths)
    torch.testing.assert_close(got, want)
    assert loaded.weights_hash() == SSLFrontEnd(saved).weights_hash()  # the path is no part
    (tmp_path / "weights" / "preprocessor_config.json").write_text(
        json.dumps({"do_normalize": True}))
    assert SSLFrontEnd.from_pretrained(tmp_path / "weights").normalize


def test_a_model_name_loads_through_transformers_by_name(tmp_path, monkeypatch):
    """A name (not a path) goes to transformers' from_pretrained; here the name resolves to a
    save_pretrained folder (no network in tests)."""
    import huggingface_hub.constants
    import transformers

    from fastser.audio.ssl import is_model_name

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    saved = build_ssl_model("wavlm", WAVLM_TINY, seed=3)
    saved.save_pretrained(tmp_path / "weights")
    asked = []
    for cls in (transformers.AutoConfig, transformers.WavLMModel):
        original = cls.from_pretrained.__func__

        def by_name(klass, name, *args, _original=original, **kwargs):
            asked.append(name)
            return _original(klass, str(tmp_path / "weights"), *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(by_name))
    loaded = SSLFrontEnd.from_pretrained("some-org/tiny-wavlm", "wavlm")
    assert asked == ["some-org/tiny-wavlm"] * 2
    assert loaded.weights_hash() == SSLFrontEnd(saved).weights_hash()
    with pytest.raises(ValueError, match="holds a 'wavlm' model, not 'hubert'"):
        SSLFrontEnd.from_pretrained("some-org/tiny-wavlm", "hubert")
    assert is_model_name("microsoft/wavlm-large")
    assert not is_model_name(str(tmp_path / "weights")) and not is_model_name("./weights")
    assert not is_model_name(tmp_path / "missing")  # a Path is always a path


def test_local_directory_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory .*nothing is downloaded"):
        SSLFrontEnd.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        SSLFrontEnd.from_pretrained(tmp_path / "empty")
    build_ssl_model("hubert", TINY).save_pretrained(tmp_path / "hubert")
    with pytest.raises(ValueError, match="holds a 'hubert' model, not 'wavlm'"):
        SSLFrontEnd.from_pretrained(tmp_path / "hubert", "wavlm")
    for weights in tmp_path.glob("hubert/*.safetensors"):
        os.unlink(weights)
    with pytest.raises(FileNotFoundError, match="has no weights file"):
        SSLFrontEnd.from_pretrained(tmp_path / "hubert")
    with pytest.raises(ValueError, match="unknown SSL model kind 'bert'"):
        build_ssl_model("bert")


def test_normalisation_is_per_utterance(sample_audio):
    fe = SSLFrontEnd(build_ssl_model("wavlm", WAVLM_TINY), normalize=True)
    piece = sample_audio[160000:176000]
    with torch.no_grad():
        quiet, _ = fe(0.25 * piece[None], torch.tensor([16000]))
        loud, _ = fe(piece[None] + 0.0, torch.tensor([16000]))
        both, _ = fe(*padded([piece, piece[:8000]]))
    torch.testing.assert_close(quiet, loud, atol=2e-3, rtol=2e-3)  # up to the epsilon
    torch.testing.assert_close(both[:1], loud, atol=1e-4, rtol=1e-4)


def test_other_sample_rates_are_resampled(sample_audio):
    fe = front_end()
    piece = sample_audio[100000:132000]
    at_8k = resample(piece, 16000, 8000)
    with torch.no_grad():
        got, frame_lengths = fe.extract([at_8k], sample_rate=8000)
        want, _ = fe(resample(at_8k, 8000, 16000)[None], torch.tensor([32000]))
    assert frame_lengths.tolist() == [ssl_num_frames(32000)]
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="sample_rate must be a positive integer"):
        fe.extract([piece], sample_rate=0)


@pytest.mark.parametrize("call,pattern", [
    (lambda fe: fe(torch.zeros(2, 800), torch.tensor([800, 399])),
     "utterance 1: 399 samples at 16 kHz is shorter than one SSL frame .400 samples"),
    (lambda fe: fe.extract([torch.zeros(399)]), "utterance 0: 399 samples"),
    (lambda fe: fe.num_frames(100), "100 samples is shorter than one SSL frame"),
    (lambda fe: fe(torch.zeros(800), torch.tensor([800])), "expected padded waveforms .B, N."),
    (lambda fe: fe(torch.zeros(1, 800), torch.tensor([900])), "exceeds the padded size"),
    (lambda fe: fe(torch.zeros(1, 800, dtype=torch.long), torch.tensor([800])), "must be float"),
    (lambda fe: SSLFrontEnd(fe.model, layer="first"), "layer must be one of"),
])
def test_bad_input(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(front_end())


def test_feature_cache(tmp_path, synthetic_audio):
    import soundfile

    paths = []
    for index, audio in enumerate(synthetic_audio):
        paths.append(tmp_path / f"u{index}.wav")
        soundfile.write(paths[-1], audio.numpy(), 16000, subtype="FLOAT")
    fe = front_end(layer="weighted")
    loads = []

    def load(path):
        loads.append(path)
        return load_audio(path)

    first = cached_features(fe, paths, load, tmp_path / "cache", batch_seconds=5.0)
    assert first.created and len(first) == 4 and len(loads) == 4  # audio kept in memory
    assert first.features.dtype == np.float16 and first.features.shape[1:] == (3, 16)
    again = cached_features(fe, paths, load, tmp_path / "cache")
    assert not again.created and len(loads) == 4 and again.folder == first.folder
    assert isinstance(again.features, np.memmap)
    assert np.array_equal(np.asarray(again.features), np.asarray(first.features))
    for index, audio in enumerate(synthetic_audio):
        features, speech = again.utterance(index)
        with torch.no_grad():
            want, _ = fe.layer_outputs(audio[None], torch.tensor([audio.shape[0]]))
        np.testing.assert_allclose(features.astype(np.float32), want[0].numpy(), rtol=2e-3,
                                   atol=1e-4)  # float16 rounding of the batched features
        assert np.array_equal(speech, speech_mask(audio, VADSettings()).numpy())
    other_vad = cached_features(fe, paths, load, tmp_path / "cache", vad=VADSettings(20, 1))
    other_model = cached_features(front_end(seed=1, layer="weighted"), paths, load,
                                  tmp_path / "cache")
    os.utime(paths[2], ns=(0, 10**9))
    touched = cached_features(fe, paths, load, tmp_path / "cache")
    folders = {c.folder for c in (first, other_vad, other_model, touched)}
    assert len(folders) == 4 and all(c.created for c in (other_vad, other_model, touched))
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        f.name for f in folders)  # no temporary folders left behind
    with pytest.raises(ValueError, match="cache dtype must be one of"):
        cached_features(fe, paths, load, tmp_path / "cache", dtype="int8")


def test_feature_cache_keeps_segments_of_one_file_apart(tmp_path, synthetic_audio):
    """Parts of one recording are cached as themselves: their own features, their own key."""
    import soundfile

    from fastser.audio.io import AudioSpan

    whole = torch.cat(list(synthetic_audio[:2]))
    soundfile.write(tmp_path / "long.wav", whole.numpy(), 16000, subtype="FLOAT")
    cut = synthetic_audio[0].shape[0] / 16000
    spans = [AudioSpan(tmp_path / "long.wav", 0.0, cut), AudioSpan(tmp_path / "long.wav", cut)]
    fe = front_end(layer="weighted")
    cached = cached_features(fe, spans, lambda span: span.load(), tmp_path / "cache")
    for index, audio in enumerate(synthetic_audio[:2]):
        features, _ = cached.utterance(index)
        with torch.no_grad():
            want, _ = fe.layer_outputs(audio[None], torch.tensor([audio.shape[0]]))
        np.testing.assert_allclose(features.astype(np.float32), want[0].numpy(), rtol=2e-3,
                                   atol=1e-4)
    later = cached_features(fe, spans[::-1], lambda span: span.load(), tmp_path / "cache")
    assert later.created and later.folder != cached.folder


def test_feature_cache_rejects_short_audio(tmp_path):
    import soundfile

    soundfile.write(tmp_path / "short.wav", np.zeros(300), 16000)
    with pytest.raises(ValueError, match="short.wav: 300 samples at 16 kHz is shorter"):
        cached_features(front_end(), [tmp_path / "short.wav"], load_audio, tmp_path / "cache")
    assert not any((tmp_path / "cache").iterdir())
