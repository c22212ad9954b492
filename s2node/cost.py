"""The cost model: pure functions (ChipSpec, CostTable, StepStats) -> Cost, after Rockpool's Xylo cycles model.

Per PE and timestep, cycles = overhead + packets_in·c_in + synops·c_syn + neuron_updates·c_upd
+ packets_out·c_out + DRAM stall (bytes / bandwidth · clock). Within one timestep the layers run in sequence
(layer l+1 needs layer l's events of the same step), so latency = Σ over layer groups of (the slowest PE of the
group / clock + one network hop). Energy = Σ cycles·e_cycle + packets delivered·e_packet + DRAM bytes·e_dram
+ static power of the used PEs and the chip over the latency (race to idle; idle PEs are power-gated,
an assumption). No per-op energy of SpiNNaker 2 is published (reference file, 4.1: NOT FOUND), so every
energy constant below is an assumption, named and overridable (`CostTable.from_json`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from s2node.chip import ChipConfigError, ChipSpec


@dataclass(frozen=True)
class CostTable:
    """SI units. 'assumption' = no published figure; chosen as plausible for a 22 nm Cortex-M4F PE."""

    cycles_step_overhead: float = 200.0  # timer interrupt, barrier, DMA set-up per timestep (assumption)
    cycles_per_packet_in: float = 20.0  # interrupt, key lookup, column-pointer fetch (assumption)
    cycles_per_synop_fp32: float = 4.0  # load value+index, FMA, store accumulator on the M4F (assumption)
    cycles_per_synop_int8: float = 1.0  # 8-bit MACs on the MAC array / SIMD, sparse column (assumption)
    cycles_per_neuron_update: float = 80.0  # 2 sigmoids + tanh (exp accelerator), state, threshold (assumption)
    cycles_per_packet_out: float = 10.0  # build and send one multicast packet (assumption)
    energy_per_cycle_j: float = 15e-12  # active PE energy per clock cycle incl. SRAM (assumption)
    energy_per_packet_j: float = 50e-12  # NoC + router per delivered packet (assumption)
    energy_per_dram_byte_j: float = 32e-12  # LPDDR4 ~4 pJ/bit, a typical published figure (assumption)
    static_power_per_pe_w: float = 1e-3  # leakage of a powered PE (assumption)
    static_power_chip_w: float = 50e-3  # router, NoC, periphery (assumption)
    hop_latency_s: float = 100e-9  # packet from sender to receiving PE, one layer hop (assumption)
    # Single-batch GPU estimate (dense; every weight read every step), all assumptions:
    gpu_power_w: float = 70.0  # board power of a datacenter GPU at low utilisation
    gpu_kernel_s: float = 5e-6  # launch-bound time per kernel at batch 1
    gpu_kernels_per_layer: float = 6.0  # matmuls + fused gate element-wise ops per layer and step
    gpu_bandwidth_bytes_per_s: float = 2e12  # HBM bandwidth

    @classmethod
    def from_json(cls, path: str | Path) -> CostTable:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ChipConfigError(f"{p}: bad cost table: {e}") from e
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) - names:
            raise ChipConfigError(f"{p}: cost table must be an object of known fields ({', '.join(sorted(names))})")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Cost:
    cycles_per_pe: np.ndarray  # [n_pes]
    latency_s: float
    energy_j: float
    energy_dynamic_j: float
    energy_static_j: float


def pe_cycles(chip: ChipSpec, table: CostTable, numerics: str, synops: np.ndarray, packets_in: np.ndarray,
              packets_out: np.ndarray, neuron_updates: np.ndarray, dram_bytes: np.ndarray) -> np.ndarray:
    c_syn = table.cycles_per_synop_fp32 if numerics == "fp32" else table.cycles_per_synop_int8
    return (
        table.cycles_step_overhead
        + table.cycles_per_packet_in * packets_in
        + c_syn * synops
        + table.cycles_per_neuron_update * neuron_updates
        + table.cycles_per_packet_out * packets_out
        + dram_bytes / chip.dram_bandwidth_bytes_per_s * chip.clock_hz
    )


def step_cost(chip: ChipSpec, table: CostTable, stats: Any) -> Cost:
    """One timestep's cost from a StepStats (per-PE counters, group starts, numerics)."""
    cyc = pe_cycles(chip, table, stats.numerics, stats.pe_synops, stats.pe_packets_in, stats.pe_packets_out,
                    stats.pe_neuron_updates, stats.pe_dram_bytes)
    slowest = np.maximum.reduceat(cyc, stats.group_starts)
    latency = float(slowest.sum() / chip.clock_hz + len(stats.group_starts) * table.hop_latency_s)
    dyn = float(cyc.sum() * table.energy_per_cycle_j + stats.pe_packets_in.sum() * table.energy_per_packet_j
                + stats.pe_dram_bytes.sum() * table.energy_per_dram_byte_j)
    static = (len(cyc) * table.static_power_per_pe_w + table.static_power_chip_w) * latency
    return Cost(cyc, latency, dyn + static, dyn, static)


def min_clock_hz(max_cycles_per_step: float, dt_s: float, margin: float = 0.2) -> float:
    """Lowest clock that finishes a step's slowest path within dt with a safety margin."""
    return max_cycles_per_step / (dt_s * (1.0 - margin))


def gpu_step_estimate(table: CostTable, n_layers: int, dense_weight_bytes: int) -> dict[str, float]:
    """Single-batch GPU step: launch-bound or bandwidth-bound, whichever is slower; energy = power x time."""
    t_launch = table.gpu_kernel_s * table.gpu_kernels_per_layer * (n_layers + 1)
    t_mem = dense_weight_bytes / table.gpu_bandwidth_bytes_per_s
    t = max(t_launch, t_mem)
    return {"gpu_step_s": t, "gpu_energy_per_step_j": t * table.gpu_power_w,
            "gpu_bound": "launch" if t_launch >= t_mem else "bandwidth"}
