"""Background-activity filter benchmark: sources.denoise.Denoiser against tonic's denoise_numpy, side by side.

On one rendered continuous stream (a moving body plus background activity at --noise-hz per pixel), in one
run: our filter (the per-event loop, compiled) with 8 neighbours in one call, fed 10 ms at a time (as a live
binner feeds it) and 1 ms at a time (the pipeline's early deliveries), and with 4 neighbours beside tonic's
`tonic.functional.denoise_numpy` (a per-event Python loop, 4 neighbours) on the same
events, checking that both keep the same events. Times are shifted by dt for that comparison: tonic's memory
starts at dt, which lets every event of the first dt µs pass. Then the pass rates that choose dt: of pure
background activity (a still scene) at 0.44, 1.4 and 3.6 Hz per pixel, and of gesture events (streams rendered
without background activity). Prints one JSON object and a table, in wall-clock and CPU seconds; target >= 5 M
events/s on one core.
`python bench/bench_denoise.py [--seconds S] [--noise-hz R] [--dt-us N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sources.denoise import Denoiser
from sources.dvs_sim import DVSConfig, DVSSimulator
from sources.events import EVENT_DTYPE
from sources.gesture_stream import StreamConfig, render_stream

NOISE_HZ = (0.44, 1.4, 3.6)  # the held-out streams' range (docs/gestures.md)
DT_US = (1_000, 2_000, 3_000, 5_000, 10_000, 20_000)


def best_of(fn, repeat: int) -> tuple[float, float, np.ndarray]:
    """(best wall-clock s, best CPU s, output): CPU seconds are steadier on a shared machine."""
    wall = cpu = float("inf")
    out = None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.process_time() - c)
    return wall, cpu, out


def speed(n: int, wall: float, cpu: float) -> dict[str, float]:
    return {"s": round(wall, 4), "mev_per_s": round(n / wall / 1e6, 3), "mev_per_cpu_s": round(n / cpu / 1e6, 3)}


def pass_rate(events: np.ndarray, dt_us: int) -> float:
    return Denoiser(128, 128, dt_us).filter(events).size / max(1, events.size)


def still_scene_noise(noise_hz: float, seconds: float) -> np.ndarray:
    """Background activity alone: the event-camera model on a constant frame, no hot pixels."""
    sim = DVSSimulator(128, 128, DVSConfig(noise_hz=noise_hz, hot_pixel_fraction=0.0), np.random.default_rng(0))
    frame = np.full((128, 128), 0.5)
    return np.concatenate([sim.step(frame, k * 4_000) for k in range(round(seconds * 250) + 1)])


def live_windows(rate: int, dt: int, repeat: int, seconds: float = 1.0) -> dict:
    """Uniform events over the 128 x 128 sensor at `rate` ev/s, fed 1 ms at a time: CPU µs per window."""
    rng = np.random.default_rng(0)
    n = int(rate * seconds)
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, int(seconds * 1e6), n))
    ev["x"], ev["y"], ev["p"] = rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)
    parts = np.split(ev, np.searchsorted(ev["t"], np.arange(1_000, int(seconds * 1e6), 1_000)))

    def run() -> np.ndarray:
        d = Denoiser(128, 128, dt)
        return np.concatenate([d.filter(p) for p in parts])

    _, c, _ = best_of(run, repeat)
    return {"events_per_window": n // len(parts), "us_per_window_cpu": round(c / len(parts) * 1e6, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each rendered stream (default 8)")
    ap.add_argument("--noise-hz", type=float, default=3.6, help="background activity of the timed stream")
    ap.add_argument("--dt-us", type=int, default=5_000, help="the filter window timed (default 5000)")
    ap.add_argument("--gesture-streams", type=int, default=3, help="noise-free streams for the pass rates")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import tonic
    from tonic.functional import denoise_numpy

    cfg = StreamConfig(duration_s=args.seconds, noise_hz=(args.noise_hz, args.noise_hz))
    ev, _ = render_stream(1, 500, 0, cfg)
    n, dt = int(ev.size), args.dt_us
    t_ours, c_ours, kept = best_of(lambda: Denoiser(128, 128, dt).filter(ev), args.repeat)
    cuts = np.searchsorted(ev["t"], np.arange(10_000, int(ev["t"][-1]) + 1, 10_000))
    parts = np.split(ev, cuts)

    def chunked() -> np.ndarray:
        d = Denoiser(128, 128, dt)
        return np.concatenate([d.filter(p) for p in parts])

    t_chunked, c_chunked, kept_chunked = best_of(chunked, args.repeat)
    ms_parts = np.split(ev, np.searchsorted(ev["t"], np.arange(1_000, int(ev["t"][-1]) + 1, 1_000)))

    def per_ms() -> np.ndarray:
        """1 ms at a time, as the pipeline's early deliveries."""
        d = Denoiser(128, 128, dt)
        return np.concatenate([d.filter(p) for p in ms_parts])

    t_ms, c_ms, kept_ms = best_of(per_ms, args.repeat)
    live = {f"{rate // 1000}k": live_windows(rate, dt, args.repeat) for rate in (100_000, 1_000_000)}
    shifted = ev.copy()
    shifted["t"] += dt
    t_ours4, c_ours4, kept4 = best_of(lambda: Denoiser(128, 128, dt, neighbours=4).filter(shifted), args.repeat)
    t_tonic, c_tonic, kept_tonic = best_of(lambda: denoise_numpy(shifted, filter_time=dt), 1)
    noise = {str(hz): {str(d): round(pass_rate(e, d), 4) for d in DT_US}
             for hz, e in ((hz, still_scene_noise(hz, args.seconds)) for hz in NOISE_HZ)}
    clean = StreamConfig(duration_s=args.seconds, noise_hz=(1e-6, 1e-6), hot_pixel_fraction=(0.0, 0.0))
    gestures = [render_stream(0, 100 + i, i, clean)[0] for i in range(args.gesture_streams)]
    gesture = {str(d): round(sum(pass_rate(g, d) * g.size for g in gestures) / sum(g.size for g in gestures), 4)
               for d in DT_US}
    result = {
        "bench": "denoise", "events": n, "noise_hz": args.noise_hz, "dt_us": dt, "kept": int(kept.size),
        "ours_8": speed(n, t_ours, c_ours),
        "ours_8_10ms_chunks": speed(n, t_chunked, c_chunked) | {
            "same_as_one_call": bool(np.array_equal(kept_chunked, kept))},
        "ours_8_1ms_chunks": speed(n, t_ms, c_ms) | {
            "same_as_one_call": bool(np.array_equal(kept_ms, kept)), "us_per_chunk_cpu": round(c_ms / len(ms_parts)
                                                                                                * 1e6, 1)},
        "uniform_1ms_windows_by_rate": live,
        "ours_4": speed(n, t_ours4, c_ours4),
        "tonic_4": speed(n, t_tonic, c_tonic) | {"impl": "tonic.functional.denoise_numpy"},
        "same_events_as_tonic": bool(np.array_equal(kept4, kept_tonic)),
        "speedup_vs_tonic_cpu": round(c_tonic / c_ours4, 1),
        "target_mev_per_s": 5.0,
        "pass_rate_noise_by_hz_and_dt": noise,
        "pass_rate_gesture_by_dt": gesture, "gesture_events": int(sum(g.size for g in gestures)),
        "cpu_count": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
        "tonic_version": tonic.__version__,
    }
    print(json.dumps(result))
    print(f"\n{'filter':<34}{'M events/s':>12}{'per CPU s':>12}")
    for name in ("ours_8", "ours_8_10ms_chunks", "ours_8_1ms_chunks", "ours_4", "tonic_4"):
        print(f"{name:<34}{result[name]['mev_per_s']:>12}{result[name]['mev_per_cpu_s']:>12}")
    for rate, r in live.items():
        print(f"uniform {rate} ev/s, 1 ms windows of {r['events_per_window']} events: "
              f"{r['us_per_window_cpu']} µs per window")
    print(f"\npass rate by dt (µs): {'':>10}" + "".join(f"{d:>8}" for d in DT_US))
    for hz, rates in noise.items():
        print(f"background activity {hz:>5} Hz/pixel" + "".join(f"{rates[str(d)]:>8.3f}" for d in DT_US))
    print(f"{'gesture events':<33}" + "".join(f"{gesture[str(d)]:>8.3f}" for d in DT_US))


if __name__ == "__main__":
    main()
