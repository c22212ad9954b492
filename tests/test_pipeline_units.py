"""Stream-side units on real data structures: binning by event time, replay pacing on a virtual clock, queues,
SPIF UDP decoding and a UDP flood that drops and counts without growing memory."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import tracemalloc

import numpy as np
import pytest
from stream_helpers import gesture_model_file, recording

from sources.events import EVENT_DTYPE, make_events
from sources.live.udp import UdpEventSource, decode_spif, encode_spif
from stream.binner import BinSpec, StreamBinner, bin_events
from stream.queues import BoundedQueue
from stream.replay import ReplayControl, replay
from stream.schema import ControlIn, PayloadError, decode


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer when nothing is ready (aiostream's test-loop idea)."""

    def __init__(self) -> None:
        super().__init__()
        self._virtual_t = 0.0

    def time(self) -> float:
        return self._virtual_t

    def _run_once(self) -> None:
        if not self._ready and self._scheduled:
            self._virtual_t = max(self._virtual_t, self._scheduled[0]._when)
        super()._run_once()


def run_virtual(coro):
    with asyncio.Runner(loop_factory=VirtualClockLoop) as r:
        return r.run(coro)




def _spec(tmp_path) -> BinSpec:
    from s2node import modelfile

    cfg, _ = modelfile.load(gesture_model_file(tmp_path, sensor=(32, 24), downsample=4, bin_us=10_000))
    return BinSpec.from_config(cfg)


@pytest.mark.parametrize("chunk", [1, 7, 500, 100_000])
def test_streaming_binner_equals_offline_binning(tmp_path, chunk):
    """Fed in any chunking, the streaming binner closes exactly the bins that offline bin_events computes."""
    spec = _spec(tmp_path)
    ev = np.load(recording(tmp_path / "r.npy", n=5000, duration_us=95_000, outside=40))
    ref = bin_events(ev, spec)
    b = StreamBinner(spec)
    got = [bin for i in range(0, len(ev), chunk) for bin in b.feed(ev[i : i + chunk])] + b.flush()
    assert [g.index for g in got] == list(range(len(ref)))
    np.testing.assert_array_equal(np.stack([g.vector for g in got]), ref)
    assert b.dropped == 40 and b.events_in == 5000 - 40
    assert got[0].t_end_us == int(ev["t"].min()) + spec.bin_us


@pytest.mark.parametrize("chunk", [1, 300, 100_000])
def test_early_input_plus_rest_is_exactly_the_bin(tmp_path, chunk):
    """take_early() hands out the open bin's new input after each batch; each closed bin then carries only the
    rest, and the early parts plus the rest equal the offline bin exactly (what the node's deliver() relies on)."""
    spec = _spec(tmp_path)
    ev = np.load(recording(tmp_path / "r.npy", n=5000, duration_us=95_000, outside=40))
    ref = bin_events(ev, spec)
    b = StreamBinner(spec)
    got = np.zeros_like(ref)
    pending = np.zeros(ref.shape[1], np.float32)  # early input of the open bin, as a node accumulates it
    for i in range(0, len(ev), chunk):
        for closed in b.feed(ev[i : i + chunk]):
            got[closed.index] = pending + closed.vector
            pending = np.zeros_like(pending)
        early = b.take_early()
        if early is not None:
            assert (early >= 0).all()
            pending += early
    for closed in b.flush():
        got[closed.index] = pending + closed.vector
    np.testing.assert_array_equal(got, ref)


def test_binner_feature_layout_and_watermark(tmp_path):
    """An event lands at p·Hd·Wd + (y//d)·Wd + x//d scaled; a watermark closes bins (empty ones too) on time."""
    spec = _spec(tmp_path)  # 32x24 sensor, d=4 -> Wd=8, Hd=6, scale 0.2
    b = StreamBinner(spec)
    assert b.feed(make_events([0], [13], [9], [1])) == []
    bins = b.feed(np.empty(0, EVENT_DTYPE), upto_us=30_000)
    assert [x.index for x in bins] == [0, 1, 2]
    v = bins[0].vector
    assert v[48 + 2 * 8 + 3] == pytest.approx(0.2) and v.sum() == pytest.approx(0.2)
    assert not bins[1].vector.any() and not bins[2].vector.any()


