"""The PyTorch reference behind StreamBatch: one batched call of the model's rnn for the streams of a tick.

Each layer's state lives in [streams, ...] tensors (EGRU: y and c, [n, H]; LSTM: h and c, GRU: h, [1, n, H]);
a tick gathers the rows of the stepping streams, runs the stack once on them and writes the rows back. Zeros
are every architecture's initial state, so a reset is a row set to zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2node.batch_base import StreamBatch, softmax_rows
from s2node.errors import S2NodeError
from s2node.models import load_torch_model
from s2node.node_batch import PoolingMany
from s2node.readout import ReadoutSpec
from s2node.step import StepResult
from s2node.torch_egru import EGRUState


class TorchStreamBatch(StreamBatch):
    def __init__(self, path: str | Path, n: int, window_s: float | None = None) -> None:
        model, config = load_torch_model(path)
        super().__init__(path, n, config, window_s)
        self.model = model
        self._arch = config["arch"]
        self._n_in = config["layers"][0]["input_size"]
        with torch.no_grad():
            self._state = [self._zeros(layer) for layer in model.rnn.layers]
        ro = ReadoutSpec.from_config(config)
        hidden = config["layers"][-1]["hidden_size"]
        self._alpha = ro.trace_alpha if ro.source == "trace" else None
        self._u = torch.zeros(n, hidden)  # the trace of the last layer's y
        n_out = model.decoder.out_features
        self._pool = PoolingMany("window", n, n_out, self._window) if self._window else PoolingMany(ro.pool, n, n_out)
        self._early = np.zeros((n, self._n_in), np.float32)
        self._has_early = np.zeros(n, bool)
        self._parked: int | None = None  # the stream whose state is _parked_states, not in the buffers
        self._parked_states: list = []

    def _zeros(self, layer: torch.nn.Module) -> tuple[torch.Tensor, ...]:
        h = layer.hidden_size
        if self._arch == "egru":
            return torch.zeros(self.n, h), torch.zeros(self.n, h)
        if self._arch == "lstm":
            return torch.zeros(1, self.n, h), torch.zeros(1, self.n, h)
        return (torch.zeros(1, self.n, h),)

    def _batch_dim(self) -> int:
        return 0 if self._arch == "egru" else 1

    def _gather(self, idx: torch.Tensor) -> list:
        d = self._batch_dim()
        out = []
        for comps in self._state:
            rows = [t.index_select(d, idx) for t in comps]
            out.append(EGRUState(*rows) if self._arch == "egru" else tuple(rows) if len(rows) > 1 else rows[0])
        return out

    def _scatter(self, idx: torch.Tensor, states: list) -> None:
        d = self._batch_dim()
        for comps, st in zip(self._state, states, strict=True):
            new = (st,) if isinstance(st, torch.Tensor) else tuple(st)
            for t, v in zip(comps, new, strict=True):
                t.index_copy_(d, idx, v)

    def _unpark(self) -> None:
        if self._parked is not None:
            self._scatter(torch.tensor([self._parked]), self._parked_states)
            self._parked, self._parked_states = None, []

    def _inputs(self, idx: np.ndarray, inputs: list[Any]) -> torch.Tensor:
        if self.task == "lm":
            vocab = self.model.embedding.num_embeddings
            toks = torch.tensor([int(t) for t in inputs], dtype=torch.long)
            bad = (toks < 0) | (toks >= vocab)
            if bool(bad.any()):
                raise S2NodeError(f"token id {int(toks[bad][0])} outside the vocabulary of {vocab}")
            return self.model.embedding(toks[:, None])
        x = np.stack([np.asarray(v, np.float32).reshape(-1) if np.size(v) == self._n_in else self._bad(v)
                      for v in inputs])
        early = self._has_early[idx]
        if early.any():  # the delivered part first, then the tick's own (the lone model's order)
            x[early] = self._early[idx[early]] + x[early]
            self._early[idx[early]], self._has_early[idx[early]] = 0, False
        return torch.from_numpy(x)[:, None]

    def _bad(self, v: Any) -> np.ndarray:
        raise S2NodeError(f"input has {np.size(v)} values, the model takes {self._n_in}")

    def _step(self, idx: np.ndarray, inputs: list[Any]) -> list[StepResult]:
        ti = torch.from_numpy(idx)
        with torch.no_grad():
            x = self._inputs(idx, inputs)
            if len(idx) == 1 and self._parked == int(idx[0]):
                states = self._parked_states
            else:
                self._unpark()
                states = self._gather(ti)
            h, states, ev = self.model.rnn(x, states)
            if len(idx) == 1:  # a stream stepping alone keeps its state out of the buffers until another tick
                self._parked, self._parked_states = int(idx[0]), states
            else:
                self._scatter(ti, states)
            y = h[:, -1]
            if self._alpha is not None and self.task != "lm":  # from u = 0, α·0 + (1 - α)·v is Trace's first step
                y = self._alpha * self._u.index_select(0, ti) + (1.0 - self._alpha) * y
                self._u.index_copy_(0, ti, y)
            logits = self.model.decoder(y).double().numpy()
        if self.task != "lm":
            logits = self._pool(idx, logits)
        probs = softmax_rows(logits)
        fired = sum(o[:, -1].sum(1) for o in ev).tolist() if ev else [0] * len(idx)
        units = int(sum(o.shape[-1] for o in ev))
        return [StepResult(p, int(f), units) for p, f in zip(probs, fired, strict=True)]

    def deliver(self, i: int, x: np.ndarray) -> None:
        self._check(i)
        if self.task == "lm":
            raise S2NodeError("deliver() is for event input; a language model takes one token per step")
        self._early[i] += np.asarray(x, np.float32).reshape(-1) if np.size(x) == self._n_in else self._bad(x)
        self._has_early[i] = True

    def reset(self, i: int) -> None:
        self._check(i)
        if self._parked == i:
            self._parked, self._parked_states = None, []
        d = self._batch_dim()
        for comps in self._state:
            for t in comps:
                t.select(d, i).zero_()
        self._u[i] = 0
        self._pool.reset(i)
        self._early[i], self._has_early[i] = 0, False

    def node_stats(self, i: int) -> dict[str, Any]:
        c = self.counters(i)
        s = np.asarray(c.step_s[-512:] or [0.0])
        return {"steps": c.steps, "activity_sparsity": c.activity_sparsity,
                "latency_p50_s": float(np.percentile(s, 50)), "latency_p99_s": float(np.percentile(s, 99))}
