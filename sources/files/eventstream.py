"""Event Stream (.es, the format of the `loris`/`sepia` tools): decoded and encoded by faery."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sources.errors import SourceError
from sources.events import SensorSize
from sources.files._common import DEFAULT_CHUNK_US, EventChunks, check_file, decoding, to_events
from sources.files._write import faery_write


def _packets(p: Path) -> Iterator[np.ndarray]:
    from faery import file_decoder

    # faery's Decoder flips y back to a top-left origin and drops ATIS exposure measurements.
    for packet in file_decoder.Decoder(p, file_type="es", time_range_cache=None):
        if len(packet):
            yield to_events(packet)


def iter_es(path: str | os.PathLike, chunk_us: int | None = DEFAULT_CHUNK_US) -> EventChunks:
    """Chunked DVS/ATIS events of an Event Stream file (a cut exactly between two events reads as shorter)."""
    from faery.extension import es

    p = check_file(path)
    with decoding(p), es.Decoder(p, 0) as d:
        kind, dims = d.event_type, d.dimensions
    if kind not in ("dvs", "atis") or dims is None:
        raise SourceError(f"{p}: Event Stream of type {kind!r} holds no polarity events (dvs or atis needed)")
    return EventChunks(p, "es", SensorSize(int(dims[0]), int(dims[1])), lambda: _packets(p), chunk_us)


def read_es(path: str | os.PathLike) -> tuple[np.ndarray, SensorSize]:
    """All polarity events of an Event Stream file and its sensor size."""
    chunks = iter_es(path, chunk_us=None)
    return chunks.read_all(), chunks.sensor


def write_es(path: str | os.PathLike, events: np.ndarray, sensor: SensorSize) -> None:
    """Write a DVS Event Stream; times are stored from the first event on (t - t[0]), as the format has no t0.

    Keeping absolute times costs one overflow byte per 127 µs of offset (measured: t0 = 10^12 µs gave 7.9 GB)
    so the offset is dropped, as faery does by default.
    """
    faery_write(path, events, sensor, "es", zero_t0=True)
