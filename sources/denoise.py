"""Background-activity filter (Delbruck 2008; tonic's `denoise`): drop events with no recent neighbour.

An event at pixel (x, y) and time t passes when one of its neighbours (8; or 4, as tonic's `denoise_numpy`)
holds a last event time > t - dt_us, the neighbour's last event before it in stream order. Every event, passed
or not, sets its own pixel's last time, so a decision never depends on earlier decisions and a whole batch is
decided at once, exactly as the per-event loop:

- the batch is sorted once by (pixel, stream order) (a stable radix sort of 16-bit pixel indices);
- for a pixel pair (p, q = p + offset), one `np.searchsorted` of p's events among q's gives each p-event its
  last q-event before it, and the counts it yields (`np.bincount`, `np.cumsum`) give each q-event its last
  p-event before it: one search per pair of opposite offsets, 4 for 8 neighbours;
- pixels are indexed on the sensor padded by one pixel all round, so a neighbour off the sensor is a pixel
  that never fires (no edge masks);
- the last time per pixel carries over from batch to batch, so any chunking of a stream equals one call.

A live binner's batches are short (a millisecond): when a block's times rise and span less than dt_us, any earlier
event of the block at a neighbour is recent enough, so an event passes when a neighbour fired earlier in the
block or fired recently before it. Two gathers of all neighbours ([8, events]) decide that, with a fraction of
the searches' NumPy calls and the same result (`_decide_recent`; each pixel's first position and latest time in
the block come from `ufunc.at` reductions, without a sort).

Events outside the sensor are neither judged nor remembered: they pass, for the binner to drop and count.
"""

from __future__ import annotations

import numpy as np

from sources.errors import SourceError

NEVER = -(2**62)  # a pixel's last time before it has fired: no event is within dt of it
NEVER_FIRST = 2**62  # `_first` of a pixel without an event in the block: after every position
T_LIMIT_US = 2**60  # times are clipped to ±this (as sources.binning), so t - dt cannot overflow
BLOCK = 1 << 15  # events decided per pass: the searched arrays stay in cache (a batch of any size is exact)
# A batch with fewer events than the padded sensor's pixels / this finds each pixel's first event by a search, not a
# per-pixel table: the table's zeroing, count and sum over every pixel (17,000 on a DVS128) were most of a small
# batch's time (a live binner feeds ~100 events a millisecond at 100 k ev/s)
SMALL_BLOCK_RATIO = 16

# one of each pair of opposite offsets (dx, dy); the merge for (dx, dy) also answers (-dx, -dy)
HALF_OFFSETS = {4: ((1, 0), (0, 1)), 8: ((1, 0), (-1, 1), (0, 1), (1, 1))}


