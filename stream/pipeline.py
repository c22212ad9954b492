"""The gesture and text pipelines: stages as async generators composed left to right.

    source ─▶ BoundedQueue (block | drop-oldest) ─▶ bin_stage ─▶ node_stage ─▶ publish_gestures

Each stage iterates its upstream inside contextlib.aclosing, so cancelling the consumer closes the chain.
Binning is by event time (stream.binner); the node runs in one worker thread (a single-thread executor keeps
its state single-owner and the event loop free); everything published goes through an MqttLink.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from s2node.step import StepModel, StepResult
from sources.events import EventBatch
from stream.binner import Bin, StreamBinner
from stream.mqtt import MqttLink
from stream.queues import BoundedQueue
from stream.schema import EventFrame, GesturePrediction, NodeStats

# The open bin's input goes to the node ahead of the bin's end at these distances from it (event time), so that
# the tick at the end has only the last of it to do: the first delivery carries most of the bin and has time to
# finish, the second is small and finishes soon. Not more often: each delivery costs the node a pass over the
# weights its input touches, cold in cache (measured on the gesture model at 100 k ev/s, 20 ms bins: a tick took
# 1.4 ms in the pipeline with no early input and 0.5 ms after it).
EARLY_AT_US = (6_000, 2_000)


class _EarlyPolicy:
    """Whether to hand the open bin's input to the node now: once as the stream passes each EARLY_AT_US point."""

    def __init__(self, binner: StreamBinner, points: tuple[int, ...] = EARLY_AT_US) -> None:
        self.binner, self.points = binner, sorted(points, reverse=True)
        self._bin, self._passed = -1, 0

    def due(self) -> bool:
        left = self.binner.time_left_us()
        if left is None:
            return False
        idx = self.binner.open_index
        if idx != self._bin:
            self._bin, self._passed = idx, 0
        passed = sum(left <= p for p in self.points)
        if passed > self._passed:
            self._passed = passed
            return True
        return False


@dataclass
class PipelineCounters:
    events_in: int = 0
    events_dropped: int = 0  # out-of-sensor plus queue overflow
    malformed_in: int = 0
    bins: int = 0
    predictions: int = 0
    t_event_us: int = 0
    latency_s: list[float] = field(default_factory=list)  # batch release -> prediction handed to the publisher
    # live (dropped, malformed) counts of the push sources feeding the pipeline (UDP socket, text inbox), read
    # whenever stats or a summary are made, so that they are current while the process runs
    sources: list[Callable[[], tuple[int, int]]] = field(default_factory=list)

    @property
    def dropped_total(self) -> int:
        return self.events_dropped + sum(f()[0] for f in self.sources)

    @property
    def malformed_total(self) -> int:
        return self.malformed_in + sum(f()[1] for f in self.sources)

    def note_latency(self, s: float) -> None:
        self.latency_s.append(s)
        if len(self.latency_s) > 4096:
            del self.latency_s[:2048]


def closing(it: AsyncIterable):
    """aclosing for async generators (cancellation closes the chain); other iterables need no closing."""
    return contextlib.aclosing(it) if hasattr(it, "aclose") else contextlib.nullcontext(aiter(it))


async def pump(source: AsyncIterable, queue: BoundedQueue) -> None:
    """Move a source into the queue (its policy decides: wait or drop the oldest), then close it."""
    try:
        async with closing(source) as it:
            async for item in it:
                await queue.put(item)
                # let the consumer take it now: fetching the next item (a replay decodes its next window before
                # it sleeps) would otherwise delay this one by that work (measured: 0.4 ms p50 at 100 k ev/s)
                await asyncio.sleep(0)
    finally:
        queue.close()


