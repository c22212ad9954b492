"""Continuous gesture streams: generated back to back with labels per event time, trained on with the state
carried over, and scored per step with the streaming readout."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from s2node.errors import S2NodeError
from s2node.eval_gesture import evaluate_gesture_stream, score_segments
from s2node.train_gesture import GestureTrainConfig
from s2node.train_gesture_stream import StreamTrainConfig, load_streams, train_streams, window_mean
from sources.binning import InputSpec
from sources.errors import DataNotFoundError
from sources.events import SensorSize
from sources.gesture_stream import IDLE, StreamConfig, find_streams, generate_streams, load_stream, render_stream
from stream.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHORT = StreamConfig(duration_s=5.0, segment_s=(1.5, 2.0), idle_probability=0.5, idle_s=(0.2, 0.4), fps=100)


@pytest.fixture(scope="module")
def tiny_streams(tmp_path_factory) -> Path:
    """Two training streams and one held-out test stream of about 5 s each."""
    out = tmp_path_factory.mktemp("streams")
    generate_streams(out, 2, 0, split="train", cfg=SHORT, progress=False)
    generate_streams(out, 1, 0, split="test", cfg=SHORT, progress=False)
    return out


def test_segments_run_back_to_back_with_labels_per_event_time(tiny_streams):
    """Spans tile the stream without gaps, gestures last 1.5-2 s as asked, events are sorted and lie in the
    sensor, and the sidecar's draws lie in the sensor-realism ranges."""
    st = load_stream(find_streams(tiny_streams, "test")[0])
    side = json.loads(st.path.with_suffix(".json").read_text())
    spans = st.spans
    assert spans[0]["t_start_us"] == 0
    assert all(a["t_end_us"] == b["t_start_us"] for a, b in itertools.pairwise(spans))
    gestures = [s for s in spans if s["class"] != IDLE]
    assert gestures and all(1.5e6 - 1 <= s["t_end_us"] - s["t_start_us"] <= 2.0e6 + 1 for s in gestures)
    assert np.all(np.diff(st.events["t"]) >= 0) and st.events["t"][-1] <= spans[-1]["t_end_us"]
    assert (st.events["x"] < 128).all() and (st.events["y"] < 128).all()
    assert 0.1 <= side["noise_hz"] <= 5.0 and 50 <= side["refractory_us"] <= 1000 and 0.6 <= side["speed"] <= 1.6
    assert side["user"] >= 500  # held-out subjects


def test_same_seed_same_stream_and_larger_sensors_hold_the_scene():
    """A stream is a function of (seed, user, index); at 346x260 the scene fills the width, inside the sensor."""
    cfg = StreamConfig(duration_s=1.6, segment_s=(1.5, 1.5), idle_probability=0.0, fps=100)
    a, side_a = render_stream(5, 100, 0, cfg)
    b, _ = render_stream(5, 100, 0, cfg)
    assert np.array_equal(a, b) and side_a["sensor"] == [128, 128]
    big, side = render_stream(5, 100, 0, cfg, sensor=SensorSize(346, 260))
    assert side["sensor"] == [346, 260] and (big["x"] < 346).all() and (big["y"] < 260).all()
    assert big["x"].max() > 300 and big.size > 0.7 * a.size


def test_binned_labels_follow_the_spans(tiny_streams):
    """Each bin carries the label of the span at its end and the span's index; idle bins carry IDLE."""
    spec = InputSpec()
    st = load_stream(find_streams(tiny_streams, "train")[0])
    x, label, index = st.binned(spec)
    assert x.shape == (len(label), spec.size)
    for k, sp in enumerate(st.spans):
        t_end = (np.flatnonzero(index == k) + 1) * spec.bin_us
        assert ((t_end > sp["t_start_us"]) & (t_end <= sp["t_end_us"])).all()
        assert (label[index == k] == sp["class"]).all()


