"""Sensor mapping: events of any sensor size reach the model's input (scale by default, a centre crop or a region),
applied before binning; events outside the sensor or region are still dropped and counted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sources.errors import SourceError
from sources.events import SensorSize, make_events
from sources.files import write_events
from sources.sensor_map import OUTSIDE, SensorMap, map_events_numpy, parse_sensor
from stream.binner import make_binner, recording_mapping
from stream.replay import replay

ROOT = Path(__file__).resolve().parents[1]
_CANDIDATES = [ROOT.parent / "shared", ROOT.parent.parent / "shared"]
TRAFFIC = next((c / "data/davis346-traffic.aedat4" for c in _CANDIDATES if (c / "data").is_dir()), None)
MODEL_128 = {"input": {"sensor": [128, 128], "downsample": 4, "bin_us": 20_000, "layout": "p,y,x", "scale": 0.25},
             "layers": [{"input_size": 2 * 32 * 32, "hidden_size": 8}]}
# DAVIS346, Prophesee Gen3 (EVT2) and Gen4 (EVT3), ATIS (Event Stream), DVS128: each in a format its camera writes
SENSORS = [((346, 260), ".aedat4"), ((640, 480), ".evt2"), ((1280, 720), ".raw"), ((304, 240), ".es"),
           ((128, 128), ".aedat4")]


def _scene(sensor: tuple[int, int], n: int = 40_000, seed: int = 0) -> np.ndarray:
    """Half background activity over the whole sensor, half a moving blob in it, 0.5 s, sorted."""
    rng = np.random.default_rng(seed)
    w, h = sensor
    t = np.sort(rng.integers(1_000_000, 1_500_000, n))
    cx = w / 2 + w / 4 * np.sin(np.linspace(0, 6, n))
    blob = rng.random(n) < 0.5
    x = np.where(blob, np.clip(cx + rng.normal(0, w / 20, n), 0, w - 1), rng.integers(0, w, n)).astype(np.int64)
    y = np.where(blob, np.clip(h / 2 + rng.normal(0, h / 20, n), 0, h - 1), rng.integers(0, h, n)).astype(np.int64)
    return make_events(t, x, y, rng.integers(0, 2, n))


def _replayed_fraction(path: Path, sensor_map: SensorMap = SensorMap()) -> tuple[float, int, int]:
    """Replay a file as `s2 replay --speed 0` does into the 128 x 128 model's binner: (share in, in, dropped)."""
    binner = make_binner(MODEL_128, recording_mapping(MODEL_128, sensor_map, path))

    async def run() -> None:
        async with contextlib.aclosing(replay(path, speed=0, chunk_us=binner.spec.release_chunk_us)) as batches:
            async for b in batches:
                binner.feed(b.events, b.upto_us)
        binner.flush()

    asyncio.run(run())
    total = binner.events_in + binner.dropped
    return binner.events_in / total, binner.events_in, binner.dropped


@pytest.mark.parametrize(("size", "ext"), SENSORS, ids=[f"{w}x{h}{e}" for (w, h), e in SENSORS])
def test_replays_of_every_sensor_size_put_95_percent_of_events_into_the_input(tmp_path, size, ext):
    """A recording written at 346x260, 640x480, 1280x720, 304x240 or 128x128 replays with >= 95 % of its events
    binned into a 128 x 128 model's input under the default mapping."""
    path = tmp_path / f"rec{ext}"
    write_events(path, _scene(size), SensorSize(*size))
    share, n_in, _ = _replayed_fraction(path)
    assert share >= 0.95 and n_in > 0


def test_the_real_davis346_clip_reaches_the_input():
    """The real DAVIS346 traffic clip (346x260), replayed into a 128 x 128 model, keeps >= 95 % of its events."""
    if TRAFFIC is None or not TRAFFIC.is_file():
        pytest.skip("davis346-traffic.aedat4 not found in ../shared/data")
    share, n_in, dropped = _replayed_fraction(TRAFFIC)
    assert share >= 0.95, (n_in, dropped)
    crop_share, _, _ = _replayed_fraction(TRAFFIC, SensorMap("crop"))
    assert crop_share < share  # the centre crop sees part of the street only


def test_crop_and_roi_keep_their_window_and_drop_the_rest(tmp_path):
    """crop keeps the centred 128 x 128 window pixel for pixel; roi=x,y,w,h keeps that region; the rest is dropped
    and counted by the binner."""
    path = tmp_path / "rec.aedat4"
    events = _scene((346, 260))
    write_events(path, events, SensorSize(346, 260))
    x, y = events["x"].astype(int), events["y"].astype(int)
    in_crop = int(((x >= 109) & (x < 237) & (y >= 66) & (y < 194)).sum())
    _, n_in, dropped = _replayed_fraction(path, SensorMap("crop"))
    assert n_in == in_crop and dropped == events.size - in_crop
    in_roi = int(((x < 173) & (y < 130)).sum())
    _, n_in, dropped = _replayed_fraction(path, SensorMap.parse("roi=0,0,173,130"))
    assert n_in == in_roi and dropped == events.size - in_roi


