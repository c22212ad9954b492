"""Bridged brokers: an edge mosquitto forwarding s2/v1/ to a central one, with the bridge broken mid-replay."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import aiomqtt
import pytest
from conftest import IN_CI
from stream_helpers import Collector, gesture_model_file, recording, running

from stream.bridge import Bridge, bridges_conf
from stream.broker import MosquittoProcess, embedded_broker, mosquitto_binary
from stream.errors import BrokerError

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _need_mosquitto() -> None:
    if mosquitto_binary() is None:
        if IN_CI:
            pytest.fail("mosquitto is required under CI=true")
        pytest.skip("mosquitto binary not installed (apt-get install mosquitto)")


@pytest.fixture
def central():
    """The central broker: persistence on, so its subscribers' sessions outlive a restart (as in production)."""
    _need_mosquitto()
    proc = MosquittoProcess(persistence=True).start()
    yield proc
    proc.close()


@pytest.fixture
def edge(central):
    """An edge broker bridged to the central one."""
    proc = MosquittoProcess(bridges=[Bridge.parse(central.url)]).start()
    yield proc
    proc.close()


async def _bridge_up(edge: MosquittoProcess, central: MosquittoProcess, collector: Collector) -> None:
    """Publish probes on the edge until one reaches the central subscriber (the bridge has connected)."""
    async with aiomqtt.Client(edge.host, edge.port) as c:
        for i in range(200):
            await c.publish("s2/v1/probe/stats", f"{i}", qos=1)
            if await collector.wait_for(lambda: collector.of("stats"), timeout_s=0.1):
                return
    raise AssertionError("the bridge did not connect")


async def test_every_prediction_crosses_a_bridge_broken_mid_replay(tmp_path, central, edge):
    """A paced replay on the edge broker; the central broker is stopped and restarted mid-replay; every
    prediction (count and sequence numbers) reaches the central subscriber."""
    model = gesture_model_file(tmp_path)
    rec = recording(tmp_path / "rec.npy", n=8_000, duration_us=2_500_000)
    col = Collector(central.host, central.port, ["s2/v1/e0/pred/gesture", "s2/v1/probe/stats"], "central-sub")
    async with running(col.run()):
        await asyncio.wait_for(col.subscribed.wait(), 10)
        await _bridge_up(edge, central, col)
        replay = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stream.cli", "replay", str(rec), "--model", str(model), "--broker", edge.url,
            "--node", "e0", "--no-frames", "--qos", "1", stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, env=ENV)
        try:
            assert await col.wait_for(lambda: len(col.of("pred/gesture")) >= 10, timeout_s=60)
            central.stop()  # the bridge breaks; the replay goes on publishing to the edge
            seen_at_stop = len(col.of("pred/gesture"))
            await asyncio.sleep(1.0)
            central.start()
            err = (await asyncio.wait_for(replay.communicate(), 60))[1].decode()
        finally:
            if replay.returncode is None:
                replay.kill()
                await replay.communicate()
        assert replay.returncode == 0, err
        n = int(re.search(r"(\d+) predictions", err)[1])
        assert n >= 100 and seen_at_stop < n  # the bridge broke with most of the replay still to come
        preds = col.of("pred/gesture")
        assert await col.wait_for(lambda: len({p["seq"] for p in preds}) >= n, timeout_s=30)
        assert sorted({p["seq"] for p in preds}) == list(range(n))  # none lost; QoS 1 may repeat one


