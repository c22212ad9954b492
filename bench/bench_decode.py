"""Event-file decoding speed per format (Mev/s), side by side on the same synthetic events, JSON out.

Writes the same events (DAVIS346-sized sensor, ~1 Mev/s of event time) as AEDAT4, EVT3, EVT2, DAT, ES, CSV
and NPY, then times, per format: sources.files.read_events (whole file), iter_events (10 ms chunks), and the
decoding library alone (faery / aedat / numpy, before our conversion to EVENT_DTYPE), plus expelliarmus
(GPL, not used by us) on the Prophesee formats and tonic on AEDAT4 for comparison. Best of --repeat runs.

    python bench/bench_decode.py [--events 1000000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sources.events import DAVIS346, make_events
from sources.files import iter_events, read_events, write_events

EXT = {"aedat4": ".aedat4", "evt3": ".raw", "evt2": ".evt2", "dat": ".dat", "es": ".es", "csv": ".csv", "npy": ".npy"}


def synthetic(n: int, seed: int = 0) -> np.ndarray:
    """n events at ~1 Mev/s on a 346x260 sensor with some spatial structure (a moving blob plus noise)."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, n, n)) + 1_600_000_000_000_000  # epoch-like µs, as cameras write
    phase = t / 1e6 * 2 * np.pi
    x = np.clip(173 + 120 * np.cos(phase) + rng.normal(0, 15, n), 0, 345)
    y = np.clip(130 + 90 * np.sin(phase) + rng.normal(0, 15, n), 0, 259)
    noise = rng.random(n) < 0.1
    x[noise], y[noise] = rng.integers(0, 346, noise.sum()), rng.integers(0, 260, noise.sum())
    return make_events(t, x.astype(int), y.astype(int), rng.integers(0, 2, n))


def best_s(fn: Callable[[], int], repeat: int, expect: int) -> tuple[float, float]:
    """Best wall-clock and best CPU seconds of `repeat` runs (CPU time is steadier on a shared machine)."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        n = fn()
        wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, time.process_time() - c0)
        if n != expect:
            raise SystemExit(f"decoded {n} events, expected {expect}")
    return wall, cpu


def speeds(prefix: str, n: int, seconds: tuple[float, float]) -> dict[str, float]:
    wall, cpu = seconds
    return {f"{prefix}_mev_s": round(n / wall / 1e6, 2), f"{prefix}_cpu_mev_s": round(n / max(cpu, 1e-9) / 1e6, 2)}


def library_only(fmt: str, path: Path) -> Callable[[], int]:
    """The decoding library without our conversion, rechunking or checks."""
    if fmt == "aedat4":
        import aedat

        return lambda: sum(len(p["events"]) for p in aedat.Decoder(path) if "events" in p)
    if fmt == "npy":
        return lambda: len(np.load(path))
    import faery

    kind = "evt" if fmt.startswith("evt") else fmt
    return lambda: sum(len(p) for p in faery.file_decoder.Decoder(path, file_type=kind, time_range_cache=None))


def alternative(fmt: str, path: Path) -> tuple[str, Callable[[], int]] | None:
    if fmt in ("evt3", "evt2", "dat"):
        try:  # GPL-2.0, not a dependency of ours: compared only where it happens to be installed
            from expelliarmus import Wizard
        except ImportError:
            return None

        if fmt != "dat":  # expelliarmus insists on the .raw extension for EVT files
            raw = path.with_name(f"{fmt}_for_expelliarmus.raw")
            shutil.copyfile(path, raw)  # a symlink is resolved back to the other extension
            path = raw
        wizard = Wizard(encoding=fmt)
        return "expelliarmus", lambda: len(wizard.read(path))
    if fmt == "aedat4":
        import tonic.io

        return "tonic.io.read_aedat4", lambda: len(tonic.io.read_aedat4(str(path)))
    return None


def _real_recording(repeat: int) -> dict | None:
    """The DAVIS346 clip (events between APS frames and IMU packets), where the checkout has it."""
    root = Path(__file__).resolve().parents[1]
    path = next((c for c in (root.parent / "shared", root.parent.parent / "shared") if (c / "data").is_dir()), None)
    path = path / "data/davis346-traffic.aedat4" if path else None
    if path is None or not path.is_file():
        return None
    from sources.files.aedat4 import check_file_layout

    n = len(read_events(path)[0])
    wall, cpu = best_s(lambda: len(read_events(path)[0]), repeat, n)
    # the structure checked before aedat sees the file (header, packet sizes, what compressed packets may expand
    # to: docs/security.md), which read_events does on every pass
    check, _ = best_s(lambda: check_file_layout(path) or n, repeat, n)
    size_mb = path.stat().st_size / 1e6
    return {
        "file": path.name,
        "events": n,
        "file_mb": round(size_mb, 2),
        "read_s": round(wall, 4),
        "layout_check_s": round(check, 5),
        "layout_check_share_of_read": round(check / wall, 3),
        "read_mev_s": round(n / wall / 1e6, 2),
        "read_file_mb_s": round(size_mb / wall, 1),
        "read_cpu_mb_s": round(size_mb / max(cpu, 1e-9), 1),
    }


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n = args.events
    events = synthetic(n)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, ext in EXT.items():
            path = Path(tmp) / f"bench{ext}"
            write_events(path, events, DAVIS346)
            row: dict = {"bytes_per_event": round(path.stat().st_size / n, 2)}
            read_s = best_s(lambda p=path: len(read_events(p)[0]), args.repeat, n)
            iter_s = best_s(lambda p=path: sum(len(b) for b in iter_events(p, chunk_us=10_000)), args.repeat, n)
            lib_s = best_s(library_only(fmt, path), args.repeat, n)
            row.update(speeds("read", n, read_s), **speeds("iter_10ms", n, iter_s), **speeds("library", n, lib_s))
            row["read_vs_library"] = round(lib_s[0] / read_s[0], 2)
            alt = alternative(fmt, path)
            if alt is not None:
                name, fn = alt
                alt_s = best_s(fn, args.repeat, n)
                row.update(speeds(name, n, alt_s))
                row[f"read_vs_{name}"] = round(alt_s[0] / read_s[0], 2)
            results[fmt] = row
    real = _real_recording(args.repeat)
    npy_speed = results["npy"]["read_mev_s"]
    for row in results.values():
        row["read_vs_npy"] = round(row["read_mev_s"] / npy_speed, 3)
    print(
        json.dumps(
            {
                "bench": "decode",
                "events": n,
                "repeat": args.repeat,
                "sensor": [DAVIS346.width, DAVIS346.height],
                "cpu_count": os.cpu_count(),
                "load_average_1m": round(os.getloadavg()[0], 2),
                "note": "speeds: events / best wall (or CPU) seconds; *_vs_* are wall-time ratios, > 1 = we are faster",
                "machine": platform.machine(),
                "python": platform.python_version(),
                "versions": {k: _version(k) for k in ("numpy", "faery", "aedat", "expelliarmus", "tonic")},
                "formats": results,
                "real_aedat4": real,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
