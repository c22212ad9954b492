"""Event files: readers, chunked iterators and writers for AEDAT4, EVT2/EVT3, DAT, ES, CSV and NPY.

`read_<format>(path) -> (events, SensorSize)` loads a whole file; `iter_<format>(path, chunk_us=...)` returns
an EventChunks (its `.sensor` known at once) yielding EVENT_DTYPE batches, sorted by t, one per window of
chunk_us µs. read_events / iter_events / write_events / convert_file choose the format by magic bytes and extension.
Corrupt or truncated files raise CorruptFileError; unknown formats a SourceError listing the supported ones.
"""

from sources.files._common import DEFAULT_CHUNK_US, ChunkStats, EventChunks, check_file, count_outside, show_path
from sources.files.aedat4 import iter_aedat4, read_aedat4, write_aedat4
from sources.files.csv_events import iter_csv, read_csv, write_csv
from sources.files.detect import FORMATS, WRITABLE, detect_format, supported
from sources.files.dispatch import Conversion, convert_file, format_for_writing, iter_events, read_events, write_events
from sources.files.eventstream import iter_es, read_es, write_es
from sources.files.npy import iter_npy, read_npy, write_npy
from sources.files.prophesee import (
    iter_dat,
    iter_evt2,
    iter_evt3,
    read_dat,
    read_evt2,
    read_evt3,
    write_dat,
    write_evt2,
    write_evt3,
)

__all__ = [
    "DEFAULT_CHUNK_US",
    "FORMATS",
    "WRITABLE",
    "ChunkStats",
    "Conversion",
    "EventChunks",
    "check_file",
    "convert_file",
    "count_outside",
    "detect_format",
    "format_for_writing",
    "iter_aedat4",
    "iter_csv",
    "iter_dat",
    "iter_es",
    "iter_events",
    "iter_evt2",
    "iter_evt3",
    "iter_npy",
    "read_aedat4",
    "read_csv",
    "read_dat",
    "read_es",
    "read_events",
    "read_evt2",
    "read_evt3",
    "read_npy",
    "show_path",
    "supported",
    "write_aedat4",
    "write_csv",
    "write_dat",
    "write_es",
    "write_events",
    "write_evt2",
    "write_evt3",
    "write_npy",
]
