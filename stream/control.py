"""Acknowledged control: in/control applied to what a node serves, and answered in its retained status.

Every in/control message is answered in Status.control (stream.schema.ControlState): what the node now does
(paused, the speed asked for and the speed achieved, the recording playing) and how the last command went ("ok"
or "refused: why"). What a node obeys depends on what it serves:

- a replay (`s2 replay`, the demo): pause, resume, speed, recording (one it announced), reset (it starts over);
- a live event source (`s2 run --source udp|dv|synthetic`): pause (input is dropped and counted until resume:
  a robot that pauses perception wants fresh data afterwards, not a backlog), resume, reset (the model forgets);
- text (`s2 run --source text`, the demo's language model): reset (the context is emptied).

Anything else is refused with a reason. The achieved replay speed is event time advanced per wall second over a
sliding window (SpeedMeter), fed by the predictions as they leave the node.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from sources.events import EventBatch
from sources.live.text import TextInbox
from stream.mqtt import MqttLink
from stream.pipeline import PipelineCounters, closing
from stream.replay import ReplayControl
from stream.schema import CONTROL_RESULT_MAX, ControlIn, ControlState, PayloadError, decode, topic

SPEED_WINDOW_S = 3.0  # the achieved speed is measured over this much wall time
SPEED_MIN_SPAN_S = 0.5  # ... and said only once the window spans this much
SHORT_FRACTION = 0.9  # achieved below this fraction of the request: the status says it falls short
ANSWER_EVERY_S = 0.1  # answers are coalesced: at most this often a new retained status (a flood cannot amplify)
WATCH_EVERY_S = 0.5  # the achieved speed is re-measured this often, and published when it changed


class SpeedMeter:
    """Event time advanced per wall second over the last SPEED_WINDOW_S seconds (bounded memory)."""

    def __init__(self, window_s: float = SPEED_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s, self.clock = window_s, clock
        self._points: deque[tuple[float, int]] = deque(maxlen=4096)

    def note(self, t_event_us: int) -> None:
        if self._points and t_event_us < self._points[-1][1]:  # a new pass of the recording: measure afresh
            self._points.clear()
        self._points.append((self.clock(), t_event_us))

    def clear(self) -> None:
        self._points.clear()

    def speed(self) -> float | None:
        """The achieved speed, or None while the window spans less than SPEED_MIN_SPAN_S of wall time."""
        now = self.clock()
        while len(self._points) > 1 and now - self._points[0][0] > self.window_s:
            self._points.popleft()
        if not self._points or now - self._points[0][0] < SPEED_MIN_SPAN_S:
            return None
        (w0, e0), (_, e1) = self._points[0], self._points[-1]
        return max(0, e1 - e0) / 1e6 / (now - w0)


@dataclass
class LiveGate:
    """Pause for a live source: while paused its batches are dropped (counted), so resuming starts on fresh data."""

    paused: bool = False
    dropped: int = 0  # events dropped while paused

    async def gated(self, batches: AsyncIterator[EventBatch]) -> AsyncIterator[EventBatch]:
        async with closing(batches) as it:
            async for b in it:
                if self.paused:
                    self.dropped += len(b.events)
                else:
                    yield b


class Controller:
    """Applies in/control to the knobs it was given and answers each message in the link's retained status.

    replay: pause/resume/speed of a replay, `recordings` the names it may switch to (`current` plays); gate:
    pause/resume of a live source; text: a reset goes into the text inbox, in order with the text;
    reset_gesture: how a live gesture model forgets (a replay starts over instead)."""

    def __init__(self, link: MqttLink, counters: PipelineCounters, *, replay: ReplayControl | None = None,
                 recordings: list[Path] | None = None, current: Path | None = None, gate: LiveGate | None = None,
                 text: TextInbox | None = None, reset_gesture: Callable[[], object] | None = None) -> None:
        self.link, self.counters = link, counters
        self.replay, self.recordings, self.current = replay, list(recordings or []), current
        self.gate, self.text, self.reset_gesture = gate, text, reset_gesture
        self.meter = SpeedMeter()
        accepts = [*(["pause", "resume"] if replay is not None or gate is not None else []),
                   *(["speed", "recording"] if replay is not None else []), "reset"]
        self.state = ControlState(accepts=accepts, speed_requested=replay.speed if replay is not None else None,
                                  recording=current.name if current is not None else None)
        link.status.control = self.state
        self._answer: asyncio.TimerHandle | None = None
        self._last_answer = 0.0

    def subscribe(self) -> None:
        self.link.subscribe(topic(self.link.node or "", "in/control"), self.on_message)

    def note_prediction(self, t_event_us: int) -> None:
        """Feed the speed meter (the pipeline's on_prediction)."""
        self.meter.note(t_event_us)

    # --- commands ---
    def on_message(self, _topic: str, raw: bytes) -> None:
        try:
            msg = decode("in/control", raw)
        except PayloadError as e:
            self.counters.malformed_in += 1
            self._answered(None, None, f"refused: {e}")
            return
        if not isinstance(msg, ControlIn):  # decode("in/control") returns nothing else
            return
        why = self.apply(msg)
        self._answered(msg.cmd, msg.seq, "ok" if why is None else f"refused: {why}")

    def apply(self, msg: ControlIn) -> str | None:
        """Carry out one command; None when done, else why it was refused."""
        if msg.cmd not in self.state.accepts:
            return f"{msg.cmd} does not apply here (this node obeys {', '.join(self.state.accepts)})"
        if msg.cmd in ("pause", "resume"):
            paused = msg.cmd == "pause"
            if self.replay is not None and paused:
                self.replay.pause()
            elif self.replay is not None:
                self.replay.resume()
            if self.gate is not None:
                self.gate.paused = paused
            self.state.paused = paused
            self._remeasure()
        elif msg.cmd == "speed" and self.replay is not None:
            self.replay.set_speed(float(msg.arg()))
            self.state.speed_requested = self.replay.speed
            self._remeasure()
        elif msg.cmd == "recording" and self.replay is not None:
            target = next((r for r in self.recordings if msg.arg() in (r.name, r.stem)), None)
            if target is None:
                self.counters.malformed_in += 1  # a path or an unknown name: never opened, nor looked up
                return f"not a recording this node serves ({', '.join(r.name for r in self.recordings)})"
            self._play(target)
        elif msg.cmd == "reset":
            return self._reset(msg.arg())
        return None

    def _reset(self, what: str | None) -> str | None:
        text = self.text is not None and what in (None, "text")
        gesture = (self.replay is not None or self.reset_gesture is not None) and what in (None, "gesture")
        if not (text or gesture):
            return f"no {what} model here"
        if text and self.text is not None:
            self.text.push_reset()
        if gesture and self.replay is not None and self.current is not None:
            self._play(self.current)  # a replay starts over: the model forgets, steps count from 0 again
        elif gesture and self.reset_gesture is not None:
            self.reset_gesture()
        return None

    def _play(self, path: Path) -> None:
        self.current = path
        if self.replay is not None:
            self.replay.switch(str(path))
        self.state.recording = path.name
        self._remeasure()

    def _remeasure(self) -> None:
        self.meter.clear()
        self.state.speed, self.state.speed_short = None, False

    # --- answers ---
    def _answered(self, cmd: str | None, seq: int | None, result: str) -> None:
        st = self.state
        st.seq += 1
        st.last_cmd, st.last_cmd_seq, st.last_cmd_result = cmd, seq, result[:CONTROL_RESULT_MAX]
        self.answer()

    def answer(self) -> None:
        """Publish the status now, or at the end of the current ANSWER_EVERY_S interval (coalescing a burst)."""
        if self._answer is not None:
            return
        wait = self._last_answer + ANSWER_EVERY_S - time.monotonic()
        if wait <= 0:
            self._publish()
        else:
            self._answer = asyncio.get_running_loop().call_later(wait, self._publish)

    def _publish(self) -> None:
        self._answer = None
        self._last_answer = time.monotonic()
        if self.gate is not None:
            self.state.dropped_paused = self.gate.dropped
        if self.link.status.state == "online":  # after close() the offline status stands
            self.link.publish(self.link.status, retain=True)

    def measure(self) -> bool:
        """Update the achieved speed (and the live drop count); True when the status changed."""
        st = self.state
        before = (st.speed, st.speed_short, st.dropped_paused)
        if self.replay is not None:
            v = None if st.paused else self.meter.speed()
            st.speed = None if v is None else float(f"{v:.3g}")
            want = st.speed_requested or 0.0
            st.speed_short = st.speed is not None and want > 0 and st.speed < SHORT_FRACTION * want
        if self.gate is not None:
            st.dropped_paused = self.gate.dropped
        return (st.speed, st.speed_short, st.dropped_paused) != before

    async def serving(self, body: Awaitable[None]) -> None:
        """Await the body (the pipeline) while watch() keeps the achieved speed in the status."""
        async with asyncio.TaskGroup() as tg:
            watcher = tg.create_task(self.watch())
            try:
                await body
            finally:
                watcher.cancel()

    async def watch(self, every_s: float = WATCH_EVERY_S) -> None:
        """Re-measure every every_s and publish what changed (until cancelled)."""
        try:
            while True:
                await asyncio.sleep(every_s)
                if self.measure():
                    self.answer()
        finally:
            if self._answer is not None:
                self._answer.cancel()
                self._answer = None
