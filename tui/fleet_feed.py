"""The fleet view's side of the MQTT link: every node's stats, and every node's predictions while the view is open.

Statuses already arrive through `tui.feed.NodeFeed` (every node's), and the app folds them into the fleet too.
What arrives here is folded straight into a `FleetState`, without a Textual message per MQTT message: a fleet
of a thousand nodes sends a thousand stats a second, and the view only reads the state at its refresh tick.
"""

from __future__ import annotations

import time

from stream.mqtt import MqttLink
from stream.schema import PayloadError, is_node_id, parse_topic, topic
from tui.payloads import parse_message
from tui.state import FleetState

STATS = topic("+", "stats")
PREDICTIONS = topic("+", "pred/+")


class FleetFeed:
    """Subscribes s2/v1/+/stats for good and s2/v1/+/pred/+ on demand; malformed messages are counted."""

    def __init__(self, link: MqttLink, fleet: FleetState) -> None:
        self.link, self.fleet = link, fleet
        self.malformed = 0
        link.subscribe(STATS, self._on_message, qos=0)

    def watch_predictions(self, on: bool) -> None:
        """Follow every node's predictions (while the fleet view is shown: with many nodes they are many)."""
        if on:
            self.link.subscribe(PREDICTIONS, self._on_message, qos=0)
        else:
            self.link.unsubscribe(PREDICTIONS)

    def _on_message(self, t: str, raw: bytes) -> None:
        try:
            node, _kind = parse_topic(t)
            if not is_node_id(node):
                raise PayloadError("the topic's node id is not a valid node id")
            p = parse_message(t, raw, node)
        except PayloadError:
            self.malformed += 1
            return
        if p is not None:
            self.fleet.apply(node, p, time.monotonic())
