"""Reading, validating, resampling and writing audio.

Every waveform that enters fastser passes through :func:`load_audio` (files) or
:func:`validate_waveform` (arrays and tensors): both return a mono float32 tensor (N,) at the
requested sample rate, reject what cannot be used with a clear error and warn about what is
usable but suspicious (:class:`AudioWarning`).

- Channels are averaged to mono; resampling uses torchaudio's windowed-sinc resampler, whose
  kernel is built once per (original rate, new rate) pair and cached.
- :class:`AudioSpan` names a file or a part [start, end) seconds of it (a segment of a longer
  recording); ``load_audio(path, start=..., end=...)`` reads only that part.
- Errors (:class:`~fastser.errors.AudioError` and the path errors of :mod:`fastser.errors`,
  all user errors): a missing file (also a ``FileNotFoundError``), an empty file, a file
  soundfile cannot decode (naming the file and soundfile's message), zero-length audio, any NaN
  or infinite sample (giving how many and the first position; NaN is never passed on), a
  sample rate that is not a positive integer, a wrong rank; a wrong dtype is a TypeError.
- Bounds, checked from the file's header before anything is decoded (so a small file cannot
  make fastser allocate gigabytes): a sample rate in [``MIN_SAMPLE_RATE``, ``MAX_SAMPLE_RATE``]
  (also for in-memory waveforms) and a duration of at most :func:`max_audio_seconds` (3 hours
  unless ``$FASTSER_MAX_AUDIO_SECONDS`` or ``max_seconds=`` says otherwise). Files are read only
  when they are regular files (a named pipe would block).
- Warnings (:class:`AudioWarning`): clipping, i.e. any sample outside [-1, 1] or at least
  ``CLIP_FRACTION`` of the samples at ``|x| >= CLIP_LEVEL``; near silence, i.e. a peak
  amplitude below ``SILENCE_PEAK`` (-60 dBFS); a truncated file, i.e. fewer samples than its
  header declares (a copy or download cut short: the samples that are there are used).
"""

from __future__ import annotations

import functools
import os
import stat
import warnings
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import soundfile
import torch
import torchaudio

from fastser.errors import AudioError, MissingPathError, NotAFileError, SettingsError

#: The sample rate every fastser method works at: audio is read and resampled to it.
SAMPLE_RATE = 16000
CLIP_LEVEL = 0.999
CLIP_FRACTION = 1e-3
SILENCE_PEAK = 1e-3  # -60 dBFS
#: The sample rates fastser reads (a header outside them is a damaged or hostile file).
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384000
#: The longest audio file fastser decodes, unless configured (environment variable
#: MAX_SECONDS_ENV or the ``max_seconds`` argument of :func:`load_audio`).
DEFAULT_MAX_SECONDS = 3 * 3600.0
MAX_SECONDS_ENV = "FASTSER_MAX_AUDIO_SECONDS"
#: How far (seconds) a segment's end may lie past the end of its file (annotation rounding).
END_TOLERANCE = 0.01

# (name accepted by save_audio) -> soundfile subtype
ENCODINGS = {"float32": "FLOAT", "pcm16": "PCM_16", "vorbis": "VORBIS"}
# file extension -> (soundfile format, default encoding)
FORMATS = {".wav": ("WAV", "float32"), ".flac": ("FLAC", "pcm16"), ".ogg": ("OGG", "vorbis")}

Waveform = Union[torch.Tensor, np.ndarray]
PathLike = Union[str, "os.PathLike[str]"]


class AudioWarning(UserWarning):
    """Audio that can be used but is probably not what was meant (clipped, near silent)."""


