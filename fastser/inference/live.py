"""Audio for ``fastser stream``: a file played chunk by chunk (at wall-clock speed with
``realtime``, else as fast as it is scored) or raw 16-bit PCM read from a pipe, fed to a
:class:`~fastser.inference.streaming.StreamingRecognizer`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np
import torch

from fastser.audio.io import SAMPLE_RATE, load_audio
from fastser.errors import AudioError
from fastser.inference.streaming import (SegmentPrediction, StreamingRecognizer,
                                         UtterancePrediction)


def file_chunks(path: str | Path, chunk_samples: int) -> Iterator[torch.Tensor]:
    """The file's audio (mono, 16 kHz) in chunks of ``chunk_samples``."""
    waveform = load_audio(path, SAMPLE_RATE)
    for start in range(0, waveform.shape[0], chunk_samples):
        yield waveform[start:start + chunk_samples]


def pcm_chunks(stream: BinaryIO, chunk_samples: int, sample_rate: int) -> Iterator[np.ndarray]:
    """Mono signed 16-bit little-endian PCM from ``stream`` in chunks of ``chunk_samples``
    (the last one shorter), until the stream ends; AudioError unless it is 16 kHz."""
    if sample_rate != SAMPLE_RATE:
        raise AudioError(f"raw PCM must be {SAMPLE_RATE} Hz, got --rate {sample_rate}; "
                         f"resample it on the way in (e.g. ffmpeg -i INPUT -f s16le -ac 1 -ar "
                         f"{SAMPLE_RATE} -)")
    leftover = b""
    while True:
        data = stream.read(2 * chunk_samples - len(leftover))
        if not data:
            break
        data = leftover + data
        usable = len(data) - len(data) % 2
        leftover = data[usable:]
        if usable:
            yield np.frombuffer(data[:usable], dtype="<i2")
    if leftover:
        raise AudioError("raw PCM ended in the middle of a sample (an odd number of bytes): "
                         "expected signed 16-bit little-endian mono samples")


def run_stream(recognizer: StreamingRecognizer, chunks: Iterator[torch.Tensor | np.ndarray],
               on_segment: Callable[[SegmentPrediction], None], *,
               realtime: bool = False) -> UtterancePrediction:
    """Push every chunk (with ``realtime``, not before the moment its last sample would have
    been recorded), reporting each new segment; returns the utterance prediction."""
    recognizer.reset()
    start, pushed, reported = time.monotonic(), 0, 0
    for chunk in chunks:
        pushed += len(chunk)
        if realtime:
            time.sleep(max(0.0, start + pushed / SAMPLE_RATE - time.monotonic()))
        for segment in recognizer.push(chunk):
            on_segment(segment)
            reported += 1
    final = recognizer.finish()
    for segment in final.segments[reported:]:  # those only the end completes
        on_segment(segment)
    return final
