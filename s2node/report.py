"""The paper's Table II for any model on the emulated chip: power, time and energy per inference for the chip,
the same chip running dense, and a batch-1 GPU, with their ratios; and the sweeps behind `--plot`.

Counters per step come either from running the node (a model file: measured activity, the node's own cost of
every step) or from expected counts at a stated activity (a preset, Rockpool's rate input): each source's
synops, packets and stored weights scale with the fraction of sources that send. One inference is a number of
timesteps, stated with the figures (`inference`): for language models one bptt window of 70 tokens (the paper's
sequence length), for gestures one sample. The GPU is `cost.gpu_step_estimate`, anchored on the paper's A100.
The host's share (embedding look-ups, the decoder when it runs on the host) is counted apart and is not in the
chip's figures.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from s2node.compiler import CompiledModel, stored_weights_walked
from s2node.cost import (
    A100_POWER_W,
    A100_TIME_PER_INFERENCE_S,
    CostTable,
    gpu_step_estimate,
    step_cost,
    table_at_end,
)
from s2node.errors import S2NodeError
from s2node.runtime import StepStats

# Table II of arXiv 2312.09084 (as quoted): per batch-1 inference.
PAPER = {"chip": {"power_w": 0.39, "time_s": 170.25e-3, "energy_j": 0.0653},
         "gpu": {"power_w": A100_POWER_W, "time_s": A100_TIME_PER_INFERENCE_S, "energy_j": 1.1935},
         "gpu_over_chip_energy": 18.3, "chip_over_gpu_time": 8.6, "activity_sparsity": 0.797,
         "weight_sparsity": 0.95, "band": "5-18x less energy than a GPU (SNUFA 2024 abstract)"}


@dataclass(frozen=True)
class Activity:
    """Per step: the fraction of each EGRU layer's units that fire, and of the inputs that are non-zero."""

    layers: tuple[float, ...]
    input: float = 1.0


def expected_step_stats(m: CompiledModel, act: Activity, weight_scale: float = 1.0) -> StepStats:
    """Expected counters of one step at an activity (rates, not a raster). weight_scale multiplies the stored
    weights (a weight-sparsity sweep with the placement held fixed)."""
    n = m.n_pes_used
    syn, pin, pout, upd, dram = (np.zeros(n) for _ in range(5))
    emb_syn = 0.0
    for i, g in enumerate(m.groups):
        sl = slice(g.pe_start, g.pe_start + g.n_pes)
        units = np.diff(g.bounds)
        if g.name == "embedding":  # one token a step: an average row of the table; it sends the active values
            syn[sl], pin[sl], pout[sl] = g.nnz_in.mean(0), m.recv_in[i].mean(0), units * act.input
            emb_syn = float(syn[sl].sum())
            continue
        if g.name == "decoder":
            a_in = act.layers[-1]
            syn[sl], pin[sl] = g.nnz_in.sum(0) * a_in * weight_scale, m.recv_in[i].sum(0) * a_in
            pout[sl], upd[sl] = 1, units
        else:
            li = int(g.name.removeprefix("egru"))
            a_in, a = (act.input if li == 0 else act.layers[li - 1]), act.layers[li]
            syn[sl] = (g.nnz_in.sum(0) * a_in + g.nnz_rec.sum(0) * a) * weight_scale
            pin[sl] = m.recv_in[i].sum(0) * a_in + m.recv_rec[i].sum(0) * a
            pout[sl], upd[sl] = units * a, units
        if g.spilled:
            dram[sl] = syn[sl] * g.bytes_per_weight
    pe_nnz = stored_weights_walked(m) * weight_scale
    st = StepStats(m.numerics, np.array([g.pe_start for g in m.groups]), syn, pin, pout, upd, dram,
                   layout=m.layout, pe_nnz=pe_nnz)
    on_pes = m.decoder == "pe"
    dec = float(syn[m.groups[-1].pe_start:].sum()) if on_pes else 0.0
    st.synops = round(syn.sum() - dec - emb_syn)
    st.embedding_synops = round(emb_syn)
    st.decoder_synops = round(dec) if on_pes else int(np.count_nonzero(m.spec.decoder_weight) * act.layers[-1])
    return st


def _row(energy_j: float, time_s: float) -> dict[str, float]:
    return {"power_w": energy_j / time_s if time_s else 0.0, "time_s": time_s, "energy_j": energy_j}


def _gpu_step(m: CompiledModel, table: CostTable) -> dict[str, float]:
    dense_bytes = 4 * (sum(layer.n_weights for layer in m.spec.layers) + m.spec.decoder_weight.size)
    return gpu_step_estimate(table, len(m.spec.layers), dense_bytes)


def _chip_rows(m: CompiledModel, table: CostTable, act: Activity, steps: int, weight_scale: float = 1.0):
    chip = step_cost(m.chip, table, expected_step_stats(m, act, weight_scale))
    dense = step_cost(m.chip, table, expected_step_stats(m, Activity((1.0,) * len(act.layers)), weight_scale))
    return _row(chip.energy_j * steps, chip.latency_s * steps), _row(dense.energy_j * steps, dense.latency_s * steps)


