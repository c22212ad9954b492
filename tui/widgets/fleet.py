"""The fleet table: one row per node heard on the broker, updated in place from a FleetState."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from tui.payloads import clean, si
from tui.state import FleetRow, FleetState

# (key, label, width): the widest column last, so that the figures stay in view on narrow terminals. Widths are
# fixed (the node's fits its id when its row is added): widening a column on update would measure all its rows
COLUMNS = (("node", "node", None), ("state", "status", 7), ("rate", "events/s", 11), ("last", "last prediction", 28),
           ("dropped", "dropped", 8), ("reconnects", "reconnects", 10), ("models", "models", 40))
STATE_STYLE = {"online": "green", "offline": "red"}


def cells(row: FleetRow) -> tuple[Text, ...]:
    """A row's cells as Rich Text: never read as markup, control characters replaced, lengths bounded."""
    rate = row.rate_hz
    return (
        Text(clean(row.node, 64), style="bold"),
        Text(clean(row.state, 12) or "?", style=STATE_STYLE.get(row.state, "dim")),
        Text(si(rate, "ev/s") if rate is not None else "-", justify="right"),
        Text(clean(row.last, 28)),
        Text(str(row.dropped), justify="right", style="bold red" if row.dropped else ""),
        Text("-" if row.reconnects is None else str(row.reconnects), justify="right"),
        Text(clean(", ".join(row.models), 40)),
    )


class FleetTable(DataTable):
    """Rows keyed by node id, sorted by it; `sync()` adds, updates and removes only what changed."""

    DEFAULT_CSS = """
    FleetTable { height: 1fr; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._shown: dict[str, tuple[str, ...]] = {}  # node -> the plain text of its cells as shown
        self._synced = False  # the first sync shows every row; later ones only the changed

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, width=width, key=key)

    def sync(self, fleet: FleetState, full: bool = False) -> None:
        """Show the fleet: every row the first time (or with `full`), then only the rows of nodes changed since
        the last call (a thousand nodes send a thousand stats a second; the table is redrawn 15 times a second)."""
        changed = fleet.take_changed()
        incremental = self._synced and changed is not None and not full
        todo = changed if incremental else {*fleet.rows, *self._shown}
        self._synced, added = True, False
        for node in list(todo):
            row = fleet.rows.get(node)
            if row is None:  # forgotten
                if self._shown.pop(node, None) is not None:
                    self.remove_row(node)
                continue
            new = cells(row)
            plain = tuple(c.plain for c in new)
            old = self._shown.get(node)
            if old is None:
                self.add_row(*new, key=node)
                added = True
            elif old != plain:
                for (key, _label, _width), a, b in zip(COLUMNS, old, new, strict=True):
                    if a != b.plain:
                        self.update_cell(node, key, b)
            self._shown[node] = plain
        if added:
            self.sort("node", key=lambda t: t.plain)
