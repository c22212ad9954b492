"""What the compiler hands the runtime: the spec placed on PEs, with routing, and what `s2 node inspect` prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from s2node.chip import ChipSpec
from s2node.compiler.partition import SRAM_KINDS, GroupPlacement
from s2node.compiler.routing import RoutingTable
from s2node.spec import ModelSpec

# The paper's placement (arXiv 2312.09084, as quoted): "88.3 KB used of the 96 KB data memory per PE".
PAPER_DATA_BYTES_PER_PE = 88.3e3
PAPER_DATA_BUDGET = 96e3


@dataclass(frozen=True)
class CompiledModel:
    spec: ModelSpec
    chip: ChipSpec
    numerics: str
    groups: tuple[GroupPlacement, ...]  # [the embedding,] EGRU layers in order[, the decoder]: what runs on PEs
    routing: RoutingTable
    recv_in: tuple[np.ndarray, ...]  # per group: bool [n_in, n_pes] delivery of input sources
    recv_rec: tuple[np.ndarray | None, ...]  # per group: bool [H, n_pes] delivery of recurrent sources
    rules_passed: tuple[str, ...] = field(default=())
    decoder: str = "host"  # "host": the host computes the logits; "pe": the decoder is the last group
    embedding: str = "host"  # "host": the host sends the values; "pe": the table is the first group
    layout: str = "column"  # weight storage: "column" (CSC) or "csr"

    @property
    def egru_groups(self) -> tuple[GroupPlacement, ...]:
        g0 = int(self.embedding == "pe")
        return self.groups[g0: g0 + len(self.spec.layers)]

    @property
    def data_bytes_per_pe(self) -> np.ndarray:
        """What each used PE holds in its data SRAM: everything but the code."""
        return self.sram_total_per_pe - np.concatenate([g.sram["code"] for g in self.groups])

    @property
    def n_pes_used(self) -> int:
        return sum(g.n_pes for g in self.groups)

    @property
    def sram_total_per_pe(self) -> np.ndarray:
        return np.concatenate([sum(g.sram[k] for k in SRAM_KINDS) for g in self.groups])

    @property
    def dram_bytes(self) -> int:
        return sum(g.dram_bytes for g in self.groups)

    @property
    def pe_group(self) -> np.ndarray:
        """Group index (layer; the decoder last) of every used PE."""
        return np.concatenate([np.full(g.n_pes, i) for i, g in enumerate(self.groups)])

    def report(self, per_pe: bool = False) -> dict[str, Any]:
        """What `s2 node inspect` prints: PEs, SRAM by kind, routing, DRAM."""
        sram = {k: np.concatenate([g.sram[k] for g in self.groups]) for k in SRAM_KINDS}
        total = self.sram_total_per_pe
        nnz = sum(layer.nnz for layer in self.spec.layers)
        weights = sum(layer.n_weights for layer in self.spec.layers)
        out: dict[str, Any] = {
            "numerics": self.numerics,
            "pes_used": self.n_pes_used,
            "pes_available": self.chip.usable_pes,
            "groups": [
                {"name": g.name, "pes": g.n_pes, "first_pe": g.pe_start, "units": int(g.bounds[-1]),
                 "units_per_pe_max": int(np.diff(g.bounds).max()), "weights_in_dram": g.spilled}
                for g in self.groups
            ],
            "weight_sparsity": 1.0 - nnz / weights if weights else 0.0,
            "nonzero_weights": int(nnz),
            "sram_bytes_per_pe": {"max": int(total.max()), "mean": float(total.mean()), "min": int(total.min()),
                                  "limit": self.chip.sram_bytes_per_pe},
            "data_bytes_per_pe": {"max": int(self.data_bytes_per_pe.max()),
                                  "mean": float(self.data_bytes_per_pe.mean()),
                                  "budget": self.chip.data_sram_bytes_per_pe,
                                  "paper_bytes": PAPER_DATA_BYTES_PER_PE, "paper_budget": PAPER_DATA_BUDGET},
            "embedding": self.embedding,
            "decoder": self.decoder,
            "layout": self.layout,
            "sram_bytes_by_kind": {k: int(v.sum()) for k, v in sram.items()},
            "sram_bytes_by_kind_max_pe": {k: int(v[int(np.argmax(total))]) for k, v in sram.items()},
            "routing_entries": self.routing.entries,
            "routing_entries_limit": self.chip.router_entries,
            "routing_key_space": self.routing.key_space,
            "dram_bytes": self.dram_bytes,
            "rules_passed": list(self.rules_passed),
        }
        if per_pe:
            out["sram_bytes_per_pe_by_kind"] = {k: v.tolist() for k, v in sram.items()}
        return out
