"""fp32 numerics, as on the Cortex-M4F FPU: float32 weights, float32 accumulation.

Agrees with the PyTorch model to float rounding; only the summation order differs (over active columns here,
over all inputs in PyTorch's matmul, where the zero inputs add exact zeros). A layer's events take one product for
its recurrent weights and the next layer's (or the decoder's) input weights side by side (`FusedEvents`): each
output's sum runs over the same active rows, which BLAS may group otherwise than in two separate products, so the
two agree to float rounding.
"""

from __future__ import annotations

import numpy as np

from s2node.kernels.base import (
    DENSE_GATHER_RATIO,
    F32,
    ActiveSources,
    Kernel,
    batch_product,
    maybe_sparse,
    scatter,
)
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

    def accumulate_many(self, group: int, kind: str, x: np.ndarray, act: ActiveSources | None = None) -> np.ndarray:
        """act: x's active sources, when the caller has them."""
        x = x.astype(F32, copy=False)
        act = ActiveSources.of(x) if act is None else act
        return batch_product(self.w[group][kind], self.csc[group][kind], act, x).astype(F32, copy=False)

    def accumulate_events_many(self, layer: int, y: np.ndarray,
                               act: ActiveSources) -> tuple[np.ndarray, np.ndarray] | None:
        """Several streams' events of a layer (payloads y [streams, H], active sources act) into both their
        accumulations at once: (recurrent, for the next step; the next layer's input or the decoder's), each
        `accumulate_many`'s to float rounding; None where the layer has no fused matrix (`FusedEvents`, shared with
        the lone node's step)."""
        fused = self.fused[layer]
        if fused is None:
            return None
        out = batch_product(fused.w, None, act, y)
        return out[:, :fused.split], out[:, fused.split:]
