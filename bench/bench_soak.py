"""Soak: the demo pipeline and the UI under a mixed stream of valid and hostile MQTT messages.

    python bench/bench_soak.py                 # 2 minutes
    python bench/bench_soak.py --minutes 10    # the long run

One process holds the embedded broker, the demo's local pipeline (the demo recording looping into the gesture
model, the character LM answering in/text) and the UI (headless, Textual's run_test). A sender publishes, on a
fixed schedule, valid typed text and playback commands mixed with hostile messages: the decode reproducers
(huge numbers, deep nesting, lone surrogates), random bytes, paths and absurd speeds on in/control, malformed and
markup-laden payloads on the topics the UI follows, and statuses of other nodes with bad node ids.

It checks and prints as one JSON object: that nothing crashed; the resident memory growth after the first
minute (or the first sixth of a shorter run; the bound is 10 %); and that the counts agree with what was sent:
hostile in/ messages == the pipeline's malformed_in, hostile UI messages == the UI's malformed count, valid texts
== text predictions + texts dropped by the inbox. Side by side: gesture predictions per second in the first and
the last minute, and their ratio (a wedge or a leak would show as a falling rate).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)  # the demo's default model and recording paths are relative to the checkout

NODE = "soak"
RATE_HZ = 40.0  # messages per second from the sender, all kinds together

HOSTILE_IN = [  # each is malformed on in/text and on in/control alike
    b'{"v":1,"seq":0,"t_wall":1' + b"0" * 400 + b',"text":"x","cmd":"pause"}',
    b'{"v":1,"seq":0,"t_wall":1,"text":"x","cmd":"pause","value":' + b"7" * 4301 + b"}",
    b'{"v":1,"seq":0,"t_wall":1,"text":"\\ud800","cmd":"pause","value":"\\ud800"}',
    b'{"v":' + b"[" * 3000 + b"}",
    b'{"v":1,"seq":' + b"9" * 4299 + b',"t_wall":1,"text":"x","cmd":"pause"}',
    b'{"v":1,"seq":0,"t_wall":1,"text":5,"cmd":"speed","speed":1e-9}',
    b"\xff\xfe\x00{",
]
HOSTILE_CONTROL = [  # malformed on in/control only (in/text would read them as text: not sent there)
    b'{"v":1,"seq":1,"t_wall":1,"cmd":"recording","value":"/etc/passwd"}',
    b'{"v":1,"seq":1,"t_wall":1,"cmd":"recording","value":"../../models/gesture-egru.json"}',
    b'{"v":1,"seq":1,"t_wall":1,"cmd":"speed","speed":1e308}',
]


def _hostile_ui(i: int) -> tuple[str, bytes]:
    """(kind, payload) that the UI must count as malformed, on a topic it follows."""
    from tui import samples

    k = i % 5
    if k == 0:
        return "pred/gesture", json.dumps(json.loads(samples.gesture(i).to_json()) | {"seq": 10**30}).encode()
    if k == 1:
        return "stats", b'{"v":1,"seq":0,"t_wall":1' + b"0" * 400 + b"}"
    if k == 2:
        return "frame", json.dumps(json.loads(samples.frame(i).to_json()) | {"width": -1, "height": -1}).encode()
    if k == 3:
        return "pred/text", b"[" * 5000
    return "pred/gesture", bytes(random.Random(i).getrandbits(8) for _ in range(64))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _sender(url: str, seconds: float, sent: dict[str, int]) -> None:
    import aiomqtt

    from stream.schema import ControlIn, TextIn, topic

    host, port = url.removeprefix("mqtt://").rsplit(":", 1)
    async with aiomqtt.Client(host, int(port)) as c:
        loop = asyncio.get_running_loop()
        t0, i = loop.time(), 0
        while loop.time() - t0 < seconds:
            k = i % 8
            if k in (0, 4):  # valid text, a few words
                await c.publish(topic(NODE, "in/text"), TextIn(text=f"to be {i} ").to_json(), qos=1)
                sent["text_valid"] += 1
            elif k == 1:
                raw = HOSTILE_IN[(i // 8) % len(HOSTILE_IN)]
                await c.publish(topic(NODE, "in/text"), raw, qos=1)
                await c.publish(topic(NODE, "in/control"), raw, qos=1)
                sent["in_hostile"] += 2
            elif k == 2:
                await c.publish(topic(NODE, "in/control"), HOSTILE_CONTROL[(i // 8) % len(HOSTILE_CONTROL)], qos=1)
                sent["in_hostile"] += 1
            elif k == 3:
                kind, raw = _hostile_ui(i // 8)
                await c.publish(topic(NODE, kind), raw, qos=1)
                sent["ui_hostile"] += 1
            elif k == 5:  # a status of another node whose payload names a wildcard: malformed for the UI
                await c.publish(topic(f"other{i % 3}", "status"), b'{"v":1,"seq":0,"t_wall":1,"node":"#"}', qos=1)
                sent["ui_hostile"] += 1
            elif k == 6:
                speed = (1.0, 2.0)[(i // 8) % 2]
                await c.publish(topic(NODE, "in/control"), ControlIn(cmd="speed", speed=speed).to_json(), qos=1)
                sent["control_valid"] += 1
            i += 1
            await asyncio.sleep(max(0.0, t0 + i / RATE_HZ - loop.time()))


async def _listener(url: str, got: dict[str, list]) -> None:
    import aiomqtt

    from stream.schema import PayloadError, decode, topic

    host, port = url.removeprefix("mqtt://").rsplit(":", 1)
    async with aiomqtt.Client(host, int(port)) as c:
        for kind in ("pred/text", "pred/gesture", "stats"):
            await c.subscribe(topic(NODE, kind), qos=1)
        async for m in c.messages:
            kind = str(m.topic).split("/", 3)[3]
            try:  # the sender's hostile messages on these topics are not the pipeline's
                p = decode(kind, bytes(m.payload))
            except PayloadError:
                continue
            if kind == "stats":
                got["stats"].append(json.loads(p.to_json()))
            else:
                got[kind].append(time.monotonic())


async def soak(minutes: float) -> dict:
    from stream.defaults import DEFAULT_RECORDING
    from stream.local import local_demo
    from tui.app import S2App

    seconds = minutes * 60
    settle_s = min(60.0, seconds / 6)
    sent = {"text_valid": 0, "in_hostile": 0, "ui_hostile": 0, "control_valid": 0}
    got: dict[str, list] = {"pred/text": [], "pred/gesture": [], "stats": []}
    rss: list[tuple[float, int]] = []
    async with local_demo(NODE, [DEFAULT_RECORDING], 1.0) as (url, pipeline):
        app = S2App(url, NODE)
        async with app.run_test(size=(120, 36)) as pilot:
            listener = asyncio.create_task(_listener(url, got))
            await asyncio.sleep(3.0)  # models loaded, everyone subscribed
            t0 = time.monotonic()
            sender = asyncio.create_task(_sender(url, seconds, sent))
            while not sender.done():
                rss.append((time.monotonic() - t0, _rss_bytes()))
                await pilot.pause(2.0)
                if pipeline.done():
                    break
            crashed_pipeline = pipeline.done()
            if not sender.done():
                sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            await pilot.pause(4.0)  # the last messages and one more stats round
            ui_malformed, ui_running = app.state.malformed, app.is_running
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
    text_stats = [s for s in got["stats"] if s.get("model") == "shakespeare-egru"] or got["stats"]
    last = text_stats[-1] if text_stats else {}
    base = next((r for t, r in rss if t >= settle_s), rss[0][1] if rss else 0)
    growth = (rss[-1][1] - base) / base if base else float("nan")
    g = got["pred/gesture"]

    def rate(t_from: float, t_to: float) -> float:
        return sum(t_from <= t - t0 < t_to for t in g) / max(1e-9, t_to - t_from)

    window = min(60.0, seconds / 4)
    first, last_rate = rate(0, window), rate(seconds - window, seconds)
    counts = {
        "in_hostile_sent": sent["in_hostile"], "malformed_in": last.get("malformed_in"),
        "ui_hostile_sent": sent["ui_hostile"], "ui_malformed": ui_malformed,
        "text_sent": sent["text_valid"], "text_predictions": len(got["pred/text"]),
        "text_dropped": last.get("events_dropped"),
    }
    consistent = (counts["malformed_in"] == counts["in_hostile_sent"]
                  and counts["ui_malformed"] == counts["ui_hostile_sent"]
                  and counts["text_predictions"] + (counts["text_dropped"] or 0) == counts["text_sent"])
    return {
        "bench": "soak", "minutes": minutes, "rate_hz": RATE_HZ, "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "crashed": crashed_pipeline or not ui_running,
        "rss_mib_after_settle": round(base / 2**20, 1), "rss_mib_end": round(rss[-1][1] / 2**20, 1) if rss else None,
        "rss_growth_after_settle": round(growth, 4), "rss_growth_ok": growth < 0.10,
        "counts": counts, "counts_consistent": consistent,
        "gesture_preds_per_s": {"first": round(first, 2), "last": round(last_rate, 2),
                                "last_over_first": round(last_rate / first, 3) if first else None},
        "control_valid_sent": sent["control_valid"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=2.0, help="how long the mixed stream runs (default 2)")
    args = ap.parse_args()
    from stream.process import tune_for_streaming

    tune_for_streaming()
    out = asyncio.run(soak(args.minutes))
    print(json.dumps(out))
    return 0 if not out["crashed"] and out["rss_growth_ok"] and out["counts_consistent"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
