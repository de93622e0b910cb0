"""The embedded default corpus: emotional speech synthesised locally with eSpeak NG.

Ten voices (English accents, male and female variants; two per session like IEMOCAP) speak
clauses from a sentence pool in four emotions (neutral, happy, sad, angry). Each emotion has
its prosody (rate, pitch, pitch range, volume) and voice quality (spectral tilt, tension),
spread by per-utterance jitter and per-speaker offsets so that the classes overlap; noise at
a random SNR and a random recording gain are added. About 30% of the utterances say neutral
clauses first and show the emotion only in their last part (``Utterance.emotion_span``), so
fixed windows carry label noise as in real data. Some cue phrases correlate with the label
(text is weakly informative). Every utterance has word timings from eSpeak's word events.

The corpus is a pure function of ``SyntheticConfig``: the same seed gives bit-identical wav
files (with the same eSpeak NG, NumPy and SciPy builds). ``load_synthetic()`` caches it under ``$FASTSER_CACHE`` (default
``~/.cache/fastser``)/synthetic-<key>, keyed by the configuration and ``CORPUS_VERSION``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, fields
from importlib import metadata
from pathlib import Path

import soundfile

from fastser.audio.alignment import WordTiming
from fastser.audio.io import SAMPLE_RATE
from fastser.data import _espeak, _synthetic_plan, _synthetic_render, _synthetic_text
from fastser.data._espeak import synthesize_many
from fastser.data._files import FOUR_CLASSES
from fastser.data._synthetic_plan import VOICES, make_plan, make_speakers
from fastser.data._synthetic_render import render
from fastser.data.corpus import Corpus, Utterance
from fastser.errors import CorpusError, MissingPathError, PathExistsError, UserError

NAME = "synthetic"
#: Version of the corpus design and manifest format; part of the cache key.
CORPUS_VERSION = 1
MANIFEST = "manifest.json"
_FORMAT = "fastser-synthetic"


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate.

    utterances: total count, spread evenly over speakers and, per speaker, over the 4 classes.
    speakers: number of voices (2..12); sessions pair them (Ses01M, Ses01F, Ses02M, ...).
    partial_fraction: share of utterances whose emotion is only in their last part.
    emotion_strength: scales how far the emotions' prosody and voice quality are from neutral.
    snr_db: (low, high) range of the noise SNR, against speech at default volume.
    """

    utterances: int = 480
    speakers: int = 10
    seed: int = 0
    partial_fraction: float = 0.3
    emotion_strength: float = 1.0
    snr_db: tuple[float, float] = (10.0, 30.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "snr_db", tuple(float(v) for v in self.snr_db))
        if not 2 <= self.speakers <= len(VOICES):
            raise UserError(f"SyntheticConfig: speakers must be in [2, {len(VOICES)}], "
                             f"got {self.speakers}")
        if self.utterances < self.speakers:
            raise UserError(f"SyntheticConfig: utterances ({self.utterances}) must be at "
                             f"least the number of speakers ({self.speakers})")
        if not 0.0 <= self.partial_fraction <= 0.75:
            raise UserError("SyntheticConfig: partial_fraction must be in [0, 0.75] (only "
                             f"non-neutral utterances can be partial), got {self.partial_fraction}")
        if not self.emotion_strength >= 0:
            raise UserError(f"SyntheticConfig: emotion_strength must be >= 0, "
                             f"got {self.emotion_strength}")
        if len(self.snr_db) != 2 or not self.snr_db[0] <= self.snr_db[1]:
            raise UserError(f"SyntheticConfig: snr_db must be (low, high) with low <= high, "
                             f"got {self.snr_db}")

    def key(self) -> str:
        """Cache key: this configuration, CORPUS_VERSION, the generator's source code and
        the eSpeak NG build."""
        blob = json.dumps({"config": asdict(self), "version": CORPUS_VERSION,
                           "generator": _generator_fingerprint(),
                           "espeak": metadata.version("espeakng-loader")}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _generator_fingerprint() -> str:
    """Hash of the modules that decide the audio, so a changed generator never reuses a
    stale cache."""
    digest = hashlib.sha256()
    for source in (__file__, _espeak.__file__, _synthetic_plan.__file__,
                   _synthetic_render.__file__, _synthetic_text.__file__):
        digest.update(Path(source).read_bytes())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """``$FASTSER_CACHE`` or ``~/.cache/fastser``."""
    return Path(os.environ.get("FASTSER_CACHE") or Path.home() / ".cache" / "fastser")


def _config(config: SyntheticConfig | None, overrides: dict) -> SyntheticConfig:
    if config is not None and overrides:
        raise TypeError("pass either a SyntheticConfig or keyword overrides, not both")
    unknown = set(overrides) - {f.name for f in fields(SyntheticConfig)}
    if unknown:
        raise TypeError(f"unknown synthetic corpus option(s) {sorted(unknown)}")
    return config or SyntheticConfig(**overrides)


def load_synthetic(config: SyntheticConfig | None = None, *, cache_dir: str | Path | None = None,
                   workers: int | None = None, **overrides) -> Corpus:
    """The synthetic corpus, generated on first use and read from the cache afterwards.

    ``load_synthetic(utterances=40, seed=1)`` is ``load_synthetic(SyntheticConfig(...))``.
    workers: synthesis processes (default: the CPU count, at most 8).
    """
    config = _config(config, overrides)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = root / f"synthetic-{config.key()}"
    if not (folder / MANIFEST).is_file():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{folder.name}.tmp-", dir=root))
        try:
            write_synthetic(tmp, config, workers=workers)
            try:
                tmp.rename(folder)
            except OSError:  # another process finished the same corpus first
                if not (folder / MANIFEST).is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return read_synthetic(folder)


def write_synthetic(folder: str | Path, config: SyntheticConfig | None = None, *,
                    workers: int | None = None, **overrides) -> Corpus:
    """Generate the corpus into ``folder`` (created; must be empty): ``wav/<id>.wav`` at
    16 kHz and ``manifest.json`` with every label, speaker, V/A/D, transcript and timing."""
    config = _config(config, overrides)
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise PathExistsError(f"write_synthetic: {folder} is not empty")
    (folder / "wav").mkdir(parents=True, exist_ok=True)
    speakers = make_speakers(config.speakers, config.seed)
    plans = make_plan(config.utterances, speakers, config.seed,
                      partial_fraction=config.partial_fraction,
                      emotion_strength=config.emotion_strength, snr_db=config.snr_db)
    documents = [plan.ssml() for plan in plans]
    jobs = [{"key": plan.id, "voice": plan.speaker.voice.espeak_name, "ssml": ssml}
            for plan, (ssml, _) in zip(plans, documents)]
    syntheses = synthesize_many(jobs, workers or min(8, os.cpu_count() or 1))
    utterances = []
    for plan, (_, spans) in zip(plans, documents):
        rendered = render(plan, syntheses[plan.id], spans, config.seed)
        path = folder / "wav" / f"{plan.id}.wav"
        path.write_bytes(_wav_bytes(rendered.audio))
        utterances.append(Utterance(
            id=plan.id, path=path, label=plan.label, speaker=plan.speaker.id,
            session=plan.speaker.session, gender=plan.speaker.voice.gender,
            valence=plan.valence, arousal=plan.arousal, dominance=plan.dominance,
            transcript=plan.transcript(), words=rendered.words,
            emotion_span=rendered.emotion_span, duration=rendered.duration))
    corpus = Corpus(NAME, FOUR_CLASSES, tuple(utterances))
    _write_manifest(folder, config, corpus)
    return corpus


def _wav_bytes(audio) -> bytes:
    """16-bit PCM wav file contents (written through memory: libsndfile fsyncs real files)."""
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def _write_manifest(folder: Path, config: SyntheticConfig, corpus: Corpus) -> None:
    records = [{
        "id": u.id, "file": u.path.relative_to(folder).as_posix(), "label": u.label,
        "speaker": u.speaker, "session": u.session, "gender": u.gender, "valence": u.valence,
        "arousal": u.arousal, "dominance": u.dominance, "transcript": u.transcript,
        "words": [[w.word, w.start, w.end] for w in u.words],
        "emotion_span": list(u.emotion_span), "duration": u.duration,
    } for u in corpus]
    manifest = {"format": _FORMAT, "version": CORPUS_VERSION, "config": asdict(config),
                "labels": list(corpus.labels), "utterances": records}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def read_synthetic(folder: str | Path) -> Corpus:
    """A synthetic corpus written by :func:`write_synthetic` (or found in the cache)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise MissingPathError(f"{NAME}: no {MANIFEST} in {folder}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if manifest.get("format") != _FORMAT or manifest.get("version") != CORPUS_VERSION:
        raise CorpusError(f"{path}: not a version-{CORPUS_VERSION} {_FORMAT} manifest "
                          f"(format {manifest.get('format')!r}, version "
                          f"{manifest.get('version')!r})")
    try:
        utterances = tuple(Utterance(
            id=r["id"], path=folder / r["file"], label=r["label"], speaker=r["speaker"],
            session=r["session"], gender=r["gender"], valence=r["valence"],
            arousal=r["arousal"], dominance=r["dominance"], transcript=r["transcript"],
            words=tuple(WordTiming(*w) for w in r["words"]),
            emotion_span=tuple(r["emotion_span"]), duration=r["duration"])
            for r in manifest["utterances"])
    except (KeyError, TypeError) as exc:
        raise CorpusError(f"{path}: malformed utterance record ({exc!r})") from None
    return Corpus(NAME, tuple(manifest["labels"]), utterances)
