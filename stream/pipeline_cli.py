"""`s2 replay`, `s2 run`, `s2 subscribe`: the streaming pipeline from the command line.

Without --broker an embedded broker is started (mosquitto if installed, else amqtt) and its URL printed on
stderr. Heavy imports (torch, aiomqtt) happen inside the command functions.
"""

from __future__ import annotations

import argparse

DEFAULT_GESTURE_MODEL = "models/gesture-egru"  # the same defaults as stream.local (kept import-free here)
DEFAULT_TEXT_MODEL = "models/shakespeare-egru"


def _broker_args(p: argparse.ArgumentParser, node: bool = True) -> None:
    p.add_argument("--broker", metavar="URL", help="mqtt://[user[:pw]@]host[:port] or mqtts://... "
                   "(default: start an embedded broker on a free port)")
    if node:
        p.add_argument("--node", default="n0", help="node id in the topics s2/v1/<node>/... (default n0)")
    p.add_argument("--username", help="MQTT user name")
    p.add_argument("--password", help="MQTT password")
    p.add_argument("--tls", action="store_true", help="connect with TLS (implied by mqtts://)")
    p.add_argument("--cafile", help="CA certificate file for TLS")
    p.add_argument("--qos", type=int, choices=(0, 1, 2), default=1, help="QoS of published messages (default 1)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay", help="replay an event file into the gesture model, predictions to MQTT",
        description="Replay a DVS event file (AEDAT4, EVT2/3, DAT, ES, CSV, NPY) paced by its timestamps into "
        "the gesture model; publish predictions, stats and event frames on s2/v1/<node>/...",
    )
    p.add_argument("file", help="event file")
    p.add_argument("--model", default=DEFAULT_GESTURE_MODEL, help=f"gesture model (default {DEFAULT_GESTURE_MODEL})")
    p.add_argument("--speed", type=float, default=1.0, help="replay speed factor; 0 = as fast as possible")
    p.add_argument("--loop", action="store_true", help="start again at the end (until Ctrl-C)")
    p.add_argument("--start-s", type=float, default=0.0, help="skip this many seconds of the recording")
    p.add_argument("--end-s", type=float, default=None, help="stop at this many seconds of the recording")
    p.add_argument("--no-frames", action="store_true", help="do not publish event frames")
    p.add_argument("--window-s", type=float, default=0.0,
                   help="gesture readout: mean of the per-step logits over this many seconds (default 0: over the "
                        "whole recording, as `s2 node run` and `s2 eval`)")
    _broker_args(p)
    p.set_defaults(func=_replay)

    r = sub.add_parser(
        "run", help="run a live source (udp://, dv://, synthetic, text) through a model, predictions to MQTT",
        description="Live sources: udp://HOST:PORT (SPIF 32-bit words as AEStream sends; ?format=faery for "
        "faery's UDP records), dv://HOST:PORT (DV software network stream, needs dv-processing), synthetic "
        "(the gesture renderer as a live camera), text (lines of stdin and messages on in/text into the LM).",
    )
    r.add_argument("--source", required=True, help="udp://HOST:PORT | dv://HOST:PORT | synthetic | text")
    r.add_argument("--model", help=f"model (default {DEFAULT_GESTURE_MODEL}, or {DEFAULT_TEXT_MODEL} for text)")
    r.add_argument("--buffer", type=int, default=256, help="live buffer in batches; the oldest are dropped")
    r.add_argument("--duration-s", type=float, default=None, help="stop after this many seconds")
    r.add_argument("--idle-s", type=float, default=0.05,
                   help="udp/dv: after this much wall time without events, close bins as if event time ran on "
                        "with the wall clock (a still scene sends nothing); 0 = wait for the next event "
                        "(default 0.05)")
    r.add_argument("--window-s", type=float, default=2.0,
                   help="gesture readout: mean of per-step logits over the last seconds (default 2; 0 = since start)")
    _broker_args(r)
    r.set_defaults(func=_run)

    s = sub.add_parser(
        "subscribe", help="print MQTT messages as one JSON object per line",
        description="Subscribe and print {\"topic\": ..., \"payload\": ...} per message (payload parsed as JSON "
        "when it is JSON, else a string).",
    )
    s.add_argument("--topic", action="append", help="topic filter (repeatable; default s2/v1/#)")
    s.add_argument("--count", type=int, default=None, help="exit after this many messages")
    s.add_argument("--timeout-s", type=float, default=None, help="exit (status 1) if nothing came for this long")
    _broker_args(s, node=False)
    s.set_defaults(func=_subscribe)


