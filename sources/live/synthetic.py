"""The gesture renderer as a live camera: random gestures back to back, paced in real time by event time."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from sources.events import EventBatch
from sources.gesture_data import render_recording
from sources.gesture_motions import GESTURE_CLASSES


async def synthetic_batches(seed: int = 0, segment_s: float = 2.0, chunk_us: int = 1000) -> AsyncIterator[EventBatch]:
    """Segments of segment_s seconds, one random gesture each, on one event clock, released chunk_us at a time
    at the pace of their event time. The next segment renders in a worker thread while the current one plays."""
    loop = asyncio.get_running_loop()
    rng = np.random.default_rng(seed)
    seg_us = round(segment_s * 1e6)

    def render(i: int) -> np.ndarray:
        label = int(rng.integers(len(GESTURE_CLASSES)))
        ev = render_recording(seed + i, 99, 0, "lab", label, segment_s, 250.0)
        ev = ev[ev["t"] < seg_us]
        ev["t"] += i * seg_us  # segments follow each other on one event clock
        return ev

    with ThreadPoolExecutor(1, "s2-render") as ex:
        nxt = ex.submit(render, 0)
        wall0: float | None = None
        for i in itertools.count(1):
            ev = await asyncio.wrap_future(nxt)
            nxt = ex.submit(render, i)
            if wall0 is None:
                wall0 = loop.time()
            seg0 = (i - 1) * seg_us
            cuts = np.searchsorted(ev["t"], np.arange(seg0 + chunk_us, seg0 + seg_us, chunk_us))
            for j, chunk in enumerate(np.split(ev, cuts)):
                upto = seg0 + (j + 1) * chunk_us
                delay = wall0 + upto / 1e6 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                yield EventBatch(chunk, upto, time.time())
