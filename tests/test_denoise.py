"""The background-activity filter (sources.denoise) against a plain per-event loop, in any chunking, and wired
into the binning through InputSpec.denoise_us."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sources.binning import Binner, InputSpec, bin_events
from sources.denoise import Denoiser
from sources.errors import SourceError
from sources.events import EVENT_DTYPE

W, H = 7, 5


def reference(events: np.ndarray, width: int, height: int, dt_us: int, neighbours: int = 8) -> np.ndarray:
    """tonic's denoise loop, 8 or 4 neighbours, on a fixed sensor: an event passes when a neighbour's last
    event (in stream order) is less than dt_us older; every event on the sensor sets its pixel's last time."""
    last: dict[tuple[int, int], int] = {}
    near = [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if (dx, dy) != (0, 0)
            and (neighbours == 8 or dx == 0 or dy == 0)]
    keep = []
    for e in events:
        x, y, t = int(e["x"]), int(e["y"]), int(e["t"])
        if x >= width or y >= height:
            keep.append(True)  # not the filter's to judge: the binner drops and counts it
            continue
        keep.append(any((x + dx, y + dy) in last and last[(x + dx, y + dy)] > t - dt_us for dx, dy in near))
        last[(x, y)] = t
    return events[np.array(keep, bool)]


def events_of(rows: list[tuple[int, int, int, int]]) -> np.ndarray:
    ev = np.zeros(len(rows), EVENT_DTYPE)
    for i, (t, x, y, p) in enumerate(rows):
        ev[i] = (t, x, y, p)
    return ev


# small sensors, times in a short range so that neighbours often fall within dt; x, y may leave the sensor
ROWS = st.lists(st.tuples(st.integers(0, 60), st.integers(0, W), st.integers(0, H), st.integers(0, 1)),
                max_size=120)


@settings(max_examples=300, deadline=None)
@given(rows=ROWS, dt=st.integers(1, 30), sort=st.booleans(), neighbours=st.sampled_from([4, 8]),
       cuts=st.lists(st.integers(0, 120), max_size=4))
def test_equals_per_event_loop_in_any_chunking(rows, dt, sort, neighbours, cuts):
    """The compiled filter keeps exactly the events the reference loop keeps, in time order or not, fed in one
    batch or in chunks (the last-time map carries over)."""
    ev = events_of(sorted(rows) if sort else rows)
    want = reference(ev, W, H, dt, neighbours)
    d = Denoiser(W, H, dt, neighbours)
    got = np.concatenate([d.filter(part) for part in np.split(ev, sorted(c % (len(ev) + 1) for c in cuts))])
    assert np.array_equal(got, want)
    assert d.dropped == len(ev) - len(want) and d.events_in == len(ev)



@settings(max_examples=300, deadline=None)
@given(gaps=st.lists(st.integers(0, 4), max_size=120), xs=st.lists(st.integers(0, W), min_size=120, max_size=120),
       ys=st.lists(st.integers(0, H), min_size=120, max_size=120), dt=st.integers(1, 30),
       neighbours=st.sampled_from([4, 8]), every=st.integers(1, 12))
def test_short_rising_batches_equal_per_event_loop(gaps, xs, ys, dt, neighbours, every):
    """Short batches whose times rise (a live binner's millisecond, shorter or longer than dt): the same events as
    the reference loop."""
    t = np.cumsum(gaps)
    ev = events_of([(int(t[i]), xs[i], ys[i], 0) for i in range(len(gaps))])
    want = reference(ev, W, H, dt, neighbours)
    d = Denoiser(W, H, dt, neighbours)
    got = np.concatenate([d.filter(ev[i: i + every]) for i in range(0, max(1, len(ev)), every)])
    assert np.array_equal(got, want) and d.dropped == len(ev) - len(want)


def test_long_batch_and_extreme_times_equal_the_loop():
    """A long batch gives what the loop gives, and times far apart (a clock jump past dt in either direction)
    neither pass nor overflow."""
    rng = np.random.default_rng(0)
    ev = np.zeros(3000, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, 200_000, ev.size))
    ev["x"], ev["y"] = rng.integers(0, 20, ev.size), rng.integers(0, 20, ev.size)
    assert np.array_equal(Denoiser(20, 20, 5_000).filter(ev), reference(ev, 20, 20, 5_000))
    jumps = events_of([(2**59, 3, 3, 0), (2**59 + 1, 4, 3, 0), (-(2**59), 3, 4, 0), (-(2**59), 4, 4, 0)])
    assert np.array_equal(Denoiser(20, 20, 5_000).filter(jumps), reference(jumps, 20, 20, 5_000))


def test_real_stream_chunked():
    """On a real rendered stream (background activity and a moving body) the filter drops most isolated events,
    and feeding it 10 ms or 1 ms at a time (as the pipeline's early deliveries) gives the same events as one call;
    the input is not modified."""
    from sources.gesture_stream import StreamConfig, render_stream

    ev, _ = render_stream(3, 100, 0, StreamConfig(duration_s=2.0, segment_s=(1.5, 1.5), noise_hz=(2.0, 2.0)))
    before = ev.copy()
    one = Denoiser(128, 128, 5_000).filter(ev)
    d = Denoiser(128, 128, 5_000)
    cuts = np.searchsorted(ev["t"], np.arange(10_000, int(ev["t"][-1]), 10_000))
    chunked = np.concatenate([d.filter(part) for part in np.split(ev, cuts)])
    assert np.array_equal(chunked, one) and np.array_equal(ev, before)
    live = Denoiser(128, 128, 5_000)  # 1 ms at a time
    cuts = np.searchsorted(ev["t"], np.arange(1_000, int(ev["t"][-1]), 1_000))
    assert np.array_equal(np.concatenate([live.filter(part) for part in np.split(ev, cuts)]), one)
    assert 0 < one.size < ev.size and d.dropped == ev.size - one.size


