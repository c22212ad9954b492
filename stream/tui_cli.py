"""`s2 tui`: the terminal UI. With --broker it only subscribes; without, it starts the embedded broker and the
local pipeline (demo recording into the gesture model, the character LM answering typed text) first."""

from __future__ import annotations

import argparse
import contextlib

DEFAULT_NODE = "local"  # the pipeline's default node id
DEFAULT_RECORDING = "models/demo-gestures.aedat4"  # the shipped demo recording, used if present


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tui",
        help="the terminal UI (starts a local broker and pipeline unless --broker is given)",
        description="Show live gesture predictions, typed-text predictions and the emulated node over MQTT. "
        "Without --broker: start the embedded broker and a local pipeline that replays the demo recording, "
        "then the UI against it (the one-command demo).",
    )
    p.add_argument("--broker", metavar="URL", help="an MQTT broker already running (mqtt://host:port)")
    p.add_argument("--node", metavar="ID", default=DEFAULT_NODE, help=f"node id to show (default {DEFAULT_NODE})")
    p.add_argument("--recording", metavar="FILE", action="append",
                   help="without --broker: event file(s) the local pipeline replays (repeatable; ctrl+r switches; "
                   f"default {DEFAULT_RECORDING} when it exists)")
    p.add_argument("--speed", type=float, default=1.0, help="without --broker: replay speed factor (default 1)")
    p.set_defaults(func=_tui)


def _tui(args: argparse.Namespace) -> int:
    from stream.errors import PipelineError

    if args.broker:
        from tui.app import run_app

        try:
            run_app(args.broker, args.node)
        except ValueError as e:  # a broker URL the UI cannot parse
            raise PipelineError(str(e)) from e
        return 0
    return _demo(args.node, args.recording, args.speed)


def _demo(node: str, recordings: list[str] | None = None, speed: float = 1.0) -> int:
    """Embedded broker + local pipeline + the app, all in this process; everything stops when the UI quits."""
    import asyncio
    import signal
    from pathlib import Path

    if not recordings and Path(DEFAULT_RECORDING).is_file():
        recordings = [DEFAULT_RECORDING]

    from stream.errors import PipelineError
    from tui.app import S2App

    async def main() -> None:
        async with local_demo(node, recordings, speed) as (url, pipeline):
            app = S2App(url, node)
            # a closed terminal (SIGHUP) or a kill (SIGTERM) ends the app like ctrl+q, so that the broker and the
            # pipeline are stopped on the way out instead of outliving the process
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGHUP, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
                    loop.add_signal_handler(sig, app.exit)
            # a pipeline that dies (missing model, bad recording) ends the UI instead of leaving it waiting
            pipeline.add_done_callback(lambda t: t.cancelled() or t.exception() is None or app.exit(return_code=1))
            await app.run_async()
            if pipeline.done() and not pipeline.cancelled() and pipeline.exception():
                raise PipelineError(f"local pipeline failed: {pipeline.exception()}")

    asyncio.run(main())
    return 0


@contextlib.asynccontextmanager
async def local_demo(node: str = DEFAULT_NODE, recordings: list[str] | None = None, speed: float = 1.0):
    """Yield (broker URL, pipeline task): the embedded broker with the local demo pipeline publishing to it."""
    import asyncio

    from stream.broker import embedded_broker
    from stream.local import run_local_pipeline

    async with embedded_broker() as url:
        pipeline = asyncio.create_task(run_local_pipeline(url, node, recording=recordings or None, speed=speed))
        try:
            yield url, pipeline
        finally:
            pipeline.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # its failure was reported already
                await pipeline
