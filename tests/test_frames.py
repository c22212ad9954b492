"""Event frames on the wire: compact (zlib'd counts in base64), lossless, within a byte budget, strict on input."""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from sources.events import make_events
from stream.pipeline import FrameLimits, FrameMaker
from stream.schema import MAX_PAYLOAD_BYTES, EventFrame, PayloadError, decode, decode_counts
from tui import samples

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "models" / "demo-gestures.aedat4"


class Published:
    """What FrameMaker hands to its link (the MqttLink.publish call it makes)."""

    def __init__(self) -> None:
        self.frames: list[EventFrame] = []

    def publish(self, p: EventFrame) -> int:
        self.frames.append(p)
        return len(self.frames) - 1


def wire(**fields) -> bytes:
    d = json.loads(samples.frame(3).to_json()) | fields
    return json.dumps(d).encode()


def test_round_trip_is_lossless_in_8_and_16_bits():
    """Counts come back exactly: one byte each while they fit, two above 255, clipped only above 65,535."""
    f = samples.frame(5)
    back = decode("frame", f.to_json())
    assert (back.on, back.off, back.width, back.height) == (f.on, f.off, f.width, f.height)
    assert json.loads(f.to_json())["dtype"] == "u1"
    big = EventFrame(width=3, height=1, on=[0, 300, 70_000], off=[65_535, 1, 0])
    raw = big.to_json()
    back = decode("frame", raw)
    assert json.loads(raw)["dtype"] == "u2" and back.on == [0, 300, 65_535] and back.off == [65_535, 1, 0]


def test_the_documented_decoder_reads_it():
    """The decoder docs/mqtt-api.md gives a third-party client reads frames of either dtype as sent, and stops a
    zip bomb."""
    import re

    text = (ROOT / "docs" / "mqtt-api.md").read_text().split("**`frame`**", 1)[1]
    scope: dict = {}
    exec(re.search(r"```python\n(.*?)```", text, re.S).group(1), scope)
    for f in (samples.frame(7), EventFrame(width=3, height=2, on=[0, 300, 0, 1, 2, 3], off=[9, 0, 0, 0, 0, 70_000])):
        on, off = scope["frame_counts"](f.to_json())
        assert on.ravel().tolist() == f.on and off.ravel().tolist() == [min(c, 65_535) for c in f.off]
    with pytest.raises(ValueError):
        scope["frame_counts"](wire(counts=base64.b64encode(zlib.compress(bytes(10**6))).decode()))


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"dtype": "i4"}, "dtype"),
        ({"counts": "not base64!"}, "base64"),
        ({"counts": base64.b64encode(b"not zlib").decode()}, "zlib"),
        ({"counts": base64.b64encode(zlib.compress(bytes(10))).decode()}, "exactly"),  # too short
        ({"counts": base64.b64encode(zlib.compress(bytes(2048)) + b"x").decode()}, "exactly"),  # trailing data
        ({"width": 0}, "width"),
        ({"width": 10**6, "height": 10**6}, "width"),
        ({"width": True}, "width"),
        ({"counts": None}, "base64"),
        ({"on": [1] * 1024, "off": [1] * 1024, "counts": None}, "base64"),
    ],
)
def test_malformed_frames_are_one_line_errors(fields, why):
    """Every way a frame can be wrong is a PayloadError that names it."""
    with pytest.raises(PayloadError, match=why):
        decode("frame", wire(**fields))


def test_the_old_list_form_is_refused():
    """A frame without "counts" (the lists of an older publisher) is refused, not half read."""
    d = json.loads(wire())
    del d["counts"], d["dtype"]
    with pytest.raises(PayloadError, match="missing field"):
        decode("frame", json.dumps(d | {"on": [0] * 1024, "off": [0] * 1024}).encode())


def test_a_zip_bomb_is_not_inflated():
    """Counts that inflate far beyond width x height are refused after inflating at most one byte too many."""
    z = zlib.compressobj(9)
    bomb = b"".join(z.compress(bytes(1 << 20)) for _ in range(100)) + z.flush()  # 100 MB of zeros in ~100 KB
    assert len(base64.b64encode(bomb)) < MAX_PAYLOAD_BYTES
    with pytest.raises(PayloadError, match="exactly"):
        decode_counts("u1", base64.b64encode(bomb).decode(), 64 * 64)


