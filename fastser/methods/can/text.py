"""CAN's text side: the vocabulary, GloVe-format embedding files and the text encoder.

Words are compared case-insensitively (``str.casefold``): the vocabulary, the words of an
utterance and the words of an embedding file are all folded. Index 0 is the padding token,
index 1 the unknown token: words outside the vocabulary (new words at test time, words below
``min_count`` in the training data) map to it and share its embedding.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from fastser.errors import CorpusError, MissingPathError
from fastser.methods.can.layers import PackedBLSTM

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1


def transcript_words(transcript: str) -> list[str]:
    """The words of a transcript: runs of letters, digits, apostrophes and hyphens
    (punctuation dropped)."""
    return re.findall(r"[\w'-]+", transcript)


def normalize_word(word: str) -> str:
    """The vocabulary's form of a word: case-folded."""
    return word.casefold()


class Vocabulary:
    """Word <-> index, with ``<pad>`` at 0 and ``<unk>`` at 1 ahead of ``words``."""

    def __init__(self, words: Sequence[str]) -> None:
        folded = [normalize_word(w) for w in words]
        if any(not w for w in folded):
            raise ValueError("Vocabulary: words must be non-empty strings")
        if len(set(folded)) != len(folded):
            duplicates = sorted(w for w, n in Counter(folded).items() if n > 1)
            raise ValueError(f"Vocabulary: duplicate words (after case folding) "
                             f"{duplicates[:10]}")
        if PAD in folded or UNK in folded:
            raise ValueError(f"Vocabulary: {PAD} and {UNK} are reserved, not words")
        self.words = folded
        self.index = {w: i + 2 for i, w in enumerate(folded)}

    @classmethod
    def build(cls, utterances: Iterable[Sequence[str]], min_count: int = 1) -> Vocabulary:
        """The words occurring at least ``min_count`` times in ``utterances`` (each a word
        sequence), most frequent first (ties alphabetically)."""
        if min_count < 1:
            raise ValueError(f"Vocabulary.build: min_count must be >= 1, got {min_count}")
        counts = Counter(normalize_word(w) for words in utterances for w in words)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return cls([w for w, n in ranked if n >= min_count])

    def __len__(self) -> int:
        """Size of the embedding table: the words plus ``<pad>`` and ``<unk>``."""
        return len(self.words) + 2

    def __contains__(self, word: str) -> bool:
        return normalize_word(word) in self.index

    def encode(self, words: Sequence[str]) -> Tensor:
        """int64 (len(words),) indices; unknown words -> ``UNK_ID``."""
        return torch.tensor([self.index.get(normalize_word(w), UNK_ID) for w in words],
                            dtype=torch.long)


@dataclass(frozen=True)
class GloveCoverage:
    """How many vocabulary words an embedding file had (``missing``: up to 20 examples)."""

    found: int
    total: int
    missing: tuple[str, ...] = field(default=())

    @property
    def fraction(self) -> float:
        return self.found / self.total if self.total else 0.0

    def __str__(self) -> str:
        text = f"{self.found}/{self.total} vocabulary words ({100 * self.fraction:.1f}%) found"
        if self.missing:
            text += f"; missing e.g. {', '.join(self.missing[:5])}"
        return text


def _file_dimension(path: str, first_line: str) -> int:
    fields = first_line.rstrip().split(" ")
    if len(fields) < 2:
        raise CorpusError(f"{path}, line 1: expected 'word v1 v2 ... vD', got "
                         f"{first_line.rstrip()[:80]!r}")
    return len(fields) - 1


def _line_word(path: str, line_no: int, line: str, dim: int) -> str:
    """The word of a GloVe line of ``dim`` values (words may contain spaces)."""
    spaces = line.count(" ")
    if spaces < dim:
        raise CorpusError(f"{path}, line {line_no}: expected a word and {dim} values, "
                          f"found {spaces} value(s)")
    return line[:line.index(" ")] if spaces == dim else line.rsplit(" ", dim)[0]


def _glove_entries(path: str) -> Iterator[tuple[int, str, str, int]]:
    """(line number, word, line, the file's vector size) of each non-empty line of a
    GloVe-format file; a missing or empty file is an error."""
    if not os.path.isfile(path):
        raise MissingPathError(f"GloVe file not found: {path}")
    dim = None
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line_no, line in enumerate(lines, start=1):
            line = line.rstrip()
            if line_no == 1:
                dim = _file_dimension(path, line)
            if line:
                yield line_no, _line_word(path, line_no, line, dim), line, dim
    if dim is None:
        raise CorpusError(f"{path}: the GloVe file is empty")


