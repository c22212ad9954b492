"""Shared plumbing of the event-file readers: dtype conversion, error conversion, time-aligned chunking."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sources.errors import CorruptFileError, SourceError
from sources.events import EVENT_DTYPE, SensorSize

DEFAULT_CHUNK_US = 10_000

# Messages of the Rust decoders (faery, aedat) that mean "the file ends too early".
_TRUNCATION_HINTS = ("failed to fill whole buffer", "unexpected end of file", "out of bounds", "unexpected eof")


def one_line(error: BaseException) -> str:
    """The first line of a foreign exception's message, with truncation made explicit."""
    text = str(error).strip().splitlines()
    line = text[0].strip() if text else type(error).__name__
    # Decoders quote the offending bytes: keep the message printable and short.
    line = "".join(c if c.isprintable() else "?" for c in line)[:200]
    if any(h in line.lower() for h in _TRUNCATION_HINTS):
        return f"unexpected end of data ({line})"
    return line


class _HeldStderr:
    """Rust's panic hook writes its report (4 lines, ~90 with RUST_BACKTRACE) straight to file descriptor 2
    before pyo3 raises PanicException; no Python setting reaches it. While a decoder runs, fd 2 is held in a
    temporary file: after a panic its report is dropped (the one-line CorruptFileError says what went wrong),
    anything else written meanwhile is passed on. Process-wide, so one holder at a time (a lock; nesting counts)."""

    _lock = threading.RLock()
    _depth = 0
    _file = None

    @classmethod
    @contextlib.contextmanager
    def held(cls) -> Iterator[None]:
        with cls._lock:
            cls._depth += 1
            if cls._depth > 1:
                try:
                    yield
                finally:
                    cls._depth -= 1
                return
            try:
                saved, f = cls._swap_in()
            except OSError:  # no fd 2 to hold (a daemon): decode without holding
                saved = f = None
            panicked = False
            try:
                yield
            except BaseException as e:
                # the decoding context converts it on its way out: the panic is the cause of what arrives here
                panicked = "PanicException" in (type(e).__name__, type(e.__cause__).__name__)
                raise
            finally:
                cls._depth -= 1
                if f is not None:
                    cls._swap_out(saved, f, panicked)

    @classmethod
    def _swap_in(cls) -> tuple[int, Any]:
        if cls._file is None:  # one for the process, reused by every decode (closed at exit)
            cls._file = tempfile.TemporaryFile()  # noqa: SIM115
            atexit.register(cls._file.close)
        sys.stderr.flush()
        saved = os.dup(2)
        cls._file.seek(0)
        cls._file.truncate()
        os.dup2(cls._file.fileno(), 2)
        return saved, cls._file

    @staticmethod
    def _swap_out(saved: int, f: Any, panicked: bool) -> None:
        os.dup2(saved, 2)
        os.close(saved)
        f.seek(0)
        text = f.read()
        if panicked:
            cut = text.find(b"panicked at")
            kept = text[: text.rfind(b"\n", 0, cut) + 1] if cut >= 0 else text
            text = kept if kept.strip() else b""
        if text:
            os.write(2, text)


@contextlib.contextmanager
def decoding(path: str | os.PathLike) -> Iterator[None]:
    """Turn anything a decoder raises into a one-line CorruptFileError naming the file.

    pyo3 turns Rust panics into PanicException, a BaseException, so catching Exception alone would let a
    malformed file escape as a traceback; interpreter-level exits still pass through. The panic's own report on
    stderr is held back (_HeldStderr).
    """
    with _HeldStderr.held():
        yield from _one_line_errors(path)


def _one_line_errors(path: str | os.PathLike) -> Iterator[None]:
    try:
        yield
    except SourceError:
        raise
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise SourceError(f"{show_path(path)}: no such file") from e
        raise SourceError(f"{show_path(path)}: {e.strerror or e}") from e
    except BaseException as e:
        raise CorruptFileError(show_path(path), one_line(e)) from e


