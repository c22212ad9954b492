"""Shared checks and the faery encoder call behind the writers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sources.errors import SourceError
from sources.events import EVENT_DTYPE, SensorSize


def checked_events(events: np.ndarray, sensor: SensorSize | None, path: str | os.PathLike) -> np.ndarray:
    """EVENT_DTYPE events fit for writing: sorted by t, t >= 0, inside the sensor; else a one-line SourceError."""
    names = getattr(events, "dtype", np.dtype(float)).names or ()
    if not {"t", "x", "y", "p"} <= set(names):
        raise SourceError(f"{path}: events must be a structured array with fields t, x, y, p (got {names or 'none'})")
    ev = events if events.dtype == EVENT_DTYPE else events.astype(EVENT_DTYPE)
    if len(ev) and int(ev["t"].min()) < 0:
        raise SourceError(f"{path}: negative timestamps cannot be written")
    if len(ev) > 1 and not bool(np.all(ev["t"][1:] >= ev["t"][:-1])):
        raise SourceError(f"{path}: events must be sorted by t to be written")
    if sensor is not None and len(ev):
        out = int(np.count_nonzero((ev["x"] >= sensor.width) | (ev["y"] >= sensor.height)))
        if out:
            raise SourceError(f"{path}: {out} events lie outside the {sensor.width}x{sensor.height} sensor")
    return ev


def to_faery(events: np.ndarray) -> np.ndarray:
    import faery

    out = np.empty(len(events), dtype=faery.EVENTS_DTYPE)
    out["t"] = events["t"]
    out["x"] = events["x"]
    out["y"] = events["y"]
    out["on"] = events["p"] > 0
    return out


def faery_write(path: str | os.PathLike, events: np.ndarray, sensor: SensorSize, file_type: str, **kw) -> None:
    """Encode with faery (which writes to PATH.write and renames, so a failed write leaves no half file)."""
    from faery import file_encoder

    ev = checked_events(events, sensor, path)
    p = Path(path)
    try:
        file_encoder.events_to_file([to_faery(ev)], p, (sensor.width, sensor.height), file_type=file_type, **kw)
    except Exception as e:
        Path(f"{p}.write").unlink(missing_ok=True)
        raise SourceError(f"{p}: cannot write {file_type}: {str(e).strip().splitlines()[0]}") from e
