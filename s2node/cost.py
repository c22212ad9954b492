"""The cost model: pure functions (ChipSpec, CostTable, StepStats) -> Cost, after Rockpool's Xylo cycles model.

Per PE and timestep, cycles = overhead + packets_in·c_in + synaptic work + neuron_updates·c_upd
+ packets_out·c_out + DRAM stall (bytes / bandwidth · clock). Synaptic work depends on the weight layout:
column (CSC) = synops·c_syn (only the active sources' columns are walked); csr = stored weights·c_entry +
synops·c_csr_syn (every row is walked each step, the active entries also multiply). Within one timestep the
layers run in sequence (layer l+1 needs layer l's events of the same step), so latency = Σ over layer groups of
(the slowest PE of the group / clock + one network hop). Energy = busy cycles·e_cycle + int8 synops·e_mac +
packets delivered·e_packet + DRAM bytes·e_dram + (baseline chip power + powered PEs·p_pe)·latency.

Calibration (docs/chip-and-cost-model.md quotes every figure): the chip paper's measured powers per operating
point (`chip.OPERATING_POINTS`) give the baseline (all PEs asleep), the energy of one busy M4F cycle
((CoreMark on all PEs − asleep) / 152 PEs / clock) and of one INT8 MAC ((MAC-array power − asleep) / MACs per s).
Cycle counts per operation are Cortex-M4F instruction timings for the inner loops (stated per field); packet
and DRAM energies and the GPU's kernel count have no published figure: they are assumptions with a plausible
interval (`INTERVALS`), over which `cost_range` gives the spread.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from s2node.chip import OPERATING_POINTS, ChipConfigError, ChipSpec, OperatingPoint, operating_point

# The paper's Table II (arXiv 2312.09084, as quoted): NVIDIA A100 at batch 1: 60 W, 19.9 ms, 1.1935 J per
# inference; SpiNNaker 2: 0.39 W, 170.25 ms, 0.0653 J. One LM inference is read as one bptt window of 70 tokens
# (the paper's sequence length; the paper does not say, see docs).
A100_POWER_W = 60.0
A100_TIME_PER_INFERENCE_S = 19.9e-3
PAPER_TOKENS_PER_INFERENCE = 70
PAPER_N_LAYERS = 3
GPU_KERNELS_PER_LAYER = 6.0  # per layer and step: 2 mat-vecs, gates, state/threshold (assumption, interval 4..12)
# anchored: the A100's time per token spread over the paper model's kernels (3 EGRU layers + the decoder)
A100_KERNEL_S = A100_TIME_PER_INFERENCE_S / PAPER_TOKENS_PER_INFERENCE / (GPU_KERNELS_PER_LAYER * (PAPER_N_LAYERS + 1))


def busy_cycle_energy_j(op: OperatingPoint, n_pes: int = 152) -> float:
    """Energy of one busy M4F cycle: (CoreMark on all PEs − all asleep) / PEs / clock."""
    return (op.coremark_power_w - op.asleep_power_w) / n_pes / op.clock_hz


def mac_energy_j(op: OperatingPoint) -> float:
    """Energy of one INT8 multiply-accumulate above the baseline (TOPS count 2 ops per MAC)."""
    return (op.mac_power_w - op.asleep_power_w) / (op.mac_ops_per_s / 2)


_OP08 = OPERATING_POINTS["0.8V"]


@dataclass(frozen=True)
class CostTable:
    """SI units. Defaults: the 0.8 V / 300 MHz operating point (the ChipSpec default); `calibrated("0.5V")` for
    the other. 'measured' = derived from the chip paper; 'M4F' = instruction timings; 'assumption' = no figure."""

    cycles_step_overhead: float = 200.0  # timer IRQ, barrier, DMA set-up per timestep (assumption, 100..1000)
    cycles_per_packet_in: float = 20.0  # packet IRQ, key lookup, store payload (assumption, 10..50)
    # column layout, fp32 per synop: LDRH row index 2, VLDR weight 2, VLDR accumulator 2, VFMA 3, VSTR 2,
    # consecutive loads pipelined, loop amortised (M4F, 6..12)
    cycles_per_synop_fp32: float = 8.0
    cycles_per_synop_int8: float = 1.0  # 8-bit MACs on the 64-MAC array / SIMD, sparse column (assumption, 1..4)
    # csr layout, every stored entry every step: LDRH source index 2, LDR its payload 2, CBZ 1 (M4F, 4..8) ...
    cycles_per_csr_entry: float = 5.0
    # ... and an entry whose source sent: VLDR weight 2, VFMA into a register accumulator 3 (M4F, 4..7)
    cycles_per_csr_synop: float = 5.0
    # 2 sigmoids + tanh via the exp accelerator and VDIV (14), ~20 FP ops for gates, state, threshold (M4F, 50..150)
    cycles_per_neuron_update: float = 80.0
    cycles_per_packet_out: float = 10.0  # build and send one multicast packet (assumption, 5..30)
    energy_per_cycle_j: float = busy_cycle_energy_j(_OP08)  # measured: (1.2479 − 0.5647) W / 152 / 300 MHz
    energy_per_mac_j: float = mac_energy_j(_OP08)  # measured: (2.219 − 0.5647) W / (4.563 TOPS / 2)
    energy_per_packet_j: float = 50e-12  # NoC + router per delivered packet (assumption, 10..200 pJ)
    energy_per_dram_byte_j: float = 32e-12  # LPDDR4 ~4 pJ/bit, a typical figure (assumption, 16..64 pJ)
    static_power_per_pe_w: float = 0.0  # the asleep baseline below already holds every PE's leakage (measured)
    static_power_chip_w: float = _OP08.asleep_power_w  # measured: all PEs asleep, 564.7 mW at 0.8 V
    hop_latency_s: float = 100e-9  # one layer hop: a few NoC hops of 5 cycles (assumption, 50..500 ns)
    # Single-batch GPU, anchored on the paper's A100 (launch-bound at batch 1):
    gpu_power_w: float = A100_POWER_W  # measured: Table II
    gpu_kernel_s: float = A100_KERNEL_S  # anchored: 19.9 ms / 70 tokens / 24 kernels ≈ 11.8 µs
    gpu_kernels_per_layer: float = GPU_KERNELS_PER_LAYER  # assumption (4..12)
    gpu_bandwidth_bytes_per_s: float = 1.555e12  # A100 40 GB HBM2 (vendor figure; the 80 GB model: 2.0e12)

    @classmethod
    def calibrated(cls, operating_point_name: str, **overrides: float) -> CostTable:
        """The table at a measured operating point ("0.5V" | "0.8V"), with optional overrides."""
        op = operating_point(operating_point_name)
        base = {"energy_per_cycle_j": busy_cycle_energy_j(op), "energy_per_mac_j": mac_energy_j(op),
                "static_power_chip_w": op.asleep_power_w}
        return cls.from_dict({**base, **overrides})

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "cost table") -> CostTable:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ChipConfigError(
                f"{where}: unknown cost table field {unknown[0]!r} (known: {', '.join(sorted(names))})")
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | Path, base: CostTable | None = None) -> CostTable:
        """`base` (default: the 0.8 V table) with the fields of a JSON object overridden."""
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ChipConfigError(f"{p}: bad cost table: {e}") from e
        if not isinstance(data, dict):
            raise ChipConfigError(f"{p}: cost table must be a JSON object")
        cls.from_dict(data, str(p))  # names checked
        return dataclasses.replace(base or cls(), **data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Plausible intervals of the constants that no measurement fixes (see the field comments); `cost_range` moves
# them all to one end together.
INTERVALS: dict[str, tuple[float, float]] = {
    "cycles_step_overhead": (100.0, 1000.0),
    "cycles_per_packet_in": (10.0, 50.0),
    "cycles_per_synop_fp32": (6.0, 12.0),
    "cycles_per_synop_int8": (1.0, 4.0),
    "cycles_per_csr_entry": (4.0, 8.0),
    "cycles_per_csr_synop": (4.0, 7.0),
    "cycles_per_neuron_update": (50.0, 150.0),
    "cycles_per_packet_out": (5.0, 30.0),
    "energy_per_packet_j": (10e-12, 200e-12),
    "energy_per_dram_byte_j": (16e-12, 64e-12),
    "hop_latency_s": (50e-9, 500e-9),
}


def table_at_end(table: CostTable, end: int) -> CostTable:
    """The table with every assumed constant at the low (end=0) or high (end=1) end of its interval."""
    return dataclasses.replace(table, **{k: v[end] for k, v in INTERVALS.items()})


@dataclass(frozen=True)
class Cost:
    cycles_per_pe: np.ndarray  # [n_pes]
    latency_s: float
    energy_j: float
    energy_dynamic_j: float
    energy_static_j: float


def pe_cycles(chip: ChipSpec, table: CostTable, numerics: str, synops: np.ndarray, packets_in: np.ndarray,
              packets_out: np.ndarray, neuron_updates: np.ndarray, dram_bytes: np.ndarray,
              layout: str = "column", pe_nnz: np.ndarray | None = None) -> np.ndarray:
    """Cycles of each PE in one timestep from its counters (see the module docstring)."""
    if layout == "csr":
        stored = pe_nnz if pe_nnz is not None else 0.0
        synaptic = table.cycles_per_csr_entry * stored + table.cycles_per_csr_synop * synops
    else:
        c_syn = table.cycles_per_synop_fp32 if numerics == "fp32" else table.cycles_per_synop_int8
        synaptic = c_syn * synops
    return (
        table.cycles_step_overhead
        + table.cycles_per_packet_in * packets_in
        + synaptic
        + table.cycles_per_neuron_update * neuron_updates
        + table.cycles_per_packet_out * packets_out
        + dram_bytes / chip.dram_bandwidth_bytes_per_s * chip.clock_hz
    )


def step_cost(chip: ChipSpec, table: CostTable, stats: Any) -> Cost:
    """One timestep's cost from a StepStats (per-PE counters, group starts, numerics, layout)."""
    layout = getattr(stats, "layout", "column")
    cyc = pe_cycles(chip, table, stats.numerics, stats.pe_synops, stats.pe_packets_in, stats.pe_packets_out,
                    stats.pe_neuron_updates, stats.pe_dram_bytes, layout, getattr(stats, "pe_nnz", None))
    slowest = np.maximum.reduceat(cyc, stats.group_starts)
    latency = float(slowest.sum() / chip.clock_hz + len(stats.group_starts) * table.hop_latency_s)
    mac = float(stats.pe_synops.sum()) * table.energy_per_mac_j if stats.numerics == "int8" else 0.0
    dyn = float(cyc.sum() * table.energy_per_cycle_j + stats.pe_packets_in.sum() * table.energy_per_packet_j
                + stats.pe_dram_bytes.sum() * table.energy_per_dram_byte_j) + mac
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
