"""The one bounded queue where a push source meets the pipeline, with a named overflow policy and counters.

"block": the producer waits (replay: nothing is lost, the file is read as fast as the node takes it).
"drop-oldest": the producer never waits; the oldest item goes and is counted (live sources: fresh data wins).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Generic, Literal, TypeVar

T = TypeVar("T")
Policy = Literal["block", "drop-oldest"]
_END = object()


class BoundedQueue(Generic[T]):
    def __init__(self, maxsize: int, policy: Policy, weight: Callable[[T], int] = lambda _: 1) -> None:
        if maxsize <= 0:
            raise ValueError("maxsize must be positive")
        self.maxsize, self.policy, self._weight = maxsize, policy, weight
        self._items: collections.deque = collections.deque()
        self._not_empty = asyncio.Event()
        self._not_full = asyncio.Event()
        self._not_full.set()
        self.dropped_items = 0
        self.dropped = 0  # weighted (events for event batches)
        self.put_items = 0
        self.high_water = 0

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, item: T) -> None:
        if self.policy == "block":
            while len(self._items) >= self.maxsize:
                self._not_full.clear()
                await self._not_full.wait()
        self.put_nowait(item)

    def put_nowait(self, item: T) -> None:
        """Never waits: under "drop-oldest" (or when full under "block") the oldest item is dropped."""
        while len(self._items) >= self.maxsize:
            old = self._items.popleft()
            if old is not _END:
                self.dropped_items += 1
                self.dropped += self._weight(old)
        self._items.append(item)
        self.put_items += 1
        self.high_water = max(self.high_water, len(self._items))
        self._not_empty.set()

    def close(self) -> None:
        """No more items: the consumer's iteration ends after what is queued."""
        self._items.append(_END)
        self._not_empty.set()

    async def get(self) -> T:
        while not self._items:
            self._not_empty.clear()
            await self._not_empty.wait()
        item = self._items.popleft()
        self._not_full.set()
        if item is _END:
            self._items.appendleft(_END)  # stays closed for later readers
            raise StopAsyncIteration
        return item

    def __aiter__(self):
        return self

    async def __anext__(self) -> T:
        return await self.get()
