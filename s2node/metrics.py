"""NeuroBench-style counters, shared by `s2 eval`, `s2 node run` and the benchmarks.

Definitions (NeuroBench, for the recurrent and input layers; biases not counted, decoder not counted):
- synaptic operations (synops): products of a NON-ZERO input with a NON-ZERO weight. For an EGRU layer at
  one step: sum over the non-zero entries x_j of the input of nnz(W_ih[:, j]), plus sum over the non-zero
  previous outputs y_k of nnz(W_hh[:, k]). Dense LSTM/GRU outputs are (almost) never zero, so they pay all.
- dense operations: every weight of those layers, every step (what a dense implementation multiplies).
- activity sparsity: fraction of zero outputs y over all units and steps of all recurrent layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def column_nnz(weight: np.ndarray) -> np.ndarray:
    """nnz per input column of a [rows, inputs] weight: what one non-zero input on that column costs."""
    return np.count_nonzero(weight, axis=0).astype(np.int64)


def dense_ops_per_step(tensors: dict[str, np.ndarray], n_layers: int) -> int:
    """Multiplies per step of a dense implementation of the recurrent stack (input + recurrent weights)."""
    return int(sum(tensors[f"rnn.{i}.weight_ih"].size + tensors[f"rnn.{i}.weight_hh"].size for i in range(n_layers)))


@dataclass
class ActivityCounter:
    """Accumulates synops and activity over steps. Feed it, per layer, the layer input and the previous output.

    `add(layer, x, y_prev, y)`: x [N, I] (N steps or batch*steps), y_prev [N, H] the outputs fed back at
    those steps, y [N, H] the outputs produced (for sparsity).
    """

    tensors: dict[str, np.ndarray]
    n_layers: int
    synops: int = 0
    zeros: int = 0
    outputs: int = 0
    steps: int = 0
    _nnz_ih: list[np.ndarray] = field(default_factory=list)
    _nnz_hh: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._nnz_ih = [column_nnz(self.tensors[f"rnn.{i}.weight_ih"]) for i in range(self.n_layers)]
        self._nnz_hh = [column_nnz(self.tensors[f"rnn.{i}.weight_hh"]) for i in range(self.n_layers)]

    def add(self, layer: int, x: np.ndarray, y_prev: np.ndarray, y: np.ndarray) -> None:
        x, y_prev, y = np.asarray(x), np.asarray(y_prev), np.asarray(y)
        self.synops += int(((x != 0) @ self._nnz_ih[layer]).sum())
        self.synops += int(((y_prev != 0) @ self._nnz_hh[layer]).sum())
        self.zeros += int(np.count_nonzero(y == 0))
        self.outputs += int(y.size)
        if layer == 0:
            self.steps += int(x.shape[0])

    @property
    def activity_sparsity(self) -> float:
        return self.zeros / self.outputs if self.outputs else 0.0

    @property
    def synops_per_step(self) -> float:
        return self.synops / self.steps if self.steps else 0.0

    def summary(self) -> dict[str, float | int]:
        return {
            "activity_sparsity": self.activity_sparsity,
            "synops_per_step": self.synops_per_step,
            "dense_ops_per_step": dense_ops_per_step(self.tensors, self.n_layers),
            "steps": self.steps,
        }


def count_params(tensors: dict[str, np.ndarray]) -> int:
    return int(sum(t.size for t in tensors.values()))
