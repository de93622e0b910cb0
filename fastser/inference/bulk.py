"""Recognition or embedding of many recordings (``fastser predict`` and ``fastser embed``).

Recordings are read and featurised one by one, in input order, in chunks of a few batches'
worth of audio; each chunk is sorted by length and packed into batches of at most
``batch_seconds`` of padded audio (:func:`~fastser.inference.recognizer.length_batches`), so
batches waste little padding while the results still come out in input order, chunk by chunk.
A recording that cannot be used (missing, undecodable, too short for the method, ...) becomes
a result with its error and the run carries on; clipped or near-silent audio is noted.

Under ``torchrun`` every process takes the inputs ``rank, rank + world_size, ...`` and rank 0
receives every process's results and hands them to its writer merged in input order, so the
output equals a one-process run's.
"""

from __future__ import annotations

import heapq
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator, Literal, Sequence

from fastser.audio.alignment import WordTiming
from fastser.audio.io import SAMPLE_RATE, AudioWarning
from fastser.distributed import DistContext
from fastser.errors import UserError
from fastser.inference.inputs import AudioInput, read_input
from fastser.inference.recognizer import (BATCH_SECONDS, Embedding, PreparedAudio, Recognition,
                                          Recognizer, length_batches)

Task = Literal["predict", "embed"]
#: A chunk holds about this many batches' worth of audio (or CHUNK_FILES files) before it runs.
CHUNK_BATCHES = 8
CHUNK_FILES = 1024


@dataclass
class FileResult:
    """One recording's outcome: ``index`` in the run's input list, its ``input``, its length
    in seconds (None when it could not be read), the recognition or embedding, or the
    ``error`` that kept it from one; ``warnings``: notes on usable but suspicious audio."""

    index: int
    input: AudioInput
    seconds: float | None = None
    value: Recognition | Embedding | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class BulkStats:
    """What a run processed: recordings, failures, seconds of audio, wall-clock seconds."""

    files: int = 0
    failed: int = 0
    audio_seconds: float = 0.0
    elapsed: float = 0.0
    first_error: str | None = None

    def add(self, other: "BulkStats") -> None:
        self.files += other.files
        self.failed += other.failed
        self.first_error = self.first_error or other.first_error
        self.audio_seconds += other.audio_seconds
        self.elapsed = max(self.elapsed, other.elapsed)

    @property
    def real_time_factor(self) -> float:
        """Processing time per second of audio (below 1: faster than real time)."""
        return self.elapsed / self.audio_seconds if self.audio_seconds else float("nan")

    @property
    def all_failed(self) -> bool:
        """No recording could be processed."""
        return self.files > 0 and self.failed == self.files

    def summary(self) -> str:
        rate = self.files / self.elapsed if self.elapsed else float("nan")
        failed = f" ({self.failed} could not be processed)" if self.failed else ""
        noun = "recording" if self.files == 1 else "recordings"
        return (f"{self.files} {noun}{failed}, {self.audio_seconds:.1f} s of audio in "
                f"{self.elapsed:.1f} s: {rate:.2f} files/s, real-time factor "
                f"{self.real_time_factor:.4f}")


@dataclass
class _Entry:
    index: int
    input: AudioInput
    prepared: PreparedAudio | None
    error: str | None
    warnings: list[str]


