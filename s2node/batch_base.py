"""What every StreamBatch backend shares: stream indices, per-stream counters, the window pooling option."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from s2node.errors import S2NodeError
from s2node.readout import ReadoutSpec, window_steps
from s2node.step import StepCounters, StepResult


def softmax_rows(v: np.ndarray) -> np.ndarray:
    """step.softmax of each row (float64)."""
    e = np.exp(v - v.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


class StreamBatch:
    """N independent streams of one model file, stepped together: one kernel call per tick for the streams with
    input."""

    config: dict[str, Any]
    name: str
    n: int

    def __init__(self, path: str | Path, n: int, config: dict[str, Any], window_s: float | None) -> None:
        if n < 1:
            raise S2NodeError(f"a batch needs at least one stream, not {n}")
        self.name, self.n, self.config = Path(path).name, n, config
        self.task = config["task"]
        self._counters = [StepCounters() for _ in range(n)]
        steps = window_steps(config, window_s)
        ro = ReadoutSpec.from_config(config)
        # a stream may bound a mean-pooled model to a sliding window (as the lone StepModels do)
        self._window = steps if steps and ro.pool == "mean" else None

    def _check(self, i: int) -> None:
        if not 0 <= i < self.n:
            raise S2NodeError(f"stream {i} outside 0..{self.n - 1}")

    def step_many(self, xs: Mapping[int, np.ndarray | int]) -> dict[int, StepResult]:
        """Step every stream in xs with its input (stream index -> input of this tick); the others do not step."""
        if not xs:
            return {}
        idx = np.array(sorted(xs), np.int64)
        if idx[0] < 0 or idx[-1] >= self.n:
            self._check(int(idx[0] if idx[0] < 0 else idx[-1]))
        t0 = time.perf_counter()
        results = self._step(idx, [xs[i] for i in idx.tolist()])
        dt = time.perf_counter() - t0  # each stream waited for the whole tick
        out = dict(zip(idx.tolist(), results, strict=True))
        for i, r in out.items():
            self._counters[i].add(r, dt)
        return out

    def counters(self, i: int) -> StepCounters:
        self._check(i)
        return self._counters[i]

    def _step(self, idx: np.ndarray, inputs: list[Any]) -> list[StepResult]:
        """The backend's tick: each stepping stream's result, in the order of idx."""
        raise NotImplementedError

    def deliver(self, i: int, x: np.ndarray) -> None:
        """Input of stream i's current timestep that arrived before its tick (as StepModel.deliver)."""
        raise NotImplementedError

    def reset(self, i: int) -> None:
        """Stream i starts a new sequence; the other streams are untouched."""
        raise NotImplementedError

    def node_stats(self, i: int) -> dict[str, Any]:
        """Stream i's fields of the stats topic, as StepModel.node_stats."""
        raise NotImplementedError
