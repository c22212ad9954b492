"""Screens: the key help, a list to choose a recording, a replay speed or a node from, and the fleet view."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, OptionList, Static
from textual.widgets.option_list import Option

from tui.state import FleetState
from tui.widgets.fleet import FleetTable

HELP = """\
s2egru: a live view of an emulated SpiNNaker 2 node (esc closes)

Type in the text pane: every key goes to the node (in/text);
Enter sends a newline. Esc leaves the input so plain keys work.

 ctrl+p  p      pause / resume the replay
 ctrl+r  r      choose the recording
 ctrl+s  s      choose the replay speed
 ctrl+n  n      switch node (nodes seen on the broker)
 ctrl+f  f      fleet: every node in a table; enter shows one
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


FLEET_REFRESH_HZ = 2.0  # nodes send stats once a second; repainting a thousand-row table costs (bench_fleet.py)


class FleetScreen(Screen[str | None]):
    """Every node heard on the broker, one row each; enter shows the chosen node's panes, esc goes back."""

    DEFAULT_CSS = """
    FleetScreen #fleet-title { height: 1; background: $panel; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,f", "dismiss_none", "back")]

    def __init__(self, fleet: FleetState, current: str = "", refresh_hz: float = FLEET_REFRESH_HZ) -> None:
        super().__init__()
        self.fleet, self._current, self._refresh_hz = fleet, current, refresh_hz
        self._shown = -1

    def compose(self) -> ComposeResult:
        yield Static(id="fleet-title")
        yield FleetTable()
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_table()
        table = self.query_one(FleetTable)
        if self._current in self.fleet.rows:
            table.move_cursor(row=table.get_row_index(self._current))
        table.focus()
        self.set_interval(1 / self._refresh_hz, self.refresh_table)

    def refresh_table(self) -> None:
        f = self.fleet
        if f.version == self._shown:
            return
        self._shown = f.version
        self.query_one(FleetTable).sync(f)
        gone = f" · {f.forgotten} forgotten (at most {f.limit} kept)" if f.forgotten else ""
        title = f"fleet: {len(f.rows)} nodes, {len(f.online())} online{gone} · enter shows a node, esc goes back"
        self.query_one("#fleet-title", Static).update(Text(title))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.dismiss(str(event.row_key.value))

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
