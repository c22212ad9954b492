"""The node as the pipeline sees it: a `StepModel` that takes one timestep and returns probabilities.

Two adapters: `TorchStepModel` (PyTorch reference, s2node.models.load_torch_model) and `NodeStepModel` (the
emulated chip, s2node.runtime.Node). `BACKEND` below picks the default ("auto": the chip emulator when
s2node.runtime is installed, else PyTorch); `S2_BACKEND=torch|node` overrides it. Both are synchronous:
the pipeline calls them from one worker thread (never from the event loop).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

BACKEND = "auto"  # "node" (s2node.runtime.Node, the emulated chip) | "torch" (PyTorch) | "auto": node if present


@dataclass
class StepResult:
    """One timestep's output: probabilities over classes (gesture, pooled so far) or the next token (LM)."""

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
    """What the pipeline needs of a node: config, step, reset, state snapshot for text continuations."""

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


def _softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max())
    return e / e.sum()


class TorchStepModel:
    """PyTorch reference: one step of the recurrent stack at a time, readout and pooling as in training."""

    def __init__(self, path: str | Path) -> None:
        import torch

        from s2node.models import load_torch_model

        torch.set_num_threads(1)  # one worker thread; small matrices gain nothing from more
        self._torch = torch
        self.model, self.config = load_torch_model(path)
        self.name = Path(path).name
        self.task = self.config["task"]
        self.counters = StepCounters()
        self.reset()

    last_step_logits: np.ndarray | None = None  # gesture: this step's logits before pooling

    def reset(self) -> None:
        self._states: list | None = None
        self._trace = None
        self._logit_sum = None
        self._n = 0
        self._early: np.ndarray | None = None

    def deliver(self, x: np.ndarray) -> None:
        if self.task == "lm":
            raise ValueError("deliver() is for event input; a language model takes one token per step")
        x = np.asarray(x, dtype=np.float32)
        self._early = x.copy() if self._early is None else self._early + x

    def get_state(self) -> Any:
        return (self._states, self._trace, self._logit_sum, self._n)

    def set_state(self, state: Any) -> None:
        self._states, self._trace, self._logit_sum, self._n = state

    def step(self, x: np.ndarray | int) -> StepResult:
        torch = self._torch
        t0 = time.perf_counter()
        with torch.no_grad():
            if self.task == "lm":
                emb = self.model.embedding(torch.tensor([[int(x)]]))
                h, self._states, ev = self.model.rnn(emb, self._states)
                logits = self.model.decoder(h[0, -1])
            else:
                x = np.asarray(x, dtype=np.float32)
                if self._early is not None:
                    x, self._early = self._early + x, None
                xt = torch.from_numpy(x).view(1, 1, -1)
                h, self._states, ev = self.model.rnn(xt, self._states)
                ro = self.model.readout
                y = h[0, -1]
                if ro["source"] == "trace":
                    a = float(ro["trace_alpha"])
                    self._trace = (1.0 - a) * y if self._trace is None else a * self._trace + (1.0 - a) * y
                    y = self._trace
                step_logits = self.model.decoder(y)
                self.last_step_logits = step_logits.double().numpy()
                if ro["pool"] == "mean":
                    self._logit_sum = step_logits if self._logit_sum is None else self._logit_sum + step_logits
                    self._n += 1
                    logits = self._logit_sum / self._n
                else:
                    logits = step_logits
            probs = _softmax(logits.double().numpy())
        fired = int(sum(int(o.sum()) for o in ev))
        units = int(sum(o.numel() for o in ev))
        r = StepResult(probs, fired, units)
        self.counters.add(r, time.perf_counter() - t0)
        return r


