"""The app's side of stream's one MQTT client: which topics it follows, and typed messages posted up to the app.

Connection, reconnects, TLS and the bounded incoming queue are `stream.mqtt.MqttLink`'s; here the link is made
a pure subscriber (no announce), its connect/disconnect events become Feed messages, and each message on the
followed node's topics (or any node's status) is parsed by tui.payloads and posted as a typed message.
With a group of text workers (`s2 tui --group G`), typed text goes to them instead of the node (`TextWorkers`).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass

from textual.message import Message

from stream.mqtt import ConnectSettings, MqttLink, NoAnswer, Requests
from stream.schema import (
    LM_TEXT_MAX,
    EventFrame,
    GesturePrediction,
    LmAnswer,
    LmRequest,
    NodeStats,
    Payload,
    PayloadError,
    Status,
    TextIn,
    TextPrediction,
    decode,
    is_node_id,
    lm_answer_topic,
    lm_request_topic,
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


def open_link(url: str | ConnectSettings, post: Callable[[Message], object], mqtt5: bool = False) -> MqttLink:
    """The app's one client: a pure subscriber whose connection events are posted as Feed messages (MQTT 5 for
    a group of text workers)."""
    if isinstance(url, ConnectSettings):
        s = url
        return MqttLink(s.url, announce=False, username=s.username, password=s.password, tls=s.tls, cafile=s.cafile,
                        on_connect=lambda u: post(Feed.Connected(u)), mqtt5=mqtt5,
                        on_disconnect=lambda reason, retry_in_s: post(Feed.Disconnected(reason, retry_in_s)))
    return MqttLink(url, announce=False, mqtt5=mqtt5,
                    on_connect=lambda u: post(Feed.Connected(u)),
                    on_disconnect=lambda reason, retry_in_s: post(Feed.Disconnected(reason, retry_in_s)))


class TextWorkers:
    """The text pane's model as a group of text workers (`s2 serve --group G`) instead of the node's own.

    Typed text extends one conversation (its messages as the node would have received them); one request at a
    time carries the whole conversation, so keys typed while a request is out are answered together by the
    next, and answers come in order. After LM_TEXT_MAX characters the conversation starts afresh (as ctrl+l
    does). An answer that comes after a reset, or never (NoAnswer after the retries), is not shown.
    """

    def __init__(self, link: MqttLink, post: Callable[[Message], object], group: str, node: Callable[[], str],
                 *, timeout_s: float = 2.0, retries: int = 3, topk: int = 5, continuation: int = 20) -> None:
        if not is_node_id(group):
            raise ValueError(f"not a group id: {group!r}")
        self.requests = Requests(link, lm_answer_topic(group, os.urandom(6).hex()), timeout_s=timeout_s,
                                 retries=retries)
        self.request_topic, self._post, self._node = lm_request_topic(group), post, node
        self.topk, self.continuation = topk, continuation
        self.conversation = f"tui-{os.urandom(6).hex()}"
        self.messages: list[str] = []
        self.unanswered = 0
        self._chars, self._epoch = 0, 0
        self._seq = itertools.count()
        self._wanted = asyncio.Event()

    def add(self, text: str) -> None:
        if self._chars + len(text) > LM_TEXT_MAX:
            self.reset()
        self.messages.append(text)
        self._chars += len(text)
        self._wanted.set()

    def reset(self) -> None:
        self.messages, self._chars, self._epoch = [], 0, self._epoch + 1

    async def run(self) -> None:
        """Send the latest conversation whenever it grew, one request at a time, until cancelled."""
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            if not self.messages:
                continue
            epoch = self._epoch
            req = LmRequest(conversation=self.conversation, text=list(self.messages), topk=self.topk,
                            continuation=self.continuation, continues=True)  # keystrokes: one text
            try:
                raw = await self.requests.request(self.request_topic, req.to_json())
                ans = decode(LmAnswer.KIND, raw)
            except NoAnswer:
                self.unanswered += 1
                continue
            except PayloadError as e:
                self._post(Feed.Malformed(self.requests.response_topic, str(e)))
                continue
            if epoch != self._epoch or not isinstance(ans, LmAnswer):
                continue
            if ans.error is not None:
                self._post(Feed.Malformed(self.requests.response_topic, ans.error))
                continue
            p = ans.prediction()
            p.seq, p.t_wall = next(self._seq), ans.t_wall
            self._post(Feed.PredictionReceived(p, self._node()))


class NodeFeed:
    """Every node's status, plus one followed node's predictions, stats and frames, posted as typed messages.

    `node` "" follows no node yet (only statuses arrive); `follow()` moves the subscriptions to another node.
    With `group` (a link made with mqtt5), typed text goes to that group's text workers, not to the node.
    """

    def __init__(self, link: MqttLink, post: Callable[[Message], object], node: str = "",
                 group: str | None = None) -> None:
        self.link, self._post, self.node = link, post, ""
        self.workers = None if group is None else TextWorkers(link, post, group, lambda: self.node)
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

    async def run(self) -> None:
        """Keep the link (and the text workers' requests, with a group) going until cancelled."""
        if self.workers is None:
            await self.link.run()
            return
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.link.run())
            tg.create_task(self.workers.run())

    def send(self, kind: str, payload: bytes) -> bool:
        """Publish on the followed node's `kind` topic; False (nothing queued) with no node, while disconnected
        or while the outbox is full. With a group, text goes to its workers and a reset also starts their
        conversation afresh."""
        if self.workers is not None and kind == "in/text":
            if not self.link.stats.connected:
                return False
            msg = decode(kind, payload)
            if isinstance(msg, TextIn) and msg.text:
                self.workers.add(msg.text)
            return True
        if self.workers is not None and kind == "in/control" and getattr(decode(kind, payload), "cmd", "") == "reset":
            self.workers.reset()
            if self.node:  # the node's own model too, as without a group
                self.link.try_publish_raw(topic(self.node, kind), payload, qos=0)
            return True
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
