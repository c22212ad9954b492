"""Save docs/screenshot.svg: the UI under Textual's test driver, fed realistic payloads over a real broker.

    python scripts/tui_screenshot.py [--out docs/screenshot.svg] [--size 120x36]

Starts the embedded broker (mosquitto if installed, else amqtt), publishes a short replay from tui.samples,
and saves what the app shows.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from stream.broker import embedded_broker
from tui import samples
from tui.app import S2App


async def shoot(out: Path, size: tuple[int, int], node: str = "local") -> None:
    async with embedded_broker() as url:
        app = S2App(url, node)
        async with app.run_test(size=size) as pilot:
            for _ in range(100):
                if app.status_line.state == "connected":
                    break
                await pilot.pause(0.05)
            await samples.replay(url, node, 400)  # long enough for a gesture history
            await pilot.press(*"to be or not to b")
            for _ in range(200):  # until the last prediction is shown
                if app.state.gesture is not None and app.state.gesture.step == 399 and app.state.text is not None:
                    break
                await pilot.pause(0.05)
            await pilot.pause(0.3)
            app.status_line.broker = "mqtt://127.0.0.1:1883"  # the embedded broker's port is random
            await pilot.pause(0.2)
            out.parent.mkdir(parents=True, exist_ok=True)
            app.save_screenshot(filename=out.name, path=str(out.parent))
    print(f"wrote {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/screenshot.svg"))
    p.add_argument("--size", default="120x36", help="terminal COLSxROWS (default 120x36)")
    a = p.parse_args()
    cols, rows = (int(v) for v in a.size.lower().split("x"))
    asyncio.run(shoot(a.out, (cols, rows)))


if __name__ == "__main__":
    main()