class Denoiser:
    """Stateful background-activity filter over event batches; `dropped` counts the events it removed."""

    def __init__(self, width: int, height: int, dt_us: int, neighbours: int = 8) -> None:
        if min(width, height) <= 0 or dt_us <= 0:
            raise SourceError(f"denoiser: sensor size and dt_us must be positive, not {width}x{height}, {dt_us}")
        if neighbours not in HALF_OFFSETS:
            raise SourceError(f"denoiser: neighbours must be 4 or 8, not {neighbours}")
        self.width, self.height, self.dt_us, self.neighbours = width, height, dt_us, neighbours
        self._pw = width + 2  # padded row length
        self._npx = self._pw * (height + 2)
        self._offsets = [dy * self._pw + dx for dx, dy in HALF_OFFSETS[neighbours]]
        self.last_t = np.full(self._npx, NEVER, np.int64)  # last event time per padded pixel
        # both offsets of each pair, and a per-pixel scratch of first block positions (`_decide_recent`)
        self._all_offsets = np.array([s * o for o in self._offsets for s in (1, -1)], np.int64)
        self._first = np.full(self._npx, NEVER_FIRST, np.int64)
        self.events_in = 0
        self.dropped = 0

    def filter(self, events: np.ndarray) -> np.ndarray:
        """The events of a batch that pass, in their order (a new array; the input is not modified)."""
        n = int(events.size)
        self.events_in += n
        x = events["x"].astype(np.int64)
        y = events["y"].astype(np.int64)
        t = events["t"].astype(np.int64)
        np.maximum(t, -T_LIMIT_US, out=t)
        np.minimum(t, T_LIMIT_US, out=t)
        on = (x < self.width) & (y < self.height)
        pix = (y + 1) * self._pw + x + 1  # padded pixel index (off-sensor events get one too, never used)
        if on.all():  # the usual batch: no event to leave aside, no index to map back through
            keep = self._decide_blocks(pix, t)
        else:
            idx = np.flatnonzero(on)
            keep = ~on
            keep[idx] = self._decide_blocks(pix.take(idx), t.take(idx))
        kept = int(np.count_nonzero(keep))
        self.dropped += n - kept
        return events[keep] if kept < n else events.copy()

    def _decide_blocks(self, pix: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Pass mask of events on the sensor, BLOCK at a time: a short rising block by `_decide_recent`."""
        if not pix.size:
            return np.zeros(0, bool)
        if pix.size <= BLOCK:
            return self._decide_one(pix, t)
        return np.concatenate([self._decide_one(pix[b: b + BLOCK], t[b: b + BLOCK])
                               for b in range(0, pix.size, BLOCK)])

    def _decide_one(self, pix: np.ndarray, t: np.ndarray) -> np.ndarray:
        if t[-1] - t[0] < self.dt_us and not (t[1:] < t[:-1]).any():
            return self._decide_recent(pix, t)
        return self._decide(pix, t)

    def _decide(self, pix: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Pass mask of one block (padded pixel indices, times, in stream order); updates last_t."""
        m = pix.size
        order = _argsort_stable(pix, self._npx)
        ps, ts = pix[order], t[order]
        keys = ps * m + order  # (pixel, stream order), strictly increasing
        if m * SMALL_BLOCK_RATIO < self._npx:  # a small batch: each pixel's first sorted position by a search
            seg = _FirstBySearch(keys, m)
        else:  # a table over the sensor's pixels (its cost does not grow with the batch)
            seg = np.zeros(self._npx + 1, np.int64)  # first sorted position of each pixel's events
            np.cumsum(np.bincount(ps, minlength=self._npx), out=seg[1:])
        thr = ts - self.dt_us
        keep = np.zeros(m, bool)
        last = self.last_t
        for off in self._offsets:
            # p-events against q = p + off: g = sorted events before (q, own order), so q's last is at g - 1
            q = ps + off
            g = np.searchsorted(keys, q * m + order)
            prev = np.where(g > seg.take(q), ts.take(g - 1), last.take(q))
            keep |= prev > thr
            # q-events against p = q - off: c[s] = p-events placed at or before s = seg[p] + p's events before
            c = np.cumsum(np.bincount(g, minlength=m + 1)[:m])
            p = ps - off
            prev = np.where(c > seg.take(p), ts.take(c - 1), last.take(p))
            keep |= prev > thr
        last_of = np.empty(m, bool)  # each pixel's last event in stream order
        last_of[-1] = True
        np.not_equal(ps[1:], ps[:-1], out=last_of[:-1])
        ends = np.flatnonzero(last_of)
        last[ps.take(ends)] = ts.take(ends)
        out = np.empty(m, bool)
        out[order] = keep
        return out

    def _decide_recent(self, pix: np.ndarray, t: np.ndarray) -> np.ndarray:
        """`_decide` of a block whose times never fall and span less than dt_us. An earlier event of the block at
        a neighbour q is then within dt of any later one (t_q >= t_first > t - dt), so an event passes exactly
        when some neighbour fired earlier in the block or last fired within dt before the block. Each pixel's
        first block position and latest time are unbuffered reductions (`ufunc.at`: a repeated pixel keeps the
        least position, the greatest time, which is its last in stream order as times rise), not a sort:
        a live batch is ~100 events, where every NumPy call counts."""
        pos = np.arange(pix.size)
        first, last = self._first, self.last_t
        np.minimum.at(first, pix, pos)
        near = self._all_offsets[:, None] + pix  # [neighbours, events]: the reductions run along whole rows
        keep = np.minimum.reduce(first.take(near)) < pos
        keep |= np.maximum.reduce(last.take(near)) > t - self.dt_us
        first[pix] = NEVER_FIRST  # the scratch is clean again for the next block
        last[pix] = NEVER  # then each pixel's latest time in the block
        np.maximum.at(last, pix, t)
        return keep


class _FirstBySearch:
    """`seg.take(q)` of the table above for a small batch: the first sorted position of pixel q's events (or where
    they would be), found in the sorted (pixel, order) keys, the same integers without a table over the sensor."""

    def __init__(self, keys: np.ndarray, m: int) -> None:
        self.keys, self.m = keys, m

    def take(self, q: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.keys, q * self.m)


def _argsort_stable(values: np.ndarray, bound: int) -> np.ndarray:
    """Stable argsort of non-negative ints below `bound`: NumPy's radix sort on 16-bit keys (one pass, or
    two for larger sensors: low half, then high half)."""
    if bound <= 1 << 16:
        return np.argsort(values.astype(np.uint16), kind="stable")
    lo = np.argsort((values & 0xFFFF).astype(np.uint16), kind="stable")
    return lo[np.argsort((values[lo] >> 16).astype(np.uint16), kind="stable")]
