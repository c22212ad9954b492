"""Many gesture streams on one model in one process (s2node.batch.StreamBatch), side by side in one run.

The shipped gesture model (models/gesture-egru) is fed the demo recording binned as in training, each stream
starting at another bin, every stream stepping every tick. Prints one JSON object: aggregate steps/s (streams x
ticks / s) with 1, 8 and 64 streams for each backend (node fp32, node int8, torch), the ratios to 1 stream and to a
lone StepModel, in wall-clock and CPU seconds (steadier on a shared machine). The configurations run
interleaved, best of --repeat.
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
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from s2node import modelfile
from s2node.batch import load_stream_batch
from s2node.node_inputs import gesture_samples
from s2node.runtime import limit_blas_threads
from s2node.step import load_step_model

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "gesture-egru"
DEMO = ROOT / "models" / "demo-gestures.aedat4"
BACKENDS = {"node_fp32": ("node", "fp32"), "node_int8": ("node", "int8"), "torch": ("torch", "fp32")}


def batch_steps_per_s(backend: str, numerics: str, n: int, bins: np.ndarray, ticks: int) -> tuple[float, float]:
    """(stream-steps per wall s, per CPU s) of n streams stepping every tick."""
    batch = load_stream_batch(MODEL, n, backend, numerics=numerics)  # type: ignore[arg-type]
    offsets = (np.arange(n) * 97) % len(bins)
    batch.step_many({i: bins[offsets[i]] for i in range(n)})  # warm-up
    c0, t0 = time.process_time(), time.perf_counter()
    for t in range(1, ticks + 1):
        batch.step_many({i: bins[(offsets[i] + t) % len(bins)] for i in range(n)})
    return n * ticks / (time.perf_counter() - t0), n * ticks / (time.process_time() - c0)


def lone_steps_per_s(backend: str, numerics: str, bins: np.ndarray, ticks: int) -> tuple[float, float]:
    model = load_step_model(MODEL, backend, numerics=numerics)  # type: ignore[arg-type]
    model.step(bins[0])
    c0, t0 = time.process_time(), time.perf_counter()
    for t in range(1, ticks + 1):
        model.step(bins[t % len(bins)])
    return ticks / (time.perf_counter() - t0), ticks / (time.process_time() - c0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer ticks")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds; the best of each is kept")
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 8, 64])
    args = ap.parse_args()
    torch.set_num_threads(1)
    limit_blas_threads(1)
    config, _ = modelfile.load(MODEL)
    bins = gesture_samples(config, events_path=DEMO)[0][0]
    steps = 300 if args.quick else 1200  # stream-steps per configuration and round
    best: dict[str, np.ndarray] = {}  # best (wall, CPU) rates over the rounds
    for _ in range(args.repeat):
        for name, (backend, numerics) in BACKENDS.items():
            for n in args.streams:
                sps = np.array(batch_steps_per_s(backend, numerics, n, bins, max(4, steps // n)))
                best[f"{name}_{n}"] = np.maximum(best.get(f"{name}_{n}", sps), sps)
            sps = np.array(lone_steps_per_s(backend, numerics, bins, steps))
            best[f"{name}_lone"] = np.maximum(best.get(f"{name}_lone", sps), sps)
    bin_s = config["input"]["bin_us"] / 1e6
    result: dict = {"bench": "streams", "cpu_count": os.cpu_count(), "torch_threads": 1,
                    "python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
                    "model": MODEL.name, "input_active_fraction": float((bins != 0).mean()),
                    "bin_us": config["input"]["bin_us"], "repeat": args.repeat}
    for name in BACKENDS:
        one, lone = best[f"{name}_1"], best[f"{name}_lone"]
        r: dict = {"lone_steps_per_s": float(lone[0]), "lone_steps_per_cpu_s": float(lone[1])}
        for n in args.streams:
            sps = best[f"{name}_{n}"]
            r[f"streams_{n}"] = {"steps_per_s": float(sps[0]), "steps_per_cpu_s": float(sps[1]),
                                 "over_1_stream": float(sps[0] / one[0]), "over_1_stream_cpu": float(sps[1] / one[1]),
                                 "over_lone": float(sps[0] / lone[0]), "over_lone_cpu": float(sps[1] / lone[1]),
                                 "realtime_streams": float(sps[0] * bin_s)}  # streams kept in real time
        result[name] = r
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
