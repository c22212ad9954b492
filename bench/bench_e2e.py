"""End-to-end latency: the last event of a bin leaves the replay -> its prediction reaches an MQTT subscriber.

One run, side by side: replay at 100 k and 1 M events/s (speed 1, real time) of uniform random DVS128 events
through the gesture model (models/gesture-egru if present, else a random EGRU of the same input shape,
labelled as such) on the default backend (the chip emulator), a mosquitto on loopback, QoS 1, a subscriber in
its own process (mosquitto_sub where installed); p50/p99 over `--predictions` predictions (default 2,000: 41 s
of recording per rate), then the highest of a rate ladder sustained without drops (predictions keep up with
event time). Beside them, `mqtt_only`: the same link and subscriber with no pipeline (as many messages, one
every 20 ms), the floor that the broker and clients alone set; `p99_vs_floor` is the ratio of the p99s. The floor
and the rates take turns in `--rounds` rounds (default 4, the order turned each round), their samples pooled: on
a shared machine each meets as much of the other processes' load, which a floor timed once before the rates
does not.
`stages` says where each prediction's time went (stream.stagetimes: queue and binning, hand-over to the node,
the step, hand-back, payload, MQTT to the socket write and from it to the subscriber), the p50/p99 of each and
its share of the slowest 2 %, and `gc` the garbage collector's passes meanwhile; the floor splits its MQTT time
the same way. `--thread` adds each rate with the node always in the worker thread, `--nagle` the floor and each
rate with Nagle's algorithm on in the broker and the link (the "nagle" section).
Target: p99 <= 5 ms at 100 k events/s. `python bench/bench_e2e.py [--predictions N] [--model M] [--thread]`.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import gc
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def stand_in_model(d: Path) -> Path:
    """A random 2-layer EGRU on DVS128 input (2·32·32 features, 20 ms bins), 11 classes."""
    import torch

    from s2node import modelfile
    from s2node.models import GestureModel

    torch.manual_seed(0)
    ro = {"source": "trace", "trace_alpha": 0.9, "pool": "mean"}
    m = GestureModel("egru", 2048, [128, 128], 11, readout=ro)
    cfg = {"task": "gesture", "arch": "egru", "layers": m.rnn.layer_configs(), "readout": ro,
           "classes": [f"c{i}" for i in range(11)],
           "input": {"sensor": [128, 128], "downsample": 4, "bin_us": 20_000, "layout": "p,y,x", "scale": 0.25}}
    return modelfile.save(d / "stand-in", cfg, m.to_tensors()).with_suffix("")


def events_file(d: Path, rate: float, seconds: float) -> Path:
    """Uniform random DVS128 events at `rate` per second for `seconds`, written one second at a time (a 40 s file
    at 1 M ev/s is 0.5 GB: never whole in memory)."""
    from sources.events import EVENT_DTYPE, make_events

    rng = np.random.default_rng(1)
    p = d / f"ev-{int(rate)}.npy"
    n_s = int(rate)
    whole = int(np.ceil(seconds))
    out = np.lib.format.open_memmap(p, mode="w+", dtype=EVENT_DTYPE, shape=(n_s * whole,))
    for s in range(whole):
        t = np.sort(rng.integers(s * 1_000_000, (s + 1) * 1_000_000, n_s))
        out[s * n_s:(s + 1) * n_s] = make_events(t, rng.integers(0, 128, n_s), rng.integers(0, 128, n_s),
                                                 rng.integers(0, 2, n_s))
    out.flush()
    del out
    return p


@contextlib.asynccontextmanager
async def subscribed(broker, t: str, subscriber: str):
    """A subscriber in its own process, like a user's client (timing it inside the pipeline's event loop would
    charge the loop's work to the latency); yields {t_event_us: wall time it arrived}. mosquitto_sub (the
    reference C client, stamping each message on arrival with %U) where installed, else aiomqtt."""
    if subscriber == "mosquitto_sub":
        cmd = ["stdbuf", "-oL", "mosquitto_sub", "-d", "-h", broker.host, "-p", str(broker.port), "-q", "1",
               "-t", t, "-F", "%U %p"]
    else:
        cmd = [sys.executable, __file__, "--subscribe", broker.host, str(broker.port), t]
    sub = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
    received: dict[int, float] = {}
    ready = asyncio.Event()

    async def read():
        assert sub.stdout is not None
        async for line in sub.stdout:
            if line.startswith(b"ready") or b"SUBACK" in line:
                ready.set()
            elif line[:1].isdigit():  # "wall_time payload" (mosquitto_sub) or "t_event_us wall_time" (aiomqtt)
                a, b = line.split(maxsplit=1)
                if subscriber == "mosquitto_sub":
                    received[json.loads(b)["t_event_us"]] = float(a)
                else:
                    received[int(a)] = float(b)

    reader = asyncio.create_task(read())
    try:
        await asyncio.wait_for(ready.wait(), 10)
        yield received
    finally:
        with contextlib.suppress(ProcessLookupError):
            sub.terminate()
        await sub.wait()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


def seconds_for(predictions: int, bin_s: float = 0.02) -> float:
    """A recording long enough for that many bins of the gesture model's 20 ms."""
    return (predictions + 1) * bin_s


