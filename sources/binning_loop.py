"""The streaming binner's common case as one compiled loop (`sources.binning.Binner.feed`): a batch wholly in the
open bin, or in it and the next (the batch that closes a bin, on a prediction's path), filtered for background
activity and counted per feature in one pass, without the filtered copy, the per-event feature arrays and the
counts that NumPy makes of it."""

from __future__ import annotations

import numpy as np

from sources.denoise_loop import passes
from sources.jit import jit

NOT_HERE = -1  # the batch reaches outside the open bin and the next: nothing was done, the general path binns it


@jit
def count_window(x, y, t, p, width, height, pw, last_t, offsets, dt, filtered, down, gw, gh, start, end, bin_us,
                 t_limit, acc, nxt):  # pragma: no cover - compiled
    """Count a batch into acc (the open bin [start, end)) and nxt (the next bin), each event's feature
    (p > 0, y // down, x // down) in the layout of `sources.binning._features`, after the background-activity
    filter when `filtered` (last_t, offsets, dt: `Denoiser`'s table; an event off the sensor is neither judged nor
    remembered). -> (events counted, removed by the filter, off the grid, whether any reached nxt), or NOT_HERE
    first if some event's time is outside [start, end + bin_us) or ±t_limit: nothing is changed then."""
    n = x.shape[0]
    for i in range(n):
        if t[i] < start or t[i] >= end + bin_us or t[i] < -t_limit or t[i] > t_limit:
            return NOT_HERE, 0, 0, False
    kept = noise = off = 0
    to_next = False
    for i in range(n):
        xi, yi, ti = x[i], y[i], t[i]
        if filtered and xi < width and yi < height and not passes((yi + 1) * pw + xi + 1, ti, last_t, offsets, dt):
            noise += 1
            continue
        xd, yd = xi // down, yi // down
        if xd >= gw or yd >= gh:  # off the grid (x // d < W // d implies x < width)
            off += 1
            continue
        f = ((np.int64(1) if p[i] > 0 else np.int64(0)) * gh + yd) * gw + xd
        if ti < end:
            acc[f] += 1
        else:
            nxt[f] += 1
            to_next = True
        kept += 1
    return kept, noise, off, to_next
