"""WebRTC voice activity detection and its mask on self-supervised (SSL) model frames.

webrtcvad classifies frames of 10, 20 or 30 ms of 16-bit mono PCM at 8, 16, 32 or 48 kHz.
:func:`vad_frames` converts a float waveform in [-1, 1] to PCM16 once (clipping, rounding
x * 32767), resamples it to 16 kHz first when its rate is none of those four, zero-pads the
last partial frame to a whole frame, and classifies every frame (memoryview slices of one
bytes object; no per-frame copies).

SSL models (wav2vec 2.0, HuBERT, WavLM) take 16 kHz audio and emit one frame per 320 samples
(20 ms) with a receptive field of 400 samples (25 ms): frame j sees samples
``[320 j, 320 j + 400)`` and ``ssl_num_frames(N) = (N - 400) // 320 + 1``. :func:`ssl_vad_mask`
runs the VAD on the 16 kHz audio and marks SSL frame j as speech when at least half of those
400 samples (200 or more) lie in VAD frames classified as speech (the VAD frames covering its
receptive field, weighted by overlap; ties count as speech).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
import webrtcvad
from torch import Tensor

from fastser.audio._batch import WaveformBatch, as_padded
from fastser.audio.io import SAMPLE_RATE, check_sample_rate, resample

VAD_SAMPLE_RATES = (8000, 16000, 32000, 48000)
VAD_FRAME_MS = (10, 20, 30)
SSL_RECEPTIVE_FIELD = 400
SSL_STRIDE = 320


def ssl_num_frames(num_samples: int) -> int:
    """SSL frames of 16 kHz audio: (N - 400) // 320 + 1; ValueError below 400 samples."""
    if num_samples < SSL_RECEPTIVE_FIELD:
        raise ValueError(f"audio of {num_samples} samples is shorter than one SSL frame "
                         f"({SSL_RECEPTIVE_FIELD} samples = 25 ms at 16 kHz)")
    return (num_samples - SSL_RECEPTIVE_FIELD) // SSL_STRIDE + 1


def _check_vad_args(frame_ms: int, aggressiveness: int) -> None:
    if type(frame_ms) is not int or frame_ms not in VAD_FRAME_MS:
        raise ValueError(f"frame_ms must be one of {VAD_FRAME_MS} (webrtcvad), got {frame_ms}")
    if isinstance(aggressiveness, bool) or aggressiveness not in (0, 1, 2, 3):
        raise ValueError(f"aggressiveness must be 0, 1, 2 or 3, got {aggressiveness!r}")


def vad_frames(waveform: Tensor, sample_rate: int = SAMPLE_RATE, *, frame_ms: int = 30,
               aggressiveness: int = 3) -> Tuple[Tensor, int]:
    """Speech flags of consecutive VAD frames of a 1-D float waveform in [-1, 1].

    Returns (bool (ceil(N' / frame) ,), the rate the VAD ran at), where N' is the length at
    that rate (``sample_rate`` when webrtcvad supports it, else 16 kHz after resampling)."""
    _check_vad_args(frame_ms, aggressiveness)
    sample_rate = check_sample_rate(sample_rate)
    if waveform.dim() != 1 or waveform.shape[0] == 0:
        raise ValueError(f"VAD: expected a non-empty 1-D waveform, got shape "
                         f"{tuple(waveform.shape)}")
    if sample_rate not in VAD_SAMPLE_RATES:
        waveform = resample(waveform.float(), sample_rate, SAMPLE_RATE)
        sample_rate = SAMPLE_RATE
    frame_samples = sample_rate * frame_ms // 1000
    pcm = _pcm16(waveform, frame_samples)
    frame_bytes = 2 * frame_samples
    is_speech = webrtcvad.Vad(aggressiveness).is_speech
    flags = [is_speech(pcm[i:i + frame_bytes], sample_rate)
             for i in range(0, len(pcm), frame_bytes)]
    return torch.tensor(flags, dtype=torch.bool), sample_rate


