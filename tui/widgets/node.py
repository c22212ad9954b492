"""The node pane: a per-PE activity heat map (38 quad-PEs x 4 PEs) and the chip's running figures."""

from __future__ import annotations

from functools import lru_cache

from rich.style import Style
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from stream.schema import NodeStats
from tui.payloads import literal, si

QPES, PES_PER_QPE = 38, 4  # SpiNNaker 2: 152 PEs in 38 quad-PEs
HEAT = ["#101018", "#1d2b53", "#1f5f8b", "#16a085", "#7dbb42", "#f1c40f", "#e67e22", "#e74c3c", "#ffffff"]


@lru_cache(maxsize=len(HEAT) ** 2)
def _heat_style(upper: int, lower: int) -> Style:
    return Style(color=HEAT[upper], bgcolor=HEAT[lower])


def _heat_level(a: float) -> int:
    return 0 if a <= 0 else min(len(HEAT) - 1, 1 + int(a * (len(HEAT) - 2)))


def heat_rows(activity: list[float]) -> list[list[float]]:
    """152 per-PE loads -> 4 rows (PE within its quad-PE) x 38 columns (quad-PE); missing PEs read 0."""
    acts = [a if isinstance(a, int | float) else 0.0 for a in activity[: QPES * PES_PER_QPE]]
    acts += [0.0] * (QPES * PES_PER_QPE - len(acts))
    return [[acts[q * PES_PER_QPE + k] for q in range(QPES)] for k in range(PES_PER_QPE)]


class NodePane(Widget):
    DEFAULT_CSS = """
    NodePane { border: round $primary; height: 7; }
    """

    stats: reactive[NodeStats | None] = reactive(None)
    position: reactive[tuple[int, int]] = reactive((0, 0))  # (model shown, models): ctrl+o / o cycles

    def on_mount(self) -> None:
        self.border_title = "node"

    def watch_stats(self, s: NodeStats | None) -> None:
        self._subtitle()

    def watch_position(self, _pos: tuple[int, int]) -> None:
        self._subtitle()

    def _subtitle(self) -> None:
        s, (i, n) = self.stats, self.position
        # the subtitle is markup: the model name comes from the network, so it must not be read as markup
        which = f" {i}/{n}" if n > 1 else ""
        self.border_subtitle = f"{literal(s.model, 24)}{which} · step {s.steps}" if s is not None else ""

    def render(self) -> Text:
        s, width = self.stats, self.size.width
        out = Text(no_wrap=True, overflow="ellipsis")
        if s is None:
            return out.append("waiting for node stats…", style="dim")
        rows = heat_rows(s.pe_activity)
        rep = max(1, width // QPES)  # widen each quad-PE column on wide terminals
        pad = " " * max(0, (width - QPES * rep) // 2)
        for y in (0, 2):
            out.append(pad)
            for q in range(QPES):
                out.append("▀" * rep, style=_heat_style(_heat_level(rows[y][q]), _heat_level(rows[y + 1][q])))
            out.append("\n")
        used, total = s.sram_bytes_used, s.sram_bytes_total
        frac = used / total if total else 0.0
        out.append("SRAM ", style="dim")
        if total:
            out.append(f"{frac:.0%}", style="bold").append(f" of {si(total, 'B')}  ")
        else:
            out.append("n/a  ", style="dim")  # the node did not report its placement
        out.append("synops ", style="dim").append(si(s.synops_per_s, "/s"), style="bold").append("\n")
        out.append("sparsity ", style="dim").append(f"{s.activity_sparsity:.1%}", style="bold")
        out.append("  E/inf ", style="dim").append(si(s.energy_per_inference_j, "J"), style="bold").append("\n")
        out.append("step p50 ", style="dim").append(si(s.latency_p50_s, "s"), style="bold")
        out.append(" p99 ", style="dim").append(si(s.latency_p99_s, "s"), style="bold")
        return out
