"""The UI under load: 50 gesture predictions/s (plus frames and stats) from another process over a real broker.

    python bench/bench_tui.py                      # 30 s per mode, coalesced vs per-message repaint (~70 s)
    python bench/bench_tui.py --seconds 600 --modes coalesced   # the 10-minute memory run

For each mode the app runs headless (Textual's run_test, 120x36: all the compositing, no terminal writes) and
we measure: messages received and lost, screen updates per second and the time between them, widget renders,
CPU seconds per second, event-loop lag (how late a 20 ms sleep wakes: what a key press would wait), and the
resident memory growth after the first minute (or the first sixth of a shorter run). A probe with no app
running first gives this machine's own loop lag (the floor under the per-mode figures). Prints one JSON object
with per-mode figures and per-message/coalesced ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tui import samples  # noqa: E402
from tui.app import S2App  # noqa: E402
from tui.widgets import EventsPane, GesturePane, NodePane, StatusLine  # noqa: E402

NODE = "bench"
FRAME_EVERY, STATS_EVERY, TEXT_EVERY = 5, 25, 10  # frames at 10/s, stats at 2/s, text answers at 5/s for 50/s


def _publisher(url: str, rate_hz: float, seconds: float) -> None:
    """Child process: publish at a fixed rate on an absolute schedule (no drift), then exit."""
    import aiomqtt

    from stream.schema import topic

    async def run() -> None:
        host, port = url.removeprefix("mqtt://").rsplit(":", 1)
        async with aiomqtt.Client(host, int(port)) as c:
            loop = asyncio.get_running_loop()
            t0, n = loop.time(), int(rate_hz * seconds)
            for i in range(n):
                await c.publish(topic(NODE, "pred/gesture"), samples.gesture(i, t_wall=time.time()).to_json())
                if i % FRAME_EVERY == 0:
                    await c.publish(topic(NODE, "frame"), samples.frame(i // FRAME_EVERY).to_json())
                if i % STATS_EVERY == 0:
                    await c.publish(topic(NODE, "stats"), samples.stats(i, seq=i // STATS_EVERY).to_json())
                if i % TEXT_EVERY == 0:
                    await c.publish(topic(NODE, "pred/text"), samples.text(i // TEXT_EVERY, f"step {i}").to_json())
                await asyncio.sleep(max(0.0, t0 + (i + 1) / rate_hz - loop.time()))

    asyncio.run(run())


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def run_mode(url: str, coalesce: bool, rate_hz: float, seconds: float) -> dict:
    app = S2App(url, NODE, coalesce=coalesce)
    frames: list[float] = []
    renders = [0]
    display = app._display  # count screen updates: in headless mode Textual composes them, then skips the write

    def counting_display(screen, renderable) -> None:
        if renderable is not None:
            frames.append(time.perf_counter())
        display(screen, renderable)

    app._display = counting_display  # type: ignore[method-assign]
    originals = {}
    for cls in (GesturePane, EventsPane, NodePane, StatusLine):
        originals[cls] = cls.render

        def counted(self, _f=cls.render):
            renders[0] += 1
            return _f(self)

        cls.render = counted  # type: ignore[method-assign]
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            while app.status_line.state != "connected":
                await pilot.pause(0.05)
            # the publisher is another process (multiprocessing's spawn cannot start under run_test's stdio)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--publish-to", url, "--rate", str(rate_hz), "--seconds", str(seconds),
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            lags: list[float] = []
            rss: list[tuple[float, int]] = []
            loop = asyncio.get_running_loop()
            t_start = loop.time()
            await asyncio.sleep(0.5)  # let the publisher start
            frames.clear()
            renders[0] = 0
            t_meas, cpu_meas = loop.time(), time.process_time()
            next_rss = t_meas
            while proc.returncode is None and loop.time() - t_start < seconds + 30:
                t = loop.time()
                await asyncio.sleep(0.02)
                lags.append(loop.time() - t - 0.02)
                if loop.time() >= next_rss:
                    rss.append((loop.time() - t_meas, _rss_bytes()))
                    next_rss += 1.0
            await pilot.pause(0.3)
            elapsed, cpu = loop.time() - t_meas, time.process_time() - cpu_meas
            await asyncio.wait_for(proc.wait(), 10)
            s = app.state
            gaps = [b - a for a, b in itertools.pairwise(frames)]
            warm_s = min(60.0, seconds / 6)  # growth is counted after the first minute (or sixth of a short run)
            first = [b for t, b in rss if t >= warm_s] or [rss[-1][1]]
            expected = int(rate_hz * seconds)
            return {
                "seconds": round(elapsed, 2),
                "gesture_predictions_sent": expected,
                "gesture_shown_last_step": s.gesture.step if s.gesture else None,
                "messages_received": s.received,
                "messages_dropped": s.dropped,
                "malformed": s.malformed,
                "screen_updates_per_s": round(len(frames) / elapsed, 2),
                "update_gap_ms_p50": round(_pct(gaps, 0.5) * 1e3, 2),
                "update_gap_ms_p99": round(_pct(gaps, 0.99) * 1e3, 2),
                "update_gap_ms_max": round(max(gaps, default=float("nan")) * 1e3, 2),
                "widget_renders_per_s": round(renders[0] / elapsed, 2),
                "cpu_s_per_s": round(cpu / elapsed, 3),
                "loop_lag_ms_p50": round(statistics.median(lags) * 1e3, 2) if lags else None,
                "loop_lag_ms_p99": round(_pct(lags, 0.99) * 1e3, 2),
                "rss_warmup_s": round(warm_s, 1),
                "rss_mb_after_warmup": round(first[0] / 2**20, 2),
                "rss_mb_end": round(rss[-1][1] / 2**20, 2),
                "rss_growth_pct_after_warmup": round((rss[-1][1] - first[0]) / first[0] * 100, 2),
                "rss_mb_by_tenth": [round(b / 2**20, 2) for t, b in rss[:: max(1, len(rss) // 10)]],
            }
    finally:
        for cls, f in originals.items():
            cls.render = f  # type: ignore[method-assign]


async def loop_lag_floor(seconds: float) -> dict:
    """The same 20 ms sleep probe with no app running: how late this machine wakes a loop anyway."""
    loop = asyncio.get_running_loop()
    lags = []
    t_end = loop.time() + seconds
    while loop.time() < t_end:
        t = loop.time()
        await asyncio.sleep(0.02)
        lags.append(loop.time() - t - 0.02)
    return {"seconds": seconds, "loop_lag_ms_p50": round(statistics.median(lags) * 1e3, 2),
            "loop_lag_ms_p99": round(_pct(lags, 0.99) * 1e3, 2)}


async def main_async(a: argparse.Namespace) -> dict:
    from stream.broker import embedded_broker

    results = {}
    floor = await loop_lag_floor(min(a.seconds, 10.0))
    async with embedded_broker() as url:
        for mode in a.modes:
            results[mode] = await run_mode(url, mode == "coalesced", a.rate, a.seconds)
    out: dict = {
        "bench": "tui",
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": {m: _version(m) for m in ("textual", "aiomqtt", "rich")},
        "rate_gesture_hz": a.rate,
        "extra_per_s": {"frame": a.rate / FRAME_EVERY, "stats": a.rate / STATS_EVERY, "pred/text": a.rate / TEXT_EVERY},
        "terminal": "120x36 headless",
        "load_average_1min": round(os.getloadavg()[0], 2),
        "no_app_baseline": floor,
        "modes": results,
    }
    if {"coalesced", "per_message"} <= results.keys():
        c, p = results["coalesced"], results["per_message"]
        out["ratios_per_message_over_coalesced"] = {
            k: round(p[k] / c[k], 2) if c[k] else None
            for k in ("screen_updates_per_s", "widget_renders_per_s", "cpu_s_per_s", "loop_lag_ms_p99")
        }
    return out


def _version(mod: str) -> str:
    from importlib.metadata import version

    return version(mod)


def main() -> None:
    p = argparse.ArgumentParser(description="UI load benchmark (see the module docstring)")
    p.add_argument("--seconds", type=float, default=30.0, help="publishing time per mode (default 30)")
    p.add_argument("--rate", type=float, default=50.0, help="gesture predictions per second (default 50)")
    p.add_argument("--publish-to", metavar="URL", help=argparse.SUPPRESS)  # internal: be the publisher
    p.add_argument("--modes", nargs="+", default=["coalesced", "per_message"], choices=["coalesced", "per_message"])
    a = p.parse_args()
    if a.publish_to:
        _publisher(a.publish_to, a.rate, a.seconds)
        return
    print(json.dumps(asyncio.run(main_async(a)), indent=2))


if __name__ == "__main__":
    main()
