"""The event-camera model: no events without change, ON/OFF balance, render-rate independence, noise, timing."""

from dataclasses import replace

import numpy as np
import pytest

from sources.dvs_sim import DVSConfig, DVSSimulator, simulate
from sources.events import EVENT_DTYPE
from sources.gesture_render import draw_subject, render_gesture_events

QUIET = DVSConfig(noise_hz=0.0, hot_pixel_fraction=0.0)


def _bar_frames(positions: np.ndarray, width: int = 64) -> list[np.ndarray]:
    """A bright 6-pixel-wide vertical bar at sub-pixel positions over a dim textured background."""
    xs = np.arange(width)[None, :] + 0.5
    bg = 0.2 + 0.05 * np.sin(np.arange(32)[:, None] * 0.7) * np.ones((1, width))
    return [bg + 0.6 * np.clip(3.5 - np.abs(xs - p), 0, 1) * np.ones((32, 1)) for p in positions]


def test_static_scene_gives_no_events_without_noise():
    """A static textured scene produces no events when noise is off."""
    frames = _bar_frames(np.full(200, 20.0))
    ev = simulate(frames, np.arange(200) * 1000, QUIET, np.random.default_rng(0))
    assert ev.dtype == EVENT_DTYPE and ev.size == 0


def test_symmetric_motion_balances_on_and_off():
    """A bright bar sweeping right and back gives as many ON as OFF events (within 5 %)."""
    pos = np.concatenate([np.linspace(10, 50, 400), np.linspace(50, 10, 400)])
    ev = simulate(_bar_frames(pos), np.arange(pos.size) * 1000, QUIET, np.random.default_rng(1))
    n_on, n_off = int((ev["p"] == 1).sum()), int((ev["p"] == 0).sum())
    assert n_on > 500 and abs(n_on - n_off) / (n_on + n_off) < 0.05
    assert np.all(np.diff(ev["t"]) >= 0)


def test_event_count_does_not_depend_on_render_rate():
    """The same gesture rendered at 250 and 1000 frames/s gives event counts within 10 %."""
    subject = draw_subject(np.random.default_rng(3))
    subject = replace(subject, dvs=replace(subject.dvs, noise_hz=0.0, hot_pixel_fraction=0.0))
    n250 = render_gesture_events(3, subject, 1.0, np.random.default_rng(4), fps=250).size
    n1000 = render_gesture_events(3, subject, 1.0, np.random.default_rng(4), fps=1000).size
    assert n250 > 2000 and abs(n250 - n1000) / n1000 < 0.10


@pytest.mark.parametrize("rate_hz", [0.5, 3.0])
def test_background_noise_rate_is_as_configured(rate_hz):
    """Background activity on a static scene has the configured rate per pixel (within 5 %) and both polarities."""
    cfg = DVSConfig(noise_hz=rate_hz, hot_pixel_fraction=0.0)
    frames = [np.full((64, 64), 0.5)] * 101
    ev = simulate(frames, np.arange(101) * 20_000, cfg, np.random.default_rng(5))
    expected = rate_hz * 64 * 64 * 2.0
    assert abs(ev.size - expected) / expected < 0.05
    assert 0.4 < ev["p"].mean() < 0.6


def test_hot_pixels_fire_at_their_rate():
    """Hot pixels fire at hot_pixel_hz on a static scene, far above the background."""
    cfg = DVSConfig(noise_hz=0.0, hot_pixel_fraction=0.01, hot_pixel_hz=200.0)
    sim = DVSSimulator(32, 32, cfg, np.random.default_rng(6))
    sim.step(np.full((32, 32), 0.5), 0)
    ev = sim.step(np.full((32, 32), 0.5), 1_000_000)
    assert set((ev["y"].astype(int) * 32 + ev["x"]).tolist()) <= set(sim.hot_pixels.tolist())
    assert abs(ev.size - 200.0 * sim.hot_pixels.size) < 5 * np.sqrt(200.0 * sim.hot_pixels.size)


def test_crossings_inside_a_step_get_interpolated_timestamps():
    """A log-intensity ramp of 5.5 thresholds in one step gives 5 events evenly spaced inside the step."""
    cfg = DVSConfig(threshold_on=0.1, threshold_sigma=0.0, refractory_us=0, noise_hz=0.0, hot_pixel_fraction=0.0,
                    log_eps=0.0)
    sim = DVSSimulator(1, 1, cfg, np.random.default_rng(7))
    sim.step(np.full((1, 1), 0.1), 0)
    ev = sim.step(np.full((1, 1), 0.1 * np.exp(0.55)), 11_000)
    assert ev.size == 5 and np.all(ev["p"] == 1)
    np.testing.assert_allclose(ev["t"], np.arange(1, 6) * 2000, atol=1)


def test_refractory_period_thins_bursts():
    """A long refractory period keeps fewer of a burst's events than none at all."""
    base = DVSConfig(threshold_on=0.05, threshold_sigma=0.0, noise_hz=0.0, hot_pixel_fraction=0.0, refractory_us=0)
    counts = []
    for r in (0, 3000):
        sim = DVSSimulator(1, 1, replace(base, refractory_us=r), np.random.default_rng(8))
        sim.step(np.full((1, 1), 0.1), 0)
        counts.append(sim.step(np.full((1, 1), 0.5), 10_000).size)
    assert counts[0] >= 20 and counts[1] <= 4
