"""A DV software network stream (dv-processing's NetworkReader), read in a thread into a bounded buffer."""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from sources.errors import SourceError
from sources.events import EVENT_DTYPE, EventBatch
from sources.live.watermarks import IDLE_S, idle_watermarks


@dataclass
class DvStats:
    events: int = 0
    dropped: int = 0  # events in batches dropped because the consumer lagged


class _Buffer:
    """Drop-oldest buffer of batches between the reader thread and the loop (filled via call_soon_threadsafe)."""

    def __init__(self, max_batches: int, stats: DvStats) -> None:
        self._items: collections.deque[EventBatch] = collections.deque()
        self._ready = asyncio.Event()
        self.max_batches, self.stats, self.closed = max_batches, stats, False

    def put(self, b: EventBatch) -> None:
        self.stats.events += len(b.events)
        if len(self._items) >= self.max_batches:
            self.stats.dropped += len(self._items.popleft().events)
        self._items.append(b)
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def get(self) -> EventBatch:
        while not self._items:
            if self.closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


async def dv_batches(host: str, port: int, idle_s: float = IDLE_S, max_batches: int = 256,
                     stats: DvStats | None = None) -> AsyncIterator[EventBatch]:
    """Event batches from dv://host:port, each with its last event as the watermark; idle watermarks while the
    camera is quiet. SourceError (one line) when dv-processing is missing or the stream cannot be reached."""
    try:
        import dv_processing as dv
    except ImportError as e:
        raise SourceError("dv:// needs dv-processing (pip install dv-processing)") from e
    try:
        reader = await asyncio.to_thread(dv.io.NetworkReader, host, port)
    except Exception as e:  # dv-processing raises its own runtime errors on connect
        raise SourceError(f"dv://{host}:{port}: cannot connect: {e}") from e
    loop = asyncio.get_running_loop()
    buf = _Buffer(max_batches, stats or DvStats())
    stop = threading.Event()

    def read(reader) -> None:
        while not stop.is_set() and reader.isRunning():
            store = reader.getNextEventBatch()  # non-blocking: None when nothing arrived
            if store is None or len(store) == 0:
                time.sleep(0.0005)
                continue
            a = store.numpy()
            ev = np.empty(len(a), EVENT_DTYPE)
            ev["t"], ev["x"], ev["y"], ev["p"] = a["timestamp"], a["x"], a["y"], a["polarity"]
            loop.call_soon_threadsafe(buf.put, EventBatch(ev, int(ev["t"][-1]) + 1, time.time()))
        loop.call_soon_threadsafe(buf.close)

    t = threading.Thread(target=read, args=(reader,), daemon=True)
    t.start()
    try:
        async for b in idle_watermarks(buf.get, idle_s):
            yield b
    finally:
        stop.set()  # the reader thread ends before the reader is destroyed (its destructor needs the GIL free)
        await asyncio.to_thread(t.join, 2.0)
