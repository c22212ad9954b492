"""The app's side of stream's one MQTT client: which topics it follows, and typed messages posted up to the app.

Connection, reconnects, TLS and the bounded incoming queue are `stream.mqtt.MqttLink`'s; here the link is made
a pure subscriber (no announce), its connect/disconnect events become Feed messages, and each message on the
followed node's topics (or any node's status) is parsed by tui.payloads and posted as a typed message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textual.message import Message

from stream.mqtt import ConnectSettings, MqttLink
from stream.schema import (
    EventFrame,
    GesturePrediction,
    NodeStats,
    Payload,
    PayloadError,
    Status,
    TextPrediction,
    is_node_id,
    topic,
)
from tui.payloads import SUBSCRIBED_KINDS, parse_message


class Feed:
    """Messages the MQTT worker posts to the app (handlers: on_feed_connected, ...)."""

    @dataclass
    class Connected(Message):
        url: str

    @dataclass
    class Disconnected(Message):
        reason: str
        retry_in_s: float

    @dataclass
    class PredictionReceived(Message):
        payload: GesturePrediction | TextPrediction
        node: str  # the node subscribed to when it arrived (stale ones are dropped after a switch)

    @dataclass
    class StatsReceived(Message):
        payload: NodeStats
        node: str  # the node subscribed to when it arrived (stale ones are dropped after a switch)

    @dataclass
    class FrameReceived(Message):
        payload: EventFrame
        node: str  # the node subscribed to when it arrived (stale ones are dropped after a switch)

    @dataclass
    class StatusReceived(Message):
        payload: Status

    @dataclass
    class Malformed(Message):
        topic: str
        reason: str


def typed_message(p: Payload, node: str) -> Message:
    if isinstance(p, GesturePrediction | TextPrediction):
        return Feed.PredictionReceived(p, node)
    if isinstance(p, NodeStats):
        return Feed.StatsReceived(p, node)
    if isinstance(p, EventFrame):
        return Feed.FrameReceived(p, node)
    if isinstance(p, Status):
        return Feed.StatusReceived(p)
    raise TypeError(f"no message for {type(p).__name__}")


def open_link(url: str | ConnectSettings, post: Callable[[Message], object]) -> MqttLink:
    """The app's one client: a pure subscriber whose connection events are posted as Feed messages."""
    if isinstance(url, ConnectSettings):
        s = url
        return MqttLink(s.url, announce=False, username=s.username, password=s.password, tls=s.tls, cafile=s.cafile,
                        on_connect=lambda u: post(Feed.Connected(u)),
                        on_disconnect=lambda reason, retry_in_s: post(Feed.Disconnected(reason, retry_in_s)))
    return MqttLink(url, announce=False,
                    on_connect=lambda u: post(Feed.Connected(u)),
                    on_disconnect=lambda reason, retry_in_s: post(Feed.Disconnected(reason, retry_in_s)))


class NodeFeed:
    """Every node's status, plus one followed node's predictions, stats and frames, posted as typed messages.

    `node` "" follows no node yet (only statuses arrive); `follow()` moves the subscriptions to another node.
    """

    def __init__(self, link: MqttLink, post: Callable[[Message], object], node: str = "") -> None:
        self.link, self._post, self.node = link, post, ""
        link.subscribe(topic("+", "status"), self._on_message, qos=0)  # discovers nodes, and the followed one's
        self.follow(node)

    def _filters(self, node: str) -> list[str]:
        return [topic(node, kind) for kind in SUBSCRIBED_KINDS if kind != "status"] if node else []

    def follow(self, node: str) -> None:
        if node and not is_node_id(node):  # "#" or "a/b" would make a filter for other topics, or none at all
            raise ValueError(f"not a node id: {node!r}")
        for f in self._filters(self.node):
            self.link.unsubscribe(f)
        self.node = node
        for f in self._filters(node):
            self.link.subscribe(f, self._on_message, qos=0)

    def send(self, kind: str, payload: bytes) -> bool:
        """Publish on the followed node's `kind` topic; False (nothing queued) with no node, while disconnected
        or while the outbox is full."""
        return bool(self.node) and self.link.try_publish_raw(topic(self.node, kind), payload, qos=0)

    def _on_message(self, t: str, raw: bytes) -> None:
        node = self.node
        try:
            p = parse_message(t, raw, node)
        except PayloadError as e:
            self._post(Feed.Malformed(t, str(e)))
            return
        if p is not None:
            self._post(typed_message(p, node))
