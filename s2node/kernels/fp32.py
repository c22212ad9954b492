"""fp32 numerics, as on the Cortex-M4F FPU: float32 weights, float32 accumulation.

Agrees with the PyTorch model to float rounding; only the summation order differs (over active columns here,
over all inputs in PyTorch's matmul, where the zero inputs add exact zeros). A layer's events take one product for
its recurrent weights and the next layer's (or the decoder's) input weights side by side (`FusedEvents`): each
output's sum runs over the same active rows, which BLAS may group otherwise than in two separate products, so the
two agree to float rounding.
"""

from __future__ import annotations

import numpy as np

from s2node.kernels.base import DENSE_GATHER_RATIO, F32, Kernel, batch_plan, maybe_sparse, scatter, stream_rows
from s2node.spec import ModelSpec


class Fp32Kernel(Kernel):
    numerics = "fp32"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        # Column-major: Wt[source] is the column one packet from `source` touches (contiguous in memory).
        self.w = [
            {"ih": np.ascontiguousarray(layer.weight_ih.T, F32), "hh": np.ascontiguousarray(layer.weight_hh.T, F32)}
            for layer in spec.layers
        ]
        self.w.append({"ih": np.ascontiguousarray(spec.decoder_weight.T, F32)})
        self.zeros = [np.zeros(w["ih"].shape[1], F32) for w in self.w]
        self.csc = [{k: maybe_sparse(v) for k, v in w.items()} for w in self.w]  # pruned matrices
        self.fused = [self.fuse(li) for li in range(len(self.hidden))]  # one product per layer's events

    def accumulate(self, group: int, kind: str, cols: np.ndarray, vals: np.ndarray) -> np.ndarray:
        wt = self.w[group][kind]
        if len(cols) == 0:
            return self.zeros[group].copy()  # no packets, no work
        sparse = self.csc[group][kind]
        if sparse is not None and sparse.worth_it(cols):
            return sparse.matvec(cols, vals).astype(F32)
        if len(cols) == wt.shape[0]:
            return vals.astype(F32, copy=False) @ wt  # every source active (e.g. an embedding vector)
        if len(cols) * DENSE_GATHER_RATIO > wt.shape[0]:
            return scatter(cols, vals, wt.shape[0], F32) @ wt
        return vals.astype(F32, copy=False) @ wt.take(cols, 0)  # the rows wt[cols], with less overhead per call

    def accumulate_many(self, group: int, kind: str, x: np.ndarray) -> np.ndarray:
        wt = self.w[group][kind]
        how, cols = batch_plan(x, wt, self.csc[group][kind])
        if how == "none":
            return np.zeros((x.shape[0], wt.shape[1]), F32)
        if how == "sparse":
            return self.csc[group][kind].matmat(x).astype(F32)
        x = x.astype(F32, copy=False)
        if how == "rows":  # each stream as `accumulate` gathers it
            out = np.zeros((x.shape[0], wt.shape[1]), F32)
            for s, cols, vals in stream_rows(x):
                out[s] = vals @ wt[cols]
            return out
        if how == "dense":
            return x @ wt
        return x[:, cols] @ wt[cols]
