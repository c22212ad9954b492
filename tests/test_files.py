"""Event files: real AEDAT4 bytes, round trips, chunking, detection and corrupt input, per format."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sources.errors import CorruptFileError, SourceError
from sources.events import EVENT_DTYPE, SensorSize, make_events
from sources.files import (
    FORMATS,
    WRITABLE,
    ChunkStats,
    convert_file,
    count_outside,
    detect_format,
    iter_events,
    read_aedat4,
    read_events,
    read_evt3,
    read_npy,
    write_events,
    write_npy,
)
from sources.files._common import rechunk

ROOT = Path(__file__).resolve().parents[1]
# <project root>/../shared in a checkout next to shared/; one level more for a worktree under wt/.
_CANDIDATES = [ROOT.parent / "shared", ROOT.parent.parent / "shared"]
TRAFFIC = next((c / "data/davis346-traffic.aedat4" for c in _CANDIDATES if (c / "data").is_dir()), None)

EXT = {"aedat4": ".aedat4", "evt3": ".raw", "evt2": ".evt2", "dat": ".dat", "es": ".es", "csv": ".csv", "npy": ".npy"}
SENSOR = SensorSize(64, 48)


def synthetic(n: int = 4000, seed: int = 0, t0: int = 1_589_163_147_368_868) -> np.ndarray:
    """Random events on SENSOR over 0.3 s from an epoch-like t0, sorted, with some equal timestamps."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(t0, t0 + 300_000, n))
    t[10:20] = t[10]  # simultaneous events must keep their file order
    ev = make_events(t, rng.integers(0, SENSOR.width, n), rng.integers(0, SENSOR.height, n), rng.integers(0, 2, n))
    ev["x"][-1], ev["y"][-1] = SENSOR.width - 1, SENSOR.height - 1  # so that formats without a size infer SENSOR
    return ev


def expected_after(fmt: str, ev: np.ndarray) -> np.ndarray:
    """What a format gives back: Event Stream has no t0 field, so its times start at the first event."""
    if fmt != "es":
        return ev
    out = ev.copy()
    out["t"] -= ev["t"][0]
    return out


def written(tmp_path: Path, fmt: str, ev: np.ndarray, name: str = "rec") -> Path:
    path = tmp_path / f"{name}{EXT[fmt]}"
    assert write_events(path, ev, SENSOR) == fmt
    return path


def assert_one_line_error(err: pytest.ExceptionInfo, path: Path) -> None:
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg


@pytest.fixture(scope="module")
def traffic() -> Path:
    if TRAFFIC is None or not TRAFFIC.is_file():
        pytest.skip(f"real recording davis346-traffic.aedat4 not found under {' or '.join(map(str, _CANDIDATES))}")
    return TRAFFIC


def test_real_aedat4_polarity_events_count_and_span(traffic: Path):
    """The DAVIS346 traffic clip yields its 78,830 polarity events over 2.36 s at 346x260, sorted, in range."""
    events, sensor = read_aedat4(traffic)
    assert events.dtype == EVENT_DTYPE
    assert sensor == SensorSize(346, 260)
    assert len(events) == 78_830
    span_us = int(events["t"][-1] - events["t"][0])
    assert round(span_us / 1e6, 2) == 2.36 and 2_355_000 <= span_us <= 2_365_000
    assert np.all(np.diff(events["t"]) >= 0)
    assert count_outside(events, sensor) == 0
    assert 0.4 < events["p"].mean() < 0.6


def test_real_aedat4_skips_frames_and_imu_like_an_independent_decoder(traffic: Path):
    """The file holds frame and IMU streams; our events equal faery's own decoding of the event stream only."""
    import aedat
    import faery

    kinds = {s["type"] for s in aedat.Decoder(traffic).id_to_stream().values()}
    assert {"events", "frame", "imus"} <= kinds
    ours, _ = read_events(traffic)
    theirs = np.concatenate(list(faery.events_stream_from_file(traffic)))
    assert np.array_equal(ours["t"], theirs["t"].astype(np.int64))
    assert np.array_equal(ours["x"], theirs["x"]) and np.array_equal(ours["y"], theirs["y"])
    assert np.array_equal(ours["p"] == 1, theirs["on"])


