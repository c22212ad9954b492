"""The fleet view with a thousand nodes, each sending its stats once a second: the cost of one refresh tick.

    python bench/bench_fleet.py                  # 1,000 nodes, 45 ticks per mode (~1 min)
    python bench/bench_fleet.py --nodes 200 --ticks 30 --refresh-hz 15

Headless (Textual's run_test, 160x40). Per tick, the nodes that sent stats since the last one (1,000 stats/s
at the fleet view's 2 Hz refresh: half the nodes) are folded in; then the table is synced and the screen
repainted. Modes, side by side in one run: `changed` updates the rows of nodes changed since the last tick
(what the UI does), `full` recomputes every row. Prints one JSON object: ms of the sync alone and of sync
plus repaint per tick (median, p90) per mode, and the full/changed ratios. The repaint is Textual's
DataTable drawing the visible rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textual import __version__ as textual_version  # noqa: E402
from textual.app import App  # noqa: E402

from stream.schema import Status  # noqa: E402
from tui import samples  # noqa: E402
from tui.screens import FLEET_REFRESH_HZ, FleetScreen  # noqa: E402
from tui.state import FleetState  # noqa: E402
from tui.widgets.fleet import FleetTable  # noqa: E402


async def run_mode(nodes: int, ticks: int, full: bool, refresh_hz: float) -> tuple[list[float], list[float]]:
    """(seconds of table.sync, seconds of sync plus the repaint) per tick."""
    fleet = FleetState()
    for i in range(nodes):
        fleet.apply(f"node-{i:04d}", Status(state="online", node=f"node-{i:04d}", models=["gesture-egru"]), 0.0)
    app = App()
    syncs: list[float] = []
    times: list[float] = []
    async with app.run_test(size=(160, 40)) as pilot:
        screen = FleetScreen(fleet, refresh_hz=0.001)  # the bench drives the ticks itself
        app.push_screen(screen)
        await pilot.pause(0.2)
        table = screen.query_one(FleetTable)
        per_tick = max(1, round(nodes / refresh_hz))
        k = 0
        for t in range(ticks):
            for _ in range(per_tick):  # the next nodes in turn send their stats
                i = k % nodes
                s = samples.stats(t, t_wall=1.7e9 + t / refresh_hz)
                s.events_in, s.events_dropped = 1500 * t + i, t % 3
                fleet.apply(f"node-{i:04d}", s, time.monotonic())
                k += 1
            t0 = time.perf_counter()
            table.sync(fleet, full=full)
            syncs.append(time.perf_counter() - t0)
            await pilot.pause()  # the refresh that paints the table
            times.append(time.perf_counter() - t0)
    return syncs, times


def _quantiles(seconds: list[float]) -> dict[str, float]:
    ms = sorted(1e3 * x for x in seconds)
    return {"median": statistics.median(ms), "p90": ms[int(0.9 * (len(ms) - 1))]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--ticks", type=int, default=45)
    ap.add_argument("--refresh-hz", type=float, default=FLEET_REFRESH_HZ, help="ticks per second of stats")
    args = ap.parse_args()
    out: dict = {"bench": "fleet", "nodes": args.nodes, "ticks": args.ticks, "refresh_hz": args.refresh_hz,
                 "cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
                 "python": platform.python_version(), "textual": textual_version, "modes": {}}
    for mode in ("changed", "full"):
        syncs, ticks = asyncio.run(run_mode(args.nodes, args.ticks, mode == "full", args.refresh_hz))
        out["modes"][mode] = {f"{name}_ms_{q}": round(v, 2) for name, xs in (("sync", syncs), ("tick", ticks))
                              for q, v in _quantiles(xs[2:]).items()}  # the first ticks warm the caches
    m = out["modes"]
    out["full_over_changed"] = {k: round(m["full"][k] / m["changed"][k], 2) for k in ("sync_ms_median",
                                                                                       "tick_ms_median")}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
