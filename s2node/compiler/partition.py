"""Partition each layer's units across PEs within each PE's SRAM budget; spill weights to DRAM if asked.

A PE owns a contiguous block of units and, for them, every gate row (r, z, n) of W_ih and W_hh, so that the
unit update is local. Its weights are stored in one of two layouts (`LAYOUTS`):
  column  (CSC, the default): one incoming packet (source j) touches the PE's column j only, so the work
          follows the events;
  csr     (as the paper stores them): rows compressed; each timestep the PE walks all its rows and looks up
          each entry's source in the buffer of received payloads, so the walk follows the stored weights.
Both hold the same values and the same sums; they differ in pointers and in cycles (`cost.pe_cycles`).
Bytes per PE, by kind:
  weight_values   nnz · (4 fp32 | 1 int8)
  weight_indices  nnz · 2        (uint16 local row index (column) or source index (csr); both below 65,536)
  column_pointers (sources + 1) · 2 (column; uint16 offsets, 4 bytes if the PE holds 65,536 or more weights)
  row_pointers    (rows + 1) · 2    (csr; same offset width)
  row_scales      rows · 4       (int8 only: one float32 scale per row)
  state           per EGRU unit 15 float32 (c, y, θ, 6 biases, 6 gate accumulators); per decoder output 3
                  (bias, accumulator, trace)
  code, buffers   the ChipSpec's per-PE budgets (assumptions)
With `dram=True`, weight values and indices live in LPDDR4 and are fetched per active column (counted as DRAM
bytes per step); SRAM keeps pointers and state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from s2node.chip import ChipSpec
from s2node.errors import CompileError

INDEX_BYTES = 2
EGRU_STATE_FLOATS = 15
DECODER_STATE_FLOATS = 3
SRAM_KINDS = ("code", "buffers", "weight_values", "weight_indices", "column_pointers", "row_pointers", "row_scales",
              "state")
LAYOUTS = ("column", "csr")


@dataclass(frozen=True)
class GroupWeights:
    """What a placement needs of one layer group: per-unit nnz and the [sources, units] nnz structure."""

    name: str
    rows_per_unit: int  # 3 for EGRU (r, z, n), 1 for the decoder
    n_in: int  # input sources (columns of W_ih / of the decoder)
    n_rec: int  # recurrent sources (columns of W_hh; 0 for the decoder)
    in_unit_nnz: np.ndarray  # [n_in, units] nnz of source j in unit u's rows
    rec_unit_nnz: np.ndarray | None  # [n_rec, units]

    @property
    def n_units(self) -> int:
        return int(self.in_unit_nnz.shape[1])


@dataclass(frozen=True)
class GroupPlacement:
    """One layer group placed on PEs pe_start .. pe_start + n_pes - 1 (contiguous)."""

    name: str
    pe_start: int
    n_pes: int
    bounds: np.ndarray  # [n_pes + 1] unit boundaries
    unit_pe: np.ndarray  # [units] local PE index of each unit
    nnz_in: np.ndarray  # [n_in, n_pes] weights of source j on PE p
    nnz_rec: np.ndarray | None  # [n_rec, n_pes]
    sram: dict[str, np.ndarray]  # kind -> [n_pes] bytes
    spilled: bool
    dram_bytes: int  # weight bytes held in DRAM
    bytes_per_weight: int  # value + index bytes (what one synaptic op fetches when spilled)
    pe_nnz: np.ndarray | None = None  # [n_pes] stored weights per PE (what a csr walk visits every step)


def unit_to_pe_sum(unit_nnz: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """[sources, units] -> [sources, PEs] by summing each PE's contiguous block of units."""
    return np.add.reduceat(unit_nnz, bounds[:-1], axis=1) if unit_nnz.shape[1] else unit_nnz


def _pe_bytes(g: GroupWeights, bounds: np.ndarray, numerics: str, chip: ChipSpec, spill: bool,
              layout: str = "column") -> dict:
    units = np.diff(bounds)
    per_unit_nnz = g.in_unit_nnz.sum(0) + (g.rec_unit_nnz.sum(0) if g.rec_unit_nnz is not None else 0)
    nnz = np.add.reduceat(per_unit_nnz, bounds[:-1]) if len(units) else np.zeros(0, np.int64)
    vb = 4 if numerics == "fp32" else 1
    ptr_bytes = np.where(nnz >= 65536, 4, 2)
    n = len(units)
    csr = layout == "csr"
    state_f = EGRU_STATE_FLOATS if g.rows_per_unit == 3 else DECODER_STATE_FLOATS
    return {
        "code": np.full(n, chip.code_bytes_per_pe, np.int64),
        "buffers": np.full(n, chip.buffer_bytes_per_pe, np.int64),
        "weight_values": np.zeros(n, np.int64) if spill else nnz * vb,
        "weight_indices": np.zeros(n, np.int64) if spill else nnz * INDEX_BYTES,
        "column_pointers": np.zeros(n, np.int64) if csr else (g.n_in + g.n_rec + 1) * ptr_bytes,
        "row_pointers": (units * g.rows_per_unit + 1) * ptr_bytes if csr else np.zeros(n, np.int64),
        "row_scales": units * g.rows_per_unit * 4 if numerics == "int8" else np.zeros(n, np.int64),
        "state": units * state_f * 4,
        "_nnz": nnz,
    }


