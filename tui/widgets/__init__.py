"""One widget per pane: reactive attributes set by the app, rendered from them."""

from tui.widgets.events import EventsPane
from tui.widgets.gesture import GesturePane
from tui.widgets.node import NodePane
from tui.widgets.status import StatusLine
from tui.widgets.text import TextPane

__all__ = ["EventsPane", "GesturePane", "NodePane", "StatusLine", "TextPane"]
