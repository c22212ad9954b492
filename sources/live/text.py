"""Text input: lines typed on stdin, and an inbox that any transport (MQTT in/text, a socket) pushes text into."""

from __future__ import annotations

import asyncio
import collections
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sources.events import TextEvent

MAX_LINE = 4096  # characters of one stdin line kept (the rest of a pasted novel is cut, not queued)


async def stdin_text(max_line: int = MAX_LINE) -> AsyncIterator[TextEvent]:
    """Lines typed on standard input (read in a thread so the loop never blocks); ends at EOF."""
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        yield TextEvent(time.monotonic_ns() // 1000, line[:max_line])


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
