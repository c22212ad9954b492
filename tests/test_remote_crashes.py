"""Messages any client of the broker can send, against a real mosquitto: none crashes or wedges the pipeline or
the UI; each is counted as malformed and what follows is still served."""

from __future__ import annotations

import asyncio
import json
import time

import aiomqtt
import pytest
from stream_helpers import Collector, gesture_model_file, lm_model_file, recording, running
from tui_helpers import client, connected, publish, publish_raw, screen_text, wait_for

from stream.local import run_local_pipeline
from stream.schema import ControlIn, TextIn, topic
from tui import samples
from tui.app import S2App
from tui.widgets import NodePane

pytestmark = pytest.mark.broker

# the reproducers of schema.decode's escapes: a huge int beside isfinite, deep nesting, a too-long int, a surrogate
HOSTILE = [
    b'{"v":1,"seq":0,"t_wall":1' + b"0" * 400 + b',"text":"x","cmd":"pause"}',
    b"[" * 2000,
    b'{"v":1,"seq":0,"t_wall":1,"text":"x","cmd":"pause","value":' + b"7" * 4301 + b"}",
    b'{"v":1,"seq":0,"t_wall":1,"text":"\\ud800","cmd":"pause","value":"\\ud800"}',
    b'{"v":' + b"[" * 3000 + b"}",
    b'{"v":1,"seq":' + b"9" * 4299 + b',"t_wall":1,"text":"x","cmd":"pause"}',
]




async def _until_text_answered(c: aiomqtt.Client, col: Collector, node: str, text: str, n: int) -> None:
    for _ in range(100):
        await c.publish(topic(node, "in/text"), TextIn(text=text).to_json(), qos=1)
        if await col.wait_for(lambda: len(col.of("pred/text")) > n, 0.2):
            return
    raise AssertionError("no text prediction")


async def test_hostile_in_text_and_control_do_not_stop_the_local_pipeline(mosquitto_private, tmp_path):
    """Every reproducer on in/text and in/control is counted as malformed; the pipeline still answers text."""
    node, mosquitto = "hostile", mosquitto_private  # its retained status stays off the shared broker
    col = Collector(mosquitto.host, mosquitto.port, [f"s2/v1/{node}/#"], "col-hostile")
    async with running(col.run()):
        await asyncio.wait_for(col.subscribed.wait(), 5)
        pipe = run_local_pipeline(mosquitto.url, node, None, None, lm_model_file(tmp_path))
        async with running(pipe) as (task,), aiomqtt.Client(mosquitto.host, mosquitto.port) as c:
            await _until_text_answered(c, col, node, "a", 0)
            for raw in HOSTILE:
                await c.publish(topic(node, "in/text"), raw, qos=1)
                await c.publish(topic(node, "in/control"), raw, qos=1)
            n = len(col.of("pred/text"))
            await _until_text_answered(c, col, node, "to be", n)
            want = len(HOSTILE) * 2 - 1  # b"[[[..." on in/text is plain text, and answered
            ok = await col.wait_for(lambda: any(s["malformed_in"] >= want for s in col.of("stats")), 5)
            assert ok, [s["malformed_in"] for s in col.of("stats")]
            assert not task.done()


async def test_control_never_opens_a_path_and_bounds_speed(mosquitto_private, tmp_path):
    """A recording named by path (existing or not) and a speed of 1e-9 are malformed alike; a later pause works."""
    node, mosquitto = "ctl", mosquitto_private
    g = gesture_model_file(tmp_path)
    rec = recording(tmp_path / "r.npy", n=4000, duration_us=400_000)
    other = tmp_path / "not-announced.npy"
    other.write_bytes(b"\x93NUMPY garbage")
    col = Collector(mosquitto.host, mosquitto.port, [f"s2/v1/{node}/#"], "col-ctl")
    async with running(col.run()):
        await asyncio.wait_for(col.subscribed.wait(), 5)
        async with running(run_local_pipeline(mosquitto.url, node, [rec], g, None, loop=True)) as (task,), \
                aiomqtt.Client(mosquitto.host, mosquitto.port) as c:
            assert await col.wait_for(lambda: len(col.of("pred/gesture")) >= 3, 30)
            for value in (str(other), str(tmp_path / "missing.npy"), "/etc/passwd", str(rec)):
                msg = json.dumps({"v": 1, "seq": 1, "t_wall": 1.0, "cmd": "recording", "value": value})
                await c.publish(topic(node, "in/control"), msg.encode(), qos=1)
            await c.publish(topic(node, "in/control"), b'{"v":1,"seq":2,"t_wall":1,"cmd":"speed","speed":1e-9}',
                            qos=1)
            await c.publish(topic(node, "in/control"), ControlIn(cmd="speed", speed=1 / 64).to_json(), qos=1)
            await asyncio.sleep(0.3)  # the replay now waits ~0.6 s per 10 ms bin
            t0 = time.monotonic()
            await c.publish(topic(node, "in/control"), ControlIn(cmd="speed", speed=0).to_json(), qos=1)
            n = len(col.of("pred/gesture"))
            assert await col.wait_for(lambda: len(col.of("pred/gesture")) >= n + 20, 10)
            assert time.monotonic() - t0 < 5  # not held by the slow speed's wait
            assert await col.wait_for(lambda: any(s["malformed_in"] >= 5 for s in col.of("stats")), 5)
            assert not task.done()
    assert col.of("status")[0]["recordings"] == ["r.npy"]


