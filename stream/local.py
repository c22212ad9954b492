"""`run_local_pipeline`: the demo's back end (what `s2 tui` serves): a recording replayed into the gesture
model and the character LM answering on in/text, both publishing to one broker, steered over in/control.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from s2node.decode import DEFAULT, DecodeSpec
from s2node.step import Backend, StepModel, load_step_model, stream_window_s
from sources.live.text import TextInbox
from sources.sensor_map import SensorMap
from stream.binner import recording_mapping
from stream.control import Controller
from stream.defaults import DEFAULT_GESTURE_MODEL, DEFAULT_RECORDING, DEFAULT_TEXT_MODEL
from stream.errors import PipelineError
from stream.mqtt import MqttLink
from stream.pipeline import PipelineCounters, stats_loop
from stream.replay import ReplayControl
from stream.schema import DEFAULT_NODE_ID, Status
from stream.serve import play
from stream.text_pipeline import TextLM, run_text_pipeline, subscribe_text


def _have_model(path: str | Path) -> bool:
    from s2node.modelfile import model_paths

    return all(p.is_file() for p in model_paths(path))


async def run_local_pipeline(
    broker_url: str,
    node_id: str = DEFAULT_NODE_ID,
    recording: str | Path | Sequence[str | Path] | None = DEFAULT_RECORDING,
    gesture_model: str | Path | None = DEFAULT_GESTURE_MODEL,
    text_model: str | Path | None = DEFAULT_TEXT_MODEL,
    speed: float = 1.0,
    loop: bool = True,
    control: bool = True,
    window_s: float | None = None,
    backend: Backend = "node",
    sensor_map: SensorMap = SensorMap(),
    decoder: DecodeSpec = DEFAULT,
) -> None:
    """Serve the demo until cancelled. `recording`: one event file or a list (the first plays; in/control
    {"cmd": "recording", "recording": NAME} switches). Either model may be None to leave its half out; a half
    whose model or recording is missing is left out with a warning on stderr, and if nothing is left a
    PipelineError says what is missing. `window_s`: the gesture readout's window (None: the model file's,
    s2node.readout.served_window_s; 0: since the start)."""
    recs = [Path(r) for r in ([] if recording is None else [recording] if isinstance(recording, str | Path)
                              else recording)]
    missing = [str(r) for r in recs if not r.is_file()]
    missing += [f"{m} (.json/.safetensors)" for m in (gesture_model, text_model) if m and not _have_model(m)]
    if missing:
        print(f"s2: left out of the local pipeline, not found: {', '.join(missing)}", file=sys.stderr)
    recs = [r for r in recs if r.is_file()]
    gm: StepModel | None = None
    tm: StepModel | None = None
    window: float | None = None
    if gesture_model is not None and recs and _have_model(gesture_model):
        # a sliding-window readout (the window the model was trained for), so a looping demo stays responsive
        window = stream_window_s(gesture_model, window_s)
        gm = await asyncio.to_thread(load_step_model, gesture_model, backend, window_s=window)
    if text_model is not None and _have_model(text_model):
        tm = await asyncio.to_thread(load_step_model, text_model, backend)
    if gm is None and tm is None:
        raise PipelineError(f"nothing to serve: not found {', '.join(missing) or 'any model'} "
                            "(train models with `s2 train`, make the recording with `s2 data gesture-demo`)")
    described = recording_mapping(gm.config, sensor_map, recs[0]).describe() if gm is not None and recs else None
    status = Status(models=[m.name for m in (gm, tm) if m is not None], recordings=[r.name for r in recs],
                    sensor_map=described, window_s=window)
    link = MqttLink(broker_url, node_id, status=status)
    ctl = ReplayControl(speed=speed)
    counters = PipelineCounters()
    counters.sources.append(lambda: (link.stats.dropped_incoming, 0))  # in/ messages a flood pushed out
    lm = TextLM(tm, decoder=decoder) if tm is not None else None
    inbox = TextInbox(256) if lm is not None else None
    controller = None
    if control:  # only then does the status carry a control object: a node that does not obey says nothing
        controller = Controller(link, counters, replay=ctl if gm is not None else None, recordings=recs,
                                current=recs[0] if gm is not None else None, text=inbox)
        controller.subscribe()
    if lm is not None and inbox is not None:
        subscribe_text(link, inbox, lm)
        counters.sources.append(lambda: (inbox.stats.dropped, lm.c.malformed))

    async def serve() -> None:
        if gm is not None:
            await play(recs[0], gm, link, ctl, executor=gx, counters=counters, loop=loop,
                       mapping=lambda r: recording_mapping(gm.config, sensor_map, r),
                       on_prediction=None if controller is None else controller.note_prediction)
        await asyncio.Event().wait()  # keep serving text and control until cancelled

    with ThreadPoolExecutor(1, "s2-gesture") as gx, ThreadPoolExecutor(1, "s2-text") as tx:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(link.run())
            tg.create_task(stats_loop(link, [m for m in (gm, tm) if m is not None], counters))
            if lm is not None and inbox is not None:
                tg.create_task(run_text_pipeline(inbox, lm, link, tx))
            await (serve() if controller is None else controller.serving(serve()))


@contextlib.asynccontextmanager
async def local_demo(node: str = DEFAULT_NODE_ID, recordings: list[str] | None = None, speed: float = 1.0,
                     backend: Backend = "node", sensor_map: SensorMap | str = "scale",
                     decoder: DecodeSpec | str = DEFAULT):
    """Yield (broker URL, pipeline task): the embedded broker with the local demo pipeline publishing to it.
    `decoder`: how the text model writes continuations (a DecodeSpec or its text, as DecodeSpec.parse reads)."""
    from stream.broker import embedded_broker

    if isinstance(sensor_map, str):
        sensor_map = SensorMap.parse(sensor_map)  # a bad --sensor-map is one line before anything starts
    if isinstance(decoder, str):
        decoder = DecodeSpec.parse(decoder)  # so is a bad --continuation
    async with embedded_broker() as url:
        pipeline = asyncio.create_task(run_local_pipeline(url, node, recording=recordings or None, speed=speed,
                                                          backend=backend, sensor_map=sensor_map,
                                                          decoder=decoder))
        try:
            yield url, pipeline
        finally:
            pipeline.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # its failure was reported already
                await pipeline
