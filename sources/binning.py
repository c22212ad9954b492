"""The one event preprocessing shared by training, the node and the pipeline: events -> per-bin input vectors.

A model file's "input" dict (DESIGN.md) declares it: {"sensor": [W, H], "downsample": d, "bin_us": b,
"layout": "p,y,x", "scale": s}. Bin k covers event times [t0 + k·b, t0 + (k+1)·b) µs; its vector has
2·(H//d)·(W//d) entries, the event count of (polarity, y//d, x//d) times `scale`, flattened in p, y, x order
(polarity 0 = OFF first). Events outside the sensor (or in a partial downsampled cell at the right or bottom
edge) are dropped and counted. `Binner` does the same on a stream, by event time only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from sources.errors import SourceError

LAYOUT = "p,y,x"


@dataclass(frozen=True)
class InputSpec:
    """How events become the model's input vector; stored as the model JSON's "input"."""

    width: int = 128
    height: int = 128
    downsample: int = 4
    bin_us: int = 20_000
    scale: float = 0.25
    layout: str = LAYOUT

    def __post_init__(self) -> None:
        if self.layout != LAYOUT:
            raise SourceError(f"input layout {self.layout!r} is not supported (only {LAYOUT!r})")
        if min(self.width, self.height, self.downsample, self.bin_us) <= 0:
            raise SourceError("input spec: sensor size, downsample and bin_us must be positive")
        if self.downsample > min(self.width, self.height):
            raise SourceError(f"input spec: downsample {self.downsample} exceeds the sensor size")

    @property
    def grid(self) -> tuple[int, int]:
        """(width, height) after downsampling."""
        return self.width // self.downsample, self.height // self.downsample

    @property
    def size(self) -> int:
        w, h = self.grid
        return 2 * w * h

    def to_config(self) -> dict[str, Any]:
        return {"sensor": [self.width, self.height], "downsample": self.downsample, "bin_us": self.bin_us,
                "layout": self.layout, "scale": self.scale}

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> InputSpec:
        try:
            w, h = (int(v) for v in cfg["sensor"])
            return cls(w, h, int(cfg["downsample"]), int(cfg["bin_us"]), float(cfg["scale"]),
                       str(cfg.get("layout", LAYOUT)))
        except (KeyError, TypeError, ValueError) as e:
            raise SourceError(f"model input spec is malformed ({e!r}): needs sensor, downsample, bin_us, scale") from e


def as_spec(spec: InputSpec | dict[str, Any]) -> InputSpec:
    """An InputSpec, or the model JSON's "input" dict turned into one."""
    return spec if isinstance(spec, InputSpec) else InputSpec.from_config(spec)


