"""Continuous gesture streams: one subject performs gestures back to back, as in front of a live camera.

Each stream is one render and one event-camera memory from start to end (no reset between gestures):
segments of random class and duration (1.5-6 s) begin at a random phase of their motion, the hands pass
through rest between two gestures (0.3 s out, 0.3 s in), and idle spells (hands at rest, label -1) come
in between now and then. Sensor realism is drawn per stream from the event-camera model's own parameters:
background activity 0.1-5 Hz per pixel (log-uniform), hot pixels, refractory period, and speeds beyond
the isolated clips' range. Labels are per event time: a list of spans in a JSON sidecar.

Layout: DIR/streams/<split>/s<NNN>.npy (N x 4: x, y, p, t in µs) + s<NNN>.json (sensor, spans, subject).
Test streams use held-out subjects (numbers above the training ones), as the isolated clips' test split.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from sources.binning import InputSpec, bin_events
from sources.dvs_sim import DVSConfig, DVSSimulator
from sources.errors import DataNotFoundError, SourceError
from sources.events import EVENT_DTYPE, SensorSize
from sources.gesture_data import clip_rng
from sources.gesture_motions import GESTURE_CLASSES, LEFT, RIGHT, hand_targets, rest_target
from sources.gesture_render import LIGHTINGS, SIZE, Subject, draw_subject, render_frames_from_targets
from sources.parallel import run_jobs
from sources.sensor_map import SensorMap

IDLE = -1  # label of an idle spell: no gesture (not scored)
STREAM_SPLITS = ("train", "test")
TEST_USER_BASE = 500  # held-out subjects: numbers no training stream draws


@dataclass(frozen=True)
class StreamConfig:
    """How continuous streams are drawn; ranges are (low, high), drawn per stream or per segment."""

    duration_s: float = 60.0
    segment_s: tuple[float, float] = (1.5, 6.0)
    idle_probability: float = 0.2  # chance of an idle spell before a segment
    idle_s: tuple[float, float] = (0.3, 1.5)
    noise_hz: tuple[float, float] = (0.1, 5.0)  # background activity per pixel, log-uniform
    hot_pixel_fraction: tuple[float, float] = (0.0, 0.002)
    refractory_us: tuple[int, int] = (50, 1000)
    speed: tuple[float, float] = (0.6, 1.6)  # isolated clips draw 0.75-1.3
    fps: float = 250.0

    def __post_init__(self) -> None:
        lo, hi = self.segment_s
        if self.duration_s <= 0 or not 0 < lo <= hi:
            raise SourceError("stream duration and segment durations must be positive (low <= high)")


def _segments(cfg: StreamConfig, rng: np.random.Generator, classes: list[int] | None) -> list[tuple[int, float]]:
    """[(label or IDLE, seconds)] filling cfg.duration_s; classes cycle in shuffled rounds (all 11 each round)."""
    out: list[tuple[int, float]] = []
    order: list[int] = []
    total = 0.0
    while total < cfg.duration_s:
        if out and rng.random() < cfg.idle_probability:
            d = float(rng.uniform(*cfg.idle_s))
            out.append((IDLE, d))
            total += d
        if not order:
            order = list(classes) if classes is not None else [int(c) for c in rng.permutation(len(GESTURE_CLASSES))]
        d = float(rng.uniform(*cfg.segment_s))
        out.append((order.pop(0), d))
        total += d
        if classes is not None and not order:
            break  # an explicit class list plays once
    return out


def _targets(segments: list[tuple[int, float]], s: Subject, times_s: np.ndarray, rng: np.random.Generator,
             ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Hand targets of the whole stream and the label spans (µs)."""
    n = times_s.size
    right, left = rest_target(s.body, RIGHT, n), rest_target(s.body, LEFT, n)
    spans, t0 = [], 0.0
    for label, d in segments:
        sel = (times_s >= t0) & (times_s < t0 + d)
        if label != IDLE and sel.any():
            # a random start: the motion begins at a random phase of its cycle
            body = replace(s.body, phase=float(rng.uniform(0, 2 * np.pi)))
            r, lh = hand_targets(label, times_s[sel] - t0, body, rng, rest_at_s=d)
            right[sel], left[sel] = r, lh
        spans.append({"class": label, "name": GESTURE_CLASSES[label] if label != IDLE else "idle",
                      "t_start_us": round(t0 * 1e6), "t_end_us": round((t0 + d) * 1e6)})
        t0 += d
    return right, left, spans


