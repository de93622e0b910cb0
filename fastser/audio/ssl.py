"""Self-supervised speech front ends (WavLM, HuBERT, wav2vec 2.0) through ``transformers``,
and a disk cache of their features for a corpus.

A front end is built from pretrained weights (:func:`load_ssl_model`: a local directory, never
downloaded, or a model name that ``transformers`` loads from its cache or, with network access, the
hub) or from a configuration with random weights (:func:`build_ssl_model`). It takes 16 kHz
waveforms, padded (B, N) with int64 sample lengths (B,), and returns frame features (B, F, D) with
frame lengths (B,), zero past each length; or every layer (B, F, L, D) for a learned softmax-
weighted sum (:class:`WeightedLayerSum`) or for caching.

Frames: the convolutional feature encoder (kernels k_i, strides s_i) gives
``(N - R) // S + 1`` frames, R = 1 + sum_i (k_i - 1) * prod_{j<i} s_j its receptive field and
S = prod_i s_i its stride (nested floors of each layer's (L - k) // s + 1 collapse to this). The
standard stack (kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2) has R = 400 and S = 320, the
frames of :func:`fastser.audio.vad.ssl_num_frames` on which VAD masks are defined; a stack
with other R or S gives frames that VAD masks do not align with
(:meth:`SSLFrontEnd.check_vad_alignment` says so).

Padding: with ``feat_extract_norm="layer"`` (large models, and the configs fastser builds)
every frame is normalised on its own and the transformer honours the attention mask, so a
padded batch gives each utterance's unpadded features (to rounding). With
``feat_extract_norm="group"`` (the base checkpoints) the first convolution is normalised over
the whole utterance, padding included, so these models run utterance by utterance.

The ``transformers`` models are not TorchScript-scriptable (their configuration classes have
no retrievable source); models built on a front end export their head over SSL features.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from fastser.audio._batch import WaveformBatch, as_padded
from fastser.audio.io import SAMPLE_RATE, AudioSpan, check_sample_rate, resample
from fastser.audio.vad import (SSL_RECEPTIVE_FIELD, SSL_STRIDE, _check_vad_args, frames_to_ssl,
                               vad_frames)
from fastser.errors import AudioError, MissingPathError, UserError

# kind -> (transformers config class, model class, config.model_type)
SSL_KINDS = {
    "wavlm": ("WavLMConfig", "WavLMModel", "wavlm"),
    "hubert": ("HubertConfig", "HubertModel", "hubert"),
    "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model", "wav2vec2"),
}
LAYER_MODES = ("last", "weighted")
#: What the feature cache reads: a file path or a part of a file.
AudioSource = str | os.PathLike | AudioSpan
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ImportError("SSL front ends need the `transformers` package: "
                          "pip install 'fastser[ssl]'") from None
    return transformers


def _classes(kind: str):
    if kind not in SSL_KINDS:
        raise UserError(f"unknown SSL model kind {kind!r}; choose one of {sorted(SSL_KINDS)}")
    transformers = _transformers()
    config_name, model_name, _ = SSL_KINDS[kind]
    return getattr(transformers, config_name), getattr(transformers, model_name)


def build_ssl_model(kind: str, config: dict[str, Any] | None = None, *, seed: int = 0) -> nn.Module:
    """A ``transformers`` SSL model with random weights drawn from ``seed`` (the global RNG is
    left untouched), from configuration keyword arguments (the class defaults for the rest)."""
    config_cls, model_cls = _classes(kind)
    hf_config = config_cls(**(config or {}))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(hf_config)
    return model.eval()


def load_ssl_model(source: str | os.PathLike, kind: str | None = None,
                   overrides: dict[str, Any] | None = None) -> nn.Module:
    """A pretrained SSL model: from a local directory written by ``save_pretrained``
    (config.json and the weights; nothing is downloaded), or, for a model name such as
    ``microsoft/wavlm-large`` (not an existing path, not starting with ``/``, ``.`` or ``~``),
    through ``transformers``' ``from_pretrained`` (its cache, or a download where the machine
    has network access); a UserError naming the model when neither works. ``kind``
    (optional) must match the model type; ``overrides`` replace configuration values (e.g.
    layerdrop)."""
    if is_model_name(source):
        return _load_named_model(str(source), kind, overrides)
    folder = Path(source)
    if not folder.is_dir():
        raise MissingPathError(f"SSL weights: {folder} is not a directory (expected a local "
                                "folder written by save_pretrained; nothing is downloaded for "
                                "a path)")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise MissingPathError(f"SSL weights: {folder} has no config.json")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise MissingPathError(f"SSL weights: {folder} has no weights file (one of "
                                f"{', '.join(WEIGHT_FILES)})")
    try:
        model_type = json.loads(config_file.read_text()).get("model_type")
    except json.JSONDecodeError as error:
        raise UserError(f"SSL weights: {config_file} is not valid JSON ({error.msg})") from None
    _, model_cls = _classes(_kind_of(model_type, str(folder), kind))
    return model_cls.from_pretrained(str(folder), local_files_only=True,
                                     **(overrides or {})).eval()


def is_model_name(source: str | os.PathLike) -> bool:
    """Whether ``source`` names a model for ``transformers`` rather than a local path."""
    text = os.fspath(source)
    return (isinstance(source, str) and not Path(text).exists()
            and not text.startswith(("/", ".", "~")))


def _kind_of(model_type: str | None, where: str, kind: str | None) -> str:
    """The fastser kind of a ``model_type``; UserError for unsupported or unexpected ones."""
    known = {entry[2]: name for name, entry in SSL_KINDS.items()}
    if model_type not in known:
        raise UserError(f"SSL weights: {where} holds a {model_type!r} model; supported: "
                         f"{sorted(known)}")
    if kind is not None and known[model_type] != kind:
        raise UserError(f"SSL weights: {where} holds a {model_type!r} model, not {kind!r}")
    return known[model_type]


def _load_named_model(name: str, kind: str | None,
                      overrides: dict[str, Any] | None) -> nn.Module:
    transformers = _transformers()
    try:
        config = transformers.AutoConfig.from_pretrained(name)
        _, model_cls = _classes(_kind_of(config.model_type, name, kind))
        return model_cls.from_pretrained(name, **(overrides or {})).eval()
    except (OSError, ValueError) as error:
        if isinstance(error, UserError):
            raise
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"SSL model {name!r}: not a local folder, and transformers could not "
                        f"load it by name ({reason}); without network access, give a folder "
                        f"written by save_pretrained") from None


def _normalize_default(path: str | os.PathLike) -> bool:
    """do_normalize of the model's preprocessor configuration (False when absent): the
    directory's preprocessor_config.json, or the named model's feature extractor."""
    if is_model_name(path):
        try:
            extractor = _transformers().AutoFeatureExtractor.from_pretrained(str(path))
        except (OSError, ValueError):
            return False
        return bool(getattr(extractor, "do_normalize", False))
    file = Path(path) / "preprocessor_config.json"
    if not file.is_file():
        return False
    return bool(json.loads(file.read_text()).get("do_normalize", False))


class WeightedLayerSum(nn.Module):
    """Σ_l softmax(w)_l · x[:, :, l]: (B, F, L, D) -> (B, F, D); w starts at zeros (the mean)."""

    def __init__(self, num_layers: int) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"WeightedLayerSum: num_layers must be >= 1, got {num_layers}")
        self.logits = nn.Parameter(torch.zeros(num_layers))

    def forward(self, layers: Tensor) -> Tensor:
        if layers.dim() != 4 or layers.shape[2] != self.logits.shape[0]:
            raise ValueError(f"WeightedLayerSum: expected (B, F, {self.logits.shape[0]}, D) "
                             f"layer outputs, got {list(layers.shape)}")
        weights = torch.softmax(self.logits, dim=0).to(layers.dtype)
        return torch.einsum("bfld,l->bfd", layers, weights)


class SSLFrontEnd(nn.Module):
    """16 kHz waveforms -> SSL frame features.

    layer: "last" (the last hidden state) or "weighted" (a learned softmax-weighted sum of
    every hidden state: the feature projection's output and each transformer layer's).
    frozen: the SSL model's weights take no gradient and it stays in eval mode (no dropout,
    layer drop or time masking) even when the front end is trained; else it is fine-tuned.
    normalize: zero-mean unit-variance per utterance before the model (what the checkpoint's
    preprocessor does; :meth:`from_pretrained` reads it from preprocessor_config.json).
    """

    def __init__(self, model: nn.Module, *, layer: str = "last", frozen: bool = True,
                 normalize: bool = False) -> None:
        super().__init__()
        if layer not in LAYER_MODES:
            raise ValueError(f"SSLFrontEnd: layer must be one of {LAYER_MODES}, got {layer!r}")
        self.model, self.layer, self.frozen, self.normalize = model, layer, frozen, normalize
        config = model.config
        self.hidden_size = int(config.hidden_size)
        self.num_layers = int(config.num_hidden_layers) + 1
        self.combine = WeightedLayerSum(self.num_layers) if layer == "weighted" else nn.Identity()
        self.receptive_field, self.stride = conv_geometry(config.conv_kernel, config.conv_stride)
        self.per_utterance = config.feat_extract_norm == "group"
        if frozen:
            model.requires_grad_(False)
        self.train(False)

    @classmethod
    def from_config(cls, kind: str = "wavlm", config: dict[str, Any] | None = None, *,
                    seed: int = 0, **options: Any) -> "SSLFrontEnd":
        """A front end over :func:`build_ssl_model` (random weights)."""
        return cls(build_ssl_model(kind, config, seed=seed), **options)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, kind: str | None = None, *,
                        overrides: dict[str, Any] | None = None, normalize: bool | None = None,
                        **options: Any) -> "SSLFrontEnd":
        """A front end over :func:`load_ssl_model` (a local folder or a model name)."""
        model = load_ssl_model(path, kind, overrides)
        if normalize is None:
            normalize = _normalize_default(path)
        return cls(model, normalize=normalize, **options)

    def train(self, mode: bool = True) -> "SSLFrontEnd":
        super().train(mode)
        if self.frozen:
            self.model.train(False)
        return self

    @property
    def layer_shape(self) -> tuple[int, ...]:
        """Per-frame shape of :meth:`layer_outputs`: (L, D) when weighted, else (D,)."""
        if self.layer == "weighted":
            return (self.num_layers, self.hidden_size)
        return (self.hidden_size,)

    def num_frames(self, num_samples: int) -> int:
        """Frames of an utterance of ``num_samples`` 16 kHz samples: (N - R) // S + 1."""
        if num_samples < self.receptive_field:
            raise AudioError(f"audio of {num_samples} samples is shorter than one SSL frame "
                             f"({self.receptive_field} samples at 16 kHz)")
        return (num_samples - self.receptive_field) // self.stride + 1

    def check_vad_alignment(self) -> None:
        """ValueError unless this model's frames are the 400-sample / 320-hop frames that
        :func:`fastser.audio.vad.ssl_vad_mask` marks."""
        if (self.receptive_field, self.stride) != (SSL_RECEPTIVE_FIELD, SSL_STRIDE):
            raise ValueError(
                f"SSL conv stack has receptive field {self.receptive_field} and stride "
                f"{self.stride} samples, but VAD masks (fastser.audio.vad.ssl_vad_mask) are "
                f"defined on {SSL_RECEPTIVE_FIELD}-sample frames every {SSL_STRIDE} samples: "
                "its frames would not line up with the mask; use conv kernels/strides whose "
                "receptive field is 400 and stride 320 (e.g. 10,3,3,3,3,2,2 / 5,2,2,2,2,2,2)")

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Frame counts (B,) int64 of sample lengths (B,); ValueError naming the first
        utterance shorter than one frame."""
        short = (lengths < self.receptive_field).nonzero()
        if short.numel():
            index = int(short[0])
            raise AudioError(f"utterance {index}: {int(lengths[index])} samples at 16 kHz is "
                             f"shorter than one SSL frame ({self.receptive_field} samples)")
        return torch.div(lengths - self.receptive_field, self.stride,
                         rounding_mode="floor") + 1

    def _check(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(waveforms, Tensor) or waveforms.dim() != 2:
            raise ValueError("SSLFrontEnd: expected padded waveforms (B, N), got "
                             f"{getattr(waveforms, 'shape', type(waveforms).__name__)}")
        return as_padded(waveforms, lengths)

    def layer_outputs(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """(layer outputs (B, F, L, D) when weighted else (B, F, D), frame lengths (B,)):
        what :attr:`combine` reduces to features and what a feature cache stores. Frames at or
        past a frame length are 0."""
        waveforms, lengths = self._check(waveforms, lengths)
        frame_lengths = self.frame_lengths(lengths)
        samples = torch.arange(waveforms.shape[1], device=waveforms.device)
        sample_mask = samples < lengths[:, None]
        waveforms = waveforms.float() * sample_mask
        if self.normalize:
            waveforms = _normalize(waveforms, sample_mask, lengths)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            if self.per_utterance:
                rows = [self._run(waveforms[b:b + 1, :n], None)
                        for b, n in enumerate(lengths.tolist())]
                outputs = nn.utils.rnn.pad_sequence([r[0] for r in rows], batch_first=True)
            else:
                outputs = self._run(waveforms, sample_mask.long())
        frames = outputs.shape[1]
        expected = int(frame_lengths.max())
        if frames != expected:
            raise RuntimeError(f"SSLFrontEnd: the model gave {frames} frames, its conv stack "
                               f"predicts {expected}")
        valid = torch.arange(frames, device=outputs.device) < frame_lengths[:, None]
        valid = valid.view(valid.shape + (1,) * (outputs.dim() - 2))
        return outputs * valid, frame_lengths

    def _run(self, waveforms: Tensor, attention_mask: Tensor | None) -> Tensor:
        with warnings.catch_warnings():
            # WavLM passes a bool padding mask with its float position bias to torch's
            # attention, which warns on every call (the result is correct)
            warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")
            out = self.model(waveforms, attention_mask=attention_mask,
                             output_hidden_states=self.layer != "last")
        if self.layer == "last":
            return out.last_hidden_state
        # transformers 5 records the last layer before the final layer norm of pre-norm
        # encoders; the last hidden state is the model's actual output
        return torch.stack(out.hidden_states[:-1] + (out.last_hidden_state,), dim=2)

    def forward(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """(features (B, F, D), frame lengths (B,)) of padded 16 kHz waveforms (B, N)."""
        layers, frame_lengths = self.layer_outputs(waveforms, lengths)
        return self.combine(layers), frame_lengths

    def extract(self, batch: WaveformBatch, lengths: Tensor | None = None, *,
                sample_rate: int = SAMPLE_RATE) -> tuple[Tensor, Tensor]:
        """:meth:`forward` of a list of 1-D waveforms or a padded batch at ``sample_rate``;
        audio at another rate is resampled to 16 kHz first (the rate SSL models are trained
        at and VAD masks are defined at)."""
        sample_rate = check_sample_rate(sample_rate)
        padded, lengths = as_padded(batch, lengths)
        if sample_rate != SAMPLE_RATE:
            waveforms = [resample(row[:n].float(), sample_rate, SAMPLE_RATE)
                         for row, n in zip(padded, lengths.tolist())]
            padded, lengths = as_padded(waveforms, None)
        return self(padded, lengths)

    def weights_hash(self) -> str:
        """Hash of the SSL model: class, configuration (without its path and transformers
        version) and weights."""
        digest = hashlib.sha256()
        config = self.model.config.to_dict()
        for key in ("_name_or_path", "transformers_version"):
            config.pop(key, None)
        head = {"class": type(self.model).__name__, "config": config}
        digest.update(json.dumps(head, sort_keys=True, default=str).encode())
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy())
        return digest.hexdigest()[:20]

    def fingerprint(self) -> str:
        """Hash of what decides :meth:`layer_outputs`: :meth:`weights_hash`, the layer mode,
        normalisation and the ``transformers`` version."""
        blob = json.dumps([self.weights_hash(), self.layer, self.normalize,
                           _transformers().__version__])
        return hashlib.sha256(blob.encode()).hexdigest()[:20]


def conv_geometry(kernels: Sequence[int], strides: Sequence[int]) -> tuple[int, int]:
    """(receptive field, stride) in samples of a stack of 1-D convolutions."""
    if len(kernels) != len(strides) or not kernels:
        raise ValueError(f"conv stack: {len(kernels)} kernels and {len(strides)} strides")
    field, stride = 1, 1
    for k, s in zip(kernels, strides):
        field += (int(k) - 1) * stride
        stride *= int(s)
    return field, stride


def _normalize(waveforms: Tensor, mask: Tensor, lengths: Tensor) -> Tensor:
    """Zero mean, unit variance over each utterance's valid samples (padding stays 0)."""
    n = lengths[:, None].to(waveforms.dtype)
    mean = waveforms.sum(1, keepdim=True) / n
    var = ((waveforms - mean) * mask).square().sum(1, keepdim=True) / n
    return (waveforms - mean) * torch.rsqrt(var + 1e-7) * mask


