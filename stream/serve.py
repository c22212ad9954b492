"""Serving a model over MQTT: a recording replayed (`s2 replay`) or a live source (`s2 run`), until it ends.

Live sources come from sources.live (drop-oldest buffers: fresh data wins, drops counted); a replay blocks
instead (nothing is lost), also on publishing: it waits while the MQTT link's backlog is long. Each serve
function connects the one MQTT link, publishes stats every second, runs its pipeline and returns what it counted.
Both obey in/control and answer it in the retained status (stream.control says what each obeys).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from s2node.decode import DEFAULT, DecodeSpec
from s2node.readout import describe_window
from s2node.step import Backend, StepModel, load_step_model, stream_window_s
from sources.events import DVS128, EventBatch, SensorSize, TextEvent
from sources.live import (
    IDLE_S,
    LineStats,
    TextInbox,
    UdpEventSource,
    dv_batches,
    stdin_text,
    synthetic_batches,
    udp_batches,
)
from sources.sensor_map import SensorMap, SensorMapping
from stream.binner import make_binner, recording_mapping, sensor_mapping
from stream.control import Controller, LiveGate
from stream.defaults import DEFAULT_GESTURE_MODEL, DEFAULT_TEXT_MODEL
from stream.errors import BrokerError, PipelineError
from stream.mqtt import MqttLink
from stream.pipeline import FrameLimits, PipelineCounters, run_gesture_pipeline, stats_loop
from stream.queues import BoundedQueue
from stream.replay import ReplayControl, replay
from stream.schema import DEFAULT_NODE_ID, Status, TextPrediction
from stream.text_pipeline import TextLM, run_text_pipeline, subscribe_text

LIVE_KINDS = ("udp", "dv", "synthetic", "text")
STDIN = "stdin"  # TextEvent.origin of the lines typed on stdin (answered on stdout too)
PUBLISH_BACKLOG = 1_000  # messages waiting for the broker beyond which a replay waits (far below the link's bound)


@dataclass(frozen=True)
class LinkOptions:
    """How a node publishes: its id, QoS and credentials (the broker URL comes separately)."""

    node: str = DEFAULT_NODE_ID
    qos: int = 1
    username: str | None = None
    password: str | None = None
    tls: bool | None = None
    cafile: str | None = None

    def link(self, url: str, status: Status) -> MqttLink:
        return MqttLink(url, self.node, qos=self.qos, username=self.username, password=self.password,
                        tls=self.tls, cafile=self.cafile, status=status)


@dataclass(frozen=True)
class ServeSummary:
    predictions: int
    events_in: int
    events_dropped: int
    malformed_in: int
    messages_dropped: int
    unsent: int


@contextlib.asynccontextmanager
async def connected(link: MqttLink, url: str, models: list, counters: PipelineCounters,
                    close_timeout_s: float = 5.0) -> AsyncIterator[None]:
    """Run the link and the stats loop around the body; a broker that cannot be reached at the start is a
    one-line BrokerError (later outages are waited out); on the way out the offline status is sent."""
    counters.sources.append(lambda: (link.stats.dropped_incoming, 0))  # in/ messages a flood pushed out
    async with asyncio.TaskGroup() as tg:
        run = tg.create_task(link.run())
        try:
            await link.ensure_connected(10.0)
        except BrokerError:
            run.cancel()
            raise
        stats = tg.create_task(stats_loop(link, models, counters))
        try:
            yield
        finally:
            stats.cancel()
            await link.close(timeout_s=close_timeout_s)
            run.cancel()


def _summary(c: PipelineCounters, link: MqttLink) -> ServeSummary:
    return ServeSummary(c.predictions, c.events_in, c.dropped_total, c.malformed_total, link.stats.dropped,
                        link.pending)


def _announce(mapping: SensorMapping, window_s: float, announce: Callable[[str], None] | None) -> str:
    text = mapping.describe()
    if announce is not None:
        announce(f"sensor map: {text}")
        announce(f"gesture readout: {describe_window(window_s)}")
    return text


async def serve_replay(url: str, path: str, *, model: str = DEFAULT_GESTURE_MODEL, link: LinkOptions = LinkOptions(),
                       speed: float = 1.0, loop: bool = False, start_s: float = 0.0, end_s: float | None = None,
                       frames: bool | FrameLimits = True, window_s: float | None = None, backend: Backend = "node",
                       sensor_map: SensorMap = SensorMap(), sensor: SensorSize | None = None,
                       announce: Callable[[str], None] | None = None,
                       report: Callable[[ServeSummary], object] | None = None,
                       node_options: Mapping[str, Any] | None = None) -> ServeSummary:
    """Replay an event file paced by its timestamps into a gesture model, predictions to the broker at url.

    The file's sensor (or `sensor`) meets the model's input through `sensor_map` (told once to `announce` and in
    the status). Publishing exerts backpressure on the replay: while more than PUBLISH_BACKLOG messages wait for
    the broker, the replay waits (nothing is lost, whatever --speed). `report` gets the summary however the
    replay ends (cancelled by Ctrl-C or SIGTERM too). `window_s`: the readout's window (None: the model file's,
    s2node.readout.served_window_s; 0: since the start)."""
    window_s = stream_window_s(model, window_s)
    m = load_step_model(model, backend, window_s=window_s, **_chip_only(backend, node_options))
    mapping = recording_mapping(m.config, sensor_map, path, sensor)
    # the status carries the recording's file name only: where it lies on this machine is nobody else's business
    mqtt = link.link(url, Status(models=[m.name], recordings=[Path(path).name],
                                 sensor_map=_announce(mapping, window_s, announce), window_s=window_s))
    c = PipelineCounters()
    ctl = ReplayControl(speed=speed)
    control = Controller(mqtt, c, replay=ctl, recordings=[Path(path)], current=Path(path))
    control.subscribe()
    try:
        with ThreadPoolExecutor(1, "s2-node") as ex:
            async with connected(mqtt, url, [m], c):
                await control.serving(play(
                    Path(path), m, mqtt, ctl, executor=ex, counters=c, mapping=lambda _p: mapping, loop=loop,
                    start_s=start_s, end_s=end_s, frames=frames, paced=True, on_prediction=control.note_prediction))
    finally:
        if report is not None:
            report(_summary(c, mqtt))
    return _summary(c, mqtt)


async def play(path: Path, model: StepModel, link: MqttLink, ctl: ReplayControl, *, executor: ThreadPoolExecutor,
               counters: PipelineCounters, mapping: Callable[[Path], SensorMapping], loop: bool = False,
               start_s: float = 0.0, end_s: float | None = None, frames: bool | FrameLimits = True, paced: bool = False,
               on_prediction: Callable[[int], object] | None = None) -> None:
    """Replay `path` through the gesture model under `ctl` until it ends; a switch (another recording, or the
    same one again: a reset) starts the new one from its beginning with the model's state reset. `paced`: the
    replay waits while the link's backlog is long (see paced_by)."""
    current = path
    while True:
        ctl.switch_to = None
        model.reset()
        binner = make_binner(model.config, mapping(current))
        src = replay(current, loop=loop, start_s=start_s, end_s=end_s, control=ctl,
                     chunk_us=binner.spec.release_chunk_us)
        note = None if on_prediction is None else (lambda p: on_prediction(p.t_event_us))
        await run_gesture_pipeline(paced_by(link, src) if paced else src, model, binner, link, executor=executor,
                                   counters=counters, frames=frames, on_prediction=note)
        if ctl.switch_to is None:
            return
        current = Path(ctl.switch_to)


