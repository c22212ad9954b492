"""Text as token ids for language models: tokenisation, `encode` into a model's vocabulary, BPTT batches.

Word level (the PTB convention): whitespace-separated words, and `<eos>` at every line end. A line end is a
line break (as `str.splitlines` sees them); the text's last line ends too, newline or not, unless the caller
says the text is a piece of a stream (`final_eos=False`), where a last line without a line break is still open.
Character level: every character is a token, the newline included (it ends a PTB-char sentence).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sources.errors import SourceError

EOS = "<eos>"
UNK = "<unk>"
LEVELS = ("word", "char")


def tokenize(text: str, level: str, *, final_eos: bool = True) -> list[str]:
    """Text -> tokens: words plus `<eos>` at every line end, or characters. With `final_eos=False` a last line
    without a trailing line break gets no `<eos>` (streamed text: the next piece continues that line)."""
    if level == "word":
        out: list[str] = []
        for line in text.splitlines(keepends=True):
            words = line.split()
            out.extend(words)
            if final_eos or line.splitlines()[0] != line:  # the line ends in a line break
                out.append(EOS)
        return out
    if level == "char":
        return list(text)
    raise SourceError(f"level must be one of {LEVELS}, not {level!r}")


def encode(text: str, config: Mapping[str, Any], *, final_eos: bool = True) -> tuple[np.ndarray, int]:
    """Text -> (int64 ids in a language model's vocabulary, number of tokens outside it).

    `config` is the model file's config (`level`, `vocab`, `unk`). Tokens as `tokenize`, except that word level
    emits `<eos>` only when the vocabulary has it. A token outside the vocabulary becomes `unk` when the config
    names one, else it is dropped; either way it is counted. `final_eos=False` for a piece of streamed text.
    """
    index = {t: i for i, t in enumerate(config["vocab"])}
    unk = index[config["unk"]] if config.get("unk") is not None else -1
    tokens = tokenize(text, config["level"], final_eos=final_eos)
    if config["level"] == "word" and EOS not in index:
        tokens = [t for t in tokens if t != EOS]
    ids = np.fromiter((index.get(t, -2) for t in tokens), dtype=np.int64, count=len(tokens))
    outside = ids == -2
    n_outside = int(outside.sum())
    if n_outside:
        ids = ids[~outside] if unk < 0 else np.where(outside, unk, ids)
    return ids, n_outside


def read_text(path: str | Path) -> str:
    """A UTF-8 text file's content; SourceError naming the file when it is missing or not text."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise SourceError(f"{path}: no such file") from e
    except UnicodeDecodeError as e:
        raise SourceError(f"{path}: not UTF-8 text (byte {e.start})") from e
    except OSError as e:
        raise SourceError(f"{path}: cannot read: {e.strerror}") from e


@dataclass(frozen=True)
class Vocab:
    """A training vocabulary: an ordered token list with its index; tokens outside it map to `unk`."""

    tokens: tuple[str, ...]
    unk: str = UNK
    index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(set(self.tokens)) != len(self.tokens):
            raise SourceError("vocabulary has duplicate tokens")
        if self.unk not in self.tokens:
            raise SourceError(f"unk {self.unk!r} is not in the vocabulary")
        self.index.update({t: i for i, t in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: list[str]) -> tuple[np.ndarray, int]:
        """Tokens -> (int64 ids, number mapped to unk)."""
        ids = np.fromiter((self.index.get(t, -1) for t in tokens), dtype=np.int64, count=len(tokens))
        oov = ids < 0
        ids[oov] = self.index[self.unk]
        return ids, int(oov.sum())

    def decode(self, ids) -> list[str]:
        return [self.tokens[int(i)] for i in ids]


def build_vocab(tokens: list[str], level: str) -> Vocab:
    """Vocabulary of a training token list, sorted for determinism. Word level keeps PTB's own `<unk>`
    (added if absent); character level gets a `<unk>` entry for characters never seen in training."""
    types = sorted(set(tokens))
    if UNK not in types:
        types.append(UNK)
    if level == "word" and EOS not in types:
        types.append(EOS)
    return Vocab(tuple(types), UNK)


def batchify(ids: np.ndarray, batch: int) -> np.ndarray:
    """1-D ids -> [batch, L] with each row a contiguous stretch (the tail that does not fill a row is dropped)."""
    n = len(ids) // batch
    if n < 2:
        raise SourceError(f"text too short: {len(ids)} tokens for batch size {batch}")
    return ids[: n * batch].reshape(batch, n)


def bptt_windows(data: np.ndarray, bptt: int, start: int = 0) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """[B, L] -> (position, inputs [B, T], targets [B, T]) windows of T <= bptt steps, targets shifted by one."""
    length = data.shape[1]
    for i in range(start, length - 1, bptt):
        t = min(bptt, length - 1 - i)
        yield i, data[:, i : i + t], data[:, i + 1 : i + 1 + t]


def n_windows(data: np.ndarray, bptt: int) -> int:
    return (data.shape[1] - 1 + bptt - 1) // bptt
