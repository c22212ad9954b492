"""Event-camera model: event count and CPU time per render rate, side by side (one JSON object).

    python bench/bench_dvs_sim.py [--duration-s 2] [--label 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace

import numpy as np

from sources.gesture_render import draw_subject, render_gesture_events


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration-s", type=float, default=2.0)
    ap.add_argument("--label", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    subject = draw_subject(np.random.default_rng(args.seed))
    quiet = replace(subject, dvs=replace(subject.dvs, noise_hz=0.0, hot_pixel_fraction=0.0))
    runs = {}
    for fps in (250, 500, 1000):
        t = time.process_time()
        rng = np.random.default_rng(args.seed + 1)
        n = render_gesture_events(args.label, quiet, args.duration_s, rng, fps=fps).size
        runs[fps] = {"events": int(n), "cpu_s": round(time.process_time() - t, 3)}
    print(json.dumps({
        "bench": "dvs_sim", "duration_s": args.duration_s, "label": args.label, "runs": runs,
        "events_ratio_250_vs_1000": round(runs[250]["events"] / runs[1000]["events"], 4),
        "cpu_ratio_1000_vs_250": round(runs[1000]["cpu_s"] / max(runs[250]["cpu_s"], 1e-9), 2),
        "cpu_count": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
    }))


if __name__ == "__main__":
    main()
