"""The SpiNNaker 2 chip as the emulator sees it: a frozen `ChipSpec`, every fact with its unit and source.

Sources (shared/reference/egru-and-spinnaker2.md, section 4.1):
[DS]   SpiNNaker2 datasheet v0.03 (19 Aug 2021).
[SM]   SpiNNakerManchester/SpiNNMachine, spinn_machine/version/version_spin2.py.
[PE]   Höppner et al. 2021, "The SpiNNaker 2 Processing Element Architecture ...", arXiv 2103.08392
       (and a secondary review of it).
[SIM]  a third-party SpiNNaker2 cycle simulator's constants (secondary).
"assumption" marks a number we chose because no source gives it; override it with --chip-config.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s2node.errors import S2NodeError

KIB = 1024


@dataclass(frozen=True)
class ChipSpec:
    """One SpiNNaker 2 chip. Field names carry units; the module's `SOURCES` says where each value comes from."""

    n_pes: int = 152  # application PEs (ARM Cortex-M4F) per chip [DS][SM]
    pes_per_qpe: int = 4  # a quad-PE shares one local NoC router [PE]
    n_qpes: int = 38  # 152 / 4 [PE][SM]
    sram_bytes_per_pe: int = 128 * KIB  # local code+data SRAM per PE [DS]
    code_bytes_per_pe: int = 16 * KIB  # EGRU kernel + runtime code and stack (assumption)
    buffer_bytes_per_pe: int = 4 * KIB  # incoming/outgoing packet buffers and DMA staging (assumption)
    mac_rows: int = 4  # MAC array 16 x 4 of 8-bit multiply-accumulate units per PE [PE][SIM]
    mac_cols: int = 16
    mac_bits: int = 8
    router_entries: int = 16_384  # multicast router key/mask entries [DS][SM]
    dram_bytes: int = 1 << 30  # LPDDR4 per chip as SpiNNMachine models it (1 GiB) [SM]
    dram_bandwidth_bytes_per_s: float = 6.4e9  # "up to 6.4 GB/s sustained block transfer" [DS]
    clock_hz: float = 300e6  # PE clock; SpiNNMachine lists 150 and 300 MHz settings [SM]
    clock_min_hz: float = 150e6  # lowest DVFS setting listed [SM]
    reserved_pes: int = 0  # PEs kept for the host interface/monitor; the embedding runs on the host (assumption)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int | float) or v < 0:
                raise ChipConfigError(f"chip field {f.name} must be a non-negative number, not {v!r}")
        if self.n_pes <= self.reserved_pes:
            raise ChipConfigError("the chip must have more PEs than it reserves")
        if self.sram_bytes_per_pe <= self.code_bytes_per_pe + self.buffer_bytes_per_pe:
            raise ChipConfigError("sram_bytes_per_pe must exceed code_bytes_per_pe + buffer_bytes_per_pe")
        if not self.clock_hz > 0:
            raise ChipConfigError("clock_hz must be positive")

    @property
    def usable_pes(self) -> int:
        return self.n_pes - self.reserved_pes

    @property
    def data_bytes_per_pe(self) -> int:
        """SRAM left for weights, indices and state once code and buffers are placed."""
        return self.sram_bytes_per_pe - self.code_bytes_per_pe - self.buffer_bytes_per_pe

    @property
    def macs_per_cycle(self) -> int:
        return self.mac_rows * self.mac_cols

    def qpe_of(self, pe: int) -> int:
        return pe // self.pes_per_qpe

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, overrides: dict[str, Any], where: str = "chip config") -> ChipSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ChipConfigError(f"{where}: unknown chip field {unknown[0]!r} (known: {', '.join(sorted(names))})")
        return cls(**overrides)

    @classmethod
    def from_json(cls, path: str | Path) -> ChipSpec:
        """Defaults overridden by the fields of a JSON object, e.g. {"clock_hz": 150e6, "n_pes": 76}."""
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ChipConfigError(f"{p}: chip config not found") from e
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ChipConfigError(f"{p}: bad chip config: {e}") from e
        if not isinstance(data, dict):
            raise ChipConfigError(f"{p}: chip config must be a JSON object")
        return cls.from_dict(data, str(p))


SOURCES: dict[str, str] = {
    "n_pes": "[DS] datasheet v0.03; [SM] CHIPS_PER_BOARD 152",
    "pes_per_qpe": "[PE] Höppner 2021 (quad-PE)",
    "n_qpes": "[PE][SM] 152 / 4",
    "sram_bytes_per_pe": "[DS] 128 KB local code+data memory",
    "code_bytes_per_pe": "assumption",
    "buffer_bytes_per_pe": "assumption",
    "mac_rows": "[PE] review; [SIM] MLA_MAC_ROW = 4",
    "mac_cols": "[PE] review; [SIM] MLA_MAC_COLUMN = 16",
    "mac_bits": "[PE] review (8-bit MAC)",
    "router_entries": "[DS]; [SM] n_router_entries = 16384",
    "dram_bytes": "[SM] max_sdram_per_chip = 1 GiB",
    "dram_bandwidth_bytes_per_s": "[DS] up to 6.4 GB/s sustained",
    "clock_hz": "[SM] clock_speeds_hz [150, 300] (MHz)",
    "clock_min_hz": "[SM] clock_speeds_hz [150, 300] (MHz)",
    "reserved_pes": "assumption",
}


class ChipConfigError(S2NodeError):
    """A --chip-config file is missing, malformed, or names an unknown field."""
