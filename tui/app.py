"""The s2egru terminal UI: four panes and a status line, fed only by MQTT. Messages up, attributes down."""

from __future__ import annotations

import itertools
import time

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer

from stream.mqtt import ConnectSettings
from stream.schema import is_node_id
from tui.feed import Feed, NodeFeed, open_link
from tui.fleet_feed import FleetFeed
from tui.payloads import control_in, literal, text_chunks, text_in
from tui.screens import ChoiceScreen, FleetScreen, HelpScreen
from tui.state import FeedState, FleetState
from tui.widgets import EventsPane, GesturePane, NodePane, StatusLine, TextPane

SPEEDS = ["0.25", "0.5", "1", "2", "4", "8"]
REFRESH_HZ = 15.0  # the panes show the latest state at this rate, however fast messages arrive
NO_NODE = "…"  # shown as the node until the first one announces itself
FLEET_SETTLE_S = 2.0  # with no node given: the fleet view opens by itself if 2+ nodes are online this soon


class S2App(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "s2egru"
    ENABLE_COMMAND_PALETTE = False  # ctrl+p is pause here
    BINDINGS = [
        Binding("ctrl+p", "toggle_pause", "pause", priority=True),
        Binding("ctrl+r", "choose_recording", "recording", priority=True),
        Binding("ctrl+s", "choose_speed", "speed", priority=True),
        Binding("ctrl+n", "choose_node", "node", priority=True),
        Binding("ctrl+l", "reset_text", "new text", priority=True),
        Binding("f1", "help", "help", key_display="f1/?"),
        Binding("ctrl+q", "quit", "quit", priority=True),
        # the same without ctrl, for when the text input does not have the focus (esc leaves it)
        Binding("p", "toggle_pause", show=False),
        Binding("r", "choose_recording", show=False),
        Binding("s", "choose_speed", show=False),
        Binding("n", "choose_node", show=False),
        Binding("question_mark", "help", show=False),
        Binding("q", "quit", show=False),
        Binding("ctrl+o", "next_model", "model", priority=True),
        Binding("o", "next_model", show=False),
        Binding("escape", "leave_input", show=False),
        Binding("ctrl+f", "fleet", "fleet", priority=True),
        Binding("f", "fleet", show=False),
    ]

    def __init__(self, broker_url: str, node_id: str | None = None, *, coalesce: bool = True,
                 settings: ConnectSettings | None = None, group: str | None = None) -> None:
        """With node_id None the app follows the first node that announces itself online; `settings` carry
        credentials and TLS (default: what the URL says); with `group` the text pane asks that group's text
        workers (`s2 serve`) instead of the node."""
        super().__init__()
        self.state = FeedState(node_id or "")
        self.link = open_link(settings or broker_url, self.post_message, mqtt5=group is not None)
        self.feed = NodeFeed(self.link, self.post_message, self.state.node, group=group)
        self.group = group  # the text pane asks this group's workers, not the node
        self.coalesce = coalesce  # False repaints on every message (the bench's baseline)
        self.paused, self.speed, self.recording = False, "1", ""
        self._seq = itertools.count()
        self._shown = -1
        self._was_connected = False  # a first connection after failed attempts is not a reconnect
        self.fleet = FleetState()
        self.fleet_feed = FleetFeed(self.link, self.fleet)
        # no node given: the fleet view may open by itself just after the first connection (retained statuses)
        self._fleet_until: float | None = None if node_id else 0.0

    def compose(self) -> ComposeResult:
        yield StatusLine()
        with Horizontal(id="main"):
            yield GesturePane()
            with Vertical(id="right"):
                yield EventsPane()
                yield TextPane()
                yield NodePane()
        yield Footer()

    def on_mount(self) -> None:
        self.status_line = self.query_one(StatusLine)
        self.status_line.broker = str(self.link.url)
        self.status_line.node = self.state.node or NO_NODE
        self._panes = (self.query_one(GesturePane), self.query_one(EventsPane), self.query_one(TextPane),
                       self.query_one(NodePane))
        self._show_playback()
        self.query_one("TextPane Input").focus()
        self.set_interval(1 / REFRESH_HZ, self.refresh_panes)
        self.listen()

    @work(exclusive=True, group="mqtt")
    async def listen(self) -> None:
        await self.feed.run()

    def _follow(self, node: str) -> None:
        """Show another node: the state starts afresh and the subscriptions move (same connection)."""
        self.state.switch(node)
        self.feed.follow(node)
        self.status_line.node, self.status_line.state = node, "connecting"
        self._await_subscribed()

    @work(exclusive=True, group="follow")
    async def _await_subscribed(self) -> None:
        if await self.link.synced() and self.status_line.state == "connecting":
            self.status_line.state = "connected"

    # -- messages up: the MQTT worker reports; the state absorbs -----------------------------------------
    def on_feed_connected(self, m: Feed.Connected) -> None:
        line = self.status_line
        if line.state == "disconnected" and self._was_connected:
            line.reconnects += 1
        line.state, line.detail, self._was_connected = "connected", "", True
        if self._fleet_until == 0.0:
            self._fleet_until = time.monotonic() + FLEET_SETTLE_S

    def on_feed_disconnected(self, m: Feed.Disconnected) -> None:
        self.status_line.state = "disconnected"
        self.status_line.detail, self.status_line.reason = f"in {m.retry_in_s:.1f} s", m.reason

    def _absorb(self, m: Feed.PredictionReceived | Feed.StatsReceived | Feed.FrameReceived) -> None:
        if m.node != self.state.node:  # queued before a node switch
            return
        self.state.apply(m.payload)
        if not self.coalesce:
            self.refresh_panes()

    on_feed_prediction_received = on_feed_stats_received = on_feed_frame_received = _absorb

    def on_feed_status_received(self, m: Feed.StatusReceived) -> None:
        p = m.payload
        if not self.state.node and p.state == "online" and is_node_id(p.node):  # no node given: the first one heard
            self._follow(p.node)
        self.state.apply(p)
        self.fleet.apply(p.node, p, time.monotonic())
        self._open_fleet_if_many()

    def _open_fleet_if_many(self) -> None:
        """Started with no node: once, right after connecting, show the fleet if more than one node is online."""
        if self._fleet_until and time.monotonic() <= self._fleet_until and len(self.fleet.online()) > 1:
            self._fleet_until = None
            if not isinstance(self.screen, FleetScreen):
                self.action_fleet()

    def on_feed_malformed(self, m: Feed.Malformed) -> None:
        self.state.count_malformed()

    # -- attributes down: the latest state, at most REFRESH_HZ times a second -----------------------------
    def refresh_panes(self) -> None:
        s = self.state
        if s.version == self._shown:
            return
        self._shown = s.version
        gesture, events, text, node = self._panes
        gesture.prediction, gesture.history = s.gesture, tuple(s.history)
        events.frame, events.rates = s.frame, tuple(s.rates)
        text.prediction = s.text
        # with a group the text workers take the text, whichever node is shown
        text.node_online = (self.group is not None and self.link.stats.connected) or s.nodes.get(s.node) == "online"
        node.stats, node.position = s.stats, s.model_position
        line = self.status_line
        line.node, line.node_state = s.node or NO_NODE, s.nodes.get(s.node, "")
        line.control = s.control  # what the node says is in effect (None: it does not answer in/control)
        line.dropped, line.malformed = s.dropped, s.malformed

    # -- the user's side: typed text and playback control go out on in/ topics ----------------------------
    def on_text_pane_typed(self, m: TextPane.Typed) -> None:
        for piece in text_chunks(m.text):  # a long paste becomes several messages within the schema's limit
            if not self._send("in/text", text_in(next(self._seq), piece), "typed text"):
                return

    def _control(self, cmd: str, value: object = None) -> None:
        self._send("in/control", control_in(next(self._seq), cmd, value), cmd)
        self._show_playback()

    def _send(self, kind: str, payload: bytes, what: str) -> bool:
        """Publish to the node shown; refused (and said so) with no node yet, or while disconnected."""
        if self.feed.send(kind, payload):
            return True
        why = "no node yet" if not self.state.node else "not connected"
        self.notify(f"{why}: {what} not sent", severity="warning", timeout=2)
        return False

    def _show_playback(self) -> None:
        self.status_line.playback = f"{'⏸ paused' if self.paused else '▶'} {self.speed}x {self.recording}".rstrip()

    def action_toggle_pause(self) -> None:
        self.paused = not self.state.paused_in_effect(self.paused)
        self._control("pause" if self.paused else "resume")

    def action_choose_speed(self) -> None:
        def chosen(v: str | None) -> None:
            if v is not None:
                self.speed = v
                self._control("speed", float(v))

        self._choose(ChoiceScreen("replay speed (x real time)", SPEEDS, self.speed), chosen)

    def action_choose_recording(self) -> None:
        recs = list(self.state.status.recordings) if self.state.status else []
        recs = [r for r in recs if isinstance(r, str)]
        if not recs:
            self.notify(f"node {literal(self.state.node, 64)} has not announced any recordings", timeout=3)
            return

        def chosen(v: str | None) -> None:
            if v is not None:
                self.recording = v
                self._control("recording", v)

        self._choose(ChoiceScreen("recording", recs, self.recording), chosen)

    def action_choose_node(self) -> None:
        nodes = sorted(n for n in {*self.state.nodes, self.state.node} if is_node_id(n))
        if not nodes:
            self.notify("no node has announced itself yet", timeout=3)
            return

        def chosen(v: str | None) -> None:
            if v is not None and v != self.state.node:
                self._follow(v)

        self._choose(ChoiceScreen("node", nodes, self.state.node), chosen)

    def action_fleet(self) -> None:
        """Open the fleet view (or close it); choosing a row shows that node's panes."""
        if isinstance(self.screen, FleetScreen):
            self.screen.dismiss(None)
            return
        self._fleet_until = None  # opened by hand: it will not open by itself any more
        self.fleet_feed.watch_predictions(True)

        def chosen(v: str | None) -> None:
            self.fleet_feed.watch_predictions(False)
            if v is not None and v != self.state.node and is_node_id(v):
                self._follow(v)

        self._choose(FleetScreen(self.fleet, self.state.node), chosen)

    def action_next_model(self) -> None:
        self.state.next_model()

    def action_reset_text(self) -> None:
        self.state.text = None  # or the next refresh would put the old answer back
        self.query_one(TextPane).clear()
        self._control("reset", "text")

    def action_help(self) -> None:
        self._choose(HelpScreen())

    def _choose(self, screen: ChoiceScreen | HelpScreen | FleetScreen, chosen=None) -> None:
        """Open a chooser (or the help); when it closes the focus goes back where it was, so that after Esc
        plain keys stay commands instead of going to the language model."""
        before = self.focused

        def done(value: str | None) -> None:
            if chosen is not None:
                chosen(value)
            self.call_after_refresh(self.set_focus, before)

        self.push_screen(screen, done)

    def action_leave_input(self) -> None:
        self.set_focus(None)


def run_app(broker_url: str, node_id: str | None = None, settings: ConnectSettings | None = None,
            group: str | None = None) -> int:
    """Run the UI in this terminal until the user quits; the exit status (non-zero when the app failed)."""
    app = S2App(broker_url, node_id, settings=settings, group=group)
    app.run()
    return app.return_code or 0
