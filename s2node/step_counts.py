"""A timestep's per-PE counters and cycles from the compiler's count tables, in one product per step.

Each layer group has `[source, PE]` tables of synops (nnz) and packets received (recv). A step's per-PE synops and
packets are those tables summed over the step's active sources; a table whose sources all have the same row (every
unpruned layer: each source has the same count on each PE) contributes "active sources x that row". `StepCounts`
stacks those rows, placed at their group's PEs, into one matrix, so that a step's counters of every group are one
product of the active-source counts with it; other tables are summed per step (`CountTable.sum`).

Counters are integers held in float64, so their sums are exact in any order (below 2^53). When every cycle rate of
the cost table is an integer too (the defaults are), so is each PE's cycle count (`cost.pe_cycles`): the matrix
then also carries each term's cycles, and `cost()` applies `cost.step_cost`'s formulas to the same per-PE numbers,
which gives the same floats. A fractional rate, or DRAM traffic (its stall time is fractional), leaves the cost to
`cost.step_cost` itself.
"""

from __future__ import annotations

import numpy as np

from s2node.chip import ChipSpec
from s2node.cost import Cost, CostTable

# Counter sums are exact while every value stays below this (float64 holds every integer up to 2^53)
EXACT_BOUND = 2.0**53


class CountTable:
    """A group's nnz[source, pe] and recv[source, pe] side by side: per-PE synops and packets of a set of active
    sources in one sum (exact: integer sums in float64). Sources with equal rows (a dense layer: every source has
    the same count on each PE) share one row, so the sum is a count of sources per distinct row times the rows."""

    def __init__(self, nnz: np.ndarray, recv: np.ndarray) -> None:
        self.n_pes = nnz.shape[1]
        self.table = np.concatenate([nnz, recv], 1).astype(np.float64)
        rows, which = np.unique(self.table, axis=0, return_inverse=True)
        self.rows: np.ndarray | None = None
        if len(rows) * 4 <= len(self.table):
            self.rows, self.which = rows, which.reshape(-1)
            self.which_onehot = np.eye(len(rows))[self.which]

    def sum(self, cols: np.ndarray) -> np.ndarray:
        """Active sources `cols` -> [2, PEs]: synops, packets."""
        if self.rows is not None:
            out = len(cols) * self.rows[0] if len(self.rows) == 1 else \
                np.bincount(self.which[cols], minlength=len(self.rows)) @ self.rows
        elif 8 * len(cols) > len(self.table):  # many sources: one BLAS mat-vec of a 0/1 mask
            mask = np.zeros(len(self.table))
            mask[cols] = 1.0
            out = mask @ self.table
        else:
            out = self.table[cols].sum(0)
        return out.reshape(2, self.n_pes)

    def __call__(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Several streams: mask [streams, sources] 0/1 float64 -> (synops, packets) [streams, PEs]."""
        out = mask @ self.table if self.rows is None else (mask @ self.which_onehot) @ self.rows
        return out[:, : self.n_pes], out[:, self.n_pes:]


def integer_cycle_rates(table: CostTable, numerics: str, layout: str) -> tuple[float, float, float] | None:
    """(cycles per synop, per packet in, per packet out) when every cycle rate `cost.pe_cycles` uses for this
    numerics and layout is an integer, else None."""
    syn = table.cycles_per_csr_synop if layout == "csr" else \
        table.cycles_per_synop_fp32 if numerics == "fp32" else table.cycles_per_synop_int8
    rates = [syn, table.cycles_per_packet_in, table.cycles_per_packet_out, table.cycles_step_overhead,
             table.cycles_per_neuron_update, table.cycles_per_csr_entry if layout == "csr" else 0.0]
    if not all(float(r).is_integer() for r in rates):
        return None
    return float(syn), float(table.cycles_per_packet_in), float(table.cycles_per_packet_out)


class StepCounts:
    """Per-PE synops, packets in and (with integer rates) cycles of a step from each count term's active sources,
    with their totals (module doc). A step's counter vector: [synops | packets in | cycles] per PE (cycles without
    the packets out, which `cost` adds), then the synops of each group, and the synops, packets and cycles of
    the whole chip."""

    def __init__(self, n_pes: int, terms: list[tuple[slice, CountTable]], chip: ChipSpec, table: CostTable,
                 numerics: str, layout: str, updates: np.ndarray, pe_nnz: np.ndarray, group_starts: np.ndarray,
                 dram: bool, max_count: float) -> None:
        """terms: each count table with its group's PEs, in the order `__call__` gets their active sources;
        updates, pe_nnz: neuron updates and stored weights per PE; group_starts: each group's first PE;
        dram: whether any group spills to DRAM; max_count: a bound on any counter, or sum of counters, of a
        step."""
        self.n, self.chip, self.table, self.numerics = n_pes, chip, table, numerics
        self.group_starts = group_starts
        rates = None if dram else integer_cycle_rates(table, numerics, layout)
        if rates is not None:  # cycles: at most 6 terms, each a rate times a count (or a sum of counts)
            rate_max = max(abs(r) for r in (*rates, table.cycles_step_overhead, table.cycles_per_neuron_update,
                                               table.cycles_per_csr_entry))
            rates = rates if 6 * rate_max * max(max_count, 1.0) < EXACT_BOUND else None
        self.rates = rates
        self._c_out = np.array(rates[2] if rates else 0.0)  # a 0-d array: a ufunc takes it with the least work
        # step_cost's constant terms, computed as it computes them
        self._hops_s = len(group_starts) * table.hop_latency_s
        self._static_w = n_pes * table.static_power_per_pe_w + table.static_power_chip_w
        n, n_groups = n_pes, len(group_starts)
        self.tail = 3 * n  # where the totals start: synops per group, then the chip's synops, packets, cycles
        m = np.zeros((1 + len(terms), self.tail + n_groups + 3))
        self.chip_totals = slice(self.tail + n_groups, self.tail + n_groups + 3)
        if rates:  # constant per step: overhead, neuron updates, and for csr every stored weight walked
            stored = table.cycles_per_csr_entry * pe_nnz if layout == "csr" else 0.0
            m[0, 2 * n:3 * n] = table.cycles_step_overhead + table.cycles_per_neuron_update * updates + stored
            m[0, -1] = m[0, 2 * n:3 * n].sum()
        # each term: its PEs' synops, packets and cycles columns, and its group's synops total
        self._parts = [(sl, slice(n + sl.start, n + sl.stop), slice(2 * n + sl.start, 2 * n + sl.stop),
                        self.tail + int(np.searchsorted(group_starts, sl.start, "right")) - 1) for sl, _ in terms]
        self.summed: list[tuple[int, CountTable]] = []  # terms whose sources do not share one row
        for t, (_, counts) in enumerate(terms):
            if counts.rows is not None and len(counts.rows) == 1:
                self._put(m[1 + t], t, counts.rows[0].reshape(2, -1))
            else:
                self.summed.append((t, counts))
        self.m = m

    def _put(self, out: np.ndarray, t: int, counts: np.ndarray) -> None:
        """Add [2, PEs of term t's group] synops and packets, their cycles and their totals to a counter vector."""
        syn_cols, pin_cols, cyc_cols, group = self._parts[t]
        out[syn_cols] += counts[0]
        out[pin_cols] += counts[1]
        syn, pin = float(counts[0].sum()), float(counts[1].sum())
        out[group] += syn
        out[-3] += syn
        out[-2] += pin
        if self.rates:
            out[cyc_cols] += self.rates[0] * counts[0] + self.rates[1] * counts[1]
            out[-1] += self.rates[0] * syn + self.rates[1] * pin

    def __call__(self, active: list[np.ndarray], extra: tuple[tuple[int, np.ndarray], ...] = ()) -> np.ndarray:
        """Active source ids of each term, and [2, PEs] counts to add to given terms -> the counter vector."""
        out = np.array([1, *map(len, active)], np.float64) @ self.m
        for t, counts in self.summed:
            if len(active[t]):
                self._put(out, t, counts.sum(active[t]))
        for t, counts in extra:
            self._put(out, t, counts)
        return out

    def cost(self, out: np.ndarray, packets_out: np.ndarray, n_packets_out: int) -> Cost:
        """`cost.step_cost` of a step without DRAM traffic, from `__call__`'s counters (with cycles, so only when
        `rates`) and the packets sent per PE and in all: the same formulas on the same numbers (the totals are
        exact integers, so they equal the sums step_cost takes)."""
        n, table, c_out = self.n, self.table, self.rates[2]
        cyc = np.multiply(packets_out, self._c_out)
        cyc += out[2 * n:3 * n]
        # the slowest PE of each group, summed (exact integers: any order gives step_cost's sum)
        slowest = cyc.take(cyc.argmax()) if len(self.group_starts) == 1 else \
            np.add.reduce(np.maximum.reduceat(cyc, self.group_starts))  # (argmax: cheaper than a reduction)
        latency = float(slowest / self.chip.clock_hz + self._hops_s)
        syn, pin, cycles = out[self.chip_totals].tolist()
        cycles += c_out * n_packets_out
        mac = syn * table.energy_per_mac_j if self.numerics == "int8" else 0.0
        # no DRAM bytes: step_cost's DRAM term adds an exact 0.0 to a non-negative sum, which changes nothing
        dyn = float(cycles * table.energy_per_cycle_j + pin * table.energy_per_packet_j) + mac
        static = self._static_w * latency
        return Cost(cyc, latency, dyn + static, dyn, static)
