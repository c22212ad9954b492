"""Binning DVS events into the model's input vectors, by EVENT time, exactly as the model JSON's "input" says.

`input`: {"sensor": [W, H], "downsample": d, "bin_us": B, "layout": "p,y,x", "scale": s}. An event (t, x, y, p)
lands in bin k = (t - t0) // B and feature p·(Hd·Wd) + (y // d)·Wd + x // d with Wd = ceil(W / d),
Hd = ceil(H / d); the vector is counts · s. Bins without events are zero vectors (time still passes).

This is the stream-side implementation; when sources.binning (gestures branch) is present, `make_binner`
uses its `Binner` instead if it offers the same `feed(events, upto_us)` / `flush()` methods.
"""

from __future__ import annotations

import math
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
        """(Wd, Hd): the downsampled sensor."""
        d = self.downsample
        return math.ceil(self.sensor.width / d), math.ceil(self.sensor.height / d)

    @property
    def size(self) -> int:
        wd, hd = self.grid
        return 2 * wd * hd


class Bin(NamedTuple):
    index: int  # bin number since t0
    t_end_us: int  # event time at which the bin closes (exclusive)
    vector: np.ndarray  # float32 [spec.size]


def feature_index(events: np.ndarray, spec: BinSpec) -> np.ndarray:
    wd, hd = spec.grid
    d = spec.downsample
    x = events["x"].astype(np.int64) // d
    y = events["y"].astype(np.int64) // d
    p = (events["p"] > 0).astype(np.int64)
    return p * (wd * hd) + y * wd + x


def bin_events(events: np.ndarray, spec: BinSpec, t0_us: int | None = None, n_bins: int | None = None) -> np.ndarray:
    """All events at once -> [n_bins, size] float32 (the offline path; the streaming Binner agrees with it)."""
    events = events[(events["x"] < spec.sensor.width) & (events["y"] < spec.sensor.height)]
    if t0_us is None:
        t0_us = int(events["t"][0]) if len(events) else 0
    k = (events["t"] - t0_us) // spec.bin_us
    keep = k >= 0
    k, events = k[keep], events[keep]
    if n_bins is None:
        n_bins = int(k.max()) + 1 if len(k) else 0
    keep = k < n_bins
    flat = k[keep] * spec.size + feature_index(events[keep], spec)
    counts = np.bincount(flat, minlength=n_bins * spec.size)
    return (counts.reshape(n_bins, spec.size) * spec.scale).astype(np.float32)


class StreamBinner:
    """Fed event batches in time order; returns the bins that closed. Out-of-sensor events are counted."""

    def __init__(self, spec: BinSpec) -> None:
        self.spec = spec
        self.t0_us: int | None = None
        self.dropped = 0  # events outside the sensor
        self.late = 0  # events older than the open bin (added to it rather than reopening a closed bin)
        self.events_in = 0
        self._k = 0  # the open bin
        self._acc = np.zeros(spec.size, dtype=np.int64)

    def _close(self, upto_k: int, out: list[Bin]) -> None:
        """Close bins _k .. upto_k-1 (later ones empty)."""
        s = self.spec
        while self._k < upto_k:
            out.append(Bin(self._k, self.t0_us + (self._k + 1) * s.bin_us, (self._acc * s.scale).astype(np.float32)))
            self._acc[:] = 0
            self._k += 1

    def feed(self, events: np.ndarray, upto_us: int | None = None) -> list[Bin]:
        """Add events; bins whose end is <= upto_us (default: the last event's time) are closed and returned."""
        s, out = self.spec, []
        if len(events):
            ok = (events["x"] < s.sensor.width) & (events["y"] < s.sensor.height)
            n_bad = len(events) - int(ok.sum())
            if n_bad:
                self.dropped += n_bad
                events = events[ok]
        self.events_in += len(events)
        if len(events):
            if self.t0_us is None:
                self.t0_us = int(events["t"][0])
            k = (events["t"] - self.t0_us) // s.bin_us
            late = k < self._k
            if late.any():
                self.late += int(late.sum())
                k = np.maximum(k, self._k)
            idx = feature_index(events, s)
            k_last = int(k.max())
            if k_last == self._k:
                self._acc += np.bincount(idx, minlength=s.size)
            else:
                n = k_last - self._k + 1
                counts = np.bincount((k - self._k) * s.size + idx, minlength=n * s.size).reshape(n, s.size)
                for i in range(n - 1):
                    self._acc += counts[i]
                    self._close(self._k + 1, out)
                self._acc += counts[n - 1]
        if upto_us is not None and self.t0_us is not None:
            self._close((upto_us - self.t0_us) // s.bin_us, out)
        return out

    def flush(self) -> list[Bin]:
        """Close the open bin (end of a recording)."""
        out: list[Bin] = []
        if self.t0_us is not None and self._acc.any():
            self._close(self._k + 1, out)
        return out

    def reset(self) -> None:
        self.t0_us, self._k = None, 0
        self._acc[:] = 0


def make_binner(config: dict[str, Any]) -> StreamBinner:
    return StreamBinner(BinSpec.from_config(config))