class NodeStepModel:
    """The emulated chip (s2node.runtime.Node) behind the same interface, with its cost-model statistics."""

    _STATE = ("_c", "_y_idx", "_y_val", "_u", "_pool", "_t")  # Node's sequence state (for text continuations)

    def __init__(self, path: str | Path, numerics: str = "fp32") -> None:
        from s2node.runtime import Node

        self.node = Node.load(path, numerics=numerics)
        self.config = self.node.spec.config
        self.name = Path(path).name
        self.counters = StepCounters()

    def reset(self) -> None:
        self.node.reset()

    def deliver(self, x: np.ndarray) -> None:
        self.node.deliver(x)

    def get_state(self) -> Any:
        import copy

        n = self.node
        return copy.deepcopy([getattr(n, k) for k in self._STATE]), n.stats, n.last

    def set_state(self, state: Any) -> None:
        import copy

        values, stats, last = state
        for k, v in zip(self._STATE, values, strict=True):
            setattr(self.node, k, v)
        self.node.stats, self.node.last = copy.copy(stats), last

    last_step_logits: np.ndarray | None = None  # gesture: this step's logits before pooling

    def step(self, x: np.ndarray | int) -> StepResult:
        t0 = time.perf_counter()
        pool_before = self.node._pool.copy()
        pred = self.node.step(x)
        # the node keeps a float64 running sum of per-step logits for mean pooling: the difference is this step's
        self.last_step_logits = (self.node._pool - pool_before) if self.node._pool_mean else np.asarray(pred.logits)
        st = self.node.last
        units = int(sum(self.node.kernel.hidden))
        r = StepResult(_softmax(np.asarray(pred.logits, dtype=np.float64)), int(st.events_out), units, int(st.synops))
        self.counters.add(r, time.perf_counter() - t0)
        return r

    def extra_stats(self) -> dict[str, Any]:
        """What the chip model adds to NodeStats: per-PE load, SRAM, energy and latency estimates."""
        n, s = self.node, self.node.stats
        chip = n.chip
        out: dict[str, Any] = {}
        if n.last is not None and n.last.cost is not None:
            step_s = self.config.get("input", {}).get("bin_us", 1000) / 1e6
            load = np.asarray(n.last.cost.cycles_per_pe, dtype=np.float64) / (chip.clock_hz * step_s)
            act = np.zeros(chip.n_pes)
            act[: min(len(load), chip.n_pes)] = np.clip(load[: chip.n_pes], 0.0, 1.0)
            out["pe_activity"] = [round(float(v), 4) for v in act]
        with contextlib.suppress(AttributeError):
            out["sram_bytes_used"] = int(n.compiled.sram_total_per_pe.sum())
            out["sram_bytes_total"] = int(chip.sram_bytes_per_pe * chip.n_pes)
        if s.steps:
            out["energy_per_inference_j"] = s.energy_j / s.steps
            lat = np.asarray(s.latencies_s[-1024:])
            out["latency_p50_s"], out["latency_p99_s"] = float(np.percentile(lat, 50)), float(np.percentile(lat, 99))
        return out


class WindowedGesture:
    """Streaming readout for a gesture model: the mean of the per-step logits over the last `window_steps` steps.

    A model trained on windows of a recording pools (mean) over the whole recording when evaluated; on an endless
    stream that mean since the start grows sluggish (minutes of history outvote the current gesture). This keeps
    the model's own per-step readout and only bounds the pooling to a sliding window (e.g. the training window).
    """

    def __init__(self, inner: StepModel, window_steps: int) -> None:
        from collections import deque

        self.inner, self.window_steps = inner, max(1, int(window_steps))
        self._recent: deque[np.ndarray] = deque(maxlen=self.window_steps)

    def __getattr__(self, name: str) -> Any:  # config, name, counters, extra_stats, get/set_state ...
        return getattr(self.inner, name)

    def reset(self) -> None:
        self.inner.reset()
        self._recent.clear()

    def step(self, x: np.ndarray | int) -> StepResult:
        r = self.inner.step(x)
        self._recent.append(np.asarray(self.inner.last_step_logits, dtype=np.float64))
        r.probs = _softmax(np.mean(self._recent, axis=0))
        return r


def windowed(model: StepModel, window_s: float | None) -> StepModel:
    """Wrap a mean-pooled gesture model in a sliding-window readout of window_s seconds (None or 0: as it is)."""
    cfg = model.config
    if not window_s or cfg.get("task") != "gesture" or cfg.get("readout", {}).get("pool") != "mean":
        return model
    return WindowedGesture(model, round(window_s * 1e6 / cfg["input"]["bin_us"]))


def load_step_model(path: str | Path, backend: str | None = None) -> StepModel:
    """Open a model file with the chosen backend; ModelFileError (one line) when it is missing or bad."""
    from s2node import modelfile
    from s2node.errors import ModelFileError

    jpath, _ = modelfile.model_paths(path)
    if not jpath.is_file():
        raise ModelFileError(str(jpath), "model not found (train one with `s2 train`, or pass --model PATH)")
    choice = backend or os.environ.get("S2_BACKEND") or BACKEND
    if choice == "auto":
        try:
            import s2node.runtime  # noqa: F401
        except ImportError:
            choice = "torch"
        else:
            choice = "node"
    return NodeStepModel(path) if choice == "node" else TorchStepModel(path)


def bits(p: float) -> float:
    """-log2 p, clipped so an impossible token costs a finite amount."""
    return -math.log2(max(p, 1e-12))
