"""What each synthetic utterance is: speaker, label, words, prosody, recording conditions.

Everything here is drawn from seeded generators before any audio exists, so the plan (and
with it the corpus) is a pure function of the configuration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fastser.data._files import FOUR_CLASSES
from fastser.data._synthetic_text import CLAUSES, CUES


@dataclass(frozen=True)
class Voice:
    """An eSpeak NG voice (language + variant) acting as one speaker."""

    espeak_name: str
    gender: str


#: Two voices per session (one male, one female), as in IEMOCAP.
VOICES = (
    Voice("en-us+m1", "M"), Voice("en-us+f1", "F"),
    Voice("en+m3", "M"), Voice("en+f2", "F"),
    Voice("en-gb-scotland+m2", "M"), Voice("en-gb-scotland+f3", "F"),
    Voice("en-029+robert", "M"), Voice("en-029+f4", "F"),
    Voice("en-gb-x-rp+m5", "M"), Voice("en-us-nyc+f5", "F"),
    Voice("en-gb-x-gbclan+Andy", "M"), Voice("en-gb-x-gbcwmd+aunty", "F"),
)


@dataclass(frozen=True)
class Style:
    """How an emotion is spoken, relative to neutral speech.

    valence/arousal/dominance: means on IEMOCAP's 1-5 scale. rate, pitch_range, volume:
    natural-log factors; pitch: percent; tilt: spectral tilt (> 0 brighter, < 0 duller);
    drive: saturation of a tense voice (0: none); presence: dB of a peak around 3 kHz (a
    smiling, bright voice).
    """

    valence: float
    arousal: float
    dominance: float
    rate: float = 0.0
    pitch: float = 0.0
    pitch_range: float = 0.0
    volume: float = 0.0
    tilt: float = 0.0
    drive: float = 0.0
    presence: float = 0.0


STYLES = {
    "neutral": Style(3.0, 2.6, 2.8),
    "happy": Style(3.9, 3.4, 3.1, rate=0.13, pitch=45.0, pitch_range=0.6, volume=0.2,
                   tilt=0.2, drive=0.1, presence=8.0),
    "sad": Style(2.0, 2.3, 2.4, rate=-0.28, pitch=-24.0, pitch_range=-0.8, volume=-0.45,
                 tilt=-0.9),
    "angry": Style(1.9, 3.9, 3.7, rate=0.16, pitch=16.0, pitch_range=0.26, volume=0.52,
                   tilt=0.7, drive=1.2),
}

# Spread of the per-utterance jitter and of the per-speaker offsets (same units as Style).
_JITTER = Style(0.3, 0.3, 0.3, rate=0.07, pitch=7.0, pitch_range=0.20, volume=0.15,
                tilt=0.12, drive=0.12, presence=2.0)
_SPEAKER = Style(0.0, 0.0, 0.0, rate=0.07, pitch=6.0, pitch_range=0.15, volume=0.10,
                 tilt=0.08)


@dataclass(frozen=True)
class Prosody:
    """SSML <prosody> values: rate, range and volume in percent of the voice's default,
    pitch as a percent change."""

    rate: float
    pitch: float
    pitch_range: float
    volume: float

    def ssml_open(self) -> str:
        return (f'<prosody rate="{self.rate:.0f}%" pitch="{self.pitch:+.0f}%" '
                f'range="{self.pitch_range:.0f}%" volume="{self.volume:.0f}%">')


@dataclass(frozen=True)
class Speaker:
    id: str
    session: str
    voice: Voice
    offsets: Style          # rate, pitch, pitch_range, volume, tilt (channel colour)
    expressiveness: float   # scales the emotion styles


@dataclass(frozen=True)
class Part:
    """Consecutive clauses said with one prosody; ``emotional`` parts carry the label."""

    clauses: tuple[tuple[str, ...], ...]
    prosody: Prosody
    emotional: bool

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(w for clause in self.clauses for w in clause)


@dataclass(frozen=True)
class UtterancePlan:
    index: int
    id: str
    speaker: Speaker
    label: str
    parts: tuple[Part, ...]
    valence: float
    arousal: float
    dominance: float
    tilt: float             # spectral tilt of the emotional part
    drive: float            # saturation of the emotional part
    presence: float         # dB of the 3 kHz peak of the emotional part
    snr_db: float
    noise_colour: float     # noise spectrum ~ 1 / f^colour
    gain: float
    lead: float             # silence before speech, seconds
    trail: float            # silence after speech, seconds

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(w for part in self.parts for w in part.words)

    @property
    def partial(self) -> bool:
        return not all(part.emotional for part in self.parts)

    def ssml(self) -> tuple[str, list[tuple[int, int]]]:
        """The SSML document and each word's (start, end) character offsets in it."""
        text, spans = "<speak>", []
        for p, part in enumerate(self.parts):
            text += part.prosody.ssml_open()
            for c, clause in enumerate(part.clauses):
                for w, word in enumerate(clause):
                    if w:
                        text += " "
                    spans.append((len(text), len(text) + len(word)))
                    text += word
                last = p == len(self.parts) - 1 and c == len(part.clauses) - 1
                text += "." if last else ", "
            text += "</prosody>"
        return text + "</speak>", spans

    def transcript(self) -> str:
        clauses = [" ".join(clause) for part in self.parts for clause in part.clauses]
        text = ", ".join(clauses) + "."
        return text[0].upper() + text[1:]


