"""The UI under Textual's run_test against a real mosquitto: data in, keystrokes and controls out, faults."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os

import pytest
from tui_helpers import client, connected, publish, publish_raw, recorder, screen_text, wait_for

from stream.schema import TextIn, TextPrediction, decode, topic
from tui import samples
from tui.app import S2App
from tui.screens import ChoiceScreen, HelpScreen
from tui.widgets import EventsPane, GesturePane, NodePane, TextPane

pytestmark = pytest.mark.broker
NODE = "n0"


async def test_published_predictions_update_the_panes(mosquitto):
    """Gesture, frame and stats payloads published on the broker show up in their panes."""
    app = S2App(mosquitto.url, NODE)
    async with app.run_test(size=(100, 30)) as pilot:
        await connected(pilot)
        g = samples.gesture(75)  # leading class: right_hand_wave
        await publish(mosquitto.url, NODE, samples.gesture(74), g, samples.frame(3), samples.stats(9, seq=0))
        await wait_for(pilot, lambda: app.query_one(NodePane).stats is not None
                       and app.query_one(GesturePane).prediction == g)
        assert app.query_one(EventsPane).frame.seq == 3
        await pilot.pause(0.15)
        text = screen_text(app)
        assert "▶ right_hand_wave" in text
        assert f"{max(g.probs):5.1%}" in text
        assert "gesture-egru · step 9" in text  # node pane subtitle from the stats payload
        assert "sparsity 93.1%" in text
        assert "drop 0" in text and "bad 0" in text


async def test_typing_goes_to_in_text_and_the_answer_comes_back(mosquitto):
    """Each keystroke is published on in/text; a peer's TextPrediction for it appears in the text pane."""
    seen: list[str] = []

    async def responder() -> None:  # a stand-in language model: a real MQTT peer answering every keystroke
        async with client(mosquitto.url) as c:
            await c.subscribe(topic(NODE, "in/text"))
            async for m in c.messages:
                t = decode("in/text", m.payload)
                assert isinstance(t, TextIn)
                seen.append(t.text)
                ctx = "".join(seen)
                answer = TextPrediction(seq=len(seen), t_wall=1.0, context=ctx, topk=[[ctx[-1], 0.5], ["!", 0.25]],
                                        continuation=ctx.upper(), bpc=len(ctx) / 10)
                await c.publish(topic(NODE, "pred/text"), answer.to_json())

    task = asyncio.create_task(responder())
    try:
        app = S2App(mosquitto.url, NODE)
        async with app.run_test(size=(80, 24)) as pilot:
            await connected(pilot)
            await asyncio.sleep(0.3)  # the responder subscribes
            await pilot.press(*"hello")
            await wait_for(pilot, lambda: app.query_one(TextPane).prediction is not None
                           and app.query_one(TextPane).prediction.context == "hello")
            assert seen == list("hello")
            await pilot.pause(0.15)
            text = screen_text(app)
            assert "helloHELLO" in text  # context tail then the model's continuation
            assert "bits/char 0.500" in text
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_markup_in_payloads_is_shown_literally(mosquitto):
    """Rich markup and control characters from the network are displayed as text, never interpreted."""
    app = S2App(mosquitto.url, NODE)
    async with app.run_test(size=(100, 30)) as pilot:
        await connected(pilot)
        g = samples.gesture(0)
        g.label, g.classes = "[bold red]boom[/]", ["[i]x[/i]", *g.classes[1:]]
        t = samples.text(0)
        t.continuation, t.topk = "[link=http://x]click[/link]", [["[", 0.5]]
        s = samples.stats(0)
        s.model = "[blink]m[/blink]"
        await publish(mosquitto.url, NODE, g, t, s)
        await wait_for(pilot, lambda: app.query_one(NodePane).stats is not None)
        await pilot.pause(0.15)
        text = screen_text(app)
        assert "[bold red]boom[/]" in text
        assert "[i]x[/i]" in text
        assert "[link=http://x]click[/link]" in text
        assert "[blink]m[/blink]" in text  # in the node pane's (markup-parsed) border subtitle


