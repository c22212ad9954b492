"""int8 quantisation as the PE's 16 x 4 8-bit MAC array needs it.

Weights: symmetric, one scale per row (per gate row of a unit): s_w[r] = max_j |W[r, j]| / 127,
q[r, j] = round(W[r, j] / s_w[r]) in [-127, 127]. Payloads (graded events) are int8 too, with one scale per
source kind: unit outputs y lie in (θ, 1) (ĉ is a convex mix of tanh and the previous state), so
s_y = 1/127; language inputs (embedding values sent by the host) use s_x = max|E| / 127; gesture inputs
(binned event counts, whose range depends on the binning) use a per-timestep scale s_x = max|x_t| / 127 that
the host sends as one extra packet with the timestep's events (so integer counts up to 127 stay exact).
Accumulation is exact integer arithmetic: acc[r] = Σ q[r, j]·p[j]; the pre-activation is
acc[r]·(s_w[r]·s_p) + bias[r] in float32 (one float32 factor per row), and the unit update runs in float32 (the
M4F FPU has no double precision).
"""

from __future__ import annotations

import numpy as np

Q_MAX = 127
Y_PAYLOAD_SCALE = 1.0 / Q_MAX


def quantize_rows(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[rows, cols] float -> (int8 q [rows, cols], float32 scale [rows]); zero rows get scale 1."""
    amax = np.abs(weight).max(axis=1) if weight.size else np.zeros(weight.shape[0])
    scale = np.where(amax > 0, amax / Q_MAX, 1.0).astype(np.float32)
    q = np.clip(np.rint(weight / scale[:, None]), -Q_MAX, Q_MAX).astype(np.int8)
    return q, scale


def dequantize_rows(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (q.astype(np.float32) * scale[:, None]).astype(np.float32)


def quantize_payload(values: np.ndarray, scale: float) -> np.ndarray:
    """Graded payloads -> int8 counts of `scale` (as integers in a float64 array, exact for the matmul)."""
    return np.clip(np.rint(np.asarray(values, dtype=np.float64) / scale), -Q_MAX, Q_MAX)


def input_payload_scale(embedding: np.ndarray | None) -> float | None:
    """Static int8 scale of layer-0 input packets for language models; None = per-timestep (gestures)."""
    if embedding is None:
        return None
    m = float(np.abs(embedding).max())
    return m / Q_MAX if m > 0 else 1.0


def dynamic_payload_scale(values: np.ndarray) -> float:
    m = float(np.abs(values).max()) if values.size else 0.0
    return m / Q_MAX if m > 0 else 1.0