LADDER_PREDICTIONS = 200  # the 2 M and 4 M ev/s runs only ask whether the node keeps up


async def measure_mqtt(broker, subscriber: str, n: int = 500, every_s: float = 0.02, nodelay: bool = True) -> dict:
    """The floor under the pipeline's latency, in the same run: a prediction-sized message published through
    the same MqttLink every bin (no events, no node) -> the same subscriber. Raw: pooled by `floor_summary`."""
    from stream.mqtt import MqttLink
    from stream.schema import GesturePrediction, topic

    node = f"floor{int(time.time() * 1000) % 100000}"
    link = MqttLink(broker.url, node, nodelay=nodelay)
    run = asyncio.create_task(link.run())
    sent: dict[int, float] = {}
    try:
        async with subscribed(broker, topic(node, "pred/gesture"), subscriber) as received:
            await link.wait_connected(10)
            classes = [f"c{i}" for i in range(11)]
            with SocketWrites() as writes:
                for i in range(n):
                    await asyncio.sleep(every_s)
                    sent[i] = time.time()
                    link.publish(GesturePrediction(t_event_us=i, label="c0", index=0, probs=[1 / 11] * 11,
                                                   classes=classes, step=i))
                await link.drained(10)
            deadline = time.monotonic() + 5
            while len(received) < n and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
    split = [i for i in received if i in writes.at]
    return {"messages": n, "received": len(received), "lat_ms": [(received[i] - sent[i]) * 1e3 for i in received],
            "to_socket_ms": [(writes.at[i] - sent[i]) * 1e3 for i in split],
            "from_socket_ms": [(received[i] - writes.at[i]) * 1e3 for i in split]}


def floor_summary(raws: list[dict]) -> dict:
    """The floor's rounds (`measure_mqtt`) pooled: p50/p99/max over every message."""
    lat_ms = np.array([x for r in raws for x in r["lat_ms"]])
    out = {"messages": sum(r["messages"] for r in raws), "received": len(lat_ms), **_percentiles(lat_ms)}
    for key, name in (("to_socket_ms", "mqtt_to_socket"), ("from_socket_ms", "mqtt_broker_and_subscriber")):
        v = np.array([x for r in raws for x in r[key]])
        if len(v):
            out[name] = {"ms_p50": round(float(np.percentile(v, 50)), 3),
                         "ms_p99": round(float(np.percentile(v, 99)), 3)}
    return out


