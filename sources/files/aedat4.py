"""AEDAT 4.0 (iniVation DV): decoded by `aedat` (MIT, Rust), written by faery.

A DV recording interleaves packets of several streams (events, APS frames, IMU, triggers); only the first
event stream is read, the other packets are skipped without being converted.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sources.errors import CorruptFileError, SourceError
from sources.events import SensorSize
from sources.files._common import DEFAULT_CHUNK_US, EventChunks, check_file, decoding, show_path, to_events
from sources.files._write import faery_write

MAGIC = b"#!AER-DAT4.0\r\n"
# IOHeader fields (ioheader.fbs): compression int32, file_data_position int64, description string
_FIELD_SIZES = (4, 8, 4)
# aedat allocates a packet's declared size before reading it: a packet declaring more than the file has left
# is refused up front beyond this size (a short one is a cut recording, read up to the cut as before)
_MAX_CUT_PACKET = 64 * 2**20


def check_file_layout(p: Path, packets: bool = True) -> None:
    """Verify what `aedat` trusts in an AEDAT4 file, or raise a one-line CorruptFileError.

    aedat 2.3 reads the IOHeader flatbuffer unverified (root_as_ioheader_unchecked): a description that is not
    UTF-8 is undefined behaviour in Rust. Seen from Python: an abort (SIGABRT: pyo3 cannot build the error
    message from the invalid string), or an allocation growing until the process is killed (roxmltree on the
    invalid string); an offset outside the header is a panic, named here more clearly. And aedat allocates
    each packet's declared size (up to 4 GiB) before reading it, which aborts where memory is not
    overcommitted. The packets' contents (events, frames, IMU, triggers) aedat verifies itself. Reads the
    header (a few kB) and, with `packets`, the 8-byte header of each packet (a few hundred per 10 MB).
    See docs/security.md and tests/data/.
    """
    fd = os.open(p, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, len(MAGIC) + 4, 0)
        if head[: len(MAGIC)] != MAGIC[: len(head)]:
            raise CorruptFileError(show_path(p), "wrong magic number (not an AEDAT4 header)", offset=0)
        if len(head) < len(MAGIC) + 4:
            raise CorruptFileError(show_path(p), "unexpected end of data (in the header)", offset=len(head))
        (length,) = struct.unpack_from("<I", head, len(MAGIC))
        if length > size - len(head):
            raise CorruptFileError(show_path(p), f"unexpected end of data (a {length}-byte header, "
                                   f"{size - len(head)} bytes left)", offset=len(head))
        reason, data_end = _ioheader(os.pread(fd, length, len(head)))
        if reason:
            raise CorruptFileError(show_path(p), f"invalid header: {reason}", offset=len(head))
        if packets:
            _check_packets(p, fd, len(head) + length, data_end, size)
    finally:
        os.close(fd)


def _check_packets(p: Path, fd: int, pos: int, data_end: int, size: int) -> None:
    """Walk the packets as aedat will (it stops where the header says the data ends, or at the end of the
    file) and refuse one that declares far more bytes than the file has left. Through a memory map: about
    0.5 µs a packet, against 1 µs reading each 8-byte header with a system call."""
    if pos == data_end or pos + 8 > size:
        return
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as m:
        unpack = struct.Struct("<4xI").unpack_from
        while pos != data_end and pos + 8 <= size:
            (length,) = unpack(m, pos)
            if length > size - pos - 8:
                if length > _MAX_CUT_PACKET:
                    raise CorruptFileError(show_path(p), f"a packet of {length} bytes, {size - pos - 8} left in "
                                           "the file", offset=pos)
                return
            pos += 8 + length


def _ioheader(buf: bytes) -> tuple[str | None, int]:
    """What makes this IOHeader flatbuffer unsafe to read unverified (the bounds and UTF-8 that flatbuffers'
    own verifier checks), or None; and where the packets end (file_data_position, -1: at the end of file)."""
    n = len(buf)

    def u(fmt: str, at: int) -> int | None:
        return struct.unpack_from(fmt, buf, at)[0] if 0 <= at <= n - struct.calcsize(fmt) else None

    root = u("<I", 0)
    soffset = None if root is None else u("<i", root)
    if root is None or soffset is None:
        return "root table outside the header", -1
    vtable = root - soffset
    vt_len, tbl_len = u("<H", vtable), u("<H", vtable + 2)
    if vt_len is None or tbl_len is None or vt_len < 4 or vt_len % 2 or vtable + vt_len > n or root + tbl_len > n:
        return "table layout outside the header", -1
    offsets = [u("<H", vtable + 4 + 2 * i) or 0 if 4 + 2 * i + 2 <= vt_len else 0 for i in range(len(_FIELD_SIZES))]
    if any(o and o + width > tbl_len for o, width in zip(offsets, _FIELD_SIZES, strict=True)):
        return "field outside its table", -1
    data_end = (u("<q", root + offsets[1]) or 0) if offsets[1] else -1  # in bounds: checked just above
    if not offsets[2]:
        return None, data_end  # no description: aedat says so
    at = root + offsets[2]
    start = at + (u("<I", at) or 0)
    size = u("<I", start)
    if size is None or start + 4 + size > n:
        return "description outside the header", -1
    try:
        buf[start + 4 : start + 4 + size].decode("utf-8")
    except UnicodeDecodeError as e:
        return f"description is not UTF-8 (at its byte {e.start})", -1
    return None, data_end


def _event_stream(p: Path) -> tuple[int, SensorSize]:
    import aedat

    check_file_layout(p, packets=False)  # the stream table only: the packets are walked on every pass
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

    check_file_layout(p)  # on every pass: aedat opens the file anew
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
