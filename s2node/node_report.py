"""What `s2 node report` does: place a model file or a preset, get its activity, and build Table II.

A model file runs on the node over its own inputs (the corpus split, an event file or a DVSGesture folder), so
that the chip row is the node's measured cost and the activity is measured; a preset has no trained weights,
so its activity is the published one (`presets.Preset.activity_sparsity`) and its counts are expected ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from s2node.chip import ChipSpec
from s2node.compiler import compile_model
from s2node.cost import PAPER_TOKENS_PER_INFERENCE, CostTable
from s2node.errors import S2NodeError
from s2node.presets import build_preset, get_preset
from s2node.report import Activity, layout_comparison, sweeps, table_ii
from s2node.runtime import Node
from s2node.spec import ModelSpec


def report_preset(name: str, chip: ChipSpec, table: CostTable, *, numerics: str = "fp32",
                  decoder: str | None = None, embedding: str = "host", layout: str | None = None, spread: bool = True,
                  vocab: int | None = None, seed: int = 0, with_sweeps: bool = False,
                  gpu_bench: dict[str, Any] | None = None) -> dict[str, Any]:
    """Table II of a preset at its published activity; also both weight layouts side by side. decoder and
    layout default to the preset's (the paper's); pass the chip and table of the operating point wanted."""
    p = get_preset(name)
    decoder, layout = decoder or p.decoder, layout or p.layout
    spec = build_preset(name, vocab=vocab, seed=seed)
    act = Activity((1.0 - p.activity_sparsity,) * len(p.hidden), p.input_activity)
    kw = {"decoder": decoder, "embedding": embedding, "spread": spread}
    m = compile_model(spec, chip, numerics, layout=layout, **kw)
    other = compile_model(spec, chip, numerics, layout="csr" if layout == "column" else "column", **kw)
    out = {"preset": name, "vocab": spec.n_outputs if p.task == "lm" else None,
           **table_ii(m, table, act, p.steps_per_inference, p.inference, gpu_bench=gpu_bench),
           "placement": {k: m.report()[k] for k in ("pes_used", "data_bytes_per_pe", "dram_bytes", "groups")},
           "layouts": layout_comparison(*((m, other) if layout == "column" else (other, m)), table, act)}
    if with_sweeps:
        out["sweeps"] = sweeps(m, table, act, p.steps_per_inference)
    return out


def _gesture_steps(config: dict[str, Any], measured: float) -> tuple[int, str]:
    window = (config.get("training") or {}).get("config", {}).get("window_s")
    bin_s = float(config.get("input", {}).get("bin_us", 0)) / 1e6
    if window and bin_s > 0:
        n = max(1, round(float(window) / bin_s))
        return n, f"one gesture window of {window} s = {n} bins of {bin_s * 1e3:g} ms (the training window)"
    n = max(1, round(measured))
    return n, f"one recording as binned ({n} steps)"


def report_model(config: dict[str, Any], tensors: dict[str, np.ndarray], chip: ChipSpec, table: CostTable, *,
                 numerics: str = "fp32", decoder: str = "host", embedding: str = "host", layout: str = "column",
                 prune: float | None = None,
                 dram: bool = False, spread: bool = False, split: str | None = None,
                 text_path: str | Path | None = None, events_path: str | Path | None = None,
                 data: str | Path | None = None, max_steps: int = 280, data_dir: str | Path | None = None,
                 with_sweeps: bool = False, gpu_bench: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the model on the node for up to max_steps steps of its inputs; Table II from the measured cost."""
    from s2node.node_inputs import gesture_samples, lm_token_ids

    node = Node.from_spec(ModelSpec.from_model(config, tensors), chip, numerics, prune, dram=dram, spread=spread,
                          cost_table=table, decoder=decoder, embedding=embedding, layout=layout)
    n_layers = len(node.spec.layers)
    fired = np.zeros(n_layers)
    inputs_active = 0.0
    node.reset_stats()
    if config["task"] == "lm":
        ids, _ = lm_token_ids(config, text_path=text_path, split=split or "test", data_dir=data_dir)
        node.reset()
        for tok in ids[:max_steps]:
            node.step(int(tok))
            fired += node.last.events_per_layer
            inputs_active += node.last.events_in / node.spec.n_inputs
        steps, inference = PAPER_TOKENS_PER_INFERENCE, (
            "one bptt window of 70 tokens (the paper's sequence length; the paper does not define it)")
    else:
        if events_path is None and data is None:
            raise S2NodeError("a gesture model's report needs --events FILE or --data DIR")
        samples = gesture_samples(config, events_path=events_path, data=data)
        lens = []
        for x, _ in samples:
            node.reset()
            for v in x[: max(0, max_steps - node.stats.steps)]:
                node.step(v)
                fired += node.last.events_per_layer
                inputs_active += node.last.events_in / node.spec.n_inputs
            lens.append(len(x))
            if node.stats.steps >= max_steps:
                break
        steps, inference = _gesture_steps(config, float(np.mean(lens)))
    n = node.stats.steps
    if n == 0:
        raise S2NodeError("no steps to measure")
    act = Activity(tuple(float(f / n / h) for f, h in zip(fired, node.kernel.hidden, strict=True)),
                   inputs_active / n)
    measured = {"energy_j_per_step": node.stats.energy_j / n,
                "latency_s_per_step": float(np.mean(node.stats.latencies_s))}
    out = {"model_steps_run": n, **table_ii(node.compiled, table, act, steps, inference, measured, gpu_bench)}
    out["activity_per_layer"] = list(act.layers)
    if with_sweeps:
        out["sweeps"] = sweeps(node.compiled, table, act, steps)
    return out
