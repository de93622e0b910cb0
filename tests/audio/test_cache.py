"""The per-corpus cache of one feature row per audio file."""

import os

import numpy as np

from fastser.audio.cache import cached_rows


def test_rows_are_computed_once_and_recomputed_when_a_file_changes(tmp_path):
    files = [tmp_path / f"{i}.wav" for i in range(3)]
    for i, f in enumerate(files):
        f.write_bytes(bytes([i]) * 10)
    calls = []

    def compute(index):
        calls.append(index)
        return np.full(4, float(index) + len(calls))

    cache = tmp_path / "cache"
    first = cached_rows(cache, {"set": "a"}, files, compute)
    assert first.shape == (3, 4) and calls == [0, 1, 2]
    np.testing.assert_array_equal(cached_rows(cache, {"set": "a"}, files, compute), first)
    assert calls == [0, 1, 2]  # read back
    cached_rows(cache, {"set": "b"}, files, compute)  # another key
    assert calls == [0, 1, 2] * 2
    os.utime(files[1], ns=(1, 1))  # another modification time
    cached_rows(cache, {"set": "a"}, files, compute)
    assert calls == [0, 1, 2] * 3
    assert not [p for p in cache.iterdir() if ".tmp-" in p.name]  # no partial files left
