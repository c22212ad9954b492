"""The background-activity filter's per-event loop (`sources.denoise`), compiled with Numba.

Numba comes with the project (librosa, through tonic, depends on it). Compiled code is cached beside this file
(`cache=True`): a new process loads it instead of compiling again.
"""

from __future__ import annotations

import warnings

from numba import njit
from numba.core.errors import NumbaWarning


def _jit(fn):
    """njit with the compiled code cached on disk where the package folder is writable, in memory otherwise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumbaWarning)
        try:
            return njit(cache=True, nogil=True, boundscheck=False)(fn)
        except RuntimeError:  # no writable cache location
            return njit(nogil=True, boundscheck=False)(fn)


@_jit
def decide(x, y, t, width, height, pw, last_t, offsets, dt, t_limit, keep):  # pragma: no cover - compiled
    """keep[i] = whether event i passes; returns how many do. x, y, t: the batch's fields (any strides); last_t:
    each padded pixel's last time (row length pw), updated; offsets: the neighbours' index offsets; t clipped to
    ±t_limit. An event off the sensor passes without being judged or remembered."""
    kept = 0
    for i in range(x.shape[0]):
        xi, yi = x[i], y[i]
        if xi >= width or yi >= height:
            keep[i] = True
            kept += 1
            continue
        ti = min(max(t[i], -t_limit), t_limit)
        p = (yi + 1) * pw + xi + 1
        thr = ti - dt
        passed = False
        for o in offsets:
            if last_t[p + o] > thr:
                passed = True
                break
        keep[i] = passed
        kept += passed
        last_t[p] = ti
    return kept
