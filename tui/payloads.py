"""Pure helpers between the wire and the screen: parsing, loss counting, escaping, and text rendering.

Nothing here touches Textual or the network, so every rule (what counts as malformed, what is escaped,
how a frame is downsampled) is testable as a plain function.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from typing import Any

from stream import schema
from stream.schema import Payload, PayloadError

# Kinds the UI listens to on its node, and the one it also watches on every node (to discover nodes).
SUBSCRIBED_KINDS = ("pred/gesture", "pred/text", "stats", "frame", "status")
CONTROL_CMDS = schema.CONTROL_CMDS
SPARK_CHARS = " ▁▂▃▄▅▆▇█"
# C0/C1 controls (tab and newline too: one pane line must stay one line) and the bidirectional overrides and
# isolates, which could reorder what the terminal shows
_CONTROL_CHARS = {c: "\ufffd" for c in (*range(0, 32), 127, *range(0x80, 0xA0), *range(0x202A, 0x202F),
                                        *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)}


def clean(text: str, limit: int = 200) -> str:
    """Network text made safe for a terminal: control characters replaced, length bounded (no markup change)."""
    text = text[:limit] if len(text) > limit else text
    return text.translate(_CONTROL_CHARS)


def literal(text: str, limit: int = 200) -> str:
    """Network text for places Textual reads as markup (titles, notifications): cleaned, then every "[" escaped.

    Cut before escaping, and every bracket rather than rich's escape() (which only escapes whole tags): a name
    cut inside a tag, such as "...[/", would otherwise reach the markup parser as a dangling closing tag."""
    return clean(text, limit).replace("[", "\\[")


def parse_message(topic: str, raw: bytes, node: str) -> Payload | None:
    """One MQTT message -> a checked payload for `node` (or any node's status); None when it is not ours.

    Raises PayloadError for a message on one of our topics that does not follow schema v1.
    """
    try:
        msg_node, kind = schema.parse_topic(topic)
    except PayloadError:
        return None
    if kind not in SUBSCRIBED_KINDS or (msg_node != node and kind != "status"):
        return None
    payload = schema.decode(kind, raw)
    _check_shown(payload)
    if isinstance(payload, schema.Status):
        if not schema.is_node_id(msg_node):
            raise PayloadError("status: the topic's node id is not a valid node id")
        if payload.node and payload.node != msg_node:  # the node is the topic's: a payload cannot name another
            raise PayloadError("status: node differs from the topic's node")
        payload.node = msg_node  # the last will carries the node; a bare one is named by its topic
    return payload


def _numbers(values: Any, what: str, kind: str, integer: bool = False) -> None:
    # type() rather than isinstance(): bool is an int subclass, and frames carry thousands of values
    ok = {int} if integer else {int, float}
    if not isinstance(values, list) or not all(type(v) in ok for v in values) or (
        values and not (min(values) >= 0 and math.isfinite(sum(values)))  # the sum is nan/inf if any value is
    ):
        raise PayloadError(f"{kind}: {what} must be a list of non-negative {'integers' if integer else 'numbers'}")


def _check_shown(p: Payload) -> None:
    """Checks beyond schema v1's, on fields the panes draw: a bad one would otherwise fail at render time."""
    if isinstance(p, schema.NodeStats):
        scalars = {f: getattr(p, f) for f in ("steps", "sram_bytes_used", "sram_bytes_total", "synops_per_s",
                                             "activity_sparsity", "energy_per_inference_j", "latency_p50_s",
                                             "latency_p99_s")}
        _numbers(list(scalars.values()), "counters and rates", p.KIND)
        _numbers(p.pe_activity, "pe_activity", p.KIND)
        if not isinstance(p.model, str):
            raise PayloadError("stats: model must be a string")
    elif isinstance(p, schema.EventFrame):
        _numbers(p.on, "on", p.KIND, integer=True)
        _numbers(p.off, "off", p.KIND, integer=True)
        _numbers([p.event_rate_hz], "event_rate_hz", p.KIND)
    elif isinstance(p, schema.GesturePrediction):
        if not isinstance(p.step, int) or not all(isinstance(c, str) for c in p.classes):
            raise PayloadError("pred/gesture: step must be an integer and classes strings")
    elif isinstance(p, schema.Status):
        lists_ok = all(isinstance(x, list) and all(isinstance(v, str) for v in x) for x in (p.models, p.recordings))
        if not (isinstance(p.state, str) and isinstance(p.node, str) and lists_ok):
            raise PayloadError("status: state and node must be strings, models and recordings lists of strings")


def text_chunks(text: str, max_bytes: int = schema.MAX_TEXT_BYTES) -> list[str]:
    """Split a paste into pieces that fit one in/text message (never splitting a character).

    Counted as the larger of the UTF-8 and the JSON-escaped size: the wire carries ASCII-escaped JSON, where
    one emoji is 12 bytes, and the receiver checks both.
    """
    out, cur, size = [], [], 0
    for ch in text:
        n = max(len(ch.encode()), len(json.dumps(ch)) - 2)
        if size + n > max_bytes:
            out.append("".join(cur))
            cur, size = [], 0
        cur.append(ch)
        size += n
    if cur:
        out.append("".join(cur))
    return out


def text_in(seq: int, text: str) -> bytes:
    """An in/text message carrying the characters just typed: they continue the text before them (keystrokes),
    so the node appends them as they are instead of starting a new utterance."""
    return schema.TextIn(seq=seq, t_wall=time.time(), text=text, continues=True).to_json()


def control_in(seq: int, cmd: str, value: float | str | None = None) -> bytes:
    """An in/control message: pause, resume, reset [text|gesture], speed X, recording NAME."""
    if cmd not in CONTROL_CMDS:
        raise ValueError(f"unknown control command {cmd!r}")
    msg = schema.ControlIn(seq=seq, t_wall=time.time(), cmd=cmd)
    if cmd == "speed":
        msg.speed = float(value)  # type: ignore[arg-type]
    elif cmd == "recording":
        msg.recording = str(value)
    elif value is not None:
        msg.value = value
    return msg.to_json()


def playback(c: schema.ControlState) -> tuple[str, str]:
    """What a node's control status says is in effect, as (text, style) for the status line: paused or
    playing, the speed asked for and, when it falls short, the speed achieved; the recording; a refusal."""
    parts = ["⏸ paused" if c.paused else "▶"]
    if c.speed_requested is not None:
        asked = "max" if c.speed_requested == 0 else f"{c.speed_requested:g}x"
        parts.append(f"{asked} (achieved {c.speed:.2g}x)" if c.speed_short and c.speed is not None else asked)
    if c.recording:
        parts.append(clean(c.recording, 40))
    result = c.last_cmd_result or ""
    if result.startswith("refused"):
        parts.append(f"│ {clean(c.last_cmd or 'command', 12)} {clean(result, 60)}")
        return " ".join(parts), "red"
    return " ".join(parts), "yellow" if c.speed_short else ""


class SeqTracker:
    """Counts messages lost between publisher and us from per-topic sequence gaps."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self.dropped = 0

    def see(self, key: str, seq: int) -> None:
        last = self._last.get(key)
        if last is not None and seq > last + 1:
            self.dropped += seq - last - 1
        # seq <= last: the publisher restarted (or a duplicate); start counting afresh from here
        self._last[key] = seq

    def forget(self) -> None:
        self._last.clear()


def bar(p: float, width: int) -> str:
    """A horizontal bar of eighth-blocks for p in [0, 1]."""
    eighths = round(max(0.0, min(1.0, p)) * width * 8)
    full, rest = divmod(eighths, 8)
    return ("█" * full + (" ▏▎▍▌▋▊▉"[rest] if rest else "")).ljust(width)


def sparkline(values: Sequence[float], width: int) -> str:
    """The last `width` values as block characters scaled to their maximum."""
    vals = list(values)[-width:] if width > 0 else []
    top = max(vals, default=0.0)
    if top <= 0:
        return "▁" * len(vals)
    return "".join(SPARK_CHARS[max(1, round(v / top * 8))] if v > 0 else "▁" for v in vals)


def downsample(counts: Sequence[int], width: int, height: int, cols: int, rows: int) -> list[list[int]]:
    """Sum a row-major width x height count image into rows x cols cells (nearest-cell binning)."""
    cols, rows = max(1, min(cols, width)), max(1, min(rows, height))
    out = [[0] * cols for _ in range(rows)]
    for y in range(height):
        r = out[y * rows // height]
        base = y * width
        for x in range(width):
            c = counts[base + x]
            if c:
                r[x * cols // width] += c
    return out


def fit_frame(width: int, height: int, cols: int, rows: int) -> tuple[int, int]:
    """Cells (cols, half-block rows) that show a width x height frame in a cols x rows text area.

    Each text row holds two pixel rows (upper/lower half block), so pixels stay roughly square.
    """
    if width <= 0 or height <= 0 or cols <= 0 or rows <= 0:
        return 0, 0
    scale = min(cols / width, 2 * rows / height, 1.0)
    return max(1, int(width * scale)), max(1, int(height * scale))


def si(value: float, unit: str, digits: int = 3) -> str:
    """1.23e-6, "J" -> "1.23 µJ"; 0 -> "0 J"."""
    if not math.isfinite(value):
        return f"- {unit}"
    if value == 0:
        return f"0 {unit}"
    prefixes = [(1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p")]
    for scale, p in prefixes:
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g} {p}{unit}"
    return f"{value / 1e-12:.{digits}g} p{unit}"

