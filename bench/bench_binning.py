"""Binning benchmark: in-memory DVS events -> the gesture model's input vectors ([T, 2·Hd·Wd], layout p,y,x).

Side by side in one run on the same events: ours (sources.binning.bin_events when present, else the stream
side's stream.binner.bin_events, a single NumPy bincount over bin·features + feature), the streaming binner
fed 1 ms chunks, and tonic's Downsample + ToFrame. Checks that all give the same counts, prints one JSON
object. Target: ours >= 1.5x tonic. `python bench/bench_binning.py [--events N]`.
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

from sources.events import SensorSize, make_events
from stream.binner import BinSpec, StreamBinner


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def file_decoding(n_repeat: int) -> dict:
    """Decoding speed of the real AEDAT4 clip (where ../shared is present) and of a 1 M-event .npy."""
    import tempfile

    from sources.files import read_events

    out: dict = {}
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis346-traffic.aedat4"
    if shared.is_file():
        dt, (ev, _) = best_of(lambda: read_events(shared), n_repeat)
        out["aedat4"] = {"events": len(ev), "mev_per_s": round(len(ev) / dt / 1e6, 2)}
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "e.npy"
        rng = np.random.default_rng(0)
        n = 1_000_000
        np.save(p, make_events(np.sort(rng.integers(0, 10**7, n)), rng.integers(0, 128, n), rng.integers(0, 128, n),
                               rng.integers(0, 2, n)))
        dt, _ = best_of(lambda: read_events(p), n_repeat)
        out["npy"] = {"events": n, "mev_per_s": round(n / dt / 1e6, 2), "reader": "sources.files.read_events"}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    import tonic
    import tonic.transforms as T

    from sources.binning import InputSpec, bin_events

    cfg_in = {"sensor": [128, 128], "downsample": 4, "bin_us": 10_000, "layout": "p,y,x", "scale": 1.0}
    spec = InputSpec.from_config(cfg_in)
    impl = "sources.binning.bin_events"

    rng = np.random.default_rng(0)
    n = args.events
    duration_us = 2_000_000  # 1 Mev/s-ish recording, 200 bins of 10 ms
    ev = make_events(np.sort(rng.integers(0, duration_us, n)), rng.integers(0, 128, n), rng.integers(0, 128, n),
                     rng.integers(0, 2, n))
    ev["t"][0] = 0  # both start their first bin at t = 0

    def ours():
        return bin_events(ev, spec)

    stream_spec = BinSpec(SensorSize(128, 128), 4, 10_000, 1.0)

    def streaming():
        b = StreamBinner(stream_spec)
        edges = np.searchsorted(ev["t"], np.arange(1000, duration_us + 1000, 1000))
        out, lo = [], 0
        for hi in edges:
            out += b.feed(ev[lo:hi])
            lo = hi
        out += b.flush()
        return np.stack([o.vector for o in out])

    tf = T.Compose([T.Downsample(spatial_factor=0.25), T.ToFrame(sensor_size=(32, 32, 2), time_window=10_000,
                                                                  include_incomplete=True)])

    def tonic_path():
        return tf(ev).reshape(-1, 2 * 32 * 32)

    t_ours, a = best_of(ours, args.repeat)
    t_stream, s = best_of(streaming, args.repeat)
    t_tonic, b = best_of(tonic_path, args.repeat)
    t_count = min(len(a), len(b))
    same = bool(np.array_equal(np.asarray(a)[:t_count], b[:t_count].astype(np.float32)))
    same_stream = bool(np.array_equal(s[: len(a)], np.asarray(a)))
    print(json.dumps({
        "bench": "binning",
        "events": n, "bins": len(a), "features": int(np.asarray(a).shape[1]),
        "ours": {"impl": impl, "s": round(t_ours, 4), "mev_per_s": round(n / t_ours / 1e6, 2)},
        "streaming_1ms_chunks": {"impl": "stream.binner.StreamBinner", "s": round(t_stream, 4),
                                 "mev_per_s": round(n / t_stream / 1e6, 2), "same_as_ours": same_stream},
        "tonic": {"impl": "Downsample(0.25) + ToFrame(time_window)", "s": round(t_tonic, 4),
                  "mev_per_s": round(n / t_tonic / 1e6, 2)},
        "speedup_vs_tonic": round(t_tonic / t_ours, 2),
        "streaming_speedup_vs_tonic": round(t_tonic / t_stream, 2),
        "target_speedup": 1.5,
        "same_counts_as_tonic": same,
        "file_decoding": file_decoding(2),
        "cpu_count": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
        "tonic_version": tonic.__version__,
    }))


if __name__ == "__main__":
    main()