def test_replay_paced_by_event_time_on_virtual_clock(tmp_path):
    """At speed 2 a 0.5 s recording is released over 0.25 s of (virtual) wall time, in event-time order."""
    path = recording(tmp_path / "r.npy", n=2000, duration_us=500_000)

    async def go(speed):
        loop = asyncio.get_running_loop()
        t0, out = loop.time(), []
        async for b in replay(path, speed=speed, chunk_us=10_000):
            out.append((loop.time() - t0, b.upto_us, len(b.events), int(b.events["t"][0])))
        return out

    out = run_virtual(go(2.0))
    t_first = out[0][3]
    for t, upto, *_ in out:  # a chunk goes out when its last event is due
        assert t == pytest.approx((upto - t_first) / 1e6 / 2.0, abs=1e-6)
    assert sum(o[2] for o in out) == 2000
    assert out[-1][0] == pytest.approx(0.25, abs=0.011)
    assert run_virtual(go(0.0))[-1][0] == 0.0  # speed 0: as fast as possible


def test_replay_control_pause_speed_and_loop(tmp_path):
    """Pausing holds the replay, a speed change re-anchors pacing, and --loop keeps event time increasing."""
    path = recording(tmp_path / "r.npy", n=1000, duration_us=1_000_000)

    async def go():
        loop = asyncio.get_running_loop()
        ctl = ReplayControl(speed=1.0)
        ts, times = [], []

        async def steer():
            await asyncio.sleep(0.3)
            ctl.pause()
            await asyncio.sleep(5.0)
            ctl.resume()
            await asyncio.sleep(0.2)
            ctl.set_speed(0.5)

        task = asyncio.create_task(steer())
        async for b in replay(path, loop=True, control=ctl, chunk_us=50_000):
            ts.append(b.events["t"])
            times.append(loop.time())
            if len(ts) >= 50:  # 2.5 loops of 20 chunks
                break
        await task
        return np.concatenate(ts), times

    t, times = run_virtual(go())
    assert np.all(np.diff(t) >= 0)  # time keeps increasing over loop boundaries
    assert any(b - a >= 4.9 for a, b in itertools.pairwise(times))  # the pause
    # 0.5 s at speed 1 + 5 s pause + rest at half speed: ~ 0.5 + 5 + 2 * (2.5 - 0.5)
    assert times[-1] == pytest.approx(0.5 + 5.0 + 2 * 2.0, abs=0.3)  # re-anchoring costs < 1 chunk each


async def test_bounded_queue_policies():
    """drop-oldest never waits and counts what it drops; block makes the producer wait; close ends iteration."""
    q: BoundedQueue[int] = BoundedQueue(3, "drop-oldest")
    for i in range(10):
        await q.put(i)
    q.close()
    assert [i async for i in q] == [7, 8, 9] and q.dropped == 7 and q.high_water == 3
    b: BoundedQueue[int] = BoundedQueue(2, "block")
    await b.put(1)
    await b.put(2)
    waiter = asyncio.create_task(b.put(3))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    assert await b.get() == 1
    await asyncio.wait_for(waiter, 1)
    assert b.dropped == 0 and len(b) == 2


def test_spif_words_roundtrip():
    """SPIF words carry x in bits 30:16, polarity in bit 15, y in bits 14:0, with the no-timestamp flag set."""
    ev = make_events([0, 0, 0], [0, 345, 32767], [259, 0, 32767], [1, 0, 1])
    raw = encode_spif(ev)
    w = np.frombuffer(raw, "<u4")
    assert int(w[1]) == (1 << 31) | (345 << 16) | 0
    back = decode_spif(raw, 123)
    assert list(back["x"]) == [0, 345, 32767] and list(back["y"]) == [259, 0, 32767]
    assert list(back["p"]) == [1, 0, 1] and set(back["t"]) == {123}


