"""Text input: lines typed on stdin, and an inbox that any transport (MQTT in/text, a socket) pushes text into."""

from __future__ import annotations

import asyncio
import codecs
import collections
import os
import stat
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TextIO

from sources.events import TextEvent

MAX_LINE = 4096  # characters of one stdin line kept (the rest of a pasted novel is cut, not queued)
READ_BYTES = 65536  # read at most this much at once


@dataclass
class LineStats:
    lines_cut: int = 0  # lines longer than the bound
    chars_cut: int = 0  # characters of them read past and dropped


class LineSplitter:
    """Text read in pieces -> whole lines, each with its newline. A line longer than max_line (newline included)
    keeps its first max_line characters and loses its newline; what is dropped of it is counted in `stats`, as
    it comes, so memory stays bounded by the bound, not by the line."""

    def __init__(self, max_line: int = MAX_LINE, stats: LineStats | None = None) -> None:
        self.max_line, self.stats = max_line, stats if stats is not None else LineStats()
        self._buf = ""
        self._dropped = 0  # characters of the current line past the bound

    def feed(self, text: str) -> list[str]:
        *done, last = text.split("\n")
        out = []
        for part in done:
            self._add(part)
            out.append(self._end(newline=True))
        self._add(last)
        return out

    def finish(self) -> list[str]:
        """At EOF: the last line, which has no newline, if there is one."""
        line = self._end(newline=False)
        return [line] if line else []

    def _add(self, part: str) -> None:
        room = max(0, self.max_line - len(self._buf))
        self._buf += part[:room]
        self._dropped += max(0, len(part) - room)

    def _end(self, newline: bool) -> str:
        line, dropped = self._buf, self._dropped
        self._buf, self._dropped = "", 0
        if dropped:
            self.stats.lines_cut += 1
            self.stats.chars_cut += dropped
        return line + "\n" if newline and not dropped and len(line) < self.max_line else line


def _pollable_fd(stream: object) -> int | None:
    """The file descriptor of a stream the event loop can watch (a terminal, a pipe, a socket); None for what it
    cannot (a regular file, /dev/null, an in-memory stream), which never blocks a read anyway."""
    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
        mode = os.fstat(fd).st_mode
    except (AttributeError, OSError, ValueError):
        return None
    return fd if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd) else None


async def _chunks_from_fd(fd: int) -> AsyncIterator[bytes]:
    """Bytes as they arrive on fd, read when the event loop says it is readable: no thread sits in a read, so
    Ctrl-C ends the program at once. Ends at EOF. The watch is taken off in the callback and put back after the
    read, so that a readiness seen before the read cannot be acted on after it (which would block)."""
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()

    def readable() -> None:
        loop.remove_reader(fd)
        ready.set()

    try:
        while True:
            ready.clear()
            loop.add_reader(fd, readable)
            await ready.wait()
            data = os.read(fd, READ_BYTES)  # readable, and no one else reads it: returns what is there
            if not data:
                return
            yield data
    finally:
        loop.remove_reader(fd)


async def stdin_text(max_line: int = MAX_LINE, stats: LineStats | None = None,
                     stream: TextIO | None = None) -> AsyncIterator[TextEvent]:
    """Lines typed on standard input (or `stream`), as they complete; ends at EOF. A terminal or a pipe is
    watched by the event loop (no thread blocks in a read); a file or an in-memory stream is read in pieces.
    Lines longer than max_line keep their first max_line characters; the cut ones are counted in `stats`."""
    src = stream if stream is not None else sys.stdin
    lines = LineSplitter(max_line, stats)
    fd = _pollable_fd(src)
    if fd is not None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        async for data in _chunks_from_fd(fd):
            for line in lines.feed(decoder.decode(data)):
                yield TextEvent(time.monotonic_ns() // 1000, line)
        tail = decoder.decode(b"", final=True)
        pieces = lines.feed(tail) + lines.finish()
    else:
        pieces = []
        while True:
            text = src.read(READ_BYTES)
            if not text:
                break
            for line in lines.feed(text):
                yield TextEvent(time.monotonic_ns() // 1000, line)
            await asyncio.sleep(0)  # a long file lets the loop serve the rest meanwhile
        pieces = lines.finish()
    for line in pieces:
        yield TextEvent(time.monotonic_ns() // 1000, line)


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

    def push(self, text: str, t_us: int | None = None, *, continues: bool = False, origin: str = "") -> None:
        self._put(TextEvent(time.monotonic_ns() // 1000 if t_us is None else t_us, text, continues=continues,
                            origin=origin))

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
