"""The gesture and text pipelines: stages as async generators composed left to right.

    source ─▶ BoundedQueue (block | drop-oldest) ─▶ bin_stage ─▶ node_stage ─▶ publish_gestures

Each stage iterates its upstream inside contextlib.aclosing, so cancelling the consumer closes the chain.
Binning is by event time (stream.binner); the node runs on the event loop's thread while its steps are short and
in one worker thread (a single-thread executor) when they are long, one owner of its state at a time (see
node_stage); everything published goes through an MqttLink, and the link writes a prediction to its socket before
the pipeline takes its next batch (SendFirst).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from s2node.step import StepModel, StepResult
from sources.events import EventBatch
from stream.binner import Bin, StreamBinner
from stream.mqtt import MqttLink
from stream.queues import BoundedQueue
from stream.schema import EventFrame, GesturePrediction, NodeStats
from stream.stagetimes import StageLog, StageTimes

# The open bin's input goes to the node ahead of the bin's end at these distances from it (event time), so that
# the tick at the end has only the last of it to do: the first delivery carries most of the bin and has time to
# finish, the later ones are small and finish soon; the last leaves the tick only the bin's final millisecond (a
# replay's window), which at 1 M ev/s still touches a third of the gesture model's 2,048 inputs. Not more often:
# each delivery costs the node a pass over the weights its input touches, cold in cache (measured on the gesture
# model, 20 ms bins: at 100 k ev/s a tick took 1.4 ms in the pipeline with no early input and 0.5 ms after it; at
# 1 M ev/s 1.0 ms with the points at 6 and 2 ms, 0.4 ms with the third at 1 ms).
EARLY_AT_US = (6_000, 2_000, 1_000)

# The node runs on the event loop's thread while its work per bin stays under this (a moving average with this
# weight per bin), in the worker thread beyond: a longer stall of the loop would delay MQTT traffic and the UI
# more than the two thread hand-overs per bin cost (measured on 2 shared cores: the gesture model's ~0.6 ms step
# had a p99 latency 5-7x lower on the loop's thread than in the worker).
INLINE_STEP_MAX_S = 0.005
INLINE_BINS_MAX = 2  # a batch that closes more bins is a backlog: worked off in the worker thread
WORK_AVERAGE_WEIGHT = 0.1

# After a batch's predictions are published, the pipeline's own work (the next batch's binning, the replay's next
# window) waits this many turns of the event loop: MqttLink's way from publish() to the socket is a turn each for
# its sender task, aiomqtt's publish, the writer's registration and the write (measured at 1 M ev/s, where the
# next window is due by the time a step ends: it was binned in each of those turns, 0.1 ms a turn, and the longer
# the process ran before the write, the likelier the scheduler of a busy machine preempted it for milliseconds).
SEND_TURNS = 6

BinnedItem = tuple[list[Bin], np.ndarray | None, float]  # bins closed by a batch, early input, release time
Stamps = tuple[float, float, float, float]  # binned, step start, step end, back on the loop (wall clock)


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


class SendFirst:
    """The gate of SEND_TURNS: `hold()` after publishing keeps `wait()`ers (the source's pump) back meanwhile."""

    def __init__(self, turns: int = SEND_TURNS) -> None:
        self.turns = turns
        self._open = asyncio.Event()
        self._open.set()

    async def hold(self) -> None:
        self._open.clear()
        try:
            for _ in range(self.turns):
                await asyncio.sleep(0)
        finally:
            self._open.set()

    async def wait(self) -> None:
        await self._open.wait()  # no turn of the loop when open


@dataclass
class PipelineCounters:
    events_in: int = 0
    events_dropped: int = 0  # out-of-sensor plus queue overflow
    events_denoised: int = 0  # removed by the model's background-activity filter
    malformed_in: int = 0
    bins: int = 0
    predictions: int = 0
    t_event_us: int = 0
    latency_s: list[float] = field(default_factory=list)  # batch release -> prediction handed to the publisher
    stages: StageLog | None = None  # per-prediction stage stamps, when given (stream.stagetimes)
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


async def pump(source: AsyncIterable, queue: BoundedQueue, gate: SendFirst | None = None) -> None:
    """Move a source into the queue (its policy decides: wait or drop the oldest), then close it. With `gate`, the
    next item is fetched only while the gate is open."""
    try:
        async with closing(source) as it:
            async for item in it:
                await queue.put(item)
                # let the consumer take it now: fetching the next item (a replay decodes its next window before
                # it sleeps) would otherwise delay this one by that work (measured: 0.4 ms p50 at 100 k ev/s)
                await asyncio.sleep(0)
                if gate is not None:
                    await gate.wait()
    finally:
        queue.close()


async def bin_stage(
    batches: AsyncIterable[EventBatch], binner: StreamBinner, frames: FrameMaker | None = None, early: bool = False
) -> AsyncIterator[BinnedItem]:
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
    bins: AsyncIterable[BinnedItem], model: StepModel, executor: ThreadPoolExecutor | None, timed: bool = False,
    inline_max_s: float = INLINE_STEP_MAX_S, gate: SendFirst | None = None,
) -> AsyncIterator[tuple[Bin, StepResult, float, Stamps | None]]:
    """Run each bin through the node (all bins of one batch, then the early input of the open bin, in one go).

    Where: on the event loop's thread while the node's work per bin stays under `inline_max_s` (a moving
    average) and a batch closes at most INLINE_BINS_MAX bins, in the `executor`'s one worker thread otherwise
    (always there with `inline_max_s` < 0). A batch that closes many bins is a backlog or a live source's
    catch-up: on the loop's thread its steps would stop the source from being read meanwhile, so that the next
    batch would span (and close) still more bins. The node's
    steps hold the GIL, so a worker thread frees the loop only in 0.5 ms slices anyway, and each hand-over and
    hand-back is a thread wake-up and a GIL trade that the scheduler of a busy machine delays by milliseconds
    (docs/benchmarks.md, "Latency tail"). In the worker, early input alone is queued and not waited for: the
    one worker thread runs it before the bin's step all the same. After each batch's results are taken, the next
    batch waits for `gate` (SendFirst) or one turn of the loop. With `timed` each result carries wall-clock
    stamps (binned, step start, step end, back on the event loop) for stream.stagetimes."""
    loop = asyncio.get_running_loop()
    # a node whose bookkeeping (counters, cost) can wait: it is done once the batch's predictions are out
    step_first: Callable[[np.ndarray], StepResult] = getattr(model, "step_first", model.step)
    settle: Callable[[], None] | None = getattr(model, "settle", None)

    def run_all(items: list[Bin], partial: np.ndarray | None) -> tuple[list[tuple[StepResult, float, float]], float]:
        t_start = time.perf_counter()
        out = []
        for b in items:
            t0 = time.time() if timed else 0.0
            r = step_first(b.vector)
            out.append((r, t0, time.time() if timed else 0.0))
        if partial is not None:
            model.deliver(partial)
        return out, time.perf_counter() - t_start

    early: list[Future] = []  # early input queued on the worker, done (or failed) before the next step's result
    work_s = 0.0  # moving average of the node's work per bin
    async with closing(bins) as it:
        async for items, partial, t_wall in it:
            threaded = executor is not None and (work_s > inline_max_s or len(items) > INLINE_BINS_MAX)
            if early and not threaded:  # back on the loop: what the worker still holds goes first
                await _settle(early)
            if not items:
                if partial is not None:
                    if threaded:
                        early.append(executor.submit(model.deliver, partial))  # type: ignore[union-attr]
                    else:
                        model.deliver(partial)
                continue
            t_binned = time.time() if timed else 0.0
            if threaded:
                results, dt = await loop.run_in_executor(executor, run_all, items, partial)
                await _settle(early)  # done already: the worker ran them first; re-raises what they raised
            else:
                results, dt = run_all(items, partial)
            t_back = time.time() if timed else 0.0
            work_s += (dt / len(items) - work_s) * WORK_AVERAGE_WEIGHT
            for b, (r, t0, t1) in zip(items, results, strict=True):
                yield b, r, t_wall, (t_binned, t0, t1, t_back) if timed else None
            # the loop sends what was just published before the next batch is taken
            await (gate.hold() if gate is not None else asyncio.sleep(0))
            if settle is not None:  # then the node's bookkeeping, by its owner thread (not awaited in the worker)
                if threaded:
                    early.append(executor.submit(settle))  # type: ignore[union-attr]
                else:
                    settle()
    await _settle(early)
    if settle is not None:
        settle()


