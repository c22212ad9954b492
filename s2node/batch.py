"""Many streams on one model in one process: `load_stream_batch(path, n) -> StreamBatch`, stepped together.

Stream i of a batch behaves as a lone `load_step_model(path, backend, ...)` fed the same inputs: the same
probabilities (node int8: exactly; node fp32 and torch: to float rounding, another summation order), the same
counters and, on the node, the same cost statistics. A tick (`step_many`) makes one kernel call per layer for
all the streams that have input this tick; the others keep their state untouched.

    batch = load_stream_batch("models/gesture-egru", 64)
    results = batch.step_many({0: x0, 5: x5})   # stream index -> its input this tick
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from s2node.batch_base import StreamBatch, softmax_rows
from s2node.node_batch import NodeBatch, PoolingMany
from s2node.step import Backend, StepResult, check_model_path, softmax

__all__ = ["StreamBatch", "load_stream_batch"]


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
        out = self.nodes.step(idx, inputs)
        if len(idx) == 1 and self._pool is None:  # one stream: the lone model's softmax
            probs = [softmax(np.asarray(out.pooled[0], np.float64))]
        else:
            logits = out.pooled if self._pool is None else self._pool(idx, out.logits)
            probs = softmax_rows(logits.astype(np.float64))
        units = self.nodes.node.n_units
        return [StepResult(p, ev, units, syn)
                for p, ev, syn in zip(probs, out.events.tolist(), out.synops.tolist(), strict=True)]

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
    check_model_path(path, backend)
    if backend == "node":
        return NodeStreamBatch(path, n, numerics, window_s, **node_options)
    from s2node.batch_torch import TorchStreamBatch

    return TorchStreamBatch(path, n, window_s)
