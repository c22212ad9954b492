"""Property-based tests (hypothesis): whatever arrives, the parsers raise only their package's error, the panes
render, and each event-file reader on a mutated real file ends in bounded time and memory.

Fast by default; `make fuzz` sets S2_FUZZ_EXAMPLES for a longer run.
"""

from __future__ import annotations

import contextlib
import json
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sources.errors import SourceError
from sources.events import SensorSize, make_events
from sources.files import FORMATS, WRITABLE, iter_events, read_events, write_events
from stream.schema import KINDS, PayloadError, decode, topic
from tui import samples
from tui.payloads import clean, literal, parse_message
from tui.state import FeedState

EXAMPLES = int(os.environ.get("S2_FUZZ_EXAMPLES", "60"))
# `make test` runs the same examples every time (a red suite must mean a change broke something); `make fuzz`
# (S2_FUZZ_EXAMPLES set) explores new ones on every run
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="S2_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# JSON values of every shape and size that matters: huge and negative ints, floats at the edges, deep lists,
# strings with controls, surrogates, markup and bidi overrides
_ints = st.one_of(st.integers(), st.sampled_from([2**63, -(2**63) - 1, 10**400, 10**4000]))
_floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e308, -0.0, 5e-324]))
_texts = st.one_of(st.text(max_size=40), st.sampled_from(["\ud800", "[/]", "abcdefghijklmnopqrstuv[/]", "\u202e",
                                                          "#", "+", "a/b", "\x1b[2J", "[b]x", "\\[/"]))
_json = st.recursive(st.one_of(st.none(), st.booleans(), _ints, _floats, _texts),
                     lambda inner: st.one_of(st.lists(inner, max_size=6),
                                             st.dictionaries(_texts, inner, max_size=6)), max_leaves=30)

SAMPLES = {"pred/gesture": samples.gesture(3), "pred/text": samples.text(1), "stats": samples.stats(2),
           "frame": samples.frame(1), "status": samples.status("n0")}


def _dumps(v) -> bytes:
    try:
        return json.dumps(v, allow_nan=True).encode("utf-8", "surrogatepass")
    except ValueError:  # an int beyond str()'s digit limit: what the wire would carry is a malformed number
        return b'{"v":1,"seq":1' + b"9" * 5000 + b"}"


@FUZZ
@given(kind=st.sampled_from(sorted(KINDS)), value=_json)
def test_decode_raises_only_payload_error_on_any_json(kind, value):
    """Any JSON value (and any mutation of a valid payload's fields) decodes or raises PayloadError."""
    for raw in (_dumps(value), _dumps({"v": 1, "seq": 0, "t_wall": 0, "cmd": "pause", "text": "", "x": value})):
        with contextlib.suppress(PayloadError):
            decode(kind, raw)


@FUZZ
@given(kind=st.sampled_from(sorted(SAMPLES)), field=st.data(), value=_json)
def test_every_ui_payload_with_any_field_value_parses_or_is_malformed(kind, field, value):
    """A valid payload with one field replaced by anything parses, folds into the state and renders, or is a
    PayloadError; never another exception."""
    d = json.loads(SAMPLES[kind].to_json())
    name = field.draw(st.sampled_from(sorted(d)))
    d[name] = value
    try:
        p = parse_message(topic("n0", kind), _dumps(d), "n0")
    except PayloadError:
        return
    state = FeedState("n0")
    state.apply(p)
    _render_all(state)


@FUZZ
@given(raw=st.binary(max_size=300), kind=st.sampled_from(sorted(SAMPLES)), node=_texts)
def test_arbitrary_bytes_on_any_topic(raw, kind, node):
    """Random bytes on any kind, for any node id (wildcards and controls included), parse or are malformed."""
    with contextlib.suppress(PayloadError):
        parse_message(f"s2/v1/{node}/{kind}", raw, "n0")


