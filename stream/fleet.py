"""Many streams in one node process (`s2 run --source ID=URL ...` or `--fleet FILE.toml`).

    source ─▶ BoundedQueue ─▶ bin_stage ─▶ ready ─┐
    source ─▶ BoundedQueue ─▶ bin_stage ─▶ ready ─┼─▶ tick: one StreamBatch.step_many per model file ─▶ each
    ...                                           ┘        stream's own MQTT node id, <node>-<id>

Each stream has its own source, bounded queue (live: drop-oldest; files: block, nothing lost), binner, readout
state, counters and MQTT link, so that every existing subscriber and the UI see it as a node of its own. Streams
on the same model file (and readout window) share one s2node.batch.StreamBatch: a tick takes the next ready bin
of every stream and steps them in one call per batch on the worker thread. A tick waits for nothing that is not
ready, so a slow or silent source holds back only itself; a source that fails ends only its own stream.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from s2node.batch import StreamBatch, load_stream_batch
from s2node.errors import S2NodeError
from s2node.step import Backend, StepCounters, StepResult
from sources.errors import SourceError
from sources.events import DVS128, EventBatch
from sources.live import UdpEventSource, dv_batches, synthetic_batches, udp_batches
from sources.live.dv import DvStats
from stream.binner import Bin, make_binner, recording_mapping, sensor_mapping
from stream.errors import PipelineError
from stream.fleet_file import FleetError, StreamSpec
from stream.mqtt import MqttLink
from stream.pipeline import FrameMaker, PipelineCounters, bin_stage, gesture_payload, pump
from stream.queues import BoundedQueue
from stream.replay import replay
from stream.schema import Status, is_node_id
from stream.serve import LinkOptions, ServeSummary, connected, paced_by

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
            url, Status(models=[member.name], recordings=[name], sensor_map=self.sensor_map))
        self.queue: BoundedQueue = BoundedQueue(spec.buffer, "block" if spec.kind == "file" else "drop-oldest",
                                                weight=lambda b: len(b.events))
        self.ready: BoundedQueue = BoundedQueue(READY_MAX, "block")
        self.counters = PipelineCounters()
        self.frames = (FrameMaker(self.link, self.binner.spec.sensor.width, self.binner.spec.sensor.height)
                       if spec.frames else None)
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
        c.events_in = b.events_in
        dropped = b.dropped + self.queue.dropped
        c.events_dropped += dropped - self._dropped0
        self._dropped0 = dropped

    def summary(self) -> StreamSummary:
        c = self.counters
        counts = ServeSummary(c.predictions, c.events_in, c.dropped_total, c.malformed_total,
                              self.link.stats.dropped, self.link.pending)
        return StreamSummary(self.spec.id, self.node, self.spec.source, self.sensor_map, counts, self.error)


@contextlib.asynccontextmanager
async def _batches(s: FleetStream) -> AsyncIterator[AsyncIterator[EventBatch]]:
    """The stream's source as event batches (a UDP socket is bound for the body's duration)."""
    spec = s.spec
    if spec.kind == "file":
        src = replay(spec.source, speed=spec.speed, loop=spec.loop, chunk_us=s.binner.spec.release_chunk_us)
        yield paced_by(s.link, src)
    elif spec.kind == "udp":
        host, port, fmt = spec.address()
        async with UdpEventSource(host, port, fmt, spec.buffer) as udp:
            s.counters.sources.append(lambda: (udp.stats.dropped + udp.kernel_drops(), udp.stats.malformed))
            yield udp_batches(udp, spec.idle_s)
    elif spec.kind == "dv":
        host, port, _ = spec.address()
        dv = DvStats()
        s.counters.sources.append(lambda: (dv.dropped, 0))
        yield dv_batches(host, port, spec.idle_s, spec.buffer, dv)
    else:
        yield synthetic_batches(seed=spec.seed or 0)


async def _feed(s: FleetStream, wake: asyncio.Event, announce: Callable[[str], None] | None) -> None:
    """Source -> queue -> binner -> the stream's ready items, until the source ends or fails (this stream only)."""
    try:
        async with _batches(s) as batches, asyncio.TaskGroup() as tg:
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


def _run_tick(work: list[tuple[StreamBatch, list[tuple[int, np.ndarray]], dict[int, np.ndarray],
                               list[tuple[int, np.ndarray]]]]) -> list[dict[int, StepResult]]:
    """On the worker thread: per batch, the early input due before its step, one step_many, the early input
    after it."""
    out = []
    for batch, pre, xs, post in work:
        for i, x in pre:
            batch.deliver(i, x)
        out.append(batch.step_many(xs) if xs else {})
        for i, x in post:
            batch.deliver(i, x)
    return out


