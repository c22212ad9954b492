"""A demo recording: one synthetic subject performing several gestures back to back, with a JSON of the spans."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sources.errors import SourceError
from sources.gesture_data import clip_rng
from sources.gesture_motions import GESTURE_CLASSES
from sources.gesture_render import draw_subject, render_gesture_events


def make_demo(classes: list[int], segment_s: float, seed: int, user: int = 99, fps: float = 250.0):
    """(events sorted by t in µs, spans [{class, name, t_start_us, t_end_us}]) for the gestures in order."""
    bad = [c for c in classes if not 0 <= c < len(GESTURE_CLASSES)]
    if bad or not classes:
        raise SourceError(f"class indices must lie in 0..{len(GESTURE_CLASSES) - 1}, got {classes}")
    if segment_s <= 0:
        raise SourceError("--segment-s must be positive")
    parts, spans = [], []
    person = draw_subject(clip_rng(seed, user, 0, 1000), "lab")
    seg_us = round(segment_s * 1e6)
    for i, c in enumerate(classes):
        # one person throughout; each segment has its own seed stream and ends with the hands at rest
        ev = render_gesture_events(c, person, segment_s, clip_rng(seed, user, i + 1, c), fps, rest_at_end=True)
        ev = ev[ev["t"] < seg_us]
        ev["t"] += i * seg_us
        parts.append(ev)
        spans.append({"class": c, "name": GESTURE_CLASSES[c], "t_start_us": i * seg_us, "t_end_us": (i + 1) * seg_us})
    return np.concatenate(parts), spans


def write_demo(out: str | Path, classes: list[int], segment_s: float, seed: int, user: int = 99) -> tuple[Path, Path]:
    events, spans = make_demo(classes, segment_s, seed, user)
    from sources.events import DVS128
    from sources.files import write_events

    npy = Path(out)
    npy.parent.mkdir(parents=True, exist_ok=True)
    write_events(npy, events, DVS128)  # format by extension: .aedat4 (the shipped demo), .npy, .raw, ...
    side = npy.with_suffix(".json")
    side.write_text(json.dumps({
        "sensor": [128, 128], "time_unit": "us", "file": npy.name,
        "events": int(events.size), "seed": seed, "segment_s": segment_s, "gestures": spans,
        "command": f"s2 data gesture-demo --out {out} --classes {','.join(map(str, classes))} "
                   f"--segment-s {segment_s} --seed {seed} --subject {user}",
    }, indent=1) + "\n")
    return npy, side


def write_stream_demo(out: str | Path, classes: list[int], seed: int, user: int, segment_s: tuple[float, float],
                      noise_hz: tuple[float, float] = (0.1, 0.3)) -> tuple[Path, Path]:
    """A held-out continuous stream (sources.gesture_stream: one render, no reset, idle spells, sensor noise)
    playing `classes` once each, as an event file plus a sidecar JSON of the spans."""
    from sources.events import DVS128
    from sources.files import write_events
    from sources.gesture_stream import StreamConfig, render_stream

    bad = [c for c in classes if not 0 <= c < len(GESTURE_CLASSES)]
    if bad or not classes:
        raise SourceError(f"class indices must lie in 0..{len(GESTURE_CLASSES) - 1}, got {classes}")
    cfg = StreamConfig(duration_s=1e9, segment_s=segment_s, noise_hz=noise_hz)
    events, side = render_stream(seed, user, 0, cfg, classes=classes)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_events(path, events, DVS128)
    side.update({"file": path.name, "command": f"s2 data gesture-demo --continuous --out {out} "
                 f"--classes {','.join(map(str, classes))} --segment-s {segment_s[0]:g},{segment_s[1]:g} "
                 f"--seed {seed} --subject {user}"})
    sidecar = path.with_suffix(".json")
    sidecar.write_text(json.dumps(side, indent=1) + "\n")
    return path, sidecar
