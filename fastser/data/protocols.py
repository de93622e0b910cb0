"""Evaluation protocols.

Every split is the same for the same seed. The speaker-independent protocols keep each
speaker in exactly one of train, validation and test; validation speakers, where asked for,
are drawn from the speakers left for training, except in "session-speaker" (MMTL's rule: one
speaker of the held-out session validates, the other is tested). The utterance-level k-fold
protocols ("utterance-kfold", "utterance-kfold-val": GLRF's and CAN's) draw folds of
utterances at random, so a speaker is in training and test alike: their splits are marked
``speaker_dependent`` and say so in their names.
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
    speaker_dependent: bool = False


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


def session_speakers(corpus: Corpus) -> list[Split]:
    """MMTL's rule (Cai et al., Sec. 3.1.2): per session and per speaker of it, the other
    sessions train, that speaker is tested and the session's other speakers validate; every
    speaker is tested once (two folds per two-speaker session)."""
    protocol = "session-speaker"
    splits = leave_one_session_out(corpus)  # checks the sessions
    folds = []
    for split in splits:
        session_speakers = list(split.test.speakers)
        if len(session_speakers) < 2:
            raise UserError(f"{protocol}: session {split.test[0].session!r} has one speaker "
                            f"({session_speakers[0]}); each session needs one to validate "
                            f"and one to test")
        for speaker in session_speakers:
            others = [s for s in session_speakers if s != speaker]
            folds.append(_by_speakers(corpus, f"{split.name}, test speaker {speaker}",
                                      list(split.train.speakers), others, [speaker]))
    return folds


def utterance_kfold(corpus: Corpus, *, k: int = 5, validation: bool = False,
                    seed: int = 0) -> list[Split]:
    """k folds of utterances drawn at random (speaker-dependent): split i tests fold i,
    validates on fold i + 1 (mod k) when ``validation`` (k = 10: 8:1:1, CAN's protocol) and
    trains on the rest (k = 5 without validation: 80/20, GLRF's)."""
    protocol = "utterance-kfold-val" if validation else "utterance-kfold"
    smallest = 3 if validation else 2
    if isinstance(k, bool) or not isinstance(k, int) or k < smallest:
        raise UserError(f"{protocol}: the number of folds must be an integer >= {smallest}, "
                        f"got {k!r}")
    if k > len(corpus):
        raise UserError(f"{protocol}: {k} folds of {len(corpus)} utterances leave a fold "
                        f"empty")
    order = np.random.default_rng(seed).permutation(len(corpus))
    folds = [set(part.tolist()) for part in np.array_split(order, k)]
    utterances = list(corpus)

    def part(indices: set[int], role: str) -> Corpus:
        return Corpus(f"{corpus.name} {role}", corpus.labels,
                      tuple(u for i, u in enumerate(utterances) if i in indices))

    splits = []
    for i in range(k):
        held = {i, (i + 1) % k} if validation else {i}
        val = folds[(i + 1) % k] if validation else set()
        train = set().union(*(folds[j] for j in range(k) if j not in held))
        splits.append(Split(f"utterance fold {i + 1}/{k} (speaker-dependent)",
                            part(train, "train"), part(val, "validation"),
                            part(folds[i], "test"), speaker_dependent=True))
    return splits


PROTOCOLS = ("session", "speaker", "random", "session-speaker", "utterance-kfold",
             "utterance-kfold-val")


def check_protocol(protocol: str) -> None:
    """UserError unless ``protocol`` is one of :data:`PROTOCOLS`."""
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")


def make_splits(corpus: Corpus, protocol: str, *, seed: int = 0, validation_speakers: int = 1,
                num_folds: int | None = None) -> list[Split]:
    """The folds of ``protocol``: "session" (leave one session out), "speaker" (leave one
    speaker out), "random" (one speaker-independent random split), "session-speaker" (MMTL's:
    see :func:`session_speakers`), "utterance-kfold" / "utterance-kfold-val" (speaker-dependent
    random utterance folds, without / with a validation fold: see :func:`utterance_kfold`;
    ``num_folds`` of them, default 5 / 10)."""
    check_protocol(protocol)
    if num_folds is not None and not protocol.startswith("utterance-kfold"):
        raise UserError(f"protocol {protocol!r} has its own folds; the number of folds applies "
                        f"to utterance-kfold and utterance-kfold-val")
    if protocol == "session":
        return leave_one_session_out(corpus, validation_speakers=validation_speakers,
                                     seed=seed)
    if protocol == "speaker":
        return leave_one_speaker_out(corpus, validation_speakers=validation_speakers,
                                     seed=seed)
    if protocol == "random":
        return [speaker_split(corpus, seed=seed)]
    if protocol == "session-speaker":
        return session_speakers(corpus)
    if protocol == "utterance-kfold":
        return utterance_kfold(corpus, k=num_folds or 5, seed=seed)
    return utterance_kfold(corpus, k=num_folds or 10, validation=True, seed=seed)