@FUZZ
@given(text=st.text(max_size=60), limit=st.integers(1, 80))
def test_literal_is_always_valid_markup_and_clean_has_no_controls(text, limit):
    """literal() never fails Textual's markup parser, however it is cut; clean() leaves no control characters."""
    from textual.content import Content

    Content.from_markup(literal(text, limit))
    c = clean(text, limit)
    assert len(c) <= limit and not any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 or ch in "\u202e\u2066" for ch in c)


def _render_all(state: FeedState) -> None:
    """The panes' pure rendering paths for the state (what the app would draw)."""
    from tui.payloads import downsample, fit_frame, si
    from tui.widgets.node import heat_rows
    from tui.widgets.text import show_token

    if state.frame is not None:
        f = state.frame
        cw, ch = fit_frame(f.width, f.height, 40, 10)
        if cw and ch:
            downsample(f.on, f.width, f.height, cw, ch)
    if state.stats is not None:
        s = state.stats
        heat_rows(s.pe_activity)
        for v in (s.synops_per_s, s.energy_per_inference_j, s.latency_p50_s, float(s.sram_bytes_total)):
            si(v, "x")
        literal(s.model, 24)
        str(s.steps)
    if state.text is not None:
        for tok, prob in state.text.topk[:5]:
            show_token(tok)
            f"{prob:.0%}"
    if state.gesture is not None:
        str(state.gesture.step)
        f"{max(state.gesture.probs, default=0.0):5.1%}"


# --- event files -------------------------------------------------------------------------------------------
SENSOR = SensorSize(64, 48)


@pytest.fixture(scope="module")
def event_files(tmp_path_factory) -> dict[str, bytes]:
    """One small real file per writable format (written by our writers, read back by the readers)."""
    rng = np.random.default_rng(0)
    n = 400
    ev = make_events(np.sort(rng.integers(0, 200_000, n)), rng.integers(0, 64, n), rng.integers(0, 48, n),
                     rng.integers(0, 2, n))
    d = tmp_path_factory.mktemp("fuzz-files")
    out = {}
    for fmt in WRITABLE:
        p = d / f"ev{FORMATS[fmt][1][0]}"
        write_events(p, ev, SENSOR, fmt)
        out[fmt] = p.read_bytes()
    return out


def _mutate(data: bytes, how: str, rnd: st.DataObject) -> bytes:
    b = bytearray(data)
    if how == "truncate":
        return bytes(b[: rnd.draw(st.integers(0, len(b)))])
    if how == "header":
        end = min(len(b), 256)
        for _ in range(rnd.draw(st.integers(1, 8))):
            i = rnd.draw(st.integers(0, end - 1))
            b[i] = rnd.draw(st.integers(0, 255))
        return bytes(b)
    for _ in range(rnd.draw(st.integers(1, 16))):  # bit flips anywhere
        i = rnd.draw(st.integers(0, len(b) - 1))
        b[i] ^= 1 << rnd.draw(st.integers(0, 7))
    return bytes(b)


MEMORY_LIMIT_BYTES = 256 * 1024 * 1024  # what NumPy may hold at once reading a file of a few kB, however damaged


@FUZZ
@given(fmt=st.sampled_from(WRITABLE), how=st.sampled_from(["truncate", "header", "flip"]), rnd=st.data())
def test_mutated_event_files_give_events_or_a_source_error(event_files, tmp_path_factory, fmt, how, rnd):
    """A truncated, bit-flipped or header-damaged real file reads as events or raises SourceError, within the
    memory bound (NumPy's allocations, traced) and a second per read."""
    import time

    p = Path(tmp_path_factory.getbasetemp()) / f"m{FORMATS[fmt][1][0]}"
    p.write_bytes(_mutate(event_files[fmt], how, rnd))
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        for reader in (lambda: read_events(p), lambda: [len(c) for c in iter_events(p, 10_000)]):
            with contextlib.suppress(SourceError):
                reader()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_LIMIT_BYTES, f"{fmt} {how}: {peak / 2**20:.0f} MiB"
    assert time.monotonic() - t0 < 5.0


