"""AEDAT 4.0 (iniVation DV): decoded by `aedat` (MIT, Rust), written by faery.

A DV recording interleaves packets of several streams (events, APS frames, IMU, triggers); only the first
event stream is read, the other packets are skipped without being converted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sources.errors import SourceError
from sources.events import SensorSize
from sources.files._common import DEFAULT_CHUNK_US, EventChunks, check_file, decoding, to_events
from sources.files._write import faery_write


def _event_stream(p: Path) -> tuple[int, SensorSize]:
    import aedat

    with decoding(p):
        streams = aedat.Decoder(p).id_to_stream()
    ids = sorted(i for i, s in streams.items() if s.get("type") == "events")
    if not ids:
        kinds = ", ".join(sorted({str(s.get("type")) for s in streams.values()})) or "none"
        raise SourceError(f"{p}: no event stream in this AEDAT4 file (streams: {kinds})")
    s = streams[ids[0]]
    return ids[0], SensorSize(int(s["width"]), int(s["height"]))


def _packets(p: Path, stream_id: int) -> Iterator[np.ndarray]:
    import aedat

    for packet in aedat.Decoder(p):
        if packet["stream_id"] == stream_id and "events" in packet:
            yield to_events(packet["events"])


def iter_aedat4(path: str | os.PathLike, chunk_us: int | None = DEFAULT_CHUNK_US) -> EventChunks:
    """Chunked polarity events of an AEDAT4 file (header and stream table are read now, events lazily)."""
    p = check_file(path)
    stream_id, sensor = _event_stream(p)
    return EventChunks(p, "aedat4", sensor, lambda: _packets(p, stream_id), chunk_us)


def read_aedat4(path: str | os.PathLike) -> tuple[np.ndarray, SensorSize]:
    """All polarity events of an AEDAT4 file, sorted by t, and the sensor size of its event stream."""
    chunks = iter_aedat4(path, chunk_us=None)
    return chunks.read_all(), chunks.sensor


def write_aedat4(path: str | os.PathLike, events: np.ndarray, sensor: SensorSize) -> None:
    """Write one LZ4-compressed event stream that DV, `aedat` and faery read back."""
    faery_write(path, events, sensor, "aedat")
