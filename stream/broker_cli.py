"""`s2 broker`: run the embedded default broker (mosquitto if installed, else in-process amqtt)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "broker",
        help="run the embedded MQTT broker and print its URL",
        description="Run a local MQTT broker: a mosquitto subprocess when the binary exists, else an "
        "in-process amqtt broker (MQTT 3.1.1). Binds to 127.0.0.1 unless --host says otherwise. Ctrl-C stops it.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=1883, help="port (default 1883; 0 picks a free one)")
    p.add_argument("--amqtt", action="store_true", help="use the in-process amqtt broker even if mosquitto exists")
    p.set_defaults(func=_broker)


def _broker(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib

    from stream.broker import embedded_broker

    async def run() -> None:
        async with embedded_broker(args.port or None, args.host, "amqtt" if args.amqtt else "auto") as url:
            kind = "amqtt" if args.amqtt else "mosquitto-or-amqtt"
            print(f"broker listening at {url} ({kind}); Ctrl-C to stop", flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0