async def bin_stage(
    batches: AsyncIterable[EventBatch], binner: StreamBinner, frames: FrameMaker | None = None, early: bool = False
) -> AsyncIterator[tuple[list[Bin], np.ndarray | None, float]]:
    """EventBatch -> (bins closed by it, the open bin's new input if `early`, release wall time of the batch);
    the open bin is flushed at the end. With `early` the node gets the open bin's input ahead of its end
    (StepModel.deliver, at EARLY_AT_US before it) and a closed bin carries only the rest, so the work left at
    the bin's end is small."""
    policy = _EarlyPolicy(binner) if early else None
    async with closing(batches) as it:
        t_wall = time.time()
        async for b in it:
            t_wall = b.t_wall
            if frames is not None:
                frames.add(b.events)
            bins = binner.feed(b.events, b.upto_us)
            partial = binner.take_early() if policy is not None and policy.due() else None
            if bins or partial is not None:
                yield bins, partial, t_wall
        tail = binner.flush()
        if tail:
            yield tail, None, t_wall


async def node_stage(
    bins: AsyncIterable[tuple[list[Bin], np.ndarray | None, float]], model: StepModel, executor: ThreadPoolExecutor
) -> AsyncIterator[tuple[Bin, StepResult, float]]:
    """Run each bin through the node in the worker thread (all bins of one batch, then the early input of the
    open bin, in one hop)."""
    loop = asyncio.get_running_loop()

    def run_all(items: list[Bin], partial: np.ndarray | None) -> list[StepResult]:
        out = [model.step(b.vector) for b in items]
        if partial is not None:
            model.deliver(partial)
        return out

    async with closing(bins) as it:
        async for items, partial, t_wall in it:
            results = await loop.run_in_executor(executor, run_all, items, partial)
            for b, r in zip(items, results, strict=True):
                yield b, r, t_wall


@dataclass(frozen=True)
class FrameLimits:
    """How event frames go out: at most `per_s` a second, downsampled to at most `max_side` pixels a side, and at
    most `max_bytes` a message: a busier frame is coarsened (2 x 2 pixels into one) until it fits."""

    per_s: float = 5.0
    max_bytes: int = 4096
    max_side: int = 64

    def __post_init__(self) -> None:
        if not (self.per_s > 0 and self.max_bytes >= MIN_FRAME_BYTES and self.max_side >= 1):
            raise ValueError(f"frame limits: per_s > 0, max_bytes >= {MIN_FRAME_BYTES}, max_side >= 1")


MIN_FRAME_BYTES = 1024  # room for the header and an 8 x 8 frame of 16-bit counts, whatever the events


def _coarsen(counts: np.ndarray) -> np.ndarray:
    """(h, w) counts -> (ceil(h/2), ceil(w/2)): each pixel the sum of a 2 x 2 block."""
    h, w = counts.shape
    padded = np.zeros((h + h % 2, w + w % 2), counts.dtype)
    padded[:h, :w] = counts
    return padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2).sum(axis=(1, 3))


