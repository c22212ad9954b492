"""The node one timestep at a time, as a streaming pipeline drives it: one `StepModel` protocol, two backends.

`NodeStepModel` runs the emulated chip (s2node.runtime.Node) with its cost model; `TorchStepModel` runs the
PyTorch reference. Both read out through s2node.readout (trace, then last/mean/window pooling) and report
the node's side of the stats topic. Both are synchronous and single-owner: the pipeline calls every method
from one worker thread, never from the event loop.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from s2node.errors import ModelFileError, S2NodeError
from s2node.readout import ReadoutSpec, served_window_s, window_steps

Backend = Literal["node", "torch"]
BACKENDS: tuple[Backend, ...] = ("node", "torch")


@dataclass
class StepResult:
    """One timestep's output: probabilities over classes (gesture, pooled) or over the next token (LM)."""

    probs: np.ndarray
    events_out: int = 0  # EGRU output events this step (units that fired)
    units: int = 0  # EGRU units stepped (for activity sparsity)
    synops: int = 0


@dataclass
class StepCounters:
    steps: int = 0
    events_out: int = 0
    units: int = 0
    synops: int = 0
    step_s: list[float] = field(default_factory=list)  # recent step durations (bounded below)

    def add(self, r: StepResult, dt_s: float) -> None:
        self.steps += 1
        self.events_out += r.events_out
        self.units += r.units
        self.synops += r.synops
        self.step_s.append(dt_s)
        if len(self.step_s) > 2048:
            del self.step_s[:1024]

    @property
    def activity_sparsity(self) -> float:
        return 1.0 - self.events_out / self.units if self.units else 0.0


class StepModel(Protocol):
    """What a pipeline needs of a node: config, step, early input, reset, state snapshots, its stats."""

    config: dict[str, Any]
    name: str
    counters: StepCounters

    def step(self, x: np.ndarray | int) -> StepResult: ...

    def deliver(self, x: np.ndarray) -> None:
        """Input of the current timestep that arrived before its end; the next step() adds its own input to it."""
        ...

    def reset(self) -> None: ...

    def get_state(self) -> Any: ...

    def set_state(self, state: Any) -> None: ...

    def node_stats(self) -> dict[str, Any]:
        """The node's fields of the stats topic (stream.schema.NodeStats)."""
        ...


def softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max())
    return e / e.sum()


def bits(p: float) -> float:
    """-log2 p, clipped so an impossible token costs a finite amount."""
    return -math.log2(max(p, 1e-12))


def _latency_stats(step_s: list[float]) -> dict[str, float]:
    s = np.asarray(step_s[-512:] or [0.0])
    return {"latency_p50_s": float(np.percentile(s, 50)), "latency_p99_s": float(np.percentile(s, 99))}


class TorchStepModel:
    """The PyTorch reference, one step of the recurrent stack at a time, read out as in training."""

    def __init__(self, path: str | Path, window_s: float | None = None) -> None:
        import torch

        from s2node.models import load_torch_model

        self._torch = torch
        self.model, self.config = load_torch_model(path)
        self.name = Path(path).name
        self.task = self.config["task"]
        ro = ReadoutSpec.from_config(self.config)
        self._trace, self._pooling = ro.trace(), ro.pooling(window_steps(self.config, window_s))
        self.counters = StepCounters()
        self.reset()

    def reset(self) -> None:
        self._states: list | None = None
        self._early: np.ndarray | None = None
        if self._trace is not None:
            self._trace.reset()
        self._pooling.reset()

    def deliver(self, x: np.ndarray) -> None:
        if self.task == "lm":
            raise S2NodeError("deliver() is for event input; a language model takes one token per step")
        x = np.asarray(x, dtype=np.float32)
        self._early = x.copy() if self._early is None else self._early + x

    def get_state(self) -> Any:
        return (self._states, None if self._trace is None else self._trace.u, self._pooling.get_state())

    def set_state(self, state: Any) -> None:
        self._states, u, pool = state
        if self._trace is not None:
            self._trace.u = u
        self._pooling.set_state(pool)

    def step(self, x: np.ndarray | int) -> StepResult:
        torch = self._torch
        t0 = time.perf_counter()
        with torch.no_grad():
            if self.task == "lm":
                emb = self.model.embedding(torch.tensor([[int(x)]]))
                h, self._states, ev = self.model.rnn(emb, self._states)
                logits = self.model.decoder(h[0, -1]).double().numpy()
            else:
                x = np.asarray(x, dtype=np.float32)
                if self._early is not None:
                    x, self._early = self._early + x, None
                h, self._states, ev = self.model.rnn(torch.from_numpy(x).view(1, 1, -1), self._states)
                y = h[0, -1] if self._trace is None else self._trace(h[0, -1])
                logits = self._pooling(self.model.decoder(y).double().numpy())
        fired = int(sum(int(o.sum()) for o in ev))
        units = int(sum(o.numel() for o in ev))
        r = StepResult(softmax(logits), fired, units)
        self.counters.add(r, time.perf_counter() - t0)
        return r

    def node_stats(self) -> dict[str, Any]:
        c = self.counters
        return {"steps": c.steps, "activity_sparsity": c.activity_sparsity, **_latency_stats(c.step_s)}


