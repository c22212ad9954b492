"""NumPy .npy event files: our EVENT_DTYPE, any record array with t/x/y/p fields, or tonic's N x 4 arrays.

tonic's DVSGesture files hold plain N x 4 arrays with the columns (x, y, p, t) and t in milliseconds; pass
t_unit="ms" for those. Files are memory-mapped (never unpickled), so chunked reading of a sorted file holds
one packet at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sources.errors import CorruptFileError, SourceError
from sources.events import EVENT_DTYPE, SensorSize
from sources.files._common import DEFAULT_CHUNK_US, EventChunks, check_file, decoding, infer_sensor, sort_by_t
from sources.files._write import checked_events

_T_SCALE = {"us": 1, "ms": 1_000, "s": 1_000_000}
_POLARITY_NAMES = ("p", "on", "pol", "polarity")
_PACKET = 1 << 16  # events converted at a time when streaming from the memory map


def _load(p: Path) -> np.ndarray:
    with open(p, "rb") as f:
        head = f.read(12)
        size = os.fstat(f.fileno()).st_size
    if head[:6] != b"\x93NUMPY":
        raise CorruptFileError(str(p), "not a .npy file (no \\x93NUMPY magic)")
    # np.load reads the header's declared length at once (a damaged version byte makes it up to 4 GiB)
    start = 10 if head[6:7] == b"\x01" else 12  # version 1.0: a 2-byte length; 2.0 and 3.0: 4 bytes
    length = int.from_bytes(head[8:start], "little")
    if len(head) < start or start + length > size:
        raise CorruptFileError(str(p), f"a {length}-byte .npy header in a {size}-byte file", offset=8)
    with decoding(p):
        try:
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
        except ValueError as e:
            raise CorruptFileError(str(p), str(e).splitlines()[0]) from e
    if not isinstance(arr, np.ndarray):
        raise CorruptFileError(str(p), "not a single .npy array")
    names = arr.dtype.names
    if names:
        if not ({"t", "x", "y"} <= set(names) and any(n in names for n in _POLARITY_NAMES)) or arr.ndim != 1:
            raise CorruptFileError(str(p), f"record array with fields {names} is not an event array (t, x, y, p)")
    elif arr.ndim != 2 or arr.shape[1] != 4 or arr.dtype.kind not in "iuf":
        raise CorruptFileError(str(p), f"array of shape {arr.shape} and dtype {arr.dtype} is not N x 4 (x, y, p, t)")
    return arr


def _convert(raw: np.ndarray, t_scale: int) -> np.ndarray:
    """EVENT_DTYPE copy of a slice of the mapped array."""
    if raw.dtype == EVENT_DTYPE and t_scale == 1:
        return np.array(raw)  # our own files: one memcpy out of the map
    out = np.empty(len(raw), dtype=EVENT_DTYPE)
    if raw.dtype.names:
        pol = next(n for n in _POLARITY_NAMES if n in raw.dtype.names)
        t, x, y, p = raw["t"], raw["x"], raw["y"], raw[pol]
    else:
        x, y, p, t = raw[:, 0], raw[:, 1], raw[:, 2], raw[:, 3]
    out["t"] = np.rint(t * t_scale) if t.dtype.kind == "f" else t.astype(np.int64) * t_scale
    out["x"] = x
    out["y"] = y
    out["p"] = p > 0
    return out


def _t_column(arr: np.ndarray) -> np.ndarray:
    return arr["t"] if arr.dtype.names else arr[:, 3]


def _scale(t_unit: str) -> int:
    if t_unit not in _T_SCALE:
        raise SourceError(f"t_unit must be one of {', '.join(_T_SCALE)}, not {t_unit!r}")
    return _T_SCALE[t_unit]


def read_npy(
    path: str | os.PathLike, sensor: SensorSize | None = None, t_unit: str = "us"
) -> tuple[np.ndarray, SensorSize]:
    """All events of a .npy file, sorted by t; the sensor is `sensor` or the smallest that holds them."""
    p = check_file(path)
    arr = _load(p)
    with decoding(p):
        events = sort_by_t(_convert(arr, _scale(t_unit)))
    return events, sensor or infer_sensor(events)


def iter_npy(
    path: str | os.PathLike,
    chunk_us: int | None = DEFAULT_CHUNK_US,
    sensor: SensorSize | None = None,
    t_unit: str = "us",
) -> EventChunks:
    """Chunked events of a .npy file (an unsorted file is loaded whole and sorted first)."""
    p = check_file(path)
    arr, scale = _load(p), _scale(t_unit)
    with decoding(p):
        t = _t_column(arr)
        ordered = len(t) < 2 or bool(np.all(t[1:] >= t[:-1]))
        if sensor is None:
            if len(arr) == 0:
                sensor = SensorSize(1, 1)
            else:
                xs, ys = (arr["x"], arr["y"]) if arr.dtype.names else (arr[:, 0], arr[:, 1])
                sensor = SensorSize(int(xs.max()) + 1, int(ys.max()) + 1)
    del arr, t  # the map holds a file descriptor: each pass maps the file anew and lets go when it ends

    def packets() -> Iterator[np.ndarray]:
        mapped = _load(p)
        if not ordered:
            yield sort_by_t(_convert(mapped, scale))
            return
        for start in range(0, len(mapped), _PACKET):
            yield _convert(mapped[start : start + _PACKET], scale)

    return EventChunks(p, "npy", sensor, packets, chunk_us)


def write_npy(path: str | os.PathLike, events: np.ndarray, sensor: SensorSize | None = None) -> None:
    """Save EVENT_DTYPE events as .npy (the format stores no sensor size; `sensor` only checks the events)."""
    ev = checked_events(events, sensor, path)
    p = Path(path)
    tmp = p.with_name(p.name + ".write")
    try:
        with open(tmp, "wb") as f:  # np.save on a path would append .npy to the temporary name
            np.save(f, np.ascontiguousarray(ev), allow_pickle=False)
        tmp.replace(p)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise SourceError(f"{p}: cannot write: {e.strerror or e}") from e
