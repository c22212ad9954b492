"""The one MQTT client of s2egru (the pipeline, `s2 subscribe` and the UI all use it), over one aiomqtt.Client.

Connection set-up lives in `ConnectSettings` (broker URL, credentials, TLS, client id, keepalive) and the
reconnect policy in `Backoff`; both are plain values, built in one place and testable without a broker.

`MqttLink.publish()` never blocks: it stamps the payload (per-topic seq, wall time) and appends it to a bounded
buffer; `run()` owns the connection: connect (with the retained last will "offline" when it announces a node),
subscribe, publish the retained "online" status, then drain the buffer in order, up to `window` messages in
flight: each new message goes out at once, without waiting for the acknowledgements of those before it (over a
link with a round trip of 50 ms, a message waiting for the last one's PUBACK would be 50 ms late). A message
leaves the buffer only after the broker acknowledged it (QoS 1 PUBACK), and only behind every message ahead of
it, so a broker restart loses nothing the buffer holds; a
message whose PUBACK was lost is sent again, and its repeated seq tells the subscriber it is a duplicate.
Overflow drops the oldest, counted. `try_publish_raw()` is the UI's form: refused while disconnected or
backed up, and discarded rather than replayed when the connection drops. Subscriptions (MQTT wildcards
allowed) are kept across reconnects. On a broken connection the client is re-entered after a jittered
exponential backoff; aiomqtt's MqttError never leaves this module (set-up errors are `BrokerError`).

MQTT 3.1.1 is the default (the embedded amqtt broker speaks only that); `mqtt5=True` speaks MQTT 5, whose request/
response properties (Response Topic, Correlation Data) `publish_raw` sets and `subscribe(..., props=True)` hands
to its handler; `Requests` is a client's side of that exchange (retries with the same correlation, duplicate
answers counted and dropped).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from stream.errors import BrokerError, PipelineError
from stream.schema import BrokerURL, BrokerURLError, Payload, Status, mask_url, offline_status, topic

BACKOFF_FIRST_S = 0.1  # first wait after a lost connection or a failed attempt
BACKOFF_MAX_S = 5.0  # the wait doubles per consecutive failure up to this
BACKOFF_FACTOR = 2.0
BACKOFF_JITTER = 0.25  # each wait is scaled by uniform(1 - j, 1 + j): restarted brokers are not stampeded
KEEPALIVE_S = 10  # a silent broker is noticed within 1.5x this
TIMEOUT_S = 5.0  # connect, subscribe and publish acknowledgements
BUFFER_MAX = 100_000  # messages buffered while the broker is away; the oldest are dropped beyond
TRY_MAX = 256  # try_publish_raw messages waiting at once; more are refused, not queued
INCOMING_MAX = 10_000  # received messages waiting for dispatch; more are dropped (counted): a flood cannot grow memory

Handler = Callable[[str, bytes], None]


@dataclass(frozen=True)
class MessageProps:
    """A received message's MQTT 5 request/response properties (None where absent, and always under MQTT 3.1.1)."""

    response_topic: str | None = None
    correlation: bytes | None = None