def show_path(path: str | os.PathLike) -> str:
    """A path as a message may show it: characters that are not printable (newlines, escapes, bytes that are not
    UTF-8) escaped, so that a file name cannot forge or hide lines on the user's terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in os.fspath(path))


def check_file(path: str | os.PathLike) -> Path:
    """A readable, non-empty regular file, or a one-line SourceError that says what the path is instead (opening
    a FIFO would wait for a writer, and a device may never end)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError as e:
        raise SourceError(f"{show_path(p)}: no such file") from e
    except OSError as e:
        raise SourceError(f"{show_path(p)}: {e.strerror or e}") from e
    if not stat.S_ISREG(st.st_mode):
        what = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise SourceError(f"{show_path(p)}: {what}, not an event file")
    if st.st_size == 0:
        raise CorruptFileError(show_path(p), "empty file")
    return p


def to_events(packet: np.ndarray) -> np.ndarray:
    """EVENT_DTYPE view or copy of a decoder's packet (faery/aedat: t u64, x, y u16, on bool; DAT: payload u8).

    faery's and aedat's packed layout has the offsets and sizes of EVENT_DTYPE (t at 0, x at 8, y at 10, a
    one-byte polarity at 12), so the packet, which the decoder hands over to us, is reinterpreted in place.
    """
    names = packet.dtype.names or ()
    pol = "on" if "on" in names else "p" if "p" in names else "payload"
    if _same_layout(packet.dtype, pol) and packet.flags.c_contiguous and packet.flags.writeable:
        if packet.dtype[pol] != np.bool_:
            np.minimum(packet[pol], 1, out=packet[pol])  # DAT CD payload: polarity 0/1
        return packet.view(EVENT_DTYPE)
    out = np.empty(len(packet), dtype=EVENT_DTYPE)
    out["t"] = packet["t"]
    out["x"] = packet["x"]
    out["y"] = packet["y"]
    out["p"] = packet[pol] > 0
    return out


@functools.lru_cache(maxsize=32)
def _same_layout(dtype: np.dtype, pol: str) -> bool:
    fields = dtype.fields or {}
    want = {"t": (np.dtype("<u8"), 0), "x": (np.dtype("<u2"), 8), "y": (np.dtype("<u2"), 10)}
    return (
        dtype.itemsize == EVENT_DTYPE.itemsize
        and all(
            k in fields and fields[k][0] in (d, d.newbyteorder("=")) and fields[k][1] == o for k, (d, o) in want.items()
        )
        and pol in fields
        and fields[pol][0].itemsize == 1
        and fields[pol][0].kind in "bu"
        and fields[pol][1] == 12
    )


def sort_by_t(events: np.ndarray) -> np.ndarray:
    """Events ordered by time (stable, so simultaneous events keep file order); no copy when already sorted."""
    if is_sorted(events):
        return events
    return events[np.argsort(events["t"], kind="stable")]


def is_sorted(events: np.ndarray) -> bool:
    if len(events) < 2:
        return True
    t = np.ascontiguousarray(events["t"])  # the packed field is strided; a copy compares ~2x faster
    return bool(np.all(t[1:] >= t[:-1]))


_RAW = np.dtype((np.void, EVENT_DTYPE.itemsize))


def join(parts: list[np.ndarray]) -> np.ndarray:
    """np.concatenate of EVENT_DTYPE arrays as raw records: ~15x faster than field-wise for packed records."""
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([p.view(_RAW) for p in parts]).view(EVENT_DTYPE)


def concat(batches: Iterable[np.ndarray]) -> np.ndarray:
    parts = [b for b in batches if len(b)]
    if not parts:
        return np.empty(0, dtype=EVENT_DTYPE)
    return sort_by_t(join(parts))


def split_windows(events: np.ndarray, chunk_us: int) -> Iterator[np.ndarray]:
    """Split sorted events into their non-empty windows [k*chunk_us, (k+1)*chunk_us)."""
    if len(events) == 0:
        return
    w = events["t"] // chunk_us
    cuts = np.flatnonzero(w[1:] != w[:-1]) + 1
    start = 0
    for c in cuts.tolist():
        yield events[start:c]
        start = c
    yield events[start:]