def _place(events: np.ndarray, sensor: SensorSize, rng: np.random.Generator) -> np.ndarray:
    """Events of the 128 x 128 render on a larger sensor: the scene scaled to fill its longer side, centred
    (what the default sensor mapping undoes), each event at a random pixel of its scaled cell; outside cut."""
    if (sensor.width, sensor.height) == (SIZE, SIZE):
        return events
    f = max(sensor.width, sensor.height) / SIZE
    x = np.floor((events["x"] + rng.random(events.size)) * f + (sensor.width - SIZE * f) / 2).astype(np.int64)
    y = np.floor((events["y"] + rng.random(events.size)) * f + (sensor.height - SIZE * f) / 2).astype(np.int64)
    ok = (x >= 0) & (x < sensor.width) & (y >= 0) & (y < sensor.height)
    out = events[ok].copy()
    out["x"], out["y"] = x[ok], y[ok]
    return out


def render_stream(seed: int, user: int, index: int, cfg: StreamConfig = StreamConfig(),
                  classes: list[int] | None = None, sensor: SensorSize | None = None,
                  ) -> tuple[np.ndarray, dict]:
    """(events sorted by t in µs from 0, sidecar dict with sensor, spans and the draws) of one stream."""
    rng = clip_rng(seed, user, 2000 + index, 0)
    lighting = LIGHTINGS[int(rng.integers(len(LIGHTINGS)))]
    s = draw_subject(clip_rng(seed, user, 0, 1000), lighting)
    noise = float(np.exp(rng.uniform(np.log(cfg.noise_hz[0]), np.log(cfg.noise_hz[1]))))
    dvs = replace(s.dvs, noise_hz=noise, hot_pixel_fraction=float(rng.uniform(*cfg.hot_pixel_fraction)),
                  refractory_us=int(rng.integers(cfg.refractory_us[0], cfg.refractory_us[1] + 1)))
    s = replace(s, dvs=dvs, body=replace(s.body, speed=float(rng.uniform(*cfg.speed))))
    segments = _segments(cfg, rng, classes)
    duration = sum(d for _, d in segments)
    times_s = np.arange(round(duration * cfg.fps) + 1) / cfg.fps
    right, left, spans = _targets(segments, s, times_s, rng)
    sim = DVSSimulator(SIZE, SIZE, s.dvs, rng)
    frames = render_frames_from_targets(s, times_s, right, left, rng)
    events = np.concatenate([sim.step(f, round(t * 1e6)) for f, t in zip(frames, times_s, strict=True)])
    sensor = sensor or SensorSize(SIZE, SIZE)
    events = _place(events, sensor, rng)
    side = {"sensor": [sensor.width, sensor.height], "time_unit": "us", "events": int(events.size), "seed": seed,
            "user": user, "index": index, "lighting": lighting, "speed": s.body.speed, "noise_hz": noise,
            "hot_pixel_fraction": dvs.hot_pixel_fraction, "refractory_us": dvs.refractory_us, "gestures": spans}
    return events, side


def _rows(events: np.ndarray) -> np.ndarray:
    rows = np.empty((events.size, 4), np.int64)
    rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3] = events["x"], events["y"], events["p"] > 0, events["t"]
    return rows


def generate_streams(out: str | Path, streams: int, seed: int, *, split: str = "train",
                     cfg: StreamConfig = StreamConfig(), sensor: SensorSize | None = None,
                     resume: bool = False, progress: bool = True, jobs: int = 1) -> list[Path]:
    """Write `streams` streams of one split under out/streams/<split>/; the test split uses held-out subjects.
    `jobs` processes render them side by side: each stream depends only on (seed, its index), so the files are
    the same bytes whatever the number of jobs."""
    if split not in STREAM_SPLITS:
        raise SourceError(f"split must be one of {STREAM_SPLITS}, not {split!r}")
    if streams < 1:
        raise SourceError(f"--streams must be at least 1, not {streams}")
    if jobs < 1:
        raise SourceError(f"--jobs must be at least 1, not {jobs}")
    from tqdm import tqdm

    folder = Path(out) / "streams" / split
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / f"s{i:03d}.npy" for i in range(streams)]
    todo = [i for i, path in enumerate(written)
            if not (resume and path.is_file() and path.with_suffix(".json").is_file())]

    def remove_partial() -> None:  # a worker stopped while writing leaves no partial file
        for tmp in folder.glob("s*.tmp.npy"):
            tmp.unlink(missing_ok=True)

    with tqdm(total=streams, initial=streams - len(todo), desc=f"{split} streams", unit="stream",
              disable=not progress) as bar:
        for _ in run_jobs(_write_stream, [(folder, seed, split, i, cfg, sensor) for i in todo], jobs,
                          cleanup=remove_partial):
            bar.update()
    return written


