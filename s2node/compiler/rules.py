"""Placement rules as a list of named checks, run by one `check_rules()` (Rockpool's DRC shape)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from s2node.compiler.compiled import CompiledModel
from s2node.errors import CompileError

Rule = Callable[[CompiledModel], CompileError | None]


def pes_available(m: CompiledModel) -> CompileError | None:
    if m.n_pes_used > m.chip.usable_pes:
        return CompileError(f"needs {m.n_pes_used} PEs, the chip has {m.chip.usable_pes} usable")
    return None


def _worst_pe_over(per_pe: np.ndarray, budget: int, what: str) -> CompileError | None:
    """The PE furthest over its budget of `what`, or None when every PE fits."""
    worst = int(np.argmax(per_pe))
    over = int(per_pe[worst] - budget)
    if over > 0:
        return CompileError(f"PE {worst} needs {int(per_pe[worst])} bytes of {what}, over by {over}", pe=worst,
                            bytes_over=over)
    return None


def sram_per_pe(m: CompiledModel) -> CompileError | None:
    return _worst_pe_over(m.sram_total_per_pe, m.chip.sram_bytes_per_pe, "SRAM")


def data_per_pe(m: CompiledModel) -> CompileError | None:
    return _worst_pe_over(m.data_bytes_per_pe, m.chip.data_sram_bytes_per_pe, "data SRAM")


def router_entries(m: CompiledModel) -> CompileError | None:
    if m.routing.entries > m.chip.router_entries:
        return CompileError(f"routing needs {m.routing.entries} entries, the router has {m.chip.router_entries}")
    return None


def key_space(m: CompiledModel) -> CompileError | None:
    if m.routing.key_space > 1 << 32:
        return CompileError(f"routing keys need {m.routing.key_space} keys, over 32 bits")
    return None


def dram_capacity(m: CompiledModel) -> CompileError | None:
    over = m.dram_bytes - m.chip.dram_bytes
    if over > 0:
        return CompileError(f"DRAM spill needs {m.dram_bytes} bytes, over the chip's {m.chip.dram_bytes} by {over}",
                            bytes_over=over)
    return None


RULES: list[tuple[str, Rule]] = [
    ("pes_available", pes_available),
    ("sram_per_pe", sram_per_pe),
    ("data_per_pe", data_per_pe),
    ("router_entries", router_entries),
    ("key_space", key_space),
    ("dram_capacity", dram_capacity),
]


def check_rules(m: CompiledModel) -> list[str]:
    """Run every rule; raise the first failure as CompileError; return the names of the rules passed."""
    for name, rule in RULES:
        err = rule(m)
        if err is not None:
            err.args = (f"rule {name}: {err.args[0]}",)
            raise err
    return [name for name, _ in RULES]
