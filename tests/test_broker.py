"""The brokers the tests and the embedded default rely on, exercised through a real MQTT client."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from stream.broker import BrokerURL
from stream.errors import BrokerError


async def _roundtrip(host: str, port: int, topic: str, payload: bytes) -> bytes:
    async with aiomqtt.Client(host, port, identifier=f"t-{topic}") as c:
        await c.subscribe(topic, qos=1)
        await c.publish(topic, payload, qos=1)
        async with asyncio.timeout(5):
            async for msg in c.messages:
                return bytes(msg.payload)
    raise AssertionError("no message")


async def test_qos1_roundtrip_through_mosquitto(mosquitto):
    """A QoS-1 message published to the mosquitto fixture comes back to a subscriber."""
    got = await _roundtrip(mosquitto.host, mosquitto.port, "s2/test/qos1", b"hello")
    assert got == b"hello"


async def test_broker_stop_restart_reconnect(mosquitto_private):
    """After the broker is stopped and restarted on the same port, a client reconnects and messages flow."""
    b = mosquitto_private
    assert await _roundtrip(b.host, b.port, "s2/test/a", b"before") == b"before"
    b.stop()
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(b.host, b.port, timeout=1):
            pass
    b.start()
    assert await _roundtrip(b.host, b.port, "s2/test/b", b"after") == b"after"


async def test_amqtt_fallback_roundtrip(amqtt_broker):
    """The in-process amqtt broker delivers a QoS-1 message."""
    got = await _roundtrip(amqtt_broker.host, amqtt_broker.port, "s2/test/amqtt", b"x")
    assert got == b"x"


def test_broker_url_parsing():
    """Broker URLs carry host, port, TLS and credentials; the password never appears in str()."""
    u = BrokerURL.parse("mqtts://alice:s%40cret@example.org:8884")
    assert (u.host, u.port, u.tls, u.username, u.password) == ("example.org", 8884, True, "alice", "s@cret")
    assert "s@cret" not in str(u)
    assert BrokerURL.parse("localhost").port == 1883
    with pytest.raises(BrokerError):
        BrokerURL.parse("http://x")
