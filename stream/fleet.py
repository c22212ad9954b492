"""Many streams in one node process (`s2 run --source ID=URL ...` or `--fleet FILE.toml`).

    source ─▶ BoundedQueue ─▶ bin_stage ─▶ ready ─┐
    source ─▶ BoundedQueue ─▶ bin_stage ─▶ ready ─┼─▶ tick: one StreamBatch.step_many per model file ─▶ each
    ...                                           ┘        stream's own MQTT node id, <node>-<id>

Each stream (stream.fleet_stream) has its own source, queue, binner, readout state, counters and MQTT link, so
that every existing subscriber and the UI see it as a node of its own. Streams on the same model file (and
readout window) share one s2node.batch.StreamBatch: a tick takes the next ready bin of every stream and steps
them in one call per batch on the worker thread. A tick waits for nothing that is not ready, so a slow or
silent source holds back only itself; a source that fails ends only its own stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np

from s2node.batch import StreamBatch, load_stream_batch
from s2node.readout import describe_window
from s2node.step import Backend, StepResult, stream_window_s
from sources.events import DVS128
from stream.binner import Bin, recording_mapping, sensor_mapping
from stream.control import Controller
from stream.errors import BrokerError
from stream.fleet_file import FleetError, StreamSpec
from stream.fleet_stream import STREAM_ERRORS, BatchMember, FleetStream, StreamSummary, feed
from stream.pipeline import gesture_payload, stats_loop
from stream.schema import is_node_id
from stream.serve import LinkOptions


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
            if s.control is not None:
                s.control.note_prediction(p.t_event_us)


def node_ids(node: str, specs: list[StreamSpec]) -> list[str]:
    """The MQTT node id of each stream, <node>-<id>; FleetError when one is not a valid node id."""
    out = [f"{node}-{s.id}" for s in specs]
    for n in out:
        if not is_node_id(n):
            raise FleetError(f"node id {n!r} (--node and the stream id): at most 64 printable characters, no / + #")
    return out


def load_batches(specs: list[StreamSpec], backend: Backend,
                 node_options: Mapping[str, Any] | None) -> list[BatchMember]:
    """One StreamBatch per (model file, readout window), each stream a member of its batch, in the specs' order.
    A stream without a window has its model file's (s2node.readout.served_window_s)."""
    from s2node.modelfile import model_paths

    groups: dict[tuple[str, float], list[int]] = {}
    for k, s in enumerate(specs):
        key = (str(model_paths(s.model)[0].resolve()), stream_window_s(s.model, s.window_s))
        groups.setdefault(key, []).append(k)
    members: dict[int, BatchMember] = {}
    opts = dict(node_options or {}) if backend == "node" else {}
    for (_, window), ks in groups.items():
        batch = load_stream_batch(specs[ks[0]].model, len(ks), backend, window_s=window, **opts)
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


def _obey_control(s: FleetStream, executor: ThreadPoolExecutor) -> None:
    """in/control for one stream, answered in its status: pause, resume, reset, and speed for a recording; a reset
    makes the model forget (on the node's thread, between two ticks), a recording plays on."""
    loop = asyncio.get_running_loop()
    live = s.replay_ctl is None
    s.control = Controller(s.link, s.counters, replay=s.replay_ctl, gate=s.gate if live else None,
                           reset_gesture=lambda: loop.run_in_executor(executor, s.member.reset))
    if live:
        s.counters.sources.append(lambda: (s.gate.dropped, 0))
    s.control.subscribe()


@contextlib.asynccontextmanager
async def _links_up(streams: list[FleetStream], close_timeout_s: float = 3.0) -> AsyncIterator[None]:
    """stream.serve.connected for every stream's link at once: each link runs with its stats loop for the body's
    duration, a broker that cannot be reached at the start is a one-line BrokerError, and on the way out the links
    send their offline status and drain side by side (a broker gone at the end costs one timeout, not one each)."""
    async with asyncio.TaskGroup() as tg:
        runs = [tg.create_task(s.link.run()) for s in streams]
        try:
            for s in streams:  # one after another: once the first is in, the others take milliseconds
                await s.link.ensure_connected(10.0)
        except BrokerError:
            for r in runs:
                r.cancel()
            raise
        loops = []
        for s in streams:
            s.counters.sources.append(lambda link=s.link: (link.stats.dropped_incoming, 0))
            loops.append(tg.create_task(stats_loop(s.link, [s.member], s.counters)))
            if s.control is not None:
                loops.append(tg.create_task(s.control.watch()))
        try:
            yield
        finally:
            for t in loops:
                t.cancel()
            await asyncio.gather(*(s.link.close(timeout_s=close_timeout_s) for s in streams))
            for r in runs:
                r.cancel()


async def serve_fleet(url: str, specs: list[StreamSpec], *, link: LinkOptions = LinkOptions(),
                      duration_s: float | None = None, backend: Backend = "node",
                      node_options: Mapping[str, Any] | None = None,
                      announce: Callable[[str], None] | None = None,
                      report: Callable[[list[StreamSummary]], object] | None = None) -> list[StreamSummary]:
    """Serve every stream until all have ended or duration_s passes; each publishes as <link.node>-<id>.
    `announce` gets each stream's sensor map and readout window and any stream that stops with an error;
    `report` gets the summaries however it ends (cancelled by Ctrl-C or SIGTERM too)."""
    specs = [replace(s, window_s=stream_window_s(s.model, s.window_s)) for s in specs]
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
            announce(f"{spec.id}: sensor map: {streams[-1].sensor_map}; gesture readout: "
                     f"{describe_window(spec.window_s or 0.0)}")
    wake = asyncio.Event()
    try:
        with ThreadPoolExecutor(1, "s2-node") as ex:
            for s in streams:
                _obey_control(s, ex)
            async with _links_up(streams):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(duration_s), asyncio.TaskGroup() as tg:
                        for s in streams:
                            tg.create_task(feed(s, wake, announce))
                        tg.create_task(_ticks(streams, ex, wake))
    finally:
        for s in streams:
            s.count()
        if report is not None:
            report([s.summary() for s in streams])
    return [s.summary() for s in streams]