async def _settle(futures: list[Future]) -> None:
    for f in futures:
        await asyncio.wrap_future(f)
    futures.clear()


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
              "events_dropped": c.dropped_total, "events_denoised": c.events_denoised,
              "malformed_in": c.malformed_total,
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
            st = node_stats(m, counters, now - t0, s0)
            st.reconnects = link.stats.reconnects
            link.publish(st)
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
    executor: ThreadPoolExecutor | None,
    counters: PipelineCounters | None = None,
    queue: BoundedQueue | None = None,
    frames: bool | FrameLimits = True,
    on_prediction: Any = None,
    inline_max_s: float = INLINE_STEP_MAX_S,
) -> PipelineCounters:
    """Source -> queue -> bins -> node -> MQTT until the source ends. Returns the counters. The node steps on the
    event loop's thread while they are short (`inline_max_s`, see node_stage), else in `executor`'s thread."""
    c = counters or PipelineCounters()
    q: BoundedQueue = queue or BoundedQueue(64, "block", weight=lambda b: len(b.events))
    fm = None
    if frames:
        limits = frames if isinstance(frames, FrameLimits) else FrameLimits()
        fm = FrameMaker(link, binner.spec.sensor.width, binner.spec.sensor.height, limits)
    async with asyncio.TaskGroup() as tg:
        gate = SendFirst()
        tg.create_task(pump(source, q, gate))
        dropped0, late0 = binner.dropped, q.dropped
        early = hasattr(model, "deliver")
        stages = c.stages
        chain = node_stage(bin_stage(q, binner, fm, early), model, executor, timed=stages is not None,
                           inline_max_s=inline_max_s, gate=gate)
        async with contextlib.aclosing(chain) as preds:
            async for b, r, t_wall, stamps in preds:
                p = gesture_payload(model, b, r)
                link.publish(p)
                if stages is not None and stamps is not None:
                    stages.add(StageTimes(p.t_event_us, t_wall, *stamps, p.t_wall))
                c.bins += 1
                c.predictions += 1
                c.t_event_us = p.t_event_us
                c.note_latency(time.time() - t_wall)
                c.events_in, c.events_denoised = binner.events_in, binner.denoised
                c.events_dropped += (binner.dropped - dropped0) + (q.dropped - late0)
                dropped0, late0 = binner.dropped, q.dropped
                if on_prediction is not None:
                    on_prediction(p)
        c.events_in, c.events_denoised = binner.events_in, binner.denoised
        c.events_dropped += (binner.dropped - dropped0) + (q.dropped - late0)
    return c