async def test_udp_flood_drops_oldest_counted_and_bounded():
    """A loopback UDP flood while nobody consumes keeps at most max_batches, counting every event it drops."""
    ev = make_events(np.zeros(256), np.arange(256) % 128, np.arange(256) % 96, np.arange(256) % 2)
    raw = encode_spif(ev)
    n_send = 3000  # 768k events, 11.5 MB as EVENT_DTYPE if it were all kept
    tracemalloc.start()
    try:
        async with UdpEventSource("127.0.0.1", 0, max_batches=16) as src:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for i in range(n_send):
                    s.sendto(raw, ("127.0.0.1", src.port))
                    if i % 50 == 0:
                        await asyncio.sleep(0)  # let the protocol read (the kernel buffer is small)
            await asyncio.sleep(0.1)
            _, peak = tracemalloc.get_traced_memory()
            assert len(src) <= 16
            kept = [await anext(src) for _ in range(len(src))]
    finally:
        tracemalloc.stop()
    st = src.stats
    assert st.datagrams > 16 * 4 and st.dropped_batches == st.datagrams - len(kept)
    assert st.events == st.dropped + sum(len(k) for k in kept)
    assert peak < 3_000_000  # bounded: far below the flood's 11.5 MB
    assert all((k["x"] == ev["x"]).all() for k in kept)


def test_udp_malformed_datagram_counted():
    """A datagram that is not a whole number of 32-bit words is dropped and counted, not decoded."""

    async def go():
        async with UdpEventSource("127.0.0.1", 0) as src:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"\x01\x02\x03", ("127.0.0.1", src.port))
                s.sendto(encode_spif(make_events([0], [1], [2], [1])), ("127.0.0.1", src.port))
            got = await asyncio.wait_for(anext(src), 2)
            return src.stats, got

    st, got = asyncio.run(go())
    assert st.malformed == 1 and len(got) == 1 and got["x"][0] == 1


def test_quiet_udp_camera_still_closes_its_bins(tmp_path):
    """A live source that goes quiet: after idle_s without datagrams the watermark moves on with the wall clock,
    so the binner closes the open bin (and the empty ones after it) instead of waiting for the next event; events
    that come back behind that watermark are late, dropped and counted."""
    from sources.live import udp_batches
    from sources.live.udp import FAERY_DTYPE

    spec = _spec(tmp_path)  # 10 ms bins

    def faery(ev):  # faery's UDP records keep the camera's own timestamps (SPIF ones get the arrival time)
        r = np.zeros(len(ev), FAERY_DTYPE)
        r["t"], r["x"], r["y"], r["on"] = ev["t"], ev["x"], ev["y"], ev["p"]
        return r.tobytes()

    async def go():
        b = StreamBinner(spec)
        closed, batches = [], []
        async with UdpEventSource("127.0.0.1", 0, "faery") as src:
            it = udp_batches(src, idle_s=0.02)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(faery(make_events([1_000, 4_000], [1, 2], [2, 3], [1, 0])), ("127.0.0.1", src.port))
                async with asyncio.timeout(5):
                    while len(closed) < 3:  # no more datagrams: only idle watermarks can close bins
                        batch = await anext(it)
                        batches.append(batch)
                        closed += b.feed(batch.events, batch.upto_us)
                s.sendto(faery(make_events([5_000], [1], [2], [1])), ("127.0.0.1", src.port))
                async with asyncio.timeout(5):
                    batch = await anext(it)
                    while not len(batch.events):
                        batch = await anext(it)
                b.feed(batch.events, batch.upto_us)
            await it.aclose()
        return closed, batches, b

    closed, batches, b = asyncio.run(go())
    assert len(batches[0].events) == 2 and all(not len(x.events) for x in batches[1:])
    ups = [x.upto_us for x in batches]
    assert ups == sorted(ups) and ups[-1] > 1_000 + 20_000
    assert [c.index for c in closed[:3]] == [0, 1, 2] and closed[0].vector.sum() > 0
    assert b._b.dropped_late == 1  # the event at 5 ms came back after its bin had closed


def test_control_payload_checked():
    """in/control messages must name a known command with valid arguments."""
    ok = decode("in/control", ControlIn(cmd="speed", speed=2.0).to_json())
    assert isinstance(ok, ControlIn) and ok.arg() == 2.0
    tui_style = decode("in/control", b'{"v":1,"seq":3,"t_wall":1.0,"cmd":"recording","value":"demo.npy"}')
    assert isinstance(tui_style, ControlIn) and tui_style.arg() == "demo.npy"
    for bad in (ControlIn(cmd="explode"), ControlIn(cmd="speed", speed=-1), ControlIn(cmd="speed", value="x"),
                ControlIn(cmd="recording")):
        with pytest.raises(PayloadError):
            decode("in/control", bad.to_json())


