"""stream.mqtt, the one MQTT client: set-up in one place, jittered reconnects, wildcard dispatch, and `s2 subscribe`
riding out a broker restart (real mosquitto, no mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import random
import shutil
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from stream.errors import BrokerError, PipelineError
from stream.mqtt import Backoff, ConnectSettings, MqttLink
from stream.schema import GesturePrediction, Status, topic

ROOT = Path(__file__).resolve().parent.parent


@contextlib.asynccontextmanager
async def running(link: MqttLink):
    """The link's run() in the background for the body's duration, cancelled and awaited after it."""
    task = asyncio.create_task(link.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_backoff_doubles_to_the_cap_with_bounded_jitter():
    """Each wait lies within jitter of a nominal delay that doubles per failure and stops at the cap."""
    b = Backoff()
    rng = random.Random(3)
    assert [b.nominal_s(k) for k in (1, 2, 3)] == [b.first_s, 2 * b.first_s, 4 * b.first_s]
    assert b.nominal_s(10_000) == b.max_s
    delays = {k: [b.delay_s(k, rng) for _ in range(500)] for k in range(1, 12)}
    for k, ds in delays.items():
        lo, hi = b.nominal_s(k) * (1 - b.jitter), b.nominal_s(k) * (1 + b.jitter)
        assert all(lo <= d <= hi for d in ds)
        assert max(ds) - min(ds) > b.nominal_s(k) * b.jitter  # really spread, not a constant
    assert 0 < b.jitter < 1 and b.first_s < b.max_s


def test_settings_put_credentials_and_tls_in_one_place(tmp_path):
    """URL, credentials, TLS with an optional CA file and the client id are resolved once; bad ones are BrokerError."""
    s = ConnectSettings.make("mqtts://alice:secret@broker.example")
    assert (s.url.host, s.url.port, s.tls, s.username, s.password) == ("broker.example", 8883, True, "alice", "secret")
    assert "secret" not in repr(s) and "secret" not in str(s.url)
    ctx = s.ssl_context()  # the system's CAs, verifying certificate and host name
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    kw = s.client_kwargs()
    assert kw["hostname"] == "broker.example" and kw["port"] == 8883 and kw["identifier"].startswith("s2-")
    assert (kw["username"], kw["password"], kw["keepalive"]) == ("alice", "secret", s.keepalive_s)

    s = ConnectSettings.make("mqtt://alice:secret@h:1900", username="bob", password="pw", client_id="me")
    assert (s.username, s.password, s.tls, s.client_id, s.ssl_context()) == ("bob", "pw", False, "me", None)
    assert ConnectSettings.make("mqtt://h", tls=True).tls  # --tls on a plain URL

    openssl = shutil.which("openssl")
    if openssl:
        subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "k.pem"),
                        "-out", str(tmp_path / "ca.pem"), "-days", "1", "-subj", "/CN=s2-test-ca"],
                       check=True, capture_output=True)
        ctx = ConnectSettings.make("mqtts://h", cafile=str(tmp_path / "ca.pem")).ssl_context()
        assert any(("commonName", "s2-test-ca") in rdn for c in ctx.get_ca_certs() for rdn in c["subject"])

    with pytest.raises(BrokerError, match=r"missing\.pem"):
        ConnectSettings.make("mqtts://h", cafile=str(tmp_path / "missing.pem"))
    with pytest.raises(BrokerError, match="without TLS"):
        ConnectSettings.make("mqtt://h", cafile=str(tmp_path / "ca.pem"))
    with pytest.raises(BrokerError, match="unsupported scheme") as e:
        MqttLink("http://h")
    assert isinstance(e.value, PipelineError)


async def test_predictions_leave_without_waiting_for_the_last_ack(mosquitto):
    """Nagle's algorithm is off on both legs: our clients' sockets carry TCP_NODELAY (paho leaves it unset) and
    the brokers we start are told `set_tcp_nodelay` (mosquitto accepts the line: it started); off on request."""
    import socket

    import aiomqtt

    from stream.broker import MosquittoProcess

    assert "set_tcp_nodelay true" in mosquitto.conf_path.read_text().splitlines()
    quiet = MosquittoProcess(nodelay=False)
    try:
        assert "set_tcp_nodelay" not in quiet.conf_path.read_text()
    finally:
        quiet.close()
    for nodelay in (True, False):
        kw = ConnectSettings.make(mosquitto.url, nodelay=nodelay).client_kwargs()
        async with aiomqtt.Client(**kw) as c:
            sock = c._client.socket()  # paho's socket (aiomqtt applies socket_options to it on open)
            assert bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)) is nodelay
    assert MqttLink(mosquitto.url).settings.nodelay and not MqttLink(mosquitto.url, nodelay=False).settings.nodelay


@contextlib.asynccontextmanager
async def slow_acks(host: str, port: int, delay_s: float):
    """A TCP proxy to the broker that holds everything the broker sends back (CONNACK, PUBACKs) for delay_s, in
    order, as a long link would; yields its port."""
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
        held: asyncio.Queue = asyncio.Queue()

        async def release() -> None:
            while True:
                due, data = await held.get()
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if not data:
                    break
                writer.write(data)
                await writer.drain()
            writer.close()

        task = asyncio.create_task(release())
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                held.put_nowait((time.monotonic() + delay, data))
        held.put_nowait((time.monotonic() + delay, b""))
        await task

    writers: list[asyncio.StreamWriter] = []
    tasks: set[asyncio.Task] = set()

    async def serve(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())
        writers.append(cw)
        br, bw = await asyncio.open_connection(host, port)
        writers.append(bw)
        await asyncio.gather(pipe(cr, bw, 0.0), pipe(br, cw, delay_s), return_exceptions=True)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in writers:
            w.close()
            with contextlib.suppress(ConnectionError):
                await w.wait_closed()
        await server.wait_closed()


@pytest.mark.broker
async def test_a_message_goes_out_without_waiting_for_the_acknowledgements_ahead_of_it(mosquitto):
    """Over a link whose acknowledgements take 150 ms, predictions published every 10 ms reach a subscriber within
    a few ms each: the send window keeps them in flight together instead of waiting for each PUBACK (or a batch's)
    before sending the next. All are acknowledged in the end and leave the buffer in order."""
    import aiomqtt

    arrived: dict[int, float] = {}
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as sub, slow_acks(mosquitto.host, mosquitto.port,
                                                                              0.15) as port:
        await sub.subscribe(topic("far", "pred/gesture"), qos=1)

        async def listen() -> None:
            async for m in sub.messages:
                arrived[json.loads(bytes(m.payload))["step"]] = time.monotonic()

        listener = asyncio.create_task(listen())
        link = MqttLink(f"mqtt://127.0.0.1:{port}", "far", announce=False)
        async with running(link):
            assert await link.wait_connected(5)
            sent: dict[int, float] = {}
            for i in range(20):
                sent[i] = time.monotonic()
                link.publish(GesturePrediction(t_event_us=i, label="a", index=0, probs=[1.0], classes=["a"], step=i))
                await asyncio.sleep(0.01)
            assert await link.drained(5) and link.pending == 0 and link.stats.published == 20
        async with asyncio.timeout(5):
            while len(arrived) < 20:
                await asyncio.sleep(0.01)
        listener.cancel()
    late_ms = sorted((arrived[i] - sent[i]) * 1e3 for i in sent)
    assert late_ms[-1] < 60, late_ms  # waiting for an acknowledgement would take 150 ms or more


async def test_unreachable_broker_is_a_broker_error_chained_to_the_cause():
    """ensure_connected() on a port nobody listens on is a BrokerError naming the failure, chained with `from`."""
    from stream.broker import free_port

    link = MqttLink(f"mqtt://127.0.0.1:{free_port()}")
    async with running(link):
        with pytest.raises(BrokerError, match="cannot connect") as e:
            await link.ensure_connected(0.5)
    assert e.value.__cause__ is not None and link.stats.last_error in str(e.value)
    assert not link.stats.connected and link.stats.reconnects == 0


@pytest.mark.broker
async def test_reconnect_waits_follow_the_jittered_backoff(mosquitto_private):
    """With the broker down the link retries after growing jittered waits, and reconnects once it is back."""
    broker = mosquitto_private
    b = Backoff(first_s=0.02, max_s=0.16, jitter=0.25)
    waits: list[float] = []
    ups: list[str] = []
    link = MqttLink(broker.url, "bk", backoff=b, on_connect=ups.append,
                    on_disconnect=lambda reason, retry_in_s: waits.append(retry_in_s))
    async with running(link):
        assert await link.wait_connected(5)
        await asyncio.to_thread(broker.stop)
        async with asyncio.timeout(15):
            while len(waits) < 6:
                await asyncio.sleep(0.01)
        assert not link.stats.connected and link.stats.last_error
        assert not link.try_publish_raw(topic("bk", "in/text"), b"x")  # refused while disconnected
        await asyncio.to_thread(broker.start)
        assert await link.wait_connected(10)
    for k, w in enumerate(waits[:6], start=1):  # the first wait follows the lost connection, then failed attempts
        assert b.nominal_s(k) * (1 - b.jitter) <= w <= b.nominal_s(k) * (1 + b.jitter)
    assert link.stats.reconnects == 1 and ups == [str(link.url)] * 2


@pytest.mark.broker
async def test_wildcard_subscriptions_dispatch_each_handler_once(mosquitto):
    """`+` and `#` filters reach their handlers; overlapping filters of one handler call it once; unsubscribe stops."""
    node = f"wc{os.getpid()}"
    other = f"wo{os.getpid()}"
    statuses: list[str] = []
    mine: list[str] = []
    link = MqttLink(mosquitto.url)
    link.subscribe(topic("+", "status"), lambda t, raw: statuses.append(t))

    def on_node(t: str, raw: bytes) -> None:
        mine.append(t)

    link.subscribe(topic(node, "#"), on_node)
    link.subscribe(topic(node, "pred/+"), on_node)  # overlaps the filter above
    sender = MqttLink(mosquitto.url, announce=False)
    async with running(link), running(sender):
        assert await link.synced(5) and await sender.wait_connected(5)
        for n in (node, other):
            sender.publish_raw(topic(n, "status"), Status(node=n).to_json(), qos=1)
            sender.publish_raw(topic(n, "pred/gesture"), GesturePrediction().to_json(), qos=1)
        assert await sender.drained(5)
        async with asyncio.timeout(5):
            while len(mine) < 2 or topic(other, "status") not in statuses:
                await asyncio.sleep(0.01)
        link.unsubscribe(topic(node, "#"))
        link.unsubscribe(topic(node, "pred/+"))
        assert await link.synced(5)
        sender.publish_raw(topic(node, "pred/gesture"), GesturePrediction().to_json(), qos=1)
        sender.publish_raw(topic(other, "status"), Status(node=other).to_json(), qos=1)
        assert await sender.drained(5)
        async with asyncio.timeout(5):
            while statuses.count(topic(other, "status")) < 2:
                await asyncio.sleep(0.01)
    assert sorted(mine) == [topic(node, "pred/gesture"), topic(node, "status")]  # once each, nothing of `other`
    assert topic(node, "status") in statuses and link.stats.received >= 4


def _lines(proc: subprocess.Popen) -> queue.Queue:
    """The process's stdout lines as they come, through a queue (a reader thread, so waits can time out)."""
    q: queue.Queue = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            q.put(line)

    threading.Thread(target=read, daemon=True).start()
    return q


@pytest.mark.broker
def test_s2_subscribe_survives_a_broker_restart(mosquitto_private):
    """`s2 subscribe` keeps running when the broker stops, resubscribes when it is back, and prints what follows."""
    pub = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
    if not os.access(pub, os.X_OK):
        pytest.skip("mosquitto_pub not installed")
    broker = mosquitto_private
    t = "s2/v1/rs/pred/text"

    def publish(payload: dict, on: str = t, retain: bool = False) -> None:
        subprocess.run([pub, "-h", broker.host, "-p", str(broker.port), "-t", on, "-m", json.dumps(payload),
                        *(["-r"] if retain else [])],
                       check=True, capture_output=True, timeout=10)

    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "subscribe", "--broker", broker.url, "--topic",
                             "s2/v1/+/pred/#", "--count", "3", "--timeout-s", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = _lines(proc)
    try:
        hello = "s2/v1/rs/pred/hello"
        # retained: printed once it has subscribed, whenever that is (and gone after the restart: no persistence)
        publish({"before": 1}, hello, retain=True)
        assert json.loads(lines.get(timeout=30)) == {"topic": hello, "payload": {"before": 1}}
        broker.stop()
        time.sleep(0.5)
        assert proc.poll() is None  # still running while the broker is away
        broker.start()
        after: list[dict] = []
        i = 0
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            publish({"after": i})
            i += 1
            with contextlib.suppress(queue.Empty):
                after.append(json.loads(lines.get(timeout=0.3)))
        proc.wait(timeout=10)
        with contextlib.suppress(queue.Empty):
            while True:
                after.append(json.loads(lines.get(timeout=0.5)))
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        err = proc.stderr.read()
        proc.stderr.close()
    assert proc.returncode == 0, err
    assert len(after) == 2 and all(x["topic"] == t and "after" in x["payload"] for x in after)
