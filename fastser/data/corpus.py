"""The utterance record every reader returns, and the ``Corpus`` that holds them."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fastser.audio.alignment import WordTiming
from fastser.errors import CorpusError

GENDERS = ("F", "M")


@dataclass(frozen=True)
class Utterance:
    """One labelled recording. Times are seconds from the start of its audio file.

    ``gender`` is ``"F"``, ``"M"`` or None (unknown). valence/arousal/dominance are on the
    corpus' own scale (IEMOCAP and the synthetic corpus: 1-5) or None. ``words`` are the word
    timings of the transcript where the corpus has them (IEMOCAP forced alignments keep the
    aligner's tokens such as ``<s>`` and ``<sil>``). ``emotion_span`` is the part of the audio
    that expresses the label where it is known (synthetic corpus), ``duration`` the length in
    seconds where the corpus states it.
    """

    id: str
    path: Path
    label: str
    speaker: str
    session: str
    gender: str | None = None
    valence: float | None = None
    arousal: float | None = None
    dominance: float | None = None
    transcript: str | None = None
    words: tuple[WordTiming, ...] = ()
    emotion_span: tuple[float, float] | None = None
    duration: float | None = None

    def __post_init__(self) -> None:
        for name in ("id", "label", "speaker", "session"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise CorpusError(f"Utterance {self.id!r}: {name} must be a non-empty string")
        object.__setattr__(self, "path", Path(self.path))
        if self.gender not in (*GENDERS, None):
            raise CorpusError(f"Utterance {self.id!r}: gender must be 'F', 'M' or None, "
                             f"got {self.gender!r}")
        object.__setattr__(self, "words", tuple(self.words))
        if any(not isinstance(w, WordTiming) for w in self.words):
            raise CorpusError(f"Utterance {self.id!r}: words must be WordTiming objects")
        if self.emotion_span is not None:
            start, end = self.emotion_span
            if not (math.isfinite(start) and math.isfinite(end) and 0 <= start <= end):
                raise CorpusError(f"Utterance {self.id!r}: emotion_span must satisfy "
                                 f"0 <= start <= end, got {self.emotion_span}")
            object.__setattr__(self, "emotion_span", (float(start), float(end)))
        if self.duration is not None and not (math.isfinite(self.duration) and self.duration > 0):
            raise CorpusError(f"Utterance {self.id!r}: duration must be positive, "
                             f"got {self.duration}")


@dataclass(frozen=True)
class CorpusSummary:
    """Utterance counts of a corpus, overall and per label, speaker, session and gender."""

    utterances: int
    labels: dict[str, int]
    speakers: dict[str, int]
    sessions: dict[str, int]
    genders: dict[str, int]

    def __str__(self) -> str:
        def row(title: str, counts: dict[str, int]) -> str:
            return f"{title:<9} " + ", ".join(f"{k} {v}" for k, v in counts.items())

        return "\n".join([f"{'total':<9} {self.utterances}", row("labels", self.labels),
                          row("speakers", self.speakers), row("sessions", self.sessions),
                          row("genders", self.genders)])


@dataclass(frozen=True)
class Corpus:
    """A named list of utterances over a fixed, ordered label set.

    The label order is the class index order of every model and metric: ``labels[i]`` is
    class ``i``. A corpus may be empty (e.g. an unused validation part of a split).
    """

    name: str
    labels: tuple[str, ...]
    utterances: tuple[Utterance, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "utterances", tuple(self.utterances))
        if not self.labels:
            raise CorpusError(f"Corpus {self.name!r}: needs at least one label")
        if len(set(self.labels)) != len(self.labels):
            raise CorpusError(f"Corpus {self.name!r}: duplicate labels in {self.labels}")
        known = set(self.labels)
        seen: set[str] = set()
        for utt in self.utterances:
            if utt.label not in known:
                raise CorpusError(f"Corpus {self.name!r}: utterance {utt.id!r} has label "
                                 f"{utt.label!r}, not one of {self.labels}")
            if utt.id in seen:
                raise CorpusError(f"Corpus {self.name!r}: duplicate utterance id {utt.id!r}")
            seen.add(utt.id)

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    def __getitem__(self, index: int) -> Utterance:
        return self.utterances[index]

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def label_index(self, label: str) -> int:
        """Class index of a label name."""
        try:
            return self.labels.index(label)
        except ValueError:
            raise CorpusError(f"Corpus {self.name!r}: unknown label {label!r}; "
                             f"labels are {self.labels}") from None

    def label_name(self, index: int) -> str:
        """Label name of a class index."""
        if not 0 <= index < len(self.labels):
            raise CorpusError(f"Corpus {self.name!r}: class index {index} outside "
                             f"[0, {len(self.labels)})")
        return self.labels[index]

    def targets(self) -> list[int]:
        """Class index of every utterance, in order."""
        return [self.labels.index(u.label) for u in self.utterances]

    @property
    def speakers(self) -> tuple[str, ...]:
        """Speaker names, sorted."""
        return tuple(sorted({u.speaker for u in self.utterances}))

    @property
    def sessions(self) -> tuple[str, ...]:
        """Session names, sorted."""
        return tuple(sorted({u.session for u in self.utterances}))

    def subset(self, indices: Iterable[int], name: str | None = None) -> Corpus:
        """The utterances at ``indices`` (in that order), same labels."""
        return Corpus(name or self.name, self.labels, tuple(self.utterances[i] for i in indices))

    def select(self, speakers: Sequence[str] | None = None,
               sessions: Sequence[str] | None = None, name: str | None = None) -> Corpus:
        """Utterances of the given speakers and/or sessions (both: both must match).

        Unknown speaker or session names raise ``ValueError``.
        """
        keep_speakers = self._check_names("speaker", speakers, self.speakers)
        keep_sessions = self._check_names("session", sessions, self.sessions)
        return Corpus(name or self.name, self.labels, tuple(
            u for u in self.utterances
            if (keep_speakers is None or u.speaker in keep_speakers)
            and (keep_sessions is None or u.session in keep_sessions)))

    def _check_names(self, kind: str, names: Sequence[str] | None,
                     known: tuple[str, ...]) -> set[str] | None:
        if names is None:
            return None
        if isinstance(names, str):
            raise CorpusError(f"Corpus {self.name!r}: {kind}s must be a sequence of names, "
                             f"not the string {names!r}")
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise CorpusError(f"Corpus {self.name!r}: unknown {kind}(s) {unknown}; "
                             f"known: {list(known)}")
        return set(names)

    def summary(self) -> CorpusSummary:
        """Counts per label (in label order), speaker, session and gender (``?``: unknown)."""
        labels = Counter(u.label for u in self.utterances)
        return CorpusSummary(
            utterances=len(self.utterances),
            labels={label: labels[label] for label in self.labels},
            speakers=dict(sorted(Counter(u.speaker for u in self.utterances).items())),
            sessions=dict(sorted(Counter(u.session for u in self.utterances).items())),
            genders=dict(sorted(Counter(u.gender or "?" for u in self.utterances).items())),
        )
