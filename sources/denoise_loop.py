"""The background-activity filter's per-event loop (`sources.denoise`), compiled with Numba (`sources.jit`)."""

from __future__ import annotations

from sources.jit import jit


@jit
def passes(p, ti, last_t, offsets, dt):  # pragma: no cover - compiled
    """Whether an event at padded pixel p and time ti has a neighbour whose last time is within dt before it; then
    its own last time is ti (whether it passes or not)."""
    thr = ti - dt
    passed = False
    for o in offsets:
        if last_t[p + o] > thr:
            passed = True
            break
    last_t[p] = ti
    return passed


@jit
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
        passed = passes((yi + 1) * pw + xi + 1, min(max(t[i], -t_limit), t_limit), last_t, offsets, dt)
        keep[i] = passed
        kept += passed
    return kept