def frames_of(path: Path, limits: FrameLimits) -> tuple[FrameMaker, list[bytes]]:
    """The frames FrameMaker makes of a recording, 200 ms of events each (5 a second at speed 1)."""
    from sources.files import iter_events

    chunks = iter_events(path, 200_000)
    fm = FrameMaker(Published(), chunks.sensor.width, chunks.sensor.height, limits)  # type: ignore[arg-type]
    out = []
    for ev in chunks:
        fm.add(ev)
        out.append(fm.take(len(ev) * 5.0).to_json())
    return fm, out


def test_demo_frames_are_under_2_kb():
    """The shipped demo recording's 64 x 64 frames take under 2 KB on average (the plain lists took 16.5 KB), and
    none needs coarsening to fit the default 4 KB budget."""
    if not DEMO.is_file():
        pytest.skip("the demo recording is not there (`s2 data gesture-demo` writes it)")
    fm, frames = frames_of(DEMO, FrameLimits(per_s=1e-9))  # frames by event time here, not by the wall clock
    sizes = [len(f) for f in frames]
    print(json.dumps({"frames": len(sizes), "mean_bytes": round(float(np.mean(sizes))), "max_bytes": max(sizes)}))
    assert (fm.w, fm.h) == (64, 64) and fm.coarsened == 0 and np.mean(sizes) < 2048 and max(sizes) < 4096


def test_a_busy_frame_is_coarsened_to_fit_the_budget():
    """Noise on every pixel does not fit 1 KB at 64 x 64: the frame goes out coarser, within the budget, with
    every event still counted."""
    rng = np.random.default_rng(0)
    n = 200_000
    ev = make_events(np.arange(n), rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n))
    link = Published()
    fm = FrameMaker(link, 128, 128, FrameLimits(per_s=1e-9, max_bytes=1024))  # type: ignore[arg-type]
    fm.add(ev)
    f = fm.take(1.0)
    assert f.width < 64 and len(f.to_json()) <= 1024 and fm.coarsened == 1
    assert sum(f.on) + sum(f.off) == n
    roomy = FrameMaker(link, 128, 128, FrameLimits(per_s=1e-9, max_bytes=64 * 1024))  # type: ignore[arg-type]
    roomy.add(ev)
    assert roomy.take(1.0).width == 64 and roomy.coarsened == 0


def test_frames_per_second_are_bounded():
    """However often events come, FrameMaker publishes at most limits.per_s frames a second."""
    import time

    link = Published()
    fm = FrameMaker(link, 32, 32, FrameLimits(per_s=20))  # type: ignore[arg-type]
    ev = make_events(np.arange(10), np.arange(10), np.arange(10), np.ones(10))
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.5:
        fm.add(ev)
        time.sleep(0.001)
    assert 1 <= len(link.frames) <= 11  # 0.5 s at 20/s: never more (a starved process may send fewer)


def test_limits_are_checked():
    """A budget too small for any frame, or a rate of 0, is refused when the limits are made."""
    with pytest.raises(ValueError):
        FrameLimits(max_bytes=100)
    with pytest.raises(ValueError):
        FrameLimits(per_s=0)


def test_frame_options_are_checked_in_one_line(tmp_path):
    """`s2 replay --frame-bytes` below the minimum, or `s2 run --frames-per-s 0`, is one line and exit 1."""
    import os
    import subprocess
    import sys

    from stream_helpers import recording

    rec = recording(tmp_path / "r.npy", n=100)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for args in (["replay", str(rec), "--frame-bytes", "100"], ["run", "--source", "synthetic", "--frames-per-s", "0"]):
        r = subprocess.run([sys.executable, "-m", "stream.cli", *args, "--broker", "mqtt://127.0.0.1:1"],
                           capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and "--frame-bytes at least" in r.stderr
