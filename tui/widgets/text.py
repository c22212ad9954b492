"""The text pane: an input whose every keystroke goes to the node, and the language model's answer."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Input, Static

from stream.schema import TextPrediction
from tui.payloads import clean

VISIBLE = {" ": "␣", "\n": "⏎", "\t": "⇥"}


def show_token(tok: str) -> str:
    """A predicted token as the user can see it (whitespace made visible)."""
    return VISIBLE.get(tok, clean(tok, 20))


class TextPane(Widget):
    DEFAULT_CSS = """
    TextPane { border: round $primary; height: 8; layout: vertical; }
    TextPane Input { height: 1; }
    TextPane #answer { height: 1fr; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    @dataclass
    class Typed(Message):
        """Characters the user just added to the input (deletions are not sent: the model cannot unread)."""

        text: str

    prediction: reactive[TextPrediction | None] = reactive(None)
    node_online: reactive[bool] = reactive(False)  # the node announced itself: its language model takes text

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._last = ""

    def compose(self) -> ComposeResult:
        yield Input(placeholder="type here: every key goes to the model", compact=True, id="typed")
        yield Static(id="answer")

    def on_mount(self) -> None:
        self.border_title = "text"
        self._placeholder()

    def _placeholder(self) -> None:
        hint = "type to talk to the node's language model" if self.node_online else "waiting for the node…"
        for answer in self.query("#answer").results(Static):  # none while the pane is being torn down
            answer.update(Text(hint, style="dim"))

    def watch_node_online(self, online: bool) -> None:
        if self.prediction is None and self.is_mounted:
            self._placeholder()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        new = event.value
        if new.startswith(self._last) and len(new) > len(self._last):
            self.post_message(self.Typed(new[len(self._last) :]))
        self._last = new

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.Typed("\n"))
        event.input.value = ""  # Changed fires with "" and resets _last

    def clear(self) -> None:
        """Empty the input and the answer (the model's context is reset by the app)."""
        self.query_one(Input).value = ""
        self._last = ""
        self.prediction = None
        self.query_one("#answer", Static).update(Text("new text: the model starts afresh", style="dim"))

    def watch_prediction(self, p: TextPrediction | None) -> None:
        if p is None:
            return
        out = Text(no_wrap=True, overflow="ellipsis")
        out.append("next ", style="dim")
        for tok, prob in p.topk[:5]:
            out.append(show_token(tok), style="bold reverse")
            out.append(f" {prob:.0%}  ")
        out.append("\n")
        ctx = clean(p.context.replace("\n", "⏎"), 400)  # before clean(), which replaces newlines
        out.append(ctx[-30:], style="dim")
        out.append(clean(p.continuation.replace("\n", "⏎"), 200), style="italic cyan")
        out.append("\n")
        if p.bpc is not None:
            out.append("bits/char ", style="dim")
            out.append(f"{p.bpc:.3f}", style="bold")
        if p.decoder:  # how the node wrote the continuation (an older node does not say)
            out.append(f"\ncontinuation: {clean(p.decoder, 60)}", style="dim")
        self.border_subtitle = f"seq {p.seq}"
        self.query_one("#answer", Static).update(out)