async def paced_by(link: MqttLink, batches: AsyncIterator[EventBatch]) -> AsyncIterator[EventBatch]:
    """The batches, each held back while the link's backlog exceeds PUBLISH_BACKLOG (a replay can wait; a live
    source cannot, and keeps the link's drop-oldest bound)."""
    async with contextlib.aclosing(batches) as it:
        async for b in it:
            while link.pending > PUBLISH_BACKLOG:
                await asyncio.sleep(0.005)
            yield b


def _chip_only(backend: Backend, node_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The emulated node's options (numerics, decoder and embedding placement); the PyTorch backend takes none."""
    return dict(node_options or {}) if backend == "node" else {}


def live_kind(source: str) -> str:
    """"udp://h:p" -> "udp"; PipelineError (one line) for a source we do not serve."""
    kind = source.split("://", 1)[0] if "://" in source else source
    if kind not in LIVE_KINDS:
        raise PipelineError(f"--source {source!r}: use udp://HOST:PORT, dv://HOST:PORT, synthetic or text")
    return kind


def _host_port(spec: str) -> tuple[str, int, dict[str, list[str]]]:
    u = urlsplit(spec)
    try:
        port = u.port
    except ValueError as e:
        raise PipelineError(f"{spec}: bad port") from e
    if not u.hostname or port is None:
        raise PipelineError(f"{spec}: expected {u.scheme}://HOST:PORT")
    return u.hostname, port, parse_qs(u.query)


async def serve_live(url: str, source: str, *, model: str | None = None, link: LinkOptions = LinkOptions(),
                     buffer: int = 256, duration_s: float | None = None, idle_s: float = IDLE_S,
                     window_s: float | None = None, backend: Backend = "node", sensor_map: SensorMap = SensorMap(),
                     sensor: SensorSize | None = None, announce: Callable[[str], None] | None = None,
                     report: Callable[[ServeSummary], object] | None = None,
                     node_options: Mapping[str, Any] | None = None, decoder: DecodeSpec = DEFAULT,
                     stop: asyncio.Event | None = None,
                     on_answer: Callable[[TextPrediction], object] | None = None,
                     frames: bool | FrameLimits = True) -> ServeSummary:
    """A live source (udp://, dv://, synthetic, text) through a model until it ends, duration_s passes or `stop`
    is set. Event sources have the given `sensor` (default: the model's own; the synthetic camera's is 128 x 128).
    Text: `decoder` says how the model writes its continuations (s2node.decode); `on_answer` gets the answer to
    each line of stdin. `report` gets the summary however it ends (cancelled by Ctrl-C or SIGTERM too).
    in/control is obeyed and answered as stream.control says. `window_s`: the gesture readout's window (None:
    the model file's, s2node.readout.served_window_s; 0: since the start)."""
    kind = live_kind(source)
    model = model or (DEFAULT_TEXT_MODEL if kind == "text" else DEFAULT_GESTURE_MODEL)
    window = None if kind == "text" else stream_window_s(model, window_s)
    m = load_step_model(model, backend, window_s=window, **_chip_only(backend, node_options))
    mapping, described = None, None
    if window is not None:
        mapping = sensor_mapping(m.config, sensor_map, DVS128 if kind == "synthetic" else sensor)
        described = _announce(mapping, window, announce)
    mqtt = link.link(url, Status(models=[m.name], recordings=[kind], sensor_map=described, window_s=window))
    c = PipelineCounters()
    try:
        with ThreadPoolExecutor(1, "s2-node") as ex:
            inbox, gate = TextInbox(256), LiveGate()
            if kind == "text":
                control = Controller(mqtt, c, text=inbox)
            else:
                aloop = asyncio.get_running_loop()
                # the reset runs on the node's own thread, between two of its steps
                control = Controller(mqtt, c, gate=gate, reset_gesture=lambda: aloop.run_in_executor(ex, m.reset))
                c.sources.append(lambda: (gate.dropped, 0))
            control.subscribe()

            async def body() -> None:
                if kind == "text":
                    await _serve_text(m, mqtt, ex, c, inbox, on_answer, decoder)
                else:
                    await _serve_events(kind, source, m, mqtt, ex, c, buffer, idle_s, mapping, gate, frames)

            async with connected(mqtt, url, [m], c, close_timeout_s=3.0):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(duration_s):
                        await control.serving(_until_set(stop, body()))
    finally:
        if report is not None:
            report(_summary(c, mqtt))
    return _summary(c, mqtt)


async def _until_set(stop: asyncio.Event | None, body: Coroutine[Any, Any, None]) -> None:
    """Await body until it ends or `stop` is set (then it is cancelled, and this returns normally)."""
    if stop is None:
        return await body
    task, waiter = asyncio.ensure_future(body), asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (task, waiter):
            t.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


async def _serve_text(model, link: MqttLink, ex: ThreadPoolExecutor, c: PipelineCounters, inbox: TextInbox,
                      on_answer: Callable[[TextPrediction], object] | None, decoder: DecodeSpec = DEFAULT) -> None:
    lm = TextLM(model, decoder=decoder)
    subscribe_text(link, inbox, lm)
    lines = LineStats()
    c.sources.append(lambda: (inbox.stats.dropped + lines.lines_cut, lm.c.malformed))

    async def stdin_pump() -> None:  # ends at EOF; in/text keeps being served
        async with contextlib.aclosing(stdin_text(stats=lines)) as it:
            async for ev in it:
                inbox.push(ev.text, ev.t_us, origin=STDIN)

    def answered(ev: TextEvent, pred: TextPrediction) -> None:
        c.predictions += 1
        if on_answer is not None and ev.origin == STDIN:
            on_answer(pred)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(stdin_pump())
        tg.create_task(run_text_pipeline(inbox, lm, link, ex, on_answer=answered))


async def _serve_events(kind: str, source: str, model, link: MqttLink, ex: ThreadPoolExecutor,
                        c: PipelineCounters, buffer: int, idle_s: float, mapping: SensorMapping | None,
                        gate: LiveGate, frames: bool | FrameLimits = True) -> None:
    binner = make_binner(model.config, mapping, live=True)
    q: BoundedQueue = BoundedQueue(buffer, "drop-oldest", weight=lambda b: len(b.events))
    if kind == "udp":
        host, port, query = _host_port(source)
        async with UdpEventSource(host, port, (query.get("format") or ["spif"])[0], buffer) as src:
            c.sources.append(lambda: (src.stats.dropped + src.kernel_drops(), src.stats.malformed))
            await run_gesture_pipeline(gate.gated(udp_batches(src, idle_s)), model, binner, link, executor=ex,
                                       counters=c, queue=q, frames=frames)
    elif kind == "dv":
        host, port, _ = _host_port(source)
        await run_gesture_pipeline(gate.gated(dv_batches(host, port, idle_s)), model, binner, link, executor=ex,
                                   counters=c, queue=q, frames=frames)
    else:
        await run_gesture_pipeline(gate.gated(synthetic_batches()), model, binner, link, executor=ex, counters=c,
                                   queue=q, frames=frames)
