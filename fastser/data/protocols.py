"""Speaker-independent evaluation protocols.

Every split keeps each speaker in exactly one of train, validation and test, and is the same
for the same seed. Validation speakers, where asked for, are drawn from the speakers left for
training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastser.data.corpus import Corpus
from fastser.errors import UserError


@dataclass(frozen=True)
class Split:
    """Train, validation (possibly empty) and test parts of a corpus, disjoint in speakers."""

    name: str
    train: Corpus
    validation: Corpus
    test: Corpus


def _by_speakers(corpus: Corpus, name: str, train: list[str], validation: list[str],
                 test: list[str]) -> Split:
    def part(speakers: list[str], role: str) -> Corpus:
        keep = set(speakers)
        return Corpus(f"{corpus.name} {role}", corpus.labels,
                      tuple(u for u in corpus if u.speaker in keep))

    return Split(name, part(train, "train"), part(validation, "validation"), part(test, "test"))


def _draw_validation(candidates: list[str], count: int, rng: np.random.Generator,
                     protocol: str) -> tuple[list[str], list[str]]:
    """(train, validation) speakers: ``count`` drawn from ``candidates``, at least one left."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise UserError(f"{protocol}: validation_speakers must be an int >= 0, got {count!r}")
    if count >= len(candidates):
        raise UserError(f"{protocol}: validation_speakers={count} leaves no training speaker "
                         f"(only {len(candidates)} available per fold)")
    order = [candidates[i] for i in rng.permutation(len(candidates))]
    validation = sorted(order[:count])
    return sorted(set(candidates) - set(validation)), validation


def leave_one_session_out(corpus: Corpus, *, validation_speakers: int = 0,
                          seed: int = 0) -> list[Split]:
    """One split per session: that session's speakers are the test set.

    Raises ValueError with fewer than two sessions or when a speaker appears in more than one
    session (the held-out session would then share a speaker with training).
    """
    protocol = "leave_one_session_out"
    sessions = corpus.sessions
    if len(sessions) < 2:
        raise UserError(f"{protocol}: corpus {corpus.name!r} has {len(sessions)} session(s) "
                         f"{list(sessions)}; needs at least 2")
    speaker_sessions: dict[str, set[str]] = {}
    for u in corpus:
        speaker_sessions.setdefault(u.speaker, set()).add(u.session)
    shared = {s: sorted(v) for s, v in speaker_sessions.items() if len(v) > 1}
    if shared:
        raise UserError(f"{protocol}: speakers appear in more than one session {shared}; "
                         "holding out a session would leak them into training")
    splits = []
    for fold, session in enumerate(sessions):
        test = sorted(s for s, v in speaker_sessions.items() if session in v)
        rest = sorted(s for s in speaker_sessions if s not in test)
        train, validation = _draw_validation(rest, validation_speakers,
                                             np.random.default_rng([seed, fold]), protocol)
        splits.append(_by_speakers(corpus, f"session {session}", train, validation, test))
    return splits


def leave_one_speaker_out(corpus: Corpus, *, validation_speakers: int = 0,
                          seed: int = 0) -> list[Split]:
    """One split per speaker: that speaker is the test set."""
    protocol = "leave_one_speaker_out"
    speakers = list(corpus.speakers)
    if len(speakers) < 2:
        raise UserError(f"{protocol}: corpus {corpus.name!r} has {len(speakers)} speaker(s) "
                         f"{speakers}; needs at least 2")
    splits = []
    for fold, speaker in enumerate(speakers):
        rest = [s for s in speakers if s != speaker]
        train, validation = _draw_validation(rest, validation_speakers,
                                             np.random.default_rng([seed, fold]), protocol)
        splits.append(_by_speakers(corpus, f"speaker {speaker}", train, validation, [speaker]))
    return splits


def _speaker_count(value: float | int, total: int, what: str) -> int:
    """A fraction in [0, 1) of ``total`` speakers (rounded, at least 1 when > 0) or a count."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"speaker_split: {what} must be a fraction or a count, got {value!r}")
    if isinstance(value, float):
        if not 0.0 <= value < 1.0:
            raise UserError(f"speaker_split: {what} fraction must be in [0, 1), got {value}")
        return max(1, round(value * total)) if value > 0 else 0
    if value < 0:
        raise UserError(f"speaker_split: {what} count must be >= 0, got {value}")
    return value


def speaker_split(corpus: Corpus, *, test: float | int = 0.2, validation: float | int = 0.1,
                  seed: int = 0) -> Split:
    """A random speaker-independent split.

    test, validation: fractions of the speakers (float in [0, 1); rounded, at least one
    speaker when > 0) or speaker counts (int). The test set gets at least one speaker and at
    least one speaker is left for training.
    """
    speakers = list(corpus.speakers)
    n_test = _speaker_count(test, len(speakers), "test")
    n_val = _speaker_count(validation, len(speakers), "validation")
    if n_test < 1:
        raise UserError("speaker_split: the test set needs at least one speaker")
    if n_test + n_val >= len(speakers):
        raise UserError(f"speaker_split: corpus {corpus.name!r} has {len(speakers)} "
                         f"speaker(s); {n_test} test + {n_val} validation leave none to train")
    order = [speakers[i] for i in np.random.default_rng(seed).permutation(len(speakers))]
    return _by_speakers(corpus, f"speaker split (seed {seed})", sorted(order[n_test + n_val:]),
                        sorted(order[n_test:n_test + n_val]), sorted(order[:n_test]))


PROTOCOLS = ("session", "speaker", "random")


def make_splits(corpus: Corpus, protocol: str, *, seed: int = 0,
                validation_speakers: int = 1) -> list[Split]:
    """The folds of ``protocol``: "session" (leave one session out), "speaker" (leave one
    speaker out) or "random" (one speaker-independent random split)."""
    if protocol == "session":
        return leave_one_session_out(corpus, validation_speakers=validation_speakers,
                                     seed=seed)
    if protocol == "speaker":
        return leave_one_speaker_out(corpus, validation_speakers=validation_speakers,
                                     seed=seed)
    if protocol == "random":
        return [speaker_split(corpus, seed=seed)]
    raise UserError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