PropsHandler = Callable[[str, bytes, MessageProps], None]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with multiplicative jitter, one policy for every client."""

    first_s: float = BACKOFF_FIRST_S
    max_s: float = BACKOFF_MAX_S
    factor: float = BACKOFF_FACTOR
    jitter: float = BACKOFF_JITTER

    def nominal_s(self, failures: int) -> float:
        """The wait before the next attempt after `failures` consecutive failures (>= 1), before jitter."""
        return min(self.first_s * self.factor ** min(max(failures - 1, 0), 64), self.max_s)

    def delay_s(self, failures: int, rng: random.Random) -> float:
        return self.nominal_s(failures) * rng.uniform(1 - self.jitter, 1 + self.jitter)


@dataclass(frozen=True, repr=False)
class ConnectSettings:
    """Everything needed to open a connection; credentials given explicitly win over those in the URL."""

    url: BrokerURL
    username: str | None = None
    password: str | None = None
    tls: bool = False
    cafile: str | None = None  # TLS: verify the broker against this CA file (default: the system's CAs)
    client_id: str = ""
    keepalive_s: int = KEEPALIVE_S
    timeout_s: float = TIMEOUT_S
    nodelay: bool = True  # TCP_NODELAY: each publish leaves at once (`client_kwargs`)

    @classmethod
    def make(cls, url: str | BrokerURL, *, username: str | None = None, password: str | None = None,
             tls: bool | None = None, cafile: str | None = None, client_id: str | None = None,
             client_prefix: str = "s2", keepalive_s: int = KEEPALIVE_S, nodelay: bool = True) -> ConnectSettings:
        """Settings from a broker URL and options; BrokerError (one line) for anything unusable."""
        if isinstance(url, BrokerURL):
            u = url
        else:
            try:
                u = BrokerURL.parse(url)
            except BrokerURLError as e:
                raise BrokerError(mask_url(url), e.why) from e
        use_tls = u.tls if tls is None else (tls or u.tls)
        if cafile is not None and not use_tls:
            raise BrokerError(str(u), f"CA file {cafile} given without TLS (use mqtts:// or --tls)")
        s = cls(u, username or u.username, password or u.password, use_tls, cafile,
                client_id or f"{client_prefix}-{random.getrandbits(32):08x}", keepalive_s, nodelay=nodelay)
        s.ssl_context()  # a missing or bad CA file fails here, not at every reconnect
        return s

    def __repr__(self) -> str:  # the URL's own repr would show the password
        return (f"ConnectSettings({str(self.url)!r}, username={self.username!r}, tls={self.tls}, "
                f"cafile={self.cafile!r}, client_id={self.client_id!r}, keepalive_s={self.keepalive_s})")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The one TLS set-up: certificate and host name verified, against `cafile` or the system's CAs."""
        if not self.tls:
            return None
        if self.cafile is not None and not Path(self.cafile).is_file():
            raise BrokerError(str(self.url), f"CA file {self.cafile}: not a file (missing, or a directory)")
        try:
            return ssl.create_default_context(cafile=self.cafile)
        except (OSError, ssl.SSLError) as e:
            raise BrokerError(str(self.url), f"CA file {self.cafile}: {e.strerror or e}") from e

    def client_kwargs(self) -> dict:
        """Keyword arguments of aiomqtt.Client for these settings (will, queue and TLS context added by the link).
        With `nodelay`, Nagle's algorithm is off: paho leaves it on, and then a message published while the one
        before it is unacknowledged at the TCP level waits for that ACK (up to a delayed ACK's 40 ms where nothing
        answers at once, as with QoS 0). bench/bench_e2e.py --nagle compares both (docs/benchmarks.md)."""
        opts = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),) if self.nodelay else ()
        return {"hostname": self.url.host, "port": self.url.port, "username": self.username,
                "password": self.password, "identifier": self.client_id, "keepalive": self.keepalive_s,
                "timeout": self.timeout_s, "socket_options": opts}


@dataclass
class LinkStats:
    published: int = 0
    dropped: int = 0  # oldest messages dropped because the buffer was full while the broker was away
    received: int = 0
    dropped_incoming: int = 0  # received messages dropped because dispatch fell INCOMING_MAX behind
    reconnects: int = 0  # connections re-established after one was lost
    handler_errors: int = 0  # exceptions raised by subscription handlers (counted; the message is skipped)
    last_handler_error: str = ""
    connected: bool = False
    last_error: str = ""


@dataclass
class _Msg:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    volatile: bool = False  # from try_publish_raw: discarded, not replayed, when the connection drops
    properties: Properties | None = None  # MQTT 5 Response Topic / Correlation Data
    acked: bool = False  # acknowledged (QoS 1) or written (QoS 0), possibly before the messages ahead of it


def _payload_bytes(p: object) -> bytes:
    if isinstance(p, bytes | bytearray):
        return bytes(p)
    return b"" if p is None else str(p).encode()