def test_scoring_counts_the_last_two_thirds_and_the_latency():
    """A prediction that turns right 0.4 s into each 1.5 s segment scores 100 % over the last two thirds and a
    latency of 0.4 s; one never right scores 0 % and an infinite latency; idle spans are not scored."""
    bin_us = 100_000
    spans = [{"class": 3, "t_start_us": 0, "t_end_us": 1_500_000},
             {"class": IDLE, "t_start_us": 1_500_000, "t_end_us": 2_000_000},
             {"class": 5, "t_start_us": 2_000_000, "t_end_us": 3_500_000}]
    t_end = (np.arange(35) + 1) * bin_us
    index = np.array([next(i for i, s in enumerate(spans) if s["t_start_us"] < t <= s["t_end_us"]) for t in t_end])
    pred = np.full(35, 7)
    pred[3:15] = 3  # right from the step ending at 0.4 s
    hits, scored, lat = score_segments(pred, t_end, index, spans, 11)
    assert hits[3] == scored[3] == 11 and hits[5] == 0 and scored[5] == 11
    assert lat == [pytest.approx(0.4), float("inf")]


def test_window_mean_across_chunks_equals_the_streaming_readout():
    """The training loss's window mean, computed chunk by chunk with the carried logits, equals readout.Pooling's
    sliding window over the whole sequence."""
    from s2node.readout import Pooling

    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(size=(2, 23, 4)))
    n, prev, got = 5, torch.zeros(2, 0, 4), []
    for c0 in range(0, 23, 7):
        chunk = logits[:, c0: c0 + 7]
        got.append(window_mean(prev, chunk, n, c0))
        prev = torch.cat([prev, chunk], 1)[:, -(n - 1):]
    pool = Pooling("window", n)
    want = np.stack([pool(v) for v in logits[0].numpy()])
    assert np.allclose(torch.cat(got, 1)[0].numpy(), want)


def test_training_on_streams_writes_a_model_that_eval_stream_scores(tiny_streams, tmp_path):
    """One epoch of truncated-BPTT training writes a model file with its recipe and the readout window its loss
    trained (readout.window_s); `evaluate_gesture_stream` scores every gesture segment of the held-out stream at
    that window unless told another, and reports the JSON fields; so does `s2 eval --stream`."""
    from s2node import modelfile

    spec = InputSpec()
    cfg = GestureTrainConfig(arch="egru", hidden=(16,), epochs=1, batch_size=2, lr=1e-2, seed=0)
    out = tmp_path / "m"
    scfg = StreamTrainConfig(chunk_s=0.5, window_s=0.5)
    hist = train_streams(tiny_streams, out, cfg, scfg, spec, progress=False)
    assert np.isfinite(hist["history"][0]["loss"]) and hist["train_streams"] == 2
    config, tensors = modelfile.load(out)
    assert config["training"]["continuous"]["chunk_s"] == 0.5 and config["readout"]["window_s"] == 0.5
    r = evaluate_gesture_stream(config, tensors, data=tiny_streams, split="test")
    st = load_stream(find_streams(tiny_streams, "test")[0])
    assert r["segments"] == sum(s["class"] != IDLE for s in st.spans) and r["streams"] == 1
    assert 0.0 <= r["value"] <= 1.0 and set(r["per_class"]) <= set(config["classes"])
    assert r["window_s"] == 0.5 and 0.0 <= r["activity_sparsity"] <= 1.0
    loaded = load_streams(tiny_streams, "test", spec, 0.1)
    assert r["steps"] == sum(len(x) for x, _, _ in loaded)
    (one,) = r["per_stream"]  # one held-out stream: its accuracy is the whole figure
    assert one["stream"] == st.path.stem and one["accuracy"] == round(r["value"], 4)
    assert one["input_events_per_bin"] == round(float(loaded[0][0].sum()) / len(loaded[0][0]), 1)
    assert one["subject_events_per_bin"] == round(st.subject_events_per_bin(spec.bin_us), 1)
    for extra, window in (((), 0.5), (("--window-s", "1"), 1.0)):
        cli = subprocess.run([sys.executable, "-m", "stream.cli", "eval", str(out), "--stream", "--data",
                              str(tiny_streams), "--json", *extra], capture_output=True, text=True, cwd=ROOT,
                             timeout=120)
        assert cli.returncode == 0, cli.stderr
        got = json.loads(cli.stdout)
        assert got["window_s"] == window
        if window == 0.5:
            assert got["value"] == r["value"]