def test_real_aedat4_chunks_equal_whole_read(traffic: Path):
    """Chunked reading of the real file concatenates to the whole read, one 20 ms window per batch."""
    whole, _ = read_events(traffic)
    chunks = iter_events(traffic, chunk_us=20_000)
    assert chunks.format == "aedat4" and chunks.sensor == SensorSize(346, 260)
    batches = list(chunks)
    assert all(len({int(t) // 20_000 for t in b["t"][[0, -1]]}) == 1 for b in batches)
    assert np.array_equal(np.concatenate(batches), whole)
    assert chunks.stats.events == len(whole) and chunks.stats.late == 0


@pytest.mark.parametrize("fmt", WRITABLE)
def test_round_trip(tmp_path: Path, fmt: str):
    """Writing then reading gives back the same events and sensor size in every writable format."""
    ev = synthetic(seed=WRITABLE.index(fmt))
    path = written(tmp_path, fmt, ev)
    back, sensor = read_events(path)
    assert detect_format(path) == fmt
    assert sensor == SENSOR
    assert back is not ev and back.dtype == EVENT_DTYPE
    assert np.array_equal(back, expected_after(fmt, ev))


@pytest.mark.parametrize("fmt", WRITABLE)
@pytest.mark.parametrize("chunk_us", [1_000, 37_000, None])
def test_chunked_equals_whole_read(tmp_path: Path, fmt: str, chunk_us: int | None):
    """Chunked iteration concatenates to the whole read; each batch is sorted and inside one window."""
    path = written(tmp_path, fmt, synthetic(seed=7))
    whole, sensor = read_events(path)
    chunks = iter_events(path, chunk_us=chunk_us)
    assert chunks.sensor == sensor
    batches = list(chunks)
    assert batches and all(len(b) for b in batches)
    assert np.array_equal(np.concatenate(batches), whole)
    for b in batches:
        assert np.all(np.diff(b["t"]) >= 0)
        if chunk_us is not None:
            assert int(b["t"][0]) // chunk_us == int(b["t"][-1]) // chunk_us
    if chunk_us is not None:  # consecutive batches are in increasing windows
        windows = [int(b["t"][0]) // chunk_us for b in batches]
        assert windows == sorted(set(windows))
    assert next(iter(chunks)).tolist() == batches[0].tolist()  # iterating again re-reads from the start


@pytest.mark.parametrize("seed", range(5))
def test_rechunk_windows_do_not_depend_on_packet_sizes(seed: int):
    """However the decoder cuts its packets, the windows are the same: exactly the events of each window."""
    rng = np.random.default_rng(seed)
    ev = synthetic(n=3000, seed=seed)
    chunk_us = int(rng.choice([1, 700, 10_000, 10**9]))
    cuts = np.sort(rng.choice(np.arange(1, len(ev)), size=int(rng.integers(1, 60)), replace=False))
    stats = ChunkStats()
    out = list(rechunk(np.split(ev, cuts), chunk_us, stats))
    windows = ev["t"] // chunk_us
    expected = [ev[windows == w] for w in np.unique(windows)]
    assert len(out) == len(expected) and all(np.array_equal(a, b) for a, b in zip(out, expected, strict=True))
    assert stats.events == len(ev) and stats.late == 0


@pytest.mark.parametrize("chunk_us", [1_000, 50_000])
def test_rechunk_streams_instead_of_buffering(chunk_us: int):
    """Windows come out while the file is read: never more than one window plus one packet is held back."""
    ev = synthetic(n=4000, seed=8)
    packets = np.array_split(ev, 200)
    consumed: list[int] = []

    def source():
        for p in packets:
            consumed.append(len(p))
            yield p

    bound = int(np.bincount(ev["t"] // chunk_us - ev["t"][0] // chunk_us).max()) + max(map(len, packets))
    yielded = 0
    for batch in rechunk(source(), chunk_us, ChunkStats()):
        yielded += len(batch)
        assert sum(consumed) - yielded <= bound
    assert yielded == len(ev)


def test_rechunk_drops_and_counts_late_events():
    """An event older than a window already yielded is dropped and counted, so batches stay sorted."""
    a = make_events([0, 5, 12, 25], [0] * 4, [0] * 4, [1] * 4)
    b = make_events([3, 30, 31], [1] * 3, [0] * 3, [0] * 3)  # t=3 arrives after window [0, 10) was yielded
    stats = ChunkStats()
    out = list(rechunk([a, b], 10, stats))
    assert [x["t"].tolist() for x in out] == [[0, 5], [12], [25], [30, 31]]
    assert stats.late == 1 and stats.events == 6


@pytest.mark.parametrize("fmt", ["aedat4", "evt3", "evt2", "dat", "es", "csv", "npy"])
def test_detects_format_by_magic_despite_wrong_extension(tmp_path: Path, fmt: str):
    """A file named with another format's extension is still read as what its bytes are."""
    ev = synthetic(seed=3)
    src = written(tmp_path, fmt, ev)
    wrong = ".es" if fmt == "dat" else ".dat"  # CSV has no magic bytes: its text header gives it away
    disguised = src.rename(tmp_path / f"disguised{wrong}")
    assert detect_format(disguised) == fmt
    back, sensor = read_events(disguised)
    assert sensor == SENSOR and np.array_equal(back, expected_after(fmt, ev))


def _truncations(fmt: str, data: bytes) -> list[int]:
    """Cut points that leave part of a record (a cut exactly between two records is a valid shorter file)."""
    if fmt == "evt3":
        return [len(data) - 1, 20]  # odd number of bytes after the header / inside the '%' header
    if fmt in ("evt2", "dat"):
        return [len(data) - 3, 20]
    if fmt == "es":
        return [15]  # inside the fixed header (ES events have variable length, see docs/event-files.md)
    if fmt == "csv":
        line_ends = [i for i, c in enumerate(data) if c == ord("\n")]
        return [line_ends[len(line_ends) // 2] + 8]  # in the middle of a line
    return [len(data) // 2, 20]  # aedat4, npy


@pytest.mark.parametrize("fmt", WRITABLE)
def test_truncated_file_is_corrupt_file_error(tmp_path: Path, fmt: str):
    """A file cut inside a record or header raises CorruptFileError with a one-line message naming it."""
    data = written(tmp_path, fmt, synthetic(seed=5)).read_bytes()
    for cut in _truncations(fmt, data):
        bad = tmp_path / f"cut{cut}{EXT[fmt]}"
        bad.write_bytes(data[:cut])
        with pytest.raises(CorruptFileError) as err:
            read_events(bad)
        assert_one_line_error(err, bad)
        with pytest.raises(CorruptFileError):  # the chunked reader fails too, at open or while iterating
            list(iter_events(bad))


@pytest.mark.parametrize("ext", sorted({e for _, exts in FORMATS.values() for e in exts}))
def test_garbage_is_corrupt_file_error(tmp_path: Path, ext: str):
    """Random bytes under any supported extension raise CorruptFileError (one line), never a traceback."""
    bad = tmp_path / f"noise{ext}"
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    with pytest.raises(CorruptFileError) as err:
        read_events(bad)
    assert_one_line_error(err, bad)


def test_empty_file_is_corrupt(tmp_path: Path):
    """A zero-byte file is reported as corrupt, not read as an empty recording."""
    bad = tmp_path / "empty.aedat4"
    bad.write_bytes(b"")
    with pytest.raises(CorruptFileError, match="empty file"):
        read_events(bad)


def test_unknown_format_lists_supported(tmp_path: Path):
    """Bytes that match no magic under an unknown extension give a SourceError naming every format."""
    odd = tmp_path / "capture.xyz"
    odd.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(SourceError) as err:
        read_events(odd)
    assert not isinstance(err.value, CorruptFileError)
    assert all(name in str(err.value) for name in FORMATS)


@pytest.mark.parametrize("reader", [read_events, read_evt3])
def test_evt21_is_refused_cleanly(tmp_path: Path, capfd: pytest.CaptureFixture, reader):
    """An EVT 2.1 file (which faery cannot decode) is a one-line SourceError, without a Rust panic on stderr."""
    path = tmp_path / "gen4.raw"
    path.write_bytes(b"% evt 2.1\n% format EVT21;width=1280;height=720\n% end\n" + bytes(64))
    with pytest.raises(SourceError, match=r"EVT 2\.1 is not supported"):
        reader(path)
    assert "panicked" not in capfd.readouterr().err


def test_missing_file_is_source_error(tmp_path: Path):
    """A path that does not exist gives a one-line SourceError."""
    with pytest.raises(SourceError, match="no such file"):
        read_events(tmp_path / "nope.aedat4")


def test_tonic_style_npy_in_milliseconds(tmp_path: Path):
    """An N x 4 (x, y, p, t) array as tonic's DVSGesture stores it reads with t_unit='ms' into µs."""
    raw = np.array([[3, 4, 1, 0.5], [1, 2, 0, 2.25], [7, 9, -1, 1.0]], dtype=np.float32)
    path = tmp_path / "user01_lab.npy"
    np.save(path, raw)
    ev, sensor = read_events(path, t_unit="ms")
    assert ev["t"].tolist() == [500, 1000, 2250]  # sorted by t
    assert ev["x"].tolist() == [3, 7, 1] and ev["p"].tolist() == [1, 0, 0]
    assert sensor == SensorSize(8, 10)
    assert np.array_equal(np.concatenate(list(iter_events(path, chunk_us=1000, t_unit="ms"))), ev)


def test_structured_npy_with_other_field_order(tmp_path: Path):
    """A record array with tonic's field order (x, y, t, p) and its own dtypes reads as EVENT_DTYPE."""
    dt = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])
    rec = np.array([(1, 2, 10, True), (3, 4, 20, False)], dtype=dt)
    path = tmp_path / "tonic.npy"
    np.save(path, rec)
    ev, _ = read_npy(path, sensor=SENSOR)
    assert ev.dtype == EVENT_DTYPE and ev["t"].tolist() == [10, 20] and ev["p"].tolist() == [1, 0]


def test_events_outside_sensor_are_returned_and_counted(tmp_path: Path):
    """Readers keep events outside a given sensor and count_outside counts them (the pipeline drops them)."""
    ev = synthetic(seed=9)
    path = tmp_path / "ev.npy"
    write_npy(path, ev)
    small = SensorSize(32, 48)
    back, sensor = read_events(path, sensor=small)
    assert sensor == small and len(back) == len(ev)
    assert count_outside(back, small) == int(np.count_nonzero(ev["x"] >= 32)) > 0


def test_writer_refuses_events_outside_sensor(tmp_path: Path):
    """Writing events outside the sensor is a one-line SourceError and leaves no file behind."""
    ev = synthetic(seed=2)
    with pytest.raises(SourceError, match="outside the 16x48 sensor"):
        write_events(tmp_path / "x.aedat4", ev, SensorSize(16, 48))
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_unsorted_events(tmp_path: Path):
    """Writing events that are not sorted by t is a one-line SourceError."""
    ev = synthetic(seed=2)[::-1]
    with pytest.raises(SourceError, match="sorted"):
        write_events(tmp_path / "x.raw", ev, SENSOR)


def test_convert_file_drops_and_counts_events_outside_the_sensor(tmp_path: Path):
    """convert_file writes only the events inside the given sensor and reports how many it dropped."""
    ev = synthetic(seed=9)
    write_npy(tmp_path / "in.npy", ev)
    r = convert_file(tmp_path / "in.npy", tmp_path / "out.csv", sensor=SensorSize(32, 48))
    inside = int(np.count_nonzero((ev["x"] < 32) & (ev["y"] < 48)))
    assert (r.events, r.dropped_outside, r.format, r.sensor) == (inside, len(ev) - inside, "csv", SensorSize(32, 48))
    assert len(read_events(tmp_path / "out.csv", sensor=SensorSize(32, 48))[0]) == inside


def test_cli_convert_round_trip(tmp_path: Path):
    """`s2 data convert` turns NPY into EVT3 and back without changing an event; bad input exits 1 in one line."""
    ev = synthetic(seed=4)
    src = tmp_path / "in.npy"
    write_npy(src, ev)

    def s2(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "stream.cli", "data", "convert", *args]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)

    r = s2(str(src), str(tmp_path / "mid.raw"))
    assert r.returncode == 0, r.stderr
    assert f"{len(ev)} events" in r.stdout
    assert s2(str(tmp_path / "mid.raw"), str(tmp_path / "out.npy")).returncode == 0
    back, sensor = read_events(tmp_path / "out.npy")
    assert sensor == SENSOR and np.array_equal(back, ev)
    (tmp_path / "bad.raw").write_bytes(b"% evt 3.0\n% form")
    r = s2(str(tmp_path / "bad.raw"), str(tmp_path / "x.npy"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "bad.raw" in r.stderr


@pytest.mark.parametrize(
    ("text", "ext"),
    [
        ("5,1,2,1\n7,3,4,0\n9,0,1,1\n", ".csv"),  # no header: t,x,y,p
        ("timestamp;x;y;polarity\n5;1;2;1\n7;3;4;0\n9;0;1;1\n", ".txt"),  # named columns, other separator
        ("x,y,p,t\n1,2,1,5\n3,4,0,7\n0,1,1,9\n", ".log"),  # columns in another order
    ],
)
def test_csv_variants(tmp_path: Path, text: str, ext: str):
    """CSV without header, with other column names or order, and other separators read the same events."""
    path = tmp_path / f"events{ext}"
    path.write_text(text)
    ev, sensor = read_events(path)
    assert ev["t"].tolist() == [5, 7, 9] and ev["x"].tolist() == [1, 3, 0] and ev["p"].tolist() == [1, 0, 1]
    assert sensor == SensorSize(4, 5)  # no size in the file: the smallest sensor that holds the events
    chunks = iter_events(path, chunk_us=3)
    assert chunks.sensor == sensor and [b["t"].tolist() for b in chunks] == [[5], [7], [9]]


def test_unsorted_npy_is_sorted_on_reading(tmp_path: Path):
    """An .npy whose events are out of time order reads sorted, whole and chunked, losing none."""
    ev = synthetic(seed=11)
    path = tmp_path / "shuffled.npy"
    np.save(path, ev[np.random.default_rng(0).permutation(len(ev))])
    back, _ = read_events(path)
    assert np.array_equal(back["t"], ev["t"]) and len(back) == len(ev)
    chunks = iter_events(path, chunk_us=5_000)
    assert np.array_equal(np.concatenate(list(chunks)), back) and chunks.stats.late == 0


def test_raw_with_header_naming_no_evt_version(tmp_path: Path):
    """A .raw whose '%' header names no EVT version (old Metavision) reads as EVT3 at 1280x720, not as DAT."""
    ev = synthetic(seed=12)
    data = written(tmp_path, "evt3", ev).read_bytes()
    body = data[data.index(b"% t0") :].split(b"\n", 1)[1]  # the events after the last header line
    old = tmp_path / "gen3.raw"
    old.write_bytes(b"% Date 2020-01-01 10:00:00\n% plugin_name hal_plugin_prophesee\n% end\n" + body)
    assert detect_format(old) == "evt3"
    back, sensor = read_events(old)
    assert sensor == SensorSize(1280, 720)
    assert np.array_equal(back["t"], ev["t"] - ev["t"][0])  # the t0 line went with the header
    assert np.array_equal(back[["x", "y", "p"]], ev[["x", "y", "p"]])


@pytest.mark.parametrize("fmt", WRITABLE)
def test_real_events_survive_every_format(tmp_path: Path, traffic: Path, fmt: str):
    """The real clip's 78,830 events, written in each format and read back, are unchanged (ES: from t=0)."""
    events, sensor = read_events(traffic)
    path = tmp_path / f"traffic{EXT[fmt]}"
    write_events(path, events, sensor)
    back, back_sensor = read_events(path)
    assert back_sensor == sensor
    assert np.array_equal(back, expected_after(fmt, events))


def _open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to count open files")
@pytest.mark.parametrize("fmt", WRITABLE)
def test_stopping_early_closes_the_file(tmp_path: Path, fmt: str):
    """Breaking out of a chunked iteration closes the decoder's file at once, not at garbage collection."""
    path = written(tmp_path, fmt, synthetic(seed=13))
    before = _open_fds()
    chunks = iter_events(path, chunk_us=1_000)
    it = iter(chunks)
    next(it)
    it.close()
    assert _open_fds() == before


# Real recordings from faery 0.7.1's sdist (LGPL-3.0, so fetched, never committed); see the README, "Event files".
FAERY_DATA = Path(os.environ.get("S2_DATA_DIR", Path.home() / ".cache/s2egru")) / "faery-testdata"


@pytest.fixture(scope="module")
def faery_data() -> Path:
    if not (FAERY_DATA / "evt3.raw").is_file():
        pytest.skip(f"faery's real test recordings not in {FAERY_DATA} (README, 'Event files': how to fetch them)")
    return FAERY_DATA


def test_real_prophesee_evt3_and_dat_hold_the_same_recording(faery_data: Path):
    """faery's Gen4 clip as EVT3 and as DAT: 1,218,618 events over 10.77 s at 1280x720, identical, in range."""
    evt3, s3 = read_events(faery_data / "evt3.raw")
    dat, sd = read_events(faery_data / "gen4.dat")
    assert s3 == sd == SensorSize(1280, 720)
    assert len(evt3) == 1_218_618 and round(int(evt3["t"][-1] - evt3["t"][0]) / 1e6, 2) == 10.77
    assert np.array_equal(evt3[["x", "y", "p"]], dat[["x", "y", "p"]]) and count_outside(evt3, s3) == 0
    assert np.array_equal(evt3["t"] - evt3["t"][0], dat["t"] - dat["t"][0])  # the two files differ in time origin


def test_real_evt2_header_size_larger_than_events(faery_data: Path):
    """faery's EVT2 clip: 521,252 events, header 1280x720 with every event inside 640x480."""
    ev, sensor = read_events(faery_data / "evt2.raw")
    assert detect_format(faery_data / "evt2.raw") == "evt2"
    assert sensor == SensorSize(1280, 720) and len(ev) == 521_252
    assert int(ev["x"].max()) < 640 and int(ev["y"].max()) < 480


def test_real_event_stream_dvs_atis_and_csv_agree(faery_data: Path):
    """The toy-plane clip as DVS .es, ATIS .es (exposures skipped) and CSV: the same 473,225 events at 320x240."""
    dvs, sensor = read_events(faery_data / "dvs.es")
    atis, _ = read_events(faery_data / "atis.es")
    csv, csv_sensor = read_events(faery_data / "dvs.csv")
    assert sensor == csv_sensor == SensorSize(320, 240) and len(dvs) == 473_225
    assert np.array_equal(dvs, atis)
    assert np.array_equal(dvs[["x", "y", "p"]], csv[["x", "y", "p"]])
    assert np.array_equal(dvs["t"] - dvs["t"][0], csv["t"] - csv["t"][0])
    chunks = iter_events(faery_data / "atis.es", chunk_us=100_000)
    assert np.array_equal(np.concatenate(list(chunks)), atis)


@pytest.mark.parametrize("name", ["color.es", "generic.es", "test_data_gray16.aedat4"])
def test_real_files_without_polarity_events_are_refused(faery_data: Path, name: str):
    """Valid files holding no polarity events (colour/generic ES, frames-only AEDAT4) give a plain SourceError."""
    with pytest.raises(SourceError) as err:
        read_events(faery_data / name)
    assert not isinstance(err.value, CorruptFileError) and "\n" not in str(err.value)


def test_aedat3_is_refused_with_a_pointer(tmp_path: Path):
    """An AEDAT 3.1 file (the original DVS128 Gesture format) gives a one-line SourceError, not a decode attempt."""
    path = tmp_path / "user01_fluorescent.aedat"
    path.write_bytes(b"#!AER-DAT3.1\r\n#Format: RAW\r\n#!END-HEADER\r\n" + bytes(56))
    with pytest.raises(SourceError, match="AEDAT 2/3 is not supported") as err:
        read_events(path)
    assert not isinstance(err.value, CorruptFileError)


def test_a_rust_panic_in_a_decoder_is_one_line_on_stderr(tmp_path):
    """An empty packet after a valid header makes the AEDAT4 decoder panic in Rust (an assertion in flatbuffers):
    the reader raises CorruptFileError (caused by the panic), and `s2 replay` prints that one line, without the
    panic's own report."""
    import struct

    from sources.errors import CorruptFileError
    from sources.events import DVS128, make_events
    from sources.files import read_events, write_events

    n = 1000
    path = tmp_path / "bad.aedat4"
    write_events(path, make_events(np.arange(n) * 100, np.arange(n) % 128, np.arange(n) % 128, np.arange(n) % 2),
                 DVS128)
    data = path.read_bytes()
    header_end = 18 + struct.unpack_from("<I", data, 14)[0]  # magic (14 bytes), header length, header
    path.write_bytes(data[:header_end] + struct.pack("<II", 0, 0))  # stream 0, a packet of 0 bytes
    with pytest.raises(CorruptFileError) as e:
        read_events(path)
    assert type(e.value.__cause__).__name__ == "PanicException"  # the case this test is about
    r = subprocess.run([sys.executable, "-m", "stream.cli", "replay", str(path), "--speed", "0"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60,
                       env={**os.environ, "RUST_BACKTRACE": "1"})
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 1 and len(lines) == 1 and "corrupt" in lines[0], r.stderr


@pytest.mark.parametrize(("where", "value", "reason"), [
    ("description", b"\xfa", "description is not UTF-8"),
    ("root", b"\xf0\xff\xff\x7f", "root table outside the header"),
    ("description offset", b"\xf0\xff\xff\x7f", "description outside the header"),
    ("header length", b"\xff\xff\xff\x7f", "unexpected end of data"),
    ("packet length", b"\x00\x00\x00\xf0", "a packet of 4026531840 bytes"),
])
def test_aedat4_structure_the_decoder_trusts_is_checked_first(tmp_path: Path, where: str, value: bytes, reason: str):
    """What aedat reads unverified (the header flatbuffer, its UTF-8 description, each packet's size, which it
    allocates before reading) is checked before aedat sees the file: a one-line CorruptFileError, no panic."""
    import struct

    path = written(tmp_path, "aedat4", synthetic(seed=2))
    data = bytearray(path.read_bytes())
    header_end = 18 + struct.unpack_from("<I", data, 14)[0]
    root = 18 + struct.unpack_from("<I", data, 18)[0]
    at = {"description": data.find(b"<dv ") + 1, "root": 18, "header length": 14, "packet length": header_end + 4,
          "description offset": root + 8}[where]  # faery's layout: the description's offset 8 bytes into the table
    data[at : at + len(value)] = value
    path.write_bytes(bytes(data))
    for reader in (read_events, lambda p: list(iter_events(p))):
        with pytest.raises(CorruptFileError, match=reason) as err:
            reader(path)
        assert_one_line_error(err, path)
        assert err.value.__cause__ is None  # refused by the check, not by a panic of the decoder


def test_npy_header_length_beyond_the_file_is_refused_before_numpy_reads_it(tmp_path: Path):
    """Version byte 1 -> 2 makes the 2-byte header length a 4-byte one (about 630 MB here), which np.load would
    allocate at once: refused first, a one-line CorruptFileError."""
    path = written(tmp_path, "npy", synthetic(seed=4))
    data = bytearray(path.read_bytes())
    data[6] = 2
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="header in a") as err:
        read_events(path)
    assert_one_line_error(err, path)


def _packet_bounds(path: Path) -> list[int]:
    """decompressed_bound of each packet of an AEDAT4 file, in file order (up to where the header says they end)."""
    import struct

    from sources.files.aedat4 import _ioheader, decompressed_bound

    data = path.read_bytes()
    header_end = 18 + struct.unpack_from("<I", data, 14)[0]
    _, data_end, compression = _ioheader(data[18:header_end])
    bounds, pos = [], header_end
    while pos != data_end and pos + 8 <= len(data):
        length = struct.unpack_from("<I", data, pos + 4)[0]
        bounds.append(decompressed_bound(data, pos + 8, pos + 8 + length, compression))
        pos += 8 + length
    return bounds


@pytest.mark.parametrize("compression", [("lz4", 1), ("zstd", 3), ("zstd", 19)])
def test_compressed_packet_bounds_hold_what_they_decompress_to(tmp_path: Path, compression):
    """The bound on each packet (from its frame and block headers) is at least what it decompresses to, 16 bytes
    per event of its flatbuffer, so a real file of either compression reads unchanged."""
    import aedat
    from faery import file_encoder

    from sources.files._write import to_faery

    ev = synthetic(n=200_000, seed=5)
    path = tmp_path / "rec.aedat4"
    file_encoder.events_to_file([to_faery(ev)], path, (SENSOR.width, SENSOR.height), file_type="aedat",
                                compression=compression)
    packets = [len(p["events"]) for p in aedat.Decoder(path) if "events" in p]
    bounds = _packet_bounds(path)
    assert len(bounds) == len(packets) > 1
    assert all(16 * n <= b <= 2**28 for n, b in zip(packets, bounds, strict=True)), (packets, bounds)
    np.testing.assert_array_equal(read_events(path)[0], expected_after("aedat4", ev))


def test_real_aedat4_packet_bounds_hold_its_events(traffic: Path):
    """The DV recording (events, frames, IMU in LZ4 packets): each event packet's bound holds its events."""
    import aedat

    sizes = [16 * len(p["events"]) if "events" in p else 0 for p in aedat.Decoder(traffic)]
    bounds = _packet_bounds(traffic)
    assert len(bounds) == len(sizes) and all(s <= b <= 2**28 for s, b in zip(sizes, bounds, strict=True))


def test_lz4_framing_that_may_expand_beyond_the_limit_is_refused(tmp_path: Path):
    """An LZ4 packet over 1 MiB (which could expand beyond 256 MiB at LZ4's 255:1) of one-byte blocks, each of which
    may decompress to the frame's 4 MiB block size, is refused from its headers, whatever the blocks hold; a short
    one cannot expand that far and goes to aedat, whose own error names the damage."""
    import struct

    path = written(tmp_path, "aedat4", synthetic(seed=3))
    data = path.read_bytes()
    header_end = 18 + struct.unpack_from("<I", data, 14)[0]
    for blocks, refused in ((250_000, True), (1000, False)):
        frame = struct.pack("<I", 0x184D2204) + bytes([0x60, 0x70, 0x00]) + (struct.pack("<I", 1) + b"\0") * blocks
        path.write_bytes(data[:header_end] + struct.pack("<II", 0, len(frame) + 4) + frame + struct.pack("<I", 0))
        for reader in (read_events, lambda p: list(iter_events(p))):
            with pytest.raises(CorruptFileError) as err:
                reader(path)
            assert_one_line_error(err, path)
            assert ("lz4 packet that may decompress to 272629760 bytes" in str(err.value)) == refused, err.value


def test_a_zstd_packet_that_is_not_zstd_frames_is_refused_before_aedat(tmp_path: Path):
    """A packet of a zstd file whose bytes are not zstd frames cannot be bounded: a one-line error naming it."""
    import struct

    from faery import file_encoder

    from sources.files._write import to_faery

    path = tmp_path / "rec.aedat4"
    file_encoder.events_to_file([to_faery(synthetic(seed=6))], path, (SENSOR.width, SENSOR.height), file_type="aedat",
                                compression=("zstd", 3))
    data = bytearray(path.read_bytes())
    header_end = 18 + struct.unpack_from("<I", data, 14)[0]
    data[header_end + 8] ^= 0xFF  # the first packet's zstd magic number
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="packet that is not zstd frames") as err:
        read_events(path)
    assert_one_line_error(err, path)
