"""Text input: lines typed on stdin, and an inbox that any transport (MQTT in/text, a socket) pushes text into."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TextIO

from sources.events import TextEvent

MAX_LINE = 4096  # characters of one stdin line kept (the rest of a pasted novel is cut, not queued)


@dataclass
class LineStats:
    lines_cut: int = 0  # lines longer than the bound
    chars_cut: int = 0  # characters of them read past and dropped


def _read_line(stream: TextIO, max_line: int, stats: LineStats) -> str:
    """One line, at most max_line characters of it kept; the rest is read in pieces of that size and dropped, so
    memory stays bounded by the bound, not by the line."""
    line = stream.readline(max_line)
    if len(line) < max_line or line.endswith("\n"):
        return line
    cut = 0
    while True:
        rest = stream.readline(max_line)
        if not rest:
            break
        cut += len(rest) - rest.endswith("\n")
        if rest.endswith("\n"):
            break
    if cut:
        stats.lines_cut += 1
        stats.chars_cut += cut
    return line


async def stdin_text(max_line: int = MAX_LINE, stats: LineStats | None = None,
                     stream: TextIO | None = None) -> AsyncIterator[TextEvent]:
    """Lines typed on standard input (read in a thread so the loop never blocks); ends at EOF. Lines longer than
    max_line keep their first max_line characters; the cut ones are counted in `stats`."""
    st = stats if stats is not None else LineStats()
    src = stream if stream is not None else sys.stdin
    while True:
        line = await _in_daemon_thread(_read_line, src, max_line, st)
        if not line:
            return
        yield TextEvent(time.monotonic_ns() // 1000, line)


async def _in_daemon_thread(fn, *args):
    """fn(*args) on a daemon thread: a read that blocks until the next line must not hold the process up when it
    stops (asyncio.to_thread's executor is joined at exit, so Ctrl-C or SIGTERM would wait for Enter)."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def settle(ok: bool, value) -> None:
        if not fut.done():
            fut.set_result(value) if ok else fut.set_exception(value)

    def run() -> None:
        try:
            ok, value = True, fn(*args)
        except Exception as e:  # handed to the awaiting coroutine
            ok, value = False, e
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            loop.call_soon_threadsafe(settle, ok, value)

    threading.Thread(target=run, daemon=True, name="stdin").start()
    return await fut


@dataclass
class InboxStats:
    accepted: int = 0
    dropped: int = 0  # oldest texts dropped because the consumer lagged behind a flood


class TextInbox:
    """A bounded, drop-oldest FIFO of TextEvents; `async for ev in inbox` until `close()`.

    Resets travel in the same FIFO as the text (`push_reset`), so whoever consumes the inbox applies them in
    order with the text around them, on its own thread. A reset is never dropped for a text."""

    def __init__(self, max_items: int = 256) -> None:
        self.max_items = max_items
        self.stats = InboxStats()
        self._items: collections.deque[TextEvent] = collections.deque()
        self._ready = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def push(self, text: str, t_us: int | None = None) -> None:
        self._put(TextEvent(time.monotonic_ns() // 1000 if t_us is None else t_us, text))

    def push_reset(self) -> None:
        self._put(TextEvent(time.monotonic_ns() // 1000, "", reset=True))

    def _put(self, ev: TextEvent) -> None:
        if self._closed:
            return
        self.stats.accepted += not ev.reset
        while len(self._items) >= self.max_items:
            i = next((k for k, e in enumerate(self._items) if not e.reset), None)
            if i is None:  # only resets queued: one is as good as many
                self._items.popleft()
                continue
            del self._items[i]
            self.stats.dropped += 1
        self._items.append(ev)
        self._ready.set()

    def close(self) -> None:
        """No more input; iteration ends once the queued texts are consumed."""
        self._closed = True
        self._ready.set()

    def __aiter__(self) -> TextInbox:
        return self

    async def __anext__(self) -> TextEvent:
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()