def test_onset_weight_adds_the_first_second_of_each_gesture_to_the_loss(tiny_streams, tmp_path):
    """--onset-weight scores the streaming readout once more over each gesture's first second: the same seed
    and batches, so the loss grows by that term, and the model file keeps the weight in its recipe."""
    from s2node import modelfile

    cfg = GestureTrainConfig(arch="egru", hidden=(16,), epochs=1, batch_size=2, lr=1e-2, seed=0)
    losses = {}
    for w in (0.0, 5.0):
        hist = train_streams(tiny_streams, tmp_path / f"m{w}", cfg, StreamTrainConfig(chunk_s=0.5, window_s=0.5,
                             onset_weight=w), InputSpec(), progress=False)
        losses[w] = hist["history"][0]["loss"]
    assert losses[5.0] > losses[0.0] + 1.0
    assert modelfile.load(tmp_path / "m5.0")[0]["training"]["continuous"]["onset_weight"] == 5.0


def test_zoom_thinning_and_noise_options_are_checked_and_kept_in_the_recipe(tiny_streams, tmp_path, capsys):
    """Out-of-range --zoom-min / --thin-min / --noise-max are a one-line error; in range, training runs on shrunk,
    thinned and noisier streams and the model file keeps all three in its recipe."""
    from s2node import modelfile

    for opt, bad in (("--zoom-min", "0"), ("--thin-min", "1.5"), ("--noise-max", "-1")):
        with pytest.raises(S2NodeError, match=opt):
            StreamTrainConfig(**{opt[2:].replace("-", "_"): float(bad)})
        assert main(["train", "gesture", "--continuous", "--data", str(tiny_streams), "--out", str(tmp_path / "x"),
                     "--arch", "egru", opt, bad, "--quiet"]) == 1
        err = capsys.readouterr().err
        assert opt in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    cfg = GestureTrainConfig(arch="egru", hidden=(16,), epochs=1, batch_size=2, lr=1e-2, seed=0)
    hist = train_streams(tiny_streams, tmp_path / "m", cfg, StreamTrainConfig(chunk_s=0.5, window_s=0.5, zoom_min=0.6,
                         thin_min=0.5, noise_max=40.0), InputSpec(), progress=False)
    assert np.isfinite(hist["history"][0]["loss"])
    kept = modelfile.load(tmp_path / "m")[0]["training"]["continuous"]
    assert kept["zoom_min"] == 0.6 and kept["thin_min"] == 0.5 and kept["noise_max"] == 40.0


def test_missing_streams_name_the_command_that_makes_them(tmp_path):
    """Asking for streams where there are none is a DataNotFoundError that says how to make them."""
    with pytest.raises(DataNotFoundError, match="--continuous"):
        find_streams(tmp_path, "test")