class FrameMaker:
    """Downsampled ON/OFF count images for the UI, published at most limits.per_s times a second (wall clock) and
    within limits.max_bytes each (stream.schema.EventFrame: compressed counts)."""

    def __init__(self, link: MqttLink, width: int, height: int, limits: FrameLimits = FrameLimits()) -> None:
        self.link, self.limits = link, limits
        self.d = max(1, -(-max(width, height) // limits.max_side))
        self.w, self.h = -(-width // self.d), -(-height // self.d)
        self.sensor = (width, height)
        self._on = np.zeros(self.w * self.h, np.int64)
        self._off = np.zeros(self.w * self.h, np.int64)
        self._n, self._t_last, self._t_event = 0, time.monotonic(), 0
        self.sent = self.bytes_sent = self.coarsened = 0  # frames, their payload bytes, frames sent coarser

    def add(self, ev: np.ndarray) -> None:
        if len(ev):
            ok = (ev["x"] < self.sensor[0]) & (ev["y"] < self.sensor[1])
            ev = ev[ok]
        if len(ev):
            idx = (ev["y"].astype(np.int64) // self.d) * self.w + ev["x"] // self.d
            on = ev["p"] > 0
            self._on += np.bincount(idx[on], minlength=self._on.size)
            self._off += np.bincount(idx[~on], minlength=self._off.size)
            self._n += len(ev)
            self._t_event = int(ev["t"][-1])
        now = time.monotonic()
        if now - self._t_last >= 1.0 / self.limits.per_s:
            self.link.publish(self.take(self._n / (now - self._t_last)))
            self._t_last = now

    def take(self, rate_hz: float) -> EventFrame:
        """The frame of the counts since the last one, coarsened until its payload fits limits.max_bytes; the
        counts start again from zero."""
        on, off = self._on.reshape(self.h, self.w).copy(), self._off.reshape(self.h, self.w).copy()
        self._on[:] = 0
        self._off[:] = 0
        self._n = 0
        while True:
            f = EventFrame(t_event_us=self._t_event, width=on.shape[1], height=on.shape[0], on=on.ravel().tolist(),
                           off=off.ravel().tolist(), event_rate_hz=rate_hz)
            size = len(f.to_json()) + 40  # seq and t_wall are stamped when published: room for their digits
            if size <= self.limits.max_bytes or max(on.shape) <= 8:
                break
            on, off = _coarsen(on), _coarsen(off)
        self.sent += 1
        self.bytes_sent += size
        self.coarsened += on.shape != (self.h, self.w)
        return f


def node_stats(model: StepModel, c: PipelineCounters, dt_s: float, synops0: int) -> NodeStats:
    """The node's own figures (StepModel.node_stats: one formula for PE activity, energy, latency) with the
    pipeline's: the model's name, what came in and what was dropped, and synops per second over the interval."""
    fields = {**model.node_stats(), "model": model.name, "events_in": c.events_in,
              "events_dropped": c.dropped_total, "malformed_in": c.malformed_total,
              "synops_per_s": (model.counters.synops - synops0) / dt_s if dt_s > 0 else 0.0}
    return NodeStats(**fields)


async def stats_loop(link: MqttLink, models: list[StepModel], counters: PipelineCounters, every_s: float = 1.0):
    """Publish NodeStats for each model every every_s seconds (until cancelled)."""
    last = {id(m): (time.monotonic(), m.counters.synops) for m in models}
    while True:
        await asyncio.sleep(every_s)
        for m in models:
            t0, s0 = last[id(m)]
            now = time.monotonic()
            link.publish(node_stats(m, counters, now - t0, s0))
            last[id(m)] = (now, m.counters.synops)


def gesture_payload(model: StepModel, b: Bin, r: StepResult) -> GesturePrediction:
    classes: list[str] = [str(c) for c in model.config["classes"]]
    i = int(np.argmax(r.probs))
    return GesturePrediction(
        t_event_us=int(b.t_end_us), label=classes[i], index=i,
        probs=[round(float(p), 6) for p in r.probs], classes=classes, step=int(b.index),
    )


async def run_gesture_pipeline(
    source: AsyncIterable[EventBatch],
    model: StepModel,
    binner: StreamBinner,
    link: MqttLink,
    *,
    executor: ThreadPoolExecutor,
    counters: PipelineCounters | None = None,
    queue: BoundedQueue | None = None,
    frames: bool | FrameLimits = True,
    on_prediction: Any = None,
) -> PipelineCounters:
    """Source -> queue -> bins -> node -> MQTT until the source ends. Returns the counters."""
    c = counters or PipelineCounters()
    q: BoundedQueue = queue or BoundedQueue(64, "block", weight=lambda b: len(b.events))
    fm = None
    if frames:
        limits = frames if isinstance(frames, FrameLimits) else FrameLimits()
        fm = FrameMaker(link, binner.spec.sensor.width, binner.spec.sensor.height, limits)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(pump(source, q))
        dropped0, late0 = binner.dropped, q.dropped
        early = hasattr(model, "deliver")
        async with contextlib.aclosing(node_stage(bin_stage(q, binner, fm, early), model, executor)) as preds:
            async for b, r, t_wall in preds:
                p = gesture_payload(model, b, r)
                link.publish(p)
                c.bins += 1
                c.predictions += 1
                c.t_event_us = p.t_event_us
                c.note_latency(time.time() - t_wall)
                c.events_in = binner.events_in
                c.events_dropped += (binner.dropped - dropped0) + (q.dropped - late0)
                dropped0, late0 = binner.dropped, q.dropped
                if on_prediction is not None:
                    on_prediction(p)
        c.events_in = binner.events_in
        c.events_dropped += (binner.dropped - dropped0) + (q.dropped - late0)
    return c