async def test_malformed_payloads_are_ignored_and_counted(mosquitto):
    """Bad JSON, wrong schema version, wrong types and bad UTF-8 are counted, and later good data still shows."""
    app = S2App(mosquitto.url, NODE)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot)
        bad_stats = json.loads(samples.stats(0).to_json())
        bad_stats["pe_activity"] = ["hot"] * 152
        await publish_raw(mosquitto.url, NODE, "pred/gesture", b"{not json", b'{"v":9,"seq":0,"t_wall":0}')
        await publish_raw(mosquitto.url, NODE, "stats", json.dumps(bad_stats).encode())
        await publish_raw(mosquitto.url, NODE, "pred/text", b"\xff\xfe")
        await publish(mosquitto.url, NODE, samples.gesture(5))
        await wait_for(pilot, lambda: app.query_one(GesturePane).prediction is not None)
        await wait_for(pilot, lambda: app.status_line.malformed == 4)
        assert app.query_one(NodePane).stats is None
        await pilot.pause(0.1)
        assert "bad 4" in screen_text(app)


async def test_sequence_gaps_count_as_dropped(mosquitto):
    """A gap in a topic's sequence numbers is counted as dropped messages."""
    app = S2App(mosquitto.url, NODE)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot)
        await publish(mosquitto.url, NODE, samples.gesture(0), samples.gesture(1), samples.gesture(5))
        await wait_for(pilot, lambda: app.status_line.dropped == 3)


async def test_broker_restart_is_recovered(mosquitto_private):
    """With the broker down the status line says so and retries; when it is back the app reconnects by itself."""
    broker = mosquitto_private
    app = S2App(broker.url, NODE)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot)
        await publish(broker.url, NODE, samples.gesture(0))
        await wait_for(pilot, lambda: app.query_one(GesturePane).prediction is not None)
        broker.stop()
        await wait_for(pilot, lambda: app.status_line.state == "disconnected")
        await pilot.pause(0.1)
        assert "disconnected, retrying" in screen_text(app)
        await pilot.pause(1.0)  # a few failed attempts while it is down
        broker.start()
        await wait_for(pilot, lambda: app.status_line.state == "connected", timeout_s=15)
        assert app.status_line.reconnects == 1
        await publish(broker.url, NODE, samples.gesture(50))
        await wait_for(pilot, lambda: app.query_one(GesturePane).prediction.step == 50)


async def test_controls_are_published_on_in_control(mosquitto):
    """Pause, speed and recording choices go out as in/control messages of the agreed shape."""
    app = S2App(mosquitto.url, NODE)
    async with recorder(mosquitto.url, NODE, "in/control") as got, app.run_test(size=(80, 24)) as pilot:
        await connected(pilot)
        await publish(mosquitto.url, NODE, samples.status(NODE), retain=False)
        await wait_for(pilot, lambda: app.state.status is not None)
        await pilot.press("ctrl+p")
        await pilot.press("ctrl+p")
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press("down", "enter")  # from 1x to 2x
        await pilot.press("ctrl+r")
        await pilot.press("down", "enter")  # the second announced recording
        await wait_for(pilot, lambda: len(got) == 4)
        assert [(m["cmd"], m.get("speed"), m.get("recording")) for m in got] == [
            ("pause", None, None), ("resume", None, None), ("speed", 2.0, None),
            ("recording", None, "davis346-traffic")]
        assert all(m["v"] == 1 and isinstance(m["seq"], int) and isinstance(m["t_wall"], float) for m in got)
        assert "▶ 2x davis346-traffic" in screen_text(app)


async def test_switching_node_follows_the_other_node(mosquitto):
    """After choosing another node from those announced, its messages are shown and the old node's are not."""
    app = S2App(mosquitto.url, NODE)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot)
        await publish(mosquitto.url, "n1", samples.status("n1"))
        await wait_for(pilot, lambda: "n1" in app.state.nodes)
        await pilot.press("ctrl+n", "down", "enter")
        await wait_for(pilot, lambda: app.state.node == "n1" and app.status_line.state == "connected")
        await publish(mosquitto.url, NODE, samples.gesture(0))
        await publish(mosquitto.url, "n1", samples.gesture(45))
        await wait_for(pilot, lambda: app.query_one(GesturePane).prediction is not None)
        await pilot.pause(0.2)
        assert app.query_one(GesturePane).prediction.step == 45


async def test_help_opens_and_closes(mosquitto):
    """f1 shows the key help; escape returns to the main screen."""
    app = S2App(mosquitto.url, NODE)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