async def _ticks(streams: list[FleetStream], executor: ThreadPoolExecutor, wake: asyncio.Event) -> None:
    """Step what is ready, one bin per stream and one call per batch a tick, until every stream has ended."""
    loop = asyncio.get_running_loop()
    while True:
        wake.clear()
        for s in streams:
            await s.pull()
        if all(s.done for s in streams):
            return
        plan: dict[int, tuple[StreamBatch, list, dict, list]] = {}  # id(batch) -> its work, in first-seen order
        stepped: list[tuple[FleetStream, int, Bin, float]] = []  # (stream, its batch's place in plan, bin, t_wall)
        for s in streams:
            pre, step, post = s.take()
            if not pre and step is None:
                continue
            batch, i = s.member.batch, s.member.i
            work = plan.setdefault(id(batch), (batch, [], {}, []))
            work[1].extend((i, x) for x in pre)
            work[3].extend((i, x) for x in post)
            if step is not None:
                work[2][i] = step[0].vector
                stepped.append((s, list(plan).index(id(batch)), *step))
        if not plan:
            await wake.wait()
            continue
        results = await loop.run_in_executor(executor, _run_tick, list(plan.values()))
        for s, k, b, t_wall in stepped:
            p = gesture_payload(s.member, b, results[k][s.member.i])
            s.link.publish(p)
            c = s.counters
            c.bins += 1
            c.predictions += 1
            c.t_event_us = p.t_event_us
            c.note_latency(time.time() - t_wall)
            s.count()


def node_ids(node: str, specs: list[StreamSpec]) -> list[str]:
    """The MQTT node id of each stream, <node>-<id>; FleetError when one is not a valid node id."""
    out = [f"{node}-{s.id}" for s in specs]
    for n in out:
        if not is_node_id(n):
            raise FleetError(f"node id {n!r} (--node and the stream id): at most 64 printable characters, no / + #")
    return out


def load_batches(specs: list[StreamSpec], backend: Backend,
                 node_options: Mapping[str, Any] | None) -> list[BatchMember]:
    """One StreamBatch per (model file, readout window), each stream a member of its batch, in the specs' order."""
    from s2node.modelfile import model_paths

    groups: dict[tuple[str, float], list[int]] = {}
    for k, s in enumerate(specs):
        key = (str(model_paths(s.model)[0].resolve()), s.window_s)
        groups.setdefault(key, []).append(k)
    members: dict[int, BatchMember] = {}
    opts = dict(node_options or {}) if backend == "node" else {}
    for ks in groups.values():
        first = specs[ks[0]]
        batch = load_stream_batch(first.model, len(ks), backend, window_s=first.window_s, **opts)
        for i, k in enumerate(ks):
            members[k] = BatchMember(batch, i)
    return [members[k] for k in range(len(specs))]


def mapping_of(spec: StreamSpec, config: dict[str, Any]):
    """How the stream's sensor meets the model's input (the file's own sensor, the synthetic camera's 128 x 128,
    or --sensor / the model's for udp and dv)."""
    if spec.kind == "file":
        return recording_mapping(config, spec.sensor_map, spec.source, spec.sensor)
    return sensor_mapping(config, spec.sensor_map, DVS128 if spec.kind == "synthetic" and spec.sensor is None
                          else spec.sensor)


async def serve_fleet(url: str, specs: list[StreamSpec], *, link: LinkOptions = LinkOptions(),
                      duration_s: float | None = None, backend: Backend = "node",
                      node_options: Mapping[str, Any] | None = None,
                      announce: Callable[[str], None] | None = None,
                      report: Callable[[list[StreamSummary]], object] | None = None) -> list[StreamSummary]:
    """Serve every stream until all have ended or duration_s passes; each publishes as <link.node>-<id>.
    `announce` gets each stream's sensor map and any stream that stops with an error; `report` gets the
    summaries however it ends (cancelled by Ctrl-C or SIGTERM too)."""
    nodes = node_ids(link.node, specs)
    members = load_batches(specs, backend, node_options)
    streams = []
    for spec, node, m in zip(specs, nodes, members, strict=True):
        try:
            mapping = mapping_of(spec, m.config)
        except STREAM_ERRORS as e:
            raise FleetError(f"stream {spec.id!r}: {e}") from e
        streams.append(FleetStream(spec, node, m, mapping, link, url))
        if announce is not None:
            announce(f"{spec.id}: sensor map: {streams[-1].sensor_map}")
    wake = asyncio.Event()
    try:
        with ThreadPoolExecutor(1, "s2-node") as ex:
            async with contextlib.AsyncExitStack() as stack:
                for s in streams:
                    await stack.enter_async_context(connected(s.link, url, [s.member], s.counters, 3.0))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(duration_s), asyncio.TaskGroup() as tg:
                        for s in streams:
                            tg.create_task(_feed(s, wake, announce))
                        tg.create_task(_ticks(streams, ex, wake))
    finally:
        for s in streams:
            s.count()
        if report is not None:
            report([s.summary() for s in streams])
    return [s.summary() for s in streams]
