"""File replay paced by event timestamps: `--speed X` (0 = as fast as possible), `--loop`, start/end offsets.

Decoding belongs to sources.files (`iter_events(path, chunk_us)`); only the timing policy lives here.
Pacing uses the event loop's clock, so a virtual-clock test loop replays a minute of events in no time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sources.binning import GAP_MAX_US  # the file rule: a longer jump (either way) is cut to it, counted
from sources.events import EventBatch


def iter_file(path: str | Path, chunk_us: int) -> Iterator[np.ndarray]:
    """Event batches of a file (any format sources.files reads), one window of chunk_us event time each."""
    from sources.files import check_file, iter_events

    yield from iter_events(check_file(path), chunk_us)


@dataclass
class ReplayControl:
    """Live knobs of a replay (set from the control topic): pause/resume, speed, switching recording."""

    speed: float = 1.0
    paused: bool = False
    switch_to: str | None = None  # a new recording: the current replay ends at its next batch
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def set_speed(self, speed: float) -> None:
        self.speed = max(0.0, float(speed))
        self.changed.set()

    def pause(self) -> None:
        self.paused = True
        self.changed.set()

    def resume(self) -> None:
        self.paused = False
        self.changed.set()

    def switch(self, recording: str) -> None:
        self.switch_to = recording
        self.changed.set()




READ_CHUNK_US = 50_000  # event time read from the file at once; split into chunk_us windows here


@dataclass
class ReplayStats:
    """What a replay skipped: jumps in the file's event time longer than GAP_MAX_US, cut to GAP_MAX_US."""

    gaps_cut: int = 0
    skipped_us: int = 0


def _windows(t: np.ndarray, lo: int, hi: int, base: int, chunk_us: int) -> Iterator[tuple[int, int, int]]:
    """(k, start, end) of each non-empty window [base + k·chunk_us, base + (k+1)·chunk_us) of the sorted times
    t[lo:hi]: searchsorted at the window edges when there are fewer windows than events (a replay's common case:
    no pass over the events), else the changes of k between consecutive events."""
    if hi <= lo:
        return
    k0 = (int(t[lo]) - base) // chunk_us
    k1 = (int(t[hi - 1]) - base) // chunk_us
    if k1 - k0 < hi - lo:
        ks = np.arange(k0, k1 + 1)
        cuts = np.searchsorted(t[lo:hi], base + (ks[1:] * chunk_us)) + lo
    else:
        k = (t[lo:hi] - base) // chunk_us
        at = np.flatnonzero(k[1:] != k[:-1]) + 1
        ks, cuts = k[np.r_[0, at]], at + lo
    starts, ends = np.r_[lo, cuts], np.r_[cuts, hi]
    full = ends > starts
    yield from zip(ks[full].tolist(), starts[full].tolist(), ends[full].tolist(), strict=True)


def replay_windows(
    path: str | Path, chunk_us: int, start_us: int, end_us: int | None, gap_max_us: int = GAP_MAX_US,
    stats: ReplayStats | None = None,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """(base, k, events) for the windows [base + k·chunk_us, base + (k+1)·chunk_us) that hold events, where
    base = first event + start_us: windows (and so bin ends, when chunk_us divides bin_us) line up with the
    recording's own start. Empty windows are skipped. A jump of more than gap_max_us between consecutive windows,
    forward (a quiet hour, a corrupt timestamp) or back (a clock reset), moves base so that the jump is
    gap_max_us forward: the replay's pacing and binning never pay for more than that per jump."""
    st = stats if stats is not None else ReplayStats()
    gap_w = max(1, gap_max_us // chunk_us)
    base: int | None = None
    shift = 0  # windows cut out so far (negative after a jump back)
    pending: np.ndarray | None = None
    pk, pbase = -1, 0
    # read in larger pieces than the windows: a reader's fixed cost per piece (a decoder call, its stderr guard)
    # would otherwise come once per millisecond of recording
    for chunk in iter_file(path, max(chunk_us, READ_CHUNK_US)):
        t = chunk["t"]
        if base is None:
            base = int(t[0]) + start_us
        lo = int(np.searchsorted(t, base))  # a piece is sorted by t (sources.files): what is kept is one slice
        hi = len(t) if end_us is None else int(np.searchsorted(t, base + end_us - start_us))
        for kg, a, b in _windows(t, lo, hi, base, chunk_us):
            kw = kg - shift
            if pending is not None and kw == pk:
                pending = np.concatenate([pending, chunk[a:b]])
                continue
            if pending is not None and not -gap_w <= kw - pk <= gap_w:
                st.gaps_cut += 1
                st.skipped_us += abs(kw - pk - gap_w) * chunk_us
                shift += kw - pk - gap_w
                kw = pk + gap_w
            if pending is not None:
                yield pbase, pk, pending
            pending, pk, pbase = chunk[a:b], kw, base + shift * chunk_us
        if end_us is not None and int(t[-1]) - base >= end_us - start_us:
            break
    if pending is not None and base is not None:
        yield pbase, pk, pending


async def _changed_within(ctl: ReplayControl, delay_s: float) -> bool:
    """Sleep delay_s, or less when a control command arrives (True then): a pause, a new speed or a switch does not
    wait for the current window's release, however far away a slow speed has put it."""
    ctl.changed.clear()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay_s):
            await ctl.changed.wait()
            return True
    return False


async def replay(
    path: str | Path,
    *,
    speed: float = 1.0,
    loop: bool = False,
    start_s: float = 0.0,
    end_s: float | None = None,
    chunk_us: int = 1000,
    control: ReplayControl | None = None,
    stats: ReplayStats | None = None,
) -> AsyncIterator[EventBatch]:
    """Yield the file's events window by window (chunk_us of event time each), each released when the wall
    clock reaches the window's end (scaled by the speed), with the window's end as the watermark. Jumps in event
    time beyond GAP_MAX_US are cut to it (counted in `stats`)."""
    ctl = control or ReplayControl(speed=speed)
    aloop = asyncio.get_running_loop()
    start_us = round(start_s * 1e6)
    end_us = None if end_s is None else round(end_s * 1e6)
    anchor: tuple[float, int] | None = None  # (loop time, event time) of the last re-anchoring
    speed_seen = ctl.speed
    next_base: int | None = None  # where the next pass starts on the output clock (--loop)
    while True:
        out_base: int | None = None
        last_upto: int | None = None
        for n, (base, k, ev) in enumerate(replay_windows(path, chunk_us, start_us, end_us, stats=stats)):
            if out_base is None:
                out_base = base if next_base is None else next_base
            ev = ev.copy()
            ev["t"] += out_base - base  # loops keep event time increasing
            upto = out_base + (k + 1) * chunk_us
            while True:  # pause, speed changes and switches take effect between windows and during a wait
                while ctl.paused and ctl.switch_to is None:
                    ctl.changed.clear()
                    await ctl.changed.wait()
                    anchor = None
                if ctl.switch_to is not None:
                    return
                if ctl.speed != speed_seen:
                    anchor, speed_seen = None, ctl.speed
                if ctl.speed <= 0:
                    anchor = None
                    if n % 64 == 0:
                        await asyncio.sleep(0)  # as fast as possible, but let the loop breathe
                    break
                if anchor is None:
                    anchor = (aloop.time(), upto - chunk_us)
                delay = anchor[0] + (upto - anchor[1]) / 1e6 / ctl.speed - aloop.time()
                if delay <= 0 or not await _changed_within(ctl, delay):
                    break
            yield EventBatch(ev, upto, time.time())
            last_upto = upto
        if not loop or last_upto is None:
            return
        next_base = last_upto
