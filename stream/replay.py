"""File replay paced by event timestamps: `--speed X` (0 = as fast as possible), `--loop`, start/end offsets.

Decoding belongs to sources.files (`iter_events(path, chunk_us)`); only the timing policy lives here. Until
sources.files is merged, NumPy files (EVENT_DTYPE .npy, with a sidecar-free sensor guess) are read here.
Pacing uses the event loop's clock, so a virtual-clock test loop replays a minute of events in no time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from sources.errors import CorruptFileError, SourceError
from sources.events import EVENT_DTYPE


class EventBatch(NamedTuple):
    events: np.ndarray  # EVENT_DTYPE, times shifted so that loops keep time increasing
    upto_us: int  # watermark: no later event of this stream has t < upto_us (lets bins close on time)
    t_wall: float  # wall clock (time.time()) at which the batch was released (for end-to-end latency)


def _read_npy(path: Path) -> np.ndarray:
    try:
        ev = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise CorruptFileError(str(path), str(e).splitlines()[0] if str(e) else type(e).__name__) from e
    if ev.dtype.names is None or not {"t", "x", "y", "p"} <= set(ev.dtype.names):
        raise CorruptFileError(str(path), f"not an event array (dtype {ev.dtype})")
    out = np.empty(len(ev), dtype=EVENT_DTYPE)
    for k in ("t", "x", "y"):
        out[k] = ev[k]
    out["p"] = ev["p"] > 0
    return out


def iter_file(path: str | Path, chunk_us: int) -> Iterator[np.ndarray]:
    """Event batches of a file: sources.files when available, else the .npy fallback."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    try:
        from sources.files import iter_events
    except ImportError:
        if path.suffix.lower() != ".npy":
            raise SourceError(f"{path}: only .npy can be read until sources.files is installed") from None
        ev = _read_npy(path)
        if len(ev) and np.any(np.diff(ev["t"]) < 0):
            ev = ev[np.argsort(ev["t"], kind="stable")]
        if not len(ev):
            return
        edges = np.arange(ev["t"][0], ev["t"][-1] + chunk_us + 1, chunk_us)
        cuts = np.searchsorted(ev["t"], edges[1:-1])
        yield from (c for c in np.split(ev, cuts) if len(c))
        return
    yield from iter_events(path, chunk_us)


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


async def replay(
    path: str | Path,
    *,
    speed: float = 1.0,
    loop: bool = False,
    start_s: float = 0.0,
    end_s: float | None = None,
    chunk_us: int = 1000,
    control: ReplayControl | None = None,
) -> AsyncIterator[EventBatch]:
    """Yield the file's events in chunks of chunk_us event time, released when the wall clock says so."""
    ctl = control or ReplayControl(speed=speed)
    aloop = asyncio.get_running_loop()
    offset_us = 0  # added per loop so that event time keeps increasing
    anchor: tuple[float, int] | None = None  # (loop time, event time) of the last re-anchoring
    speed_seen = ctl.speed
    while True:
        t_first = t_last = None
        n = 0
        for chunk in iter_file(path, chunk_us):
            if t_first is None:
                t_first = int(chunk["t"][0])
            rel = chunk["t"] - t_first
            if rel[0] < start_s * 1e6 and rel[-1] < start_s * 1e6:
                continue
            if end_s is not None and rel[0] >= end_s * 1e6:
                break
            sel = (rel >= start_s * 1e6) & (rel < (end_s * 1e6 if end_s is not None else np.inf))
            chunk = chunk[sel] if not sel.all() else chunk.copy()
            if not len(chunk):
                continue
            chunk["t"] += offset_us
            t_last = int(chunk["t"][-1])
            upto = t_last + 1
            # pacing: pause, speed changes and switches take effect between chunks
            while ctl.paused and ctl.switch_to is None:
                ctl.changed.clear()
                await ctl.changed.wait()
                anchor = None
            if ctl.switch_to is not None:
                return
            if ctl.speed != speed_seen:
                anchor, speed_seen = None, ctl.speed
            if ctl.speed > 0:
                if anchor is None:
                    anchor = (aloop.time(), int(chunk["t"][0]))
                due = anchor[0] + (upto - anchor[1]) / 1e6 / ctl.speed
                delay = due - aloop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                anchor = None
                if n % 64 == 0:
                    await asyncio.sleep(0)  # as fast as possible, but let the loop breathe
            n += 1
            yield EventBatch(chunk, upto, time.time())
        if not loop or t_first is None or t_last is None:
            return
        offset_us = t_last + 1 - t_first - int(start_s * 1e6)
