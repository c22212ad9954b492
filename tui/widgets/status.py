"""The status line: broker, connection state, reconnects, loss and malformed counters, and the playback: what the
node says is in effect when it answers in/control, else what was last asked (dim, with a "?")."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from stream.schema import ControlState
from tui.payloads import clean, playback


class StatusLine(Widget):
    DEFAULT_CSS = """
    StatusLine { height: 1; background: $panel; padding: 0 1; }
    """

    broker: reactive[str] = reactive("")
    state: reactive[str] = reactive("connecting")  # connecting | connected | disconnected
    detail: reactive[str] = reactive("")  # when the link retries
    reason: reactive[str] = reactive("")  # why it is down (shown on wide terminals)
    node: reactive[str] = reactive("")
    node_state: reactive[str] = reactive("")  # what the node's retained status says: online | offline
    reconnects: reactive[int] = reactive(0)
    dropped: reactive[int] = reactive(0)
    malformed: reactive[int] = reactive(0)
    playback: reactive[str] = reactive("")  # e.g. "▶ 1x demo" as last requested
    control: reactive[ControlState | None] = reactive(None)  # what the node says is in effect

    def watch_state(self, state: str) -> None:
        self.set_class(state == "disconnected", "-down")

    def render(self) -> Text:
        width = self.size.width
        dot = {"connected": ("●", "bold green"), "disconnected": ("●", "bold red")}.get(self.state, ("○", "yellow"))
        out = Text(no_wrap=True, overflow="ellipsis")
        out.append(dot[0] + " ", style=dot[1])
        long = width >= 100
        broker = self.broker if long else self.broker.split("://", 1)[-1]
        if self.state == "disconnected":
            out.append(f"{broker} disconnected, retrying", style="bold red")
            out.append(f" {clean(self.detail, 40)}", style="red")
            if long and self.reason:
                out.append(f" ({clean(self.reason, 60)})", style="red")
        else:
            out.append(f"{broker} {self.state}")
        out.append(" │ node " if long else " │ ", style="dim").append(clean(self.node, 32), style="bold")
        if self.node_state:
            out.append(f" {clean(self.node_state, 12)}", style="green" if self.node_state == "online" else "red")
        if self.control is not None:
            text, style = playback(self.control)
            out.append(" │ ", style="dim").append(text, style=style)
        elif self.playback:  # a node that does not answer: what was asked, marked as unconfirmed
            out.append(" │ ", style="dim").append(clean(self.playback, 40) + "?", style="dim")
        out.append(" │ reconnects " if long else " │ re ", style="dim").append(str(self.reconnects))
        out.append(" dropped " if long else " drop ", style="dim").append(str(self.dropped))
        bad_style = "bold red" if self.malformed else ""
        out.append(" malformed " if long else " bad ", style="dim").append(str(self.malformed), style=bad_style)
        return out