def check_sample_rate(sample_rate: int, name: str = "sample_rate") -> int:
    """``sample_rate`` as an int; ValueError unless it is a positive integer."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        if not (isinstance(sample_rate, float) and sample_rate.is_integer()):
            raise AudioError(f"{name} must be a positive integer (Hz), got {sample_rate!r}")
    if sample_rate <= 0:
        raise AudioError(f"{name} must be a positive integer (Hz), got {sample_rate!r}")
    return int(sample_rate)


def check_rate_range(sample_rate: int, name: str) -> None:
    """AudioError unless ``sample_rate`` lies in [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE]."""
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"{name}: sample rate {sample_rate} Hz is outside the rates fastser "
                         f"reads ({MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz)")


def max_audio_seconds() -> float:
    """The longest audio fastser decodes: ``$FASTSER_MAX_AUDIO_SECONDS`` when set, else
    DEFAULT_MAX_SECONDS (3 hours)."""
    text = os.environ.get(MAX_SECONDS_ENV)
    if text is None or not text.strip():
        return DEFAULT_MAX_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise SettingsError(f"{MAX_SECONDS_ENV} must be a positive number of seconds, got "
                            f"{text!r}")
    return value


@functools.lru_cache(maxsize=64)
def _resampler(orig_rate: int, new_rate: int, device: torch.device) -> torchaudio.transforms.Resample:
    return torchaudio.transforms.Resample(orig_rate, new_rate).to(device)


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Resample float32 (..., N) from ``orig_rate`` to ``new_rate`` Hz (same device).

    The output has ``ceil(N * new_rate / orig_rate)`` samples (torchaudio's convention)."""
    orig_rate = check_sample_rate(orig_rate, "orig_rate")
    new_rate = check_sample_rate(new_rate, "new_rate")
    if orig_rate == new_rate:
        return waveform
    return _resampler(orig_rate, new_rate, waveform.device)(waveform)


def _as_float_tensor(waveform: Waveform, name: str) -> torch.Tensor:
    if isinstance(waveform, np.ndarray):
        if waveform.dtype == np.int16:
            return torch.from_numpy(waveform.astype(np.float32) / 32768.0)
        if waveform.dtype == np.int32:
            return torch.from_numpy((waveform / 2147483648.0).astype(np.float32))
        if not np.issubdtype(waveform.dtype, np.floating):
            raise TypeError(f"{name}: expected a float, int16 or int32 array, got dtype "
                            f"{waveform.dtype}")
        return torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
    if isinstance(waveform, torch.Tensor):
        if waveform.dtype == torch.int16:
            return waveform.float() / 32768.0
        if waveform.dtype == torch.int32:
            return (waveform.double() / 2147483648.0).float()
        if not waveform.is_floating_point():
            raise TypeError(f"{name}: expected a float, int16 or int32 tensor, got dtype "
                            f"{waveform.dtype}")
        return waveform.detach().float()
    raise TypeError(f"{name}: expected a torch.Tensor or numpy.ndarray, got "
                    f"{type(waveform).__name__}")


def _check_finite(samples: torch.Tensor, name: str, sample_rate: int) -> None:
    finite = torch.isfinite(samples)
    if bool(finite.all()):
        return
    bad = ~finite
    count = int(bad.sum())
    first = int(bad.reshape(bad.shape[0], -1).any(0).nonzero()[0]) if samples.dim() == 2 \
        else int(bad.nonzero()[0])
    kind = "NaN" if bool(torch.isnan(samples).any()) else "infinite values"
    if count == samples.numel():
        raise AudioError(f"{name}: every sample is NaN or infinite ({count} samples)")
    raise AudioError(f"{name}: contains {kind} ({count} of {samples.numel()} samples are not "
                     f"finite; the first at sample {first}, {first / sample_rate:.3f} s)")


def _warn_if_suspicious(samples: torch.Tensor, name: str) -> None:
    magnitude = samples.abs()
    peak = float(magnitude.max())
    clipped = int((magnitude >= CLIP_LEVEL).sum())
    if peak > 1.0 or clipped >= CLIP_FRACTION * samples.numel():
        warnings.warn(f"{name}: audio looks clipped (peak {peak:.4g}; {clipped} of "
                      f"{samples.numel()} samples at |x| >= {CLIP_LEVEL})", AudioWarning,
                      stacklevel=3)
    elif peak < SILENCE_PEAK:
        warnings.warn(f"{name}: audio is near silent (peak amplitude {peak:.3g}, below "
                      f"{SILENCE_PEAK} = -60 dBFS)", AudioWarning, stacklevel=3)


def validate_waveform(waveform: Waveform, sample_rate: int,
                      target_rate: int = SAMPLE_RATE, *, name: str = "waveform",
                      warn: bool = True) -> torch.Tensor:
    """Mono float32 (N',) at ``target_rate`` from an in-memory waveform.

    ``waveform``: tensor or numpy array, (N,) or (channels, N); float, or int16/int32 PCM
    (scaled to [-1, 1)). Channels are averaged. Raises on zero length, NaN/inf, a bad rate or
    shape; warns (``warn=True``) on clipping or near silence. Stays on the tensor's device."""
    sample_rate = check_sample_rate(sample_rate)
    check_rate_range(sample_rate, name)
    target_rate = check_sample_rate(target_rate, "target_rate")
    samples = _as_float_tensor(waveform, name)
    if samples.dim() not in (1, 2):
        raise AudioError(f"{name}: expected shape (N,) or (channels, N), got "
                         f"{tuple(samples.shape)}")
    if samples.dim() == 2 and samples.shape[0] > samples.shape[1]:
        raise AudioError(f"{name}: expected (channels, N), got {tuple(samples.shape)}, which has "
                         f"more channels than samples; transpose an (N, channels) array first")
    if samples.numel() == 0:
        raise AudioError(f"{name}: zero-length audio (shape {tuple(samples.shape)})")
    _check_finite(samples, name, sample_rate)
    if warn:
        _warn_if_suspicious(samples, name)
    mono = samples.mean(0) if samples.dim() == 2 else samples
    return resample(mono.contiguous(), sample_rate, target_rate)


