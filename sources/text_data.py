"""Text as token ids for language models: tokenisation, vocabularies, unknown tokens, BPTT batches.

Word level (PTB convention): split each line on whitespace and end it with `<eos>`.
Character level: every character is a token, the newline included (it ends a PTB-char sentence).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sources.errors import SourceError

EOS = "<eos>"
UNK = "<unk>"
LEVELS = ("word", "char")


def tokenize(text: str, level: str) -> list[str]:
    """Text -> tokens: words plus `<eos>` per line, or characters."""
    if level == "word":
        out: list[str] = []
        for line in text.splitlines():
            out.extend(line.split())
            out.append(EOS)
        return out
    if level == "char":
        return list(text)
    raise SourceError(f"level must be one of {LEVELS}, not {level!r}")


def read_text(path: str | Path) -> str:
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
    """An ordered token list with its index; `unk` is the token unknown inputs map to (None: refuse them)."""

    tokens: tuple[str, ...]
    unk: str | None = None
    index: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(set(self.tokens)) != len(self.tokens):
            raise SourceError("vocabulary has duplicate tokens")
        if self.unk is not None and self.unk not in self.tokens:
            raise SourceError(f"unk {self.unk!r} is not in the vocabulary")
        self.index.update({t: i for i, t in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def unk_id(self) -> int | None:
        return None if self.unk is None else self.index[self.unk]

    def encode(self, tokens: list[str]) -> tuple[np.ndarray, int]:
        """Tokens -> (int64 ids, number mapped to unk). Unknown tokens without an unk raise SourceError."""
        get, unk = self.index.get, self.unk_id
        ids = np.fromiter((get(t, -1) for t in tokens), dtype=np.int64, count=len(tokens))
        oov = ids < 0
        n_oov = int(oov.sum())
        if n_oov:
            if unk is None:
                first = tokens[int(np.flatnonzero(oov)[0])]
                raise SourceError(
                    f"{n_oov} tokens are outside the vocabulary (first {first!r}) and the model has no unk"
                )
            ids[oov] = unk
        return ids, n_oov

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