def test_replay_start_end_offsets_and_window_watermarks(tmp_path):
    """--start-s/--end-s cut the recording by event time; each window's watermark is its end, on the bin grid."""
    path = recording(tmp_path / "r.npy", n=3000, duration_us=600_000, t0=5_000_000)
    ev = np.load(path)
    t_first = int(ev["t"][0])

    async def go():
        return [b async for b in replay(path, speed=0, start_s=0.1, end_s=0.35, chunk_us=1000)]

    out = asyncio.run(go())
    got = np.concatenate([b.events for b in out])
    rel = ev["t"] - t_first
    want = ev[(rel >= 100_000) & (rel < 350_000)]
    np.testing.assert_array_equal(got, want)
    for b in out:
        assert (b.upto_us - (t_first + 100_000)) % 1000 == 0 and b.events["t"][-1] < b.upto_us
        assert b.upto_us - 1000 <= b.events["t"][0]


async def test_synthetic_camera_paced_with_watermarks():
    """The synthetic live camera yields DVS128 events in real time, each window closed by its watermark."""
    pytest.importorskip("sources.gesture_data")
    from sources.live import synthetic_batches

    loop = asyncio.get_running_loop()
    t0, out = loop.time(), []
    async with contextlib.aclosing(synthetic_batches(segment_s=0.5)) as it:
        async for b in it:
            out.append(b)
            if b.upto_us >= 100_000:
                break
    assert loop.time() - t0 >= 0.095  # 100 ms of events take 100 ms
    assert [b.upto_us for b in out] == list(range(1000, 100_001, 1000))
    ev = np.concatenate([b.events for b in out])
    assert len(ev) > 0 and ev["x"].max() < 128 and ev["y"].max() < 128 and np.all(np.diff(ev["t"]) >= 0)


async def test_dv_network_stream_source():
    """Events served by dv-processing's NetworkWriter arrive through the dv:// source unchanged and in order."""
    dv = pytest.importorskip("dv_processing")
    from sources.live import dv_batches
    from stream.broker import free_port

    port = free_port()
    writer = dv.io.NetworkWriter("127.0.0.1", port, dv.io.Stream.EventStream(0, "events", "TEST", (128, 96)))
    got: list[np.ndarray] = []
    async with contextlib.aclosing(dv_batches("127.0.0.1", port)) as it:
        first = asyncio.ensure_future(anext(it))  # starts the generator: it connects
        async with asyncio.timeout(10):
            while writer.getClientCount() == 0:
                await asyncio.sleep(0.02)
            for k in range(3):
                st = dv.EventStore()
                for i in range(50):
                    st.push_back(10_000 * k + 100 * i, i, (i * 3) % 96, i % 2 == 0)
                writer.writeEvents(st)
            b = await first
            while True:
                got.append(b.events)
                assert b.upto_us == int(b.events["t"][-1]) + 1
                if sum(len(g) for g in got) >= 150:
                    break
                b = await anext(it)
    async with asyncio.timeout(10):  # the writer must see the client leave before it may be destroyed
        while writer.getClientCount():
            await asyncio.sleep(0.02)
    del writer
    ev = np.concatenate(got)
    assert len(ev) == 150 and np.all(np.diff(ev["t"]) > 0)
    assert list(ev["x"][:50]) == list(range(50)) and list(ev["p"][:4]) == [1, 0, 1, 0]


def test_replay_real_aedat4_yields_every_event_in_order(shared_aedat4):
    """Replaying the real DAVIS346 AEDAT4 recording as fast as possible delivers every event, time-ordered."""
    files = pytest.importorskip("sources.files")
    ref, sensor = files.read_events(shared_aedat4)

    async def go():
        return [b async for b in replay(shared_aedat4, speed=0, chunk_us=5000)]

    out = asyncio.run(go())
    ev = np.concatenate([b.events for b in out])
    assert len(ev) == len(ref) and np.all(np.diff(ev["t"]) >= 0)
    np.testing.assert_array_equal(ev["x"], ref["x"])
    assert all(b.events["t"][-1] < b.upto_us for b in out) and (sensor.width, sensor.height) == (346, 260)


