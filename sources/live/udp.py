"""Live DVS events over UDP: SPIF 32-bit words (as AEStream's `output spif` sends) or faery's UDP records.

SPIF word (little-endian uint32): bit 31 = no-timestamp flag, bits 30:16 = x, bit 15 = polarity, bits 14:0 = y.
SPIF carries no timestamps, so each datagram's events get its arrival time (µs, monotonic clock). faery's
"t64_x16_y16_on8" format packs 13-byte records (t u64 µs, x u16, y u16, on u8) and keeps its own times.

`UdpEventSource` is an async context manager: an asyncio DatagramProtocol fills a bounded buffer of event
batches; when the consumer lags, the oldest batch is dropped and its events counted (`stats.dropped`), so a
flood costs at most `max_batches` datagrams of memory.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from sources.errors import SourceError
from sources.events import EVENT_DTYPE, EventBatch
from sources.live.watermarks import IDLE_S, idle_watermarks

FAERY_DTYPE = np.dtype([("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("on", "u1")])
FORMATS = ("spif", "faery")


def decode_spif(data: bytes, t_us: int) -> np.ndarray:
    """SPIF words -> EVENT_DTYPE, every event stamped t_us (the datagram's arrival)."""
    w = np.frombuffer(data, dtype="<u4", count=len(data) // 4)
    ev = np.empty(len(w), dtype=EVENT_DTYPE)
    ev["t"] = t_us
    ev["x"] = (w >> 16) & 0x7FFF
    ev["y"] = w & 0x7FFF
    ev["p"] = (w >> 15) & 1
    return ev


def encode_spif(events: np.ndarray) -> bytes:
    """EVENT_DTYPE -> SPIF words with the no-timestamp flag set (what AEStream sends)."""
    x = events["x"].astype(np.uint32) & 0x7FFF
    y = events["y"].astype(np.uint32) & 0x7FFF
    p = (events["p"] > 0).astype(np.uint32)
    return ((1 << 31) | (x << 16) | (p << 15) | y).astype("<u4").tobytes()


def decode_faery(data: bytes) -> np.ndarray:
    r = np.frombuffer(data, dtype=FAERY_DTYPE, count=len(data) // FAERY_DTYPE.itemsize)
    ev = np.empty(len(r), dtype=EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["p"] = r["t"].astype(np.int64), r["x"], r["y"], r["on"] > 0
    return ev


@dataclass
class UdpStats:
    datagrams: int = 0
    events: int = 0
    dropped: int = 0  # events in batches dropped because the consumer lagged
    dropped_batches: int = 0
    malformed: int = 0  # datagrams whose length is not a whole number of records
    kernel_dropped: int = 0  # datagrams the kernel dropped (socket buffer full), as of the last kernel_drops()


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, src: UdpEventSource) -> None:
        self.src = src

    def datagram_received(self, data: bytes, addr) -> None:
        self.src._on_datagram(data)


class UdpEventSource:
    """`async with UdpEventSource(host, port) as src: async for batch in src: ...` (batches of EVENT_DTYPE)."""

    def __init__(self, host: str, port: int, fmt: str = "spif", max_batches: int = 256) -> None:
        if fmt not in FORMATS:
            raise SourceError(f"udp format {fmt!r} unknown (use one of {FORMATS})")
        self.host, self.port, self.fmt, self.max_batches = host, port, fmt, max_batches
        self.stats = UdpStats()
        self._buf: collections.deque[np.ndarray] = collections.deque()
        self._ready = asyncio.Event()
        self._transport: asyncio.DatagramTransport | None = None
        self._t0 = time.monotonic_ns() // 1000

    def __len__(self) -> int:
        return len(self._buf)

    def _on_datagram(self, data: bytes) -> None:
        rec = 4 if self.fmt == "spif" else FAERY_DTYPE.itemsize
        if len(data) % rec:
            self.stats.malformed += 1
            return
        self.stats.datagrams += 1
        if self.fmt == "spif":
            ev = decode_spif(data, time.monotonic_ns() // 1000 - self._t0)
        else:
            ev = decode_faery(data)
        self.stats.events += len(ev)
        if len(self._buf) >= self.max_batches:
            old = self._buf.popleft()
            self.stats.dropped += len(old)
            self.stats.dropped_batches += 1
        self._buf.append(ev)
        self._ready.set()

    async def __aenter__(self) -> UdpEventSource:
        loop = asyncio.get_running_loop()
        try:
            self._transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(self), local_addr=(self.host, self.port)
            )
        except OSError as e:
            raise SourceError(f"udp://{self.host}:{self.port}: cannot listen: {e.strerror or e}") from e
        if self.port == 0:
            self.port = self._transport.get_extra_info("sockname")[1]
        return self

    def kernel_drops(self) -> int:
        """Datagrams the kernel dropped for this socket because its receive buffer was full (Linux: the "drops"
        column of /proc/net/udp[6]); the last value read stays in stats.kernel_dropped after close()."""
        sock = self._transport.get_extra_info("socket") if self._transport is not None else None
        if sock is None:
            return self.stats.kernel_dropped
        try:
            inode = str(os.fstat(sock.fileno()).st_ino)
            for table in ("/proc/net/udp", "/proc/net/udp6"):
                with open(table) as f:
                    for row in f:
                        cols = row.split()
                        if len(cols) >= 13 and cols[9] == inode:
                            self.stats.kernel_dropped = int(cols[-1])
                            return self.stats.kernel_dropped
        except (OSError, ValueError):
            pass
        return self.stats.kernel_dropped

    def close(self) -> None:
        """Stop listening; iteration ends once the buffered batches are consumed."""
        if self._transport is not None:
            self.kernel_drops()
            self._transport.close()
            self._transport = None
        self._ready.set()

    async def __aexit__(self, *exc) -> None:
        self.close()

    def __aiter__(self):
        return self

    async def __anext__(self) -> np.ndarray:
        while not self._buf:
            if self._transport is None:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._buf.popleft()


async def udp_batches(src: UdpEventSource, idle_s: float = IDLE_S) -> AsyncIterator[EventBatch]:
    """Live UDP batches, each with its last event as the watermark; idle watermarks while the camera is quiet."""

    async def get() -> EventBatch:
        while True:
            ev = await anext(src)  # StopAsyncIteration once the source is closed
            if len(ev):
                return EventBatch(ev, int(ev["t"][-1]) + 1, time.time())

    async for b in idle_watermarks(get, idle_s):
        yield b
