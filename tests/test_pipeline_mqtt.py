"""The pipeline against a real mosquitto: same predictions as the model run directly, no loss across a broker
restart, bad in/text messages rejected and counted, the local demo pipeline steered over in/control."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import aiomqtt
import numpy as np
import pytest
import torch
from stream_helpers import CLASSES, Collector, gesture_model_file, lm_model_file, recording, running

from s2node.models import load_torch_model
from s2node.step import load_step_model
from sources.live.text import TextInbox
from stream.binner import make_binner
from stream.broker import MosquittoProcess, mosquitto_binary
from stream.local import run_local_pipeline
from stream.mqtt import Backoff, MqttLink
from stream.pipeline import run_gesture_pipeline
from stream.queues import BoundedQueue
from stream.replay import replay
from stream.schema import ControlIn, TextIn, decode_counts, topic
from stream.text_pipeline import TextLM, run_text_pipeline, subscribe_text

pytestmark = pytest.mark.broker




def direct_probs(model_path, rec_path) -> np.ndarray:
    """The reference: the whole recording binned offline, the PyTorch model over all steps, pooled per step."""
    model, cfg = load_torch_model(model_path)
    from stream.binner import BinSpec, bin_events

    x = torch.from_numpy(bin_events(np.load(rec_path), BinSpec.from_config(cfg)))[None]
    with torch.no_grad():
        step_logits, _, _ = model(x)
    pooled = torch.cumsum(step_logits, 1) / torch.arange(1, x.shape[1] + 1)[None, :, None]
    assert cfg["readout"]["pool"] == "mean"
    return torch.softmax(pooled[0].double(), -1).numpy()


async def test_replay_predictions_equal_direct_model_run(mosquitto, tmp_path):
    """Every bin of a replayed recording gives, in order, the prediction of the model run on the whole file."""
    mpath = gesture_model_file(tmp_path)
    rec = recording(tmp_path / "r.npy", n=8000, duration_us=300_000, outside=25)
    col = Collector(mosquitto.host, mosquitto.port, [topic("eq", "pred/gesture")], "col-eq")
    link = MqttLink(mosquitto.url, "eq")
    model = load_step_model(mpath)
    async with running(col.run(), link.run()):
        await asyncio.wait_for(col.subscribed.wait(), 5)
        with ThreadPoolExecutor(1) as ex:
            c = await run_gesture_pipeline(replay(rec, speed=0), model, make_binner(model.config), link,
                                           executor=ex, frames=False)
        assert await link.drained(10)
        ref = direct_probs(mpath, rec)
        assert await col.wait_for(lambda: len(col.messages) >= len(ref), 10)
    preds = col.of("pred/gesture")
    assert [p["seq"] for p in preds] == list(range(len(ref))) and [p["step"] for p in preds] == list(range(len(ref)))
    np.testing.assert_allclose(np.array([p["probs"] for p in preds]), ref, atol=2e-6)
    assert [p["label"] for p in preds] == [CLASSES[i] for i in ref.argmax(1)]
    assert c.events_dropped == 25 and c.events_in == 8000 - 25


async def test_broker_restart_mid_replay_loses_no_prediction(tmp_path):
    """Broker stopped and restarted mid-replay: every QoS-1 prediction arrives, duplicates show as repeated seq."""
    if mosquitto_binary() is None:
        pytest.skip("mosquitto not installed")
    broker = MosquittoProcess(persistence=True).start()
    try:
        mpath = gesture_model_file(tmp_path, bin_us=5_000)
        rec = recording(tmp_path / "r.npy", n=12000, duration_us=1_200_000)
        col = Collector(broker.host, broker.port, [topic("rs", "pred/gesture")], "col-restart")
        link = MqttLink(broker.url, "rs", backoff=Backoff(0.02, 0.2))
        model = load_step_model(mpath)
        async with running(col.run(), link.run()):
            await asyncio.wait_for(col.subscribed.wait(), 5)
            await asyncio.sleep(0.2)  # let mosquitto record the persistent session
            with ThreadPoolExecutor(1) as ex:
                pipe = asyncio.create_task(run_gesture_pipeline(
                    replay(rec, speed=0.5), model, make_binner(model.config), link, executor=ex, frames=False))
                assert await col.wait_for(lambda: len(col.messages) >= 5, 20)
                n_before = len(col.messages)
                await asyncio.to_thread(broker.stop)
                async with asyncio.timeout(10):
                    while link.stats.connected:
                        await asyncio.sleep(0.02)
                await asyncio.sleep(0.3)
                assert not pipe.done()  # the pipeline keeps going while the broker is away
                assert link.pending > 0 and not link.stats.connected
                await asyncio.to_thread(broker.start)
                c = await asyncio.wait_for(pipe, 20)
            assert await link.drained(10)
            n = c.predictions
            got = await col.wait_for(lambda: {p["seq"] for p in col.of("pred/gesture")} >= set(range(n)), 15)
            missing = sorted(set(range(n)) - {p["seq"] for p in col.of("pred/gesture")})
            assert got, f"{len(missing)} of {n} predictions missing, first {missing[:10]}, n_before {n_before}"
        seqs = [p["seq"] for p in col.of("pred/gesture")]
        assert 0 < n_before < n and set(seqs) == set(range(n))
        assert link.stats.reconnects >= 1 and link.stats.dropped == 0
        dup = len(seqs) - len(set(seqs))  # duplicates are possible (a PUBACK lost at the stop), and detectable
        assert dup >= 0
    finally:
        broker.close()


async def test_in_text_bad_payloads_rejected_and_counted(mosquitto, tmp_path):
    """Malformed JSON, oversized and invalid-UTF-8 messages on in/text are counted; good ones get predictions."""
    lm = TextLM(load_step_model(lm_model_file(tmp_path)))
    link = MqttLink(mosquitto.url, "txt")
    q = TextInbox(64)
    subscribe_text(link, q, lm)
    col = Collector(mosquitto.host, mosquitto.port, [topic("txt", "pred/text")], "col-txt")
    with ThreadPoolExecutor(1) as ex:
        async with running(col.run(), link.run(), run_text_pipeline(q, lm, link, ex)):
            await asyncio.wait_for(col.subscribed.wait(), 5)
            assert await link.wait_connected(5)
            await asyncio.sleep(0.1)
            async with aiomqtt.Client(mosquitto.host, mosquitto.port) as c:
                t = topic("txt", "in/text")
                for bad in (b'{"v": 1, "seq": 0, "t_wall": 0, "text": ', b"x" * 10_000, b"\xff\xfe hello",
                            b'{"v": 1, "seq": 0, "t_wall": 0, "text": 5}', b'{"v": 99, "text": "hi"}'):
                    await c.publish(t, bad, qos=1)
                await c.publish(t, b"hello ", qos=1)
                await c.publish(t, TextIn(text="world").to_json(), qos=1)
            assert await col.wait_for(lambda: len(col.messages) >= 2, 10)
            await asyncio.sleep(0.2)
    preds = col.of("pred/text")
    assert lm.c.malformed == 5 and lm.c.messages == 2 and len(preds) == 2
    assert preds[1]["context"] == "hello world" and len(preds[1]["continuation"]) == 20
    assert len(preds[1]["topk"]) == 5 and preds[1]["bpc"] > 0
    assert sum(p for _, p in preds[1]["topk"]) <= 1.0 + 1e-6


async def test_local_pipeline_serves_text_and_obeys_control(mosquitto, tmp_path):
    """run_local_pipeline replays into the gesture model, answers in/text, and pauses/resumes on in/control."""
    g, lmf = gesture_model_file(tmp_path), lm_model_file(tmp_path)
    rec = recording(tmp_path / "r.npy", n=4000, duration_us=400_000)
    rec2 = recording(tmp_path / "r2.npy", n=4000, duration_us=400_000, seed=9)
    col = Collector(mosquitto.host, mosquitto.port, ["s2/v1/demo/#"], "col-demo")
    async with running(col.run()):
        await asyncio.wait_for(col.subscribed.wait(), 5)
        async with running(run_local_pipeline(mosquitto.url, "demo", [rec, rec2], g, lmf, speed=1.0, loop=True)):
            assert await col.wait_for(lambda: len(col.of("pred/gesture")) >= 5, 30)
            async with aiomqtt.Client(mosquitto.host, mosquitto.port) as c:
                await c.publish(topic("demo", "in/control"), ControlIn(cmd="pause").to_json(), qos=1)
                await asyncio.sleep(0.4)
                n_paused = len(col.of("pred/gesture"))
                await asyncio.sleep(0.5)
                assert len(col.of("pred/gesture")) <= n_paused + 1  # at most one in flight at the pause
                await c.publish(topic("demo", "in/control"), ControlIn(cmd="resume").to_json(), qos=1)
                assert await col.wait_for(lambda: len(col.of("pred/gesture")) >= n_paused + 5, 10)
                await c.publish(topic("demo", "in/control"), b'{"v": 1, "cmd": "nonsense"}', qos=1)
                await c.publish(topic("demo", "in/text"), b"to be", qos=1)
                assert await col.wait_for(lambda: len(col.of("pred/text")) >= 1, 10)
                assert await col.wait_for(lambda: any(s["malformed_in"] >= 1 for s in col.of("stats")), 5)
                # the TUI's form: {"cmd": "recording", "value": NAME}; the new recording starts at step 0
                n_before = len(col.of("pred/gesture"))
                await c.publish(topic("demo", "in/control"),
                                b'{"v":1,"seq":9,"t_wall":1.0,"cmd":"recording","value":"r2.npy"}', qos=1)
                assert await col.wait_for(lambda: any(p["step"] == 0 for p in col.of("pred/gesture")[n_before:]), 10)
    status = col.of("status")
    assert status[0]["state"] == "online" and status[0]["recordings"] == ["r.npy", "r2.npy"]
    assert col.of("pred/text")[0]["context"] == "to be"
    frames = col.of("frame")
    assert frames
    on, off = decode_counts(frames[0]["dtype"], frames[0]["counts"], frames[0]["width"] * frames[0]["height"])
    assert sum(on) + sum(off) > 0
    gstats = [st for st in col.of("stats") if st["model"] == "gesture"]
    assert gstats and gstats[-1]["steps"] > 0 and gstats[-1]["events_in"] > 0
    if gstats[-1]["pe_activity"]:  # the chip emulator backend reports its PEs
        assert len(gstats[-1]["pe_activity"]) == 152 and gstats[-1]["energy_per_inference_j"] > 0


async def test_reset_during_a_stream_of_text_takes_effect(mosquitto, tmp_path):
    """A reset on in/control between two texts on in/text clears the context: the LM's thread applies it in order."""
    col = Collector(mosquitto.host, mosquitto.port, ["s2/v1/rst/pred/text"], "col-rst")
    async with running(col.run()):
        await asyncio.wait_for(col.subscribed.wait(), 5)
        lm = lm_model_file(tmp_path)
        async with running(run_local_pipeline(mosquitto.url, "rst", None, None, lm)), \
                aiomqtt.Client(mosquitto.host, mosquitto.port) as c:
            for _ in range(50):  # until the pipeline is subscribed
                await c.publish(topic("rst", "in/text"), TextIn(text="x").to_json(), qos=1)
                if await col.wait_for(lambda: len(col.of("pred/text")) >= 1, 0.2):
                    break
            n = len(col.of("pred/text"))
            # a stream of text with a reset in the middle, sent back to back
            for i in range(20):
                await c.publish(topic("rst", "in/text"), TextIn(text=f"a{i} ").to_json(), qos=1)
            await c.publish(topic("rst", "in/control"), ControlIn(cmd="reset").to_json(), qos=1)
            await c.publish(topic("rst", "in/text"), TextIn(text="to be").to_json(), qos=1)
            assert await col.wait_for(lambda: len(col.of("pred/text")) >= n + 21, 20)
    last = col.of("pred/text")[-1]
    assert last["context"] == "to be"  # nothing from before the reset survived, not even through predict()


