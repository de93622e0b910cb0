"""From eSpeak output to a recording: word timings, voice quality, resampling, noise."""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd

import numpy as np
from scipy.fft import next_fast_len
from scipy.signal import lfilter, resample_poly

from fastser.audio.alignment import WordTiming
from fastser.audio.io import SAMPLE_RATE
from fastser.data._espeak import Synthesis
from fastser.data._synthetic_plan import UtterancePlan

#: RMS of speech at the voices' default volume, the level the SNR is measured against.
REFERENCE_RMS = 0.1
_CROSSFADE_S = 0.02
_END_MARGIN_S = 0.05


@dataclass(frozen=True)
class Rendered:
    """audio: (N,) int16 at SAMPLE_RATE; emotion_span in seconds."""

    audio: np.ndarray
    words: tuple[WordTiming, ...]
    emotion_span: tuple[float, float]

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def speech_end(samples: np.ndarray, sample_rate: int) -> float:
    """Seconds until the end of the last 10 ms frame louder than 2% of the loudest frame."""
    hop = sample_rate // 100
    frames = samples[: len(samples) // hop * hop].astype(np.float64).reshape(-1, hop)
    rms = np.sqrt((frames ** 2).mean(axis=1)) if len(frames) else np.zeros(1)
    loud = np.nonzero(rms > 0.02 * rms.max())[0] if rms.max() > 0 else np.zeros(0, int)
    return float((loud[-1] + 1) * hop if len(loud) else len(samples)) / sample_rate


def word_starts(spans: list[tuple[int, int]], events: np.ndarray, end: float) -> list[float]:
    """Start (seconds) of every word from eSpeak WORD events.

    spans: each word's (start, end) character offsets in the request; events: rows of
    (character offset, length, ms). An event belongs to the word that contains its offset or
    starts within two characters after it (eSpeak reports some positions one early). Words
    without their own event (eSpeak speaks some word groups, e.g. "have been", as one) share
    the time between the surrounding starts in proportion to their length.
    """
    n = len(spans)
    starts: list[float | None] = [None] * n
    first = 0
    for offset, _length, ms in events.tolist():
        k = next((i for i in range(first, n) if spans[i][0] - 2 <= offset < spans[i][1]), None)
        if k is None:
            continue
        if starts[k] is None and ms / 1000.0 >= max([s for s in starts[:k] if s is not None],
                                                    default=0.0):
            starts[k] = ms / 1000.0
        first = k
    starts[0] = 0.0 if starts[0] is None else starts[0]
    anchors = [i for i in range(n) if starts[i] is not None] + [n]
    for a, b in zip(anchors, anchors[1:]):
        t_a = starts[a]
        t_b = max(end, t_a) if b == n else starts[b]
        lengths = np.array([spans[i][1] - spans[i][0] + 1 for i in range(a, b)], np.float64)
        offsets = np.concatenate([[0.0], np.cumsum(lengths)[:-1]]) / lengths.sum()
        for i, frac in zip(range(a, b), offsets):
            starts[i] = t_a + frac * (t_b - t_a)
    return [float(s) for s in starts]


def _tilt(x: np.ndarray, tilt: float) -> np.ndarray:
    """Spectral tilt: tilt > 0 adds the first difference (brighter), tilt < 0 low-passes."""
    if tilt >= 0:
        return lfilter([1.0 + 1.5 * tilt, -1.5 * tilt], [1.0], x)
    b = min(0.95, -1.5 * tilt)
    return lfilter([1.0 - b], [1.0, -b], x)


def _presence(x: np.ndarray, gain_db: float, sample_rate: int) -> np.ndarray:
    """A peaking equaliser (Q = 1) of ``gain_db`` around 3 kHz."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * 3000.0 / sample_rate
    alpha = np.sin(w0) / 2.0
    b = [1.0 + alpha * a, -2.0 * np.cos(w0), 1.0 - alpha * a]
    den = [1.0 + alpha / a, -2.0 * np.cos(w0), 1.0 - alpha / a]
    return lfilter(b, den, x)


def _saturate(x: np.ndarray, drive: float) -> np.ndarray:
    """Soft clipping of a tense voice; drive 0 leaves x as it is."""
    peak = np.abs(x).max()
    if drive <= 0 or peak == 0:
        return x
    k = 1.0 + 8.0 * drive
    return np.tanh(k * x / peak) / np.tanh(k) * peak


def _match_rms(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    ry, rx = np.sqrt((y ** 2).mean()), np.sqrt((x ** 2).mean())
    return y * (rx / ry) if ry > 0 else y


def _noise(rng: np.random.Generator, n: int, colour: float) -> np.ndarray:
    """Unit-RMS noise with power spectrum ~ 1 / f^colour."""
    size = next_fast_len(n, real=True)
    spectrum = np.fft.rfft(rng.standard_normal(size))
    freqs = np.fft.rfftfreq(size)
    spectrum[0] = 0.0
    spectrum[1:] *= freqs[1:] ** (-colour / 2.0)
    noise = np.fft.irfft(spectrum, size)[:n]
    return noise / max(np.sqrt((noise ** 2).mean()), 1e-12)


def render(plan: UtterancePlan, synthesis: Synthesis, spans: list[tuple[int, int]],
           seed: int) -> Rendered:
    """The recording of one planned utterance."""
    sr = synthesis.sample_rate
    end = speech_end(synthesis.samples, sr)
    # eSpeak's own closing pause is cut: the plan's trailing silence replaces it
    speech = synthesis.samples[:round((end + _END_MARGIN_S) * sr)].astype(np.float64) / 32768.0
    starts = word_starts(spans, synthesis.words, end)
    emotional_from = sum(len(p.words) for p in plan.parts if not p.emotional)
    onset = starts[emotional_from] if emotional_from else 0.0

    colour = _match_rms(_tilt(speech, plan.speaker.offsets.tilt), speech)
    emotional = _match_rms(_saturate(_presence(_tilt(colour, plan.tilt), plan.presence, sr),
                                     plan.drive), colour)
    fade = np.clip((np.arange(len(speech)) / sr - onset) / _CROSSFADE_S + 0.5, 0.0, 1.0)
    voiced = colour + fade * (emotional - colour)

    step = gcd(SAMPLE_RATE, sr)
    resampled = resample_poly(voiced, SAMPLE_RATE // step, sr // step)
    lead, trail = round(plan.lead * SAMPLE_RATE), round(plan.trail * SAMPLE_RATE)
    signal = np.concatenate([np.zeros(lead), resampled, np.zeros(trail)])
    rng = np.random.default_rng([seed, 3, plan.index])
    noise_rms = REFERENCE_RMS / 10.0 ** (plan.snr_db / 20.0)
    signal = plan.gain * (signal + noise_rms * _noise(rng, len(signal), plan.noise_colour))
    signal /= max(1.0, np.abs(signal).max() / 0.99)
    audio = np.round(signal * 32767.0).astype(np.int16)

    shift = lead / SAMPLE_RATE
    bounds = [s + shift for s in starts] + [max(end, starts[-1]) + shift]
    words = tuple(WordTiming(w, round(a, 4), round(b, 4))
                  for w, a, b in zip(plan.words, bounds, bounds[1:]))
    duration = len(audio) / SAMPLE_RATE
    span = (round(onset + shift, 4), duration) if emotional_from else (0.0, duration)
    return Rendered(audio, words, span)