def test_s2_data_gestures_continuous_writes_streams(tmp_path):
    """`s2 data gestures --continuous --split test` writes sNNN.npy + .json under DIR/streams/test."""
    r = subprocess.run([sys.executable, "-m", "stream.cli", "data", "gestures", "--continuous", "--split", "test",
                        "--streams", "1", "--stream-s", "1.5", "--fps", "100", "--out", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "streams/test/s000.npy").is_file() and (tmp_path / "streams/test/s000.json").is_file()


def test_streams_rendered_by_several_processes_are_the_same_bytes(tiny_streams, tmp_path):
    """--jobs 2 renders the streams in two processes: the same files as one process (each stream depends only on
    the seed and its index); --resume then writes nothing, and --jobs 0 is a one-line error."""
    paths = generate_streams(tmp_path, 2, 0, split="train", cfg=SHORT, progress=False, jobs=2)
    for p in paths:
        ref = tiny_streams / "streams/train" / p.name
        assert p.read_bytes() == ref.read_bytes()
        assert p.with_suffix(".json").read_bytes() == ref.with_suffix(".json").read_bytes()
    before = [p.stat().st_mtime_ns for p in paths]
    generate_streams(tmp_path, 2, 0, split="train", cfg=SHORT, progress=False, jobs=2, resume=True)
    assert [p.stat().st_mtime_ns for p in paths] == before
    r = subprocess.run([sys.executable, "-m", "stream.cli", "data", "gestures", "--continuous", "--jobs", "0",
                        "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and "--jobs must be at least 1" in lines[0], r.stderr


def test_continuous_demo_plays_each_class_once(tmp_path):
    """The continuous demo recording plays the given classes once each, in order, as AEDAT4 + span sidecar that
    the stream scoring reads as a stream."""
    from sources.files import read_events
    from sources.gesture_demo import write_stream_demo

    path, side = write_stream_demo(tmp_path / "d.aedat4", [3, 0], seed=1, user=598, segment_s=(1.5, 1.6))
    spans = json.loads(side.read_text())["gestures"]
    assert [s["class"] for s in spans if s["class"] != IDLE] == [3, 0]
    events, sensor = read_events(path)
    assert (sensor.width, sensor.height) == (128, 128) and events.size == json.loads(side.read_text())["events"]
    st = load_stream(find_streams(path, "test")[0])  # `s2 eval --stream --data FILE` scores the demo itself
    assert np.array_equal(st.events, events) and st.spans == spans


def test_a_person_the_background_hides_is_drawn_again():
    """Held-out subject 501 of seed 3 was first drawn with skin and shirt within the sensor's threshold of a flat
    background: its arms made almost no events, so its stream held background activity only. Such draws are
    drawn again; every visible draw (most) stays byte for byte what it was."""
    from sources.gesture_data import clip_rng
    from sources.gesture_render import (
        MIN_VISIBLE_FRACTION,
        _draw_subject,
        draw_subject,
        render_gesture_events,
        visible_fraction,
    )

    hidden = _draw_subject(clip_rng(3, 501, 0, 1000), "led")
    redrawn = draw_subject(clip_rng(3, 501, 0, 1000), "led")
    assert visible_fraction(hidden) < MIN_VISIBLE_FRACTION <= visible_fraction(redrawn)

    def events(s) -> int:  # one second of right hand waves, no sensor noise
        quiet = replace(s, dvs=replace(s.dvs, noise_hz=0.0))
        return render_gesture_events(1, quiet, 1.0, np.random.default_rng(0), fps=100).size

    assert events(hidden) < 0.1 * events(redrawn)
    unchanged = 0
    for user in range(500, 520):
        first, drawn = _draw_subject(clip_rng(1, user, 0, 1000), "lab"), draw_subject(clip_rng(1, user, 0, 1000), "lab")
        assert visible_fraction(drawn) >= MIN_VISIBLE_FRACTION
        if visible_fraction(first) >= MIN_VISIBLE_FRACTION:
            assert first == drawn
            unchanged += 1
    assert unchanged >= 15


def test_subject_events_are_the_stream_less_the_sensor_noise(tiny_streams, tmp_path):
    """subject_events_per_bin takes the sidecar's noise rate off the stream's events: the same stream with 2 Hz
    per pixel more background activity (and a sidecar that says so) gives the same estimate; a stream
    without a noise rate in its sidecar (an event file of a real camera) has none."""
    path = find_streams(tiny_streams, "test")[0]
    st = load_stream(path)
    base = st.subject_events_per_bin(20_000)
    rows = np.load(path)
    side = json.loads(path.with_suffix(".json").read_text())
    end_us = max(sp["t_end_us"] for sp in side["gestures"])
    w, h = side["sensor"]
    rng = np.random.default_rng(0)
    n = rng.poisson(2.0 * w * h * end_us / 1e6)
    noise = np.stack([rng.integers(0, w, n), rng.integers(0, h, n), rng.integers(0, 2, n),
                      np.sort(rng.integers(0, end_us, n))], 1).astype(rows.dtype)
    both = np.concatenate([rows, noise])
    np.save(tmp_path / "s.npy", both[np.argsort(both[:, 3], kind="stable")])
    (tmp_path / "s.json").write_text(json.dumps(side | {"noise_hz": side["noise_hz"] + 2.0}))
    noisy = load_stream(tmp_path / "s.npy")
    assert len(noisy.events) > 2 * len(st.events)  # the noise outnumbers the person
    assert base is not None and base > 0 and abs(noisy.subject_events_per_bin(20_000) - base) < 0.05 * base
    (tmp_path / "s.json").write_text(json.dumps({k: v for k, v in side.items() if k != "noise_hz"}))
    assert load_stream(tmp_path / "s.npy").subject_events_per_bin(20_000) is None
