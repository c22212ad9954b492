"""Many streams on one model in one process: `load_stream_batch(path, n) -> StreamBatch`, stepped together.

Stream i of a batch behaves as a lone `load_step_model(path, backend, ...)` fed the same inputs: the same
probabilities (node int8: exactly; node fp32 and torch: to float rounding, another summation order), the same
counters and, on the node, the same cost statistics. A tick (`step_many`) makes one kernel call per layer for
all the streams that have input this tick; the others keep their state untouched.

    batch = load_stream_batch("models/gesture-egru", 64)
    results = batch.step_many({0: x0, 5: x5})   # stream index -> its input this tick
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from s2node.errors import ModelFileError, S2NodeError
from s2node.node_batch import NodeBatch, PoolingMany
from s2node.readout import ReadoutSpec, window_steps
from s2node.step import BACKENDS, Backend, StepCounters, StepResult

__all__ = ["StreamBatch", "load_stream_batch"]


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
        for i in idx:
            self._check(int(i))
        t0 = time.perf_counter()
        results = self._step(idx, [xs[int(i)] for i in idx])
        dt = time.perf_counter() - t0  # each stream waited for the whole tick
        out = {}
        for i, r in zip(idx.tolist(), results, strict=True):
            self._counters[i].add(r, dt)
            out[i] = r
        return out

    def counters(self, i: int) -> StepCounters:
        self._check(i)
        return self._counters[i]

    def _step(self, idx: np.ndarray, inputs: list[Any]) -> list[StepResult]:
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


class NodeStreamBatch(StreamBatch):
    """The emulated chip: s2node.node_batch.NodeBatch over one compiled model."""

    def __init__(self, path: str | Path, n: int, numerics: str = "fp32", window_s: float | None = None,
                 **node_options: Any) -> None:
        from s2node.runtime import Node

        node = Node.load(path, numerics=numerics, **node_options)
        super().__init__(path, n, node.spec.config, window_s)
        self.nodes = NodeBatch(node, n)
        self._pool = None if self._window is None else PoolingMany("window", n, len(node.spec.decoder_bias),
                                                                   self._window)

    def _step(self, idx: np.ndarray, inputs: list[Any]) -> list[StepResult]:
        preds = self.nodes.step(idx, inputs)
        if self._pool is None:
            logits = np.stack([p[0] for p in preds])
        else:
            logits = self._pool(idx, np.stack([p[1] for p in preds]))
        probs = softmax_rows(logits.astype(np.float64))
        return [StepResult(pr, ev, units, syn) for pr, (_, _, ev, units, syn) in zip(probs, preds, strict=True)]

    def deliver(self, i: int, x: np.ndarray) -> None:
        self.nodes.deliver(i, x)

    def reset(self, i: int) -> None:
        self.nodes.reset(i)
        if self._pool is not None:
            self._pool.reset(i)

    def node_stats(self, i: int) -> dict[str, Any]:
        return self.nodes.node_stats(i)


def load_stream_batch(path: str | Path, n: int, backend: Backend = "node", *, numerics: str = "fp32",
                      window_s: float | None = None, **node_options: Any) -> StreamBatch:
    """n streams of one model file (as load_step_model opens one); ModelFileError when it is missing or bad."""
    from s2node import modelfile

    if backend not in BACKENDS:
        raise S2NodeError(f"backend {backend!r}: use one of {', '.join(BACKENDS)}")
    jpath, _ = modelfile.model_paths(path)
    if not jpath.is_file():
        raise ModelFileError(str(jpath), "model not found (train one with `s2 train`, or pass --model PATH)")
    if backend == "node":
        return NodeStreamBatch(path, n, numerics, window_s, **node_options)
    from s2node.batch_torch import TorchStreamBatch

    return TorchStreamBatch(path, n, window_s)
