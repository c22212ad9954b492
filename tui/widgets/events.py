"""The events pane: the latest downsampled event frame (ON and OFF in two colours) and an event-rate sparkline."""

from __future__ import annotations

from functools import lru_cache

from rich.segment import Segment
from rich.style import Style
from textual.reactive import reactive
from textual.strip import Strip
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
    """Drawn with the line API (segments straight to strips): the frame is hundreds of styled cells, and going
    through Rich Text and Textual Content for it cost more than the rest of the screen together."""

    DEFAULT_CSS = """
    EventsPane { border: round $primary; height: 1fr; min-height: 5; }
    """

    frame: reactive[EventFrame | None] = reactive(None)
    rates: reactive[tuple[float, ...]] = reactive(())

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._strips: list[Strip] | None = None
        self._built_for: tuple[int, int] = (0, 0)

    def on_mount(self) -> None:
        self.border_title = "events"

    def watch_frame(self, f: EventFrame | None) -> None:
        legend = "[rgb(80,220,120)]■[/] on [rgb(230,80,200)]■[/] off"
        self.border_subtitle = f"{legend} {f.width}x{f.height}" if f is not None else legend
        self._strips = None

    def watch_rates(self, _rates: tuple[float, ...]) -> None:
        self._strips = None

    def render_line(self, y: int) -> Strip:
        size = (self.size.width, self.size.height)
        if self._strips is None or self._built_for != size:
            self._strips, self._built_for = self._build(*size), size
        return self._strips[y] if y < len(self._strips) else Strip.blank(size[0], self.rich_style)

    def _build(self, cols: int, height: int) -> list[Strip]:
        f, base = self.frame, self.rich_style
        if f is None:
            return [Strip([Segment("waiting for event frames…", base + Style(dim=True))])]
        cw, ch = fit_frame(f.width, f.height, cols, max(1, height - 1))
        on = downsample(f.on, f.width, f.height, cw, ch)
        off = downsample(f.off, f.width, f.height, cw, ch)
        ch, cw = len(on), len(on[0])
        top = max(max(max(r) for r in on), max(max(r) for r in off), 1)
        pad = Segment(" " * ((cols - cw) // 2), base)
        pad_right = Segment(" " * (cols - cw - len(pad.text)), base)
        strips = []
        for y in range(0, ch, 2):
            segs = [pad]
            for x in range(cw):
                up = _level(on[y][x], off[y][x], top)
                lo = _level(on[y + 1][x], off[y + 1][x], top) if y + 1 < ch else (0, 0)
                segs.append(Segment("▀", _cell_style(up, lo)))
            segs.append(pad_right)
            strips.append(Strip(Segment.simplify(segs), cols))
        label = f" {si(f.event_rate_hz, 'ev/s')}"
        spark = sparkline(self.rates, max(1, cols - len(label)))
        strips.append(Strip([Segment(spark, base + Style(color="yellow")), Segment(label, base + Style(bold=True))]))
        return strips
