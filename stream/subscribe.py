"""`s2 subscribe` as a library call: print matching messages as JSON lines, riding out broker restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from stream.mqtt import MqttLink
from stream.schema import PREFIX

DEFAULT_TOPICS = (f"{PREFIX}/#",)
CONNECT_TIMEOUT_S = 10.0  # a broker unreachable at the start is an error; later outages are waited out


@dataclass
class SubscribeResult:
    received: int  # messages printed
    timed_out: bool  # stopped because nothing came for timeout_s


def json_line(topic: str, raw: bytes) -> str:
    """{"topic": ..., "payload": ...}: the payload parsed as JSON when it is JSON, else as text."""
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = raw.decode("utf-8", errors="replace")
    return json.dumps({"topic": topic, "payload": payload})


async def print_messages(
    url: str,
    topics: Sequence[str] = DEFAULT_TOPICS,
    *,
    count: int | None = None,
    timeout_s: float | None = None,
    qos: int = 1,
    username: str | None = None,
    password: str | None = None,
    tls: bool | None = None,
    cafile: str | None = None,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    out: TextIO | None = None,
    report: Callable[[SubscribeResult], None] | None = None,
) -> SubscribeResult:
    """Print one JSON line per message on `topics` until `count` messages, or until nothing came for `timeout_s`
    (counted from the connection), or forever. Reconnects and resubscribes when the broker goes away.
    BrokerError (from the client) when the broker cannot be reached within connect_timeout_s at the start.
    `report` gets the result however it ends once connected (cancelled by Ctrl-C or SIGTERM too)."""
    out = out or sys.stdout
    n = 0
    enough = asyncio.Event()
    link = MqttLink(url, username=username, password=password, tls=tls, cafile=cafile)
    idle: asyncio.Timeout | None = None

    def on_message(t: str, raw: bytes) -> None:
        nonlocal n
        if enough.is_set():
            return
        print(json_line(t, raw), file=out, flush=True)
        n += 1
        if count is not None and n >= count:
            enough.set()
        if idle is not None and timeout_s is not None:
            idle.reschedule(asyncio.get_running_loop().time() + timeout_s)

    for t in topics:
        link.subscribe(t, on_message, qos=qos)
    run = asyncio.create_task(link.run())
    result = None
    try:
        await link.ensure_connected(connect_timeout_s)
        result = SubscribeResult(n, False)
        try:
            async with asyncio.timeout(timeout_s) as idle:
                await enough.wait()
        except TimeoutError:
            result.timed_out = True
        result.received = n
        return result
    finally:
        if result is not None and report is not None:
            result.received = n
            report(result)
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