async def test_udp_flood_through_pipeline_drops_and_counts(mosquitto, tmp_path):
    """A UDP flood beyond what the node can take is dropped oldest-first and counted, in bounded buffers."""
    import socket
    import threading
    import time

    from sources.live import udp_batches
    from sources.live.udp import FAERY_DTYPE, UdpEventSource

    # faery records keep their own times: each datagram carries 20 ms of event time (200 bins, so 200 steps and
    # predictions) and they are sent 1 ms apart, 200 k steps per second of wall clock: more than any machine steps
    # and publishes, however fast the node and however the sender's pacing stretches under load
    model = load_step_model(gesture_model_file(tmp_path, bin_us=100))
    link = MqttLink(mosquitto.url, "flood")
    q: BoundedQueue = BoundedQueue(8, "drop-oldest", weight=lambda b: len(b.events))

    def datagram(i: int) -> bytes:
        r = np.zeros(128, FAERY_DTYPE)
        r["t"] = i * 20_000 + np.arange(128) * 150
        r["x"], r["y"], r["on"] = np.arange(128) % 32, np.arange(128) % 24, np.arange(128) % 2
        return r.tobytes()

    async with running(link.run()), UdpEventSource("127.0.0.1", 0, fmt="faery", max_batches=8) as src:

        def flood() -> None:
            # paced so that the kernel's receive buffer keeps up: the drops under test are the pipeline's own
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for i in range(300):
                    s.sendto(datagram(i), ("127.0.0.1", src.port))
                    time.sleep(0.001)

        with ThreadPoolExecutor(1) as ex:
            pipe = asyncio.create_task(run_gesture_pipeline(
                udp_batches(src), model, make_binner(model.config), link, executor=ex, queue=q, frames=False))
            sender = threading.Thread(target=flood)
            sender.start()
            await asyncio.to_thread(sender.join)
            await asyncio.sleep(0.3)
            src.close()
            c = await asyncio.wait_for(pipe, 60)
    st = src.stats
    assert st.events == c.events_in + c.events_dropped + st.dropped  # every received event accounted for
    assert c.events_dropped + st.dropped > 0 and q.dropped == c.events_dropped
    assert q.high_water <= 8 and len(src) == 0