def make_speakers(count: int, seed: int) -> tuple[Speaker, ...]:
    """The first ``count`` voices with seeded offsets; sessions pair voices 2k and 2k+1."""
    rng = np.random.default_rng([seed, 1])
    speakers = []
    for i, voice in enumerate(VOICES[:count]):
        session = f"Ses{i // 2 + 1:02d}"
        offsets = Style(0.0, 0.0, 0.0, **{k: float(rng.normal(0.0, getattr(_SPEAKER, k)))
                                          for k in ("rate", "pitch", "pitch_range", "volume",
                                                    "tilt")})
        speakers.append(Speaker(session + voice.gender, session, voice, offsets,
                                float(rng.uniform(0.85, 1.15))))
    return tuple(speakers)


def _labels_per_speaker(n_utterances: int, n_speakers: int,
                        rng: np.random.Generator) -> list[tuple[int, str]]:
    """(speaker index, label) per utterance: speakers round-robin, labels balanced per speaker."""
    counts = [0] * n_speakers
    plan = []
    starts = rng.integers(0, len(FOUR_CLASSES), n_speakers)
    for i in range(n_utterances):
        s = i % n_speakers
        plan.append((s, FOUR_CLASSES[(starts[s] + counts[s]) % len(FOUR_CLASSES)]))
        counts[s] += 1
    return plan


def _pick_clauses(rng: np.random.Generator, min_words: int) -> list[tuple[str, ...]]:
    clauses = []
    while sum(map(len, clauses)) < min_words:
        clauses.append(tuple(CLAUSES[rng.integers(len(CLAUSES))].split()))
    return clauses


def _cue(rng: np.random.Generator, label: str, cue_rate: float,
         cue_accuracy: float) -> tuple[str, ...] | None:
    """An emotion cue phrase: with probability cue_rate; from the label's class with
    probability cue_accuracy, else from another class."""
    if rng.random() >= cue_rate:
        return None
    if rng.random() >= cue_accuracy:
        label = str(rng.choice([c for c in FOUR_CLASSES if c != label]))
    phrases = CUES[label]
    return tuple(phrases[rng.integers(len(phrases))].split())


def _prosody(speaker: Speaker, style: Style, strength: float, jitter: dict[str, float]) -> Prosody:
    o = speaker.offsets

    def factor(name: str, lo: float, hi: float) -> float:
        value = getattr(o, name) + strength * getattr(style, name) + jitter[name]
        return min(hi, max(lo, 100.0 * math.exp(value)))

    pitch = o.pitch + strength * style.pitch + jitter["pitch"]
    return Prosody(factor("rate", 60.0, 250.0), max(-60.0, min(90.0, pitch)),
                   factor("pitch_range", 10.0, 200.0), factor("volume", 10.0, 200.0))


def make_plan(n_utterances: int, speakers: tuple[Speaker, ...], seed: int, *,
              partial_fraction: float, emotion_strength: float, snr_db: tuple[float, float],
              short_fraction: float = 0.07, cue_rate: float = 0.55,
              cue_accuracy: float = 0.75) -> list[UtterancePlan]:
    """One plan per utterance. ``partial_fraction`` of all utterances (drawn among the
    non-neutral ones) say neutral clauses first and the emotion only in their last part."""
    rng = np.random.default_rng([seed, 2])
    non_neutral_share = 1.0 - 1.0 / len(FOUR_CLASSES)
    partial_prob = min(1.0, partial_fraction / non_neutral_share)
    plans = []
    per_speaker = [0] * len(speakers)
    for index, (s, label) in enumerate(_labels_per_speaker(n_utterances, len(speakers), rng)):
        speaker = speakers[s]
        per_speaker[s] += 1
        style, neutral = STYLES[label], STYLES["neutral"]
        intensity = 0.0 if label == "neutral" else float(rng.uniform(0.6, 1.3))
        strength = intensity * speaker.expressiveness * emotion_strength
        jitter = {k: float(rng.normal(0.0, getattr(_JITTER, k)))
                  for k in ("valence", "arousal", "dominance", "rate", "pitch", "pitch_range",
                            "volume", "tilt", "drive", "presence")}
        partial = label != "neutral" and rng.random() < partial_prob
        short = not partial and rng.random() < short_fraction
        cue = None if short else _cue(rng, label, cue_rate, cue_accuracy)
        emotional_prosody = _prosody(speaker, style, strength, jitter)
        if short:
            clause = tuple(CLAUSES[rng.integers(len(CLAUSES))].split())[:int(rng.integers(3, 6))]
            parts = (Part((clause,), emotional_prosody, True),)
        elif partial:
            first = _pick_clauses(rng, int(rng.integers(4, 8)))
            second = _pick_clauses(rng, int(rng.integers(3, 7))) + ([cue] if cue else [])
            parts = (Part(tuple(first), _prosody(speaker, neutral, 0.0, jitter), False),
                     Part(tuple(second), emotional_prosody, True))
        else:
            clauses = _pick_clauses(rng, int(rng.integers(5, 12))) + ([cue] if cue else [])
            parts = (Part(tuple(clauses), emotional_prosody, True),)

        def vad(name: str) -> float:
            base = getattr(neutral, name)
            value = base + intensity * (getattr(style, name) - base) + jitter[name]
            return round(min(5.0, max(1.0, value)), 4)

        plans.append(UtterancePlan(
            index=index, id=f"{speaker.id}_{per_speaker[s] - 1:03d}", speaker=speaker,
            label=label, parts=parts, valence=vad("valence"), arousal=vad("arousal"),
            dominance=vad("dominance"),
            tilt=strength * style.tilt + jitter["tilt"],
            drive=max(0.0, strength * style.drive + jitter["drive"]),
            presence=strength * style.presence + jitter["presence"],
            snr_db=float(rng.uniform(*snr_db)), noise_colour=float(rng.uniform(0.0, 1.5)),
            gain=float(math.exp(rng.normal(0.0, 0.25))), lead=float(rng.uniform(0.05, 0.35)),
            trail=float(rng.uniform(0.1, 0.4))))
    return plans