class BulkRun:
    """This process's share of a bulk run; iterate for its :class:`FileResult`\\ s in input
    order (``stats`` counts them as they are produced)."""

    def __init__(self, recognizer: Recognizer, inputs: Sequence[AudioInput], task: Task, *,
                 batch_seconds: float = BATCH_SECONDS, progress: bool = False,
                 words: Sequence[WordTiming] | None = None, rank: int = 0,
                 world_size: int = 1) -> None:
        if not batch_seconds > 0:
            raise UserError(f"the batch budget must be positive seconds, got {batch_seconds}")
        self.recognizer, self.inputs, self.words = recognizer, inputs, words
        self.run: Callable = recognizer.recognise if task == "predict" else recognizer.embeddings
        self.budget = round(batch_seconds * SAMPLE_RATE)
        self.indices = range(rank, len(inputs), world_size)
        self.progress = progress
        self.stats = BulkStats()

    def __iter__(self) -> Iterator[FileResult]:
        start = time.perf_counter()
        bar = _progress_bar(len(self.indices), self.progress)
        chunk: list[_Entry] = []
        samples = 0
        try:
            for index in self.indices:
                chunk.append(self._prepare(index))
                samples += chunk[-1].prepared.num_samples if chunk[-1].prepared else 0
                if samples >= CHUNK_BATCHES * self.budget or len(chunk) >= CHUNK_FILES:
                    yield from self._run_chunk(chunk, bar, start)
                    chunk, samples = [], 0
            yield from self._run_chunk(chunk, bar, start)
        finally:
            bar.close()

    def _prepare(self, index: int) -> _Entry:
        item = self.inputs[index]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AudioWarning)
            try:
                prepared = self.recognizer.prepare_waveform(read_input(item), words=self.words,
                                                            name=str(item.path))
                error = None
            except UserError as exc:
                prepared, error = None, str(exc)
        notes = []
        for warning in caught:
            if issubclass(warning.category, AudioWarning):
                notes.append(str(warning.message))
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                       warning.lineno)
        return _Entry(index, item, prepared, error, notes)

    def _run_chunk(self, chunk: list[_Entry], bar, start: float) -> Iterator[FileResult]:
        ready = [entry for entry in chunk if entry.prepared is not None]
        values: dict[int, Recognition | Embedding] = {}
        for batch in length_batches([e.prepared.num_samples for e in ready], self.budget):
            entries = [ready[i] for i in batch]
            for entry, value in zip(entries, self.run([e.prepared for e in entries])):
                values[entry.index] = value
            self.stats.audio_seconds += sum(e.prepared.seconds for e in entries)
            self.stats.elapsed = time.perf_counter() - start
            bar.update(len(entries))
            bar.set_postfix_str(f"RTF {self.stats.real_time_factor:.4f}")
        for entry in chunk:
            self.stats.files += 1
            if entry.prepared is None:
                self.stats.failed += 1
                self.stats.first_error = self.stats.first_error or entry.error
                bar.update(1)
                yield FileResult(entry.index, entry.input, error=entry.error,
                                 warnings=entry.warnings)
            else:
                yield FileResult(entry.index, entry.input, entry.prepared.seconds,
                                 values[entry.index], warnings=entry.warnings)
        self.stats.elapsed = time.perf_counter() - start


def run_bulk(recognizer: Recognizer, inputs: Sequence[AudioInput], task: Task,
             write: Callable[[FileResult], None] | None, *, dist: DistContext | None = None,
             batch_seconds: float = BATCH_SECONDS, progress: bool = False,
             words: Sequence[WordTiming] | None = None) -> BulkStats:
    """Process every input and pass each result to ``write`` in input order; under torchrun
    (``dist``) each process runs its share and rank 0 writes them all (``write`` is called
    on rank 0 only; the other ranks may pass None).  Returns the statistics of the whole run
    (on rank 0)."""
    dist = dist or DistContext()
    run = BulkRun(recognizer, inputs, task, batch_seconds=batch_seconds,
                  progress=progress and dist.is_main, words=words, rank=dist.rank,
                  world_size=dist.world_size)
    if not dist.enabled:
        for result in run:
            write(result)
        return run.stats
    results = list(run)
    gathered = dist.gather((results, run.stats))
    stats = BulkStats()
    if gathered is not None:
        for _, shard_stats in gathered:
            stats.add(shard_stats)
        for result in heapq.merge(*(shard for shard, _ in gathered), key=lambda r: r.index):
            write(result)
    return stats


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="file", file=sys.stderr, dynamic_ncols=True, leave=False,
                disable=not (enabled and sys.stderr.isatty()))
