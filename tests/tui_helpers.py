"""Helpers for the UI tests: a real MQTT peer that publishes and listens, and polling under a Pilot."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

import aiomqtt

from stream.schema import Payload, topic
from tui.app import S2App


def client(url: str) -> aiomqtt.Client:
    host, port = url.removeprefix("mqtt://").rsplit(":", 1)
    return aiomqtt.Client(host, int(port))


async def wait_for(pilot, cond: Callable[[], bool], timeout_s: float = 8.0) -> None:
    """Let the app run until cond() holds (AssertionError after timeout_s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await pilot.pause(0.03)


async def connected(pilot) -> None:
    await wait_for(pilot, lambda: pilot.app.status_line.state == "connected")


async def publish(url: str, node: str, *payloads: Payload, retain: bool = False) -> None:
    async with client(url) as c:
        for p in payloads:
            await c.publish(topic(node, p.KIND), p.to_json(), retain=retain)


async def publish_raw(url: str, node: str, kind: str, *raws: bytes) -> None:
    async with client(url) as c:
        for r in raws:
            await c.publish(topic(node, kind), r)


@contextlib.asynccontextmanager
async def recorder(url: str, node: str, kind: str):
    """Collect the JSON of every message on `kind` into a list while the context lasts."""
    got: list[dict] = []
    ready = asyncio.Event()

    async def run() -> None:
        async with client(url) as c:
            await c.subscribe(topic(node, kind))
            ready.set()
            async for m in c.messages:
                got.append(json.loads(m.payload))

    task = asyncio.create_task(run())
    await asyncio.wait_for(ready.wait(), 5)
    try:
        yield got
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def screen_text(app: S2App) -> str:
    """What the app shows, line by line, read back from its SVG screenshot (markup already applied)."""
    import html
    import re

    rows: dict[int, list[tuple[float, str]]] = {}
    pat = r'<text class="[^"]*" x="([\d.]+)" y="[\d.]+" textLength="[\d.]+" clip-path="url\(#[^)]*line-(\d+)\)">'
    pat += r"(.*?)</text>"
    for m in re.finditer(pat, app.export_screenshot()):
        rows.setdefault(int(m[2]), []).append((float(m[1]), html.unescape(m[3]).replace("\xa0", " ")))
    return "\n".join("".join(t for _, t in sorted(rows[k])) for k in sorted(rows))
