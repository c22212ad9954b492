"""Modal screens: the key help, and a list to choose a recording, a replay speed or a node from."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

HELP = """\
s2egru: a live view of an emulated SpiNNaker 2 node (esc closes)

Type in the text pane: every key goes to the node (in/text);
Enter sends a newline. Esc leaves the input so plain keys work.

 ctrl+p  p      pause / resume the replay
 ctrl+r  r      choose the recording
 ctrl+s  s      choose the replay speed
 ctrl+n  n      switch node (nodes seen on the broker)
 ctrl+l         new text: clear the input, reset the model
 ctrl+o  o      node pane: the next model's figures
 f1      ?      this help
 ctrl+q  q      quit

Panes: gesture (class, confidences, recent changes), events
(latest frame: green ON, magenta OFF; event-rate sparkline),
text (top-5 next characters, continuation, bits per char),
node (PE heat map: 38 quad-PEs x 4, SRAM, synaptic ops/s,
sparsity, energy per inference, step latency p50/p99).
Status line: broker, link state, reconnects, messages
dropped (sequence gaps) and malformed (ignored)."""


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Static { width: auto; max-width: 100%; height: auto; max-height: 100%;
        border: round $accent; padding: 0 1; background: $surface; }
    """
    BINDINGS = [Binding("escape,f1,question_mark,q", "dismiss", "close")]

    def compose(self) -> ComposeResult:
        yield Static(Text(HELP))


class ChoiceScreen(ModalScreen[str | None]):
    """Pick one of `choices` (shown literally: they may come from the network); None when cancelled."""

    DEFAULT_CSS = """
    ChoiceScreen { align: center middle; }
    ChoiceScreen > Vertical { width: 40; max-width: 100%; height: auto; max-height: 80%;
        border: round $accent; background: $surface; }
    ChoiceScreen OptionList { height: auto; max-height: 16; border: none; }
    """
    BINDINGS = [Binding("escape", "dismiss_none", "cancel")]

    def __init__(self, title: str, choices: list[str], current: str | None = None) -> None:
        super().__init__()
        self._title, self._choices, self._current = title, choices, current

    def compose(self) -> ComposeResult:
        with Vertical() as v:
            v.border_title = self._title
            yield OptionList(*[Option(Text(c), id=str(i)) for i, c in enumerate(self._choices)])

    def on_mount(self) -> None:
        if self._current in self._choices:
            self.query_one(OptionList).highlighted = self._choices.index(self._current)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self._choices[int(event.option_id or 0)])

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