async def _start_ui_once(url: str) -> None:
    app = S2App(url, "n0")
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot)
        await wait_for(pilot, lambda: app.state.malformed >= 1)
        await publish(url, "n0", samples.stats(1))
        await wait_for(pilot, lambda: app.query_one(NodePane).stats is not None)
        assert app.is_running


async def test_retained_status_with_huge_time_does_not_stop_the_ui(mosquitto):
    """A retained status of another node with t_wall 10**400 is counted as malformed on every start, nothing more."""
    async with client(mosquitto.url) as c:
        await c.publish(topic("zz", "status"), b'{"v":1,"seq":0,"t_wall":1' + b"0" * 400 + b"}", retain=True)
    try:
        for _ in range(2):
            await _start_ui_once(mosquitto.url)
    finally:
        async with client(mosquitto.url) as c:
            await c.publish(topic("zz", "status"), b"", retain=True)


async def test_markup_in_a_cut_model_name_and_huge_seq_are_harmless(mosquitto):
    """A model name cut inside a closing tag renders literally; a 4,299-digit seq is malformed, not a crash."""
    app = S2App(mosquitto.url, "mk")
    async with app.run_test(size=(100, 30)) as pilot:
        await connected(pilot)
        st = samples.stats(3)
        st.model = "abcdefghijklmnopqrstuv[/]"
        await publish(mosquitto.url, "mk", st)
        await wait_for(pilot, lambda: app.query_one(NodePane).stats is not None)
        big = json.loads(samples.gesture(1).to_json()) | {"seq": 10**4298}
        await publish_raw(mosquitto.url, "mk", "pred/gesture", json.dumps(big).encode())
        await wait_for(pilot, lambda: app.state.malformed >= 1)
        await pilot.pause(0.2)
        assert "abcdefghijklmnopqrstuv[/" in screen_text(app) and app.is_running


async def test_a_node_id_that_is_a_wildcard_is_never_followed(mosquitto_private):
    """A status naming node "#" (or another topic's node) is malformed: ctrl+n never offers it, nothing crashes."""
    mosquitto = mosquitto_private  # no statuses retained by other tests
    app = S2App(mosquitto.url)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot)
        for node in ("#", "+", "a/b", "n9"):
            bad = samples.status(node)
            await publish_raw(mosquitto.url, "wc", "status", bad.to_json())
        await wait_for(pilot, lambda: app.state.malformed >= 4)
        assert app.state.node == "" and not app.state.nodes
        await pilot.press("ctrl+n")
        await pilot.pause(0.1)
        assert app.is_running
        await publish(mosquitto.url, "good", samples.status("good"))
        await wait_for(pilot, lambda: app.state.node == "good")


async def test_a_handler_that_raises_is_counted_and_the_link_stays_up(mosquitto):
    """An exception in a subscription handler is counted; the connection and later messages are unaffected."""
    from stream.mqtt import MqttLink

    got: list[bytes] = []

    def handler(_t: str, raw: bytes) -> None:
        if raw == b"boom":
            raise RuntimeError("handler bug")
        got.append(raw)

    link = MqttLink(mosquitto.url)
    link.subscribe("s2/v1/hx/in/text", handler)
    async with running(link.run()):
        assert await link.synced(5)
        async with client(mosquitto.url) as c:
            await c.publish("s2/v1/hx/in/text", b"boom", qos=1)
            await c.publish("s2/v1/hx/in/text", b"after", qos=1)
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.05)
        assert got == [b"after"] and link.stats.handler_errors == 1 and link.stats.reconnects == 0
        assert "handler bug" in link.stats.last_handler_error