def load_audio(path: PathLike, target_rate: int = SAMPLE_RATE, *, start: float | None = None,
               end: float | None = None, warn: bool = True,
               max_seconds: float | None = None) -> torch.Tensor:
    """Read a wav/flac/ogg (anything libsndfile decodes) file as mono float32 (N,) at
    ``target_rate`` Hz, with the checks of :func:`validate_waveform`.

    ``start``/``end``: read only the part [start, end) seconds of the file (a segment of a
    longer recording; None: its start / its end); AudioError for a part outside the file.
    Before decoding, the header's sample rate must lie in [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE]
    and the part read be at most ``max_seconds`` long (default :func:`max_audio_seconds`); a
    file holding fewer samples than its header declares gives an AudioWarning."""
    target_rate = check_sample_rate(target_rate, "target_rate")
    path = os.fspath(path)
    name = str(AudioSpan(path, start, end))
    _check_audio_file(path)
    limit = max_audio_seconds() if max_seconds is None else max_seconds
    try:
        with soundfile.SoundFile(path) as file:
            sample_rate, frames, encoding = file.samplerate, file.frames, file.format
            check_rate_range(sample_rate, path)
            first, stop = _frame_range(frames, sample_rate, start, end, name)
            if (stop - first) / sample_rate > limit:
                raise AudioError(
                    f"{name}: {(stop - first) / sample_rate:.1f} s of audio ({stop - first} "
                    f"samples at {sample_rate} Hz) is longer than the {limit:g} s fastser reads; "
                    f"cut it, or raise the limit ({MAX_SECONDS_ENV} or max_seconds)")
            file.seek(first)
            data = file.read(stop - first, dtype="float32", always_2d=True)
    except RuntimeError as error:  # soundfile.LibsndfileError and its parents
        raise AudioError(f"cannot decode audio file {path}: {error}") from error
    if data.shape[0] == 0:
        raise AudioError(f"audio file has zero length (no samples): {name}")
    declared = frames if encoding == "FLAC" else _wav_declared_frames(path)
    if warn and declared is not None and frames < declared:
        warnings.warn(f"{path}: truncated file: its header declares {declared} samples "
                      f"({declared / sample_rate:.3f} s), it holds {frames} "
                      f"({frames / sample_rate:.3f} s)", AudioWarning, stacklevel=2)
    return validate_waveform(data.T, sample_rate, target_rate, name=name, warn=warn)


def _frame_range(frames: int, sample_rate: int, start: float | None, end: float | None,
                 name: str) -> tuple[int, int]:
    """[first, stop) frames of the part [start, end) seconds of a file of ``frames`` frames
    (an end at most ``END_TOLERANCE`` seconds past the file is clipped to it)."""
    first = 0 if start is None else round(start * sample_rate)
    stop = frames if end is None else round(end * sample_rate)
    length = frames / sample_rate
    if first >= frames and frames > 0:
        raise AudioError(f"{name}: the segment starts at {start} s, past the end of the "
                         f"{length:.3f} s file")
    if stop > frames + max(1, round(END_TOLERANCE * sample_rate)):
        raise AudioError(f"{name}: the segment ends at {end} s, past the end of the "
                         f"{length:.3f} s file")
    return first, min(stop, frames)