def test_cli_rejects_a_bad_broker_url(capsys):
    """`s2 tui --broker` with an unusable URL is a one-line error and exit status 1."""
    from stream.cli import main

    assert main(["tui", "--broker", "http://somewhere"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("s2 tui: error:") and "bad broker URL" in err and "\n" not in err


@pytest.mark.parametrize("coalesce", [True, False])
async def test_updates_are_coalesced(mosquitto, coalesce):
    """A burst of 300 predictions reaches the gesture pane as a few refreshes, not one per message (unless asked)."""
    node = f"coalesce-{coalesce}-{os.getpid()}"  # no retained status of other tests' nodes on this one
    app = S2App(mosquitto.url, node, coalesce=coalesce)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot)
        pane = app.query_one(GesturePane)
        await pilot.pause(0.3)  # retained status messages of other nodes arrive first; count only ours
        before = app.state.received
        updates = []

        def watch(p) -> None:
            updates.append(p)

        pane.watch_prediction = watch  # Textual looks watchers up on the instance
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await publish(mosquitto.url, node, *(samples.gesture(i) for i in range(300)))
        await wait_for(pilot, lambda: pane.prediction is not None and pane.prediction.step == 299)
        elapsed = loop.time() - t0
        assert app.state.received - before == 300
        if coalesce:
            assert len(updates) <= elapsed * 15 + 3 and len(updates) < 100
        else:
            assert len(updates) == 300


async def test_works_with_the_amqtt_fallback_broker(amqtt_broker):
    """Against the in-process amqtt broker (MQTT 3.1.1) the app connects and shows what is published."""
    app = S2App(amqtt_broker.url, NODE)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot)
        await publish(amqtt_broker.url, NODE, samples.gesture(7))
        await wait_for(pilot, lambda: app.query_one(GesturePane).prediction is not None)
        assert app.query_one(GesturePane).prediction.step == 7


async def test_starts_before_the_broker_and_connects_when_it_appears(mosquitto_private):
    """Started with no broker listening, the app shows it is retrying, then connects once the broker is up."""
    broker = mosquitto_private
    broker.stop()  # the port stays reserved for this broker; nothing listens on it now
    app = S2App(broker.url, NODE)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.status_line.state == "disconnected")
        broker.start()
        await wait_for(pilot, lambda: app.status_line.state == "connected", timeout_s=15)
        assert app.status_line.reconnects == 0
        await publish(broker.url, NODE, samples.gesture(3))
        await wait_for(pilot, lambda: app.query_one(GesturePane).prediction is not None)


async def test_new_text_resets_the_model_and_clears_the_pane(mosquitto):
    """ctrl+l empties the input and the answer and sends a reset on in/control."""
    app = S2App(mosquitto.url, NODE)
    async with recorder(mosquitto.url, NODE, "in/control") as got, app.run_test(size=(80, 24)) as pilot:
        await connected(pilot)
        await pilot.press(*"abc")
        await publish(mosquitto.url, NODE, samples.text(0, "abc"))
        await wait_for(pilot, lambda: app.query_one(TextPane).prediction is not None)
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: len(got) == 1)
        assert got[0]["cmd"] == "reset"
        await publish(mosquitto.url, NODE, samples.gesture(1))  # any later message must not bring the answer back
        await wait_for(pilot, lambda: app.query_one(GesturePane).prediction is not None)
        await pilot.pause(0.2)
        assert app.query_one(TextPane).prediction is None
        assert app.query_one("TextPane Input").value == ""


async def test_typing_o_goes_to_the_input_not_to_a_binding(mosquitto):
    """Plain-letter bindings do not steal keys from the text input (only ctrl bindings are global)."""
    app = S2App(mosquitto.url, NODE)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot)
        await pilot.press(*"pronto?")
        assert app.query_one("TextPane Input").value == "pronto?"
        assert not isinstance(app.screen, HelpScreen | ChoiceScreen)


