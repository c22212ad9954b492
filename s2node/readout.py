"""The readout of a gesture model, one definition for every backend: a trace of the last layer's output, then
pooling of the per-step logits over the sequence.

    trace:   u_t = α·u_{t-1} + (1-α)·v_t,  u_0 = 0     (v = the last layer's y, or W·y: the decoder is linear)
    pooling: last | mean (since reset) | window (mean of the last n steps)

`mean` is how a model trained on clips is scored (over the whole clip); on an endless stream the mean since
the start grows sluggish (minutes of history outvote the current gesture), so a stream bounds it to a window.
Language models read out the last step (no trace, no pooling).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

import numpy as np

POOLS = ("last", "mean", "window")
# the streaming readout's window for gesture model files that name none (every one before readout.window_s)
DEFAULT_WINDOW_S = 2.0


class Trace:
    """u ← α·u + (1-α)·v, from zero; works on NumPy arrays and torch tensors alike."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.u: Any = None

    def reset(self) -> None:
        self.u = None

    def __call__(self, v: Any) -> Any:
        self.u = (1.0 - self.alpha) * v if self.u is None else self.alpha * self.u + (1.0 - self.alpha) * v
        return self.u


class Pooling:
    """Per-step logits in, pooled logits out (float64); `window_steps` only for pool "window"."""

    def __init__(self, pool: str, window_steps: int | None = None) -> None:
        if pool not in POOLS:
            raise ValueError(f"readout pool {pool!r}: use one of {POOLS}")
        self.pool = pool
        self.window_steps = max(1, int(window_steps or 1))
        self.reset()

    def reset(self) -> None:
        self._sum: np.ndarray | None = None
        self._n = 0
        self._recent: collections.deque[np.ndarray] = collections.deque(maxlen=self.window_steps)

    def __call__(self, step_logits: np.ndarray) -> np.ndarray:
        v = np.asarray(step_logits, np.float64)
        if self.pool == "last":
            return v
        if self.pool == "window":
            self._recent.append(v)
            return np.mean(self._recent, axis=0)
        self._sum = v.copy() if self._sum is None else self._sum + v
        self._n += 1
        return self._sum / self._n

    def get_state(self) -> tuple:
        return (None if self._sum is None else self._sum.copy(), self._n, list(self._recent))

    def set_state(self, state: tuple) -> None:
        s, self._n, recent = state
        self._sum = None if s is None else s.copy()
        self._recent = collections.deque(recent, maxlen=self.window_steps)


@dataclass(frozen=True)
class ReadoutSpec:
    """The model file's "readout" entry, for a gesture or a language model."""

    source: str = "y"  # "y" | "trace"
    trace_alpha: float = 0.9
    pool: str = "last"  # "last" | "mean"

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ReadoutSpec:
        if config.get("task") != "gesture":
            return cls()
        ro = config.get("readout") or {}
        return cls(ro.get("source", "y"), float(ro.get("trace_alpha", 0.9)), ro.get("pool", "last"))

    def pooling(self, window_steps: int | None = None) -> Pooling:
        """The model's own pooling, or, given window_steps, a sliding window instead of its mean."""
        if window_steps and self.pool == "mean":
            return Pooling("window", window_steps)
        return Pooling(self.pool)

    def trace(self) -> Trace | None:
        return Trace(self.trace_alpha) if self.source == "trace" else None


def window_steps(config: dict[str, Any], window_s: float | None) -> int | None:
    """window_s seconds of a gesture model's bins (None when window_s is 0/None or the model has no bins)."""
    bin_us = (config.get("input") or {}).get("bin_us")
    if not window_s or not bin_us:
        return None
    return max(1, round(window_s * 1e6 / bin_us))


def describe_window(window_s: float) -> str:
    """How the streaming readout pools, for people: "mean of the last 0.5 s of logits"."""
    return f"mean of the last {window_s:g} s of logits" if window_s else "mean of the logits since the start"


def served_window_s(config: dict[str, Any]) -> float:
    """The streaming readout's window (seconds) a gesture model file serves unless told otherwise: its
    readout.window_s (`s2 train gesture --continuous` writes the window its loss trained), else 2 s."""
    return float((config.get("readout") or {}).get("window_s", DEFAULT_WINDOW_S))
