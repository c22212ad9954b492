"""The int8 kernel's two hot products compiled with Numba, as the MAC array does them: int8 weights, integer sums.

A lone node's step applies a few tens of active sources to matrices of hundreds of rows. In NumPy that is a
chain of small calls (quantise, gather float32 copies of the levels, product, rescale, bias), each costing more
than its arithmetic; here each product is one call that reads the int8 levels themselves (a quarter of float32's
bytes) and sums them in int32, exact below 2^31 (`fits`). The results are bit-identical to the NumPy path of
`Int8Kernel` (tested): the same float64 quotients rounded half to even, the same integers, each converted to
float32 and times the same float32 factor, then the bias added, one float32 rounding per operation (no fused
multiply-add: Numba's default keeps IEEE semantics).

Compiled by `sources.jit` (cached on disk: about 2 s per function on 2 cores the first time only); this module is
imported only when an int8 kernel is made.
"""

from __future__ import annotations

import numpy as np

from sources.jit import jit

ACC_MAX = 2**31  # int32 accumulators: every possible |Σ q·p| must stay below this


def fits(levels: np.ndarray, payload_max: int = 127) -> bool:
    """Whether int32 sums of these levels ([sources, rows]) with payloads up to payload_max are exact."""
    return not levels.size or payload_max * int(np.abs(levels.astype(np.int64)).sum(0).max()) < ACC_MAX


@jit
def input_gates(vals, cols, w8, s_w, bias):  # pragma: no cover - compiled
    """Gesture input with its per-timestep payload scale s_p = max|x| / 127: payloads rint(x / s_p) (float64),
    acc = Σ p · w8[col] (int32), out = float32(acc) · (s_w · float32(s_p)) + bias, all float32."""
    n, rows = vals.shape[0], w8.shape[1]
    m = 0.0
    for i in range(n):
        a = abs(np.float64(vals[i]))
        if not a < np.inf:  # inf or NaN input: no integer payloads; the caller takes NumPy's path
            return np.empty(0, np.float32)
        if a > m:
            m = a
    sp = m / 127 if m > 0 else 1.0
    acc = np.zeros(rows, np.int32)
    for i in range(n):
        p = np.int32(np.rint(np.float64(vals[i]) / sp))  # |x| / s_p <= 127: no clip can act
        row = w8[cols[i]]
        for r in range(rows):
            acc[r] += p * row[r]
    f = np.float32(sp)
    out = np.empty(rows, np.float32)
    for r in range(rows):
        out[r] = np.float32(acc[r]) * (s_w[r] * f) + bias[r]
    return out


@jit
def event_gates(vals, cols, bounds, w8, scaled, bias):  # pragma: no cover - compiled
    """Unit events into a fused matrix: payloads by their bounds (`unit_payload_bounds`: the number of bounds <= y),
    acc = Σ p · w8[col] (int32), out = float32(acc) · scaled, plus the bias on its first len(bias) outputs."""
    n, rows = vals.shape[0], w8.shape[1]
    acc = np.zeros(rows, np.int32)
    for i in range(n):
        p = np.int32(np.searchsorted(bounds, vals[i], side="right"))
        row = w8[cols[i]]
        for r in range(rows):
            acc[r] += p * row[r]
    out = np.empty(rows, np.float32)
    nb = bias.shape[0]
    for r in range(nb):
        out[r] = np.float32(acc[r]) * scaled[r] + bias[r]
    for r in range(nb, rows):
        out[r] = np.float32(acc[r]) * scaled[r]
    return out
