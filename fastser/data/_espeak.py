"""eSpeak NG speech synthesis through its C API (ctypes), deterministic per utterance.

The library and its voice data come from the ``espeakng_loader`` wheel. eSpeak keeps global
state between calls (pitch flutter phase, gain control, echo buffer), so the same text
synthesised twice in one process differs slightly. To make each utterance a pure function of
its request, a worker process initialises eSpeak once and then forks a fresh child for every
utterance: each child starts from the same untouched state.

This file also runs as the worker script (its ``__main__`` takes JOBS.json OUT_DIR); it
imports nothing from fastser so that workers start in a fraction of a second.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_SYNCHRONOUS = 2           # AUDIO_OUTPUT_SYNCHRONOUS
_DONT_EXIT = 0x8000        # espeakINITIALIZE_DONT_EXIT
_CHARS_UTF8, _SSML = 0x1, 0x10
_POS_CHARACTER = 1
_EVENT_LIST_TERMINATED, _EVENT_WORD = 0, 1
_RAND_SEED = 1


class _Event(ctypes.Structure):
    """espeak_EVENT (speak_lib.h)."""

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Synthesis:
    """samples: (N,) int16 at ``sample_rate``; words: (W, 3) int64 rows of (0-based character
    offset in the request text, word length in characters, start in ms) of eSpeak's WORD
    events (a word group from its dictionary, e.g. "have been", gives one event)."""

    samples: np.ndarray
    sample_rate: int
    words: np.ndarray


def _load_library():
    try:
        import espeakng_loader
    except ImportError:  # pragma: no cover - a declared dependency
        raise ImportError("the synthetic corpus needs eSpeak NG: pip install espeakng-loader") \
            from None
    return ctypes.CDLL(espeakng_loader.get_library_path()), espeakng_loader.get_data_path()


class Espeak:
    """The process' eSpeak NG instance (the library is a process-wide singleton)."""

    def __init__(self) -> None:
        self._lib, data_path = _load_library()
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                          ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint,
                                     ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                     ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.sample_rate = lib.espeak_Initialize(_SYNCHRONOUS, 0, data_path.encode(), _DONT_EXIT)
        if self.sample_rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialise with data at {data_path}")
        self._chunks: list[np.ndarray] = []
        self._words: list[tuple[int, int, int]] = []
        self._callback = _Callback(self._collect)  # kept alive as long as the instance
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n_samples, events) -> int:
        if n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (n_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_WORD:
                self._words.append((event.text_position - 1, event.length,
                                    event.audio_position))
            i += 1
        return 0

    def synthesize(self, ssml: str, voice: str) -> Synthesis:
        """Speak an SSML document with a voice name such as ``"en-us+f3"``."""
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice {voice!r}")
        self._lib.espeak_ng_SetRandSeed(_RAND_SEED)
        self._chunks, self._words = [], []
        text = ssml.encode("utf-8")
        status = self._lib.espeak_Synth(text, len(text) + 1, 0, _POS_CHARACTER, 0,
                                        _CHARS_UTF8 | _SSML, None, None)
        if status != 0 or self._lib.espeak_Synchronize() != 0:
            raise RuntimeError(f"eSpeak NG failed (status {status}) on {ssml[:80]!r}")
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        words = np.array(self._words, dtype=np.int64).reshape(-1, 3)
        return Synthesis(samples.astype(np.int16), self.sample_rate, words)


def _run_jobs(jobs_file: str, out_dir: str) -> None:
    """Worker: synthesise every job in a forked child of a freshly initialised eSpeak."""
    jobs = json.loads(Path(jobs_file).read_text())
    engine = Espeak()
    for job in jobs:
        out = Path(out_dir) / f"{job['key']}.npz"
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                result = engine.synthesize(job["ssml"], job["voice"])
                np.savez(out, samples=result.samples, words=result.words,
                         sample_rate=result.sample_rate)
                code = 0
            except Exception as exc:  # reported by the parent through the exit code
                sys.stderr.write(f"job {job['key']}: {exc}\n")
            finally:
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"eSpeak NG worker: job {job['key']} failed")


def synthesize_many(jobs: list[dict[str, str]], workers: int = 2) -> dict[str, Synthesis]:
    """Synthesise ``{"key", "voice", "ssml"}`` jobs in ``workers`` processes.

    Each result depends only on its own job, not on the order or the number of workers.
    """
    if not hasattr(os, "fork"):  # pragma: no cover - Windows
        raise RuntimeError("deterministic eSpeak synthesis needs os.fork (Linux or macOS)")
    if not jobs:
        return {}
    workers = max(1, min(workers, len(jobs)))
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with tempfile.TemporaryDirectory(prefix="fastser-espeak-") as tmp:
        procs = []
        for w in range(workers):
            jobs_file = Path(tmp) / f"jobs{w}.json"
            jobs_file.write_text(json.dumps(jobs[w::workers]))
            # run by path from the temp folder: no fastser import, nothing on sys.path[0]
            # that could shadow a standard module
            procs.append(subprocess.Popen(
                [sys.executable, "-c", f"import runpy; runpy.run_path({__file__!r}, "
                 "run_name='__main__')", str(jobs_file), tmp],
                cwd=tmp, env=env, stderr=subprocess.PIPE, text=True))
        errors = [p.communicate()[1] for p in procs]
        failed = [err.strip() for p, err in zip(procs, errors) if p.returncode != 0]
        if failed:
            raise RuntimeError("eSpeak NG synthesis failed:\n" + "\n".join(failed))
        results = {}
        for job in jobs:
            with np.load(Path(tmp) / f"{job['key']}.npz") as data:
                results[job["key"]] = Synthesis(data["samples"], int(data["sample_rate"]),
                                                data["words"])
        return results


if __name__ == "__main__":
    _run_jobs(sys.argv[1], sys.argv[2])
