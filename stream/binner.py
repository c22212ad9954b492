"""Binning DVS events into the model's input vectors, by EVENT time, exactly as the model JSON's "input" says.

The one definition is sources.binning (training, `s2 node run` and this pipeline share it): bin k covers
[t0 + k·b, t0 + (k+1)·b) µs, feature (p·Hd + y//d)·Wd + x//d with Wd = W//d, Hd = H//d, value count·scale;
events outside the sensor (or in a partial edge cell) and events older than the open bin are dropped and
counted. `StreamBinner` wraps sources.binning.Binner for the pipeline (watermarks close bins on time, counters
for the stats); when sources.binning is absent it runs an identical local implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from sources.events import SensorSize
from stream.errors import PipelineError


@dataclass(frozen=True)
class BinSpec:
    sensor: SensorSize
    downsample: int
    bin_us: int
    scale: float

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BinSpec:
        inp = config.get("input")
        if not isinstance(inp, dict):
            raise PipelineError("model has no 'input' section: not a gesture model")
        if inp.get("layout", "p,y,x") != "p,y,x":
            raise PipelineError(f"input layout {inp.get('layout')!r} not supported (only 'p,y,x')")
        w, h = (int(v) for v in inp["sensor"])
        spec = cls(SensorSize(w, h), int(inp["downsample"]), int(inp["bin_us"]), float(inp["scale"]))
        want = config["layers"][0]["input_size"]
        if spec.size != want:
            raise PipelineError(f"input spec gives {spec.size} features but the model takes {want}")
        return spec

    @property
    def grid(self) -> tuple[int, int]:
        """(Wd, Hd): the downsampled sensor (partial edge cells dropped, as sources.binning does)."""
        return self.sensor.width // self.downsample, self.sensor.height // self.downsample

    @property
    def size(self) -> int:
        wd, hd = self.grid
        return 2 * wd * hd


class Bin(NamedTuple):
    index: int  # bin number since t0
    t_end_us: int  # event time at which the bin closes (exclusive)
    vector: np.ndarray  # float32 [spec.size]


def _features(events: np.ndarray, spec: BinSpec) -> tuple[np.ndarray, np.ndarray]:
    wd, hd = spec.grid
    d = spec.downsample
    x = events["x"].astype(np.int64) // d
    y = events["y"].astype(np.int64) // d
    ok = (events["x"] < spec.sensor.width) & (events["y"] < spec.sensor.height) & (x < wd) & (y < hd)
    p = (events["p"] > 0).astype(np.int64)
    return (p * hd + y) * wd + x, ok


def bin_events(events: np.ndarray, spec: BinSpec, t0_us: int | None = None, n_bins: int | None = None) -> np.ndarray:
    """All events at once -> [n_bins, size] float32 (the offline path; sources.binning.bin_events when present)."""
    try:
        from sources.binning import InputSpec
        from sources.binning import bin_events as canonical
    except ImportError:
        pass
    else:
        s = InputSpec(spec.sensor.width, spec.sensor.height, spec.downsample, spec.bin_us, spec.scale)
        return canonical(events, s, t0_us, n_bins)
    if t0_us is None:
        t0_us = int(events["t"][0]) if len(events) else 0
    k = (events["t"].astype(np.int64) - t0_us) // spec.bin_us
    feat, ok = _features(events, spec)
    ok &= k >= 0
    if n_bins is None:
        n_bins = int(k[ok].max()) + 1 if ok.any() else 0
    ok &= k < n_bins
    counts = np.bincount(k[ok] * spec.size + feat[ok], minlength=n_bins * spec.size)
    return (counts.reshape(n_bins, spec.size) * spec.scale).astype(np.float32)


class _LocalBinner:
    """The same contract as sources.binning.Binner (feed / advance_to / flush, dropped counters)."""

    def __init__(self, spec: BinSpec) -> None:
        self.spec, self.t0_us = spec, None
        self.dropped_out_of_range = self.dropped_late = self.events_in = 0
        self._bin, self._started = 0, False
        self._acc = np.zeros(spec.size, np.int64)

    def _emit(self, rows: np.ndarray, first: int) -> list[tuple[int, int, np.ndarray]]:
        s = self.spec
        return [(first + i, self.t0_us + (first + i + 1) * s.bin_us, (r * s.scale).astype(np.float32))
                for i, r in enumerate(rows)]

    def feed(self, events: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
        if not len(events):
            return []
        self.events_in += len(events)
        if self.t0_us is None:
            self.t0_us = int(events["t"].min())
        feat, ok = _features(events, self.spec)
        self.dropped_out_of_range += int(np.count_nonzero(~ok))
        k = (events["t"].astype(np.int64) - self.t0_us) // self.spec.bin_us
        late = ok & (k < self._bin)
        self.dropped_late += int(np.count_nonzero(late))
        ok &= ~late
        if not ok.any():
            return []
        k, feat = k[ok] - self._bin, feat[ok]
        n = int(k.max()) + 1
        rows = np.bincount(k * self.spec.size + feat, minlength=n * self.spec.size).reshape(n, self.spec.size)
        rows[0] += self._acc
        out = self._emit(rows[:-1], self._bin)
        self._acc, self._bin, self._started = rows[-1].copy(), self._bin + n - 1, True
        return out

    def advance_to(self, t_us: int) -> list[tuple[int, int, np.ndarray]]:
        if self.t0_us is None:
            return []
        last = (int(t_us) - self.t0_us) // self.spec.bin_us
        if last <= self._bin:
            return []
        rows = np.zeros((last - self._bin, self.spec.size), np.int64)
        rows[0] = self._acc
        out = self._emit(rows, self._bin)
        self._acc, self._bin, self._started = np.zeros(self.spec.size, np.int64), last, False
        return out

    def flush(self) -> list[tuple[int, int, np.ndarray]]:
        if not self._started:
            return []
        out = self._emit(self._acc[None], self._bin)
        self._acc, self._bin, self._started = np.zeros(self.spec.size, np.int64), self._bin + 1, False
        return out


class StreamBinner:
    """Fed event batches in time order (with an optional watermark); returns the bins that closed."""

    def __init__(self, spec: BinSpec) -> None:
        self.spec = spec
        try:
            from sources.binning import Binner, InputSpec
        except ImportError:
            self._b: Any = _LocalBinner(spec)
        else:
            s = spec.sensor
            self._b = Binner(InputSpec(s.width, s.height, spec.downsample, spec.bin_us, spec.scale))

    @property
    def dropped(self) -> int:
        """Events dropped: outside the sensor (or partial edge cells) and late ones."""
        return self._b.dropped_out_of_range + self._b.dropped_late

    @property
    def events_in(self) -> int:
        """Events accepted into bins."""
        return self._b.events_in - self.dropped

    def feed(self, events: np.ndarray, upto_us: int | None = None) -> list[Bin]:
        """Add events; bins ending at or before upto_us (no later event can fall into them) close too."""
        out = [Bin(*b) for b in self._b.feed(events)]
        if upto_us is not None:
            out += [Bin(*b) for b in self._b.advance_to(upto_us)]
        return out

    def flush(self) -> list[Bin]:
        """End of a recording: close the open bin if it holds anything."""
        return [Bin(*b) for b in self._b.flush()]


def make_binner(config: dict[str, Any]) -> StreamBinner:
    return StreamBinner(BinSpec.from_config(config))
