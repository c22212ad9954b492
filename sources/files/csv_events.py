"""CSV event files (one event per line: t in µs, x, y, polarity 0/1), decoded and encoded by faery.

faery writes the header `t,x@W,y@H,on`, so the sensor size travels with the file. Other headers are
accepted when they name the columns (t|ts|time|timestamp, x, y, p|on|pol|polarity); a file without header
has the columns t,x,y,p in that order.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sources.errors import CorruptFileError, SourceError
from sources.events import SensorSize
from sources.files._common import (
    DEFAULT_CHUNK_US,
    EventChunks,
    check_file,
    decoding,
    infer_sensor,
    to_events,
)
from sources.files._write import faery_write

_NAMES = {
    "t": ("t", "ts", "time", "timestamp"),
    "x": ("x",),
    "y": ("y",),
    "p": ("p", "on", "pol", "polarity"),
}
_NO_SIZE = (65535, 65535)  # decoder bound when the file names no sensor size (uint16 coordinates)


def _layout(p: Path) -> tuple[bool, bytes, dict[str, int], tuple[int, int] | None]:
    """(has header, separator, column of t/x/y/p, sensor size from an 'x@W,y@H' header or None)."""
    with open(p, "rb") as f:
        first = f.readline(4096).decode("utf-8", errors="replace").strip()
    sep = next((s for s in (",", ";", "\t") if s in first), ",")
    cells = [c.strip().lower() for c in first.split(sep)]
    if not cells or not cells[0] or not cells[0][0].isalpha():
        return False, sep.encode(), {"t": 0, "x": 1, "y": 2, "p": 3}, None
    cols: dict[str, int] = {}
    size: dict[str, int] = {}
    for i, cell in enumerate(cells):
        name, _, at = cell.partition("@")
        for key, names in _NAMES.items():
            if name in names and key not in cols:
                cols[key] = i
                if at and re.fullmatch(r"\d+", at):
                    size[key] = int(at)
    missing = [k for k in "txyp" if k not in cols]
    if missing:
        raise CorruptFileError(str(p), f"CSV header {first[:80]!r} lacks column(s) {', '.join(missing)}")
    dims = (size["x"], size["y"]) if "x" in size and "y" in size else None
    return True, sep.encode(), cols, dims


def _packets(p: Path, header: bool, sep: bytes, cols: dict[str, int], dims: tuple[int, int]) -> Iterator[np.ndarray]:
    from faery.extension import csv

    with csv.Decoder(
        p, dims, header, sep[0], cols["t"], cols["x"], cols["y"], cols["p"], 0.0, 0, b"1", b"0", False
    ) as d:
        for packet in d:
            if len(packet):
                yield to_events(packet)


def iter_csv(
    path: str | os.PathLike, chunk_us: int | None = DEFAULT_CHUNK_US, sensor: SensorSize | None = None
) -> EventChunks:
    """Chunked CSV events. The sensor comes from the header, else `sensor`, else a first pass over the file."""
    p = check_file(path)
    with decoding(p):
        header, sep, cols, dims = _layout(p)
    if sensor is None and dims is not None:
        sensor = SensorSize(*dims)
    bound = dims or _NO_SIZE

    def packets() -> Iterator[np.ndarray]:
        return _packets(p, header, sep, cols, bound)

    if sensor is None:
        sensor = infer_sensor(EventChunks(p, "csv", SensorSize(*bound), packets, None).read_all())
    return EventChunks(p, "csv", sensor, packets, chunk_us)


def read_csv(path: str | os.PathLike, sensor: SensorSize | None = None) -> tuple[np.ndarray, SensorSize]:
    """All events of a CSV file and its sensor size (header, else `sensor`, else the smallest that fits)."""
    p = check_file(path)
    with decoding(p):
        header, sep, cols, dims = _layout(p)
    packets = lambda: _packets(p, header, sep, cols, dims or _NO_SIZE)  # noqa: E731
    events = EventChunks(p, "csv", SensorSize(1, 1), packets, None).read_all()
    if sensor is None:
        sensor = SensorSize(*dims) if dims else infer_sensor(events)
    return events, sensor


def write_csv(path: str | os.PathLike, events: np.ndarray, sensor: SensorSize) -> None:
    """Write `t,x@W,y@H,on` CSV (t in µs, p as 0/1)."""
    if sensor is None:
        raise SourceError(f"{path}: write_csv needs the sensor size")
    faery_write(path, events, sensor, "csv")
