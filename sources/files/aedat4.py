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
# aedat decompresses a whole packet into memory, without a limit: a compressed packet whose frames can expand
# beyond this is refused (DV writes packets of a few MB at most; 256 MiB holds 16 M events)
MAX_PACKET_BYTES = 256 * 2**20
_COMPRESSION = {0: "none", 1: "lz4", 2: "lz4", 3: "zstd", 4: "zstd"}  # IOHeader's enum: LZ4(_HIGH), ZSTD(_HIGH)


def check_file_layout(p: Path, packets: bool = True) -> None:
    """Verify what `aedat` trusts in an AEDAT4 file, or raise a one-line CorruptFileError.

    aedat 2.3 reads the IOHeader flatbuffer unverified (root_as_ioheader_unchecked): a description that is not
    UTF-8 is undefined behaviour in Rust. Seen from Python: an abort (SIGABRT: pyo3 cannot build the error
    message from the invalid string), or an allocation growing until the process is killed (roxmltree on the
    invalid string); an offset outside the header is a panic, named here more clearly. And aedat allocates
    each packet's declared size (up to 4 GiB) before reading it, which aborts where memory is not
    overcommitted. It decompresses each packet of a compressed file whole, however far it expands: the frame and
    block headers of each packet bound that (`decompressed_bound`). The packets' contents (events, frames, IMU,
    triggers) aedat verifies itself. Reads the header (a few kB) and, with `packets`, the 8-byte header of each
    packet (a few hundred per 10 MB) and of each compressed block in it.
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
        reason, data_end, compression = _ioheader(os.pread(fd, length, len(head)))
        if reason:
            raise CorruptFileError(show_path(p), f"invalid header: {reason}", offset=len(head))
        if packets:
            _check_packets(p, fd, len(head) + length, data_end, size, compression)
    finally:
        os.close(fd)


def _check_packets(p: Path, fd: int, pos: int, data_end: int, size: int, compression: str = "none") -> None:
    """Walk the packets as aedat will (it stops where the header says the data ends, or at the end of the
    file) and refuse one that declares far more bytes than the file has left, or whose compressed frames may
    expand beyond MAX_PACKET_BYTES. Through a memory map: about 0.5 µs a packet, against 1 µs reading each
    8-byte header with a system call."""
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
            # LZ4 expands a byte to at most 255 (a match length's extension byte): a short packet needs no walk
            if compression != "none" and (compression != "lz4" or _LZ4_MAX_RATIO * length > MAX_PACKET_BYTES):
                bound = decompressed_bound(m, pos + 8, pos + 8 + length, compression)
                if bound is None:
                    raise CorruptFileError(show_path(p), f"a {length}-byte packet that is not {compression} frames",
                                           offset=pos)
                if bound > MAX_PACKET_BYTES:
                    raise CorruptFileError(show_path(p), f"a {length}-byte {compression} packet that may decompress "
                                           f"to {bound} bytes (more than {MAX_PACKET_BYTES})", offset=pos)
            pos += 8 + length


_LZ4_MAGIC, _ZSTD_MAGIC = 0x184D2204, 0xFD2FB528
_LZ4_MAX_RATIO = 256
_ZSTD_BLOCK_MAX = 128 * 1024  # a compressed zstd block regenerates at most this (Block_Maximum_Size)
_LZ4_BLOCK_MAX = {4: 64 * 1024, 5: 256 * 1024, 6: 2**20, 7: 4 * 2**20}  # by the BD byte's block size code


_U16, _U32 = struct.Struct("<H"), struct.Struct("<I")


def _is_skippable(magic: int) -> bool:
    """The skippable frames of both formats (0x184D2A50-5F): a size, then bytes the decoder ignores."""
    return magic & 0xFFFFFFF0 == 0x184D2A50


def decompressed_bound(buf, start: int, end: int, compression: str) -> int | None:
    """An upper bound of what the LZ4 or zstd frames in buf[start:end] decompress to, from their frame and block
    headers alone (a block's contents are never decoded): an LZ4 block at most the frame's block size (or its own
    size, stored), a zstd block its stated size (raw, RLE) or 128 KiB (compressed). None where the bytes are not
    frames of that format (which no decoder would read either). The walk stops once the bound passes
    MAX_PACKET_BYTES."""
    total, pos = 0, start
    u32 = _U32.unpack_from

    def u8(at: int) -> int:
        return buf[at]

    def u16(at: int) -> int:
        return _U16.unpack_from(buf, at)[0]

    while pos < end:
        if pos + 4 > end:
            return None
        magic = u32(buf, pos)[0]
        if _is_skippable(magic):
            if pos + 8 > end:
                return None
            pos += 8 + u32(buf, pos + 4)[0]
            continue
        if compression == "lz4" and magic == _LZ4_MAGIC and pos + 7 <= end:
            flg, bd = u8(pos + 4), u8(pos + 5)
            block_max = _LZ4_BLOCK_MAX.get((bd >> 4) & 7)
            if block_max is None or flg >> 6 != 1:
                return None
            pos += 7 + 8 * ((flg >> 3) & 1) + 4 * (flg & 1)  # magic, FLG, BD, HC; content size, dictionary id
            block_checksum = 4 * ((flg >> 4) & 1)
            while True:
                if pos + 4 > end:
                    return None
                word = u32(buf, pos)[0]
                pos += 4
                if word == 0:  # end mark, then the content checksum if flagged
                    pos += 4 * ((flg >> 2) & 1)
                    break
                stored, n = word >> 31, word & 0x7FFFFFFF
                total += n if stored else block_max
                pos += n + block_checksum
                if total > MAX_PACKET_BYTES:
                    return total  # enough to refuse: no need to walk the rest
        elif compression == "zstd" and magic == _ZSTD_MAGIC and pos + 5 <= end:
            fhd = u8(pos + 4)
            single = (fhd >> 5) & 1
            fcs = (1 if single else 0, 2, 4, 8)[fhd >> 6]
            pos += 5 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + fcs
            while True:
                if pos + 3 > end:
                    return None
                head = u16(pos) | u8(pos + 2) << 16
                last, kind, n = head & 1, (head >> 1) & 3, head >> 3
                pos += 3
                if kind == 3:  # reserved
                    return None
                total += _ZSTD_BLOCK_MAX if kind == 2 else n
                pos += 1 if kind == 1 else n
                if total > MAX_PACKET_BYTES:
                    return total
                if last:
                    pos += 4 * ((fhd >> 2) & 1)  # content checksum
                    break
        else:
            return None
    return total


def _ioheader(buf: bytes) -> tuple[str | None, int, str]:
    """What makes this IOHeader flatbuffer unsafe to read unverified (the bounds and UTF-8 that flatbuffers'
    own verifier checks), or None; where the packets end (file_data_position, -1: at the end of file); and the
    packets' compression ("none", "lz4", "zstd")."""
    n = len(buf)

    def u(fmt: str, at: int) -> int | None:
        return struct.unpack_from(fmt, buf, at)[0] if 0 <= at <= n - struct.calcsize(fmt) else None

    root = u("<I", 0)
    soffset = None if root is None else u("<i", root)
    if root is None or soffset is None:
        return "root table outside the header", -1, "none"
    vtable = root - soffset
    vt_len, tbl_len = u("<H", vtable), u("<H", vtable + 2)
    if vt_len is None or tbl_len is None or vt_len < 4 or vt_len % 2 or vtable + vt_len > n or root + tbl_len > n:
        return "table layout outside the header", -1, "none"
    offsets = [u("<H", vtable + 4 + 2 * i) or 0 if 4 + 2 * i + 2 <= vt_len else 0 for i in range(len(_FIELD_SIZES))]
    if any(o and o + width > tbl_len for o, width in zip(offsets, _FIELD_SIZES, strict=True)):
        return "field outside its table", -1, "none"
    data_end = (u("<q", root + offsets[1]) or 0) if offsets[1] else -1  # in bounds: checked just above
    code = (u("<i", root + offsets[0]) or 0) if offsets[0] else 0
    compression = _COMPRESSION.get(code)
    if compression is None:
        return f"unknown compression {code}", -1, "none"
    if not offsets[2]:
        return None, data_end, compression  # no description: aedat says so
    at = root + offsets[2]
    start = at + (u("<I", at) or 0)
    size = u("<I", start)
    if size is None or start + 4 + size > n:
        return "description outside the header", -1, "none"
    try:
        buf[start + 4 : start + 4 + size].decode("utf-8")
    except UnicodeDecodeError as e:
        return f"description is not UTF-8 (at its byte {e.start})", -1, "none"
    return None, data_end, compression


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
