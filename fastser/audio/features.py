"""Batched MFCC and MMTL log-power spectrogram features (torchaudio filterbanks, torch.fft).

Both are small ``nn.Module``s (buffers move with ``.to(device)``; both script with
``torch.jit.script``) plus functional helpers that cache one module per configuration.
Frames never reach past the audio (no centring or reflection padding): frame t covers samples
``[t*hop, t*hop + frame_length)``, so a padded batch gives each utterance exactly the frames it
would get alone, and

    num_frames(N) = (N - frame_length) // hop + 1      for N >= frame_length

(frame_length is ``n_fft`` for MFCC and ``win_length`` for the spectrogram). Shorter audio is
an error.

MFCC (defaults: 16 kHz, 40 coefficients, 25 ms Hann window = n_fft 400, 10 ms hop, 64 HTK
mel bands) equals ``torchaudio.transforms.MFCC(..., melkwargs={..., "center": False})`` on a
single utterance: power spectrum, mel filterbank, 10*log10 clamped at 1e-10 and at
``top_db`` below the utterance's maximum, orthonormal DCT-II. In a ragged batch the maximum is
taken over each utterance's own frames, and frames at or past its frame length are 0.

Log-power spectrogram (MMTL, Cai et al.): 40 ms Hamming window, 10 ms hop, DFT length 800,
the 200 bins below 4 kHz (20 Hz apart), log(power + 1e-10), normalised per segment to zero
mean and unit variance over its valid frames and bins (``(x - mean) / sqrt(var + eps)``, so a
silent segment gives zeros, not NaN), then trimmed or zero-padded to 300 frames (3 s).
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Tuple

import torch
import torchaudio
from torch import Tensor, nn

from fastser.audio.io import SAMPLE_RATE


def _frame_count(num_samples: Tensor, frame_length: int, hop: int) -> Tensor:
    return torch.div(num_samples - frame_length, hop, rounding_mode="floor") + 1


def _check_batch(waveform: Tensor, lengths: Optional[Tensor], frame_length: int,
                 name: str) -> Tuple[Tensor, Tensor]:
    """(B, N) float waveform and int64 (B,) lengths in [frame_length, N], with clear errors."""
    if not waveform.is_floating_point():
        raise ValueError(f"{name}: waveform must be a float tensor, got {waveform.dtype}")
    if waveform.dim() != 2:
        raise ValueError(f"{name}: waveform must be (B, N), got shape {list(waveform.shape)}")
    batch, num_samples = waveform.shape[0], waveform.shape[1]
    if lengths is None:
        if num_samples < frame_length:
            raise ValueError(f"{name}: audio of {num_samples} samples is shorter than one frame "
                             f"({frame_length} samples)")
        return waveform, torch.full((batch,), num_samples, dtype=torch.long,
                                    device=waveform.device)
    if lengths.dim() != 1 or lengths.shape[0] != batch:
        raise ValueError(f"{name}: lengths must be ({batch},), got shape {list(lengths.shape)}")
    if lengths.dtype != torch.long:
        raise ValueError(f"{name}: lengths must be int64, got {lengths.dtype}")
    if lengths.device != waveform.device:
        raise ValueError(f"{name}: lengths on {lengths.device}, waveform on {waveform.device}")
    if batch > 0:
        shortest, longest = int(lengths.min()), int(lengths.max())
        if shortest < frame_length:
            raise ValueError(f"{name}: a length of {shortest} samples is shorter than one frame "
                             f"({frame_length} samples)")
        if longest > num_samples:
            raise ValueError(f"{name}: a length of {longest} exceeds the padded size "
                             f"{num_samples}")
    return waveform, lengths


def _power(spectrum: Tensor) -> Tensor:
    """|X|^2 of a complex tensor, as re*re + im*im (several times faster than abs().pow(2))."""
    real, imag = spectrum.real, spectrum.imag
    return torch.addcmul(real * real, imag, imag)


def _valid_frames(frame_lengths: Tensor, num_frames: int) -> Tensor:
    """bool (B, num_frames): True at frames before each frame length."""
    return torch.arange(num_frames, device=frame_lengths.device)[None, :] < frame_lengths[:, None]


class _FrameFeatures(nn.Module):
    """What MFCC and LogSpectrogram share: the frame count and the (N,) / (B, N) entry point.
    Subclasses set ``frame_length`` (samples per analysis frame), ``hop_length`` and ``name``
    and define ``ragged``."""

    def num_frames(self, num_samples: int) -> int:
        """(num_samples - frame_length) // hop_length + 1; ValueError below one frame."""
        if num_samples < self.frame_length:
            raise ValueError(f"{self.name}: {num_samples} samples is shorter than one frame "
                             f"({self.frame_length} samples)")
        return (num_samples - self.frame_length) // self.hop_length + 1

    def forward(self, waveform: Tensor) -> Tensor:
        if waveform.dim() == 1:
            return self.ragged(waveform.unsqueeze(0), None)[0].squeeze(0)
        return self.ragged(waveform, None)[0]


