"""Binning DVS events into the model's input vectors, by EVENT time, exactly as the model JSON's "input" says.

The one definition is sources.binning (training, `s2 node run` and this pipeline share it): bin k covers
[t0 + k·b, t0 + (k+1)·b) µs, feature (p·Hd + y//d)·Wd + x//d with Wd = W//d, Hd = H//d, value count·scale;
events outside the sensor (or in a partial edge cell) and events older than the open bin are dropped and
counted. `StreamBinner` wraps sources.binning.Binner for the pipeline (watermarks close bins on time, counters
for the stats) and always bounds the cost of a jump in event time (sources.binning.Binner's gap rule): a file
replay keeps quiet stretches up to GAP_FILE_US as they are, a live source turns any quiet stretch beyond
GAP_LIVE_BINS bins into that many empty bins and re-anchors its bin clock (a live camera's idle watermarks close
its bins with the wall clock anyway; a jump in its own clock is a glitch, not a pause to replay).
It applies the sensor mapping of sources.sensor_map first when the source's sensor is not the model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from sources.binning import GAP_MAX_US
from sources.errors import SourceError
from sources.events import SensorSize
from sources.sensor_map import SensorMap, SensorMapping, recorded_sensor
from stream.errors import PipelineError

GAP_FILE_US = GAP_MAX_US  # the longest quiet stretch of a file binned as it is (sources.binning's file rule)
GAP_LIVE_BINS = 10  # a live source's quiet stretch or clock jump: at most this many empty bins


@dataclass(frozen=True)
class BinSpec:
    sensor: SensorSize
    downsample: int
    bin_us: int
    scale: float
    denoise_us: int = 0  # the model's background-activity filter (sources.denoise); 0: off

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BinSpec:
        inp = config.get("input")
        if not isinstance(inp, dict):
            raise PipelineError("model has no 'input' section: not a gesture model")
        if inp.get("layout", "p,y,x") != "p,y,x":
            raise PipelineError(f"input layout {inp.get('layout')!r} not supported (only 'p,y,x')")
        w, h = (int(v) for v in inp["sensor"])
        spec = cls(SensorSize(w, h), int(inp["downsample"]), int(inp["bin_us"]), float(inp["scale"]),
                   int(inp.get("denoise_us", 0)))
        want = config["layers"][0]["input_size"]
        if spec.size != want:
            raise PipelineError(f"input spec gives {spec.size} features but the model takes {want}")
        return spec

    @property
    def release_chunk_us(self) -> int:
        """How much event time a replay releases at once for this binning: the largest divisor of the bin up to
        1 ms, so that releases line up with bin ends (the last release of a bin is due at the bin's end)."""
        b = self.bin_us
        return next(d for d in range(min(b, 1_000), 0, -1) if b % d == 0)

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


def _input_spec(spec: BinSpec):
    from sources.binning import InputSpec

    return InputSpec(spec.sensor.width, spec.sensor.height, spec.downsample, spec.bin_us, spec.scale,
                     denoise_us=spec.denoise_us)


def bin_events(events: np.ndarray, spec: BinSpec, t0_us: int | None = None, n_bins: int | None = None) -> np.ndarray:
    """A whole recording at once: sources.binning.bin_events with this spec."""
    from sources.binning import bin_events as _bin_events

    return _bin_events(events, _input_spec(spec), t0_us, n_bins)


class StreamBinner:
    """Fed event batches in time order (with an optional watermark); returns the bins that closed. A sensor
    mapping (sources.sensor_map) first brings events of another sensor size onto the model's input."""

    def __init__(self, spec: BinSpec, mapping: SensorMapping | None = None, max_gap_bins: int | None = None) -> None:
        from sources.binning import Binner

        self.spec = spec
        self.mapping = None if mapping is None or mapping.identity else mapping
        gap = max(1, GAP_FILE_US // spec.bin_us) if max_gap_bins is None else max_gap_bins
        self._b = Binner(_input_spec(spec), max_gap_bins=gap)
        self._early: np.ndarray | None = None  # the open bin's input already handed out by take_early()
        self._early_bin = -1
        self._watermark: int | None = None  # event time up to which the stream is complete

    @property
    def dropped(self) -> int:
        """Events dropped: outside the sensor (or partial edge cells) and late ones."""
        return self._b.dropped_out_of_range + self._b.dropped_late

    @property
    def gaps(self) -> int:
        """Jumps in event time cut to the gap bound (see the module's rule)."""
        return self._b.gaps

    @property
    def denoised(self) -> int:
        """Events removed by the model's background-activity filter (input.denoise_us)."""
        return self._b.dropped_noise

    @property
    def events_in(self) -> int:
        """Events accepted into bins (not dropped, not removed as background activity)."""
        return self._b.events_in - self.dropped - self.denoised

    def feed(self, events: np.ndarray, upto_us: int | None = None) -> list[Bin]:
        """Add events; bins ending at or before upto_us (no later event can fall into them) close too."""
        if self.mapping is not None and len(events):
            events = self.mapping(events)
        out = self._b.feed(events)
        if len(events):
            self._watermark = max(self._watermark or 0, int(events["t"][-1]))
        if upto_us is not None:
            out += self._b.advance_to(upto_us)
            self._watermark = max(self._watermark or 0, int(upto_us))
        return self._rest(out)

    @property
    def open_index(self) -> int:
        return self._b.open_bin()[0]

    def time_left_us(self) -> int | None:
        """Event time from the watermark to the end of the open bin (None before the first event)."""
        end = self._b.open_end_us()
        if end is None or self._watermark is None:
            return None
        return end - self._watermark

    def flush(self) -> list[Bin]:
        """End of a recording: close the open bin if it holds anything."""
        return self._rest(self._b.flush())

    def take_early(self) -> np.ndarray | None:
        """The open bin's input that arrived since the last call (None if none), for a node that accumulates input
        before the bin's tick (StepModel.deliver). Once used, a closed bin's vector holds only the rest: what
        was not taken early, so that early parts + rest = the bin, exactly (counts x scale, no rounding)."""
        idx, counts = self._b.open_bin()
        vec = (counts * self.spec.scale).astype(np.float32)
        delta = vec - self._early if idx == self._early_bin and self._early is not None else vec
        self._early, self._early_bin = vec, idx
        return delta if delta.any() else None

    def _rest(self, bins: list[tuple[int, int, np.ndarray]]) -> list[Bin]:
        out = [Bin(*b) for b in bins]
        if self._early is not None:
            for i, b in enumerate(out):
                if b.index == self._early_bin:
                    out[i] = b._replace(vector=b.vector - self._early)
                    self._early, self._early_bin = None, -1
        return out


def sensor_mapping(config: dict[str, Any], sensor_map: SensorMap, source: SensorSize | None) -> SensorMapping:
    """The map from a source's sensor (None: the model's own) onto a gesture model's input sensor."""
    target = BinSpec.from_config(config).sensor
    try:
        return sensor_map.for_sensors(source or target, target)
    except SourceError as e:
        raise PipelineError(str(e)) from e


def recording_mapping(config: dict[str, Any], sensor_map: SensorMap, path: str | Path,
                      sensor: SensorSize | None = None) -> SensorMapping:
    """sensor_mapping for an event file: its recorded sensor (sources.sensor_map.recorded_sensor) unless given."""
    if sensor is None:
        sensor = recorded_sensor(path, BinSpec.from_config(config).sensor)
    return sensor_mapping(config, sensor_map, sensor)


def make_binner(config: dict[str, Any], mapping: SensorMapping | None = None, live: bool = False) -> StreamBinner:
    """The pipeline's binner for a model: with `live`, quiet stretches are cut to GAP_LIVE_BINS empty bins."""
    return StreamBinner(BinSpec.from_config(config), mapping, GAP_LIVE_BINS if live else None)