@pytest.mark.parametrize("backend", ["torch", "node"])
def test_windowed_gesture_readout_is_the_mean_of_the_last_steps(tmp_path, backend):
    """The sliding-window readout equals softmax of the mean per-step logits of the last W steps, on both backends."""
    from s2node.runtime import Node
    from s2node.step import load_step_model, softmax

    path = gesture_model_file(tmp_path)
    ref, win = Node.load(path), load_step_model(path, backend, window_s=0.03)  # 3 bins of 10 ms
    full = load_step_model(path, backend, window_s=0)  # the model's own mean since the start
    rng = np.random.default_rng(0)
    steps = []
    for _ in range(8):
        x = (rng.random(win.config["layers"][0]["input_size"]) < 0.2).astype(np.float32)
        steps.append(ref.step(x).step_logits.astype(np.float64))
        assert np.allclose(win.step(x).probs, softmax(np.mean(steps[-3:], axis=0)), atol=1e-5)
        whole = full.step(x)
    assert np.allclose(whole.probs, softmax(np.mean(steps, axis=0)), atol=1e-5)  # pooled since start, as before
    win.reset()
    ref.reset()
    x = np.ones(win.config["layers"][0]["input_size"], np.float32)
    assert np.allclose(win.step(x).probs, softmax(ref.step(x).step_logits.astype(np.float64)), atol=1e-5)


def test_the_served_window_is_the_model_files(tmp_path):
    """stream_window_s: a window asked for wins (0 too); else the model file's readout.window_s; else 2 s. A
    readout.window_s that is not a number of seconds, 0 or more, is refused naming it."""
    import json

    from s2node.errors import ModelFileError
    from s2node.step import stream_window_s

    ro = {"source": "trace", "trace_alpha": 0.8, "pool": "mean"}
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old = gesture_model_file(tmp_path / "old", readout=ro)
    new = gesture_model_file(tmp_path / "new", readout={**ro, "window_s": 0.5})
    assert stream_window_s(old, None) == 2.0 and stream_window_s(new, None) == 0.5
    assert stream_window_s(new, 1.0) == 1.0 and stream_window_s(new, 0) == 0
    cfg = json.loads(new.with_suffix(".json").read_text())
    for bad in (-1, "0.5", True):
        new.with_suffix(".json").write_text(json.dumps({**cfg, "readout": {**ro, "window_s": bad}}))
        with pytest.raises(ModelFileError, match=r"readout\.window_s"):
            stream_window_s(new, None)


@pytest.mark.parametrize("backend", ["torch", "node"])
def test_input_delivered_early_gives_the_same_predictions(tmp_path, backend):
    """Both backends: delivering parts of a bin before its step gives the predictions of stepping the whole bin."""
    from s2node.step import load_step_model

    path = gesture_model_file(tmp_path)
    whole, early = load_step_model(path, backend), load_step_model(path, backend)
    rng = np.random.default_rng(1)
    n_in = whole.config["layers"][0]["input_size"]
    for _ in range(6):
        x = ((rng.random(n_in) < 0.3) * rng.integers(1, 4, n_in)).astype(np.float32)
        a = (x * (rng.random(n_in) < 0.5)).astype(np.float32)
        early.deliver(a)
        np.testing.assert_allclose(early.step(x - a).probs, whole.step(x).probs, atol=1e-6)


async def test_send_first_holds_the_pump_for_its_turns_and_reopens():
    """After a publish the gate keeps the source's pump back for SEND_TURNS loop turns (the link writes first),
    then lets it through; an open gate costs the pump no turn of the loop."""
    from stream.pipeline import SendFirst

    gate, turns_seen = SendFirst(turns=4), []
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    t = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    hold = asyncio.create_task(gate.hold())
    await asyncio.sleep(0)  # the hold starts and closes the gate
    start = ticks
    await gate.wait()
    turns_seen.append(ticks - start)
    await hold
    start = ticks
    await gate.wait()  # open: returns at once
    turns_seen.append(ticks - start)
    t.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await t
    assert turns_seen[0] >= 3 and turns_seen[1] == 0
