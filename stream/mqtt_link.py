"""A thin publisher (and subscriber) over one aiomqtt.Client that survives broker restarts.

`publish()` never blocks the pipeline: it stamps the payload (per-topic seq, wall time) and appends it to a
bounded buffer; `run()` owns the connection: connect (with the retained last will "offline"), publish the
retained "online" status, resubscribe, then drain the buffer in order. A message leaves the buffer only after
the broker acknowledged it (QoS 1 PUBACK), so a broker restart loses nothing the buffer holds; a message
whose PUBACK was lost is sent again, and its repeated seq tells the subscriber it is a duplicate. On
MqttError the client is re-entered after a jittered exponential backoff. Overflow drops the oldest, counted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from stream.broker import BrokerURL
from stream.schema import Payload, Status, offline_status, topic


@dataclass
class LinkStats:
    published: int = 0
    dropped: int = 0  # oldest messages dropped because the buffer was full while the broker was away
    reconnects: int = 0
    connected: bool = False
    last_error: str = ""


@dataclass
class _Msg:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class MqttLink:
    def __init__(
        self,
        url: str | BrokerURL,
        node: str,
        *,
        qos: int = 1,
        buffer_size: int = 100_000,
        username: str | None = None,
        password: str | None = None,
        tls: bool | None = None,
        cafile: str | None = None,
        client_id: str | None = None,
        status: Status | None = None,
        backoff_s: tuple[float, float] = (0.05, 5.0),
        window: int = 32,
    ) -> None:
        self.url = url if isinstance(url, BrokerURL) else BrokerURL.parse(url)
        self.node, self.qos, self.buffer_size = node, qos, buffer_size
        self.username = username or self.url.username
        self.password = password or self.url.password
        self.tls = self.url.tls if tls is None else tls
        self.cafile = cafile
        self.client_id = client_id or f"s2-{node}-{random.getrandbits(32):08x}"
        self.status = status or Status(node=node)
        self.backoff_s = backoff_s
        self.window = window  # QoS-1 messages in flight at once
        self.stats = LinkStats()
        self._buf: collections.deque[_Msg] = collections.deque()
        self._wake = asyncio.Event()
        self._seq: dict[str, int] = collections.defaultdict(int)
        self._subs: dict[str, Callable[[str, bytes], None]] = {}
        self._connected = asyncio.Event()
        self._subs_changed = asyncio.Event()

    # --- producer side (called from the pipeline, never waits) ---
    def publish(self, payload: Payload, kind: str | None = None, retain: bool = False) -> int:
        """Stamp seq and t_wall, buffer for sending; returns the seq."""
        kind = kind or payload.KIND
        payload.seq = self._seq[kind]
        self._seq[kind] += 1
        payload.t_wall = time.time()
        self.publish_raw(topic(self.node, kind), payload.to_json(), retain=retain)
        return payload.seq

    def publish_raw(self, t: str, data: bytes, retain: bool = False, qos: int | None = None) -> None:
        while len(self._buf) >= self.buffer_size:
            self._buf.popleft()
            self.stats.dropped += 1
        self._buf.append(_Msg(t, data, self.qos if qos is None else qos, retain))
        self._wake.set()

    def subscribe(self, kind: str, handler: Callable[[str, bytes], None]) -> None:
        """Call handler(topic, payload) for messages on s2/v1/<node>/<kind> (kept across reconnects; takes
        effect at once when connected)."""
        self._subs[topic(self.node, kind)] = handler
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
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._connected.wait()
                return True
        return False

    # --- connection side ---
    def _client(self):
        import aiomqtt

        tls_params = aiomqtt.TLSParameters(ca_certs=self.cafile) if self.tls else None
        will = aiomqtt.Will(topic(self.node, "status"), offline_status(self.node), qos=1, retain=True)
        return aiomqtt.Client(
            self.url.host, self.url.port, username=self.username, password=self.password,
            identifier=self.client_id, will=will, tls_params=tls_params, timeout=5, keepalive=10,
        )

    async def run(self) -> None:
        """Keep connected and draining until cancelled; a broker that goes away is waited for."""
        import aiomqtt

        delay = self.backoff_s[0]
        while True:
            try:
                async with self._client() as client:
                    self.stats.connected = True
                    self._connected.set()
                    delay = self.backoff_s[0]
                    done: set[str] = set()
                    await self._subscribe_new(client, done)  # before "online": senders may act on it at once
                    st = self.status
                    st.state, st.node, st.t_wall = "online", self.node, time.time()
                    await client.publish(topic(self.node, "status"), st.to_json(), qos=1, retain=True)
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._send(client))
                        tg.create_task(self._subscriptions(client, done))
                        tg.create_task(self._recv(client))
            except* aiomqtt.MqttError as eg:
                self.stats.last_error = str(eg.exceptions[0])
            self.stats.connected = False
            self._connected.clear()
            self.stats.reconnects += 1
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))  # jitter: restarted brokers are not stampeded
            delay = min(delay * 2, self.backoff_s[1])

    async def _send(self, client) -> None:
        """Drain the buffer front first, up to `window` QoS-1 messages in flight (paho keeps them in order)."""
        while True:
            if not self._buf:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = list(itertools.islice(self._buf, self.window))
            async with asyncio.TaskGroup() as tg:
                for m in batch:
                    tg.create_task(client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain, timeout=10))
            for m in batch:  # acknowledged: leave the buffer (unless overflow already dropped them)
                if self._buf and self._buf[0] is m:
                    self._buf.popleft()
            self.stats.published += len(batch)

    async def _subscribe_new(self, client, done: set[str]) -> None:
        self._subs_changed.clear()
        for t in [t for t in self._subs if t not in done]:
            await client.subscribe(t, qos=1)
            done.add(t)

    async def _subscriptions(self, client, done: set[str]) -> None:
        """Topics registered while connected are subscribed at once."""
        while True:
            await self._subs_changed.wait()
            await self._subscribe_new(client, done)

    async def _recv(self, client) -> None:
        async for msg in client.messages:
            h = self._subs.get(str(msg.topic))
            if h is not None:
                h(str(msg.topic), bytes(msg.payload or b""))

    async def close(self, timeout_s: float = 2.0) -> None:
        """Publish the offline status (a clean exit does not fire the will)."""
        self.status.state = "offline"
        self.publish_raw(topic(self.node, "status"), offline_status(self.node), retain=True)
        await self.drained(timeout_s)
