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
from s2node.step import Backend, StepModel, load_step_model
from sources.live.text import TextInbox
from sources.sensor_map import SensorMap
from stream.binner import make_binner, recording_mapping
from stream.defaults import DEFAULT_GESTURE_MODEL, DEFAULT_RECORDING, DEFAULT_TEXT_MODEL
from stream.errors import PipelineError
from stream.mqtt import MqttLink
from stream.pipeline import PipelineCounters, run_gesture_pipeline, stats_loop
from stream.replay import ReplayControl, replay
from stream.schema import DEFAULT_NODE_ID, ControlIn, PayloadError, Status, decode, topic
from stream.text_pipeline import TextLM, run_text_pipeline, subscribe_text


def _resolve(name: str, recordings: list[Path]) -> Path | None:
    """One of the recordings this pipeline announced, by its name (or stem); a path sent over the network is
    never opened, nor looked up: its existence would otherwise be an answer to whoever sent it."""
    for r in recordings:
        if name in (r.name, r.stem):
            return r
    return None


def subscribe_control(link: MqttLink, ctl: ReplayControl, counters: PipelineCounters, recordings: list[Path],
                      text: TextInbox | None) -> None:
    """in/control -> the replay's knobs, and a reset into the text inbox (the text worker applies it in order);
    bad messages (speed outside schema's bounds included) and recordings not announced are counted as malformed."""

    def on_message(_topic: str, raw: bytes) -> None:
        try:
            msg = decode("in/control", raw)
        except PayloadError:
            counters.malformed_in += 1
            return
        if not isinstance(msg, ControlIn):
            return
        if msg.cmd == "pause":
            ctl.pause()
        elif msg.cmd == "resume":
            ctl.resume()
        elif msg.cmd == "speed":
            ctl.set_speed(float(msg.arg()))
        elif msg.cmd == "reset" and text is not None:
            text.push_reset()
        elif msg.cmd == "recording":
            target = _resolve(str(msg.arg()), recordings)
            if target is None:
                counters.malformed_in += 1
            else:
                ctl.switch(str(target))

    link.subscribe(topic(link.node, "in/control"), on_message)




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
    window_s: float | None = 2.0,
    backend: Backend = "node",
    sensor_map: SensorMap = SensorMap(),
    decoder: DecodeSpec = DEFAULT,
) -> None:
    """Serve the demo until cancelled. `recording`: one event file or a list (the first plays; in/control
    {"cmd": "recording", "recording": NAME} switches). Either model may be None to leave its half out; a half
    whose model or recording is missing is left out with a warning on stderr, and if nothing is left a
    PipelineError says what is missing."""
    recs = [Path(r) for r in ([] if recording is None else [recording] if isinstance(recording, str | Path)
                              else recording)]
    missing = [str(r) for r in recs if not r.is_file()]
    missing += [f"{m} (.json/.safetensors)" for m in (gesture_model, text_model) if m and not _have_model(m)]
    if missing:
        print(f"s2: left out of the local pipeline, not found: {', '.join(missing)}", file=sys.stderr)
    recs = [r for r in recs if r.is_file()]
    gm: StepModel | None = None
    tm: StepModel | None = None
    if gesture_model is not None and recs and _have_model(gesture_model):
        # sliding-window readout over the gesture model's training window, so a looping demo stays responsive
        gm = await asyncio.to_thread(load_step_model, gesture_model, backend, window_s=window_s)
    if text_model is not None and _have_model(text_model):
        tm = await asyncio.to_thread(load_step_model, text_model, backend)
    if gm is None and tm is None:
        raise PipelineError(f"nothing to serve: not found {', '.join(missing) or 'any model'} "
                            "(train models with `s2 train`, make the recording with `s2 data gesture-demo`)")
    described = recording_mapping(gm.config, sensor_map, recs[0]).describe() if gm is not None and recs else None
    status = Status(models=[m.name for m in (gm, tm) if m is not None], recordings=[r.name for r in recs],
                    sensor_map=described)
    link = MqttLink(broker_url, node_id, status=status)
    ctl = ReplayControl(speed=speed)
    counters = PipelineCounters()
    counters.sources.append(lambda: (link.stats.dropped_incoming, 0))  # in/ messages a flood pushed out
    lm = TextLM(tm, decoder=decoder) if tm is not None else None
    inbox = TextInbox(256) if lm is not None else None
    if control:
        subscribe_control(link, ctl, counters, recs, inbox)
    if lm is not None and inbox is not None:
        subscribe_text(link, inbox, lm)
        counters.sources.append(lambda: (inbox.stats.dropped, lm.c.malformed))
    with ThreadPoolExecutor(1, "s2-gesture") as gx, ThreadPoolExecutor(1, "s2-text") as tx:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(link.run())
            tg.create_task(stats_loop(link, [m for m in (gm, tm) if m is not None], counters))
            if lm is not None and inbox is not None:
                tg.create_task(run_text_pipeline(inbox, lm, link, tx))
            if gm is not None:
                current = str(recs[0])
                while True:
                    ctl.switch_to = None
                    binner = make_binner(gm.config, recording_mapping(gm.config, sensor_map, current))
                    gm.reset()
                    await run_gesture_pipeline(
                        replay(current, loop=loop, control=ctl, chunk_us=binner.spec.release_chunk_us), gm, binner,
                        link, executor=gx, counters=counters
                    )
                    if ctl.switch_to is not None:
                        current = ctl.switch_to
                        continue
                    break
            await asyncio.Event().wait()  # keep serving text and control until cancelled


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
