"""Several streams on one model file, stepped together: `load_stream_batch(path, n)` -> `StreamBatch`.

Each stream has its own state; `step_many` steps the streams given (stream index -> its input this tick) and
leaves the others as they are. This form keeps one StepModel per stream and steps them one after another.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from s2node.step import Backend, StepCounters, StepModel, StepResult, load_step_model


class StreamBatch:
    """n streams of one model: per-stream state, counters and stats, stepped by stream index."""

    def __init__(self, models: list[StepModel]) -> None:
        if not models:
            raise ValueError("a stream batch needs at least one stream")
        self._models = models
        self.config: dict[str, Any] = models[0].config
        self.name: str = models[0].name
        self.n: int = len(models)

    def step_many(self, xs: Mapping[int, np.ndarray | int]) -> dict[int, StepResult]:
        return {i: self._models[i].step(x) for i, x in xs.items()}

    def deliver(self, i: int, x: np.ndarray) -> None:
        self._models[i].deliver(x)

    def reset(self, i: int) -> None:
        self._models[i].reset()

    def counters(self, i: int) -> StepCounters:
        return self._models[i].counters

    def node_stats(self, i: int) -> dict[str, Any]:
        return self._models[i].node_stats()


def load_stream_batch(path: str | Path, n: int, backend: Backend = "node", *, numerics: str = "fp32",
                      window_s: float | None = None, **node_options: Any) -> StreamBatch:
    """n streams of the model file at path (load_step_model's arguments; ModelFileError when it is missing)."""
    if n <= 0:
        raise ValueError(f"a stream batch needs at least one stream, not {n}")
    return StreamBatch([load_step_model(path, backend, numerics=numerics, window_s=window_s, **node_options)
                        for _ in range(n)])
