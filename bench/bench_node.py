"""Emulated SpiNNaker 2 node vs the PyTorch single-batch step on the same weights, side by side in one run.

Prints one JSON object: emulator steps/s for a gesture-sized model against its real-time requirement at its
bin size, the character LM's tokens/s (target >= 1,000 on one core), ratios to dense PyTorch, and how the
emulator's time per step grows with events per step. Random weights scaled so that units fire (tests/
node_models.py). The "shipped" section runs the trained models of models/ at their own activity (the Shakespeare
character LM on its vocabulary, the gesture model on the demo recording), in wall-clock and in CPU seconds (steadier
on a shared machine), best of three interleaved rounds. `--quick` shortens every measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node_models import make_gesture, make_lm, random_counts

from s2node.models import load_torch_model
from s2node.runtime import Node, limit_blas_threads


def torch_steps_per_s(model, inputs, lm: bool) -> float:
    """PyTorch, batch 1, one step at a time with EGRU.step (what a streaming GPU/CPU deployment does)."""
    with torch.no_grad():
        states = [None] * len(model.rnn.layers)
        t0 = time.perf_counter()
        for v in inputs:
            x = model.embedding(torch.tensor([int(v)])) if lm else torch.from_numpy(v)[None]
            for i, layer in enumerate(model.rnn.layers):
                states[i] = layer.step(x, states[i])
                x = states[i].y
            model.decoder(x)
        return len(inputs) / (time.perf_counter() - t0)


def cpu_and_wall(fn) -> tuple[float, float]:
    """(CPU s, wall s) of fn()."""
    c, w = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c, time.perf_counter() - w


def shipped(n: int) -> dict:
    """The trained models of models/ on the node (fp32, int8) and in PyTorch, steps/s wall and CPU, best of 3."""
    from s2node import modelfile
    from s2node.node_inputs import gesture_samples

    root = Path(__file__).resolve().parent.parent / "models"
    out: dict = {}
    for name in ("shakespeare-egru", "gesture-egru"):
        path = root / name
        config, _ = modelfile.load(path)
        lm = config["task"] == "lm"
        if lm:
            xs = np.random.default_rng(0).integers(0, len(config["vocab"]), n)
        else:
            xs = gesture_samples(config, events_path=root / "demo-gestures.aedat4")[0][0][:n]
        model, _ = load_torch_model(path)
        nodes = {num: Node.load(path, numerics=num) for num in ("fp32", "int8")}
        runs = {"pytorch": (torch_steps_per_s, (model, xs, lm)),
                **{f"node_{num}": (node_steps_per_s, (nd, xs)) for num, nd in nodes.items()}}
        best: dict[str, list[float]] = {k: [0.0, 0.0] for k in runs}
        for _ in range(3):
            for k, (fn, fn_args) in runs.items():
                cpu, wall = cpu_and_wall(lambda fn=fn, fn_args=fn_args: fn(*fn_args))
                best[k] = [max(best[k][0], len(xs) / wall), max(best[k][1], len(xs) / cpu)]
        r: dict = {"steps": len(xs), "activity_sparsity": nodes["fp32"].stats.activity_sparsity}
        for k, (wall_sps, cpu_sps) in best.items():
            r[f"{k}_steps_per_s"], r[f"{k}_steps_per_cpu_s"] = wall_sps, cpu_sps
        for num in ("fp32", "int8"):
            r[f"node_{num}_over_pytorch"] = best[f"node_{num}"][0] / best["pytorch"][0]
            r[f"node_{num}_over_pytorch_cpu"] = best[f"node_{num}"][1] / best["pytorch"][1]
        r["int8_over_fp32_cpu"] = best["node_int8"][1] / best["node_fp32"][1]
        out[name] = r
    return out


def node_steps_per_s(node, inputs) -> float:
    node.reset()
    node.reset_stats()
    t0 = time.perf_counter()
    for v in inputs:
        node.step(v)
    return len(inputs) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    limit_blas_threads(1)
    n = 300 if args.quick else 2000
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="bench_node_"))
    result: dict = {"cpu_count": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()],
                    "torch_threads": 1, "python": platform.python_version(), "numpy": np.__version__,
                    "torch": torch.__version__}

    # gesture-sized: 2 x 32 x 32 input (128 x 128 sensor, downsample 4), 256 hidden, 10 ms bins
    gpath = make_gesture(tmp / "gesture", n_in=2048, hidden=(256,), gain=2.0)
    gmodel, gcfg = load_torch_model(gpath)
    bin_s = gcfg["input"]["bin_us"] / 1e6
    x = random_counts(rng, n, 2048, 0.02)
    g: dict = {"input": 2048, "hidden": [256], "bin_us": gcfg["input"]["bin_us"],
               "realtime_steps_per_s": 1.0 / bin_s, "input_rate": 0.02}
    for num in ("fp32", "int8"):
        node = Node.load(gpath, numerics=num)
        sps = node_steps_per_s(node, x)
        g[f"node_{num}_steps_per_s"] = sps
        g[f"node_{num}_realtime_factor"] = sps * bin_s
        g[f"node_{num}_summary"] = node.stats.summary()
    node = Node.load(gpath, prune=0.9)
    g["node_fp32_prune0.9_steps_per_s"] = node_steps_per_s(node, x)
    g["node_fp32_prune0.9_summary"] = {**node.stats.summary(), "pes_used": node.n_pes}
    g["pytorch_steps_per_s"] = torch_steps_per_s(gmodel, x, lm=False)
    g["node_fp32_over_pytorch"] = g["node_fp32_steps_per_s"] / g["pytorch_steps_per_s"]
    # time vs events per step
    node = Node.load(gpath)
    scaling = []
    for rate in (0.0, 0.002, 0.01, 0.05, 0.2, 1.0):
        xs = random_counts(rng, max(50, n // 10), 2048, rate)
        sps = node_steps_per_s(node, xs)
        s = node.stats.summary()
        scaling.append({"input_rate": rate, "events_in_per_step": s["events_in_per_step"],
                        "events_out_per_step": s["events_out_per_step"], "synops_per_step": s["synops_per_step"],
                        "us_per_step": 1e6 / sps})
    g["time_vs_events"] = scaling
    result["gesture"] = g

    # character LM: 60 chars, embedding 64, 3 x 256 EGRU (the paper's 3-layer shape, smaller)
    lpath = make_lm(tmp / "lm", hidden=(256, 256, 256), emb=64, gain=2.0)
    lmodel, lcfg = load_torch_model(lpath)
    ids = rng.integers(0, len(lcfg["vocab"]), n)
    lm: dict = {"vocab": len(lcfg["vocab"]), "emb": 64, "hidden": [256, 256, 256], "target_tokens_per_s": 1000}
    for num, prune in (("fp32", None), ("int8", None), ("fp32", 0.9), ("int8", 0.9), ("fp32", 0.95)):
        node = Node.load(lpath, numerics=num, prune=prune)
        tag = f"node_{num}" + (f"_prune{prune}" if prune else "")
        lm[f"{tag}_tokens_per_s"] = node_steps_per_s(node, ids)
        s = node.stats.summary()
        d = node.dense_step_stats()
        lm[f"{tag}_summary"] = {**s, "pes_used": node.n_pes, "dense_synops_per_step": d.synops,
                                "dense_energy_j_per_step": d.cost.energy_j}
    lm["pytorch_tokens_per_s"] = torch_steps_per_s(lmodel, ids, lm=True)
    lm["node_fp32_over_pytorch"] = lm["node_fp32_tokens_per_s"] / lm["pytorch_tokens_per_s"]
    lm["meets_target"] = lm["node_fp32_tokens_per_s"] >= 1000
    result["char_lm"] = lm
    result["shipped"] = shipped(300 if args.quick else 1500)
    result["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