def _total(b: dict) -> np.ndarray:
    return sum(b[k] for k in SRAM_KINDS)


def split_group(g: GroupWeights, numerics: str, chip: ChipSpec, spill: bool, min_pes: int = 1,
                layout: str = "column") -> np.ndarray:
    """Fewest PEs (>= min_pes) whose byte-balanced contiguous blocks all fit; returns unit boundaries."""
    h = g.n_units
    cap = min(chip.sram_bytes_per_pe, chip.pe_budget_bytes)
    one = _pe_bytes(g, np.array([0, h]), numerics, chip, spill, layout)
    per_pe_fixed = int(one["code"][0] + one["buffers"][0] + one["column_pointers"][0])
    budget = cap - per_pe_fixed
    if budget <= 0:
        raise CompileError(
            f"{g.name}: column pointers for {g.n_in + g.n_rec} sources plus code and buffers need "
            f"{per_pe_fixed} bytes, over a PE's {cap} by {-budget}",
            bytes_over=-budget,
        )
    variable = int(_total(one)[0]) - per_pe_fixed
    k = max(min_pes, int(np.ceil(variable / budget)), 1)
    per_unit = _unit_bytes(g, numerics, spill, layout)
    cum = np.concatenate([[0], np.cumsum(per_unit)])
    while k <= h:
        targets = cum[-1] * np.arange(1, k) / k
        inner = np.searchsorted(cum, targets, side="left")
        bounds = np.unique(np.concatenate([[0], np.clip(inner, 1, h - 1), [h]])) if h > 1 else np.array([0, h])
        b = _pe_bytes(g, bounds, numerics, chip, spill, layout)
        if np.all(_total(b) <= cap) and len(bounds) - 1 >= min(min_pes, h):
            return bounds
        k += 1
    worst = int(per_unit.max()) + per_pe_fixed
    hint = "; look it up on the host (--embedding host)" if g.name == "embedding" else ""
    raise CompileError(
        f"{g.name}: one unit needs {worst} bytes, over a PE's {cap} by {worst - cap}{hint}", bytes_over=worst - cap,
    )


def _unit_bytes(g: GroupWeights, numerics: str, spill: bool, layout: str = "column") -> np.ndarray:
    vb = 4 if numerics == "fp32" else 1
    nnz = g.in_unit_nnz.sum(0) + (g.rec_unit_nnz.sum(0) if g.rec_unit_nnz is not None else 0)
    state_f = EGRU_STATE_FLOATS if g.rows_per_unit == 3 else DECODER_STATE_FLOATS
    w = np.zeros_like(nnz) if spill else nnz * (vb + INDEX_BYTES)
    ptrs = g.rows_per_unit * 4 if layout == "csr" else 0  # row pointers (4 bytes as an upper bound)
    return w + state_f * 4 + (g.rows_per_unit * 4 if numerics == "int8" else 0) + ptrs


def place_group(
    g: GroupWeights, pe_start: int, numerics: str, chip: ChipSpec, spill: bool, min_pes: int = 1,
    layout: str = "column",
) -> GroupPlacement:
    bounds = split_group(g, numerics, chip, spill, min_pes, layout)
    b = _pe_bytes(g, bounds, numerics, chip, spill, layout)
    nnz = b.pop("_nnz")
    vb = 4 if numerics == "fp32" else 1
    unit_pe = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
    return GroupPlacement(
        name=g.name, pe_start=pe_start, n_pes=len(bounds) - 1, bounds=bounds, unit_pe=unit_pe,
        nnz_in=unit_to_pe_sum(g.in_unit_nnz, bounds),
        nnz_rec=None if g.rec_unit_nnz is None else unit_to_pe_sum(g.rec_unit_nnz, bounds),
        sram=b, spilled=spill, dram_bytes=int(nnz.sum() * (vb + INDEX_BYTES)) if spill else 0,
        bytes_per_weight=vb + INDEX_BYTES, pe_nnz=nnz.astype(np.int64),
    )


def egru_group(name: str, weight_ih: np.ndarray, weight_hh: np.ndarray) -> GroupWeights:
    """Unit u of an EGRU layer owns rows u, H+u, 2H+u: fold the 3 gate rows into one unit column."""
    h = weight_hh.shape[1]

    def per_unit(w: np.ndarray) -> np.ndarray:
        nz = (w != 0).astype(np.int32)  # [3H, S]
        return (nz[:h] + nz[h:2 * h] + nz[2 * h:]).T.copy()  # [S, H]

    return GroupWeights(name, 3, weight_ih.shape[1], h, per_unit(weight_ih), per_unit(weight_hh))


def decoder_group(weight: np.ndarray, name: str = "decoder") -> GroupWeights:
    """A feed-forward group: unit u holds row u of weight [units, sources] (the decoder; the embedding's table
    transposed, one source per token)."""
    return GroupWeights(name, 1, weight.shape[1], 0, (weight != 0).astype(np.int32).T.copy(), None)