@pytest.mark.parametrize("mode", ["scale", "crop", "roi=10,20,200,100"])
def test_mapping_is_pure_and_lands_inside_the_target(mode):
    """The transform returns a new array (input untouched), every kept event lies inside the target, the others
    carry the out-of-range marker; times and polarities pass unchanged."""
    src, dst = SensorSize(346, 260), SensorSize(128, 128)
    ev = _scene((346, 260), n=5000)
    ev[:7]["x"] = 400  # beyond the source sensor: dropped whatever the mode
    before = ev.copy()
    m = SensorMap.parse(mode).for_sensors(src, dst)
    out = m(ev)
    assert out is not ev and np.array_equal(ev, before)
    assert np.array_equal(out["t"], ev["t"]) and np.array_equal(out["p"], ev["p"])
    kept = out["x"] != OUTSIDE
    assert (out["x"][kept] < 128).all() and (out["y"][kept] < 128).all()
    assert (out["y"][~kept] == OUTSIDE).all() and not kept[:7].any()


def test_scale_keeps_the_aspect_ratio_centred():
    """346x260 scaled into 128x128 fills the width and a centred band of rows; corners map to the band's corners."""
    src, dst = SensorSize(346, 260), SensorSize(128, 128)
    ev = make_events([0, 1, 2], [0, 345, 173], [0, 259, 130], [1, 0, 1])
    out = map_events_numpy(ev, src, dst, (0, 0, 346, 260))
    f = 346 / 128  # source pixels per input pixel, the same on both axes
    top = (128 - 260 / f) / 2  # rows above the band
    assert out["x"][0] == 0 and out["x"][1] == 127 and out["x"][2] == 64
    assert out["y"][0] == int(top + 0.5 / f) == 16 and out["y"][1] == int(top + 259.5 / f) == 111
    assert SensorMap().for_sensors(dst, dst).identity


def test_bad_maps_and_sizes_are_one_line_errors():
    """An unknown mode, a malformed or out-of-sensor roi and a malformed WxH are SourceErrors naming the culprit."""
    for text in ("stretch", "roi=1,2,3", "roi=-1,0,5,5"):
        with pytest.raises(SourceError, match="sensor map"):
            SensorMap.parse(text)
    with pytest.raises(SourceError, match="does not lie inside"):
        SensorMap.parse("roi=300,0,100,100").for_sensors(SensorSize(346, 260), SensorSize(128, 128))
    with pytest.raises(SourceError, match="WxH"):
        parse_sensor("346by260")
    assert parse_sensor("346x260") == SensorSize(346, 260)


@pytest.mark.broker
def test_s2_replay_announces_the_map_once_and_puts_it_in_the_status(mosquitto, tmp_path):
    """`s2 replay` of a 346x260 file says the mapping once on stderr and in the retained status; without
    --broker it says that its embedded broker ends with it."""
    from stream_helpers import gesture_model_file

    model = gesture_model_file(tmp_path, sensor=(32, 24))
    path = tmp_path / "davis.aedat4"
    write_events(path, _scene((346, 260), n=4000), SensorSize(346, 260))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "stream.cli", "replay", str(path), "--model", str(model), "--speed", "0",
           "--no-frames"]
    sub_bin = shutil.which("mosquitto_sub")
    if sub_bin is None:
        pytest.skip("mosquitto_sub not installed")
    sub = subprocess.Popen([sub_bin, "-h", mosquitto.host, "-p", str(mosquitto.port), "-t", "s2/v1/map/status",
                            "-C", "2", "-W", "120"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)  # subscribed before the node announces itself
        r = subprocess.run([*cmd, "--broker", mosquitto.url, "--node", "map"], capture_output=True, text=True,
                           env=env, timeout=120)
        out, _ = sub.communicate(timeout=30)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.communicate()
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "sensor map" in ln]
    assert len(lines) == 1 and "346x260 sensor -> 32x24 model input: scale" in lines[0]
    assert "4000 events in, 0 dropped" in r.stderr
    online = json.loads(out.splitlines()[0])
    assert online["state"] == "online" and "346x260 sensor -> 32x24" in online["sensor_map"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "embedded broker at" in r.stderr and "ends with this replay" in r.stderr


def test_live_sources_take_the_given_sensor_or_the_models():
    """A live source without --sensor is taken to have the model's size (no mapping); with --sensor 640x480 its
    events are scaled, and an NPY file (which records no size) is the model's size unless told otherwise."""
    from stream.binner import sensor_mapping

    assert sensor_mapping(MODEL_128, SensorMap(), None).identity
    m = sensor_mapping(MODEL_128, SensorMap(), SensorSize(640, 480))
    assert not m.identity and m.describe().startswith("640x480 sensor -> 128x128 model input: scale")
    out = m(make_events([0], [639], [479], [1]))
    assert (int(out["x"][0]), int(out["y"][0])) == (127, 111)


def test_npy_recordings_are_the_models_size_unless_told(tmp_path):
    """An NPY recording (no sensor in the file) is binned as the model's size: events beyond it are dropped and
    counted, as before; given --sensor, it is scaled like any other."""
    path = tmp_path / "r.npy"
    np.save(path, _scene((346, 260), n=3000))
    share, _, dropped = _replayed_fraction(path)
    assert share < 0.5 and dropped > 0
    assert recording_mapping(MODEL_128, SensorMap(), path, SensorSize(346, 260)).region == (0, 0, 346, 260)