def _write_stream(folder: Path, seed: int, split: str, i: int, cfg: StreamConfig, sensor: SensorSize | None) -> None:
    """Render stream i of a split and write it (events .npy, sidecar .json), atomically."""
    path = folder / f"s{i:03d}.npy"
    user = (TEST_USER_BASE if split == "test" else 100) + i  # one subject per stream
    events, side = render_stream(seed, user, i, cfg, sensor=sensor)
    tmp = path.with_suffix(".tmp.npy")
    try:
        np.save(tmp, _rows(events))
        tmp.replace(path)
    except BaseException:  # Ctrl-C or SIGTERM halfway through: no partial file left behind
        tmp.unlink(missing_ok=True)
        raise
    path.with_suffix(".json").write_text(json.dumps(side, indent=1) + "\n")


@dataclass(frozen=True)
class GestureStream:
    """One stream on disk: events (EVENT_DTYPE), its sensor and label spans."""

    path: Path
    events: np.ndarray
    sensor: SensorSize
    spans: list[dict]
    background_hz: float | None = None  # the sensor's own events per second (noise, hot pixels), if known

    def subject_events_per_bin(self, bin_us: int) -> float | None:
        """Events per bin that the person made, estimated as all the stream's events less the sensor's own at its
        mean rate (refractory periods aside); None where the sidecar does not say how noisy the sensor was.
        Where this is tens of events per 20 ms bin, the person is hard to see under the noise."""
        if self.background_hz is None:
            return None
        end_us = max(sp["t_end_us"] for sp in self.spans)
        return max(0.0, (len(self.events) - self.background_hz * end_us / 1e6) * bin_us / max(1, end_us))

    def labels_at(self, t_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(label, span index) at each time; IDLE and -1 outside every span."""
        label = np.full(np.shape(t_us), IDLE, np.int64)
        index = np.full(np.shape(t_us), -1, np.int64)
        for i, sp in enumerate(self.spans):
            inside = (t_us >= sp["t_start_us"]) & (t_us < sp["t_end_us"])
            label[inside], index[inside] = sp["class"], i
        return label, index

    def binned(self, spec: InputSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(inputs [T, spec.size] float32, label [T], span index [T]) with the default sensor mapping; bin k
        covers [k·b, (k+1)·b) from the stream's start and is labelled by the span at its end, when its
        prediction comes out."""
        events = self.events
        target = SensorSize(spec.width, spec.height)
        mapping = SensorMap().for_sensors(self.sensor, target)
        if not mapping.identity:
            events = mapping(events)
        end_us = max(sp["t_end_us"] for sp in self.spans)
        n = -(-end_us // spec.bin_us)
        x = bin_events(events, spec, t0_us=0, n_bins=n)
        label, index = self.labels_at((np.arange(n) + 1) * spec.bin_us - 1)
        return x, label, index


def load_stream(path: str | Path) -> GestureStream:
    """A stream's .npy (N x 4: x, y, p, t_us), or any event file (such as the demo recording), and its .json
    sidecar of spans."""
    path = Path(path)
    try:
        side = json.loads(path.with_suffix(".json").read_text())
        spans = side["gestures"]
        if path.suffix != ".npy":
            from sources.files import read_events

            ev, sensor = read_events(path)
            return GestureStream(path, ev, sensor, spans)
        rows = np.load(path, allow_pickle=False)
    except (OSError, ValueError, KeyError) as e:
        raise SourceError(f"{path}: not a readable stream (events + .json sidecar of spans): {e!r}") from e
    ev = np.empty(rows.shape[0], EVENT_DTYPE)
    ev["x"], ev["y"], ev["p"], ev["t"] = rows[:, 0], rows[:, 1], rows[:, 2] > 0, rows[:, 3]
    sensor = SensorSize(*side["sensor"])
    background = None
    if isinstance(side.get("noise_hz"), int | float):  # the generator's sidecar: the sensor's own event rate
        per_pixel = side["noise_hz"] + float(side.get("hot_pixel_fraction") or 0.0) * DVSConfig().hot_pixel_hz
        background = per_pixel * sensor.width * sensor.height
    return GestureStream(path, ev, sensor, spans, background)


def find_streams(data: str | Path, split: str) -> list[Path]:
    """The stream files of a split under DIR, DIR/streams or DIR/streams/<split>; or one event file with a
    sidecar of spans (the demo recording)."""
    p = Path(data).expanduser()
    if p.is_file():
        return [p]
    for cand in (p / "streams" / split, p / split, p):
        files = sorted(cand.glob("s[0-9][0-9][0-9].npy")) if cand.is_dir() else []
        if files:
            return files
    raise DataNotFoundError(f"no continuous {split} streams under {p} (make them with "
                            f"`s2 data gestures --continuous --split {split} --out {p}`)")


def iter_streams(data: str | Path, split: str = "test") -> Iterator[GestureStream]:
    for f in find_streams(data, split):
        yield load_stream(f)
