"""Idle watermarks: a live camera that goes quiet still closes its bins, as if event time ran with the wall clock.

A DVS watching a still scene sends nothing; without this the open bin would stay open until the next datagram.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np

from sources.events import EVENT_DTYPE, EventBatch

IDLE_S = 0.05  # wall time without input after which the watermark moves on


async def idle_watermarks(get: Callable[[], Awaitable[EventBatch]], idle_s: float = IDLE_S
                          ) -> AsyncIterator[EventBatch]:
    """The batches that get() returns (StopAsyncIteration ends them), and while none comes for idle_s, empty ones
    whose watermark is the last one plus the wall time since it arrived, less idle_s of slack for the network:
    the binner closes a quiet camera's bins. Events that then arrive behind that watermark are late: the binner
    drops and counts them. get() must survive cancellation (a queue or an event wait, not an async generator).
    idle_s 0: never."""
    last: EventBatch | None = None
    upto = 0
    while True:
        try:
            if idle_s > 0 and last is not None:
                async with asyncio.timeout(idle_s):
                    b = await get()
            else:
                b = await get()
        except StopAsyncIteration:
            return
        except TimeoutError:
            if last is None:  # only reachable with a timeout, which needs a first batch
                continue
            now = time.time()
            w = last.upto_us + int((now - last.t_wall - idle_s) * 1e6)
            if w > upto:
                upto = w
                yield EventBatch(np.empty(0, EVENT_DTYPE), w, now)
            continue
        last, upto = b, max(upto, b.upto_us)
        yield b
