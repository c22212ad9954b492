"""An ESIM-style event-camera model in numpy: rendered intensity frames -> DVS events.

Each pixel memorises the log intensity at its last event. Between two rendered frames the log intensity is
taken as linear in time, so a pixel whose log intensity moves by k thresholds emits k events whose timestamps
are interpolated inside the step: the event count then depends on the scene, not on the render rate [1].
Per-pixel thresholds vary (mismatch sigma), a refractory period drops events that follow the previous one too
closely (the reference still moves, as in ESIM/v2e), and background activity (Poisson) plus a few hot pixels
add noise. Everything random comes from an explicit `rng`.

[1] Gehrig et al., "Video to Events", CVPR 2020 (ESIM's adaptive sampling); Rebecq et al., ESIM, CoRL 2018.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from sources.errors import SourceError
from sources.events import EVENT_DTYPE


@dataclass(frozen=True)
class DVSConfig:
    """Sensor parameters (thresholds on log intensity, times in µs, rates in Hz per pixel)."""

    threshold_on: float = 0.2
    threshold_off: float = 0.2
    threshold_sigma: float = 0.03  # relative per-pixel mismatch of the thresholds
    refractory_us: int = 100  # assumption; with 500 µs, 250 vs 1000 fps differ by ~10 % (timing blur)
    noise_hz: float = 0.1  # background activity per pixel (both polarities together)
    noise_on_fraction: float = 0.5
    hot_pixel_fraction: float = 0.0005
    hot_pixel_hz: float = 20.0
    log_eps: float = 1e-2  # log(I + eps): dark pixels do not blow up


class DVSSimulator:
    """Feed frames in time order with `step(frame, t_us)`; each call returns the events since the previous frame."""

    def __init__(self, width: int, height: int, config: DVSConfig, rng: np.random.Generator) -> None:
        self.width, self.height, self.config, self.rng = width, height, config, rng
        shape = (height, width)
        c = config
        mis = rng.normal(0.0, c.threshold_sigma, size=(2, *shape))
        self.thr_on = np.maximum(c.threshold_on * (1.0 + mis[0]), 0.01).ravel()
        self.thr_off = np.maximum(c.threshold_off * (1.0 + mis[1]), 0.01).ravel()
        n_hot = round(c.hot_pixel_fraction * width * height)
        self.hot_pixels = rng.choice(width * height, size=n_hot, replace=False) if n_hot else np.zeros(0, np.int64)
        self.ref: np.ndarray | None = None  # memorised log intensity per pixel
        self.prev_log: np.ndarray | None = None
        self.prev_t_us: int = 0
        self.last_event_us = np.full(width * height, np.iinfo(np.int64).min // 2, dtype=np.int64)

    def _log(self, frame: np.ndarray) -> np.ndarray:
        f = np.asarray(frame, dtype=np.float64)
        if f.shape != (self.height, self.width):
            raise SourceError(f"frame shape {f.shape} is not (height, width) = {(self.height, self.width)}")
        return np.log(np.maximum(f, 0.0) + self.config.log_eps).ravel()

    def step(self, frame: np.ndarray, t_us: int) -> np.ndarray:
        """Advance to `frame` at time t_us; return the events (sorted by t) in (prev_t, t_us]."""
        log_now = self._log(frame)
        if self.ref is None:
            self.ref, self.prev_log, self.prev_t_us = log_now.copy(), log_now, int(t_us)
            return np.empty(0, EVENT_DTYPE)
        t0, t1 = self.prev_t_us, int(t_us)
        if t1 <= t0:
            raise SourceError(f"frame time {t1} µs is not after the previous one ({t0} µs)")
        parts = [self._crossings(log_now, t0, t1, on) for on in (True, False)]
        parts.append(self._noise(t0, t1))
        self.prev_log, self.prev_t_us = log_now, t1
        ev = np.concatenate(parts)
        return ev[np.argsort(ev["t"], kind="stable")]

    def _crossings(self, log_now: np.ndarray, t0: int, t1: int, on: bool) -> np.ndarray:
        assert self.ref is not None and self.prev_log is not None
        thr = self.thr_on if on else self.thr_off
        sign = 1.0 if on else -1.0
        diff = sign * (log_now - self.ref)
        n = np.floor(diff / thr).astype(np.int64)
        idx = np.flatnonzero(n > 0)
        if idx.size == 0:
            return np.empty(0, EVENT_DTYPE)
        n_i, thr_i = n[idx], thr[idx]
        self.ref[idx] += sign * n_i * thr_i
        # Crossing k (1..n) sits at level ref + k·thr on the straight line prev_log -> log_now.
        a, b, r = self.prev_log[idx], log_now[idx], self.ref[idx] - sign * n_i * thr_i
        k = np.arange(1, n_i.max() + 1)
        rep = np.repeat(np.arange(idx.size), n_i)
        kk = k[np.arange(rep.size) - np.repeat(np.cumsum(n_i) - n_i, n_i)]
        span = b - a
        safe = np.where(np.abs(span) > 1e-12, span, 1.0)
        frac = (r[rep] + sign * kk * thr_i[rep] - a[rep]) / safe[rep]
        frac = np.clip(np.where(np.abs(span[rep]) > 1e-12, frac, 1.0), 0.0, 1.0)
        t = t0 + np.rint(frac * (t1 - t0)).astype(np.int64)
        t = np.maximum(t, t0 + 1)  # strictly inside (t0, t1]: the previous step owns t0
        pix = idx[rep]
        keep = self._refractory(pix, t, rep)
        ev = np.empty(int(keep.sum()), EVENT_DTYPE)
        ev["t"], ev["x"], ev["y"] = t[keep], pix[keep] % self.width, pix[keep] // self.width
        ev["p"] = 1 if on else 0
        return ev

    def _refractory(self, pix: np.ndarray, t: np.ndarray, rep: np.ndarray) -> np.ndarray:
        """Keep an event only if it comes >= refractory_us after the pixel's previous kept event.

        Events of one pixel in one step are (near) evenly spaced, so after the first kept one every m-th is kept,
        m = ceil(refractory / spacing): exact for even spacing, vectorised.
        """
        r = self.config.refractory_us
        if r <= 0 or t.size == 0:
            self.last_event_us[pix] = t  # the last write per pixel wins: its latest event
            return np.ones(t.size, bool)
        starts = np.flatnonzero(np.r_[True, rep[1:] != rep[:-1]])
        counts = np.diff(np.r_[starts, t.size])
        pos = np.arange(t.size) - np.repeat(starts, counts)
        first_ok = t >= self.last_event_us[pix] + r
        # index of the first event of each run that clears the previous event's refractory period
        cand = np.where(first_ok, pos, np.iinfo(np.int64).max)
        first = np.minimum.reduceat(cand, starts)
        span = t[starts + counts - 1] - t[starts]
        spacing = np.where(counts > 1, span / np.maximum(counts - 1, 1), np.inf)
        m = np.maximum(np.ceil(r / np.maximum(spacing, 1e-9)), 1).astype(np.int64)
        m = np.where(np.isfinite(spacing), m, 1)
        f_rep, m_rep = np.repeat(first, counts), np.repeat(m, counts)
        keep = (pos >= f_rep) & ((pos - np.minimum(f_rep, pos)) % m_rep == 0)
        kept = np.flatnonzero(keep)
        self.last_event_us[pix[kept]] = t[kept]
        return keep

    def _noise(self, t0: int, t1: int) -> np.ndarray:
        """Poisson background activity over all pixels plus hot pixels, uniform in (t0, t1]."""
        c, rng, npx = self.config, self.rng, self.width * self.height
        dt_s = (t1 - t0) * 1e-6
        n_ba = rng.poisson(c.noise_hz * npx * dt_s) if c.noise_hz > 0 else 0
        n_hot = rng.poisson(c.hot_pixel_hz * dt_s, size=self.hot_pixels.size) if self.hot_pixels.size else []
        pix = np.concatenate([rng.integers(0, npx, n_ba), np.repeat(self.hot_pixels, n_hot)]).astype(np.int64)
        ev = np.empty(pix.size, EVENT_DTYPE)
        ev["t"] = rng.integers(t0 + 1, t1 + 1, pix.size)
        ev["x"], ev["y"] = pix % self.width, pix // self.width
        ev["p"] = rng.random(pix.size) < c.noise_on_fraction
        return ev


def simulate(
    frames: Iterable[np.ndarray], times_us: Iterable[int], config: DVSConfig, rng: np.random.Generator,
    width: int | None = None, height: int | None = None,
) -> np.ndarray:
    """All events of a frame sequence (first frame initialises the memory), sorted by t."""
    sim: DVSSimulator | None = None
    out = []
    for frame, t in zip(frames, times_us, strict=True):
        if sim is None:
            h, w = np.shape(frame)
            sim = DVSSimulator(width or w, height or h, config, rng)
        out.append(sim.step(frame, int(t)))
    return np.concatenate(out) if out else np.empty(0, EVENT_DTYPE)