def _properties(response_topic: str | None, correlation: bytes | None) -> Properties | None:
    if response_topic is None and correlation is None:
        return None
    props = Properties(PacketTypes.PUBLISH)
    if response_topic is not None:
        _check_topic(response_topic)
        props.ResponseTopic = response_topic
    if correlation is not None:
        props.CorrelationData = correlation
    return props


def _message_props(msg: aiomqtt.Message) -> MessageProps:
    p = msg.properties
    if p is None:
        return MessageProps()
    rt, cd = getattr(p, "ResponseTopic", None), getattr(p, "CorrelationData", None)
    return MessageProps(rt if isinstance(rt, str) else None, bytes(cd) if isinstance(cd, bytes | bytearray) else None)


def _quiet_disconnect(client: aiomqtt.Client) -> None:
    """Mark aiomqtt's disconnect future as observed: when a task is cancelled mid-connection, the broker's later
    close sets an exception on it that nobody awaits, and asyncio would print "Future exception was never
    retrieved"."""
    fut = getattr(client, "_disconnected", None)
    if isinstance(fut, asyncio.Future):
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())


class MqttLink:
    """One broker connection kept up until cancelled: buffered publishing, subscriptions, optional announce.

    With `node` the link publishes payloads on s2/v1/<node>/<kind> and, unless `announce=False`, announces the
    node (retained "online" status, last will "offline"). Without `node` it is a pure client (the UI,
    `s2 subscribe`). `mqtt5` speaks MQTT 5 instead of 3.1.1. `on_connect(url)` is called once subscriptions
    are active; `on_disconnect(reason, retry_in_s)` after each lost connection or failed attempt.
    """

    def __init__(
        self,
        url: str | BrokerURL,
        node: str | None = None,
        *,
        announce: bool | None = None,
        status: Status | None = None,
        qos: int = 1,
        buffer_size: int = BUFFER_MAX,
        username: str | None = None,
        password: str | None = None,
        tls: bool | None = None,
        cafile: str | None = None,
        client_id: str | None = None,
        backoff: Backoff = Backoff(),
        window: int = 32,
        incoming_max: int = INCOMING_MAX,
        on_connect: Callable[[str], object] | None = None,
        on_disconnect: Callable[[str, float], object] | None = None,
        rng: random.Random | None = None,
        mqtt5: bool = False,
        nodelay: bool = True,
    ) -> None:
        self.settings = ConnectSettings.make(url, username=username, password=password, tls=tls, cafile=cafile,
                                             client_id=client_id, client_prefix=f"s2-{node or 'sub'}",
                                             nodelay=nodelay)
        self.url = self.settings.url
        self.node, self.qos, self.buffer_size = node, qos, buffer_size
        self.announce = node is not None if announce is None else announce
        if self.announce and node is None:
            raise ValueError("announce needs a node")
        self.status = status or Status(node=node or "")
        self.backoff, self.window, self.incoming_max = backoff, window, incoming_max
        self.mqtt5 = mqtt5
        self.on_connect, self.on_disconnect = on_connect, on_disconnect
        self.stats = LinkStats()
        self._rng = rng or random.Random()
        self._ssl = self.settings.ssl_context()
        self._buf: collections.deque[_Msg] = collections.deque()
        self._n_sent = 0  # the buffer's first messages, sent on this connection (`_send`)
        self._volatile = 0
        self._wake = asyncio.Event()
        self._seq: dict[str, int] = collections.defaultdict(int)
        self._subs: dict[str, tuple[Handler | PropsHandler, int, bool]] = {}
        self._subs_changed = asyncio.Event()
        self._synced = asyncio.Event()
        self._connected = asyncio.Event()
        self._refused = asyncio.Event()  # the last attempt failed for a reason that retrying will not change
        self._last_exc: aiomqtt.MqttError | None = None

    # --- producer side (never waits) ---
    def publish(self, payload: Payload, kind: str | None = None, retain: bool = False) -> int:
        """Stamp seq and t_wall, buffer for sending on s2/v1/<node>/<kind>; returns the seq."""
        if self.node is None:
            raise ValueError("publish() needs a link with a node; use publish_raw()")
        kind = kind or payload.KIND
        payload.seq = self._seq[kind]
        self._seq[kind] += 1
        payload.t_wall = time.time()
        self.publish_raw(topic(self.node, kind), payload.to_json(), retain=retain)
        return payload.seq

    def publish_raw(self, topic_name: str, data: bytes, qos: int | None = None, retain: bool = False, *,
                    response_topic: str | None = None, correlation: bytes | None = None) -> None:
        """Buffer bytes for a topic (sent in order once connected; the oldest dropped when the buffer is full).
        `response_topic` and `correlation` are MQTT 5's request/response properties (a link with mqtt5 only)."""
        _check_topic(topic_name)
        props = _properties(response_topic, correlation)
        if props is not None and not self.mqtt5:
            raise ValueError("Response Topic and Correlation Data are MQTT 5 properties: make the link with mqtt5=True")
        while len(self._buf) >= self.buffer_size:
            self._drop_front()
            self.stats.dropped += 1
        self._buf.append(_Msg(topic_name, data, self.qos if qos is None else qos, retain, properties=props))
        self._wake.set()

    def try_publish_raw(self, topic_name: str, data: bytes, qos: int = 0, retain: bool = False) -> bool:
        """Queue only while connected and not backed up (TRY_MAX waiting); False, nothing queued, otherwise.
        What is still unsent when the connection drops is discarded, not sent after the reconnect."""
        _check_topic(topic_name)
        if not self.stats.connected or self._volatile >= TRY_MAX or len(self._buf) >= self.buffer_size:
            return False
        self._buf.append(_Msg(topic_name, data, qos, retain, volatile=True))
        self._volatile += 1
        self._wake.set()
        return True

    def subscribe(self, topic_filter: str, handler: Handler | PropsHandler, qos: int = 1, *,
                  props: bool = False) -> None:
        """Call handler(topic, payload) for messages matching the filter (`+` and `#` allowed, and MQTT 5's
        `$share/<group>/<filter>`); with `props`, handler(topic, payload, MessageProps). Kept across
        reconnects, active at once when connected (see `synced`). A message matching several filters reaches
        each distinct handler once."""
        aiomqtt.Wildcard(topic_filter)  # ValueError for a malformed filter
        self._subs[topic_filter] = (handler, qos, props)
        self._synced.clear()
        self._subs_changed.set()

    def unsubscribe(self, topic_filter: str) -> None:
        if self._subs.pop(topic_filter, None) is not None:
            self._synced.clear()
            self._subs_changed.set()

    @property
    def pending(self) -> int:
        return len(self._buf)

    async def drained(self, timeout_s: float | None = None) -> bool:
        """Wait until every buffered message was acknowledged; False on timeout."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self._buf:
                    await asyncio.sleep(0.005)
                return True
        return False

    async def wait_connected(self, timeout_s: float | None = None) -> bool:
        """Wait until connected, subscribed and (when announcing) announced; False on timeout."""
        return await _wait(self._connected, timeout_s)

    async def ensure_connected(self, timeout_s: float) -> None:
        """wait_connected, or BrokerError naming the last failure (chained to aiomqtt's error) after timeout_s, or
        at once when the broker refused for good (bad credentials, not authorised, a certificate that fails)."""
        waits = [asyncio.ensure_future(self._connected.wait()), asyncio.ensure_future(self._refused.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        if not self._connected.is_set():
            why = self.stats.last_error or "no answer"
            if self.mqtt5 and self.refused and getattr(getattr(self._last_exc, "rc", None), "value",
                                                       getattr(self._last_exc, "rc", None)) in (1, 0x84):
                why = ("it refuses MQTT 5; this needs an MQTT 5 broker such as mosquitto (the embedded amqtt "
                       "fallback speaks MQTT 3.1.1 only)")
            raise BrokerError(str(self.url), f"cannot connect ({why})") from self._last_exc

    @property
    def refused(self) -> bool:
        """Whether the last attempt failed for good (bad credentials, not authorised, TLS that cannot verify)."""
        return self._refused.is_set()

    async def synced(self, timeout_s: float | None = None) -> bool:
        """Wait until connected and every subscribe/unsubscribe so far is acknowledged by the broker."""
        return await _wait(self._connected, timeout_s) and await _wait(self._synced, timeout_s)

    async def close(self, timeout_s: float = 2.0) -> None:
        """Publish the offline status when announcing (a clean exit does not fire the will), then drain."""
        if self.announce and self.node is not None:
            self.status.state = "offline"
            self.publish_raw(topic(self.node, "status"), offline_status(self.node), qos=1, retain=True)
        await self.drained(timeout_s)

    # --- connection side ---
    def _client(self) -> aiomqtt.Client:
        stats = self.stats

        class CountingQueue(asyncio.Queue):
            """aiomqtt's incoming queue: bounded, and what a full queue refuses is counted (not logged)."""

            def put_nowait(self, item) -> None:
                try:
                    super().put_nowait(item)
                except asyncio.QueueFull:
                    stats.dropped_incoming += 1

        will = None
        if self.announce and self.node is not None:
            will = aiomqtt.Will(topic(self.node, "status"), offline_status(self.node), qos=1, retain=True)
        client = aiomqtt.Client(**self.settings.client_kwargs(), will=will, tls_context=self._ssl,
                                queue_type=CountingQueue, max_queued_incoming_messages=self.incoming_max,
                                protocol=aiomqtt.ProtocolVersion.V5 if self.mqtt5 else None)
        _quiet_disconnect(client)
        # the send window keeps up to `window` publishes waiting by design (and counts what it drops): aiomqtt's
        # "pending publish calls" warning above 10 would be logged for every batch
        client.pending_calls_threshold = self.window + TRY_MAX
        return client

    async def run(self) -> None:
        """Keep connected, subscribed and draining until cancelled; a broker that goes away is waited for."""
        failures, ever = 0, False
        while True:
            try:
                async with self._client() as client:
                    active: set[str] = set()
                    await self._sync_subs(client, active)  # before "online": senders may act on it at once
                    if self.announce and self.node is not None:
                        st = self.status
                        st.state, st.node, st.t_wall = "online", self.node, time.time()
                        await client.publish(topic(self.node, "status"), st.to_json(), qos=1, retain=True)
                    if ever:
                        self.stats.reconnects += 1
                    failures, ever, self.stats.connected, self.stats.last_error = 0, True, True, ""
                    self._refused.clear()
                    self._connected.set()
                    if self.on_connect is not None:
                        self.on_connect(str(self.url))
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._send(client))
                        tg.create_task(self._subscriptions(client, active))
                        tg.create_task(self._recv(client))
            except* aiomqtt.MqttError as eg:
                self._last_exc = e = eg.exceptions[0]
                self.stats.last_error = _mask(str(e) or type(e).__name__, self.settings.password)
                if permanent(e):
                    self._refused.set()
            finally:
                self.stats.connected = False
                self._connected.clear()
                self._synced.clear()
                self._forget_volatile()
            failures += 1
            delay = self.backoff.delay_s(failures, self._rng)
            if self.on_disconnect is not None:
                self.on_disconnect(self.stats.last_error, delay)
            await asyncio.sleep(delay)

    async def _send(self, client: aiomqtt.Client) -> None:
        """Send the buffer front first, in order, with up to `window` messages in flight: a message goes out as soon
        as one of the window is free, not when a whole batch is acknowledged. The sent messages are the buffer's
        first `_n_sent`; each leaves the buffer once it and every message ahead of it are acknowledged."""
        self._n_sent = 0
        free = asyncio.Semaphore(self.window)
        async with asyncio.TaskGroup() as tg:
            while True:
                if self._n_sent >= len(self._buf):
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await free.acquire()
                if self._n_sent >= len(self._buf):  # overflow dropped what was waiting meanwhile
                    free.release()
                    continue
                m = self._buf[self._n_sent]
                self._n_sent += 1
                if m.acked:  # acknowledged before the last connection dropped, behind an unacknowledged one
                    free.release()
                    continue
                tg.create_task(self._send_one(client, m, free))

    async def _send_one(self, client: aiomqtt.Client, m: _Msg, free: asyncio.Semaphore) -> None:
        try:
            await client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain, properties=m.properties,
                                 timeout=10)
        finally:
            free.release()
        m.acked = True
        self.stats.published += 1
        while self._buf and self._buf[0].acked:  # acknowledged in order: leave the buffer
            self._drop_front()

    def _drop_front(self) -> None:
        if self._buf.popleft().volatile:
            self._volatile -= 1
        if self._n_sent:  # the sent messages are the buffer's front
            self._n_sent -= 1

    def _forget_volatile(self) -> None:
        """After a connection is lost: nothing counts as sent any more, and the UI's volatile messages go."""
        self._n_sent = 0
        if self._volatile:
            self._buf = collections.deque(m for m in self._buf if not m.volatile)
            self._volatile = 0

    async def _sync_subs(self, client: aiomqtt.Client, active: set[str]) -> None:
        """Make the broker's subscriptions match the registered filters (repeated while they change)."""
        while True:
            self._subs_changed.clear()
            for f in sorted(set(self._subs) - active):
                await client.subscribe(f, qos=self._subs[f][1])
                active.add(f)
            for f in sorted(active - set(self._subs)):
                await client.unsubscribe(f)
                active.discard(f)
            if not self._subs_changed.is_set():
                self._synced.set()
                return

    async def _subscriptions(self, client: aiomqtt.Client, active: set[str]) -> None:
        """Filters registered or dropped while connected take effect at once."""
        while True:
            await self._subs_changed.wait()
            await self._sync_subs(client, active)

    async def _recv(self, client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            self.stats.received += 1
            t = str(msg.topic)
            raw = _payload_bytes(msg.payload)
            called: list[Handler | PropsHandler] = []
            for f, (h, _qos, props) in list(self._subs.items()):
                if msg.topic.matches(f) and not any(h is c for c in called):
                    called.append(h)
                    try:
                        if props:
                            h(t, raw, _message_props(msg))  # type: ignore[call-arg]
                        else:
                            h(t, raw)  # type: ignore[call-arg]
                    except Exception as e:  # a handler's bug must not take the connection (and the node) down
                        self.stats.handler_errors += 1
                        self.stats.last_handler_error = f"{type(e).__name__}: {e}"[:200]
        raise aiomqtt.MqttError("message stream ended")


# CONNACK codes that retrying cannot change: MQTT 3.1.1 (1 protocol, 2 client id, 4 user name or password,
# 5 not authorised) and MQTT 5 (0x84 protocol, 0x85 client id, 0x86 user name or password, 0x87 not authorised,
# 0x8C authentication method)
PERMANENT_CODES = {1, 2, 4, 5, 0x84, 0x85, 0x86, 0x87, 0x8C}
# TLS failures aiomqtt reports as text only: a certificate that does not verify, TLS against a plain port
PERMANENT_TLS = ("CERTIFICATE_VERIFY_FAILED", "WRONG_VERSION_NUMBER", "certificate verify failed",
                 "Hostname mismatch")


def permanent(e: aiomqtt.MqttError) -> bool:
    """Whether a connection failure will recur on every retry (the broker refused us, or TLS cannot succeed)."""
    if isinstance(e, MqttConnectError):
        rc = getattr(e.rc, "value", e.rc)
        return rc in PERMANENT_CODES
    return any(m in str(e) for m in PERMANENT_TLS)


def _mask(text: str, password: str | None) -> str:
    return text.replace(password, "***") if password else text


def _check_topic(t: str) -> None:
    if not t or "+" in t or "#" in t:
        raise ValueError(f"cannot publish on {t!r}: a topic name has no wildcards and is not empty")


async def refusal(settings: ConnectSettings, timeout_s: float = 3.0, mqtt5: bool = False) -> None:
    """BrokerError when the broker refuses these settings for good (bad password, not authorised, a certificate
    that fails, MQTT 5 when asked) within timeout_s; returns otherwise, also when the broker did not answer (it
    may come later)."""
    link = MqttLink(settings.url, username=settings.username, password=settings.password, tls=settings.tls,
                    cafile=settings.cafile, mqtt5=mqtt5)
    task = asyncio.create_task(link.run())
    try:
        await link.ensure_connected(timeout_s)
    except BrokerError:
        if link.refused:
            raise
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _wait(ev: asyncio.Event, timeout_s: float | None) -> bool:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await ev.wait()
            return True
    return False


@dataclass
class RequestStats:
    sent: int = 0  # requests asked (not counting retries)
    answered: int = 0
    retries: int = 0  # requests sent again after `timeout_s` without an answer
    duplicates: int = 0  # second answers to one correlation (a retry answered twice): dropped
    unknown: int = 0  # answers to no request of ours (a correlation long forgotten, or a stray message)
    failed: int = 0  # requests given up after every retry


class NoAnswer(PipelineError):
    """A request that no worker answered after every retry."""


class Requests:
    """A client's side of MQTT 5 request/response over one link (made with mqtt5=True).

    Each request carries this client's Response Topic and a Correlation Data of its own; without an answer
    after `timeout_s` it is sent again with the same correlation, up to `retries` times, so that a worker
    that died holding it costs one timeout. An answer to a correlation already answered is a duplicate:
    counted and dropped. The correlations of recent answers are remembered (bounded) to tell duplicates
    from strays.
    """

    RECENT_MAX = 4096

    def __init__(self, link: MqttLink, response_topic: str, *, timeout_s: float = 2.0, retries: int = 5) -> None:
        if not link.mqtt5:
            raise ValueError("request/response needs an MQTT 5 link (mqtt5=True)")
        self.link, self.response_topic = link, response_topic
        self.timeout_s, self.retries = timeout_s, retries
        self.stats = RequestStats()
        self._pending: dict[bytes, asyncio.Future[bytes]] = {}
        self._recent: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        link.subscribe(response_topic, self._on_answer, qos=1, props=True)

    def _on_answer(self, _topic: str, raw: bytes, props: MessageProps) -> None:
        corr = props.correlation
        fut = self._pending.get(corr) if corr is not None else None
        if fut is not None and not fut.done():
            fut.set_result(raw)
        elif corr is not None and (corr in self._recent or fut is not None):
            self.stats.duplicates += 1
        else:
            self.stats.unknown += 1

    async def request(self, topic_name: str, payload: bytes, correlation: bytes | None = None) -> bytes:
        """Publish a request and wait for its answer's payload; NoAnswer after every retry timed out."""
        corr = correlation or os.urandom(16)
        if corr in self._pending:
            raise ValueError("a request with this correlation is already waiting")
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[corr] = fut
        self.stats.sent += 1
        try:
            await self.link.synced(self.timeout_s)  # an answer must not arrive before we listen for it
            for attempt in range(self.retries + 1):
                if attempt:
                    self.stats.retries += 1
                self.link.publish_raw(topic_name, payload, qos=1, response_topic=self.response_topic,
                                      correlation=corr)
                with contextlib.suppress(TimeoutError):
                    raw = await asyncio.wait_for(asyncio.shield(fut), self.timeout_s)
                    self.stats.answered += 1
                    return raw
            self.stats.failed += 1
            raise NoAnswer(f"no answer on {self.response_topic} after {self.retries + 1} tries of "
                           f"{self.timeout_s:g} s")
        finally:
            self._pending.pop(corr, None)
            fut.cancel()
            self._recent[corr] = None
            while len(self._recent) > self.RECENT_MAX:
                self._recent.popitem(last=False)