def _percentiles(lat_ms: np.ndarray) -> dict:
    if not len(lat_ms):
        return {"latency_ms_p50": None, "latency_ms_p99": None, "latency_ms_max": None}
    return {"latency_ms_p50": round(float(np.percentile(lat_ms, 50)), 3),
            "latency_ms_p99": round(float(np.percentile(lat_ms, 99)), 3),
            "latency_ms_max": round(float(lat_ms.max()), 3)}


class GcPauses:
    """Wall-clock spans of the garbage collector's passes in this process (gc.callbacks), by generation."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float, int]] = []  # (start, end, generation)
        self._t0 = 0.0

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._cb)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self._cb)

    def _cb(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.time()
        else:
            self.spans.append((self._t0, time.time(), int(info["generation"])))


def gc_summary(spans: list[tuple[float, float, int]]) -> dict:
    """Passes per generation and their pauses, of `GcPauses.spans` (of one round or several)."""
    ms = [(b - a) * 1e3 for a, b, _ in spans]
    return {"passes": [sum(g == k for *_, g in spans) for k in range(3)],
            "pause_ms_max": round(max(ms), 3) if ms else 0.0, "pause_ms_total": round(sum(ms), 3)}


class SocketWrites:
    """When each prediction left this process: the wall time of the first socket write of a packet whose payload
    carries `"t_event_us": N`, by N (paho's `_sock_send` wrapped while in use; bench-only instrumentation). It
    splits the MQTT leg into the way to the socket (the link's task hops, aiomqtt, paho) and the way from it
    (broker and subscriber, other processes)."""

    PATTERN = re.compile(rb'"t_event_us":\s*(\d+)')

    def __init__(self) -> None:
        self.at: dict[int, float] = {}

    def __enter__(self) -> SocketWrites:
        import paho.mqtt.client as paho

        self._paho, self._orig = paho.Client, paho.Client._sock_send
        orig, at, pattern = self._orig, self.at, self.PATTERN

        def sock_send(client, buf):
            n = orig(client, buf)
            m = pattern.search(bytes(buf[:2048]))
            if m is not None:
                at.setdefault(int(m.group(1)), time.time())
            return n

        self._paho._sock_send = sock_send
        return self

    def __exit__(self, *exc) -> None:
        self._paho._sock_send = self._orig


SEGMENTS = {  # name: (from, to) in StageTimes fields, or "written" (SocketWrites) and "receive" (the arrival)
    "queue_and_bin": ("release", "binned"),
    "hand_over": ("binned", "step_start"),
    "node_step": ("step_start", "step_end"),
    "hand_back": ("step_end", "resume"),
    "payload": ("resume", "publish"),
    "mqtt_to_socket": ("publish", "written"),
    "mqtt_broker_and_subscriber": ("written", "receive"),
}


def stage_breakdown(recs: list, gc_spans: list[tuple[float, float, int]]) -> dict:
    """Per segment p50 and p99 (ms) over the predictions recs [(StageTimes, arrival, socket write)], and each segment's
    share of the latency of the slowest 2 %; which of those overlapped a garbage-collector pass."""
    if not recs:
        return {}
    def at(r, t: float, w: float, field: str) -> float:
        return t if field == "receive" else w if field == "written" else getattr(r, field)

    seg = {name: np.array([(at(r, t, w, b) - at(r, t, w, a)) * 1e3 for r, t, w in recs])
           for name, (a, b) in SEGMENTS.items()}
    total = sum(seg.values())
    slow = total >= np.percentile(total, 98)
    out: dict = {"samples": len(recs), "slowest": int(slow.sum()),
                 "total_ms_p50": round(float(np.percentile(total, 50)), 3),
                 "total_ms_p99": round(float(np.percentile(total, 99)), 3)}
    for name, v in seg.items():
        out[name] = {"ms_p50": round(float(np.percentile(v, 50)), 3), "ms_p99": round(float(np.percentile(v, 99)), 3),
                     "share_of_slowest": round(float(v[slow].sum() / total[slow].sum()), 3)}
    starts = np.array([a for a, _, _ in gc_spans])
    ends = np.array([b for _, b, _ in gc_spans])
    hit = [bool(len(starts) and np.any((starts < t) & (ends > r.release))) for (r, t, _), s in
           zip(recs, slow, strict=True) if s]
    out["slowest_during_gc"] = int(sum(hit))
    return out


async def measure(broker, model_path: Path, rec: Path, subscriber: str, predictions: int, speed: float = 1.0,
                  node_thread: bool = False, nodelay: bool = True) -> dict:
    """The pipeline on a replay of `rec` (long enough for `predictions` bins). Raw: pooled by `summary`."""
    from s2node.step import load_step_model
    from stream.binner import make_binner
    from stream.mqtt import MqttLink
    from stream.pipeline import INLINE_STEP_MAX_S, PipelineCounters, run_gesture_pipeline
    from stream.replay import replay
    from stream.schema import topic
    from stream.stagetimes import StageLog

    model = load_step_model(model_path)
    binner = make_binner(model.config)
    bin_us = int(model.config["input"]["bin_us"])
    bin_s = bin_us / 1e6
    node = f"bench{int(time.time() * 1000) % 100000}"
    # each batch's watermark and the wall time it left the replay, in arrays of plain numbers: a list of tuples
    # (1,000 a second at 1 ms windows) would set off the garbage collector in the process it times
    released_up, released_wall = array.array("q"), array.array("d")

    async def source():
        async with contextlib.aclosing(replay(rec, speed=speed, chunk_us=binner.spec.release_chunk_us)) as it:
            async for b in it:
                released_up.append(b.upto_us)
                released_wall.append(b.t_wall)
                yield b

    link = MqttLink(broker.url, node, nodelay=nodelay)
    run = asyncio.create_task(link.run())
    c = PipelineCounters(stages=StageLog(predictions + 64))
    try:
        async with subscribed(broker, topic(node, "pred/gesture"), subscriber) as received:
            await link.wait_connected(10)
            t0 = time.perf_counter()
            with ThreadPoolExecutor(1) as ex, GcPauses() as gcp, SocketWrites() as writes:
                # node_thread: always in the worker thread (the placement before short steps moved to the loop)
                await run_gesture_pipeline(source(), model, binner, link, executor=ex, frames=False, counters=c,
                                           inline_max_s=-1.0 if node_thread else INLINE_STEP_MAX_S)
                wall = time.perf_counter() - t0
                await link.drained(10)  # the last predictions' writes stamped too
            deadline = time.monotonic() + 5
            while len(received) < c.predictions and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
    ups = np.frombuffer(released_up, np.int64)
    walls = np.frombuffer(released_wall, np.float64)
    lat = []
    for t_end, t_recv in received.items():
        i = int(np.searchsorted(ups, t_end))  # the batch whose watermark closed the bin held its last event
        if i < len(ups):
            lat.append(t_recv - walls[i])
    # how late the replay released each batch against its schedule (the first release anchors it): not part of
    # the latency above, which starts at the release
    late_ms = (walls - (walls[0] + (ups - ups[0]) / 1e6 / speed)) * 1e3 if len(ups) else np.zeros(1)
    rows = list(c.stages.rows) if c.stages else []
    return {
        "predictions": c.predictions, "received": len(received), "events": c.events_in,
        "lat_ms": [x * 1e3 for x in lat], "release_to_publish_ms": [x * 1e3 for x in c.latency_s],
        "node_step_ms": [x * 1e3 for x in model.counters.step_s], "replay_late_ms": late_ms.tolist(),
        "wall_s": wall, "recording_s": (ups[-1] - ups[0]) / 1e6 / speed if len(ups) > 1 else 0.0,
        # kept up: everything arrived and no backlog built (worst latency under 4 bins)
        "kept_up": bool(len(received) == c.predictions and len(lat) and max(lat) < 4 * bin_s),
        "backend": type(model).__name__, "gc_spans": gcp.spans,
        "recs": [(r, received[r.t_event_us], writes.at[r.t_event_us]) for r in rows
                 if r.t_event_us in received and r.t_event_us in writes.at],
    }


def summary(raws: list[dict]) -> dict:
    """A rate's rounds (`measure`) pooled: percentiles over every prediction of every round, counts summed."""
    def p(key: str, q: float) -> float:
        v = [x for r in raws for x in r[key]]
        return round(float(np.percentile(v, q)), 3) if v else None

    spans = [s for r in raws for s in r["gc_spans"]]
    return {
        "rounds": len(raws), "predictions": sum(r["predictions"] for r in raws),
        "received": sum(r["received"] for r in raws), "events": sum(r["events"] for r in raws),
        **_percentiles(np.array([x for r in raws for x in r["lat_ms"]])),
        "release_to_publish_ms_p50": p("release_to_publish_ms", 50),
        "release_to_publish_ms_p99": p("release_to_publish_ms", 99),
        "node_step_ms_p50": p("node_step_ms", 50), "replay_late_ms_p99": p("replay_late_ms", 99),
        "wall_s": round(sum(r["wall_s"] for r in raws), 3),
        "recording_s": round(sum(r["recording_s"] for r in raws), 3),
        "kept_up": all(r["kept_up"] for r in raws), "backend": raws[0]["backend"], "gc": gc_summary(spans),
        "stages": stage_breakdown([x for r in raws for x in r["recs"]], spans),
    }


def vs_floor(r: dict, floor: dict) -> dict:
    """A rate's result with `p99_vs_floor`, the ratio of its p99 to the floor's of the same run."""
    if r["latency_ms_p99"] is not None and floor["latency_ms_p99"]:
        # three decimals: at two, a ratio just over 2 would read as 2.0
        r["p99_vs_floor"] = round(r["latency_ms_p99"] / floor["latency_ms_p99"], 3)
    return r


async def main_async(args) -> dict:
    from stream.broker import MosquittoProcess

    out: dict = {"bench": "e2e", "target_p99_ms_at_100k": 5.0}
    # mosquitto_sub under stdbuf: its stdout to a pipe is block-buffered otherwise (the stamps are taken on arrival
    # either way; the buffering would only hide when it is subscribed)
    native = shutil.which("mosquitto_sub") and shutil.which("stdbuf")
    subscriber = "mosquitto_sub" if native and not args.aiomqtt_subscriber else "aiomqtt"
    out["subscriber"] = subscriber
    with tempfile.TemporaryDirectory() as d, MosquittoProcess() as broker:
        d = Path(d)
        mp = Path(args.model)
        if not (mp.with_name(mp.name + ".json")).is_file():
            mp = stand_in_model(d)
            out["model"] = "random stand-in EGRU 2048-128-128-11 (models/gesture-egru not found)"
        else:
            out["model"] = str(mp)
        out.update(await interleaved(broker, mp, d, subscriber, args.predictions, args.rounds, thread=args.thread))
        sustained = None
        for rate in (2_000_000, 4_000_000):
            if not args.ladder:
                break
            rec = events_file(d, rate, seconds_for(LADDER_PREDICTIONS))
            r = summary([await measure(broker, mp, rec, subscriber, LADDER_PREDICTIONS)])
            rec.unlink()
            out[f"rate_{rate // 1000}k"] = r
            if not r["kept_up"]:
                break
        for rate in (100_000, 1_000_000, 2_000_000, 4_000_000):
            r = out.get(f"rate_{rate // 1000}k")
            if r and r["kept_up"]:
                sustained = rate
        out["highest_rate_sustained_ev_per_s"] = sustained
    if args.nagle:
        out["nagle"] = await nagle_side(args, mp, subscriber)
    return out


async def nagle_side(args, mp: Path, subscriber: str) -> dict:
    """The floor and both rates again with Nagle's algorithm on, in the broker and the link (TCP_NODELAY unset, as
    mosquitto's and paho's defaults): what the no-delay default (stream/mqtt.py) changes, side by side."""
    from stream.broker import MosquittoProcess

    with tempfile.TemporaryDirectory() as d, MosquittoProcess(nodelay=False) as broker:
        out = await interleaved(broker, mp, Path(d), subscriber, args.predictions, args.rounds, nodelay=False)
    return {k: {f: v for f, v in r.items() if f != "stages"} for k, r in out.items()}


RATES = (100_000, 1_000_000)


async def interleaved(broker, mp: Path, d: Path, subscriber: str, predictions: int, rounds: int,
                      nodelay: bool = True, thread: bool = False) -> dict:
    """The floor and each rate, `predictions` each, timed in `rounds` alternating rounds (the order turned each
    round) so that each meets as much of the machine's other load: {"mqtt_only": floor, "rate_100k": ..., ...},
    each rate with its `p99_vs_floor`."""
    per_round = max(1, predictions // rounds)
    recs = {rate: events_file(d, rate, seconds_for(per_round)) for rate in RATES}
    kinds = ["floor", *RATES, *(("thread", rate) for rate in RATES if thread)]
    raws: dict = {k: [] for k in kinds}
    for i in range(rounds):
        for k in kinds[i % len(kinds):] + kinds[:i % len(kinds)]:
            if k == "floor":
                raws[k].append(await measure_mqtt(broker, subscriber, n=per_round, nodelay=nodelay))
            else:
                rate = k[1] if isinstance(k, tuple) else k
                raws[k].append(await measure(broker, mp, recs[rate], subscriber, per_round, nodelay=nodelay,
                                             node_thread=isinstance(k, tuple)))
    for rec in recs.values():
        rec.unlink()
    floor = floor_summary(raws["floor"])
    out: dict = {"mqtt_only": floor}
    for k in kinds[1:]:
        name = f"rate_{k[1] // 1000}k_node_thread" if isinstance(k, tuple) else f"rate_{k // 1000}k"
        out[name] = vs_floor(summary(raws[k]), floor)
    return out


async def subscribe(host: str, port: int, t: str) -> None:
    """The subscriber process: one line "t_event_us wall_time" per prediction, stamped on arrival."""
    import aiomqtt

    async with aiomqtt.Client(host, port) as c:
        await c.subscribe(t, qos=1)
        print("ready", flush=True)
        async for m in c.messages:
            now = time.time()
            print(json.loads(bytes(m.payload))["t_event_us"], repr(now), flush=True)


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--subscribe":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(subscribe(sys.argv[2], int(sys.argv[3]), sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--predictions", type=int, default=2000,
                    help="predictions (20 ms bins) timed per rate, and messages of the floor (default 2000)")
    ap.add_argument("--model", default=str(ROOT / "models" / "gesture-egru"))
    ap.add_argument("--aiomqtt-subscriber", action="store_true",
                    help="time with a Python aiomqtt subscriber even where mosquitto_sub is installed")
    ap.add_argument("--thread", action="store_true",
                    help="also run each rate with the node always in the worker thread (rate_*_node_thread)")
    ap.add_argument("--rounds", type=int, default=4,
                    help="alternating rounds over which the floor and each rate are timed (default 4)")
    ap.add_argument("--no-ladder", dest="ladder", action="store_false", help="skip the 2 M and 4 M ev/s runs")
    ap.add_argument("--nagle", action="store_true",
                    help="also run the floor and both rates with Nagle's algorithm on (the \"nagle\" section)")
    args = ap.parse_args()
    import aiomqtt
    import torch

    from stream.process import tune_for_streaming

    tune_for_streaming()  # as `s2 replay` does
    out = asyncio.run(main_async(args))
    out.update({"load_avg_1min": round(os.getloadavg()[0], 2),
                "cpu_count": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                "torch": torch.__version__, "aiomqtt": aiomqtt.__version__})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
