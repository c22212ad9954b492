"""The gesture pane: the current class, a confidence bar for every class, and the recent changes."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from stream.schema import GesturePrediction
from tui.payloads import bar, clean

NAME_W_MAX = 24  # class names longer than this are cut (with an ellipsis)


class GesturePane(Widget):
    DEFAULT_CSS = """
    GesturePane { border: round $primary; padding: 0 1; height: 1fr; }
    """

    prediction: reactive[GesturePrediction | None] = reactive(None)
    history: reactive[tuple[tuple[int, str, float], ...]] = reactive(())

    def on_mount(self) -> None:
        self.border_title = "gesture"

    def watch_prediction(self, p: GesturePrediction | None) -> None:
        self.border_subtitle = f"step {p.step}" if p is not None else ""

    def render(self) -> Text:
        p, width = self.prediction, max(self.size.width, 20)
        out = Text(no_wrap=True, overflow="ellipsis")
        if p is None:
            return out.append("waiting for predictions…", style="dim")
        conf = max(p.probs, default=0.0)
        out.append("▶ ", style="bold yellow")
        out.append(clean(p.label, 40) or "?", style="bold reverse")
        out.append(f"  {conf:5.1%}\n", style="bold")
        names = [clean(c, 40) for c in p.classes[:32]]
        name_w = min(NAME_W_MAX, max((len(n) for n in names), default=8), max(8, width // 2)) + 1
        bar_w = max(4, width - name_w - 7)
        best = p.probs.index(conf) if p.probs else -1
        for i, prob in enumerate(p.probs[:32]):
            name = names[i] if i < len(names) else f"class {i}"
            if len(name) >= name_w:
                name = name[: name_w - 2] + "…"
            style = "bold green" if i == best else "cyan"
            out.append(f"{name:<{name_w}}", style="bold" if i == best else "")
            out.append(bar(prob, bar_w), style=style)
            out.append(f" {prob:5.1%}\n")
        if self.history:
            out.append("recent\n", style="dim underline")
            for step, label, c in reversed(self.history):
                out.append(f"{step:>7} ", style="dim")
                out.append(f"{clean(label, 40)[: width - 15]} ")
                out.append(f"{c:.0%}\n", style="dim")
        out.rstrip()
        return out