@dataclass(frozen=True)
class AudioSpan:
    """An audio file, or the part [start, end) seconds of it (None: its start / its end)."""

    path: str
    start: float | None = None
    end: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", os.fspath(self.path))

    def load(self, target_rate: int = SAMPLE_RATE, *, warn: bool = True) -> torch.Tensor:
        """Mono float32 (N,) at ``target_rate`` (:func:`load_audio` of the part)."""
        return load_audio(self.path, target_rate, start=self.start, end=self.end, warn=warn)

    def seconds(self) -> float:
        """The duration of the part, from the file's header (nothing decoded)."""
        if not os.path.isfile(self.path):
            raise MissingPathError(f"audio file not found: {self.path}")
        try:
            info = soundfile.info(self.path)
        except RuntimeError as error:
            raise AudioError(f"cannot read the audio file header of {self.path}: "
                             f"{error}") from error
        length = info.frames / info.samplerate
        return max(0.0, min(length, self.end if self.end is not None else length)
                   - (self.start or 0.0))

    def identity(self) -> list[Any]:
        """[absolute path, size, modification time in ns, start, end]: what tells this audio
        apart in a cache (segments of one file differ by their times)."""
        resolved = os.path.realpath(self.path)
        status = os.stat(resolved)
        return [resolved, status.st_size, status.st_mtime_ns, self.start, self.end]

    def __str__(self) -> str:
        if self.start is None and self.end is None:
            return self.path
        start = "start" if self.start is None else f"{self.start:g}"
        end = "end" if self.end is None else f"{self.end:g}"
        return f"{self.path} [{start}-{end} s]"


def _check_audio_file(path: str) -> None:
    """Path errors unless ``path`` is a non-empty regular file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise MissingPathError(f"audio file not found: {path}") from None
    if stat.S_ISDIR(mode):
        raise NotAFileError(f"expected an audio file, got a directory: {path}")
    if not stat.S_ISREG(mode):
        raise AudioError(f"{path} is not a regular file (a named pipe or device); fastser reads "
                         "audio from files")
    if os.path.getsize(path) == 0:
        raise AudioError(f"audio file is empty (0 bytes): {path}")


def _wav_declared_frames(path: str) -> int | None:
    """The frames a RIFF/WAVE file's header declares (its data chunk size over the block
    size), which libsndfile silently clips to what the file holds; None for other files and
    for streaming headers that leave the size open."""
    with open(path, "rb") as file:
        head = file.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block = None
        for _ in range(64):  # chunks before the data chunk (fmt, fact, LIST, ...)
            chunk = file.read(8)
            if len(chunk) < 8:
                return None
            name, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if name == b"data":
                if not block or size in (0, 0xFFFFFFFF):
                    return None
                return size // block
            if name == b"fmt ":
                fmt = file.read(size)
                block = int.from_bytes(fmt[12:14], "little") if len(fmt) >= 14 else None
                file.seek(size & 1, os.SEEK_CUR)
            else:
                file.seek(size + (size & 1), os.SEEK_CUR)
    return None


def save_audio(path: PathLike, waveform: Waveform, sample_rate: int, *,
               encoding: str | None = None) -> None:
    """Write (N,) or (channels, N) float audio in [-1, 1] to ``path`` (.wav, .flac or .ogg).

    ``encoding``: "float32" (wav only), "pcm16" (wav, flac) or "vorbis" (ogg); None takes the
    format's default (wav: float32, flac: pcm16, ogg: vorbis). PCM16 stores round(x * 32768)
    clipped to [-32768, 32767] (the scale :func:`load_audio` divides by), warning with an
    :class:`AudioWarning` when samples lie outside [-1, 1]."""
    path = os.fspath(path)
    sample_rate = check_sample_rate(sample_rate)
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMATS:
        raise ValueError(f"save_audio: unsupported file extension {extension!r} in {path}; "
                         f"use one of {sorted(FORMATS)}")
    file_format, default_encoding = FORMATS[extension]
    encoding = default_encoding if encoding is None else encoding
    if encoding not in ENCODINGS:
        raise ValueError(f"save_audio: unknown encoding {encoding!r}; use one of "
                         f"{sorted(ENCODINGS)}")
    subtype = ENCODINGS[encoding]
    if not soundfile.check_format(file_format, subtype):
        raise ValueError(f"save_audio: {extension} files cannot hold {encoding} samples")
    samples = _as_float_tensor(waveform, path)
    if samples.dim() not in (1, 2) or samples.numel() == 0:
        raise ValueError(f"save_audio: expected non-empty (N,) or (channels, N) audio, got "
                         f"shape {tuple(samples.shape)}")
    _check_finite(samples, path, sample_rate)
    data = samples.cpu().numpy()
    data = data.T if data.ndim == 2 else data
    if subtype == "PCM_16":
        if np.abs(data).max() > 1.0:
            warnings.warn(f"save_audio: samples outside [-1, 1] clipped when writing PCM16 to "
                          f"{path}", AudioWarning, stacklevel=2)
        data = np.clip(np.round(data * 32768.0), -32768, 32767).astype(np.int16)
    soundfile.write(path, data, sample_rate, format=file_format, subtype=subtype)
