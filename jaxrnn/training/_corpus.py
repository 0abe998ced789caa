"""Text for the character-level language model: the corpus, its vocabulary, the batch streams, the validation window."""

from __future__ import annotations

import dataclasses
import os
import sysconfig
from pathlib import Path

import numpy as np

UNKNOWN = "\ufffd"  # the Unicode replacement character stands for every rare character
MIN_COUNT = 20
VALIDATION_FRACTION = 0.05
VALIDATION_ROWS = 32
_SKIPPED_FOLDERS = frozenset({"test", "tests", "site-packages"})


class CorpusError(ValueError):
    """A corpus that cannot be read or is too short for the requested batches."""


def stdlib_files() -> list[Path]:
    """The default corpus: every ``.py`` file of the running interpreter's standard library.

    Files under ``test``/``tests`` folders and ``site-packages`` are skipped;
    the order is sorted by path, so every machine with the same Python reads
    the same text (about 13 M characters for CPython 3.11).
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(
        path
        for path in root.rglob("*.py")
        if not _SKIPPED_FOLDERS.intersection(path.relative_to(root).parts[:-1]) and path.is_file()
    )


def read_corpus(path: str | os.PathLike | None = None) -> str:
    """The text of ``path`` (UTF-8), or of :func:`stdlib_files` joined when ``path`` is None.

    Raises:
        CorpusError: the file is missing, not UTF-8, or empty.
    """
    if path is None:
        return "".join(file.read_text(encoding="utf-8", errors="replace") for file in stdlib_files())
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CorpusError(f"--corpus {path}: no such file. Pass the path of a UTF-8 text file.") from None
    except IsADirectoryError:
        raise CorpusError(
            f"--corpus {path} is a folder; pass one UTF-8 text file (concatenate the files first).") from None
    except UnicodeDecodeError as error:
        raise CorpusError(
            f"--corpus {path} is not UTF-8 text ({error.reason} at byte {error.start}). "
            "Convert it, e.g. `iconv -f latin1 -t utf-8`, or pass another file."
        ) from None
    if not text:
        raise CorpusError(f"--corpus {path} is empty; pass a file with text in it.")
    return text


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """Characters ↔ integer ids. Id 0 is :data:`UNKNOWN`, which every character not listed maps to.

    Attributes:
        chars: the symbols in id order: ``UNKNOWN`` first, then the kept
            characters by code point.
    """

    chars: str

    @classmethod
    def from_text(cls, text: str, min_count: int = MIN_COUNT) -> Vocabulary:
        """Keeps the characters occurring at least ``min_count`` times in ``text``."""
        points, counts = np.unique(_code_points(text), return_counts=True)
        kept = "".join(chr(point) for point in points[counts >= min_count] if chr(point) != UNKNOWN)
        return cls(UNKNOWN + kept)

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """int32 ids, one per character of ``text``; characters outside the vocabulary give 0."""
        known = _code_points(self.chars[1:])  # sorted by construction
        points = _code_points(text)
        where = np.minimum(np.searchsorted(known, points), max(len(known) - 1, 0))
        found = known[where] == points if len(known) else np.zeros(points.shape, bool)
        return np.where(found, where + 1, 0).astype(np.int32)

    def decode(self, ids) -> str:
        """The text of a sequence of ids."""
        return "".join(self.chars[i] for i in np.asarray(ids).reshape(-1).tolist())


@dataclasses.dataclass(frozen=True)
class Streams:
    """``batch`` contiguous streams through the training text, cut into chunks for truncated BPTT.

    The training ids are split into ``batch`` equal rows (stream b starts at
    character ``b · L``). Step ``s`` reads chunk ``j = s mod chunks`` of epoch
    ``e = s div chunks``: columns ``offset_e + j·T … offset_e + (j+1)·T`` as
    inputs and the same shifted by one as targets, so each row continues
    where it stopped at the previous step and the carried state stays
    meaningful. ``offset_e`` in ``[0, T)`` is drawn per epoch from the seed, so
    chunk boundaries move between epochs; a batch is a pure function of
    ``(seed, step)``, which is what makes resuming exact.
    """

    rows: np.ndarray  # (batch, L) int32
    seq_len: int
    seed: int

    @classmethod
    def build(cls, ids: np.ndarray, batch: int, seq_len: int, seed: int) -> Streams:
        """Raises :class:`CorpusError` unless every row holds at least two chunks plus the shift."""
        length = len(ids) // batch
        if length < 3 * seq_len + 1:
            raise CorpusError(
                f"the training text has {len(ids):,} characters: {length:,} per stream for --batch {batch}, "
                f"but --seq-len {seq_len} needs at least {3 * seq_len + 1:,} per stream. "
                "Use a smaller --batch or --seq-len, or a longer --corpus."
            )
        return cls(np.ascontiguousarray(ids[: batch * length].reshape(batch, length)), seq_len, seed)

    @property
    def chunks_per_epoch(self) -> int:
        """Chunks per stream in one epoch (the same every epoch, whatever its offset)."""
        return (self.rows.shape[1] - self.seq_len) // self.seq_len

    def position(self, step: int) -> tuple[int, int]:
        """``(epoch, column)``: where step ``step``'s chunk starts."""
        epoch, chunk = divmod(step, self.chunks_per_epoch)
        offset = int(np.random.default_rng([self.seed, epoch]).integers(self.seq_len))
        return epoch, offset + chunk * self.seq_len

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """``(inputs, targets, fresh)``: (T, batch) int32 each, time-major; ``fresh`` at an epoch's first chunk.

        At a fresh chunk the streams jump back to their starts, so the carried
        state must be reset.
        """
        _, start = self.position(step)
        window = self.rows[:, start : start + self.seq_len + 1].T
        return window[:-1], window[1:], step % self.chunks_per_epoch == 0


def split(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)``: the validation split is the last :data:`VALIDATION_FRACTION` of the text."""
    cut = len(ids) - max(1, int(len(ids) * VALIDATION_FRACTION))
    return ids[:cut], ids[cut:]


def validation_rows(devices: int) -> int:
    """Rows of the validation window: 32 whatever the batch, so runs of any batch score the same characters.

    Rounded up to a multiple of ``devices``, which shard them.
    """
    return -(-VALIDATION_ROWS // devices) * devices


def validation_slice(ids: np.ndarray, rows: int, max_chars: int) -> np.ndarray:
    """A fixed (length + 1, rows) window of validation ids, time-major, for a comparable bpc at every eval.

    The rows are contiguous runs of ``length + 1`` characters starting at
    evenly spaced places through the whole split, so a small sample still
    covers all of it (the files at its start and its end differ in style).
    ``rows · length`` characters are scored: at most ``max_chars``, fewer
    when the split is shorter.

    Raises:
        CorpusError: the split holds fewer than two characters per row.
    """
    length = min(max_chars // rows, len(ids) // rows - 1)
    if length < 1:
        raise CorpusError(
            f"the validation split (the last 5% of the text) has {len(ids):,} characters, too few for {rows} "
            f"rows of at least 2 and --val-chars {max_chars}. Use a longer --corpus or a larger --val-chars."
        )
    starts = np.linspace(0, len(ids) - (length + 1), rows).astype(np.int64)
    return np.ascontiguousarray(np.stack([ids[start : start + length + 1] for start in starts], axis=1))
