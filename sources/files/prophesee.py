"""Prophesee files: EVT 2.0 / 3.0 raw and DAT, decoded and encoded by faery (EVT 2.1: faery 0.7 cannot)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sources.errors import CorruptFileError, SourceError
from sources.events import SensorSize
from sources.files._common import DEFAULT_CHUNK_US, EventChunks, check_file, decoding, to_events
from sources.files._write import faery_write
from sources.files.detect import HEADER_BYTES, prophesee_header, prophesee_kind

# Bytes per word of the event payload after the header: a file whose body is not a whole number of words
# was cut mid-word (a cut exactly on a word boundary is a valid, shorter recording and cannot be told apart).
_WORD_BYTES = {"evt2": 4, "evt3": 2}
_FALLBACK_SIZE = (1280, 720)  # what Prophesee Gen4 headers say when a file has no geometry line


def _header(p: Path) -> tuple[dict[str, str], int]:
    with open(p, "rb") as f:
        head = f.read(HEADER_BYTES)
    fields, end, complete = prophesee_header(head)
    if not complete:
        raise CorruptFileError(str(p), "file ends inside its '%' header", offset=end)
    return fields, end


def _open_evt(path: str | os.PathLike, version: str) -> tuple[Path, str, SensorSize]:
    from faery.extension import evt

    p = check_file(path)
    fields, end = _header(p)
    if prophesee_kind(fields) == "evt2.1":  # faery would panic (printing a Rust backtrace) on its first packet
        raise SourceError(f"{p}: Prophesee EVT 2.1 is not supported (no decoder for it)")
    with decoding(p), evt.Decoder(p, _FALLBACK_SIZE, version) as d:
        version, (w, h) = d.version, d.dimensions
    body = p.stat().st_size - end
    if body % _WORD_BYTES[version]:
        raise CorruptFileError(str(p), f"{body} payload bytes is not a whole number of {version} words")
    return p, version, SensorSize(int(w), int(h))


def _evt_packets(p: Path, version: str) -> Iterator[np.ndarray]:
    from faery.extension import evt

    with evt.Decoder(p, _FALLBACK_SIZE, version) as d:
        for packet in d:
            events = packet.get("events")
            if events is not None and len(events):
                yield to_events(events)


def _iter_evt(path: str | os.PathLike, version: str, chunk_us: int | None) -> EventChunks:
    p, version, sensor = _open_evt(path, version)
    return EventChunks(p, version, sensor, lambda: _evt_packets(p, version), chunk_us)


def iter_evt3(path: str | os.PathLike, chunk_us: int | None = DEFAULT_CHUNK_US) -> EventChunks:
    """Chunked EVT 3.0 (the header's version wins when it names another EVT version)."""
    return _iter_evt(path, "evt3", chunk_us)


def iter_evt2(path: str | os.PathLike, chunk_us: int | None = DEFAULT_CHUNK_US) -> EventChunks:
    """Chunked EVT 2.0 (the header's version wins when it names another EVT version)."""
    return _iter_evt(path, "evt2", chunk_us)


def read_evt3(path: str | os.PathLike) -> tuple[np.ndarray, SensorSize]:
    """All events of an EVT 3.0 raw file and its sensor size (from the header; 1280x720 when it has none)."""
    chunks = iter_evt3(path, chunk_us=None)
    return chunks.read_all(), chunks.sensor


def read_evt2(path: str | os.PathLike) -> tuple[np.ndarray, SensorSize]:
    """All events of an EVT 2.0 raw file and its sensor size (from the header; 1280x720 when it has none)."""
    chunks = iter_evt2(path, chunk_us=None)
    return chunks.read_all(), chunks.sensor


def _dat_packets(p: Path) -> Iterator[np.ndarray]:
    from faery.extension import dat

    with dat.Decoder(p, _FALLBACK_SIZE, "dat2") as d:
        for packet in d:
            if len(packet):
                yield to_events(packet)


def iter_dat(path: str | os.PathLike, chunk_us: int | None = DEFAULT_CHUNK_US) -> EventChunks:
    """Chunked Prophesee DAT (CD events only: 2-D or trigger DAT files are refused)."""
    from faery.extension import dat

    p = check_file(path)
    _, end = _header(p)
    with decoding(p), dat.Decoder(p, _FALLBACK_SIZE, "dat2") as d:
        kind, dims = d.event_type, d.dimensions
    if kind != "cd":
        raise SourceError(f"{p}: DAT file of event type {kind!r} holds no CD (polarity) events")
    with open(p, "rb") as f:  # after the text header: one byte event type, one byte event size
        f.seek(end)
        size = f.read(2)[1:2]
    record = size[0] if size else 8
    body = p.stat().st_size - end - 2
    if record == 0 or body % record:
        raise CorruptFileError(str(p), f"{body} payload bytes is not a whole number of {record}-byte events")
    sensor = SensorSize(*(int(v) for v in (dims or _FALLBACK_SIZE)))
    return EventChunks(p, "dat", sensor, lambda: _dat_packets(p), chunk_us)


def read_dat(path: str | os.PathLike) -> tuple[np.ndarray, SensorSize]:
    """All CD events of a Prophesee DAT file and its sensor size."""
    chunks = iter_dat(path, chunk_us=None)
    return chunks.read_all(), chunks.sensor


def write_evt3(path: str | os.PathLike, events: np.ndarray, sensor: SensorSize) -> None:
    """Write EVT 3.0 (t0 goes into the header, so absolute timestamps survive)."""
    faery_write(path, events, sensor, "evt", version="evt3")


def write_evt2(path: str | os.PathLike, events: np.ndarray, sensor: SensorSize) -> None:
    """Write EVT 2.0 (t0 goes into the header, so absolute timestamps survive)."""
    faery_write(path, events, sensor, "evt", version="evt2")


def write_dat(path: str | os.PathLike, events: np.ndarray, sensor: SensorSize) -> None:
    """Write a DAT 2 file of CD events (t0 goes into the header)."""
    faery_write(path, events, sensor, "dat", version="dat2")
