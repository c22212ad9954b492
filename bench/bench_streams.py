"""Many gesture streams on one model in one process (s2node.batch.StreamBatch), side by side in one run.

The shipped gesture model (models/gesture-egru) is fed the demo recording binned as in training, the shipped
character LM (models/shakespeare-egru) random characters; each stream starts at another input and every stream
steps every tick. Prints one JSON object: aggregate steps/s (streams x ticks / s) with 1, 8 and 64 streams for
each model and backend (node fp32, node int8, torch), the ratios to 1 stream and to a lone StepModel, in
wall-clock and CPU seconds (steadier on a shared machine). Each configuration is timed over the same span of wall
clock; the configurations run interleaved, best of --repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
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
GESTURE, CHAR_LM = ROOT / "models" / "gesture-egru", ROOT / "models" / "shakespeare-egru"
DEMO = ROOT / "models" / "demo-gestures.aedat4"
BACKENDS = {"node_fp32": ("node", "fp32"), "node_int8": ("node", "int8"), "torch": ("torch", "fp32")}
MIN_TICKS = 16  # ticks of each timed run at least


def timed(step: Callable[[int], object], min_s: float) -> tuple[int, float, float]:
    """step(t) for t = 1, 2, ... until MIN_TICKS calls and min_s of wall clock at least: (ticks, wall s, CPU s).
    Every configuration is timed over about the same span, so that on a shared machine each meets about as many of
    the other processes' time slices (a fixed count of stream-steps would time 64 streams over a few ms only)."""
    c0, t0 = time.process_time(), time.perf_counter()
    t = 0
    while t < MIN_TICKS or time.perf_counter() - t0 < min_s:
        t += 1
        step(t)
    return t, time.perf_counter() - t0, time.process_time() - c0


def batch_steps_per_s(model: Path, backend: str, numerics: str, n: int, bins: np.ndarray,
                      min_s: float) -> tuple[float, float]:
    """(stream-steps per wall s, per CPU s) of n streams stepping every tick, stream i from input i·97 on."""
    batch = load_stream_batch(model, n, backend, numerics=numerics)  # type: ignore[arg-type]
    offsets = (np.arange(n) * 97) % len(bins)
    batch.step_many({i: bins[offsets[i]] for i in range(n)})  # warm-up
    ticks, wall_s, cpu_s = timed(lambda t: batch.step_many({i: bins[(offsets[i] + t) % len(bins)] for i in range(n)}),
                                 min_s)
    return n * ticks / wall_s, n * ticks / cpu_s


def lone_steps_per_s(model: Path, backend: str, numerics: str, bins: np.ndarray,
                     min_s: float) -> tuple[float, float]:
    lone = load_step_model(model, backend, numerics=numerics)  # type: ignore[arg-type]
    lone.step(bins[0])
    ticks, wall_s, cpu_s = timed(lambda t: lone.step(bins[t % len(bins)]), min_s)
    return ticks / wall_s, ticks / cpu_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="shorter timed runs")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds; the best of each is kept")
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 8, 64])
    args = ap.parse_args()
    torch.set_num_threads(1)
    limit_blas_threads(1)
    gesture_config, _ = modelfile.load(GESTURE)
    lm_config, _ = modelfile.load(CHAR_LM)
    inputs = {"gesture": (GESTURE, gesture_samples(gesture_config, events_path=DEMO)[0][0]),
              "char_lm": (CHAR_LM, np.random.default_rng(0).integers(0, len(lm_config["vocab"]), 2000))}
    min_s = 0.04 if args.quick else 0.15  # wall clock of each timed run, configuration and round
    best: dict[str, np.ndarray] = {}  # best (wall, CPU) rates over the rounds
    for _ in range(args.repeat):
        for task, (model, xs) in inputs.items():
            for name, (backend, numerics) in BACKENDS.items():
                for n in args.streams:
                    sps = np.array(batch_steps_per_s(model, backend, numerics, n, xs, min_s))
                    best[f"{task}_{name}_{n}"] = np.maximum(best.get(f"{task}_{name}_{n}", sps), sps)
                sps = np.array(lone_steps_per_s(model, backend, numerics, xs, min_s))
                best[f"{task}_{name}_lone"] = np.maximum(best.get(f"{task}_{name}_lone", sps), sps)
    bins = inputs["gesture"][1]
    bin_s = gesture_config["input"]["bin_us"] / 1e6
    result: dict = {"bench": "streams", "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
                    "torch_threads": 1, "python": platform.python_version(), "numpy": np.__version__,
                    "torch": torch.__version__, "gesture_model": GESTURE.name, "char_lm_model": CHAR_LM.name,
                    "gesture_input_active_fraction": float((bins != 0).mean()),
                    "bin_us": gesture_config["input"]["bin_us"], "repeat": args.repeat, "timed_s": min_s}
    for task in inputs:
        for name in BACKENDS:
            one, lone = best[f"{task}_{name}_1"], best[f"{task}_{name}_lone"]
            r: dict = {"lone_steps_per_s": float(lone[0]), "lone_steps_per_cpu_s": float(lone[1])}
            for n in args.streams:
                sps = best[f"{task}_{name}_{n}"]
                r[f"streams_{n}"] = {
                    "steps_per_s": float(sps[0]), "steps_per_cpu_s": float(sps[1]),
                    "over_1_stream": float(sps[0] / one[0]), "over_1_stream_cpu": float(sps[1] / one[1]),
                    "over_lone": float(sps[0] / lone[0]), "over_lone_cpu": float(sps[1] / lone[1])}
                if task == "gesture":
                    r[f"streams_{n}"]["realtime_streams"] = float(sps[0] * bin_s)  # kept in real time
            result[f"{task}_{name}"] = r
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