# Files that made a native decoder kill the process (tests/data/README.md): each must now be a one-line
# CorruptFileError. Read in a child process, so that a regression fails this test instead of killing the run,
# with its address space bounded, so that an allocation without end fails at once instead of exhausting the machine.
CRASHERS = sorted((Path(__file__).parent / "data").glob("aedat4-*.aedat4"))
_READ_BOTH_WAYS = """
import sys
from sources.errors import CorruptFileError
from sources.files import iter_events, read_events
for reader in (read_events, lambda p: [len(c) for c in iter_events(p)]):
    try:
        reader(sys.argv[1])
        print("read without an error")
    except CorruptFileError as e:
        print(e)
"""


def test_the_files_that_crashed_a_decoder_are_all_here():
    assert len(CRASHERS) == 3


def _read_bounded(path: Path, before: str = ""):
    """_READ_BOTH_WAYS of path in a child process whose address space is bounded to 2 GiB (a 3.75 GiB packet, or a
    packet that decompresses to 3 GiB, cannot be allocated there); `before`: code the child runs first."""
    import resource
    import subprocess
    import sys

    def bounded() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))

    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, "-c", before + _READ_BOTH_WAYS, str(path)], capture_output=True,
                          text=True, cwd=root, timeout=120, preexec_fn=bounded,
                          env={**os.environ, "PYTHONPATH": str(root), "RUST_BACKTRACE": "1",
                               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})  # no per-core reservations


@pytest.mark.parametrize("path", CRASHERS, ids=lambda p: p.stem)
def test_a_file_that_crashed_a_decoder_is_a_one_line_error(path: Path):
    r = _read_bounded(path)
    assert r.returncode == 0, f"the reader died (exit status {r.returncode}): {r.stderr[-2000:]}"
    assert r.stderr == ""
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{path}: corrupt or truncated") for line in lines), lines


def _zstd_bomb(tmp_path: Path) -> Path:
    """A real zstd AEDAT4 file (faery) whose packets are replaced by one valid zstd frame of RLE blocks: 98 KiB
    that decompress to 3 GiB, which aedat would read into memory whole."""
    import struct

    from faery import file_encoder

    from sources.files._write import to_faery

    n = 500
    ev = make_events(np.arange(n) * 100, np.arange(n) % 64, np.arange(n) % 48, np.arange(n) % 2)
    path = tmp_path / "zstd-bomb.aedat4"
    file_encoder.events_to_file([to_faery(ev)], path, (64, 48), file_type="aedat", compression=("zstd", 3))
    data = path.read_bytes()
    header_end = 18 + struct.unpack_from("<I", data, 14)[0]
    stream_id = struct.unpack_from("<I", data, header_end)[0]
    blocks = 3 * 2**30 // 2**17
    rle = ((2**17 << 3) | (1 << 1)).to_bytes(3, "little") + b"\0"  # an RLE block: 128 KiB of one byte
    last = ((2**17 << 3) | (1 << 1) | 1).to_bytes(3, "little") + b"\0"
    frame = struct.pack("<I", 0xFD2FB528) + bytes([0x00, 0x38]) + rle * (blocks - 1) + last  # window 128 KiB
    path.write_bytes(data[:header_end] + struct.pack("<II", stream_id, len(frame)) + frame)
    return path


def test_a_compressed_packet_that_would_expand_beyond_memory_is_a_one_line_error(tmp_path: Path):
    """aedat decompresses each packet whole, without a limit: a 98 KiB zstd packet that expands to 3 GiB is refused
    from its block headers before aedat reads it. Without the check the 2 GiB child runs out of memory in aedat
    (a process without a bound takes the 3 GiB, and a larger packet all the machine has)."""
    path = _zstd_bomb(tmp_path)
    r = _read_bounded(path)
    assert r.returncode == 0 and r.stderr == "", f"the reader died (exit status {r.returncode}): {r.stderr[-2000:]}"
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{path}: corrupt or truncated") and "zstd packet that may "
                                   f"decompress to {2049 * 2**17} bytes" in line for line in lines), lines
    unchecked = _read_bounded(path, "import sources.files.aedat4 as a; a.MAX_PACKET_BYTES = 2**62\n")
    assert unchecked.stdout.count("out of memory") == 2, unchecked.stdout + unchecked.stderr[-2000:]
