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

from sources.denoise import Denoiser
from sources.errors import SourceError
from sources.events import EVENT_DTYPE

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
    denoise_us: int = 0  # background-activity filter window (sources.denoise); 0: off

    def __post_init__(self) -> None:
        if self.layout != LAYOUT:
            raise SourceError(f"input layout {self.layout!r} is not supported (only {LAYOUT!r})")
        if min(self.width, self.height, self.downsample, self.bin_us) <= 0:
            raise SourceError("input spec: sensor size, downsample and bin_us must be positive")
        if self.downsample > min(self.width, self.height):
            raise SourceError(f"input spec: downsample {self.downsample} exceeds the sensor size")
        if self.denoise_us < 0:
            raise SourceError(f"input spec: denoise_us must be >= 0, not {self.denoise_us}")

    @property
    def grid(self) -> tuple[int, int]:
        """(width, height) after downsampling."""
        return self.width // self.downsample, self.height // self.downsample

    @property
    def size(self) -> int:
        w, h = self.grid
        return 2 * w * h

    def to_config(self) -> dict[str, Any]:
        cfg = {"sensor": [self.width, self.height], "downsample": self.downsample, "bin_us": self.bin_us,
               "layout": self.layout, "scale": self.scale}
        return cfg | ({"denoise_us": self.denoise_us} if self.denoise_us else {})  # files without it: off

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> InputSpec:
        try:
            w, h = (int(v) for v in cfg["sensor"])
            return cls(w, h, int(cfg["downsample"]), int(cfg["bin_us"]), float(cfg["scale"]),
                       str(cfg.get("layout", LAYOUT)), int(cfg.get("denoise_us", 0)))
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
    ok = (xd < gw) & (yd < gh)  # x // d < W // d implies x < width: the sensor's own bound needs no test of its own
    return ((events["p"] > 0) * gh + yd) * gw + xd, ok


GAP_MAX_US = 10_000_000  # the file rule: a jump in event time beyond this, either way, is cut to this


def cut_gaps(t_us: np.ndarray, gap_max_us: int = GAP_MAX_US) -> np.ndarray:
    """Event times with every jump between consecutive events longer than gap_max_us, forward (a quiet hour, a
    corrupt timestamp) or back (a clock reset), made exactly gap_max_us forward, as a replay does
    (stream.replay): a whole recording binned at once never allocates more than gap_max_us of empty bins per
    jump. The input is not modified."""
    if len(t_us) < 2:
        return t_us
    d = np.diff(t_us)
    jump = np.abs(d) > gap_max_us  # small disorder (packets a few µs out of order) is binned as it is
    if not jump.any():
        return t_us
    shift = np.concatenate([[0], np.cumsum(np.where(jump, gap_max_us - d, 0))])
    return t_us + shift


def bin_events(
    events: np.ndarray, spec: InputSpec | dict[str, Any], t0_us: int | None = None, n_bins: int | None = None,
) -> np.ndarray:
    """Events -> [T, spec.size] float32. t0 defaults to the first event's time, T to the bin of the last kept event."""
    spec = as_spec(spec)
    if spec.denoise_us:
        events = Denoiser(spec.width, spec.height, spec.denoise_us).filter(events)
    t = cut_gaps(events["t"].astype(np.int64))
    if t0_us is None:
        t0_us = int(t[0]) if events.size else 0
    b = (t - int(t0_us)) // spec.bin_us
    feat, ok = _features(events, spec)
    ok &= b >= 0
    if n_bins is None:  # up to the bin of the last kept event, as Binner.flush() ends
        n_bins = int(b[ok].max()) + 1 if ok.any() else 0
    ok &= b < n_bins
    counts = np.bincount(b[ok] * spec.size + feat[ok], minlength=n_bins * spec.size)
    return (counts.reshape(n_bins, spec.size) * spec.scale).astype(np.float32)


T_LIMIT_US = 2**60  # event times beyond ±this (36,000 years) are clipped to it: differences stay within int64