async def test_without_a_node_follows_the_first_node_announced_online(mosquitto_private):
    """With no node given the app follows the first node whose retained status says online, and shows its data."""
    broker = mosquitto_private
    await publish(broker.url, "a0", samples.status("a0"), retain=True)
    gone = samples.status("a0")
    gone.state = "offline"
    await publish(broker.url, "a0", gone, retain=True)  # an offline node is not followed
    await publish(broker.url, NODE, samples.status(NODE), retain=True)
    app = S2App(broker.url)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.state.node == NODE and app.status_line.state == "connected")
        assert app.state.nodes == {"a0": "offline", NODE: "online"} and app.state.status.node == NODE
        g = samples.gesture(75)
        await publish(broker.url, NODE, g)
        await wait_for(pilot, lambda: app.query_one(GesturePane).prediction == g)
        await pilot.pause(0.15)
        text = screen_text(app)
        assert "▶ right_hand_wave" in text and f"{NODE} online" in text


async def test_without_a_node_typed_text_is_refused_until_one_is_heard(mosquitto_private):
    """Before any node has announced itself there is nowhere to send typed text: it is refused, not queued."""
    app = S2App(mosquitto_private.url)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot)
        assert app.state.node == "" and not app.feed.send("in/text", b"x")
        await pilot.press("ctrl+n")
        assert not isinstance(app.screen, ChoiceScreen)  # no node to choose from yet
        await publish(mosquitto_private.url, "n7", samples.status("n7"))
        await wait_for(pilot, lambda: app.state.node == "n7" and app.status_line.state == "connected")
        assert app.feed.send("in/text", b"x")


async def test_replay_of_the_demo_recording_shows_in_a_ui_given_no_node(mosquitto_private):
    """`s2 replay models/demo-gestures.aedat4 --broker URL` and `s2 tui --broker URL` (no --node) meet: the UI
    follows the replay's node and shows its gestures, with the defaults on both sides."""
    import subprocess
    import sys
    from pathlib import Path

    mosquitto = mosquitto_private  # a broker of its own: statuses other tests left retained would be heard first
    root = Path(__file__).resolve().parent.parent
    rec = root / "models" / "demo-gestures.aedat4"
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "replay", str(rec), "--broker", mosquitto.url,
                             "--loop"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=root)
    try:
        app = S2App(mosquitto.url)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: app.state.node == "n0", timeout_s=60)
            await wait_for(pilot, lambda: app.query_one(GesturePane).prediction is not None, timeout_s=30)
            assert app.query_one(GesturePane).prediction.label in app.query_one(GesturePane).prediction.classes
    finally:
        proc.terminate()
        err = proc.communicate(timeout=20)[1]
    assert "Traceback" not in err, err


async def test_after_a_chooser_plain_keys_stay_commands(mosquitto):
    """Esc leaves the input; after a chooser closes the focus stays off the input, so `p` pauses, not types."""
    app = S2App(mosquitto.url, NODE)
    async with recorder(mosquitto.url, NODE, "in/control") as got, app.run_test(size=(80, 24)) as pilot:
        await connected(pilot)
        await publish(mosquitto.url, NODE, samples.status(NODE))
        await wait_for(pilot, lambda: app.state.nodes.get(NODE) == "online")
        await pilot.press("escape", "s")
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press("down", "enter")
        await pilot.pause(0.1)
        await pilot.press("p")
        await wait_for(pilot, lambda: [m["cmd"] for m in got] == ["speed", "pause"])
        assert app.query_one("TextPane Input").value == ""
        await pilot.press("f1")
        await pilot.press("escape", "p")  # the help closes, focus stays off the input
        await wait_for(pilot, lambda: [m["cmd"] for m in got] == ["speed", "pause", "resume"])


async def test_papercuts_footer_help_class_names_and_text_hint(mosquitto):
    """ctrl+o is in the footer, the help says how to close it, class names are whole, and the text pane says
    the model takes text once the node is online."""
    app = S2App(mosquitto.url, NODE)
    async with app.run_test(size=(100, 30)) as pilot:
        await connected(pilot)
        footer = {k: b.binding for k, b in app.active_bindings.items() if b.binding.show}
        assert "ctrl+o" in footer and footer["ctrl+o"].description == "model"
        assert "waiting for the node" in screen_text(app)
        await publish(mosquitto.url, NODE, samples.status(NODE), samples.gesture(3))
        await wait_for(pilot, lambda: app.query_one(GesturePane).prediction is not None)
        await pilot.pause(0.2)
        text = screen_text(app)
        assert "right_hand_wave " in text and "language model" in text  # 15 characters, not cut
        await pilot.press("f1")
        assert "(esc closes)" in screen_text(app)