def _features(events: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """(feature index per kept event, mask of kept events)."""
    gw, gh = spec.grid
    xd = events["x"].astype(np.int64) // spec.downsample
    yd = events["y"].astype(np.int64) // spec.downsample
    ok = (events["x"] < spec.width) & (events["y"] < spec.height) & (xd < gw) & (yd < gh)
    p = (events["p"] > 0).astype(np.int64)
    return (p * gh + yd) * gw + xd, ok


def bin_events(
    events: np.ndarray, spec: InputSpec | dict[str, Any], t0_us: int | None = None, n_bins: int | None = None,
) -> np.ndarray:
    """Events -> [T, spec.size] float32. t0 defaults to the first event's time, T to the bin of the last kept event."""
    spec = as_spec(spec)
    if t0_us is None:
        t0_us = int(events["t"][0]) if events.size else 0
    b = (events["t"].astype(np.int64) - int(t0_us)) // spec.bin_us
    feat, ok = _features(events, spec)
    ok &= b >= 0
    if n_bins is None:  # up to the bin of the last kept event, as Binner.flush() ends
        n_bins = int(b[ok].max()) + 1 if ok.any() else 0
    ok &= b < n_bins
    counts = np.bincount(b[ok] * spec.size + feat[ok], minlength=n_bins * spec.size)
    return (counts.reshape(n_bins, spec.size) * spec.scale).astype(np.float32)


class Binner:
    """Streaming bin_events: feed event batches in any chunking, get each bin once it is complete.

    A bin is complete when an event at or after its end arrives (event time, never wall time), or on
    `advance_to(t_us)` / `flush()`. Feeding a recording in any chunks, then flush(), yields exactly
    bin_events(concatenation). Events before the open bin (late) and outside the sensor are dropped and counted.
    """

    def __init__(self, spec: InputSpec | dict[str, Any], t0_us: int | None = None) -> None:
        spec = as_spec(spec)
        self.spec, self.t0_us = spec, t0_us
        self.dropped_out_of_range = 0
        self.dropped_late = 0
        self.events_in = 0
        self._bin = 0  # index of the open bin
        self._acc = np.zeros(spec.size, np.int64)
        self._started = False  # whether the open bin has seen anything (flush emits it only then)

    def _emit(self, rows: np.ndarray, first: int) -> Iterator[tuple[int, int, np.ndarray]]:
        for i, row in enumerate(rows):
            k = first + i
            yield k, int(self.t0_us) + (k + 1) * self.spec.bin_us, (row * self.spec.scale).astype(np.float32)

    def feed(self, events: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
        """Add a batch; return the (bin_index, t_end_us, vector) of every bin it completes, in order."""
        if events.size == 0:
            return []
        self.events_in += int(events.size)
        if self.t0_us is None:
            self.t0_us = int(events["t"].min())
        feat, ok = _features(events, self.spec)
        self.dropped_out_of_range += int(np.count_nonzero(~ok))
        b = (events["t"].astype(np.int64) - self.t0_us) // self.spec.bin_us
        late = ok & (b < self._bin)
        self.dropped_late += int(np.count_nonzero(late))
        ok &= ~late
        if not ok.any():
            return []
        b, feat = b[ok] - self._bin, feat[ok]
        n = int(b.max()) + 1
        rows = np.bincount(b * self.spec.size + feat, minlength=n * self.spec.size).reshape(n, self.spec.size)
        rows[0] += self._acc
        out = list(self._emit(rows[:-1], self._bin))
        self._acc, self._bin, self._started = rows[-1].copy(), self._bin + n - 1, True
        return out

    def open_bin(self) -> tuple[int, np.ndarray]:
        """(index, per-feature counts so far) of the open bin (a view: copy it to keep it)."""
        return self._bin, self._acc

    def advance_to(self, t_us: int) -> list[tuple[int, int, np.ndarray]]:
        """Event time has reached t_us (e.g. a source's clock): emit every bin that ends at or before it."""
        if self.t0_us is None:
            return []
        last = (int(t_us) - self.t0_us) // self.spec.bin_us  # bins < last are complete
        if last <= self._bin:
            return []
        rows = np.zeros((last - self._bin, self.spec.size), np.int64)
        rows[0] = self._acc
        out = list(self._emit(rows, self._bin))
        self._acc, self._bin, self._started = np.zeros(self.spec.size, np.int64), last, False
        return out

    def flush(self) -> list[tuple[int, int, np.ndarray]]:
        """End of stream: emit the open bin if it holds anything (as bin_events does for the last event)."""
        if not self._started:
            return []
        out = list(self._emit(self._acc[None], self._bin))
        self._acc, self._bin, self._started = np.zeros(self.spec.size, np.int64), self._bin + 1, False
        return out


def bin_stream(batches: Iterable[np.ndarray], spec: InputSpec, t0_us: int | None = None) -> np.ndarray:
    """Convenience: run a Binner over batches and stack its vectors [T, size]."""
    binner = Binner(spec, t0_us)
    vecs = [v for batch in batches for _, _, v in binner.feed(batch)] + [v for _, _, v in binner.flush()]
    return np.stack(vecs) if vecs else np.zeros((0, spec.size), np.float32)
