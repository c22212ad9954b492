"""Node runs: drive the emulated node over a token stream or gesture recordings, beside the PyTorch model.

Reports quality (the metric of `s2 eval`: bits per character, perplexity, or accuracy), agreement with the
PyTorch model (fraction of steps with the same prediction), activity sparsity, synops, per-PE load, latency
p50/p99, energy per token or gesture, the dense-equivalent figures, a single-batch GPU estimate and the
emulator's own steps per second.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from s2node.chip import ChipSpec
from s2node.cost import CostTable, gpu_step_estimate, min_clock_hz
from s2node.errors import S2NodeError
from s2node.runtime import Node

LN2 = math.log(2.0)


@dataclass(frozen=True)
class NodeOptions:
    """How a model goes onto the chip: PE arithmetic, magnitude pruning, DRAM spill, spare PEs, chip and costs."""

    numerics: str = "fp32"
    prune: float | None = None
    dram: bool = False
    spread: bool = False
    chip: ChipSpec = field(default_factory=ChipSpec)
    cost_table: CostTable = field(default_factory=CostTable)
    decoder: str = "host"  # "host" (as the paper) | "pe"
    embedding: str = "host"  # "host" | "pe"
    layout: str = "column"  # "column" | "csr"


def run_model(config: dict[str, Any], tensors: dict[str, np.ndarray], options: NodeOptions, *,
              text_path: str | Path | None = None, split: str | None = None, data: str | Path | None = None,
              events_path: str | Path | None = None, max_steps: int | None = None,
              data_dir: str | Path | None = None, sensor_map: str = "scale") -> dict[str, Any]:
    """Compile a loaded model file onto the node and run it beside the PyTorch model (pruned alike) on its inputs:
    language models on a text file or a corpus split, gesture models on an event file or a DVSGesture folder."""
    from s2node.models import build_torch_model
    from s2node.node_inputs import gesture_samples, lm_token_ids
    from s2node.spec import ModelSpec

    lm = config["task"] == "lm"
    if lm and (data is not None or events_path is not None):
        raise S2NodeError("this is a language model: --data/--events are for gesture models; use --text or --split")
    if not lm and (text_path is not None or split is not None):
        raise S2NodeError("this is a gesture model: --text/--split are for language models; use --events or --data")
    node = Node.from_spec(ModelSpec.from_model(config, tensors), options.chip, options.numerics, options.prune,
                          dram=options.dram, spread=options.spread, cost_table=options.cost_table,
                          decoder=options.decoder, embedding=options.embedding, layout=options.layout)
    torch_model = build_torch_model(config, tensors)
    if options.prune:  # the reference runs the same pruned weights
        pruned = node.spec.to_tensors()
        torch_model.rnn.load_tensors({k: v for k, v in pruned.items() if k.startswith("rnn.")})
    if lm:
        ids, dropped = lm_token_ids(config, text_path=text_path, split=split or "test", data_dir=data_dir)
        result = run_lm(node, torch_model, ids, max_steps)
        result["tokens_dropped"] = dropped
    else:
        result = run_gesture(node, torch_model, gesture_samples(config, events_path=events_path, data=data,
                                                                sensor_map=sensor_map), max_steps)
        if events_path is not None:
            from s2node.node_inputs import event_file_mapping

            result["sensor_map"] = event_file_mapping(config, events_path, sensor_map).describe()
    result["prune"] = options.prune
    return result


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _quality(config: dict[str, Any], nll: float) -> dict[str, float]:
    if config["level"] == "char":
        return {"bpc": nll / LN2}
    return {"perplexity": math.exp(nll)}


def run_lm(node: Node, torch_model: Any, ids: np.ndarray, max_steps: int | None = None) -> dict[str, Any]:
    """Feed ids[:-1] one token per step; score the next token. PyTorch runs the same tokens in chunks."""
    import torch

    if len(ids) < 2:
        raise S2NodeError("the text needs at least two known tokens")
    n = len(ids) - 1 if max_steps is None else min(len(ids) - 1, max_steps)
    node.reset()
    node.reset_stats()
    logits = np.empty((n, node.spec.n_outputs), np.float32)
    t0 = time.perf_counter()
    for i in range(n):
        logits[i] = node.step(int(ids[i])).logits
    wall = time.perf_counter() - t0
    ref, states = [], None
    with torch.no_grad():
        for s in range(0, n, 512):
            x = torch.from_numpy(ids[s:min(n, s + 512)])[None]
            out, states, _ = torch_model(x, states)
            ref.append(out[0].numpy())
    ref_logits = np.concatenate(ref)
    target = ids[1:n + 1]
    nll = float(-_log_softmax(logits)[np.arange(n), target].mean())
    nll_ref = float(-_log_softmax(ref_logits)[np.arange(n), target].mean())
    q, q_ref = _quality(node.spec.config, nll), _quality(node.spec.config, nll_ref)
    out = {"task": "lm", **q, **{f"{k}_pytorch": v for k, v in q_ref.items()},
           "agreement": float((logits.argmax(1) == ref_logits.argmax(1)).mean()),
           "max_abs_logit_diff": float(np.abs(logits - ref_logits).max())}
    return {**out, **_figures(node, wall, n, per="token")}


def run_gesture(node: Node, torch_model: Any, samples: list[tuple[np.ndarray, int | None]],
                max_steps: int | None = None) -> dict[str, Any]:
    """Each sample [T, I] from a reset node; agreement per step on the pooled prediction; accuracy at the end."""
    import torch

    node.reset_stats()
    agree, steps, correct, labelled, wall = 0, 0, 0, 0, 0.0
    preds = []
    for x, label in samples:
        if max_steps is not None and steps >= max_steps:
            break
        node.reset()
        t0 = time.perf_counter()
        pooled = np.stack([node.step(v).logits for v in x])
        wall += time.perf_counter() - t0
        with torch.no_grad():
            step_logits, _, _ = torch_model(torch.from_numpy(np.asarray(x, np.float32))[None])
        sl = step_logits[0].numpy()
        if node.spec.readout.get("pool") == "mean":
            sl = np.cumsum(sl, 0) / np.arange(1, len(sl) + 1)[:, None]
        agree += int((pooled.argmax(1) == sl.argmax(1)).sum())
        steps += len(x)
        pred = int(pooled[-1].argmax())
        preds.append(pred)
        if label is not None:
            labelled += 1
            correct += int(pred == label)
    if not steps:
        raise S2NodeError("no gesture timesteps to run")
    classes = node.spec.config["classes"]
    bin_s = float(node.spec.config.get("input", {}).get("bin_us", 0)) / 1e6
    out: dict[str, Any] = {"task": "gesture", "samples": len(preds),
                           "accuracy": correct / labelled if labelled else None,
                           "agreement": agree / steps,
                           "predictions": [classes[p] for p in preds[:20]]}
    if bin_s > 0:  # DVFS: the lowest PE clock that still finishes the p99 step within one bin (20 % margin)
        p99 = float(np.percentile(node.stats.latencies_s, 99))
        hops = len(node.groups) * node.cost_table.hop_latency_s
        out["min_clock_hz_realtime"] = min_clock_hz(max(p99 - hops, 0.0) * node.chip.clock_hz, bin_s)
    return {**out, **_figures(node, wall, steps, per="gesture", n_items=len(preds))}


def _figures(node: Node, wall_s: float, steps: int, per: str, n_items: int | None = None) -> dict[str, Any]:
    s = node.stats.summary()
    dense = node.dense_step_stats()
    per_pe = node.stats.pe_synops / max(node.stats.steps, 1)
    hist, edges = np.histogram(per_pe, bins=10)
    items = n_items if n_items is not None else steps
    energy_per_item = node.stats.energy_j / max(items, 1)
    n_layers = len(node.spec.layers)
    dense_bytes = 4 * (sum(layer.n_weights for layer in node.spec.layers) + node.spec.decoder_weight.size)
    gpu = gpu_step_estimate(node.cost_table, n_layers, dense_bytes)
    steps_per_item = steps / max(items, 1)
    out = {
        **s,
        f"energy_j_per_{per}": energy_per_item,
        "dense_equivalent": {
            "synops_per_step": dense.synops,
            "latency_s": dense.cost.latency_s,
            "energy_j_per_step": dense.cost.energy_j,
            "energy_gain": dense.cost.energy_j / s["energy_j_per_step"] if s["energy_j_per_step"] else None,
            "synops_gain": dense.synops / s["synops_per_step"] if s["synops_per_step"] else None,
        },
        "gpu_estimate": {**gpu, f"energy_j_per_{per}": gpu["gpu_energy_per_step_j"] * steps_per_item,
                         "gpu_over_node_energy": gpu["gpu_energy_per_step_j"] / s["energy_j_per_step"]
                         if s["energy_j_per_step"] else None,
                         "paper_claim": "5-18x less energy than a GPU, single batch (SNUFA 2024 abstract)"},
        "pe_load_histogram": {"synops_per_step_bin_edges": edges.tolist(), "pes": hist.tolist()},
        "pes_used": node.n_pes,
        "numerics": node.numerics,
        "embedding": node.compiled.embedding,
        "decoder": node.compiled.decoder,
        "layout": node.compiled.layout,
        "steps_per_s": steps / wall_s if wall_s > 0 else None,
        # the stats topic's node fields, by the same formula the pipeline publishes and the UI shows
        "node_stats": {k: v for k, v in node.node_stats().items() if k != "synops_per_s"},
    }
    return out