def _pcm16(waveform: Tensor, frame_samples: int) -> memoryview:
    """Bytes of little-endian int16 PCM, round(clip(x, -1, 1) * 32767), zero-padded to a whole
    number of frames (one pass of in-place numpy ops; no per-frame work)."""
    samples = waveform.detach().to("cpu", torch.float32).numpy()
    if not np.isfinite(samples).all():
        raise ValueError("VAD: waveform contains NaN or infinite samples")
    scaled = np.clip(samples, -1.0, 1.0)
    scaled *= 32767.0
    np.rint(scaled, out=scaled)
    pcm = np.zeros(-(-samples.shape[0] // frame_samples) * frame_samples, dtype="<i2")
    pcm[:samples.shape[0]] = scaled
    return memoryview(pcm).cast("B")


def frames_to_ssl(flags: Tensor, frame_samples: int, num_samples: int) -> Tensor:
    """bool (ssl_num_frames(N),) from VAD flags (F,) of ``frame_samples`` each at 16 kHz:
    SSL frame j is speech when >= 200 of its samples [320 j, 320 j + 400) are in speech
    frames."""
    count = ssl_num_frames(num_samples)
    speech = flags.to(torch.long)
    # speech samples before sample t: frame_samples * (speech frames before t's frame)
    #                                  + (t mod frame_samples) * speech[t's frame]
    before = torch.cat([speech.new_zeros(1), torch.cumsum(speech, 0)])
    speech = torch.cat([speech, speech.new_zeros(1)])  # t == F * frame_samples is valid

    def speech_before(t: Tensor) -> Tensor:
        frame = torch.div(t, frame_samples, rounding_mode="floor")
        return frame_samples * before[frame] + (t - frame * frame_samples) * speech[frame]

    starts = torch.arange(count, dtype=torch.long) * SSL_STRIDE
    covered = speech_before(starts + SSL_RECEPTIVE_FIELD) - speech_before(starts)
    return 2 * covered >= SSL_RECEPTIVE_FIELD


def ssl_vad_mask(batch: WaveformBatch, lengths: Tensor | None = None, *,
                 sample_rate: int = SAMPLE_RATE, frame_ms: int = 30,
                 aggressiveness: int = 3) -> Tuple[Tensor, Tensor]:
    """VAD speech mask on SSL frames for a batch of utterances.

    ``batch``: a list of 1-D waveforms, or a padded (B, N) tensor with int64 ``lengths`` (B,).
    Audio at another rate is resampled to 16 kHz first (SSL frames are defined at 16 kHz).
    Returns (mask bool (B, max F), frame lengths int64 (B,)) with F = ssl_num_frames(length at
    16 kHz) and False past each frame length, on the batch's device. An utterance with no speech has an all-False
    row; a model that pools over speech frames must decide what to do with it."""
    _check_vad_args(frame_ms, aggressiveness)
    sample_rate = check_sample_rate(sample_rate)
    padded, lengths = as_padded(batch, lengths)
    waveforms = [row[:n] for row, n in zip(padded, lengths.tolist())]
    masks = []
    for index, waveform in enumerate(waveforms):
        if sample_rate != SAMPLE_RATE:
            waveform = resample(waveform.float(), sample_rate, SAMPLE_RATE)
        if waveform.shape[0] < SSL_RECEPTIVE_FIELD:
            raise ValueError(f"utterance {index}: {waveform.shape[0]} samples at 16 kHz is "
                             f"shorter than one SSL frame ({SSL_RECEPTIVE_FIELD} samples)")
        flags, _ = vad_frames(waveform, SAMPLE_RATE, frame_ms=frame_ms,
                              aggressiveness=aggressiveness)
        masks.append(frames_to_ssl(flags, SAMPLE_RATE * frame_ms // 1000,
                                   waveform.shape[0]))
    frame_lengths = torch.tensor([m.shape[0] for m in masks], dtype=torch.long)
    mask = torch.nn.utils.rnn.pad_sequence(masks, batch_first=True, padding_value=False)
    return mask.to(padded.device), frame_lengths.to(padded.device)
