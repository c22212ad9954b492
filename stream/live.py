"""`s2 run --source ...`: live sources into the pipeline (drop-oldest queues: fresh data wins, drops counted).

udp://HOST:PORT[?format=spif|faery] -> sources.live_udp; dv://HOST:PORT -> dv-processing's NetworkReader in a
thread; synthetic -> the gesture renderer as a live camera; text -> stdin lines + in/text messages.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import numpy as np

from sources.events import EVENT_DTYPE
from stream.errors import PipelineError
from stream.queues import BoundedQueue
from stream.replay import EventBatch


def _host_port(spec: str) -> tuple[str, int, dict[str, list[str]]]:
    u = urlsplit(spec)
    try:
        port = u.port
    except ValueError as e:
        raise PipelineError(f"{spec}: bad port") from e
    if not u.hostname or port is None:
        raise PipelineError(f"{spec}: expected {u.scheme}://HOST:PORT")
    return u.hostname, port, parse_qs(u.query)


# A live source that goes quiet (a DVS watching a still scene sends nothing) would leave its open bin open until
# the next datagram. After this much wall time without input the watermark moves on by the wall time that passed.
IDLE_S = 0.05


async def idle_watermarks(get: Callable[[], Awaitable[EventBatch]], idle_s: float = IDLE_S
                          ) -> AsyncIterator[EventBatch]:
    """The batches that get() returns (StopAsyncIteration ends them), and while none comes for idle_s, empty ones
    whose watermark is the last one plus the wall time since it arrived, less idle_s of slack for the network:
    the binner closes a quiet camera's bins (event time, taken to run with the wall clock while nothing is
    heard). Events that then arrive behind that watermark are late: the binner drops and counts them. get()
    must survive cancellation (a queue or an event wait, not an async generator). idle_s 0: never."""
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
            assert last is not None
            now = time.time()
            w = last.upto_us + int((now - last.t_wall - idle_s) * 1e6)
            if w > upto:
                upto = w
                yield EventBatch(np.empty(0, EVENT_DTYPE), w, now)
            continue
        last, upto = b, max(upto, b.upto_us)
        yield b


async def udp_batches(src, idle_s: float = IDLE_S) -> AsyncIterator[EventBatch]:
    """Live UDP batches, each with its last event as the watermark; idle_watermarks while the camera is quiet."""

    async def get() -> EventBatch:
        while True:
            ev = await anext(src)  # StopAsyncIteration once the source is closed
            if len(ev):
                return EventBatch(ev, int(ev["t"][-1]) + 1, time.time())

    async for b in idle_watermarks(get, idle_s):
        yield b


async def dv_batches(host: str, port: int, idle_s: float = IDLE_S) -> AsyncIterator[EventBatch]:
    """A DV software network stream (dv-processing's NetworkReader), read in a thread."""
    try:
        import dv_processing as dv
    except ImportError as e:
        raise PipelineError("dv:// needs dv-processing (pip install dv-processing)") from e
    try:
        reader = await asyncio.to_thread(dv.io.NetworkReader, host, port)
    except Exception as e:  # dv-processing raises its own runtime errors on connect
        raise PipelineError(f"dv://{host}:{port}: cannot connect: {e}") from e
    loop = asyncio.get_running_loop()
    q: BoundedQueue[EventBatch] = BoundedQueue(256, "drop-oldest", weight=lambda b: len(b.events))
    stop = threading.Event()

    def read(reader) -> None:
        while not stop.is_set() and reader.isRunning():
            store = reader.getNextEventBatch()  # non-blocking: None when nothing arrived
            if store is None or len(store) == 0:
                time.sleep(0.0005)
                continue
            a = store.numpy()
            ev = np.empty(len(a), EVENT_DTYPE)
            ev["t"], ev["x"], ev["y"], ev["p"] = a["timestamp"], a["x"], a["y"], a["polarity"]
            loop.call_soon_threadsafe(q.put_nowait, EventBatch(ev, int(ev["t"][-1]) + 1, time.time()))
        loop.call_soon_threadsafe(q.close)

    t = threading.Thread(target=read, args=(reader,), daemon=True)
    t.start()
    try:
        async for b in idle_watermarks(q.get, idle_s):
            yield b
    finally:
        stop.set()  # the reader thread ends before the reader is destroyed (its destructor needs the GIL free)
        await asyncio.to_thread(t.join, 2.0)


async def synthetic_batches(seed: int = 0, segment_s: float = 2.0, chunk_us: int = 1000) -> AsyncIterator[EventBatch]:
    """The gesture renderer as a live camera: random gestures back to back, paced in real time by event time.

    The next segment renders in a worker thread while the current one plays (sources.gesture_data)."""
    try:
        from sources.gesture_data import render_recording
        from sources.gesture_motions import GESTURE_CLASSES
    except ImportError as e:
        raise PipelineError("--source synthetic needs sources.gesture_data (the gesture renderer)") from e
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


async def run_live(args: argparse.Namespace, url: str, make_link: Callable) -> int:
    from stream.node_adapter import load_step_model, windowed
    from stream.pipeline import PipelineCounters, stats_loop
    from stream.pipeline_cli import DEFAULT_GESTURE_MODEL, DEFAULT_TEXT_MODEL
    from stream.schema import Status

    spec = args.source
    kind = spec.split("://", 1)[0] if "://" in spec else spec
    if kind not in ("udp", "dv", "synthetic", "text"):
        raise PipelineError(f"--source {spec!r}: use udp://HOST:PORT, dv://HOST:PORT, synthetic or text")
    model = load_step_model(args.model or (DEFAULT_TEXT_MODEL if kind == "text" else DEFAULT_GESTURE_MODEL))
    model = windowed(model, getattr(args, "window_s", None))
    link = make_link(args, url, Status(models=[model.name], recordings=[spec]))
    c = PipelineCounters()
    with ThreadPoolExecutor(1, "s2-node") as ex:
        async with asyncio.TaskGroup() as tg:
            run = tg.create_task(link.run())
            from stream.pipeline_cli import _connected_or_fail

            await _connected_or_fail(link, url, run)
            stats = tg.create_task(stats_loop(link, [model], c))
            try:
                async with asyncio.timeout(args.duration_s):
                    await _serve(kind, spec, args, model, link, ex, c)
            except TimeoutError:
                pass
            finally:
                stats.cancel()
                await link.close(timeout_s=3.0)
                run.cancel()
    print(f"s2 run: {c.predictions} predictions, {c.events_in} events in, {c.events_dropped} dropped, "
          f"{c.malformed_in} malformed", file=sys.stderr)
    return 0


async def _serve(kind, spec, args, model, link, ex, c) -> None:
    from stream.binner import make_binner
    from stream.pipeline import run_gesture_pipeline

    if kind == "text":
        from stream.text_pipeline import TextLM, run_text_pipeline, stdin_text, subscribe_text

        lm = TextLM(model)
        q: BoundedQueue = BoundedQueue(256, "drop-oldest")
        subscribe_text(link, q, lm)

        async def stdin_pump() -> None:
            async with contextlib.aclosing(stdin_text()) as it:
                async for ev in it:
                    q.put_nowait(ev)

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(stdin_pump())  # ends at EOF; in/text keeps being served
                tg.create_task(run_text_pipeline(q, lm, link, ex))
        finally:
            c.malformed_in = lm.c.malformed
        return
    binner = make_binner(model.config)
    q2: BoundedQueue = BoundedQueue(args.buffer, "drop-oldest", weight=lambda b: len(b.events))
    if kind == "udp":
        from sources.live_udp import UdpEventSource

        host, port, query = _host_port(spec)
        async with UdpEventSource(host, port, (query.get("format") or ["spif"])[0], args.buffer) as src:
            try:
                await run_gesture_pipeline(udp_batches(src, args.idle_s), model, binner, link, executor=ex,
                                           counters=c, queue=q2)
            finally:
                c.events_dropped += src.stats.dropped
                c.malformed_in += src.stats.malformed
    elif kind == "dv":
        host, port, _ = _host_port(spec)
        await run_gesture_pipeline(dv_batches(host, port, args.idle_s), model, binner, link, executor=ex,
                                   counters=c, queue=q2)
    else:
        await run_gesture_pipeline(synthetic_batches(), model, binner, link, executor=ex, counters=c, queue=q2)
