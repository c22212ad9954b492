"""The SpiNNaker 2 chip as the emulator sees it: a frozen `ChipSpec`, every fact with its unit and source.

Sources (shared/reference/egru-and-spinnaker2.md, section 4.1):
[DS]   SpiNNaker2 datasheet v0.03 (19 Aug 2021).
[SM]   SpiNNakerManchester/SpiNNMachine, spinn_machine/version/version_spin2.py.
[PE]   Höppner et al. 2021, "The SpiNNaker 2 Processing Element Architecture ...", arXiv 2103.08392
       (and a secondary review of it).
[SIM]  a third-party SpiNNaker2 cycle simulator's constants (secondary).
[CP]   the SpiNNaker2 chip paper (Scholze et al., arXiv 2607.24396) as quoted by two independent research notes
       (reference file, section 8.2): memory split, DVFS operating points, measured chip power.
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
    code_bytes_per_pe: int = 32 * KIB  # the instruction share of the SRAM: "≈ 32 KB instruction + 96 KB data" [CP]
    data_sram_bytes_per_pe: int = 96 * KIB  # the data share: weights, indices, state and buffers must fit here [CP]
    buffer_bytes_per_pe: int = 4 * KIB  # incoming/outgoing packet buffers and DMA staging, in data (assumption)
    mac_rows: int = 4  # MAC array 16 x 4 of 8-bit multiply-accumulate units per PE [PE][SIM]
    mac_cols: int = 16
    mac_bits: int = 8
    router_entries: int = 16_384  # multicast router key/mask entries [DS][SM]
    dram_bytes: int = 1 << 30  # LPDDR4 per chip as SpiNNMachine models it (1 GiB) [SM]
    dram_bandwidth_bytes_per_s: float = 6.4e9  # "up to 6.4 GB/s sustained block transfer" [DS]
    clock_hz: float = 300e6  # PE clock; SpiNNMachine lists 150 and 300 MHz settings [SM]; 0.8 V point [CP]
    clock_min_hz: float = 150e6  # lowest DVFS setting listed [SM]
    voltage_v: float = 0.8  # core supply of the operating point (0.8 V at 300 MHz, 0.5 V at 150 MHz) [CP]
    reserved_pes: int = 0  # PEs kept for the host interface/monitor; the embedding runs on the host (assumption)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int | float) or v < 0:
                raise ChipConfigError(f"chip field {f.name} must be a non-negative number, not {v!r}")
        if self.n_pes <= self.reserved_pes:
            raise ChipConfigError("the chip must have more PEs than it reserves")
        if self.sram_bytes_per_pe < self.code_bytes_per_pe + self.data_sram_bytes_per_pe:
            raise ChipConfigError("code_bytes_per_pe + data_sram_bytes_per_pe must fit in sram_bytes_per_pe")
        if self.data_sram_bytes_per_pe <= self.buffer_bytes_per_pe:
            raise ChipConfigError("data_sram_bytes_per_pe must exceed buffer_bytes_per_pe")
        if not self.clock_hz > 0:
            raise ChipConfigError("clock_hz must be positive")

    @property
    def usable_pes(self) -> int:
        return self.n_pes - self.reserved_pes

    @property
    def data_bytes_per_pe(self) -> int:
        """Data SRAM left for weights, indices and state once the buffers are placed."""
        return self.data_sram_bytes_per_pe - self.buffer_bytes_per_pe

    @property
    def pe_budget_bytes(self) -> int:
        """What one PE may hold in all: its code region plus its data budget (never over its SRAM)."""
        return self.code_bytes_per_pe + self.data_sram_bytes_per_pe

    def at_operating_point(self, name: str) -> ChipSpec:
        """This chip at one of the measured DVFS operating points (`OPERATING_POINTS`): clock and voltage."""
        op = operating_point(name)
        return dataclasses.replace(self, clock_hz=op.clock_hz, voltage_v=op.voltage_v)

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
    "code_bytes_per_pe": "[CP] 128 KB SRAM ≈ 32 KB instruction + 96 KB data",
    "data_sram_bytes_per_pe": "[CP] 128 KB SRAM ≈ 32 KB instruction + 96 KB data",
    "buffer_bytes_per_pe": "assumption",
    "mac_rows": "[PE] review; [SIM] MLA_MAC_ROW = 4",
    "mac_cols": "[PE] review; [SIM] MLA_MAC_COLUMN = 16",
    "mac_bits": "[PE] review (8-bit MAC)",
    "router_entries": "[DS]; [SM] n_router_entries = 16384",
    "dram_bytes": "[SM] max_sdram_per_chip = 1 GiB",
    "dram_bandwidth_bytes_per_s": "[DS] up to 6.4 GB/s sustained",
    "clock_hz": "[SM] clock_speeds_hz [150, 300] (MHz)",
    "clock_min_hz": "[SM] clock_speeds_hz [150, 300] (MHz)",
    "voltage_v": "[CP] nominal 0.5 V / 150 MHz and 0.8 V / 300 MHz",
    "reserved_pes": "assumption",
}


class ChipConfigError(S2NodeError):
    """A --chip-config file is missing, malformed, or names an unknown field."""


@dataclass(frozen=True)
class OperatingPoint:
    """One measured DVFS operating point of the whole chip [CP]. Powers are chip totals in W, at 152 PEs."""

    name: str
    voltage_v: float
    clock_hz: float
    asleep_power_w: float  # all PEs asleep (the baseline an inference pays for as long as it lasts)
    coremark_power_w: float  # CoreMark running on all PEs (every M4F busy)
    mac_ops_per_s: float  # INT8 MAC arrays of all PEs, operands in SRAM (ops: 2 per multiply-accumulate)
    mac_power_w: float  # chip power while the MAC arrays run at that rate


# [CP]: all PEs off 75.2 mW; asleep 235.4 / 564.7 mW; CoreMark 424.6 mW (0.5 V, 150 MHz) / 1,247.9 mW (0.8 V,
# 300 MHz); INT8 MAC arrays 2.281 TOPS at 0.825 W (150 MHz) and 4.563 TOPS at 2.219 W (300 MHz).
OPERATING_POINTS: dict[str, OperatingPoint] = {
    "0.5V": OperatingPoint("0.5V", 0.5, 150e6, 0.2354, 0.4246, 2.281e12, 0.825),
    "0.8V": OperatingPoint("0.8V", 0.8, 300e6, 0.5647, 1.2479, 4.563e12, 2.219),
}
CHIP_OFF_POWER_W = 0.0752  # all PEs off [CP]: what the chip draws apart from its PEs


def operating_point(name: str) -> OperatingPoint:
    try:
        return OPERATING_POINTS[name]
    except KeyError as e:
        raise ChipConfigError(f"operating point {name!r}: use one of {', '.join(OPERATING_POINTS)}") from e
