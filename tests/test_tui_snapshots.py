"""Snapshots of the main screen (80x24 and 120x36) and the help, fed over a real broker, clocks frozen."""

from __future__ import annotations

import pytest
from textual.widgets import Input
from tui_helpers import connected, wait_for

from tui import samples
from tui.app import S2App
from tui.widgets import GesturePane, NodePane, TextPane

pytestmark = pytest.mark.broker
STEPS = 70


def _before(url: str, node: str, typed: str = "to be or not to b"):
    async def run_before(pilot) -> None:
        app: S2App = pilot.app
        app.query_one(Input).cursor_blink = False  # frozen: a blinking cursor would make snapshots flaky
        await connected(pilot)
        app.status_line.broker = "mqtt://127.0.0.1:1883"  # the fixture's port is random
        await pilot.press(*typed)
        await samples.replay(url, node, STEPS, typed)
        await wait_for(pilot, lambda: app.query_one(TextPane).prediction is not None
                       and app.query_one(NodePane).stats is not None
                       and app.query_one(GesturePane).prediction.step == STEPS - 1)
        await pilot.pause(0.2)  # one refresh tick after the last message

    return run_before


def test_main_screen_80x24(snap_compare, mosquitto):
    """At 80x24 every pane, the status line and the footer fit."""
    assert snap_compare(S2App(mosquitto.url, "snap80"), terminal_size=(80, 24),
                        run_before=_before(mosquitto.url, "snap80"))


def test_main_screen_120x36(snap_compare, mosquitto):
    """At 120x36 the panes grow: a larger event frame, wider heat map and longer history."""
    assert snap_compare(S2App(mosquitto.url, "snap120"), terminal_size=(120, 36),
                        run_before=_before(mosquitto.url, "snap120"))


def test_help_screen(snap_compare, mosquitto):
    """The help lists the key bindings over the main screen."""
    async def run_before(pilot) -> None:
        pilot.app.query_one(Input).cursor_blink = False
        await connected(pilot)
        pilot.app.status_line.broker = "mqtt://127.0.0.1:1883"
        await pilot.press("f1")

    assert snap_compare(S2App(mosquitto.url, "snaphelp"), terminal_size=(80, 24), run_before=run_before)