# -- feature cache ---------------------------------------------------------------------------

CACHE_VERSION = 1
CACHE_DTYPES = ("float16", "float32")
KEEP_AUDIO_BYTES = 1 << 29  # audio held in memory between the two passes of a cache write


@dataclass(frozen=True)
class VADSettings:
    """webrtcvad settings of the speech masks stored with cached features."""

    frame_ms: int = 30
    aggressiveness: int = 3

    def __post_init__(self) -> None:
        _check_vad_args(self.frame_ms, self.aggressiveness)


@dataclass
class CachedFeatures:
    """SSL layer outputs of a corpus in one memory-mapped array.

    features: (total frames, *layer_shape) float16/float32, utterance after utterance;
    speech: (total frames,) bool VAD mask; offsets, lengths: (U,) int64 frame ranges.
    """

    folder: Path
    features: np.ndarray
    speech: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    created: bool

    def __len__(self) -> int:
        return len(self.offsets)

    def utterance(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(features (F, *layer_shape), speech (F,)) of utterance ``index`` (memory-mapped)."""
        start, count = int(self.offsets[index]), int(self.lengths[index])
        return self.features[start:start + count], self.speech[start:start + count]


def file_identity(source: AudioSource) -> list[Any]:
    """[absolute path, size, modification time in ns] (and [start, end] for a part of a file,
    :meth:`AudioSpan.identity`): what keys an audio source in a cache."""
    if isinstance(source, AudioSpan):
        return source.identity()
    resolved = Path(source).resolve()
    stat = resolved.stat()
    return [str(resolved), stat.st_size, stat.st_mtime_ns]


def speech_mask(waveform: Tensor, vad: VADSettings) -> Tensor:
    """VAD speech flags (F,) on SSL frames of one 16 kHz waveform (N,)."""
    if waveform.shape[0] < SSL_RECEPTIVE_FIELD:
        raise AudioError(f"{waveform.shape[0]} samples at 16 kHz is shorter than one SSL "
                         f"frame ({SSL_RECEPTIVE_FIELD} samples)")
    flags, _ = vad_frames(waveform, SAMPLE_RATE, frame_ms=vad.frame_ms,
                          aggressiveness=vad.aggressiveness)
    return frames_to_ssl(flags, SAMPLE_RATE * vad.frame_ms // 1000, waveform.shape[0])


def cache_key(front_end: SSLFrontEnd, sources: Sequence[AudioSource], vad: VADSettings,
              dtype: str, max_samples: int | None = None) -> str:
    """Key of a corpus' cached features: front end fingerprint, VAD settings, storage dtype,
    the truncation (if any) and every audio file's (or file part's) identity, in order."""
    key = {"version": CACHE_VERSION, "front_end": front_end.fingerprint(),
           "vad": [vad.frame_ms, vad.aggressiveness], "dtype": dtype,
           "files": [file_identity(source) for source in sources]}
    if max_samples is not None:
        key["max_samples"] = int(max_samples)
    blob = json.dumps(key)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cached_features(front_end: SSLFrontEnd, sources: Sequence[AudioSource],
                    load: Callable[[Any], Tensor], cache_dir: str | os.PathLike, *,
                    vad: VADSettings = VADSettings(), dtype: str = "float16",
                    batch_seconds: float = 160.0,
                    max_samples: int | None = None) -> CachedFeatures:
    """The front end's layer outputs and VAD masks of the audio ``sources`` (file paths, or
    :class:`~fastser.audio.io.AudioSpan` parts of files; each read at 16 kHz by ``load``, cut
    to its first ``max_samples`` samples when given), computed once and memory-mapped from
    ``cache_dir/<key>/`` afterwards.

    The key changes with the front end's weights or configuration, the VAD settings, the
    storage dtype, the truncation and any file's path, size or modification time (and a
    part's times). The cache is written to a temporary folder and renamed into place, so an
    interrupted run leaves no partial cache.
    """
    if dtype not in CACHE_DTYPES:
        raise ValueError(f"cache dtype must be one of {CACHE_DTYPES}, got {dtype!r}")
    if not sources:
        raise ValueError("cached_features: no audio files")
    if max_samples is not None:
        load = _truncating(load, max_samples)
    root = Path(cache_dir)
    folder = root / cache_key(front_end, sources, vad, dtype, max_samples)
    created = not (folder / "index.npy").is_file()
    if created:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{folder.name}.tmp-", dir=root))
        try:
            _write_cache(tmp, front_end, list(sources), load, vad, dtype,
                         batch_seconds)
            try:
                tmp.rename(folder)
            except OSError:  # another process wrote the same cache first
                if not (folder / "index.npy").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    index = np.load(folder / "index.npy")
    return CachedFeatures(folder, np.load(folder / "features.npy", mmap_mode="r"),
                          np.load(folder / "speech.npy", mmap_mode="r"),
                          index[:, 0].copy(), index[:, 1].copy(), created)


def _truncating(load: Callable[[Any], Tensor],
               max_samples: int) -> Callable[[Any], Tensor]:
    return lambda source: load(source)[:max_samples]


def _write_cache(folder: Path, front_end: SSLFrontEnd, paths: list[AudioSource],
                 load: Callable[[Any], Tensor], vad: VADSettings, dtype: str,
                 batch_seconds: float) -> None:
    """VAD masks and frame counts file by file (keeping up to KEEP_AUDIO_BYTES of audio),
    then SSL features in batches of similar lengths, written straight into the memory-mapped
    array (files not kept are read again)."""
    masks, samples, kept, kept_bytes = [], [], {}, 0
    for index, path in enumerate(paths):
        waveform = load(path)
        if waveform.shape[0] < front_end.receptive_field:
            raise AudioError(f"{path}: {waveform.shape[0]} samples at 16 kHz is shorter than "
                             f"one SSL frame ({front_end.receptive_field} samples)")
        masks.append(speech_mask(waveform, vad))
        samples.append(waveform.shape[0])
        if kept_bytes + 4 * waveform.shape[0] <= KEEP_AUDIO_BYTES:
            kept[index] = waveform
            kept_bytes += 4 * waveform.shape[0]
    lengths = np.array([m.shape[0] for m in masks], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    features = np.lib.format.open_memmap(folder / "features.npy", mode="w+", dtype=dtype,
                                         shape=(int(lengths.sum()), *front_end.layer_shape))
    budget = int(batch_seconds * SAMPLE_RATE)
    order = np.argsort(samples, kind="stable")
    batch: list[int] = []
    for position, index in enumerate(order):
        batch.append(int(index))
        longest = samples[batch[-1]]
        if position + 1 == len(order) or longest * (len(batch) + 1) > budget:
            waveforms = [kept.pop(i) if i in kept else load(paths[i]) for i in batch]
            _write_batch(features, front_end, waveforms, [paths[i] for i in batch],
                         offsets[batch], lengths[batch])
            batch = []
    features.flush()
    np.save(folder / "speech.npy", torch.cat(masks).numpy())
    np.save(folder / "index.npy", np.stack([offsets, lengths], axis=1))
    del features


def _write_batch(features: np.ndarray, front_end: SSLFrontEnd, waveforms: list[Tensor],
                 paths: list[AudioSource], offsets: np.ndarray, lengths: np.ndarray) -> None:
    padded, sample_lengths = as_padded(waveforms, None)
    with torch.no_grad():
        outputs, frame_lengths = front_end.layer_outputs(padded, sample_lengths)
    if frame_lengths.tolist() != lengths.tolist():
        raise RuntimeError("SSL feature cache: the front end's frame counts differ from the "
                           "VAD mask's (receptive field/stride other than 400/320?)")
    for row, start, count, path in zip(outputs, offsets, lengths, paths):
        values = row[:count].numpy().astype(features.dtype)
        if not np.isfinite(values).all():
            raise ValueError(f"{path}: SSL features are not finite in {features.dtype} "
                             "(use the float32 cache)")
        features[start:start + count] = values