class MFCC(_FrameFeatures):
    """MFCCs of a batch: (B, N) -> (B, num_frames(N), n_mfcc); (N,) -> (num_frames(N), n_mfcc).

    :meth:`ragged` takes padded audio and sample lengths (B,) and also returns frame lengths."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, n_mfcc: int = 40, *, win_ms: float = 25.0,
                 hop_ms: float = 10.0, n_fft: Optional[int] = None, n_mels: int = 64,
                 f_min: float = 0.0, f_max: Optional[float] = None,
                 top_db: Optional[float] = 80.0) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.win_length = _ms_to_samples(win_ms, sample_rate, "win_ms")
        self.hop_length = _ms_to_samples(hop_ms, sample_rate, "hop_ms")
        self.n_fft = self.win_length if n_fft is None else int(n_fft)
        self.frame_length, self.name = self.n_fft, "MFCC"
        if self.n_fft < self.win_length:
            raise ValueError(f"MFCC: n_fft ({self.n_fft}) must be >= the window "
                             f"({self.win_length} samples)")
        if not 0 < n_mfcc <= n_mels:
            raise ValueError(f"MFCC: need 0 < n_mfcc <= n_mels, got n_mfcc={n_mfcc}, "
                             f"n_mels={n_mels}")
        self.n_mfcc, self.n_mels = int(n_mfcc), int(n_mels)
        self.top_db = -1.0 if top_db is None else float(top_db)  # < 0: no top_db clamp
        left = (self.n_fft - self.win_length) // 2  # the window sits centred in the frame
        window = torch.zeros(self.n_fft)
        window[left:left + self.win_length] = torch.hann_window(self.win_length)
        self.register_buffer("window", window, persistent=False)
        fbank = torchaudio.functional.melscale_fbanks(
            self.n_fft // 2 + 1, f_min, sample_rate / 2 if f_max is None else f_max, n_mels,
            sample_rate, norm=None, mel_scale="htk")
        self.register_buffer("fbank", fbank, persistent=False)  # (n_freqs, n_mels)
        dct = torchaudio.functional.create_dct(n_mfcc, n_mels, "ortho")
        self.register_buffer("dct", dct, persistent=False)  # (n_mels, n_mfcc)

    @torch.jit.export
    def ragged(self, waveform: Tensor, lengths: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        """(B, N) padded audio, int64 (B,) lengths (None: all N) -> MFCC (B, F, n_mfcc) with
        F = num_frames(N) and zeros at frames >= frame_lengths, and frame_lengths (B,)."""
        waveform, lengths = _check_batch(waveform, lengths, self.n_fft, "MFCC")
        frames = waveform.float().unfold(1, self.n_fft, self.hop_length)  # (B, F, n_fft)
        power = _power(torch.fft.rfft(frames * self.window, dim=-1))
        mel = torch.matmul(power, self.fbank)  # (B, F, n_mels)
        db = 10.0 * torch.log10(mel.clamp(min=1e-10))
        frame_lengths = _frame_count(lengths, self.n_fft, self.hop_length)
        valid = _valid_frames(frame_lengths, db.shape[1])
        if self.top_db >= 0:
            peak = db.masked_fill(~valid[:, :, None], float("-inf")).amax(dim=(1, 2))
            db = torch.maximum(db, (peak - self.top_db)[:, None, None])
        mfcc = torch.matmul(db, self.dct)
        return mfcc.masked_fill(~valid[:, :, None], 0.0), frame_lengths


class LogSpectrogram(_FrameFeatures):
    """MMTL log-power spectrogram: (B, N) -> (B, max_frames, n_bins); (N,) -> (max_frames,
    n_bins). Defaults: (B, 300, 200). :meth:`ragged` takes sample lengths (B,) and also
    returns frame lengths (after trimming to max_frames)."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, *, win_ms: float = 40.0, hop_ms: float = 10.0,
                 n_fft: int = 800, max_freq: float = 4000.0, max_frames: int = 300,
                 eps: float = 1e-5) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.win_length = _ms_to_samples(win_ms, sample_rate, "win_ms")
        self.hop_length = _ms_to_samples(hop_ms, sample_rate, "hop_ms")
        self.n_fft = int(n_fft)
        self.frame_length, self.name = self.win_length, "LogSpectrogram"
        if self.n_fft < self.win_length:
            raise ValueError(f"LogSpectrogram: n_fft ({self.n_fft}) must be >= the window "
                             f"({self.win_length} samples)")
        self.n_bins = int(math.floor(max_freq * self.n_fft / sample_rate))
        if not 0 < self.n_bins <= self.n_fft // 2 + 1:
            raise ValueError(f"LogSpectrogram: max_freq {max_freq} Hz gives {self.n_bins} bins; "
                             f"need 1..{self.n_fft // 2 + 1}")
        if max_frames < 1:
            raise ValueError(f"LogSpectrogram: max_frames must be >= 1, got {max_frames}")
        self.max_frames = int(max_frames)
        self.eps = float(eps)
        self.register_buffer("window", torch.hamming_window(self.win_length), persistent=False)

    @torch.jit.export
    def ragged(self, waveform: Tensor, lengths: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        """(B, N) padded audio, int64 (B,) lengths (None: all N) -> normalised log power
        (B, max_frames, n_bins) with zeros at frames >= frame_lengths, and frame_lengths (B,)
        = min(num_frames(lengths), max_frames)."""
        waveform, lengths = _check_batch(waveform, lengths, self.win_length, "LogSpectrogram")
        kept = min(self.max_frames, (waveform.shape[1] - self.win_length) // self.hop_length + 1)
        span = (kept - 1) * self.hop_length + self.win_length
        frames = waveform[:, :span].float().unfold(1, self.win_length, self.hop_length)
        spectrum = torch.fft.rfft(frames * self.window, n=self.n_fft, dim=-1)[..., :self.n_bins]
        logpower = torch.log(_power(spectrum) + 1e-10)  # (B, kept, n_bins)
        frame_lengths = _frame_count(lengths, self.win_length, self.hop_length)
        frame_lengths = frame_lengths.clamp(max=self.max_frames)
        valid = _valid_frames(frame_lengths, kept)[:, :, None]
        count = (frame_lengths * self.n_bins).to(logpower.dtype)[:, None, None]
        logpower = logpower.masked_fill(~valid, 0.0)
        mean = logpower.sum(dim=(1, 2), keepdim=True) / count
        centred = (logpower - mean).masked_fill(~valid, 0.0)
        variance = centred.pow(2).sum(dim=(1, 2), keepdim=True) / count
        normalised = centred / torch.sqrt(variance + self.eps)
        if kept < self.max_frames:
            normalised = nn.functional.pad(normalised, [0, 0, 0, self.max_frames - kept])
        return normalised, frame_lengths


def _ms_to_samples(ms: float, sample_rate: int, name: str) -> int:
    samples = int(round(ms * sample_rate / 1000.0))
    if samples < 1:
        raise ValueError(f"{name} must give at least one sample at {sample_rate} Hz, got {ms}")
    return samples


@functools.lru_cache(maxsize=16)
def _cached(module_type: type, device: torch.device, kwargs: tuple) -> nn.Module:
    return module_type(**dict(kwargs)).to(device)


def mfcc(waveform: Tensor, lengths: Optional[Tensor] = None, **config) -> Tuple[Tensor, Tensor]:
    """Functional :class:`MFCC` (keyword ``config`` as its constructor): (B, N) padded audio
    and optional lengths -> (features (B, F, n_mfcc), frame_lengths (B,))."""
    module = _cached(MFCC, waveform.device, tuple(sorted(config.items())))
    return module.ragged(waveform, lengths)


def log_spectrogram(waveform: Tensor, lengths: Optional[Tensor] = None,
                    **config) -> Tuple[Tensor, Tensor]:
    """Functional :class:`LogSpectrogram`: (B, N) padded audio and optional lengths ->
    (features (B, max_frames, n_bins), frame_lengths (B,))."""
    module = _cached(LogSpectrogram, waveform.device, tuple(sorted(config.items())))
    return module.ragged(waveform, lengths)
