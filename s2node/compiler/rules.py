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


def sram_per_pe(m: CompiledModel) -> CompileError | None:
    total = m.sram_total_per_pe
    worst = int(np.argmax(total))
    over = int(total[worst] - m.chip.sram_bytes_per_pe)
    if over > 0:
        return CompileError(f"PE {worst} needs {int(total[worst])} bytes of SRAM, over by {over}", pe=worst,
                            bytes_over=over)
    return None


def data_per_pe(m: CompiledModel) -> CompileError | None:
    data = m.data_bytes_per_pe
    worst = int(np.argmax(data))
    over = int(data[worst] - m.chip.data_sram_bytes_per_pe)
    if over > 0:
        return CompileError(f"PE {worst} needs {int(data[worst])} bytes of data SRAM, over by {over}", pe=worst,
                            bytes_over=over)
    return None


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
