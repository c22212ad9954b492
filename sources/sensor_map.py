"""Events of any sensor size onto the model's input sensor: scale (default), centre crop, or a region of interest.

A pure function `map_events_numpy(events, source, target, roi)` and a frozen `SensorMapping` that applies it
(tonic's shape: never modifies its input). Every mode is a region of the source sensor fitted into the target
with one scale factor (aspect ratio kept, centred):

    scale  the whole source sensor; a 346 x 260 DAVIS maps onto 128 x 96 rows of a 128 x 128 model, no event lost
    crop   the centred target-sized window of the source, one pixel per pixel (what falls outside is dropped)
    roi    x,y,w,h of the source, fitted into the target

Events outside the source sensor or the region leave with x = y = 65535, so that binning drops and counts them
as it always did.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sources.errors import SourceError
from sources.events import SensorSize

MODES = ("scale", "crop", "roi")
OUTSIDE = np.iinfo(np.uint16).max  # beyond any sensor: binning drops and counts it


@dataclass(frozen=True)
class SensorMap:
    """What the user asked for (`--sensor-map scale|crop|roi=x,y,w,h`), before the sensor sizes are known."""

    mode: str = "scale"
    roi: tuple[int, int, int, int] | None = None  # x, y, w, h on the source sensor (mode "roi")

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SourceError(f"sensor map {self.mode!r}: use scale, crop or roi=x,y,w,h")
        if (self.mode == "roi") != (self.roi is not None):
            raise SourceError("sensor map: a region goes with mode roi only (roi=x,y,w,h)")
        if self.roi is not None and (min(self.roi[:2]) < 0 or min(self.roi[2:]) <= 0):
            raise SourceError(f"sensor map roi {self.roi}: x, y must be >= 0 and w, h positive")

    @classmethod
    def parse(cls, text: str) -> SensorMap:
        """"scale", "crop" or "roi=x,y,w,h"."""
        text = text.strip()
        if text.startswith("roi="):
            try:
                x, y, w, h = (int(v) for v in text[4:].split(","))
            except ValueError as e:
                raise SourceError(f"sensor map {text!r}: expected roi=x,y,w,h (four integers)") from e
            return cls("roi", (x, y, w, h))
        return cls(text)

    def __str__(self) -> str:
        return f"roi={','.join(map(str, self.roi))}" if self.roi else self.mode

    def region(self, source: SensorSize, target: SensorSize) -> tuple[int, int, int, int]:
        """The source region (x, y, w, h) that this map fits into the target."""
        if self.mode == "scale":
            return 0, 0, source.width, source.height
        if self.mode == "crop":
            return (source.width - target.width) // 2, (source.height - target.height) // 2, target.width, target.height
        assert self.roi is not None  # __post_init__: roi mode always has one
        x, y, w, h = self.roi
        if x + w > source.width or y + h > source.height:
            raise SourceError(f"sensor map roi={x},{y},{w},{h} does not lie inside the {source.width}x{source.height} "
                              "sensor")
        return self.roi

    def for_sensors(self, source: SensorSize, target: SensorSize) -> SensorMapping:
        return SensorMapping(source, target, self.region(source, target), str(self))


def map_events_numpy(events: np.ndarray, source: SensorSize, target: SensorSize,
                     region: tuple[int, int, int, int]) -> np.ndarray:
    """A new event array with the region (x, y, w, h) of the source fitted into the target (aspect kept, centred);
    events outside the source sensor or the region get x = y = OUTSIDE."""
    rx, ry, rw, rh = region
    f = max(rw / target.width, rh / target.height)  # source pixels per target pixel
    ox, oy = (target.width - rw / f) / 2, (target.height - rh / f) / 2
    x, y = events["x"].astype(np.float64), events["y"].astype(np.float64)
    inside = ((events["x"] < source.width) & (events["y"] < source.height)
              & (x >= rx) & (x < rx + rw) & (y >= ry) & (y < ry + rh))
    # the centre of a source pixel decides its target pixel: exact for integer factors, even for any other
    tx = np.floor((x - rx + 0.5) / f + ox).astype(np.int64)
    ty = np.floor((y - ry + 0.5) / f + oy).astype(np.int64)
    inside &= (tx >= 0) & (tx < target.width) & (ty >= 0) & (ty < target.height)
    out = events.copy()
    out["x"] = np.where(inside, tx, OUTSIDE)
    out["y"] = np.where(inside, ty, OUTSIDE)
    return out


@dataclass(frozen=True)
class SensorMapping:
    """A SensorMap resolved for one source and one target sensor; call it on event batches."""

    source: SensorSize
    target: SensorSize
    region: tuple[int, int, int, int]
    name: str = "scale"

    @property
    def identity(self) -> bool:
        """True when events pass unchanged (same size, whole sensor): callers may skip the call."""
        return self.source == self.target and self.region == (0, 0, self.source.width, self.source.height)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return map_events_numpy(events, self.source, self.target, self.region)

    def describe(self) -> str:
        """One line for stderr and the status payload."""
        s, t = self.source, self.target
        if self.identity:
            return f"{s.width}x{s.height} sensor = model input, no mapping"
        rx, ry, rw, rh = self.region
        f = max(rw / t.width, rh / t.height)
        what = "whole sensor" if self.region == (0, 0, s.width, s.height) else f"region x={rx},y={ry},w={rw},h={rh}"
        return (f"{s.width}x{s.height} sensor -> {t.width}x{t.height} model input: {self.name}, {what}, "
                f"{f:.3g} sensor px per input px")


def parse_sensor(text: str) -> SensorSize:
    """"WxH" -> SensorSize."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise SourceError(f"sensor size {text!r}: expected WxH, e.g. 346x260") from e
    if w <= 0 or h <= 0 or max(w, h) >= OUTSIDE:
        raise SourceError(f"sensor size {text!r}: width and height must lie in 1..65534")
    return SensorSize(w, h)


def recorded_sensor(path: str | Path, target: SensorSize) -> SensorSize:
    """The sensor an event file records. NPY records none: it is taken to be the target (events beyond it are
    dropped and counted, as ever; give the size to map it). A CSV without a `x@W,y@H` header records none
    either (the reader returns the smallest sensor that holds the events): one that fits is the target too."""
    from sources.files import iter_events

    chunks = iter_events(Path(path), 1000)
    s = chunks.sensor
    if chunks.format == "npy" or (chunks.format == "csv" and s.width <= target.width and s.height <= target.height):
        return target
    return s
