"""The MQTT link: one aiomqtt client, re-entered with jittered backoff, posting typed messages up to the app."""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import aiomqtt
from textual.message import Message

from stream import schema
from stream.schema import EventFrame, GesturePrediction, NodeStats, Payload, PayloadError, Status, TextPrediction
from tui.payloads import SUBSCRIBED_KINDS, parse_message

BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 5.0
OUTBOX_MAX = 256  # typed characters waiting for the sender; more while stuck are refused, not queued
INCOMING_MAX = 10_000  # aiomqtt's queue of received messages (bounded so a flood cannot grow memory)


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


# Parsed by the schema module (tui/ imports nothing else of ours); a bad URL is a ValueError.
Endpoint = schema.BrokerURL


def _quiet_disconnect(client: aiomqtt.Client) -> None:
    """Mark aiomqtt's disconnect future as observed: when the app quits mid-connection, the broker's later close
    sets an exception on it that nobody awaits, and asyncio would print "Future exception was never retrieved"."""
    fut = getattr(client, "_disconnected", None)
    if isinstance(fut, asyncio.Future):
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())


class MqttLink:
    """Subscribes to one node's topics and publishes what the user types, surviving broker restarts."""

    def __init__(self, url: str, post: Callable[[Message], object]) -> None:
        self.endpoint = Endpoint.parse(url)
        self._post = post
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(OUTBOX_MAX)
        self.connected = False

    def publish(self, node: str, kind: str, payload: bytes) -> bool:
        """Queue a message for the broker; False (nothing queued) while disconnected or stuck."""
        if not self.connected:
            return False
        try:
            self._outbox.put_nowait((schema.topic(node, kind), payload))
        except asyncio.QueueFull:
            return False
        return True

    async def run(self, node: str) -> None:
        """Connect, subscribe, read until the link breaks, back off, repeat; returns only when cancelled."""
        backoff = BACKOFF_FIRST_S
        ep = self.endpoint
        while True:
            try:
                client = aiomqtt.Client(
                    ep.host, ep.port, username=ep.username, password=ep.password, keepalive=10,
                    tls_context=ssl.create_default_context() if ep.tls else None,
                    max_queued_incoming_messages=INCOMING_MAX,
                )
                _quiet_disconnect(client)
                async with client:
                    for kind in SUBSCRIBED_KINDS:
                        await client.subscribe(schema.topic(node, kind))
                    await client.subscribe(schema.topic("+", "status"))
                    self.connected, backoff = True, BACKOFF_FIRST_S
                    self._post(Feed.Connected(str(ep)))
                    sender = asyncio.create_task(self._send(client))
                    try:
                        await self._read(client, node)
                    finally:
                        sender.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await sender
            except aiomqtt.MqttError as e:
                reason = str(e) or type(e).__name__
            finally:
                self.connected = False
                while not self._outbox.empty():  # keystrokes typed into a dead link are not replayed later
                    self._outbox.get_nowait()
            delay = backoff * random.uniform(0.8, 1.2)  # jitter: many UIs must not reconnect in lockstep
            self._post(Feed.Disconnected(reason, delay))
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _read(self, client: aiomqtt.Client, node: str) -> None:
        async for m in client.messages:
            t = str(m.topic)
            raw = m.payload if isinstance(m.payload, bytes | bytearray) else str(m.payload or "").encode()
            try:
                p = parse_message(t, bytes(raw), node)
            except PayloadError as e:
                self._post(Feed.Malformed(t, str(e)))
                continue
            if p is not None:
                self._post(typed_message(p, node))
        raise aiomqtt.MqttError("message stream ended")

    async def _send(self, client: aiomqtt.Client) -> None:
        while True:
            t, payload = await self._outbox.get()
            # a failed publish means the link is going down; the reader notices and reconnects
            with contextlib.suppress(aiomqtt.MqttError, ValueError):
                await client.publish(t, payload, qos=0)