def run_async(coro) -> int:
    """asyncio.run, but a user error raised inside task groups surfaces as itself (one line, exit 1)."""
    import asyncio

    from stream.cli import user_errors

    try:
        return asyncio.run(coro)
    except BaseExceptionGroup as eg:
        leaf: BaseException = eg
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        if isinstance(leaf, (*user_errors(), KeyboardInterrupt)):
            raise leaf from None
        raise


def _link(args: argparse.Namespace, url: str, status=None):
    from stream.mqtt import MqttLink

    return MqttLink(url, args.node, qos=args.qos, username=args.username, password=args.password,
                    tls=args.tls or None, cafile=args.cafile, status=status)


async def _with_broker(args: argparse.Namespace, body) -> int:
    """Run body(url) against --broker or an embedded broker."""
    import sys

    from stream.broker import BrokerURL, embedded_broker

    if args.broker:
        BrokerURL.parse(args.broker)  # one-line error on a bad URL before anything starts
        return await body(args.broker)
    async with embedded_broker() as url:
        print(f"s2: embedded broker at {url}", file=sys.stderr, flush=True)
        return await body(url)


def _replay(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from stream.binner import make_binner
    from stream.node_adapter import load_step_model, windowed
    from stream.pipeline import run_gesture_pipeline, stats_loop
    from stream.replay import iter_file, replay
    from stream.schema import Status

    next(iter_file(args.file, 1000), None)  # fail fast (one line) on a missing or unreadable file
    model = windowed(load_step_model(args.model), args.window_s)
    binner = make_binner(model.config)

    async def body(url: str) -> int:
        link = _link(args, url, Status(models=[model.name], recordings=[args.file]))
        with ThreadPoolExecutor(1, "s2-node") as ex:
            async with asyncio.TaskGroup() as tg:
                run = tg.create_task(link.run())
                await _connected_or_fail(link, url, run)
                stats = tg.create_task(stats_loop(link, [model], c := _counters()))
                src = replay(args.file, speed=args.speed, loop=args.loop, start_s=args.start_s, end_s=args.end_s,
                             chunk_us=binner.spec.release_chunk_us)
                try:
                    await run_gesture_pipeline(src, model, binner, link, executor=ex, counters=c,
                                               frames=not args.no_frames)
                finally:
                    stats.cancel()
                    await link.close(timeout_s=5.0)
                    run.cancel()
        print(f"s2 replay: {c.predictions} predictions, {c.events_in} events in, {c.events_dropped} dropped, "
              f"{link.stats.dropped} messages dropped, {link.pending} unsent", file=sys.stderr)
        return 0 if link.pending == 0 else 1

    with contextlib.suppress(KeyboardInterrupt):
        return run_async(_with_broker(args, body))
    return 130


async def _connected_or_fail(link, url: str, run) -> None:
    """A broker that cannot be reached at the start is a one-line error (later outages are waited out)."""
    from stream.errors import BrokerError

    if not await link.wait_connected(10.0):
        run.cancel()
        raise BrokerError(url, f"cannot connect ({link.stats.last_error or 'no answer'})")


def _counters():
    from stream.pipeline import PipelineCounters

    return PipelineCounters()


def _run(args: argparse.Namespace) -> int:
    import contextlib

    from stream.errors import PipelineError
    from stream.live import run_live

    kind = args.source.split("://", 1)[0] if "://" in args.source else args.source
    if kind not in ("udp", "dv", "synthetic", "text"):
        raise PipelineError(f"--source {args.source!r}: use udp://HOST:PORT, dv://HOST:PORT, synthetic or text")
    with contextlib.suppress(KeyboardInterrupt):
        return run_async(_with_broker(args, lambda url: run_live(args, url, _link)))
    return 130


def _subscribe(args: argparse.Namespace) -> int:
    import contextlib
    import sys

    from stream.subscribe import DEFAULT_TOPICS, print_messages

    async def body(url: str) -> int:
        r = await print_messages(url, args.topic or DEFAULT_TOPICS, count=args.count, timeout_s=args.timeout_s,
                                 qos=args.qos, username=args.username, password=args.password,
                                 tls=args.tls or None, cafile=args.cafile)
        if r.timed_out:
            print(f"s2 subscribe: nothing for {args.timeout_s} s ({r.received} messages)", file=sys.stderr)
            return 1
        return 0

    with contextlib.suppress(KeyboardInterrupt):
        return run_async(_with_broker(args, body))
    return 130
