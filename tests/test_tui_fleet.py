"""The fleet view: every node heard on a real mosquitto in one table, hostile node ids shown literally."""

from __future__ import annotations

import html
import re

import pytest
from tui_helpers import connected, publish, publish_raw, wait_for

from stream.schema import Status
from tui import samples
from tui.app import S2App
from tui.screens import FleetScreen
from tui.state import FleetState
from tui.widgets import GesturePane
from tui.widgets.fleet import FleetTable

pytestmark = pytest.mark.broker
HOSTILE = "[@click=app.quit]x[reverse]"  # a valid node id (no / + #) that is also Textual markup


def cells_shown(app) -> list[str]:
    """Every text run of the app's screenshot (DataTable cells are separate runs), stripped, empties left out."""
    runs = re.findall(r"<text [^>]*>(.*?)</text>", app.export_screenshot())
    return [t for r in runs if (t := html.unescape(r).replace("\xa0", " ").strip())]


def _stats(i: int, t_wall: float, model: str = "gesture-egru", dropped: int = 0):
    s = samples.stats(i, t_wall=t_wall)
    s.model, s.events_dropped = model, dropped
    return s


async def _three_nodes(url: str) -> None:
    """Three publishers: two cameras and one with a hostile id, each with a retained online status."""
    for node in ("cam-a", "cam-b"):
        await publish(url, node, samples.status(node), retain=True)
    await publish(url, HOSTILE, Status(node=HOSTILE), retain=True)  # no models: its stats name one


async def _stats_of_two(url: str) -> None:
    await publish(url, "cam-a", _stats(1, 100.0), _stats(3, 101.0, dropped=7))  # 3,000 events in 1 s
    await publish(url, HOSTILE, _stats(1, 100.0, model="[blink]m[/blink]"))


async def test_fleet_opens_by_itself_and_a_row_shows_that_node(mosquitto_private):
    """Started with no node on a broker with three online nodes, the UI opens the fleet; every node is a row
    (rates, drops, last prediction), a hostile id is shown literally, and enter on a row shows its panes."""
    url = mosquitto_private.url
    await _three_nodes(url)
    app = S2App(url)
    async with app.run_test(size=(160, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, FleetScreen))
        await wait_for(pilot, lambda: app.link.stats.connected)
        await _stats_of_two(url)
        await wait_for(pilot, lambda: app.fleet.rows["cam-a"].rate_hz is not None
                       and "[blink]m[/blink]" in app.fleet.rows[HOSTILE].models)
        g = samples.gesture(75)
        await publish(url, "cam-b", g)  # predictions of every node while the fleet is shown
        await wait_for(pilot, lambda: app.fleet.rows["cam-b"].last.startswith("right_hand_wave"))
        await publish(url, HOSTILE, Status(state="offline", node=HOSTILE), retain=True)
        table = app.screen.query_one(FleetTable)
        await wait_for(pilot, lambda: table.row_count == 3  # the view refreshes at 2 Hz
                       and table.get_cell(HOSTILE, "state").plain == "offline"
                       and table.get_cell("cam-b", "last").plain != "")
        await pilot.pause(0.1)
        assert table.row_count == 3
        shown = cells_shown(app)
        assert any(t.startswith("fleet: 3 nodes, 2 online") for t in shown)
        assert HOSTILE in shown  # literally, not read as markup
        assert "[blink]m[/blink]" in shown
        a = shown.index("cam-a")
        assert shown[a:a + 6] == ["cam-a", "online", "3 kev/s", "7", "0", "gesture-egru, shakespeare-egru"]
        b = shown.index("cam-b")
        assert shown[b + 3] == f"right_hand_wave {max(g.probs):.0%}" and "offline" in shown
        table.move_cursor(row=table.get_row_index("cam-b"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, FleetScreen) and app.state.node == "cam-b")
        await publish(url, "cam-b", samples.gesture(5))
        await wait_for(pilot, lambda: app.query_one(GesturePane).prediction is not None
                       and app.query_one(GesturePane).prediction.step == 5)
        assert app.is_running  # the hostile id's [@click=app.quit] never ran


