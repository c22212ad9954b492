"""One stream of a multi-stream `s2 run` (stream.fleet): its own source, bounded queue (live: drop-oldest; files:
block, nothing lost), binner, readout state (a member of a shared s2node.batch.StreamBatch), counters and MQTT
link, and the node work binned for it that waits for the next tick.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from s2node.batch import StreamBatch
from s2node.errors import S2NodeError
from s2node.step import StepCounters, StepResult
from sources.errors import SourceError
from sources.events import EventBatch
from sources.live import UdpEventSource, dv_batches, synthetic_batches, udp_batches
from sources.live.dv import DvStats
from stream.binner import Bin, make_binner
from stream.control import Controller, LiveGate
from stream.errors import PipelineError
from stream.fleet_file import StreamSpec
from stream.mqtt import MqttLink
from stream.pipeline import FrameMaker, PipelineCounters, bin_stage, pump
from stream.queues import BoundedQueue
from stream.replay import ReplayControl, replay
from stream.schema import Status
from stream.serve import LinkOptions, ServeSummary, paced_by

READY_MAX = 8  # binned items waiting per stream for a tick; beyond, its binning waits (and its queue fills)
STREAM_ERRORS = (SourceError, PipelineError, S2NodeError)  # end one stream, not the others


class BatchMember:
    """Stream i of a StreamBatch seen as a StepModel (what gesture_payload and the stats loop read)."""

    def __init__(self, batch: StreamBatch, i: int) -> None:
        self.batch, self.i = batch, i
        self.config, self.name = batch.config, batch.name

    @property
    def counters(self) -> StepCounters:
        return self.batch.counters(self.i)

    def step(self, x: np.ndarray | int) -> StepResult:
        return self.batch.step_many({self.i: x})[self.i]

    def deliver(self, x: np.ndarray) -> None:
        self.batch.deliver(self.i, x)

    def reset(self) -> None:
        self.batch.reset(self.i)

    def node_stats(self) -> dict[str, Any]:
        return self.batch.node_stats(self.i)


@dataclass(frozen=True)
class StreamSummary:
    """One stream's line of the summary: its node id, source, sensor map, counts and, if it failed, why."""

    id: str
    node: str
    source: str
    sensor_map: str
    counts: ServeSummary
    error: str | None = None


class FleetStream:
    """One stream's own parts: model view, binner, queues, counters, link, and its pending node work."""

    def __init__(self, spec: StreamSpec, node: str, member: BatchMember, mapping, link: LinkOptions,
                 url: str) -> None:
        self.spec, self.node, self.member = spec, node, member
        self.binner = make_binner(member.config, mapping, live=spec.kind != "file")
        self.sensor_map = mapping.describe()
        name = Path(spec.source).name if spec.kind == "file" else spec.kind  # a local path is nobody else's business
        self.link: MqttLink = replace(link, node=node).link(
            url, Status(models=[member.name], recordings=[name], sensor_map=self.sensor_map,
                        window_s=spec.window_s))
        self.queue: BoundedQueue = BoundedQueue(spec.buffer, "block" if spec.kind == "file" else "drop-oldest",
                                                weight=lambda b: len(b.events))
        self.ready: BoundedQueue = BoundedQueue(READY_MAX, "block")
        self.counters = PipelineCounters()
        self.frames = (FrameMaker(self.link, self.binner.spec.sensor.width, self.binner.spec.sensor.height)
                       if spec.frames else None)
        # in/control (stream.control): a recording pauses, resumes and changes speed in its replay, a live source
        # drops its input while paused; the Controller itself is made by serve_fleet, beside the node's thread
        self.replay_ctl = ReplayControl(speed=spec.speed) if spec.kind == "file" else None
        self.gate = LiveGate()  # used by live sources only
        self.control: Controller | None = None
        self.ops: collections.deque[tuple[Bin | None, np.ndarray | None, float]] = collections.deque()
        self.ended = False  # no more items will come
        self.error: str | None = None
        self._dropped0 = 0

    async def pull(self) -> None:
        """Move ready items into ops (as steps and early deliveries, in order) until a step is due or none is
        ready; never waits (the queue's get returns at once while it holds anything)."""
        while not self.ended and not any(b is not None for b, _, _ in self.ops) and len(self.ready):
            try:
                bins, partial, t_wall = await self.ready.get()
            except StopAsyncIteration:
                self.ended = True
                break
            self.ops.extend((b, None, t_wall) for b in bins)
            if partial is not None:
                self.ops.append((None, partial, t_wall))

    def take(self) -> tuple[list[np.ndarray], tuple[Bin, float] | None, list[np.ndarray]]:
        """This tick's work: early input before the step, the step (a bin), early input after it."""
        pre, post, step = [], [], None
        while self.ops and self.ops[0][0] is None:
            pre.append(self.ops.popleft()[1])
        if self.ops:
            b, _, t_wall = self.ops.popleft()
            step = (b, t_wall)
            while self.ops and self.ops[0][0] is None:
                post.append(self.ops.popleft()[1])
        return pre, step, post

    @property
    def done(self) -> bool:
        return self.ended and not self.ops

    def count(self) -> None:
        c, b = self.counters, self.binner
        c.events_in, c.events_denoised = b.events_in, b.denoised
        dropped = b.dropped + self.queue.dropped
        c.events_dropped += dropped - self._dropped0
        self._dropped0 = dropped

    def summary(self) -> StreamSummary:
        c = self.counters
        counts = ServeSummary(c.predictions, c.events_in, c.dropped_total, c.malformed_total,
                              self.link.stats.dropped, self.link.pending)
        return StreamSummary(self.spec.id, self.node, self.spec.source, self.sensor_map, counts, self.error)


@contextlib.asynccontextmanager
async def open_batches(s: FleetStream) -> AsyncIterator[AsyncIterator[EventBatch]]:
    """The stream's source as event batches (a UDP socket is bound for the body's duration)."""
    spec = s.spec
    if spec.kind == "file":
        src = replay(spec.source, loop=spec.loop, chunk_us=s.binner.spec.release_chunk_us, control=s.replay_ctl)
        yield paced_by(s.link, src)
        return
    if spec.kind == "udp":
        host, port, fmt = spec.address()
        async with UdpEventSource(host, port, fmt, spec.buffer) as udp:
            s.counters.sources.append(lambda: (udp.stats.dropped + udp.kernel_drops(), udp.stats.malformed))
            yield s.gate.gated(udp_batches(udp, spec.idle_s))
    elif spec.kind == "dv":
        host, port, _ = spec.address()
        dv = DvStats()
        s.counters.sources.append(lambda: (dv.dropped, 0))
        yield s.gate.gated(dv_batches(host, port, spec.idle_s, spec.buffer, dv))
    else:
        yield s.gate.gated(synthetic_batches(seed=spec.seed or 0))


async def feed(s: FleetStream, wake: asyncio.Event, announce: Callable[[str], None] | None) -> None:
    """Source -> queue -> binner -> the stream's ready items, until the source ends or fails (this stream only)."""
    try:
        async with open_batches(s) as batches, asyncio.TaskGroup() as tg:
            tg.create_task(pump(batches, s.queue))
            async with contextlib.aclosing(bin_stage(s.queue, s.binner, s.frames, early=True)) as items:
                async for item in items:
                    await s.ready.put(item)
                    wake.set()
    except* STREAM_ERRORS as eg:
        s.error = str(eg.exceptions[0])
        if announce is not None:
            announce(f"{s.spec.id}: stopped: {s.error}")
    finally:
        s.ready.close()
        wake.set()