def table_ii(m: CompiledModel, table: CostTable, act: Activity, steps_per_inference: int, inference: str,
             measured: dict[str, float] | None = None, gpu_bench: dict[str, Any] | None = None) -> dict[str, Any]:
    """Table II rows, ratios, the host's share and the range over the assumed constants' intervals (from the
    expected counts at the same activity, also when `measured` gives the chip row).
    measured: {"energy_j_per_step", "latency_s_per_step"} from a node run replaces the expected chip row.
    gpu_bench: `s2 node gpu-bench`'s result ({"step_s", "power_w", ...}) replaces the anchored GPU row."""
    steps = steps_per_inference
    chip, dense = _chip_rows(m, table, act, steps)
    if measured is not None:
        chip = _row(measured["energy_j_per_step"] * steps, measured["latency_s_per_step"] * steps)
    g = _gpu_step(m, table)
    gpu = _row(g["gpu_energy_per_step_j"] * steps, g["gpu_step_s"] * steps)
    gpu_source = "estimate anchored on the paper's A100 (cost.gpu_step_estimate)"
    if gpu_bench is not None:
        if gpu_bench.get("power_w") is None:
            raise S2NodeError("the GPU bench has no power figure: rerun it with --cpu-power-w or where NVML answers")
        step_s = float(gpu_bench["step_s"])
        gpu = _row(step_s * float(gpu_bench["power_w"]) * steps, step_s * steps)
        g = {**g, "gpu_bound": "measured"}
        gpu_source = f"measured: {gpu_bench.get('device_name', '?')}, power {gpu_bench.get('power_source', '?')}"
    ratios = {"gpu_over_chip_energy": gpu["energy_j"] / chip["energy_j"],
              "chip_over_gpu_time": chip["time_s"] / gpu["time_s"],
              "dense_over_chip_energy": dense["energy_j"] / chip["energy_j"]}
    spread = {}
    for end in (0, 1):
        t = table_at_end(table, end)
        c, _ = _chip_rows(m, t, act, steps)
        spread[end] = {"chip_energy_j": c["energy_j"], "chip_time_s": c["time_s"],
                       "gpu_over_chip_energy": gpu["energy_j"] / c["energy_j"],
                       "chip_over_gpu_time": c["time_s"] / gpu["time_s"]}
    rng = {k: sorted([spread[0][k], spread[1][k]]) for k in spread[0]}
    st = expected_step_stats(m, act)
    host = {"embedding": m.embedding if m.spec.task == "lm" else "none (inputs arrive as events)",
            "decoder": m.decoder,
            "packets_sent_per_inference": (1 if m.embedding == "pe" else m.spec.n_inputs * act.input) * steps,
            "decoder_synops_on_host_per_inference": st.decoder_synops * steps if m.decoder == "host" else 0,
            "note": "the host's work is not in the chip's figures"}
    return {"inference": inference, "steps_per_inference": steps, "numerics": m.numerics, "layout": m.layout,
            "clock_hz": m.chip.clock_hz, "voltage_v": m.chip.voltage_v, "pes_used": m.n_pes_used,
            "activity_sparsity": 1.0 - float(np.mean(act.layers)), "input_activity": act.input,
            "weight_sparsity": 1.0 - sum(x.nnz for x in m.spec.layers) / sum(x.n_weights for x in m.spec.layers),
            "rows": {"chip": chip, "dense_chip": dense, "gpu": gpu}, "ratios": ratios,
            "range_over_assumptions": rng, "gpu_bound": g["gpu_bound"], "gpu_source": gpu_source, "host": host,
            "chip_source": "node run (measured activity)" if measured else "expected counts at the stated activity",
            "paper": PAPER}


def layout_comparison(m_column: CompiledModel, m_csr: CompiledModel, table: CostTable, act: Activity) -> dict:
    """Bytes per PE and cycles per step (and per input event) of the two weight layouts, side by side."""
    out = {}
    for name, m in (("column", m_column), ("csr", m_csr)):
        cost = step_cost(m.chip, table, expected_step_stats(m, act))
        events = m.spec.n_inputs * act.input + sum(h * a for h, a in zip(
            [x.hidden_size for x in m.spec.layers], act.layers, strict=True))
        out[name] = {"pes_used": m.n_pes_used, "data_bytes_per_pe_max": int(m.data_bytes_per_pe.max()),
                     "pointer_bytes": int(sum((g.sram["column_pointers"] + g.sram["row_pointers"]).sum()
                                              for g in m.groups)),
                     "cycles_per_step_max_pe": float(cost.cycles_per_pe.max()),
                     "cycles_per_step_total": float(cost.cycles_per_pe.sum()),
                     "cycles_per_event": float(cost.cycles_per_pe.sum() / max(events, 1e-9)),
                     "latency_s_per_step": cost.latency_s, "energy_j_per_step": cost.energy_j}
    return out


def sweeps(m: CompiledModel, table: CostTable, act: Activity, steps: int, points: int = 25) -> dict[str, Any]:
    """Energy per inference against activity sparsity (weights as placed) and weight sparsity (activity as
    given, placement held fixed: stored weights scale): chip, dense chip, GPU."""
    g = _gpu_step(m, table)["gpu_energy_per_step_j"] * steps
    w0 = 1.0 - sum(x.nnz for x in m.spec.layers) / sum(x.n_weights for x in m.spec.layers)
    act_s = np.linspace(0.0, 0.99, points)
    a_rows = [_chip_rows(m, table, dataclasses.replace(act, layers=(1.0 - s,) * len(act.layers)), steps)
              for s in act_s]
    w_s = np.linspace(0.0, 0.99, points)
    w_rows = [_chip_rows(m, table, act, steps, (1.0 - w) / max(1.0 - w0, 1e-9)) for w in w_s]
    return {"activity_sparsity": act_s.tolist(), "chip_vs_activity": [r[0]["energy_j"] for r in a_rows],
            "dense_vs_activity": [r[1]["energy_j"] for r in a_rows], "gpu_j": g,
            "weight_sparsity": w_s.tolist(), "chip_vs_weights": [r[0]["energy_j"] for r in w_rows],
            "dense_vs_weights": [r[1]["energy_j"] for r in w_rows],
            "at": {"activity_sparsity": 1.0 - float(np.mean(act.layers)), "weight_sparsity": w0}}