async def test_a_given_node_shows_its_panes_and_ctrl_f_opens_the_fleet(mosquitto_private):
    """With a node given (as the demo does) the panes show at once even with several nodes online; ctrl+f
    opens the fleet, esc closes it and the node shown stays."""
    url = mosquitto_private.url
    await _three_nodes(url)
    app = S2App(url, "cam-a")
    async with app.run_test(size=(100, 30)) as pilot:
        await connected(pilot)
        await wait_for(pilot, lambda: len(app.fleet.online()) == 3)
        await pilot.pause(0.3)
        assert not isinstance(app.screen, FleetScreen)
        await pilot.press("ctrl+f")
        assert isinstance(app.screen, FleetScreen)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, FleetScreen))
        assert app.state.node == "cam-a"


async def test_one_node_online_keeps_todays_single_node_view(mosquitto_private):
    """With no node given and only one node online (another offline) the UI follows it without the fleet."""
    url = mosquitto_private.url
    await publish(url, "solo", samples.status("solo"), retain=True)
    await publish(url, "gone", Status(state="offline", node="gone"), retain=True)
    app = S2App(url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.state.node == "solo" and "gone" in app.fleet.rows)
        await connected(pilot)
        await publish_raw(url, "bad", "stats", b"{not json")  # counted, not shown
        await wait_for(pilot, lambda: app.fleet_feed.malformed == 1)
        await pilot.pause(0.3)
        assert not isinstance(app.screen, FleetScreen)
        assert set(app.fleet.rows) == {"solo", "gone"}


def test_fleet_is_bounded_and_forgets_offline_nodes_first():
    """Beyond the limit the offline node heard longest ago goes first, then the node heard longest ago."""
    fleet = FleetState(limit=3)
    fleet.apply("a", Status(state="online", node="a"), now=1.0)
    fleet.apply("b", Status(state="offline", node="b"), now=2.0)
    fleet.apply("c", Status(state="online", node="c"), now=3.0)
    fleet.apply("d", Status(state="online", node="d"), now=4.0)
    assert list(fleet.rows) == ["a", "c", "d"] and fleet.forgotten == 1
    fleet.apply("a", _stats(1, 1.0), now=5.0)  # heard again: now the most recent
    fleet.apply("e", Status(state="online", node="e"), now=6.0)
    assert list(fleet.rows) == ["d", "a", "e"] and fleet.forgotten == 2
    for i in range(2000):
        fleet.apply(f"x{i}", Status(state="online", node=f"x{i}"), now=7.0 + i)
    assert len(fleet.rows) == 3


def test_fleet_changes_are_taken_per_node_and_bounded():
    """A view learns which nodes changed since it last looked; unread, the record stays bounded."""
    fleet = FleetState(limit=4)
    for i in range(3):
        fleet.apply(f"n{i}", Status(state="online", node=f"n{i}"), now=float(i))
    assert fleet.take_changed() == {"n0", "n1", "n2"} and fleet.take_changed() == set()
    fleet.apply("n1", _stats(1, 1.0), now=4.0)
    assert fleet.take_changed() == {"n1"}
    for i in range(100):
        fleet.apply(f"x{i}", Status(state="online", node=f"x{i}"), now=5.0 + i)
    assert fleet.take_changed() is None  # too many to list: the view redraws every row


async def test_the_table_drops_forgotten_nodes_while_open():
    """Nodes forgotten to stay within the limit leave the open table; changed rows are updated in place."""
    from textual.app import App

    fleet = FleetState(limit=2)
    fleet.apply("a", Status(state="offline", node="a"), now=1.0)
    fleet.apply("b", Status(state="online", node="b"), now=2.0)
    app = App()
    async with app.run_test(size=(100, 12)) as pilot:
        app.push_screen(FleetScreen(fleet))
        await pilot.pause(0.1)
        table = app.screen.query_one(FleetTable)
        assert table.row_count == 2
        fleet.apply("c", Status(state="online", node="c"), now=3.0)
        fleet.apply("b", _stats(1, 1.0, dropped=5), now=4.0)
        await wait_for(pilot, lambda: table.row_count == 2 and "c" in table.rows and "a" not in table.rows)
        await wait_for(pilot, lambda: table.get_cell("b", "dropped").plain == "5")
        assert [str(k.value) for k in table.rows] == ["b", "c"]
        assert "1 forgotten" in str(app.screen.query_one("#fleet-title").render())