async def test_steering_comes_in_once_and_nothing_loops(central, edge):
    """in/control published on the central broker reaches the edge once, and is not sent back to the central."""
    at_edge = Collector(edge.host, edge.port, ["s2/v1/+/in/#"], "edge-sub")
    at_central = Collector(central.host, central.port, ["s2/v1/+/in/#", "s2/v1/probe/stats"], "central-in")
    async with running(at_edge.run(), at_central.run()):
        await asyncio.wait_for(asyncio.gather(at_edge.subscribed.wait(), at_central.subscribed.wait()), 10)
        await _bridge_up(edge, central, at_central)
        async with aiomqtt.Client(central.host, central.port) as c:
            await c.publish("s2/v1/e0/in/control", b'{"v":1,"seq":0,"t_wall":0,"cmd":"pause"}', qos=1)
            await c.publish("s2/v1/e0/in/text", b"hi", qos=1)
        assert await at_edge.wait_for(lambda: len(at_edge.messages) >= 2, timeout_s=10)
        await asyncio.sleep(0.5)  # time for a loop to show
        assert [t for t, _ in at_edge.messages] == ["s2/v1/e0/in/control", "s2/v1/e0/in/text"]
        assert [t for t, _ in at_central.messages if "/in/" in t] == ["s2/v1/e0/in/control", "s2/v1/e0/in/text"]


def test_bridge_config_keeps_the_password_private(tmp_path):
    """The generated bridge section carries QoS 1, a persistent session and TLS verification; the password is in
    the private config file only, never in repr() or str() of the bridge."""
    b = Bridge.parse("mqtts://edge1:s3cr%40t@central.example:8883", cafile="/etc/ca.pem")
    conf = bridges_conf([b], 1883)
    for line in ("address central.example:8883", "cleansession false", "topic s2/v1/# out 1",
                 "topic s2/v1/+/in/control in 1", "topic s2/v1/+/in/text in 1", "remote_username edge1",
                 "remote_password s3cr@t", "bridge_cafile /etc/ca.pem", "bridge_insecure false"):
        assert line in conf.splitlines()
    assert "s3cr@t" not in repr(b) and "s3cr@t" not in str(b.url)
    with pytest.raises(BrokerError, match="password needs a user name"):
        Bridge.parse("mqtt://127.0.0.1:1", password="pw")
    with pytest.raises(BrokerError, match="without TLS"):
        Bridge.parse("mqtt://a@127.0.0.1:1", cafile="/etc/ca.pem")
    with pytest.raises(BrokerError, match="line break"):
        bridges_conf([Bridge.parse("mqtt://a@127.0.0.1:1", password="x\nlistener 1")], 1883)
    proc = MosquittoProcess(bridges=[b])
    try:
        assert proc.conf_path.stat().st_mode & 0o077 == 0
        assert "persistence true" in proc.conf_path.read_text()
    finally:
        proc.close()


async def test_a_bridge_needs_mosquitto():
    """--bridge with the amqtt broker is a one-line BrokerError before anything starts."""
    with pytest.raises(BrokerError, match="amqtt broker has no bridge"):
        async with embedded_broker(prefer="amqtt", bridges=[Bridge.parse("mqtt://127.0.0.1:1")]):
            pass


def test_cli_masks_the_bridge_password(tmp_path):
    """`s2 broker --bridge` with a password file starts, says where it bridges, and never prints the password."""
    import subprocess

    _need_mosquitto()
    pw = tmp_path / "pw"
    pw.write_text("hunter2\n")
    p = subprocess.Popen([sys.executable, "-m", "stream.cli", "broker", "--port", "0", "--bridge",
                          "mqtt://edge1@127.0.0.1:9", "--bridge-password-file", str(pw)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        first = p.stdout.readline() + p.stdout.readline()
    finally:
        p.terminate()
        out, err = p.communicate(timeout=10)
    assert "broker listening at" in first and "bridged to mqtt://edge1@127.0.0.1:9" in first
    assert "hunter2" not in first + out + err and "Traceback" not in err
    bad = subprocess.run([sys.executable, "-m", "stream.cli", "broker", "--amqtt", "--bridge",
                          "mqtt://edge1:hunter2@127.0.0.1:9"], capture_output=True, text=True, env=ENV)
    assert bad.returncode == 1 and "hunter2" not in bad.stderr and bad.stderr.count("\n") == 1
