"""One entry point for every format: read_events / iter_events / write_events / convert_file pick the format."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sources.errors import SourceError
from sources.events import SensorSize
from sources.files import aedat4, csv_events, eventstream, npy, prophesee
from sources.files._common import DEFAULT_CHUNK_US, EventChunks, count_outside
from sources.files.detect import FORMATS, WRITABLE, detect_format, supported

_ITERS: dict[str, Callable[..., EventChunks]] = {
    "aedat4": aedat4.iter_aedat4,
    "evt3": prophesee.iter_evt3,
    "evt2": prophesee.iter_evt2,
    "dat": prophesee.iter_dat,
    "es": eventstream.iter_es,
    "csv": csv_events.iter_csv,
    "npy": npy.iter_npy,
}
_READS: dict[str, Callable[..., tuple[np.ndarray, SensorSize]]] = {
    "aedat4": aedat4.read_aedat4,
    "evt3": prophesee.read_evt3,
    "evt2": prophesee.read_evt2,
    "dat": prophesee.read_dat,
    "es": eventstream.read_es,
    "csv": csv_events.read_csv,
    "npy": npy.read_npy,
}
_WRITES: dict[str, Callable[..., None]] = {
    "aedat4": aedat4.write_aedat4,
    "evt3": prophesee.write_evt3,
    "evt2": prophesee.write_evt2,
    "dat": prophesee.write_dat,
    "es": eventstream.write_es,
    "csv": csv_events.write_csv,
    "npy": npy.write_npy,
}
_OPTIONS = {"csv": ("sensor",), "npy": ("sensor", "t_unit")}  # keyword options only some formats take


def _format(path: str | os.PathLike, fmt: str | None) -> str:
    if fmt is None:
        return detect_format(path)
    if fmt not in FORMATS:
        raise SourceError(f"unknown format {fmt!r}; supported: {supported()}")
    return fmt


def _options(fmt: str, options: dict[str, Any]) -> dict[str, Any]:
    """Pass on the options a format understands; the rest (e.g. t_unit for an AEDAT4 file) do not apply."""
    return {k: v for k, v in options.items() if k in _OPTIONS.get(fmt, ()) and v is not None}


def read_events(path: str | os.PathLike, fmt: str | None = None, **options: Any) -> tuple[np.ndarray, SensorSize]:
    """All events of an event file, sorted by t, and its sensor size; the format by magic bytes, then extension.

    Events outside the sensor are returned as they are (count them with count_outside); options: sensor=
    (CSV and NPY, which may not record it) and t_unit= (NPY).
    """
    f = _format(path, fmt)
    return _READS[f](path, **_options(f, options))


def iter_events(
    path: str | os.PathLike, chunk_us: int | None = DEFAULT_CHUNK_US, fmt: str | None = None, **options: Any
) -> EventChunks:
    """Time-aligned batches of an event file (see EventChunks); `.sensor` and `.format` are known at once."""
    f = _format(path, fmt)
    return _ITERS[f](path, chunk_us=chunk_us, **_options(f, options))


def format_for_writing(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The format write_events would use for path: `fmt`, else the extension (.raw and .evt mean EVT3)."""
    if fmt is None:
        ext = Path(path).suffix.lower()
        fmt = next((name for name in WRITABLE if ext in FORMATS[name][1]), None)
        if fmt is None:
            raise SourceError(
                f"{path}: cannot tell the format from the extension {ext or '(none)'}; writable: {', '.join(WRITABLE)}"
            )
    if fmt not in WRITABLE:
        raise SourceError(f"cannot write format {fmt!r}; writable: {', '.join(WRITABLE)}")
    return fmt


def write_events(path: str | os.PathLike, events: np.ndarray, sensor: SensorSize, fmt: str | None = None) -> str:
    """Write events (sorted by t, inside the sensor) in the format of the extension or `fmt`; returns it."""
    f = format_for_writing(path, fmt)
    _WRITES[f](path, events, sensor)
    return f


@dataclass(frozen=True)
class Conversion:
    """What convert_file wrote: events kept, the sensor, the output format, and events dropped outside the sensor."""

    events: int
    sensor: SensorSize
    format: str
    dropped_outside: int


def convert_file(src: str | os.PathLike, dst: str | os.PathLike, *, to_format: str | None = None,
                 sensor: SensorSize | None = None, t_unit: str = "us") -> Conversion:
    """Re-encode an event file: read src (format by magic bytes, then extension), drop events outside the sensor
    (counted), write dst in the format of `to_format` or its extension. `sensor` and `t_unit` as read_events."""
    out_fmt = format_for_writing(dst, to_format)  # fail before decoding a large input
    events, sensor = read_events(src, sensor=sensor, t_unit=t_unit)
    outside = count_outside(events, sensor)
    if outside:
        events = events[(events["x"] < sensor.width) & (events["y"] < sensor.height)]
    write_events(dst, events, sensor, out_fmt)
    return Conversion(len(events), sensor, out_fmt, outside)
