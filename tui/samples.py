"""Realistic, deterministic payloads for the screenshot, the tests and the bench (no randomness, no clock)."""

from __future__ import annotations

import math

from stream.schema import (
    CONTROL_CMDS,
    ControlState,
    EventFrame,
    GesturePrediction,
    NodeStats,
    Status,
    TextPrediction,
    topic,
)

CLASSES = [
    "hand_clap", "right_hand_wave", "left_hand_wave", "right_arm_cw", "right_arm_ccw", "left_arm_cw",
    "left_arm_ccw", "arm_roll", "air_drums", "air_guitar", "other",
]  # DVS128 Gesture's 11 classes


def gesture(i: int, t_wall: float = 1.7e9) -> GesturePrediction:
    """Step i of a replay: the leading class changes every 40 steps, its confidence rises within a segment."""
    best = (i // 40) % len(CLASSES)
    lead = 0.35 + 0.5 * min(1.0, (i % 40) / 30)
    rest = (1 - lead) / (len(CLASSES) - 1)
    probs = [round(lead if k == best else rest * (1 + 0.5 * math.sin(i * 0.3 + k)) / 1.0, 4) for k in range(11)]
    total = sum(probs)
    probs = [round(p / total, 4) for p in probs]
    return GesturePrediction(seq=i, t_wall=t_wall, t_event_us=i * 10_000, label=CLASSES[best], index=best,
                             probs=probs, classes=CLASSES, step=i)


def text(i: int, context: str = "to be or not to b", t_wall: float = 1.7e9) -> TextPrediction:
    """A character model's answer to `context`."""
    return TextPrediction(seq=i, t_wall=t_wall, context=context, topk=[["e", 0.62], [" ", 0.11], ["u", 0.06],
                          ["a", 0.04], ["y", 0.03]], continuation="e, that is the question", bpc=1.874)


def stats(i: int, seq: int | None = None, t_wall: float = 1.7e9) -> NodeStats:
    """Node figures with a plausible activity pattern over the 152 PEs (the model sits on the first 40)."""
    act = [round(max(0.0, math.sin(pe * 0.37 + i * 0.05)) * (0.9 if pe < 40 else 0.08), 3) for pe in range(152)]
    return NodeStats(seq=i if seq is None else seq, t_wall=t_wall, model="gesture-egru", steps=i, pe_activity=act,
                     sram_bytes_used=3_145_728, sram_bytes_total=152 * 131_072, synops_per_s=1.84e6 + 1e3 * i,
                     activity_sparsity=0.931, energy_per_inference_j=2.7e-6, latency_p50_s=3.1e-4,
                     latency_p99_s=9.2e-4, events_in=i * 1500)


def frame(i: int, size: int = 32, t_wall: float = 1.7e9) -> EventFrame:
    """A hand-like blob moving in a circle: ON events on its leading edge, OFF on its trailing edge."""
    cx = size / 2 + size / 4 * math.cos(i * 0.2)
    cy = size / 2 + size / 4 * math.sin(i * 0.2)
    dx, dy = -math.sin(i * 0.2), math.cos(i * 0.2)
    on, off = [0] * (size * size), [0] * (size * size)
    for y in range(size):
        for x in range(size):
            rx, ry = x - cx, y - cy
            d = math.hypot(rx, ry)
            if 3.0 < d < 6.0:
                ahead = rx * dx + ry * dy
                k = int(abs(ahead) * 2) + 1
                (on if ahead > 0 else off)[y * size + x] = k
    rate = 12_000 + 8_000 * math.sin(i * 0.15) ** 2
    return EventFrame(seq=i, t_wall=t_wall, t_event_us=i * 10_000, width=size, height=size, on=on, off=off,
                      event_rate_hz=round(rate, 1))


def status(node: str = "n0", t_wall: float = 1.7e9, control: ControlState | None = None) -> Status:
    """A node's retained status; with `control`, one that answers in/control (what is in effect)."""
    return Status(seq=0, t_wall=t_wall, state="online", node=node, models=["gesture-egru", "shakespeare-egru"],
                  recordings=["synthetic-gestures", "davis346-traffic"], control=control)


def control(paused: bool = False, speed: float = 1.0, achieved: float | None = None) -> ControlState:
    """What a replaying node says is in effect: playing (or paused) at `speed`, `achieved` when measured."""
    short = achieved is not None and achieved < 0.9 * speed
    return ControlState(accepts=list(CONTROL_CMDS), paused=paused, speed_requested=speed, speed=achieved,
                        speed_short=short, last_cmd_result="ok")


async def replay(url: str, node: str, steps: int, text_context: str = "to be or not to b") -> None:
    """Publish a short replay to a broker: status, `steps` gestures and frames, stats every 5 steps, one answer."""
    import asyncio
    import contextlib

    from stream.mqtt import MqttLink

    link = MqttLink(url, announce=False)
    run = asyncio.create_task(link.run())
    try:
        link.publish_raw(topic(node, "status"), status(node, control=control()).to_json(), qos=0)
        for i in range(steps):
            link.publish_raw(topic(node, "pred/gesture"), gesture(i).to_json(), qos=0)
            link.publish_raw(topic(node, "frame"), frame(i).to_json(), qos=0)
            if i % 5 == 0:
                link.publish_raw(topic(node, "stats"), stats(i, seq=i // 5).to_json(), qos=0)
        link.publish_raw(topic(node, "pred/text"), text(0, text_context).to_json(), qos=0)
        await link.drained(10)
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
