"""WebRTC VAD: speech in real speech, none in silence or faint noise, the SSL frame mapping
against a per-sample computation and a tiny WavLM's frame count, batching, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastser.audio import frames_to_ssl, resample, ssl_num_frames, ssl_vad_mask, vad_frames


def speech_fraction(mask: torch.Tensor, start: float, end: float) -> float:
    """Fraction of SSL frames whose 25 ms field lies in [start, end) seconds."""
    first, last = int(np.ceil(start * 50)), int((end - 0.025) * 50)
    return float(mask[first:last + 1].float().mean())


def test_speech_found_where_speech_is(sample_audio, speech_turns):
    mask, frame_lengths = ssl_vad_mask([sample_audio])
    assert frame_lengths.tolist() == [ssl_num_frames(sample_audio.shape[0])]
    mask = mask[0]
    first_turn = min(start for start, _ in speech_turns)
    assert first_turn > 6.0
    assert speech_fraction(mask, 0.0, first_turn - 0.3) < 0.05  # the opening is not speech
    inside = [speech_fraction(mask, s, e) for s, e in speech_turns if e - s >= 1.0]
    assert min(inside) > 0.6 and float(np.mean(inside)) > 0.8


def test_silence_and_faint_noise_are_not_speech():
    g = torch.Generator().manual_seed(0)
    silence, noise = torch.zeros(32000), 0.01 * torch.randn(32000, generator=g)
    mask, frame_lengths = ssl_vad_mask([silence, noise], aggressiveness=3)
    assert frame_lengths.tolist() == [99, 99]
    assert not bool(mask[0].any())
    assert float(mask[1].float().mean()) < 0.05


def per_sample_mapping(flags: torch.Tensor, frame_samples: int, num_samples: int) -> list[bool]:
    """The rule, sample by sample: speech samples in [320 j, 320 j + 400) >= 200."""
    per_sample = np.repeat(flags.numpy(), frame_samples)
    return [int(per_sample[320 * j:320 * j + 400].sum()) >= 200
            for j in range((num_samples - 400) // 320 + 1)]


@pytest.mark.parametrize("frame_samples", [160, 320, 480])
@pytest.mark.parametrize("num_samples", [400, 719, 720, 16000, 16123])
def test_vad_to_ssl_mapping(frame_samples, num_samples):
    g = torch.Generator().manual_seed(num_samples + frame_samples)
    flags = torch.rand(-(-num_samples // frame_samples), generator=g) < 0.5
    mapped = frames_to_ssl(flags, frame_samples, num_samples)
    assert mapped.shape == (ssl_num_frames(num_samples),)
    assert mapped.tolist() == per_sample_mapping(flags, frame_samples, num_samples)


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
def test_ssl_frame_count_matches_wavlm(sample_audio):
    transformers = pytest.importorskip("transformers")
    config = transformers.WavLMConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        num_buckets=16, max_bucket_distance=100, layerdrop=0.0, mask_time_prob=0.0)
    torch.manual_seed(0)
    model = transformers.WavLMModel(config).eval()
    for num_samples in (400, 719, 720, 16000, 16001, 40123):
        audio = sample_audio[160000:160000 + num_samples]
        mask, frame_lengths = ssl_vad_mask([audio])
        with torch.no_grad():
            frames = model(audio[None]).last_hidden_state.shape[1]
        assert ssl_num_frames(num_samples) == frames
        assert mask.shape == (1, frames) and frame_lengths.tolist() == [frames]


def test_batched_equals_per_utterance(sample_audio):
    pieces = [sample_audio[160000:200000], sample_audio[:16000], sample_audio[250000:250400]]
    mask, frame_lengths = ssl_vad_mask(pieces, frame_ms=20, aggressiveness=2)
    assert frame_lengths.tolist() == [ssl_num_frames(p.shape[0]) for p in pieces]
    assert mask.shape == (3, max(frame_lengths.tolist())) and mask.dtype == torch.bool
    padded = torch.nn.utils.rnn.pad_sequence(pieces, batch_first=True)
    lengths = torch.tensor([p.shape[0] for p in pieces])
    from_padded = ssl_vad_mask(padded, lengths, frame_ms=20, aggressiveness=2)
    assert torch.equal(from_padded[0], mask) and torch.equal(from_padded[1], frame_lengths)
    for row, piece, count in zip(mask, pieces, frame_lengths.tolist()):
        alone, _ = ssl_vad_mask([piece], frame_ms=20, aggressiveness=2)
        assert torch.equal(row[:count], alone[0]) and not bool(row[count:].any())
    assert bool(mask[0].any())


@pytest.mark.parametrize("rate", [8000, 32000, 48000])
def test_vad_runs_at_supported_rates(sample_audio, rate):
    audio = resample(sample_audio[150000:182000], 16000, rate)
    flags, used_rate = vad_frames(audio, rate, frame_ms=10)
    assert used_rate == rate and flags.shape == (-(-audio.shape[0] // (rate // 100)),)
    assert float(flags.float().mean()) > 0.5


def test_unsupported_rate_is_resampled(sample_audio):
    audio = resample(sample_audio[150000:182000], 16000, 44100)
    flags, used_rate = vad_frames(audio, 44100, frame_ms=30)
    assert used_rate == 16000 and flags.shape == (-(-32000 // 480),)
    mask, frame_lengths = ssl_vad_mask([audio], sample_rate=44100)
    assert frame_lengths.tolist() == [ssl_num_frames(32000)]
    direct, _ = ssl_vad_mask([sample_audio[150000:182000]])
    assert float((mask == direct).float().mean()) > 0.9


@pytest.mark.parametrize("call,pattern", [
    (lambda: ssl_vad_mask([torch.zeros(399)]), "399 samples at 16 kHz is shorter than one SSL"),
    (lambda: ssl_num_frames(399), "shorter than one SSL frame .400 samples"),
    (lambda: ssl_vad_mask([torch.zeros(800)], frame_ms=25), "frame_ms must be one of"),
    (lambda: ssl_vad_mask([torch.zeros(800)], frame_ms=30.0), "frame_ms must be one of"),
    (lambda: ssl_vad_mask([torch.zeros(800)], aggressiveness=4), "aggressiveness must be 0"),
    (lambda: ssl_vad_mask([torch.zeros(800)], aggressiveness=-1), "aggressiveness must be 0"),
    (lambda: ssl_vad_mask([torch.zeros(800)], aggressiveness=True), "aggressiveness must be 0"),
    (lambda: ssl_vad_mask([torch.zeros(800)], sample_rate=0), "sample_rate must be a positive"),
    (lambda: ssl_vad_mask([torch.full((800,), float("nan"))]), "NaN or infinite"),
    (lambda: ssl_vad_mask([torch.zeros(800), torch.zeros(0)]), "utterance 1 is empty"),
    (lambda: ssl_vad_mask([]), "empty batch"),
    (lambda: vad_frames(torch.zeros(2, 800)), "non-empty 1-D waveform"),
])
def test_bad_input(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
