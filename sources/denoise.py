"""Background-activity filter (Delbruck 2008; tonic's `denoise`): drop events with no recent neighbour.

An event at pixel (x, y) and time t passes when one of its neighbours (8; or 4, as tonic's `denoise_numpy`)
holds a last event time > t - dt_us, the neighbour's last event before it in stream order; every event, passed or
not, then sets its own pixel's last time. That is the per-event loop itself, compiled with Numba
(`sources/denoise_loop.py`): each event reads its 8 neighbours' last times from a table over the sensor padded by
one pixel all round (a neighbour off the sensor is a pixel that never fires: no edge tests) and writes its own:
one call per batch, where vectorised NumPy (sorts and searches, or gathers of all neighbours) paid tens, and a live
binner's batches are a millisecond, ~100 events at 100 k ev/s. The last time per pixel carries over from batch to
batch, so any chunking of a stream equals one call. `sources.binning` runs the same per-event test inside its own
compiled pass (`table`, `account`).

Events outside the sensor are neither judged nor remembered: they pass, for the binner to drop and count.
"""

from __future__ import annotations

import numpy as np

from sources.errors import SourceError
from sources.events import EVENT_DTYPE

NEVER = -(2**62)  # a pixel's last time before it has fired: no event is within dt of it
T_LIMIT_US = 2**60  # times are clipped to ±this (as sources.binning), so t - dt cannot overflow

OFFSETS = {4: ((1, 0), (-1, 0), (0, 1), (0, -1)),
           8: ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (-1, 1), (1, -1))}


class Denoiser:
    """Stateful background-activity filter over event batches; `dropped` counts the events it removed."""

    def __init__(self, width: int, height: int, dt_us: int, neighbours: int = 8) -> None:
        if min(width, height) <= 0 or dt_us <= 0:
            raise SourceError(f"denoiser: sensor size and dt_us must be positive, not {width}x{height}, {dt_us}")
        if dt_us > T_LIMIT_US:
            raise SourceError(f"denoiser: dt_us must be at most 2^60, not {dt_us}")
        if neighbours not in OFFSETS:
            raise SourceError(f"denoiser: neighbours must be 4 or 8, not {neighbours}")
        from sources.denoise_loop import decide  # Numba: imported when a filter is made, not with this module

        self._decide = decide
        self.width, self.height, self.dt_us, self.neighbours = width, height, dt_us, neighbours
        self._pw = width + 2  # padded row length
        self._offsets = np.array([dy * self._pw + dx for dx, dy in OFFSETS[neighbours]], np.int64)
        self.last_t = np.full(self._pw * (height + 2), NEVER, np.int64)  # last event time per padded pixel
        self.events_in = 0
        self.dropped = 0
        # compiled (or loaded from the cache) now rather than at a live stream's first batch: the batch fields'
        # array type (strided views of the event records) on a scratch table, so no state changes
        warm = np.zeros(2, EVENT_DTYPE)
        decide(warm["x"], warm["y"], warm["t"], width, height, self._pw, np.empty_like(self.last_t), self._offsets,
               dt_us, T_LIMIT_US, np.empty(2, bool))

    def table(self) -> tuple[int, np.ndarray, np.ndarray, int]:
        """(padded row length, last time per padded pixel, neighbour offsets, dt_us): the state and parameters a
        compiled loop needs to run this filter's test (`denoise_loop.passes`); the loop updates the table."""
        return self._pw, self.last_t, self._offsets, self.dt_us

    def account(self, events_in: int, dropped: int) -> None:
        """Count a batch that a compiled loop filtered with this filter's `table`."""
        self.events_in += events_in
        self.dropped += dropped

    def filter(self, events: np.ndarray) -> np.ndarray:
        """The events of a batch that pass, in their order (a new array; the input is not modified)."""
        n = int(events.size)
        self.events_in += n
        keep = np.empty(n, bool)
        kept = self._decide(events["x"], events["y"], events["t"], self.width, self.height, self._pw, self.last_t,
                            self._offsets, self.dt_us, T_LIMIT_US, keep)
        self.dropped += n - kept
        return events[keep] if kept < n else events.copy()
