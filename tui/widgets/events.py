"""The events pane: the latest downsampled event frame (ON and OFF in two colours) and an event-rate sparkline."""

from __future__ import annotations

from functools import lru_cache

from rich.style import Style
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from stream.schema import EventFrame
from tui.payloads import downsample, fit_frame, si, sparkline

ON_RGB = (80, 220, 120)  # ON events: green
OFF_RGB = (230, 80, 200)  # OFF events: magenta (distinct from green also for most colour-blind viewers)
LEVELS = 8


@lru_cache(maxsize=4 * LEVELS * LEVELS)
def _cell_style(upper: tuple[int, int], lower: tuple[int, int]) -> Style:
    """(polarity, level) of the upper and lower pixel -> a style for one '▀' character."""

    def colour(pol_level: tuple[int, int]) -> str:
        pol, level = pol_level
        if level == 0:
            return "rgb(12,12,16)"
        r, g, b = ON_RGB if pol > 0 else OFF_RGB
        k = level / LEVELS
        return f"rgb({int(r * k)},{int(g * k)},{int(b * k)})"

    return Style(color=colour(upper), bgcolor=colour(lower))


def _level(on: int, off: int, top: int) -> tuple[int, int]:
    c = max(on, off)
    if c == 0 or top == 0:
        return (0, 0)
    # square root: a few events stay visible next to a hot pixel
    return (1 if on >= off else -1, max(1, round((c / top) ** 0.5 * LEVELS)))


class EventsPane(Widget):
    DEFAULT_CSS = """
    EventsPane { border: round $primary; height: 1fr; min-height: 5; }
    """

    frame: reactive[EventFrame | None] = reactive(None)
    rates: reactive[tuple[float, ...]] = reactive(())

    def on_mount(self) -> None:
        self.border_title = "events"

    def watch_frame(self, f: EventFrame | None) -> None:
        legend = "[rgb(80,220,120)]■[/] on [rgb(230,80,200)]■[/] off"
        self.border_subtitle = f"{legend} {f.width}x{f.height}" if f is not None else legend

    def render(self) -> Text:
        f, cols, rows = self.frame, self.size.width, max(1, self.size.height - 1)
        out = Text(no_wrap=True, overflow="crop")
        if f is None:
            return out.append("waiting for event frames…", style="dim")
        cw, ch = fit_frame(f.width, f.height, cols, rows)
        on = downsample(f.on, f.width, f.height, cw, ch)
        off = downsample(f.off, f.width, f.height, cw, ch)
        ch = len(on)
        top = max(max(max(r) for r in on), max(max(r) for r in off), 1)
        pad = " " * ((cols - len(on[0])) // 2)
        for y in range(0, ch, 2):
            out.append(pad)
            for x in range(len(on[0])):
                up = _level(on[y][x], off[y][x], top)
                lo = _level(on[y + 1][x], off[y + 1][x], top) if y + 1 < ch else (0, 0)
                out.append("▀", style=_cell_style(up, lo))
            out.append("\n")
        rate = f.event_rate_hz
        label = f" {si(rate, 'ev/s')}"
        out.append(sparkline(self.rates, max(1, cols - len(label))), style="yellow")
        out.append(label, style="bold")
        return out
