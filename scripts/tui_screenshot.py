"""Save docs/screenshot.svg: the UI under Textual's test driver, fed over a real broker.

    python scripts/tui_screenshot.py [--out docs/screenshot.svg] [--size 120x36]
    python scripts/tui_screenshot.py --demo models/demo-gestures.aedat4 [--seconds 20]

Default: the embedded broker and a replay of tui.samples payloads (needs nothing else). --demo RECORDING: the
embedded broker and the real local pipeline (shipped models) replaying RECORDING, with text typed into the LM.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from stream.broker import embedded_broker
from tui import samples
from tui.app import S2App

TYPED = "to be or not to b"


async def _connected(app: S2App, pilot) -> None:
    for _ in range(200):
        if app.status_line.state == "connected":
            return
        await pilot.pause(0.05)


def _save(app: S2App, out: Path) -> None:
    app.status_line.broker = "mqtt://127.0.0.1:1883"  # the embedded broker's port is random
    out.parent.mkdir(parents=True, exist_ok=True)
    app.save_screenshot(filename=out.name, path=str(out.parent))


async def shoot_samples(out: Path, size: tuple[int, int], node: str = "n0") -> None:
    async with embedded_broker() as url:
        app = S2App(url, node)
        async with app.run_test(size=size) as pilot:
            await _connected(app, pilot)
            await samples.replay(url, node, 400, TYPED)  # long enough for a gesture history
            await pilot.press(*TYPED)
            for _ in range(200):  # until the last prediction is shown
                if app.state.gesture is not None and app.state.gesture.step == 399 and app.state.text is not None:
                    break
                await pilot.pause(0.05)
            await pilot.pause(0.3)
            _save(app, out)


async def shoot_demo(out: Path, size: tuple[int, int], recording: str, seconds: float) -> None:
    from stream.local import local_demo
    from stream.schema import DEFAULT_NODE_ID as DEFAULT_NODE

    async with local_demo(DEFAULT_NODE, [recording]) as (url, pipeline):
        app = S2App(url, DEFAULT_NODE)
        async with app.run_test(size=size) as pilot:
            await _connected(app, pilot)
            await pilot.pause(seconds / 2)
            for ch in TYPED:
                await pilot.press(ch)
                await pilot.pause(0.05)
            await pilot.pause(seconds / 2)
            if pipeline.done():
                raise SystemExit(f"the pipeline stopped: {pipeline.exception()}")
            _save(app, out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/screenshot.svg"))
    p.add_argument("--size", default="120x36", help="terminal COLSxROWS (default 120x36)")
    p.add_argument("--demo", metavar="RECORDING", help="use the real local pipeline replaying this recording")
    p.add_argument("--seconds", type=float, default=20.0, help="with --demo: how long to let it run")
    a = p.parse_args()
    cols, rows = (int(v) for v in a.size.lower().split("x"))
    if a.demo:
        asyncio.run(shoot_demo(a.out, (cols, rows), a.demo, a.seconds))
    else:
        asyncio.run(shoot_samples(a.out, (cols, rows)))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