class NodeStepModel:
    """The emulated chip behind the same interface, with its cost model's statistics."""

    def __init__(self, path: str | Path, numerics: str = "fp32", window_s: float | None = None,
                 **node_options: Any) -> None:
        from s2node.runtime import Node

        self.node = Node.load(path, numerics=numerics, **node_options)
        self.config = self.node.spec.config
        self.name = Path(path).name
        self.counters = StepCounters()
        steps = window_steps(self.config, window_s)
        # the node pools as its model file says; a stream may bound a mean to a sliding window instead
        self._window = self.node.readout.pooling(steps) if steps and self.node.readout.pool == "mean" else None

    def reset(self) -> None:
        self.settle()
        self.node.reset()
        if self._window is not None:
            self._window.reset()

    def deliver(self, x: np.ndarray) -> None:
        self.settle()
        self.node.deliver(x)

    def get_state(self) -> Any:
        self.settle()
        return self.node.get_state(), None if self._window is None else self._window.get_state()

    def set_state(self, state: Any) -> None:
        self.settle()
        node_state, window = state
        self.node.set_state(node_state)
        if self._window is not None:
            self._window.set_state(window)

    def step(self, x: np.ndarray | int) -> StepResult:
        return self._step(x, True)

    def step_first(self, x: np.ndarray | int) -> StepResult:
        """`step` with the node's bookkeeping (its counters and cost, this StepResult's synops) left for `settle()`
        or the next step, deliver, reset or state call: a stream runs it to publish the prediction before that work
        (stream.pipeline)."""
        return self._step(x, False)

    def settle(self) -> None:
        """The bookkeeping of a `step_first` (nothing if there is none)."""
        st = self.node.settle()
        if st is not None:
            self.counters.synops += int(st.synops)

    def _step(self, x: np.ndarray | int, settle: bool) -> StepResult:
        self.settle()
        t0 = time.perf_counter()
        pred = self.node.step(x, settle)
        logits = pred.logits if self._window is None else self._window(pred.step_logits)
        st = pred.stats
        r = StepResult(softmax(np.asarray(logits, dtype=np.float64)), pred.events_out, self.node.n_units,
                       0 if st is None else int(st.synops))
        self.counters.add(r, time.perf_counter() - t0)
        return r

    def node_stats(self) -> dict[str, Any]:
        return self.node.node_stats()  # read only: a stats loop may call it while the worker thread steps


def load_step_model(path: str | Path, backend: Backend = "node", *, numerics: str = "fp32",
                    window_s: float | None = None, **node_options: Any) -> StepModel:
    """Open a model file with the chosen backend; ModelFileError (one line) when it is missing or bad.
    window_s: for a mean-pooled gesture model, pool over a sliding window of that many seconds instead.
    node_options: `Node.load`'s placement keywords (decoder=, embedding=, layout=, chip=, cost_table=, ...)."""
    check_model_path(path, backend)
    if backend == "node":
        return NodeStepModel(path, numerics, window_s, **node_options)
    return TorchStepModel(path, window_s)


def check_model_path(path: str | Path, backend: str) -> None:
    """S2NodeError for an unknown backend, ModelFileError (one line) when the model's JSON is not there."""
    if backend not in BACKENDS:
        raise S2NodeError(f"backend {backend!r}: use one of {', '.join(BACKENDS)}")
    _model_json(path)


def _model_json(path: str | Path) -> Path:
    from s2node import modelfile

    jpath, _ = modelfile.model_paths(path)
    if not jpath.is_file():
        raise ModelFileError(str(jpath), "model not found (train one with `s2 train`, or pass --model PATH)")
    return jpath


def stream_window_s(path: str | Path, window_s: float | None) -> float:
    """The streaming readout's window for model file `path`: window_s when given (0: the mean since the start),
    else the window the file serves (s2node.readout.served_window_s)."""
    if window_s is not None:
        return window_s
    from s2node import modelfile

    return served_window_s(modelfile.read_config(_model_json(path)))
