"""The utterance record every reader returns, and the ``Corpus`` that holds them."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from fastser.audio.alignment import WordTiming
from fastser.audio.io import AudioSpan
from fastser.errors import CorpusError

GENDERS = ("F", "M")
#: The affect dimensions an utterance may be annotated with (each on its corpus' own scale).
AFFECT = ("valence", "arousal", "dominance")


@dataclass(frozen=True)
class Utterance:
    """One annotated recording: the audio file ``path``, or the part [``start``, ``end``)
    seconds of it (a segment of a longer recording; None: the file's start / end).

    ``label`` is the emotion class, or None where only affect values are annotated.
    ``gender`` is ``"F"``, ``"M"`` or None (unknown). valence/arousal/dominance (:data:`AFFECT`)
    are on the corpus' own scale (IEMOCAP and the synthetic corpus: 1-5) or None. ``words``
    are the word timings of the transcript where the corpus has them (IEMOCAP forced
    alignments keep the aligner's tokens such as ``<s>`` and ``<sil>``). ``emotion_span`` is
    the part of the audio that expresses the label where it is known (synthetic corpus),
    ``duration`` the length in seconds where the corpus states it. Times in ``words`` and
    ``emotion_span`` are seconds from the start of the utterance's audio (``start`` within
    the file for a segment).
    """

    id: str
    path: Path
    label: str | None
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
    start: float | None = None
    end: float | None = None

    def __post_init__(self) -> None:
        for name in ("id", "label", "speaker", "session"):
            value = getattr(self, name)
            if (name != "label" or value is not None) and (not isinstance(value, str)
                                                           or not value):
                raise CorpusError(f"Utterance {self.id!r}: {name} must be a non-empty string"
                                  + (" or None" if name == "label" else ""))
        object.__setattr__(self, "path", Path(self.path))
        for name in AFFECT:
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float))
                                          and not isinstance(value, bool)
                                          and math.isfinite(value)):
                raise CorpusError(f"Utterance {self.id!r}: {name} must be a finite number or "
                                  f"None, got {value!r}")
        self._check_times()
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

    def _check_times(self) -> None:
        start, end = self.start, self.end
        if start is not None and not (math.isfinite(start) and start >= 0):
            raise CorpusError(f"Utterance {self.id!r}: start must be a time >= 0 s, got {start}")
        if end is not None and not (math.isfinite(end) and end > (start or 0.0)):
            raise CorpusError(f"Utterance {self.id!r}: end must be a time after start "
                              f"({start or 0.0} s), got {end}")

    @property
    def audio(self) -> AudioSpan:
        """The utterance's audio: its file, or the part [start, end) of it."""
        return AudioSpan(self.path, self.start, self.end)

    @property
    def affect(self) -> tuple[float | None, ...]:
        """(valence, arousal, dominance), None where unknown."""
        return tuple(getattr(self, name) for name in AFFECT)


@dataclass(frozen=True)
class CorpusSummary:
    """Utterance counts of a corpus, overall and per label, speaker, session and gender;
    class counts per speaker; how many utterances carry each affect dimension; the hours of
    audio when they were measured (``Corpus.summary(audio=True)``)."""

    utterances: int
    labels: dict[str, int]
    speakers: dict[str, int]
    sessions: dict[str, int]
    genders: dict[str, int]
    unlabelled: int = 0
    affect: dict[str, int] = field(default_factory=dict)
    by_speaker: dict[str, dict[str, int]] = field(default_factory=dict)
    hours: float | None = None

    def __str__(self) -> str:
        def row(title: str, counts: dict[str, int]) -> str:
            return f"{title:<9} " + ", ".join(f"{k} {v}" for k, v in counts.items())

        total = f"{self.utterances}" + ("" if self.hours is None else f" ({self.hours:.2f} h)")
        lines = [f"{'total':<9} {total}", row("labels", self.labels)]
        if self.unlabelled:
            lines.append(f"{'':<9} {self.unlabelled} without an emotion label")
        lines += [row("affect", self.affect), row("speakers", self.speakers),
                  row("sessions", self.sessions), row("genders", self.genders)]
        return "\n".join(lines)


@dataclass(frozen=True)
class Corpus:
    """A named list of utterances over a fixed, ordered label set.

    The label order is the class index order of every model and metric: ``labels[i]`` is
    class ``i``. A corpus may be empty (e.g. an unused validation part of a split), and its
    label set may be empty when no utterance has an emotion label (affect annotations only).
    """

    name: str
    labels: tuple[str, ...]
    utterances: tuple[Utterance, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "utterances", tuple(self.utterances))
        if len(set(self.labels)) != len(self.labels):
            raise CorpusError(f"Corpus {self.name!r}: duplicate labels in {self.labels}")
        known = set(self.labels)
        seen: set[str] = set()
        for utt in self.utterances:
            if utt.label is not None and utt.label not in known:
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
        """Class index of every utterance, in order (-1 without an emotion label)."""
        return [-1 if u.label is None else self.labels.index(u.label) for u in self.utterances]

    # -- label transforms (``--label-map``, ``--labels``) ---------------------------------------
    def relabel(self, mapping: Mapping[str, str], name: str | None = None) -> Corpus:
        """Labels renamed or merged: ``mapping`` old -> new (``{"excited": "happy"}``); the
        class order is the old order with each label replaced by its new name (a merged name
        keeps its first place). Every old name must be a label of the corpus."""
        unknown = [old for old in mapping if old not in self.labels]
        if unknown:
            raise CorpusError(f"Corpus {self.name!r}: label map names {unknown}, not labels "
                              f"of the corpus; its labels are {list(self.labels)}")
        for old, new in mapping.items():
            if not isinstance(new, str) or not new:
                raise CorpusError(f"Corpus {self.name!r}: label map sends {old!r} to {new!r}; "
                                  "expected a non-empty label name")
        labels = tuple(dict.fromkeys(mapping.get(label, label) for label in self.labels))
        return Corpus(name or self.name, labels, tuple(
            u if u.label not in mapping else replace(u, label=mapping[u.label])
            for u in self.utterances))

    def select_labels(self, labels: Sequence[str], name: str | None = None) -> Corpus:
        """The utterances of the classes ``labels``, in that class order (others, and
        utterances without an emotion label, are left out). Every name must be a label of
        the corpus."""
        if isinstance(labels, str):
            raise CorpusError(f"Corpus {self.name!r}: labels must be a sequence of names, not "
                              f"the string {labels!r}")
        unknown = [label for label in labels if label not in self.labels]
        if unknown:
            raise CorpusError(f"Corpus {self.name!r}: unknown label(s) {unknown}; its labels "
                              f"are {list(self.labels)}")
        if len(set(labels)) != len(labels):
            raise CorpusError(f"Corpus {self.name!r}: labels {list(labels)} name a class twice")
        keep = set(labels)
        return Corpus(name or self.name, tuple(labels),
                      tuple(u for u in self.utterances if u.label in keep))

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

    def summary(self, *, audio: bool = False) -> CorpusSummary:
        """Counts per label (in label order), speaker, session and gender (``?``: unknown),
        class counts per speaker, affect annotations; with ``audio``, the hours of audio
        (from the audio files' headers)."""
        labels = Counter(u.label for u in self.utterances)
        by_speaker: dict[str, Counter] = {}
        for u in self.utterances:
            by_speaker.setdefault(u.speaker, Counter())[u.label] += 1
        return CorpusSummary(
            utterances=len(self.utterances),
            labels={label: labels[label] for label in self.labels},
            speakers=dict(sorted(Counter(u.speaker for u in self.utterances).items())),
            sessions=dict(sorted(Counter(u.session for u in self.utterances).items())),
            genders=dict(sorted(Counter(u.gender or "?" for u in self.utterances).items())),
            unlabelled=labels[None],
            affect={name: sum(getattr(u, name) is not None for u in self.utterances)
                    for name in AFFECT},
            by_speaker={speaker: {label: counts[label] for label in self.labels}
                        for speaker, counts in sorted(by_speaker.items())},
            hours=sum(u.audio.seconds() for u in self.utterances) / 3600 if audio else None,
        )