def glove_words(path: str | os.PathLike, limit: int | None = None) -> list[str]:
    """The distinct words (case-folded, first occurrence kept) of a GloVe-format file, in
    file order (GloVe files list the most frequent words first), at most ``limit``."""
    words: dict[str, None] = {}
    for _, word, _, _ in _glove_entries(os.fspath(path)):
        words.setdefault(normalize_word(word))
        if limit is not None and len(words) >= limit:
            break
    return [w for w in words if w and w not in (PAD, UNK)]


def load_glove(path: str | os.PathLike, vocabulary: Vocabulary,
               dim: int) -> tuple[Tensor, Tensor, GloveCoverage]:
    """Vectors of ``vocabulary``'s words from a GloVe-format text file (one ``word v1 ... vD``
    line per word, space separated, no header; the first occurrence of a word after case
    folding wins; words may contain spaces).

    Returns (vectors float32 (len(vocabulary), dim), found bool (len(vocabulary),),
    coverage); rows of words not in the file (and of ``<pad>``/``<unk>``) are 0 and not found.
    Errors: FileNotFoundError for a missing file; ValueError naming the line for a file whose
    vectors are not ``dim``-dimensional, a line with too few values, a value that is not a
    finite number, an empty file.
    """
    path = os.fspath(path)
    vectors = torch.zeros(len(vocabulary), dim)
    found = torch.zeros(len(vocabulary), dtype=torch.bool)
    for line_no, word, line, file_dim in _glove_entries(path):
        if file_dim != dim:
            raise CorpusError(f"{path}: the vectors have {file_dim} values (line 1) but "
                             f"the word embeddings have {dim} dimensions; set "
                             f"embed_dim={file_dim} or use a {dim}-d file")
        index = vocabulary.index.get(normalize_word(word))
        if index is None or found[index]:
            continue
        try:
            values = np.array(line.rsplit(" ", dim)[1:], dtype=np.float32)
        except ValueError as error:
            raise CorpusError(f"{path}, line {line_no}: {error}") from None
        if not np.isfinite(values).all():
            raise CorpusError(f"{path}, line {line_no}: the vector of {word!r} has "
                             f"non-finite values")
        vectors[index] = torch.from_numpy(values)
        found[index] = True
    missing = tuple(w for w in vocabulary.words if not found[vocabulary.index[w]])
    coverage = GloveCoverage(int(found.sum()), len(vocabulary.words), missing[:20])
    return vectors, found, coverage


class TextEncoder(nn.Module):
    """Word embeddings (trainable; ``<pad>`` row fixed at 0) and a BLSTM.

    forward(token_ids int64 (B, L), lengths int64 (B,)) -> (B, L, 2 * hidden), 0 past each
    length. ``blstm_method``: see :class:`~fastser.methods.can.layers.PackedBLSTM`.
    """

    def __init__(self, vocab_size: int, embed_dim: int = 300, hidden: int = 128,
                 dropout: float = 0.3, blstm_method: str = "auto") -> None:
        super().__init__()
        if vocab_size < 3:
            raise ValueError(f"TextEncoder: vocab_size must count <pad>, <unk> and at least "
                             f"one word, got {vocab_size}")
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.blstm = PackedBLSTM(embed_dim, hidden, dropout, blstm_method)

    @property
    def output_size(self) -> int:
        return self.blstm.output_size

    def forward(self, token_ids: Tensor, lengths: Tensor) -> Tensor:
        return self.blstm(self.embedding(token_ids), lengths)

    @torch.no_grad()
    def load_vectors(self, vectors: Tensor, found: Tensor) -> None:
        """Embedding rows where ``found`` take ``vectors``; the other word rows are drawn
        from N(0, s²), s the standard deviation of the loaded values (1 when none)."""
        weight = self.embedding.weight
        if vectors.shape != weight.shape or found.shape != weight.shape[:1]:
            raise ValueError(f"TextEncoder.load_vectors: need vectors {list(weight.shape)} and "
                             f"found ({weight.shape[0]},), got {list(vectors.shape)} and "
                             f"{list(found.shape)}")
        loaded = vectors[found]
        spread = float(loaded.std()) if loaded.numel() > 1 else 1.0
        weight.normal_(0.0, spread if math.isfinite(spread) and spread > 0 else 1.0)
        weight[found] = loaded.to(weight.dtype)
        weight[PAD_ID] = 0.0