class Binner:
    """Streaming bin_events: feed event batches in any chunking, get each bin once it is complete.

    A bin is complete when an event at or after its end arrives (event time, never wall time), or on
    `advance_to(t_us)` / `flush()`. Feeding a recording in any chunks, then flush(), yields exactly
    bin_events(concatenation). Events before the open bin (late), outside the sensor or removed by the spec's
    background-activity filter are dropped and counted.

    Gaps (the rule that bounds a jump in event time): with `max_gap_bins` g, a stretch of more than g empty bins,
    within a batch or up to an `advance_to`, is emitted as g empty bins, after which the bin clock is re-anchored
    so that the next bin holds the events after the gap (`gaps` counts the cuts, `skipped_bins` the bins left
    out; bin indices stay consecutive, t_end_us stays the true event time). One call emits at most g empty bins
    in all, so a call costs at most (bins holding events + g) rows whatever the timestamps. None: no bound (the
    whole-recording equivalence above holds only then, or for recordings without such gaps).
    """

    def __init__(self, spec: InputSpec | dict[str, Any], t0_us: int | None = None,
                 max_gap_bins: int | None = None) -> None:
        spec = as_spec(spec)
        self.spec, self.t0_us, self.max_gap_bins = spec, t0_us, max_gap_bins
        self.dropped_out_of_range = 0
        self.dropped_late = 0
        self.dropped_noise = 0  # removed by the background-activity filter (spec.denoise_us)
        self._denoiser = Denoiser(spec.width, spec.height, spec.denoise_us) if spec.denoise_us else None
        self.events_in = 0
        self.gaps = 0
        self.skipped_bins = 0  # the bin clock's offset: bin k ends at t0 + (k + skipped_bins + 1)·bin_us
        self._bin = 0  # index of the open bin
        self._acc = np.zeros(spec.size, np.int64)
        self._started = False  # whether the open bin has seen anything (flush emits it only then)
        from sources.binning_loop import count_window  # Numba: imported when a binner is made

        self._count_window = count_window
        self._no_table = np.zeros(1, np.int64)  # the filter's table and offsets where there is no filter
        # compiled (or loaded from the cache) now, not at a live stream's first batch: the batch fields' array
        # type (strided views of the event records), times before the window, so nothing is counted
        warm = np.zeros(2, EVENT_DTYPE)
        count_window(warm["x"], warm["y"], warm["t"], warm["p"], 1, 1, 0, self._no_table, self._no_table, 0,
                     False, 1, 1, 1, 1, 2, 1, T_LIMIT_US, self._acc, self._acc)

    def _emit(self, rows: np.ndarray, first: int, skips: np.ndarray | None = None
              ) -> Iterator[tuple[int, int, np.ndarray]]:
        for i, row in enumerate(rows):
            k = first + i
            skip = self.skipped_bins if skips is None else int(skips[i])
            yield k, int(self.t0_us) + (k + skip + 1) * self.spec.bin_us, (row * self.spec.scale).astype(np.float32)

    def open_end_us(self) -> int | None:
        """Event time at which the open bin closes (None before the first event)."""
        return None if self.t0_us is None else self.t0_us + (self._bin + self.skipped_bins + 1) * self.spec.bin_us

    def _bins_of(self, t: np.ndarray) -> np.ndarray:
        t = np.maximum(t.astype(np.int64, copy=False), -T_LIMIT_US)  # np.clip's wrapper costs more than the work
        np.minimum(t, T_LIMIT_US, out=t)
        t -= int(self.t0_us)
        t //= self.spec.bin_us
        t -= self.skipped_bins
        return t

    def feed(self, events: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
        """Add a batch; return the (bin_index, t_end_us, vector) of every bin it completes, in order."""
        if events.size == 0:
            return []
        self.events_in += int(events.size)
        if self.t0_us is not None:
            out = self._feed_open(events)
            if out is not None:
                return out
        if self._denoiser is not None:
            events = self._denoiser.filter(events)
            self.dropped_noise = self._denoiser.dropped
            if events.size == 0:
                return []
        t = events["t"]
        if self.t0_us is None:
            self.t0_us = int(np.clip(t.min(), -T_LIMIT_US, T_LIMIT_US))
        feat, ok = _features(events, self.spec)
        kept = int(np.count_nonzero(ok))
        self.dropped_out_of_range += len(events) - kept
        if not kept:
            return []
        b = self._bins_of(t)
        late = ok & (b < self._bin)
        self.dropped_late += int(np.count_nonzero(late))
        ok &= ~late
        if not ok.any():
            return []
        b, feat = b[ok] - self._bin, feat[ok]
        skips = None
        if self.max_gap_bins is not None:
            b, skips = self._cut_gaps(b)
        n = int(b.max()) + 1
        rows = np.bincount(b * self.spec.size + feat, minlength=n * self.spec.size).reshape(n, self.spec.size)
        rows[0] += self._acc
        out = list(self._emit(rows[:-1], self._bin, skips))
        if skips is not None:
            self.skipped_bins = int(skips[-1])
        self._acc, self._bin, self._started = rows[-1].copy(), self._bin + n - 1, True
        return out

    def _feed_open(self, events: np.ndarray) -> list[tuple[int, int, np.ndarray]] | None:
        """`feed` of a batch wholly in the open bin, or in it and the next (a stream's common case, and the batch
        that closes a bin), in one compiled pass (`binning_loop.count_window`): the same counts and drops as the
        general path. None, with nothing changed, for any other batch."""
        spec, d = self.spec, self._denoiser
        start = self.t0_us + (self._bin + self.skipped_bins) * spec.bin_us
        gw, gh = spec.grid
        pw, last_t, offsets, dt = d.table() if d is not None else (0, self._no_table, self._no_table, 0)
        nxt = np.zeros(spec.size, np.int64)
        kept, noise, off, to_next = self._count_window(
            events["x"], events["y"], events["t"], events["p"], spec.width, spec.height, pw, last_t, offsets, dt,
            d is not None, spec.downsample, gw, gh, start, start + spec.bin_us, spec.bin_us, T_LIMIT_US, self._acc,
            nxt)
        if kept < 0:  # binning_loop.NOT_HERE
            return None
        if d is not None:
            d.account(int(events.size), noise)
            self.dropped_noise = d.dropped
        self.dropped_out_of_range += off
        if not kept:
            return []
        self._started = True
        if not to_next:
            return []
        out = list(self._emit(self._acc[None], self._bin))
        self._acc, self._bin = nxt, self._bin + 1
        return out

    def _cut_gaps(self, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bins relative to the open bin (>= 0) -> the same with gaps cut as the class says, and per output row
        the bin clock's offset (an empty bin of a gap takes the offset of the events before it)."""
        g = int(self.max_gap_bins or 0)
        top = int(b.max())
        if top <= g:  # at most g empty bins in all: nothing to cut (the common case, cheap)
            return b, np.full(top + 1, self.skipped_bins, np.int64)
        u, inv = np.unique(b, return_inverse=True)
        prev = np.r_[0, u[:-1]]
        empty = np.maximum(u - prev - 1, 0)  # empty bins before each occupied one (the open bin counts as occupied)
        kept = np.minimum(empty, g)
        kept = np.diff(np.minimum(np.cumsum(kept), g), prepend=0)  # and at most g in all per call
        step = np.where(u > prev, kept + 1, 0)
        pos = np.cumsum(step)  # compressed index of each occupied bin
        cut = u - pos
        self.gaps += int(np.count_nonzero(np.diff(cut, prepend=0)))
        skips = np.full(int(pos[-1]) + 1, self.skipped_bins, np.int64)
        # a row takes the offset of the last occupied bin at or before it
        owner = np.searchsorted(pos, np.arange(len(skips)), side="right") - 1
        has = owner >= 0
        skips[has] += cut[owner[has]]
        return pos[inv], skips

    def open_bin(self) -> tuple[int, np.ndarray]:
        """(index, per-feature counts so far) of the open bin (a view: copy it to keep it)."""
        return self._bin, self._acc

    def advance_to(self, t_us: int) -> list[tuple[int, int, np.ndarray]]:
        """Event time has reached t_us (e.g. a source's clock): emit every bin that ends at or before it (with
        max_gap_bins g: the open bin and at most g empty ones, then the clock is re-anchored at t_us)."""
        if self.t0_us is None:
            return []
        t_us = max(-T_LIMIT_US, min(T_LIMIT_US, int(t_us)))
        last = (t_us - self.t0_us) // self.spec.bin_us - self.skipped_bins  # bins < last are complete
        if last <= self._bin:
            return []
        count = last - self._bin
        if self.max_gap_bins is not None and count > 1 + self.max_gap_bins:
            emitted = 1 + self.max_gap_bins
            rows = np.zeros((emitted, self.spec.size), np.int64)
            rows[0] = self._acc
            out = list(self._emit(rows, self._bin))
            self.gaps += 1
            self.skipped_bins += count - emitted
            last = self._bin + emitted
        else:
            rows = np.zeros((count, self.spec.size), np.int64)
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