def test_rejects_bad_arguments():
    """A non-positive window or an unknown neighbourhood is refused, naming the value."""
    with pytest.raises(SourceError, match="dt_us"):
        Denoiser(128, 128, 0)
    with pytest.raises(SourceError, match="6"):
        Denoiser(128, 128, 1000, neighbours=6)
    with pytest.raises(SourceError, match="2\\^60"):
        Denoiser(128, 128, 2**61)
    with pytest.raises(SourceError, match="denoise_us"):
        InputSpec(denoise_us=-1)


def test_input_spec_applies_the_filter(tmp_path):
    """InputSpec.denoise_us filters in bin_events and Binner.feed alike (chunked equals whole, noise counted);
    0 leaves the spec's config as before, so model files without the key load unchanged."""
    rng = np.random.default_rng(1)
    ev = np.zeros(5000, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, 1_000_000, ev.size))
    ev["x"], ev["y"] = rng.integers(0, 128, ev.size), rng.integers(0, 128, ev.size)
    ev["x"][::2] = 64  # a line of pixels that fire often: it passes, the scattered events mostly do not
    spec = InputSpec(denoise_us=20_000)
    whole = bin_events(ev, spec)
    kept = Denoiser(128, 128, 20_000).filter(ev)
    assert np.array_equal(whole, bin_events(kept, InputSpec()))
    b = Binner(spec)
    rows = [v for part in np.array_split(ev, 7) for _, _, v in b.feed(part)] + [v for _, _, v in b.flush()]
    assert np.array_equal(np.stack(rows), whole)
    assert b.dropped_noise == ev.size - kept.size > 0
    path = tmp_path / "input.json"
    path.write_text(json.dumps(spec.to_config()))
    assert InputSpec.from_config(json.loads(path.read_text())) == spec
    assert "denoise_us" not in InputSpec().to_config()
    assert InputSpec.from_config(InputSpec().to_config()).denoise_us == 0


def test_trained_model_carries_the_filter_to_the_pipeline(tmp_path):
    """`s2 train gesture --continuous --denoise-us N` stores N in the model's input; the pipeline's binner built
    from that model file filters (what it drops counted apart from lost events) and bins as bin_events does."""
    import subprocess
    import sys
    from pathlib import Path

    from s2node import modelfile
    from sources.gesture_stream import StreamConfig, generate_streams, load_stream
    from stream.binner import make_binner

    short = StreamConfig(duration_s=3.0, segment_s=(1.5, 1.5), idle_probability=0.0, fps=100)
    generate_streams(tmp_path, 1, 0, split="train", cfg=short, progress=False)
    paths = generate_streams(tmp_path, 1, 0, split="test", cfg=short, progress=False)
    out = tmp_path / "m"
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", "stream.cli", "train", "gesture", "--continuous", "--data", str(tmp_path),
                        "--arch", "egru", "--hidden", "8", "--epochs", "1", "--batch-size", "1", "--chunk-s", "0.5",
                        "--denoise-us", "3000", "--quiet", "--out", str(out)],
                       cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    config, _ = modelfile.load(out)
    assert config["input"]["denoise_us"] == 3000
    ev = load_stream(paths[0]).events
    b = make_binner(config)
    vecs = [x.vector for part in np.array_split(ev, 9) for x in b.feed(part)] + [x.vector for x in b.flush()]
    assert np.array_equal(np.stack(vecs), bin_events(ev, InputSpec.from_config(config["input"])))
    assert b.dropped == 0 and b.events_in == Denoiser(128, 128, 3000).filter(ev).size < ev.size
    assert b.events_in + b.denoised == ev.size  # every event accounted for: binned or counted as noise


async def test_pipeline_stats_count_the_denoised_events(mosquitto, tmp_path):
    """The pipeline's counters and its stats payload say how many events the model's filter removed: every event
    of the recording is binned, dropped or counted as noise."""
    from concurrent.futures import ThreadPoolExecutor

    from stream_helpers import gesture_model_file, recording, running

    from s2node import modelfile
    from s2node.step import load_step_model
    from stream.binner import make_binner
    from stream.mqtt import MqttLink
    from stream.pipeline import node_stats, run_gesture_pipeline
    from stream.replay import replay

    path = gesture_model_file(tmp_path)
    config, tensors = modelfile.load(path)
    config["input"]["denoise_us"] = 300
    modelfile.save(path, config, tensors)
    rec = recording(tmp_path / "rec.npy", n=20_000, outside=50)
    model = load_step_model(path)
    link = MqttLink(mosquitto.url, "denoised")
    async with running(link.run()):
        with ThreadPoolExecutor(1) as ex:
            c = await run_gesture_pipeline(replay(rec, speed=0), model, make_binner(model.config), link,
                                           executor=ex, frames=False)
    assert c.events_denoised > 0 and c.events_in > 0 and c.events_dropped >= 50
    assert c.events_in + c.events_denoised + c.events_dropped == 20_000
    assert node_stats(model, c, 1.0, 0).events_denoised == c.events_denoised