def rechunk(packets: Iterable[np.ndarray], chunk_us: int | None, stats: ChunkStats) -> Iterator[np.ndarray]:
    """Re-cut decoder packets into time windows aligned to multiples of chunk_us (absolute event time).

    A window is yielded once an event of a later window arrives, so memory holds one window plus one packet;
    packets that fall inside the open window are only collected and joined once, when it closes (so a window
    much longer than a packet costs one copy, not one per packet). Events older than a window already
    yielded (only in files whose timestamps go backwards across packets) cannot be placed any more: they are
    dropped and counted in stats.late, keeping every batch sorted.
    """
    parts: list[np.ndarray] = []  # the events of the open window, in arrival order
    open_start = 0  # start (µs) of the open window while parts is not empty
    emitted_until: int | None = None  # all windows before this time (µs) have been yielded
    for packet in packets:
        if len(packet) == 0:
            continue
        packet = sort_by_t(packet)
        if emitted_until is not None and packet["t"][0] < emitted_until:
            keep = packet["t"] >= emitted_until
            stats.late += int(len(packet) - np.count_nonzero(keep))
            packet = packet[keep]
            if len(packet) == 0:
                continue
        stats.events += len(packet)
        if chunk_us is None:
            emitted_until = int(packet["t"][-1])
            yield packet
            continue
        last_start = int(packet["t"][-1]) // chunk_us * chunk_us
        if parts and last_start == open_start:  # the packet lies wholly inside the open window
            parts.append(packet)
            continue
        buf = sort_by_t(join([*parts, packet]))
        cut = int(np.searchsorted(buf["t"], last_start, side="left"))
        if cut:
            yield from split_windows(buf[:cut], chunk_us)
        emitted_until, open_start, parts = last_start, last_start, [buf[cut:]]
    if parts:
        yield from split_windows(sort_by_t(join(parts)), chunk_us)


class ChunkStats:
    """Counters of one pass over a file: events yielded, late events dropped (see rechunk)."""

    def __init__(self) -> None:
        self.events = 0
        self.late = 0

    def __repr__(self) -> str:
        return f"ChunkStats(events={self.events}, late={self.late})"


class EventChunks:
    """The chunked view of one event file: iterable over EVENT_DTYPE batches, with format and sensor up front.

    Each batch is sorted by t, non-empty, and holds exactly the events of one window
    [k*chunk_us, (k+1)*chunk_us) of absolute event time (empty windows are skipped). chunk_us=None yields the
    decoder's own packets. Iterating again re-reads the file; `stats` counts the latest pass.
    """

    def __init__(
        self,
        path: Path,
        fmt: str,
        sensor: SensorSize,
        packets: Callable[[], Iterator[np.ndarray]],
        chunk_us: int | None = DEFAULT_CHUNK_US,
    ) -> None:
        if chunk_us is not None and int(chunk_us) <= 0:
            raise SourceError(f"chunk_us must be a positive number of microseconds or None, not {chunk_us}")
        self.path, self.format, self.sensor = path, fmt, sensor
        self.chunk_us = None if chunk_us is None else int(chunk_us)
        self._packets = packets
        self.stats = ChunkStats()

    def __iter__(self) -> Iterator[np.ndarray]:
        self.stats = ChunkStats()
        gen = rechunk(self._packets(), self.chunk_us, self.stats)
        try:
            while True:
                with decoding(self.path):
                    batch = next(gen, None)
                if batch is None:
                    return
                yield batch
        finally:  # a consumer that stops early closes the decoder (and its file) now, not at garbage collection
            gen.close()

    def read_all(self) -> np.ndarray:
        """Every event of the file, sorted by t (out-of-order packets are sorted in, never dropped as late)."""
        with decoding(self.path):
            return concat(list(self._packets()))

    def __repr__(self) -> str:
        s = self.sensor
        size = f"{s.width}x{s.height}"
        return f"EventChunks({str(self.path)!r}, format={self.format!r}, sensor={size}, chunk_us={self.chunk_us})"


def infer_sensor(events: np.ndarray) -> SensorSize:
    """The smallest sensor holding all events (for formats that do not record one)."""
    if len(events) == 0:
        return SensorSize(1, 1)
    return SensorSize(int(events["x"].max()) + 1, int(events["y"].max()) + 1)


def count_outside(events: np.ndarray, sensor: SensorSize) -> int:
    """Events with x >= width or y >= height (readers keep them; the pipeline drops and counts them)."""
    return int(np.count_nonzero((events["x"] >= sensor.width) | (events["y"] >= sensor.height)))
