"""Shared checks of the dataset readers: roots, line-numbered errors, audio listing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from fastser.errors import CorpusError, MissingPathError, NotAFileError, NotAFolderError

#: Four-class label set shared by IEMOCAP, the synthetic corpus and the 4-class options.
FOUR_CLASSES = ("neutral", "happy", "sad", "angry")


def line_error(path: Path, line_no: int, message: str) -> CorpusError:
    """An error that names the file and the 1-based line number."""
    return CorpusError(f"{path}:{line_no}: {message}")


def require_root(corpus: str, root: str | Path) -> Path:
    """``root`` as a Path, checked to be an existing, non-empty folder."""
    path = Path(root).expanduser()
    if not path.exists():
        raise MissingPathError(f"{corpus}: corpus root {path} does not exist")
    if not path.is_dir():
        raise NotAFolderError(f"{corpus}: corpus root {path} is not a folder")
    if not any(path.iterdir()):
        raise CorpusError(f"{corpus}: corpus root {path} is empty")
    return path


def no_audio(corpus: str, root: Path, layout: str) -> CorpusError:
    return CorpusError(f"{corpus}: no audio found under {root} (expected {layout})")


def read_text(path: Path) -> str:
    """The contents of a UTF-8 text file (a leading byte-order mark dropped)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its line break) of a UTF-8 text file."""
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        yield number, line


def require_file(what: str, path: str | Path) -> Path:
    """``path`` as a Path, checked to be an existing file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise MissingPathError(f"{what} {path} does not exist")
    if path.is_dir():
        raise NotAFileError(f"{what} {path} is a folder, expected a file")
    return path


def wav_files(folder: Path) -> list[Path]:
    """The wav files directly in ``folder`` (extension in any case: ``.wav``, ``.WAV``), sorted,
    skipping macOS ``._*`` metadata files."""
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() == ".wav" and p.is_file() and not p.name.startswith("._"))


def find_file(path: Path) -> Path:
    """``path``, or the file of its folder whose name differs from it only in case (a corpus
    copied through a file system that upper-cased extensions); ``path`` when there is none."""
    if path.is_file() or not path.parent.is_dir():
        return path
    wanted = path.name.casefold()
    return next((p for p in sorted(path.parent.iterdir())
                 if p.name.casefold() == wanted and p.is_file()), path)
